"""``mriqa score``: reference-free QF scores of images and MRI slices (the library: :mod:`mriqa.scoring`).

::

    mriqa score INPUT... [--model gray|rgb|PATH] [--pool mean|center|foreground] [--json OUT] [--maps DIR]
                         [--batch-size N] [--device DEV] [--h5-key KEY] [--max-pixels N]

INPUT: PNG/TIFF/BMP/JPEG (or a folder of them), a DICOM file or folder, NIfTI (.nii/.nii.gz), fastMRI-layout h5
(``reconstruction`` / ``reconstruction_rss`` / ``reconstruction_esc``) or .npy, read by
:func:`recon.io.images.read_images`: one record per 2-D image (per slice of a volume, per frame of a
multi-frame DICOM, per slice of every volume of a 4-D NIfTI, which adds ``volume``).

Model (``--model``): ``gray``, ``rgb`` or the path of a weights file. Without it each image gets a default:
``rgb`` for colour images (3 or 4 channels: RGB photos, and CMYK/palette files, which are read as RGB),
``gray`` for everything single-channel (DICOM, NIfTI, h5 and gray photos, 8- or 16-bit).

Output: a table on stdout (input, slice, model, pool, qf); ``--json OUT`` writes a list of records
``{"input", "slice", "qf", "pool", "model"}`` (``slice`` null for single images, ``qf`` = QF / 100 in [0, 1]);
``--maps DIR`` writes one PNG overlay per record (:mod:`mriqa.overlay`), named ``<stem>.png`` or
``<stem>_s<slice>.png`` (``-2``, ``-3``... appended on a name clash).

Batches: every input is scored; one that fails (unreadable, NaN, smaller than the model's 28 x 28 minimum,
larger than ``--max-pixels``) is reported as one line ``mriqa: error: FILE: problem`` on stderr and as a
record ``{"input", "slice": null, "pool", "model", "error"}`` (no ``qf``) in the JSON; the others are written,
and the exit code is 2 when any input failed. Problems of the whole run (unknown model, missing weights, an
unwritable ``--json`` / ``--maps``) stop it before any input is read: one line, exit 2, nothing written.

Documented handling of awkward inputs:

- NaN/Inf anywhere (e.g. one bad slice of an h5 file): that input fails, naming the file and the slice;
- a CMYK file: converted to RGB; a 16-bit PNG: scored as uint16 (``/ 65535``);
- an all-zero MRI slice (the empty end slices of a padded volume): skipped with a note on stderr (there is
  nothing to score; the windowing is undefined); a file with no scorable image at all fails;
- ``--pool foreground`` on an image with no foreground: scored with ``mean``, with a note on stderr;
- a big image (up to ``--max-pixels``, default 64 Mpx) runs tile by tile in bounded memory (same scores).
"""
from __future__ import annotations

import argparse

from mriqa.commands.shared import add_max_pixels, exit_code, format_table, write_records

POOLS = ("mean", "center", "foreground")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "score",
        help="score images / MRI slices with the reference-free QF predictor",
        description="Reference-free quality scores (predicted JPEG quality factor / 100, higher is better) "
        "of images and MRI slices.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="PNG/TIFF/BMP/JPEG, DICOM file or folder, NIfTI, fastMRI-layout h5 or .npy (one record per slice)",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="gray|rgb|PATH",
        help="QF model: 'gray', 'rgb' or a .safetensors file (default: 'rgb' for colour images, "
        "'gray' for single-channel images, DICOM, NIfTI and h5)",
    )
    p.add_argument(
        "--pool",
        default="mean",
        choices=POOLS,
        help="how the QF map is pooled: mean (whole map), center (central 50%% of height and width, as the "
        "paper does for MRI), foreground (weighted by a mask of the anatomy, ignores near-black background) "
        "(default: mean)",
    )
    p.add_argument("--json", metavar="OUT", default=None, help="write the records as JSON to OUT")
    p.add_argument("--maps", metavar="DIR", default=None, help="write QF-map overlays (PNG) into DIR")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="slices per forward pass (default 16)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--h5-key", default=None, metavar="KEY", help="h5 dataset to read (default: the first of "
                   "reconstruction, reconstruction_rss, reconstruction_esc)")
    add_max_pixels(p)
    p.set_defaults(func=run)
    return p


def _format_table(rows) -> str:
    def where(r):
        return "-" if r.slice is None else (str(r.slice) if r.volume is None else f"{r.volume}:{r.slice}")

    return format_table(("input", "slice", "model", "pool", "qf"),
                        [(r.input, where(r), str(r.model), str(r.pool), "error" if r.error else f"{r.qf:.4f}")
                         for r in rows], left=4)


def run(args) -> int:
    import numpy as np

    from recon.io.output import check_writable, check_writable_dir
    from mriqa.scoring import score_files

    if args.json is not None:
        check_writable(args.json, "--json")
    if args.maps is not None:
        check_writable_dir(args.maps, "--maps")
    notes: list[str] = []
    rows = score_files(args.inputs, model=args.model, pool=args.pool, batch_size=args.batch_size,
                       device=args.device, h5_key=args.h5_key, max_pixels=args.max_pixels, maps_dir=args.maps,
                       notes=notes)
    failed = write_records(rows, args.json, notes)
    print(_format_table(rows))
    scored = [r.qf for r in rows if not r.error]
    if len(scored) > 1:
        print(f"{len(scored)} images, mean qf {np.mean(scored):.4f}")
    if args.maps is not None:
        print(f"wrote {len(scored)} QF-map overlays to {args.maps}")
    return exit_code(rows, failed, args.json)

"""``mriqa score``: reference-free quality scores of images and MRI slices (the library: :mod:`mriqa.scoring`).

::

    mriqa score INPUT... [--model gray|rgb|recon|PATH] [--pool mean|center|foreground] [--r-aware] [--json OUT]
                         [--maps DIR] [--batch-size N] [--device DEV] [--h5-key KEY] [--max-pixels N]

INPUT: PNG/TIFF/BMP/JPEG (or a folder of them), a DICOM file or folder, NIfTI (.nii/.nii.gz), fastMRI-layout h5
(``reconstruction`` / ``reconstruction_rss`` / ``reconstruction_esc``), .npy or .npz, read by
:func:`recon.io.images.read_images`: one record per 2-D image (per slice of a volume, per frame of a
multi-frame DICOM, per slice of every volume of a 4-D NIfTI, which adds ``volume``).

Model (``--model``): ``gray``, ``rgb`` (the QF predictors: predicted JPEG quality factor / 100), ``recon`` (the
reconstruction-quality model, :mod:`mriqa.models.reconq`: predicted SSIM of an MRI reconstruction against the
fully sampled reference it never sees; gray magnitudes only) or the path of a weights file (QFNet or RQNet).
Without it each image gets a default: ``rgb`` for colour images (3 or 4 channels that differ: RGB photos, and
CMYK/palette files, which are read as RGB), ``gray`` for everything gray (DICOM, NIfTI, h5 and gray photos, 8- or
16-bit, including gray images stored as RGB: :func:`mriqa.scoring.default_model`).

``--r-aware`` (with ``--model recon``): each record also carries ``r_est``, the acceleration the rq estimator reads
in the image (:mod:`mriqa.restimate`), and ``r_aware`` = ``score * r_est ** -R_AWARE_POWER`` (0.1)
(:mod:`mriqa.recon_quality.r_aware`): a ranking score that, unlike the recon score, falls with R within a method
(held-out simulations: docs/rq/kspace.md); the table shows both. ``r_ood`` says why the estimator would flag the
image as unlike its training reconstructions (null when it does not; a note is printed too): then neither
``r_est`` nor ``r_aware`` is to be trusted.

Output: a table on stdout (input, slice, model, pool, qf; the last column is ``score`` for ``recon``);
``--json OUT`` writes a list of records ``{"input", "slice", "qf", "score", "pool", "model"}`` (``slice`` null
for single images; ``score`` in [0, 1], higher is better, for every model; ``qf`` = QF / 100, the same value,
for the QF models only); ``--maps DIR`` writes one PNG overlay per record (:mod:`mriqa.overlay`; titled
``QF 0.873 (...)``, ``score 0.912 (...)`` for ``recon``), named ``<stem>.png`` or ``<stem>_s<slice>.png``
(``-2``, ``-3``... appended on a name clash).

Batches: every input is scored; one that fails (unreadable, NaN, smaller than the model's minimum: 28 x 28
for QF, 32 x 32 for recon; larger than ``--max-pixels``; a colour image for recon) is reported as one line
``mriqa: error: FILE: problem`` on stderr and as a record ``{"input", "slice": null, "pool", "model",
"error"}`` (no ``qf`` / ``score``) in the JSON; the others are written, and the exit code is 2 when any input
failed. Problems of the whole run (unknown model, missing weights, an unwritable ``--json`` / ``--maps``) stop
it before any input is read: one line, exit 2, nothing written.

Documented handling of awkward inputs:

- NaN/Inf anywhere (e.g. one bad slice of an h5 file): that input fails, naming the file and the slice;
- a CMYK file: converted to RGB; a 16-bit PNG: scored as uint16 (``/ 65535``);
- an all-zero MRI slice (the empty end slices of a padded volume): skipped with a note on stderr (there is
  nothing to score; the windowing is undefined); a file with no scorable image at all fails;
- ``--pool foreground`` on an image with no foreground: scored with ``mean``, with a note on stderr;
- a big image (up to ``--max-pixels``, default 64 Mpx) runs tile by tile in bounded memory (same scores;
  ``recon`` runs every image whole: its global branch sees the whole image).
"""
from __future__ import annotations

import argparse

from mriqa.commands.shared import add_max_pixels, all_failed, exit_code, format_table, write_records

POOLS = ("mean", "center", "foreground")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from mriqa.recon_quality.r_aware import R_AWARE_POWER  # numpy only

    p = subparsers.add_parser(
        "score",
        help="score images / MRI slices with a reference-free quality model (QF predictor or recon)",
        description="Reference-free quality scores of images and MRI slices, higher is better: the predicted "
        "JPEG quality factor / 100 (gray, rgb) or the predicted SSIM of an MRI reconstruction (recon).",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="PNG/TIFF/BMP/JPEG, DICOM file or folder, NIfTI, fastMRI-layout h5, .npy or .npz (one record per slice)",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="gray|rgb|recon|PATH",
        help="model: 'gray' or 'rgb' (QF predictors), 'recon' (reconstruction quality: predicted SSIM of an MRI "
        "reconstruction, gray magnitudes only) or a .safetensors file (default: 'rgb' for colour images, "
        "'gray' for gray ones, also when stored as RGB, and for DICOM, NIfTI and h5)",
    )
    p.add_argument(
        "--pool",
        default="mean",
        choices=POOLS,
        help="how the quality map is pooled: mean (whole map), center (central 50%% of height and width, as the "
        "paper does for MRI), foreground (weighted by a mask of the anatomy, ignores near-black background) "
        "(default: mean)",
    )
    p.add_argument("--r-aware", action="store_true",
                   help="with --model recon: also the acceleration R the image shows (rq estimator) and the R-aware "
                   f"score, score x R^-{R_AWARE_POWER:g} (falls with R within a method; a ranking score)")
    p.add_argument("--json", metavar="OUT", default=None, help="write the records as JSON to OUT")
    p.add_argument("--maps", metavar="DIR", default=None, help="write quality-map overlays (PNG) into DIR")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="slices per forward pass (default 16)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--h5-key", default=None, metavar="KEY", help="h5 dataset or .npz array to read (h5 default: "
                   "the first of reconstruction, reconstruction_rss, reconstruction_esc; .npz: every array)")
    add_max_pixels(p)
    p.set_defaults(func=run)
    return p


def _label(rows) -> str:
    """``"qf"`` when every scored row is a QF model's, else ``"score"``."""
    return "qf" if all(r.qf is not None for r in rows if not r.error) else "score"


def _format_table(rows) -> str:
    def where(r):
        return "-" if r.slice is None else (str(r.slice) if r.volume is None else f"{r.volume}:{r.slice}")

    if any(r.r_aware is not None for r in rows):
        return format_table(("input", "slice", "model", "pool", "score", "r_est", "r_aware"),
                            [(r.input, where(r), str(r.model) if r.model else "-", str(r.pool))
                             + (("error", "-", "-") if r.error else (f"{r.score:.4f}", f"{r.r_est:.2f}",
                                                                        f"{r.r_aware:.4f}")) for r in rows], left=4)
    return format_table(("input", "slice", "model", "pool", _label(rows)),
                        [(r.input, where(r), str(r.model) if r.model else "-", str(r.pool),
                          "error" if r.error else f"{r.score:.4f}") for r in rows], left=4)


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
                       notes=notes, r_aware=args.r_aware)
    failed = write_records(rows, args.json, notes)
    if all_failed(rows, failed):
        return 2  # nothing written, stdout empty: the errors are on stderr
    print(_format_table(rows))
    scored = [r.score for r in rows if not r.error]
    label = _label(rows)
    if len(scored) > 1:
        print(f"{len(scored)} images, mean {label} {np.mean(scored):.4f}")
    if args.maps is not None:
        print(f"wrote {len(scored)} {'QF' if label == 'qf' else 'quality'}-map overlays to {args.maps}")
    return exit_code(rows, failed, args.json)

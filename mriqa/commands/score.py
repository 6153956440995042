"""``mriqa score``: reference-free QF scores of images and MRI slices.

::

    mriqa score INPUT... [--model gray|rgb|PATH] [--pool mean|center|foreground] [--json OUT] [--maps DIR]
                         [--batch-size N] [--device DEV] [--h5-key KEY]

INPUT: PNG/TIFF/BMP/JPEG, a DICOM file or folder, NIfTI (.nii/.nii.gz), fastMRI-layout h5
(``reconstruction`` / ``reconstruction_rss`` / ``reconstruction_esc``) or .npy, read by :mod:`mriqa.imageio`:
one record per 2-D image (per slice of a volume, per frame of a multi-frame DICOM).

Model (``--model``): ``gray``, ``rgb`` or the path of a weights file. Without it each image gets a default:
``rgb`` for colour images (3 or 4 channels: RGB photos, and CMYK/palette files, which are read as RGB),
``gray`` for everything single-channel (DICOM, NIfTI, h5 and gray photos, 8- or 16-bit).

Output: a table on stdout (input, slice, model, pool, qf); ``--json OUT`` writes a list of records
``{"input", "slice", "qf", "pool", "model"}`` (``slice`` null for single images, ``qf`` = QF / 100 in [0, 1]);
``--maps DIR`` writes one PNG overlay per record (:mod:`mriqa.overlay`), named ``<stem>.png`` or
``<stem>_s<slice>.png`` (``-2``, ``-3``... appended on a name clash). All files are written only after every
input was scored: a bad input leaves neither a JSON file nor maps behind.

Documented handling of awkward inputs:

- an image smaller than the model's minimum input (e.g. 16x16 < 28x28): error naming the file and sizes;
- NaN/Inf anywhere (e.g. one bad slice of an h5 file): error naming the file and the slice;
- a 4-D NIfTI: its first volume is scored (:mod:`mriqa.imageio`); a CMYK file: converted to RGB; a 16-bit
  PNG: scored as uint16 (``/ 65535``);
- an all-zero MRI slice (the empty end slices of a padded volume): skipped with a note on stderr (there is
  nothing to score; the windowing is undefined); a file with no scorable image at all is an error;
- ``--pool foreground`` on an image with no foreground: scored with ``mean``, with a note on stderr.

Errors are :class:`recon.errors.InputError`: the CLI prints one line and exits 2.
"""
from __future__ import annotations

import argparse
import os
import sys

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
    p.set_defaults(func=run)
    return p


def default_model(image) -> str:
    """``"rgb"`` for a colour image ``[H, W, 3|4]``, ``"gray"`` otherwise."""
    return "rgb" if image.ndim == 3 and image.shape[-1] in (3, 4) else "gray"


def _map_stem(record) -> str:
    name = os.path.basename(os.path.normpath(record.source))
    for ext in (".nii.gz", ".nii", ".h5", ".hdf5", ".npy", ".dcm", ".png", ".tif", ".tiff", ".bmp", ".jpg",
                ".jpeg", ".jpe", ".jfif", ".dicom", ".ima"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "image"
    return name if record.slice is None else f"{name}_s{record.slice:03d}"


def _groups(records, model_of):
    """Consecutive records with the same shape, dtype, kind and model -> lists (one forward batch each)."""
    group, key = [], None
    for r in records:
        k = (r.image.shape, r.image.dtype.str, r.kind, model_of(r))
        if group and k != key:
            yield group
            group = []
        group.append(r)
        key = k
    if group:
        yield group


def _format_table(rows) -> str:
    header = ("input", "slice", "model", "pool", "qf")
    cells = [header] + [
        (r["input"], "-" if r["slice"] is None else str(r["slice"]), r["model"], r["pool"], f"{r['qf']:.4f}")
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c[i].ljust(widths[i]) if i < 4 else c[i].rjust(widths[i]) for i in range(5)) for c in cells]
    return "\n".join(line.rstrip() for line in lines)


def run(args) -> int:
    import json
    import shutil
    import tempfile
    from pathlib import Path

    import numpy as np

    from recon.errors import InputError
    from recon.files import atomic_path
    from mriqa.imageio import read_images, record_name, records_with_signal
    from mriqa.overlay import make_readable
    from mriqa.predictor import load_predictor

    if args.batch_size < 1:
        raise InputError(None, f"--batch-size must be >= 1, got {args.batch_size}")
    if args.json is not None and Path(args.json).is_dir():
        raise InputError(args.json, "--json must name a file, not a folder")
    if args.maps is not None and Path(args.maps).exists() and not Path(args.maps).is_dir():
        raise InputError(args.maps, "--maps must name a folder")

    predictors: dict[str, object] = {}

    def predictor(name: str):
        if name not in predictors:
            predictors[name] = load_predictor(name, device=args.device, batch_size=args.batch_size)
        return predictors[name]

    if args.model is not None:
        predictor(args.model)  # a bad --model fails before any input is read

    def model_of(record) -> str:
        return args.model if args.model is not None else default_model(record.image)

    rows: list[dict] = []
    notes: list[str] = []
    staging = None
    made_maps_dir = False
    map_names: set[str] = set()
    if args.maps is not None:
        maps_dir = Path(args.maps)
        made_maps_dir = not maps_dir.exists()
        maps_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".mriqa-maps.", dir=maps_dir))
    ok = False
    try:
        for path in args.inputs:
            records = read_images(path, h5_key=args.h5_key)
            scorable = records_with_signal(path, records, notes)
            for group in _groups(scorable, model_of):
                name = model_of(group[0])
                qf = predictor(name)
                first = group[0].image
                if min(first.shape[:2]) < qf.min_input_size:
                    raise InputError(
                        record_name(group[0]),
                        f"image is {first.shape[0]}x{first.shape[1]} pixels, smaller than the QF model's "
                        f"minimum input {qf.min_input_size}x{qf.min_input_size} (its receptive field is "
                        f"{qf.receptive_field} px)",
                    )
                for start in range(0, len(group), args.batch_size):
                    chunk = group[start : start + args.batch_size]
                    batch = np.stack([r.image for r in chunk])
                    if batch.ndim == 3:
                        batch = batch[..., None]  # [N, H, W, 1]: unambiguous channels-last batch
                    pred = qf.evaluate(batch, pool=args.pool, kind=chunk[0].kind,
                                       source=[record_name(r) for r in chunk])
                    for j, r in enumerate(chunk):
                        if pred.fallback[j]:
                            notes.append(f"{record_name(r)}: no foreground found, scored with mean pooling")
                        rows.append({
                            "input": r.source,
                            "slice": r.slice,
                            "qf": round(float(pred.scores[j]), 6),
                            "pool": args.pool,
                            "model": name,
                        })
                        if staging is not None:
                            _write_map(staging, r, pred, j, args.pool, name, map_names)
        # every input scored: now publish the outputs
        if staging is not None:
            for f in sorted(staging.iterdir()):
                os.replace(f, Path(args.maps) / f.name)
        if args.json is not None:
            with atomic_path(args.json, suffix=".json") as tmp:
                tmp.write_text(json.dumps(rows, indent=2) + "\n")
                make_readable(tmp)
        ok = True
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
            if not ok and made_maps_dir:
                try:
                    os.rmdir(args.maps)  # we made it for this run; removed only if still empty
                except OSError:
                    pass

    for note in notes:
        print(f"mriqa: note: {note}", file=sys.stderr)
    print(_format_table(rows))
    if len(rows) > 1:
        print(f"{len(rows)} images, mean qf {np.mean([r['qf'] for r in rows]):.4f}")
    if args.json is not None:
        print(f"wrote {args.json}")
    if args.maps is not None:
        print(f"wrote {len(rows)} QF-map overlays to {args.maps}")
    return 0


def _write_map(staging, record, pred, j, pool, model, used: set) -> None:
    from mriqa.overlay import save_overlay

    stem = _map_stem(record)
    name, n = f"{stem}.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.png"
    used.add(name)
    save_overlay(
        staging / name,
        pred.images[j],
        pred.maps[j],
        pred.geometry,
        title=f"QF {pred.scores[j]:.3f} ({pool}, {os.path.basename(str(model))})",
    )

"""``mriqa estimate-r``: how accelerated was the acquisition behind a reconstruction? (images only)

::

    mriqa estimate-r INPUT... [--method auto|qf|learned] [--json OUT] [--h5-key KEY]

INPUT: anything ``mriqa score`` reads (:mod:`mriqa.imageio`): fastMRI-layout h5 (``reconstruction`` /
``reconstruction_rss``), DICOM file or folder, NIfTI, .npy, PNG/TIFF/... One record per 2-D image
``{"input", "slice", "r_est", "r_low", "r_high", "estimator", "ood"}`` and, for an input with several slices,
one more volume-level record with ``"slice": null`` (:func:`mriqa.restimate.volume_estimate`). ``r_est`` is the
estimated nominal R, ``[r_low, r_high]`` the calibrated interval (conformal on validation reconstructions,
:mod:`mriqa.restimate.intervals`); ``ood`` is null, or why the input looks unlike the training reconstructions
(then the interval is the whole ``[1, 16]``; :mod:`mriqa.restimate.ood`).

Estimators (``--method``): ``learned`` (QFNet fine-tuned to log R, :mod:`mriqa.restimate.learned`), ``qf``
(QF score + monotone calibration, :mod:`mriqa.restimate.qf_based`), ``auto`` = learned when installed, else qf.
Both use the h5's ``method`` attribute, as written by ``mriqa recon``, to pick that reconstruction method's
calibration (and interval); inputs without it get the one fitted on all methods.

When an h5 carries ``acceleration`` (and ``acceleration_effective``) attributes (``mriqa recon`` writes them),
the acquisition's R is printed beside the estimate and whether the interval covers it.

Errors (unreadable file, NaN, image smaller than 28 x 28, unknown ``--method``): one line, exit 2, no JSON file.
All-zero slices are skipped with a note.
"""
from __future__ import annotations

import argparse
import sys

ESTIMATORS = ("auto", "qf", "learned")
BATCH = 16  # images per forward pass


def _groups(records):
    """Consecutive records with the same shape, dtype and kind -> lists (stackable into one batch)."""
    group, key = [], None
    for r in records:
        k = (r.image.shape, r.image.dtype.str, r.kind)
        if group and k != key:
            yield group
            group = []
        group.append(r)
        key = k
    if group:
        yield group


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "estimate-r",
        help="estimate the acceleration R of reconstructions from the images alone",
        description="Estimate the undersampling factor R behind reconstructed MRI images (no k-space needed), "
        "with a calibrated interval.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="h5 (reconstruction / reconstruction_rss), DICOM, NIfTI, .npy or image files")
    p.add_argument("--method", default="auto", choices=ESTIMATORS,
                   help="estimator: learned, qf, or auto (learned when installed) (default auto)")
    p.add_argument("--json", metavar="OUT", default=None, help="write the records as JSON to OUT")
    p.add_argument("--h5-key", default=None, metavar="KEY", help="h5 dataset to read")
    p.set_defaults(func=run)
    return p


def h5_acquisition(path: str) -> dict | None:
    """``{"acceleration", "acceleration_effective", "method", "mask_type"}`` from an h5's attributes, or None."""
    from pathlib import Path

    if Path(path).suffix.lower() not in (".h5", ".hdf5"):
        return None
    try:
        import h5py

        with h5py.File(path, "r") as hf:
            attrs = dict(hf.attrs)
    except OSError:
        return None
    if "acceleration" not in attrs:
        return None

    def val(k):
        v = attrs.get(k)
        if v is None:
            return None
        if isinstance(v, bytes):
            return v.decode()
        return v.item() if hasattr(v, "item") else v

    return {k: val(k) for k in ("acceleration", "acceleration_effective", "method", "mask_type")}


def _fmt(v) -> str:
    return f"{v:.2f}"


def _table(rows) -> str:
    header = ("input", "slice", "estimator", "r_est", "r_low", "r_high", "note")
    cells = [header] + [(r["input"], "volume" if r["slice"] is None and r.get("_volume") else
                         ("-" if r["slice"] is None else str(r["slice"])), r["estimator"], _fmt(r["r_est"]),
                         _fmt(r["r_low"]), _fmt(r["r_high"]), "" if r["ood"] is None else f"OOD: {r['ood']}")
                        for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) if i < 3 or i == 6 else c[i].rjust(widths[i])
                               for i in range(len(header))).rstrip() for c in cells)


def run(args) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from recon.errors import InputError
    from recon.files import atomic_path
    from mriqa.imageio import read_images, record_name, records_with_signal
    from mriqa.restimate import load_estimator, volume_estimate
    from mriqa.restimate.ood import is_colour

    if args.json is not None and Path(args.json).is_dir():
        raise InputError(args.json, "--json must name a file, not a folder")
    est = load_estimator(args.method)
    pred = est.predictor if hasattr(est, "predictor") else est.wrapper
    rows: list[dict] = []
    notes: list[str] = []
    comparisons: list[str] = []
    for path in args.inputs:
        records = read_images(path, h5_key=args.h5_key)
        usable = records_with_signal(path, records, notes)
        acq = h5_acquisition(path)
        recon_method = acq.get("method") if acq else None
        out_rows = []
        halfwidths, log_rs, oods = [], [], []
        for group in _groups(usable):
            first = group[0].image
            if min(first.shape[:2]) < pred.min_input_size:
                raise InputError(record_name(group[0]), f"image is {first.shape[0]}x{first.shape[1]} pixels, smaller than "
                                                  f"the estimator's minimum input {pred.min_input_size}x"
                                                  f"{pred.min_input_size}")
            for a in range(0, len(group), BATCH):
                chunk = group[a:a + BATCH]
                batch = np.stack([r.image[..., 0] if r.image.ndim == 3 and r.image.shape[-1] == 1 else r.image
                                  for r in chunk])
                x, _ = pred.prepare(batch, kind=chunk[0].kind, source=[record_name(r) for r in chunk])
                res = est.estimate(x, colour=[is_colour(r.image) for r in chunk], recon_method=recon_method)
                for j, r in enumerate(chunk):
                    out_rows.append({"input": r.source, "slice": r.slice, "r_est": round(float(res["r_est"][j]), 4),
                                     "r_low": round(float(res["r_low"][j]), 4),
                                     "r_high": round(float(res["r_high"][j]), 4), "estimator": est.name,
                                     "ood": res["ood"][j]})
                    halfwidths.append(float(res["halfwidth"][j]))
                    log_rs.append(float(res["log_r"][j]))
                    oods.append(res["ood"][j])
        rows += out_rows
        if len(out_rows) > 1 or out_rows[0]["slice"] is not None:
            v = volume_estimate(log_rs, halfwidths, oods)
            vol = {"input": path, "slice": None, "r_est": round(v["r_est"], 4), "r_low": round(v["r_low"], 4),
                   "r_high": round(v["r_high"], 4), "estimator": est.name, "ood": v["ood"], "_volume": True}
            rows.append(vol)
        else:
            vol = out_rows[0]
        if acq is not None:
            nominal, eff = acq["acceleration"], acq.get("acceleration_effective")
            inside = vol["r_low"] <= float(nominal) <= vol["r_high"]
            eff_txt = f", effective {float(eff):.2f}" if eff is not None else ""
            comparisons.append(
                f"{path}: acquisition R = {float(nominal):g} (nominal{eff_txt}; from the file's attributes"
                f"{', method ' + str(recon_method) if recon_method else ''}); estimated R = {vol['r_est']:.2f} "
                f"[{vol['r_low']:.2f}, {vol['r_high']:.2f}] ({est.name}): "
                f"{'inside' if inside else 'OUTSIDE'} the interval, error {vol['r_est'] - float(nominal):+.2f}")
    records = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    if args.json is not None:
        with atomic_path(args.json, suffix=".json") as tmp:
            tmp.write_text(json.dumps(records, indent=2) + "\n")
    for note in notes:
        print(f"mriqa: note: {note}", file=sys.stderr)
    print(_table(rows))
    for line in comparisons:
        print(line)
    if args.json is not None:
        print(f"wrote {args.json}")
    return 0

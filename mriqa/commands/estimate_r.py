"""``mriqa estimate-r``: how accelerated was the acquisition behind a reconstruction? (images only)

::

    mriqa estimate-r INPUT... [--method auto|qf|learned] [--json OUT] [--h5-key KEY] [--max-pixels N]

The library: :func:`mriqa.restimate.records.estimate_r_files`. INPUT: anything ``mriqa score`` reads
(:func:`recon.io.images.read_images`): fastMRI-layout h5 (``reconstruction`` / ``reconstruction_rss``), DICOM
file or folder, NIfTI, .npy, .npz, PNG/TIFF/... One record per 2-D image
``{"input", "slice", "r_est", "r_low", "r_high", "estimator", "ood"}`` and, for an input with several slices,
one more volume-level record with ``"slice": null`` (:func:`mriqa.restimate.volume_estimate`). ``r_est`` is the
estimated nominal R, ``[r_low, r_high]`` the calibrated interval (conformal on validation reconstructions,
:mod:`mriqa.restimate.intervals`); ``ood`` is null, or why the input looks unlike the training reconstructions
(then the interval is the whole ``[1, 16]``; :mod:`mriqa.restimate.ood`). A colour image says so at once
(``ood`` "colour image", ``r_est`` null: no network is run on it).

Estimators (``--method``): ``rq`` (the reconstruction-quality network fine-tuned to log R on 31 subjects,
:mod:`mriqa.restimate.rq_based`), ``learned`` (QFNet fine-tuned to log R, :mod:`mriqa.restimate.learned`), ``qf``
(QF score + monotone calibration, :mod:`mriqa.restimate.qf_based`), ``auto`` = the first installed of rq and
learned, else qf. All use the h5's ``method`` attribute, as written by ``mriqa recon``, to pick that reconstruction method's
calibration (and interval); inputs without it get the one fitted on all methods.

When an h5 carries ``acceleration`` (and ``acceleration_effective``) attributes (``mriqa recon`` writes them;
:class:`recon.io.fastmri_h5.ReconstructionAttrs`), the acquisition's R is printed beside the estimate and
whether the interval covers it.

Batches: every input is estimated; one that fails (unreadable, NaN, smaller than 28 x 28, larger than
``--max-pixels``) is one line ``mriqa: error: FILE: problem`` on stderr and a record with ``"error"`` in the
JSON, and the exit code is 2 at the end. An unknown ``--method`` or an unwritable ``--json``: one line, exit 2,
before any input is read. All-zero slices are skipped with a note.
"""
from __future__ import annotations

import argparse

from mriqa.commands.shared import add_max_pixels, all_failed, exit_code, format_table, write_records

from mriqa.restimate import ESTIMATORS


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "estimate-r",
        help="estimate the acceleration R of reconstructions from the images alone",
        description="Estimate the undersampling factor R behind reconstructed MRI images (no k-space needed), "
        "with a calibrated interval.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="h5 (reconstruction / reconstruction_rss), DICOM, NIfTI, .npy, .npz or image files")
    p.add_argument("--method", default="auto", choices=ESTIMATORS,
                   help="estimator: rq, learned, qf, or auto (rq, else learned, when installed) (default auto)")
    p.add_argument("--json", metavar="OUT", default=None, help="write the records as JSON to OUT")
    p.add_argument("--h5-key", default=None, metavar="KEY", help="h5 dataset or .npz array to read")
    add_max_pixels(p)
    p.set_defaults(func=run)
    return p


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _table(rows) -> str:
    def where(r):
        label = "volume" if r.is_volume else ("-" if r.slice is None else str(r.slice))
        return label if r.volume is None else f"{r.volume}:{label}"

    return format_table(("input", "slice", "estimator", "r_est", "r_low", "r_high", "note"),
                        [(r.input, where(r), str(r.estimator), _fmt(r.r_est), _fmt(r.r_low), _fmt(r.r_high),
                          "error" if r.error else ("" if r.ood is None else f"OOD: {r.ood}")) for r in rows],
                        left=3)


def _comparison(r) -> str | None:
    """The estimate against the acquisition's R stated in the file, or None."""
    acq = r.acquisition
    if acq is None or r.r_est is None:
        return None
    nominal = float(acq.acceleration)
    inside = r.r_low <= nominal <= r.r_high
    eff = f", effective {acq.acceleration_effective:.2f}" if acq.acceleration_effective is not None else ""
    method = f", method {acq.method}" if acq.method else ""
    return (f"{r.input}: acquisition R = {nominal:g} (nominal{eff}; from the file's attributes{method}); "
            f"estimated R = {r.r_est:.2f} [{r.r_low:.2f}, {r.r_high:.2f}] ({r.estimator}): "
            f"{'inside' if inside else 'OUTSIDE'} the interval, error {r.r_est - nominal:+.2f}")


def run(args) -> int:
    from recon.io.output import check_writable
    from mriqa.restimate import load_estimator
    from mriqa.restimate.records import estimate_r_files

    if args.json is not None:
        check_writable(args.json, "--json")
    notes: list[str] = []
    rows = estimate_r_files(args.inputs, method=load_estimator(args.method), h5_key=args.h5_key,
                            max_pixels=args.max_pixels, notes=notes)
    failed = write_records(rows, args.json, notes)
    if all_failed(rows, failed):
        return 2  # nothing written, stdout empty: the errors are on stderr
    print(_table(rows))
    for r in rows:
        line = _comparison(r)
        if line:
            print(line)
    return exit_code(rows, failed, args.json)

"""Estimate R of files: the library under ``mriqa estimate-r``.

>>> from mriqa.restimate.records import estimate_r_files
>>> records = estimate_r_files(["sense.h5"], method="auto")
>>> [r.to_json() for r in records]     # per slice, then the volume: {"input", "slice", "r_est", ...}

Every input is read with :func:`recon.io.images.read_images` (one record per 2-D image). A colour image is
out of distribution at once: it gets ``ood = "colour image ..."``, the interval ``[1, 16]`` and no estimate
(``r_est`` None), without running any network. The others are normalised by the estimator's predictor
(``kind`` of the reader: MRI windowing for magnitudes), batched (consecutive images of one shape, dtype and
kind, :data:`BATCH` at a time; big images run tile by tile) and estimated. An input with several slices (or a
slice index) gets one more, volume-level record (``slice`` None, ``is_volume``; per volume of a 4-D NIfTI) from
:func:`mriqa.restimate.volume_estimate`.

An h5 written by ``mriqa recon`` carries its method and acquisition (:class:`recon.io.fastmri_h5.
ReconstructionAttrs`): the method selects that method's calibration and interval, and the acquisition's R is
kept on the input's summary record (``acquisition``) so that the estimate can be compared with it.

Failures are per input (unreadable, NaN, smaller than the estimator's minimum input, larger than
``max_pixels``): one record with ``error`` for that input; the others are still estimated.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from recon.errors import InputError
from recon.io.images import DEFAULT_MAX_PIXELS

#: images per forward pass
BATCH = 16


@dataclass
class RRecord:
    """The R estimate of one 2-D image, of a volume (``is_volume``), or the failure of an input (``error``).

    r_est: estimated nominal R (None: not estimated, a colour image); [r_low, r_high]: the calibrated
    interval; estimator: ``"qf"`` / ``"learned"``; ood: None or why the input looks unlike the training
    reconstructions (then the interval is [1, 16]); volume: the 4th index of a 4-D NIfTI; acquisition: the
    file's :class:`~recon.io.fastmri_h5.ReconstructionAttrs` when it states an ``acceleration`` (on the
    input's summary record only; not part of the JSON)."""

    input: str
    slice: int | None = None
    r_est: float | None = None
    r_low: float | None = None
    r_high: float | None = None
    estimator: str | None = None
    ood: str | None = None
    volume: int | None = None
    error: str | None = None
    is_volume: bool = False
    acquisition: object | None = field(default=None, repr=False)

    def error_message(self) -> str:
        """``FILE: problem`` of a failure."""
        return self.error if self.error.startswith(self.input) else f"{self.input}: {self.error}"

    def to_json(self) -> dict:
        """``{"input", ["volume"], "slice", "r_est", "r_low", "r_high", "estimator", "ood"}``; a failure:
        ``{"input", "slice", "estimator", "error"}``."""
        out: dict = {"input": self.input}
        if self.volume is not None:
            out["volume"] = self.volume
        out["slice"] = self.slice
        if self.error is not None:
            return {**out, "estimator": self.estimator, "error": self.error}
        return {**out, "r_est": self.r_est, "r_low": self.r_low, "r_high": self.r_high, "estimator": self.estimator,
                "ood": self.ood}


def _attributes(path: str):
    """The reconstruction attributes of an h5 input, else None."""
    from recon.io.fastmri_h5 import read_reconstruction_attrs
    from recon.io.volumes import H5_SUFFIXES, sniff_format

    if not (path.lower().endswith(H5_SUFFIXES) or (os.path.isfile(path) and sniff_format(path) == "h5")):
        return None
    return read_reconstruction_attrs(path)


def _round(v):
    return None if v is None else round(float(v), 4)


def _estimate_input(path: str, est, h5_key, max_pixels, notes) -> list[RRecord]:
    from recon.io.images import read_images, record_name, records_with_signal
    from mriqa.restimate import volume_estimate
    from mriqa.restimate.intervals import R_BOUNDS
    from mriqa.restimate.ood import COLOUR_REASON, is_colour
    from mriqa.scoring import batch_groups

    input_notes: list[str] = []  # kept only when the input succeeds
    records = records_with_signal(path, read_images(path, h5_key=h5_key, max_pixels=max_pixels), input_notes)
    attrs = _attributes(path)
    recon_method = attrs.method if attrs is not None else None
    pred = est.predictor
    rows: list[RRecord] = []
    per_volume: dict = {}  # volume index -> (log_r, halfwidth, ood) lists
    for group in batch_groups(records):
        first = group[0].image
        if min(first.shape[:2]) < pred.min_input_size:
            raise InputError(record_name(group[0]), f"image is {first.shape[0]}x{first.shape[1]} pixels, smaller "
                             f"than the estimator's minimum input {pred.min_input_size}x{pred.min_input_size}")
        for a in range(0, len(group), BATCH):
            chunk = group[a:a + BATCH]
            colour = [is_colour(r.image) for r in chunk]  # before any network: "colour image" at once
            gray = [r for r, c in zip(chunk, colour) if not c]
            res = None
            if gray:
                batch = np.stack([r.image[..., 0] if r.image.ndim == 3 and r.image.shape[-1] == 1 else r.image
                                  for r in gray])
                x, _ = pred.prepare(batch, kind=gray[0].kind, source=[record_name(r) for r in gray])
                res = est.estimate(x, colour=[False] * len(gray), recon_method=recon_method)
            k = 0
            for r, c in zip(chunk, colour):
                acc = per_volume.setdefault(r.volume, ([], [], []))
                if c:
                    rows.append(RRecord(r.source, r.slice, None, R_BOUNDS[0], R_BOUNDS[1], est.name, COLOUR_REASON,
                                        r.volume))
                    for values, value in zip(acc, (np.nan, np.nan, COLOUR_REASON)):
                        values.append(value)
                    continue
                rows.append(RRecord(r.source, r.slice, _round(res["r_est"][k]), _round(res["r_low"][k]),
                                    _round(res["r_high"][k]), est.name, res["ood"][k], r.volume))
                for values, value in zip(acc, (float(res["log_r"][k]), float(res["halfwidth"][k]), res["ood"][k])):
                    values.append(value)
                k += 1
    acquisition = attrs if attrs is not None and attrs.acceleration is not None else None
    notes += input_notes
    if len(rows) > 1 or rows[0].slice is not None:
        out = []
        for volume, (log_rs, halfwidths, oods) in per_volume.items():
            v = volume_estimate(log_rs, halfwidths, oods)
            out += [r for r in rows if r.volume == volume]
            out.append(RRecord(path, None, _round(v["r_est"]), _round(v["r_low"]), _round(v["r_high"]), est.name,
                               v["ood"], volume, is_volume=True, acquisition=acquisition))
        return out
    rows[0].acquisition = acquisition
    return rows


def estimate_r_files(paths: Sequence[str | os.PathLike], method="auto", h5_key: str | None = None,
                     max_pixels: int | None = DEFAULT_MAX_PIXELS, notes: list[str] | None = None) -> list[RRecord]:
    """Estimate R for every 2-D image of every input (module docstring). ``method``: ``"auto"``, ``"qf"``,
    ``"learned"`` or an :class:`~mriqa.restimate.REstimator`. ``notes`` collects notes (skipped all-zero
    slices).

    Raises:
        InputError: an unknown ``method`` or a missing estimator (weights, calibration).
    """
    from mriqa.restimate import load_estimator
    from mriqa.scoring import expand_inputs, failure_message

    est = load_estimator(method) if isinstance(method, str) else method
    notes = [] if notes is None else notes
    out: list[RRecord] = []
    for path in expand_inputs(paths):
        try:
            out += _estimate_input(path, est, h5_key, max_pixels, notes)
        except (InputError, OSError) as exc:
            message = failure_message(path, exc)
            out.append(RRecord(path, None, estimator=est.name,
                               error=message[len(path) + 2:] if message.startswith(f"{path}: ") else message))
    return out

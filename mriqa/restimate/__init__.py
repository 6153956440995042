"""Acceleration (R) estimation from reconstructed images alone (no k-space, no mask, no reference).

Two estimators with one interface, :class:`REstimator`: ``estimate(x, colour=None, recon_method=None) -> dict of
[N] arrays`` (``r_est``, ``r_low``, ``r_high``, ``log_r``, ``halfwidth``, ``ood``), on model inputs ``x``
``[N, 1, H, W]`` in [0, 1] made by the estimator's own ``predictor`` (a :class:`mriqa.predictor.QFPredictor`:
``predictor.prepare(images, kind="mri")`` normalises exactly as the QF predictor does):

- :class:`~mriqa.restimate.qf_based.QFREstimator` (``"qf"``): gray QF score, monotone calibration QF -> R;
- :class:`~mriqa.restimate.learned.LearnedREstimator` (``"learned"``): QFNet backbone fine-tuned to log R;
- :class:`~mriqa.restimate.rq_based.RQREstimator` (``"rq"``): the reconstruction-quality network (RQNet, 119 px
  receptive field + whole-image statistics) fine-tuned to log R on 31 subjects; its ``predictor.prepare`` gives
  :func:`mriqa.models.reconq.normalize_magnitude` inputs in [0, 2].

Intervals: split-conformal on log R (:mod:`mriqa.restimate.intervals`); inputs unlike the training data get
``[1, 16]`` with the reason in ``ood`` (:mod:`mriqa.restimate.ood`). :func:`volume_estimate` combines the
slices of a volume; :func:`mriqa.restimate.records.estimate_r_files` is the library under ``mriqa estimate-r``
(files in, typed records out).

>>> from mriqa.restimate import load_estimator, estimate_images
>>> est = load_estimator("auto")                      # rq, else learned, if installed; else qf
>>> out = estimate_images(est, volume)                # volume: [S, H, W] magnitude (any scale)
>>> out["r_est"], out["r_low"], out["r_high"]         # [S] each
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from recon.errors import InputError
from mriqa.restimate.intervals import R_BOUNDS

if TYPE_CHECKING:
    from mriqa.predictor import QFPredictor

ESTIMATORS = ("auto", "qf", "learned", "rq")
MAX_OOD_FRACTION = 0.5


@runtime_checkable
class REstimator(Protocol):
    """What an R estimator is (:class:`~mriqa.restimate.qf_based.QFREstimator` and
    :class:`~mriqa.restimate.learned.LearnedREstimator` subclass it).

    name: how records name it (``"qf"``, ``"learned"``). predictor: the QF predictor whose ``prepare`` makes the
    model inputs (and whose ``min_input_size`` is the smallest image accepted). :meth:`estimate`: the dict of
    ``[N]`` arrays of the module docstring."""

    name: str
    predictor: "QFPredictor"

    def estimate(self, x, colour: list[bool] | None = None, recon_method: str | None = None) -> dict:
        """R of model inputs ``x`` ``[N, 1, H, W]`` in [0, 1]; ``colour``: per-image flags
        (:func:`mriqa.restimate.ood.is_colour`); ``recon_method``: the reconstruction method when known."""
        ...


def load_estimator(method: str = "auto") -> REstimator:
    """``"qf"``, ``"learned"``, ``"rq"`` or ``"auto"`` (the first installed of rq, learned; else qf)."""
    from mriqa.restimate import learned, qf_based, rq_based

    if method not in ESTIMATORS:
        raise InputError(None, f"unknown R estimator {method!r}: expected one of {', '.join(ESTIMATORS)}")
    if method == "rq" or (method == "auto" and rq_based.WEIGHTS.is_file()):
        return rq_based.RQREstimator.load()
    if method == "learned" or (method == "auto" and learned.WEIGHTS.is_file()):
        return learned.LearnedREstimator.load()
    return qf_based.QFREstimator.load()


def prepare(estimator, images, kind: str | None = "mri", source=None):
    """Raw images (``[H, W]``, ``[N, H, W]``, ``[H, W, C]``, ...; see :mod:`mriqa.predictor`) -> model inputs
    ``[N, 1, H, W]`` with the estimator's own input handling (its predictor's ``prepare``: the QF predictor's
    [0, 1] windowing, or the magnitude normalisation of the rq estimator)."""
    x, _ = estimator.predictor.prepare(images, kind=kind, source=source)
    return x


def estimate_images(estimator, images, kind: str | None = "mri", recon_method: str | None = None,
                    colour=None, source=None) -> dict:
    """Estimate R for raw images (see :func:`prepare`); returns the estimator's dict of ``[N]`` arrays."""
    x = prepare(estimator, images, kind=kind, source=source)
    return estimator.estimate(x, colour=colour, recon_method=recon_method)


def point_estimates(estimator, images, kind: str | None = "mri", recon_method: str | None = None,
                    source=None) -> np.ndarray:
    """The estimator's R ``[N]`` of raw images (see :func:`prepare`), clipped to the interval bounds as
    :func:`estimate_images`' ``r_est``, without its interval and out-of-distribution checks (learned and rq
    estimators: :meth:`~mriqa.restimate.learned.LearnedREstimator.point_estimate`; others: their ``estimate``)."""
    from mriqa.restimate.intervals import R_BOUNDS

    x = prepare(estimator, images, kind=kind, source=source)
    if hasattr(estimator, "point_estimate"):
        return np.clip(np.exp(estimator.point_estimate(x, recon_method)[0]), *R_BOUNDS)
    return np.asarray(estimator.estimate(x, recon_method=recon_method)["r_est"], np.float64)


def volume_estimate(log_r, halfwidth, ood) -> dict:
    """One estimate for a volume from its slices (same acquisition, so the same R).

    log_r: per-slice log R ``[S]`` (NaN for a slice that was not estimated: a colour image); halfwidth:
    per-slice conformal half-widths ``[S]`` (log R); ood: per-slice reasons (None = in distribution). The
    volume's log R is the mean over the in-distribution slices and its interval is that mean +- the median
    half-width (slice errors of one acquisition are correlated, so we do not shrink it). More than half of the
    slices out of distribution -> ``[1, 16]`` with a reason (and ``r_est`` None when no slice was estimated).
    Returns ``{"r_est", "r_low", "r_high", "ood"}``."""
    from mriqa.restimate.intervals import interval

    log_r = np.asarray(log_r, dtype=np.float64)
    ok = np.array([o is None for o in ood])
    if ok.sum() == 0 or (1 - ok.mean()) > MAX_OOD_FRACTION:
        known = log_r[np.isfinite(log_r)]
        r_est = float(np.clip(np.exp(np.mean(known)), *R_BOUNDS)) if known.size else None
        return {"r_est": r_est, "r_low": R_BOUNDS[0], "r_high": R_BOUNDS[1],
                "ood": f"{int((~ok).sum())} of {len(ok)} slices out of distribution"}
    mean = float(np.mean(log_r[ok]))
    r_est, r_low, r_high = interval(mean, float(np.median(np.asarray(halfwidth)[ok])))
    return {"r_est": float(r_est), "r_low": float(r_low), "r_high": float(r_high), "ood": None}

"""Intervals for R estimates: split-conformal half-widths on log R, fitted on the validation split.

Every estimator predicts ``log R``; its interval is ``[exp(log r_est - q), exp(log r_est + q)]`` clipped to
:data:`R_BOUNDS`, where ``q`` is the conformal quantile of the absolute log-residuals ``|log r_est - log R|``
of validation reconstructions (MNI152, a volume no estimator was trained on): the
``ceil((n + 1) * coverage) / n`` empirical quantile (Vovk et al.; exact marginal coverage for exchangeable
data). The test volume (Colin27) is a different brain, so coverage there is measured, not guaranteed; we fit at
``coverage = 0.9`` to keep the measured coverage above the issue's 80 %.

An input judged out of distribution (:mod:`mriqa.restimate.ood`) gets the whole range :data:`R_BOUNDS`.
"""
from __future__ import annotations

import math

import numpy as np

#: the widest interval we ever report (R of a reconstruction from 1 = fully sampled to 16); the training
#: data covers nominal R 2..12.
R_BOUNDS = (1.0, 16.0)


def conformal_halfwidth(residuals, coverage: float = 0.9) -> float:
    """``q`` such that ``|residual| <= q`` for a fraction >= ``coverage`` of new exchangeable samples.

    residuals: log-residuals ``[n]`` (any sign); returns the finite-sample conformal quantile of ``|r|``
    (``inf`` when n is too small for the coverage asked)."""
    r = np.sort(np.abs(np.asarray(residuals, dtype=np.float64).ravel()))
    n = r.size
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    k = math.ceil((n + 1) * coverage)
    if n == 0 or k > n:
        return float("inf")
    return float(r[k - 1])


def interval(log_r, halfwidth: float, bounds: tuple[float, float] = R_BOUNDS):
    """``(r_est, r_low, r_high)`` from ``log_r`` (scalar or ``[N]``) and a half-width on log R, clipped to
    ``bounds``; the point estimate is clipped too."""
    lo, hi = bounds
    log_r = np.asarray(log_r, dtype=np.float64)
    r_est = np.clip(np.exp(log_r), lo, hi)
    r_low = np.clip(np.exp(log_r - halfwidth), lo, hi)
    r_high = np.clip(np.exp(log_r + halfwidth), lo, hi)
    return r_est, r_low, r_high


def coverage(r_true, r_low, r_high) -> float:
    """Fraction of ``r_true`` inside ``[r_low, r_high]`` (arrays ``[N]``)."""
    r_true = np.asarray(r_true, dtype=np.float64)
    return float(np.mean((r_true >= np.asarray(r_low) - 1e-9) & (r_true <= np.asarray(r_high) + 1e-9)))

"""The recon score joined with the acceleration the image shows: an image-only score that falls with R.

The recon model (``load_predictor("recon")``) ranks methods as the SSIM does but, within one method, barely sees R:
MoDL's SSIM falls by 0.005-0.03 between neighbouring R, less than the score's error on one image, so over a
sequence of R the score is nearly flat (held-out Spearman(score, R) -0.38 for MoDL). The rq acceleration estimator
(``mriqa.restimate``, ``load_estimator("rq")``), trained on the same kind of reconstructions, reads R from the
image itself: its aliasing replicas, its spectrum's deficit along phase-encode. :func:`r_aware_score` joins them,

    ``score * r_est ** -power``    (``power`` = :data:`R_AWARE_POWER`; in (0, 1], higher is better)

a ranking score like the k-space combination (:mod:`mriqa.recon_quality.kspace`), no longer an SSIM estimate; it
needs nothing but the magnitude image. ``power`` was chosen on the validation subjects (IXI 31-35) by
``scripts/eval_kspace_quality.py``, which prints how it ranks held-out subjects and the real 16-coil k-space
(docs/rq/kspace.md). Where the estimator fails (the real scan, read as R 10 when fully sampled: docs/r/heldout.md)
this score inherits its error.
"""
from __future__ import annotations

import numpy as np

__all__ = ["R_AWARE_POWER", "r_aware_score", "r_aware_scores"]

R_AWARE_POWER = 0.1  # chosen on the validation subjects by scripts/eval_kspace_quality.py (docs/rq/kspace.md)


def r_aware_score(image_score, r_est, power: float = R_AWARE_POWER) -> np.ndarray:
    """``image_score * r_est ** -power`` elementwise. ``r_est`` >= 1 (clipped there: an estimate below 1 says "fully
    sampled"); a NaN estimate (not estimated) leaves the image score as it is."""
    score = np.asarray(image_score, np.float64)
    r = np.asarray(r_est, np.float64)
    factor = np.where(np.isfinite(r), np.maximum(r, 1.0), 1.0) ** -float(power)
    return score * factor


def r_aware_scores(images, *, pool: str = "mean", predictor=None, estimator=None, batch: int = 64,
                   power: float = R_AWARE_POWER) -> dict[str, np.ndarray]:
    """Score MRI magnitudes ``[N, H, W]`` (any scale): ``{"score", "r_est", "r_aware"}``, each ``[N]``
    (``r_est``: :func:`mriqa.restimate.point_estimates`, the estimate without its interval and
    out-of-distribution checks; ``mriqa estimate-r`` and ``mriqa score --r-aware`` run them). ``predictor``: a loaded recon predictor (default
    ``load_predictor("recon")``); ``estimator``: a loaded R estimator (default ``load_estimator("rq")``)."""
    from mriqa.predictor import load_predictor
    from mriqa.restimate import load_estimator, point_estimates

    predictor = predictor or load_predictor("recon", device="cpu", batch_size=batch)
    estimator = estimator or load_estimator("rq")
    images = np.asarray(images)
    scores, r_est = [], []
    for a in range(0, len(images), batch):
        chunk = images[a:a + batch]
        scores.append(predictor.score(chunk, pool=pool, kind="mri"))
        r_est.append(point_estimates(estimator, chunk, kind="mri"))
    score, r = np.concatenate(scores), np.concatenate(r_est)
    return {"score": score, "r_est": r, "r_aware": r_aware_score(score, r, power)}

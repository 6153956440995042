"""Out-of-distribution checks: inputs unlike the training reconstructions get the widest interval.

The estimators were fitted on magnitude reconstructions of simulated brain k-space (8 coils, 128 x 128,
R 2..12). On an input unlike those they must not return a confident wrong answer. A record is flagged
(``ood`` = the reason, a short string) and its interval set to :data:`mriqa.restimate.intervals.R_BOUNDS`
(``[1, 16]``) when any of these holds:

1. ``colour``: a colour image (3 or 4 channels that differ by more than 2/255): MRI magnitudes are gray.
2. ``noise-like``: the neighbour correlation of the [0, 1] model input (mean of the lag-1 correlation along
   rows and columns, :func:`neighbour_correlation`) is below ``min_correlation``: every reconstruction seen in
   training, even zero-filled at R = 12, is spatially smooth at the pixel scale (correlation > 0.5), pure
   noise has ~0. The threshold is stored with the estimator (half the 0.1 % quantile of the training inputs).
3. ``no anatomy``: the foreground mask (:func:`mriqa.pooling.foreground_mask`) covers under 2 % of the image.
4. estimator-specific checks, stored with each estimator:
   - learned: the spread (foreground-weighted standard deviation) of the per-cell log R map above
     ``max_spread`` (1.5 x its 99th percentile on validation reconstructions), or a pooled log R outside
     ``[log 1.5, log 14]`` (the network extrapolating beyond R 2..12);
   - QF-based: the QF score outside the range of the training reconstructions widened by 0.05.
"""
from __future__ import annotations

import numpy as np

MIN_FOREGROUND = 0.02
COLOUR_TOL = 2.0 / 255.0


COLOUR_REASON = "colour image (estimators are fitted on gray MRI magnitudes)"


def is_colour(image) -> bool:
    """``image`` as read, ``[H, W]`` or ``[H, W, C]``: True for 3/4 channels whose colour channels differ
    (by more than 2/255 of the full scale somewhere). Reads the image in blocks of rows (bounded memory)."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] < 3:
        return False
    if arr.dtype == np.uint8:
        scale = 255.0
    elif arr.dtype == np.uint16:
        scale = 65535.0
    else:
        scale = max(1.0, float(arr[..., :3].max()))
    for start in range(0, arr.shape[0], 256):
        rgb = arr[start: start + 256, :, :3].astype(np.float64) / scale
        if np.max(np.abs(rgb - rgb.mean(axis=-1, keepdims=True))) > COLOUR_TOL:
            return True
    return False


def neighbour_correlation(x) -> np.ndarray:
    """Mean of the lag-1 Pearson correlations along rows and along columns.

    x: model inputs ``[N, H, W]`` or ``[N, 1, H, W]`` in [0, 1] (numpy or torch) -> float64 ``[N]``
    (0 for a constant image)."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim == 4:
        a = a[:, 0]
    out = np.zeros(len(a))
    for i, img in enumerate(a):
        vals = []
        for u, v in ((img[1:, :], img[:-1, :]), (img[:, 1:], img[:, :-1])):
            u = u.ravel() - u.mean()
            v = v.ravel() - v.mean()
            den = np.sqrt((u * u).sum() * (v * v).sum())
            vals.append(float((u * v).sum() / den) if den > 0 else 0.0)
        out[i] = float(np.mean(vals))
    return out


def foreground_fraction(x) -> np.ndarray:
    """Fraction of pixels in the anatomy mask, ``[N, H, W]`` / ``[N, 1, H, W]`` in [0, 1] -> ``[N]``."""
    from mriqa.pooling import foreground_mask

    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim == 4:
        a = a[:, 0]
    return np.array([foreground_mask(img).mean() for img in a])


def image_checks(x, colour: list[bool] | None, min_correlation: float) -> list[str | None]:
    """Checks 1-3 of the module docstring for model inputs ``x`` ``[N, 1, H, W]`` in [0, 1]; ``colour``:
    per-image result of :func:`is_colour` on the raw images (None: all gray). Returns one reason or None
    per image."""
    corr = neighbour_correlation(x)
    fg = foreground_fraction(x)
    reasons: list[str | None] = []
    for i in range(len(corr)):
        if colour is not None and colour[i]:
            reasons.append(COLOUR_REASON)
        elif corr[i] < min_correlation:
            reasons.append(f"noise-like image (neighbour correlation {corr[i]:.2f} < {min_correlation:.2f})")
        elif fg[i] < MIN_FOREGROUND:
            reasons.append(f"no anatomy found (foreground {100 * fg[i]:.1f} % of the image)")
        else:
            reasons.append(None)
    return reasons

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
   - QF-based: the QF score outside the range of the training reconstructions widened by 0.05;
   - rq: the learned estimator's two checks (its own thresholds), more than :data:`MAX_FLAT_FRACTION` of the
     object exactly flat (:func:`flat_fraction`: a drawing), or the outlier head (:func:`fit_outlier_head`,
     :func:`outlier_logits`) above its threshold.
"""
from __future__ import annotations

import numpy as np

from mriqa.pooling import neighbour_correlation

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
            reasons.append(f"constant or noise-like image (neighbour correlation {corr[i]:.2f} < "
                           f"{min_correlation:.2f})")
        elif fg[i] < MIN_FOREGROUND:
            reasons.append(f"no anatomy found (foreground {100 * fg[i]:.1f} % of the image)")
        else:
            reasons.append(None)
    return reasons


# ------------------------------------------------------------------------------- learned outlier head (rq)
#: the feature-space check of the rq estimator (:mod:`mriqa.restimate.rq_based`): a logistic regression on the
#: network's whole-image statistics (:meth:`mriqa.models.reconq.RQNet.logits_and_stats`) and the image's
#: spectral profiles, fitted by its trainer to tell training reconstructions from negatives (gray photos of one
#: folder, :func:`synthetic_pictures`, noise: "outlier exposure"), thresholded so that OUTLIER_KEEP of the
#: validation reconstructions pass.
OUTLIER_KEEP = 0.99


def synthetic_pictures(rng: np.random.Generator, n: int, size: int = 128) -> list[np.ndarray]:
    """``n`` non-MRI gray pictures ``[size, size]`` in [0, 1], cycling through six kinds: checkerboards, linear
    gradients, sinusoidal gratings, random discs on black, random rectangles, and smooth random fields; each
    with random parameters from ``rng``."""
    from scipy.ndimage import gaussian_filter

    yy, xx = np.mgrid[0:size, 0:size] / float(size - 1)
    out = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            period = rng.uniform(0.03, 0.3)
            img = ((np.floor(yy / period) + np.floor(xx / period)) % 2) * rng.uniform(0.5, 1) + rng.uniform(0, 0.3)
        elif kind == 1:
            a, b = rng.uniform(-1, 1, 2)
            img = a * xx + b * yy
        elif kind == 2:
            f, phi = rng.uniform(2, 40, 2), rng.uniform(0, 2 * np.pi)
            img = np.sin(f[0] * xx + f[1] * yy + phi)
        elif kind in (3, 4):
            img = np.zeros((size, size))
            for _ in range(int(rng.integers(2, 10))):
                cy, cx, r = rng.uniform(0, size, 3) * (1, 1, 0.2)
                if kind == 3:
                    sel = (yy * (size - 1) - cy) ** 2 + (xx * (size - 1) - cx) ** 2 < (r + 3) ** 2
                else:
                    sel = (np.abs(yy * (size - 1) - cy) < r + 3) & (np.abs(xx * (size - 1) - cx) < 2 * r + 3)
                img[sel] = rng.uniform(0.2, 1.0)
        else:
            img = gaussian_filter(rng.standard_normal((size, size)), rng.uniform(1, 8))
        img = img - img.min()
        out.append((img / max(float(img.max()), 1e-6)).astype(np.float32))
    return out


def fit_outlier_head(inliers: np.ndarray, outliers: np.ndarray, val_inliers: np.ndarray, l2: float = 1e-2,
                     keep: float = OUTLIER_KEEP) -> dict:
    """Logistic regression (L2-penalised, classes weighted equally) of outlier vs inlier on features ``[N, F]``;
    returns ``{"mean", "scale", "w", "b", "threshold", "train_outlier_recall"}`` (lists/floats for the weights'
    metadata). ``threshold``: the ``keep`` quantile of the validation inliers' logits (so ``1 - keep`` of them
    are flagged)."""
    import torch

    mean = inliers.mean(0)
    scale = inliers.std(0) + 1e-6
    x = torch.from_numpy(np.concatenate([inliers, outliers]) - mean) / torch.from_numpy(scale)
    y = torch.cat([torch.zeros(len(inliers)), torch.ones(len(outliers))]).double()
    weight = torch.where(y > 0, 0.5 / len(outliers), 0.5 / len(inliers)).double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = x.double() @ w + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none") * weight).sum() \
            + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    head = {"mean": mean.tolist(), "scale": scale.tolist(), "w": w.detach().numpy().tolist(), "b": float(b.detach())}
    threshold = float(np.quantile(outlier_logits(val_inliers, head), keep))
    head["threshold"] = threshold
    head["train_outlier_recall"] = float(np.mean(outlier_logits(outliers, head) > threshold))
    return head


def outlier_logits(features: np.ndarray, head: dict) -> np.ndarray:
    """Logits (higher = less like the training reconstructions) of features ``[N, F]`` under ``head``."""
    z = (np.asarray(features, np.float64) - np.asarray(head["mean"])) / np.asarray(head["scale"])
    return z @ np.asarray(head["w"]) + float(head["b"])


#: share of the object (pixels above 5 % of the normalised scale) that may be exactly flat (3 x 3 variance
#: below 1e-8) in an MRI reconstruction: measured 0 on every training, validation, real and MSD reconstruction
#: and reference; drawings and piecewise-constant pictures have 0.6-0.95
MAX_FLAT_FRACTION = 0.05


def flat_fraction(x) -> np.ndarray:
    """Share of object pixels whose 3 x 3 neighbourhood is exactly constant, for model inputs ``[N, 1, H, W]`` /
    ``[N, H, W]`` -> ``[N]``: noise and blur make it 0 in any acquired image."""
    from scipy.ndimage import uniform_filter

    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim == 4:
        a = a[:, 0]
    out = np.zeros(len(a))
    for i, img in enumerate(a):
        scale = float(img.max()) or 1.0
        m = uniform_filter(img / scale, 3)
        var = uniform_filter((img / scale) ** 2, 3) - m * m
        fg = img / scale > 0.05
        out[i] = float(((var < 1e-8) & fg).sum() / max(1, fg.sum()))
    return out

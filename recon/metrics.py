"""Reconstruction and image metrics, numpy, computed in float64: THE PSNR / SSIM of this code base.

Default conventions are fastMRI's (``fastmri/evaluate.py``), per volume: inputs are magnitude volumes
``[slices, H, W]`` (a 2-D ``[H, W]`` image counts as one slice), target and prediction of the same shape, on the
same (RSS) scale.

- ``nmse = ||gt - pred||^2 / ||gt||^2`` over the whole volume.
- ``psnr = 10 log10(data_range^2 / MSE)`` over all pixels with ``data_range = gt.max()`` (the volume max), dB
  (the numbers of ``skimage.metrics.peak_signal_noise_ratio``).
- ``ssim``: ``skimage.metrics.structural_similarity`` per slice (7x7 uniform window, skimage's defaults) with
  ``data_range = gt.max()`` of the volume, averaged over slices.

``maxval`` overrides the data range as in fastMRI. The photo / IQA conventions (:mod:`mriqa.iqa.metrics_registry`,
restoration tables) are options of the same functions: ``maxval=1`` for images in [0, 1], ``channel_axis=-1``
for one colour image ``[H, W, C]`` (PSNR over all channels; SSIM averaged over channels),
``window="gaussian"`` for Wang et al.'s Gaussian window (sigma 1.5, no sample-covariance correction: pyiqa's
settings) and ``max_db`` to cap the PSNR of identical pairs. Shape mismatches, NaN/Inf and (when the data range
comes from the target) an all-zero target raise ``recon.errors.InputError``.
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from recon.errors import InputError

__all__ = ["nmse", "psnr", "ssim", "evaluate_volume", "support_metrics", "object_mask"]


def _prepare(gt, pred, channel_axis: int | None = None, need_signal: bool = True) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    for name, a in (("target", gt), ("reconstruction", pred)):
        if np.iscomplexobj(a):
            raise InputError(None, f"{name} must be a real magnitude volume, got dtype {a.dtype}")
        if channel_axis is not None and a.ndim not in (2, 3):
            raise InputError(None, f"{name} must be an image [H, W] or [H, W, C], got shape {a.shape}")
        if a.ndim not in (2, 3):
            raise InputError(None, f"{name} must be [slices, H, W] or [H, W], got shape {a.shape}")
    if gt.shape != pred.shape:
        raise InputError(None, f"target shape {gt.shape} and reconstruction shape {pred.shape} differ")
    gt = gt.astype(np.float64, copy=False)
    pred = pred.astype(np.float64, copy=False)
    if gt.ndim == 2 and channel_axis is None:
        gt, pred = gt[None], pred[None]
    if not np.isfinite(gt).all():
        raise InputError(None, "target has NaN/Inf values")
    if not np.isfinite(pred).all():
        raise InputError(None, "reconstruction has NaN/Inf values")
    if need_signal and not np.any(gt):
        raise InputError(None, "target is all zeros")
    return gt, pred


def _data_range(gt: np.ndarray, maxval: float | None) -> float:
    rng = float(gt.max()) if maxval is None else float(maxval)
    if not rng > 0:
        raise InputError(None, f"data range (target max) must be > 0, got {rng}")
    return rng


def nmse(gt, pred) -> float:
    """Normalised MSE ``||gt - pred||^2 / ||gt||^2`` over the volume (dimensionless)."""
    gt, pred = _prepare(gt, pred)
    return float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def psnr(gt, pred, maxval: float | None = None, *, channel_axis: int | None = None,
         max_db: float | None = None) -> float:
    """PSNR in dB, ``10 log10(maxval^2 / MSE)`` over every pixel (and channel), data range ``maxval``
    (default: the target volume's max, fastMRI's convention).

    ``channel_axis``: the arrays are one image ``[H, W, C]`` (C channels on that axis) rather than slices.
    ``max_db``: the MSE is floored at ``maxval^2 / 10^(max_db / 10)``, so identical images give ``max_db``
    instead of ``inf``."""
    gt, pred = _prepare(gt, pred, channel_axis, need_signal=maxval is None)
    rng = _data_range(gt, maxval)
    mse = np.mean((gt - pred) ** 2)
    if max_db is not None:
        mse = max(mse, rng ** 2 / 10 ** (max_db / 10))
    if mse == 0:
        return float("inf")  # identical images: said so, without NumPy's divide-by-zero warning on stderr
    return float(10 * np.log10(rng ** 2 / mse))


SSIM_WINDOWS = {"uniform": ({}, 7), "gaussian": ({"gaussian_weights": True, "sigma": 1.5,
                                                  "use_sample_covariance": False}, 11)}


def ssim(gt, pred, maxval: float | None = None, *, channel_axis: int | None = None,
         window: str = "uniform") -> float:
    """Mean over slices of skimage SSIM with data range ``maxval`` (default: the target volume's max).

    ``window``: ``"uniform"`` (7 x 7, skimage's defaults; fastMRI) or ``"gaussian"`` (sigma 1.5, 11 x 11, no
    sample-covariance correction; Wang et al. 2004 / pyiqa). ``channel_axis``: the arrays are one image
    ``[H, W, C]``; the SSIM is the mean over its channels."""
    if window not in SSIM_WINDOWS:
        raise InputError(None, f"unknown SSIM window {window!r}; choose from {', '.join(SSIM_WINDOWS)}")
    gt, pred = _prepare(gt, pred, channel_axis, need_signal=maxval is None)
    rng = _data_range(gt, maxval)
    options, size = SSIM_WINDOWS[window]
    with_channels = channel_axis is not None and gt.ndim == 3
    plane = tuple(np.delete(gt.shape, channel_axis % 3)) if with_channels else gt.shape[-2:]
    if min(plane) < size:
        raise InputError(None, f"SSIM ({window} window) needs images of at least {size} x {size} pixels, "
                               f"got {plane[0]} x {plane[1]}")
    if channel_axis is not None:
        axis = channel_axis if with_channels else None
        return float(structural_similarity(gt, pred, data_range=rng, channel_axis=axis, **options))
    return float(np.mean([structural_similarity(g, p, data_range=rng, **options) for g, p in zip(gt, pred)]))


def evaluate_volume(gt, pred, maxval: float | None = None) -> dict[str, float]:
    """``{"NMSE": ..., "PSNR": ..., "SSIM": ...}`` for one volume (fastMRI's names)."""
    return {"NMSE": nmse(gt, pred), "PSNR": psnr(gt, pred, maxval), "SSIM": ssim(gt, pred, maxval)}


def support_metrics(gt, pred, support, maxval: float, with_ssim: bool = False) -> dict[str, float]:
    """PSNR / NMSE over the pixels inside ``support`` (bool, same shape) only: the RSS reference's noise floor
    outside the coil maps' support, which SENSE-type methods leave at 0, excluded; data range ``maxval``.

    Keys ``PSNR_in``, ``NMSE_in`` and, with ``with_ssim``, ``SSIM_in``: the mean of skimage's SSIM map over the
    support (per slice, then averaged; windows at the support's edge still see the background).
    """
    gt, pred = _prepare(gt, pred)
    support = np.asarray(support, dtype=bool).reshape(gt.shape)
    err = (pred - gt)[support]
    mse = float(np.mean(err ** 2))
    out = {"PSNR_in": float(10 * np.log10(maxval ** 2 / mse)) if mse > 0 else float("inf"),
           "NMSE_in": float(np.sum(err ** 2) / np.sum(gt[support] ** 2))}
    if with_ssim:
        out["SSIM_in"] = float(np.mean([structural_similarity(g, x, data_range=maxval, full=True)[1][m].mean()
                                        for g, x, m in zip(gt, pred, support)]))
    return out


def object_mask(reference, fraction: float = 0.1, sigma: float = 2.0) -> np.ndarray:
    """Where the object is in a magnitude reference ``[slices, H, W]`` (or ``[H, W]``), bool, same shape: per
    slice, the reference smoothed with a Gaussian of ``sigma`` px above ``fraction`` of its 99th percentile,
    holes filled. Used with :func:`support_metrics` for in-object figures (the noise floor of an RSS
    reference's background excluded)."""
    from scipy.ndimage import binary_fill_holes, gaussian_filter

    ref = np.asarray(reference, dtype=np.float64)
    flat = ref[None] if ref.ndim == 2 else ref
    out = np.zeros(flat.shape, dtype=bool)
    for i, image in enumerate(flat):
        smooth = gaussian_filter(image, sigma)
        level = fraction * float(np.percentile(smooth, 99))
        out[i] = binary_fill_holes(smooth > level) if level > 0 else False
    return out.reshape(ref.shape)


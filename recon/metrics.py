"""Reconstruction metrics with fastMRI's conventions (``fastmri/evaluate.py``), per volume, numpy.

Inputs are magnitude volumes ``[slices, H, W]`` (a 2-D ``[H, W]`` image counts as one slice), target and
prediction of the same shape, on the same (RSS) scale; computed in float64.

- ``nmse = ||gt - pred||^2 / ||gt||^2`` over the whole volume.
- ``psnr``: ``skimage.metrics.peak_signal_noise_ratio`` with ``data_range = gt.max()`` (the volume max), dB.
- ``ssim``: ``skimage.metrics.structural_similarity`` per slice (7x7 uniform window, skimage's defaults) with
  ``data_range = gt.max()`` of the volume, averaged over slices.

``maxval`` overrides the data range as in fastMRI. Shape mismatches, NaN/Inf and an all-zero target raise
``recon.errors.InputError``.
"""
from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from recon.errors import InputError

__all__ = ["nmse", "psnr", "ssim", "evaluate_volume", "support_metrics", "object_mask"]


def _prepare(gt, pred) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    for name, a in (("target", gt), ("reconstruction", pred)):
        if np.iscomplexobj(a):
            raise InputError(None, f"{name} must be a real magnitude volume, got dtype {a.dtype}")
        if a.ndim not in (2, 3):
            raise InputError(None, f"{name} must be [slices, H, W] or [H, W], got shape {a.shape}")
    if gt.shape != pred.shape:
        raise InputError(None, f"target shape {gt.shape} and reconstruction shape {pred.shape} differ")
    gt = gt.astype(np.float64, copy=False)
    pred = pred.astype(np.float64, copy=False)
    if gt.ndim == 2:
        gt, pred = gt[None], pred[None]
    if not np.isfinite(gt).all():
        raise InputError(None, "target has NaN/Inf values")
    if not np.isfinite(pred).all():
        raise InputError(None, "reconstruction has NaN/Inf values")
    if not np.any(gt):
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


def psnr(gt, pred, maxval: float | None = None) -> float:
    """PSNR in dB with data range ``maxval`` (default: the target volume's max), fastMRI's convention."""
    gt, pred = _prepare(gt, pred)
    return float(peak_signal_noise_ratio(gt, pred, data_range=_data_range(gt, maxval)))


def ssim(gt, pred, maxval: float | None = None) -> float:
    """Mean over slices of skimage SSIM with data range ``maxval`` (default: the target volume's max)."""
    gt, pred = _prepare(gt, pred)
    rng = _data_range(gt, maxval)
    return float(np.mean([structural_similarity(g, p, data_range=rng) for g, p in zip(gt, pred)]))


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


"""Differentiable image metrics in torch, for training losses and validation inside a training loop.

The evaluation metrics with fastMRI's conventions (numpy / scikit-image, per volume) are :mod:`recon.metrics`;
these are their training counterparts, computed on batches of real images on the tensors' device:

- :func:`ssim`: mean SSIM (Wang et al. 2004) with an 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01,
  K2 = 0.03, over the *valid* window positions only (no padding), averaged over channels, positions and batch.
- :func:`ssim_map_uniform`: the SSIM map of :func:`recon.metrics.ssim` (scikit-image's defaults: 7 x 7 uniform
  window, sample covariance), per image and position, so its mean over the valid positions is that SSIM.
- :func:`psnr`: ``-10 log10(MSE / data_range^2)`` in dB, the MSE taken over every element of the batch
  (one number per batch, not a mean of per-image PSNRs), floored at ``eps`` so identical inputs stay finite.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["gaussian_window", "ssim", "ssim_map_uniform", "psnr"]


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 2-D Gaussian window ``[size, size]`` (float32, sums to 1)."""
    t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM of two batches of images, differentiable in both.

    a, b: real ``[B, C, H, W]`` of the same shape, values on a scale whose range is ``data_range`` (1.0 for
    images in [0, 1]); H and W at least ``window_size``. Returns a 0-d tensor (1 = identical).
    """
    c = a.shape[1]
    win = gaussian_window(window_size, sigma).to(a.device, a.dtype).expand(c, 1, window_size, window_size)
    win = win.contiguous()
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2

    def filt(t):
        return F.conv2d(t, win, groups=c)

    mu_a, mu_b = filt(a), filt(b)
    saa = filt(a * a) - mu_a ** 2
    sbb = filt(b * b) - mu_b ** 2
    sab = filt(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return s.mean()


def ssim_map_uniform(a: torch.Tensor, b: torch.Tensor, data_range: torch.Tensor | float, win: int = 7,
                     k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """SSIM map ``[B, 1, H - win + 1, W - win + 1]`` of ``[B, 1, H, W]`` images with scikit-image's conventions
    (``structural_similarity`` defaults: uniform ``win`` x ``win`` window, sample covariance, valid positions
    only); ``data_range`` a float or ``[B]``. ``map.mean((1, 2, 3))`` equals :func:`recon.metrics.ssim` per
    image."""
    a, b = a.double(), b.double()
    rng = torch.as_tensor(data_range, dtype=a.dtype, device=a.device).reshape(-1, 1, 1, 1)
    c1, c2 = (k1 * rng) ** 2, (k2 * rng) ** 2

    def filt(t):
        return F.avg_pool2d(t, win, stride=1)

    n = win * win
    cov = n / (n - 1)
    mu_a, mu_b = filt(a), filt(b)
    saa = cov * (filt(a * a) - mu_a ** 2)
    sbb = cov * (filt(b * b) - mu_b ** 2)
    sab = cov * (filt(a * b) - mu_a * mu_b)
    s = ((2 * mu_a * mu_b + c1) * (2 * sab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (saa + sbb + c2))
    return s.float()


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, eps: float = 1e-10) -> torch.Tensor:
    """PSNR in dB of ``a`` against ``b`` (any equal shapes, real): ``-10 log10(max(MSE, eps) / data_range^2)``
    with the MSE over all elements. Returns a 0-d tensor."""
    mse = F.mse_loss(a, b).clamp_min(eps)
    return -10 * torch.log10(mse / data_range ** 2)

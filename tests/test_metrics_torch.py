"""recon.metrics_torch: the differentiable SSIM / PSNR of the trainers agree with scikit-image's definitions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from recon.metrics_torch import gaussian_window, psnr, ssim


def _pair(seed=0, shape=(2, 3, 40, 37)):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g, dtype=torch.float64)
    return a, (a + 0.15 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)


def test_ssim_is_skimages_gaussian_ssim_averaged_over_images_and_channels():
    a, b = _pair()
    ref = np.mean([structural_similarity(a[i, c].numpy(), b[i, c].numpy(), data_range=1.0, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=False)
                   for i in range(a.shape[0]) for c in range(a.shape[1])])
    assert float(ssim(a, b)) == pytest.approx(ref, abs=1e-6)
    assert float(ssim(a, a)) == pytest.approx(1.0)
    assert float(ssim(2 * a, 2 * b, data_range=2.0)) == pytest.approx(float(ssim(a, b)), abs=1e-9)


def test_ssim_is_differentiable_and_the_window_is_normalised():
    a, b = _pair(1)
    a.requires_grad_(True)
    (1 - ssim(a, b)).backward()
    assert a.grad is not None and float(a.grad.abs().sum()) > 0
    w = gaussian_window()
    assert w.shape == (11, 11) and float(w.sum()) == pytest.approx(1.0) and torch.equal(w, w.T)


def test_psnr_matches_skimage_and_is_finite_for_identical_inputs():
    a, b = _pair(2)
    assert float(psnr(a, b)) == pytest.approx(peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0))
    assert float(psnr(2 * a, 2 * b, data_range=2.0)) == pytest.approx(float(psnr(a, b)))
    assert float(psnr(a, a)) == pytest.approx(100.0)  # MSE floored at 1e-10

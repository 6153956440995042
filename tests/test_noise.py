"""recon.noise: per-coil noise std from measured k-space and the RSS noise floor; MoDL's noise_floor fill."""
from __future__ import annotations

import math

import pytest
import torch

from recon.errors import InputError
from recon.fft import fft2c, ifft2c
from recon.noise import noise_std_from_calibration, noise_std_from_kspace, rss_noise_floor


def _noise(shape, sigma, seed=0):
    g = torch.Generator().manual_seed(seed)
    sig = torch.as_tensor(sigma, dtype=torch.float32).reshape(1, -1, 1, 1)
    return torch.randn(shape, generator=g, dtype=torch.complex64) * sig  # E|n|^2 = sigma^2


def test_noise_std_recovers_sigma_per_coil_with_signal_in_the_centre():
    b, c, h, w = 2, 4, 64, 64
    sigma = [0.5, 1.0, 2.0, 0.25]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    img = (50.0 * torch.exp(-((yy / 0.4) ** 2 + (xx / 0.3) ** 2))).to(torch.complex64)  # strong, smooth signal
    k = fft2c(img.expand(b, c, h, w).contiguous()) + _noise((b, c, h, w), sigma)
    mask = torch.zeros(b, 1, 1, w)
    mask[..., ::3] = 1
    measured = k * mask
    before = measured.clone()
    est = noise_std_from_kspace(measured, mask)
    assert torch.equal(measured, before)
    assert est.shape == (b, c) and est.dtype == torch.float32
    torch.testing.assert_close(est, torch.tensor([sigma, sigma]), rtol=0.12, atol=0.0)
    # a centre-only mask falls back to every acquired column
    centre = torch.zeros(1, 1, 1, w)
    centre[..., w // 2 - 4: w // 2 + 4] = 1
    assert noise_std_from_kspace(k * centre, centre).shape == (b, c)


def test_noise_std_reads_only_the_acquired_points_of_a_2d_mask():
    import numpy as np

    from recon.masks import make_mask

    b, c, h, w = 1, 8, 128, 128
    k = _noise((b, c, h, w), [0.5] * c, seed=3)
    mask = torch.as_tensor(np.asarray(make_mask("poisson", (b, c, h, w), 6.0, seed=0).mask, np.float32))
    mask = mask.reshape(1, 1, h, w)
    est = noise_std_from_kspace(k * mask, mask)
    # the outer quarter of the Poisson points (its corners are empty): each coil within 15 %
    assert float(est.min()) > 0.5 * 0.85 and float(est.max()) < 0.5 * 1.15
    # the same k-space read as a line mask (every row of the acquired columns) would count the zeros in between
    lines = (mask.sum(-2, keepdim=True) > 0).float()
    assert float(noise_std_from_kspace(k * mask, lines).max()) < 0.1


def test_calibration_noise_holds_where_the_corners_hold_anatomy():
    b, c, h, w = 2, 8, 96, 96
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    # hard-edged objects: their spectrum reaches the corners, as a real truncated acquisition's does
    img = ((yy.abs() < 0.7) & (xx.abs() < 0.6)).float() + ((yy - 0.2) ** 2 + xx ** 2 < 0.1).float()
    phases = torch.stack([torch.exp(1j * (0.4 * i + 0.8 * (i + 1) * (xx * torch.cos(torch.tensor(i)) + yy * 0.3)))
                          for i in range(c)])
    maps = phases * torch.stack([torch.exp(-((yy - 0.8 * math.sin(i)) ** 2 + (xx - 0.8 * math.cos(i)) ** 2))
                                 for i in range(c)])
    maps = (maps / maps.abs().square().sum(0, keepdim=True).sqrt()).to(torch.complex64)
    clean = fft2c((img * maps).unsqueeze(0)).expand(b, c, h, w)
    sigma = torch.tensor([0.002, 0.05])
    k = clean + _noise((b, c, h, w), [1.0] * c, seed=4) * sigma.reshape(-1, 1, 1, 1)
    mask = torch.zeros(1, 1, 1, w)
    mask[..., ::4] = 1
    mask[..., w // 2 - 5: w // 2 + 5] = 1
    est = noise_std_from_calibration(k * mask, mask)
    corners = noise_std_from_kspace(k * mask, mask).square().mean(-1).sqrt()
    assert est.shape == (b,)
    torch.testing.assert_close(est, sigma, rtol=0.25, atol=0.0)
    assert float(corners[0]) > 3 * float(sigma[0])  # the corners read the anatomy at high SNR
    # pure noise: the pure-noise reference of the same shape gives the scale exactly, up to one draw's spread
    noise = _noise((1, c, h, w), [3.0] * c, seed=5)
    assert float(noise_std_from_calibration(noise * mask, mask)) == pytest.approx(3.0, rel=0.05)


def test_rss_noise_floor_matches_monte_carlo():
    c, sigma = 8, 0.3
    n = _noise((1, c, 256, 256), [sigma] * c, seed=1)
    rss = ifft2c(n).abs().square().sum(1).sqrt()  # orthonormal FFT: same noise std per pixel
    floor = rss_noise_floor(torch.full((1, c), sigma))
    assert float(floor) == pytest.approx(float(rss.mean()), rel=0.01)
    assert float(floor) == pytest.approx(sigma * math.gamma(c + 0.5) / math.gamma(c))


def test_bad_inputs():
    with pytest.raises(InputError, match="complex"):
        noise_std_from_kspace(torch.zeros(1, 2, 8, 8), torch.ones(1, 1, 1, 8))
    with pytest.raises(InputError, match="empty"):
        noise_std_from_kspace(torch.zeros(1, 2, 8, 8, dtype=torch.complex64), torch.zeros(1, 1, 1, 8))


def test_modl_noise_floor_fill_outside_support_only():
    from recon.modl import MoDL, ModlConfig

    b, c, h, w = 1, 4, 32, 32
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    support = ((yy / 0.8) ** 2 + (xx / 0.8) ** 2 < 1)
    maps = torch.stack([support * torch.exp(1j * torch.tensor(0.7 * i)) for i in range(c)]).to(torch.complex64)
    maps = (maps / math.sqrt(c)).unsqueeze(0)
    img = (support * torch.exp(-(yy ** 2 + xx ** 2) / 0.2)).to(torch.complex64)
    k = fft2c(img[None, None] * maps) + _noise((b, c, h, w), [0.05] * c)
    mask = torch.zeros(1, 1, 1, w)
    mask[..., ::2] = 1
    mask[..., w // 2 - 4: w // 2 + 4] = 1
    torch.manual_seed(0)
    zero = MoDL(ModlConfig(num_unrolls=2, cg_iters=5, channels=8, fill_background=False)).eval()
    filled = MoDL(ModlConfig(num_unrolls=2, cg_iters=5, channels=8, fill_background="noise_floor")).eval()
    filled.load_state_dict(zero.state_dict())
    with torch.no_grad():
        a, f = zero(k * mask, mask, sens_maps=maps), filled(k * mask, mask, sens_maps=maps)
    torch.testing.assert_close(f[:, support], a[:, support])
    assert float(a[:, ~support].abs().max()) == 0.0
    expected = float(rss_noise_floor(noise_std_from_kspace(k * mask, mask)))
    torch.testing.assert_close(f[:, ~support], torch.full_like(f[:, ~support], expected), rtol=1e-5, atol=0.0)
    assert 0.05 * 0.9 < expected / (math.gamma(c + 0.5) / math.gamma(c)) < 0.05 * 1.5
    with pytest.raises(InputError, match="fill_background"):
        ModlConfig.from_dict({"fill_background": "noise"})

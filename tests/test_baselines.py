"""Classical baselines on a simulated multi-coil slice: scale, accuracy ordering, map sets, bad input."""
from __future__ import annotations

import fastmri
import numpy as np
import pytest
import sigpy.mri
import torch

from recon.baselines import cg_sense, l1_wavelet, zero_filled
from recon.coils import espirit_maps
from recon.errors import InputError
from recon.fft import fft2c_np, ifft2c_np


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny FFT problems (conftest.py)

S, C, H, W = 2, 6, 48, 40


def nmse(ref, x):
    return float(np.linalg.norm(ref - x) ** 2 / np.linalg.norm(ref) ** 2)


@pytest.fixture(scope="module")
def sim():
    """Two noise-free slices: Shepp-Logan (and a shifted copy) with smooth phase, normalised birdcage coils."""
    img = sigpy.shepp_logan((H, W)).astype(np.complex64)
    yy, xx = np.mgrid[-1:1:H * 1j, -1:1:W * 1j]
    imgs = np.stack([img * np.exp(1j * (0.7 * xx + 0.4 * yy)), np.roll(img, 3, axis=0) * np.exp(-0.5j * xx)])
    maps = sigpy.mri.birdcage_maps((C, H, W), r=1.2).astype(np.complex64)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    maps = np.stack([maps, maps])
    kspace = fft2c_np(maps * imgs[:, None]).astype(np.complex64)
    rng = np.random.default_rng(0)
    mask = np.zeros(W, np.float32)
    mask[W // 2 - 8: W // 2 + 8] = 1
    mask[::3] = 1
    mask = mask.reshape(1, 1, W)
    target = np.sqrt((np.abs(ifft2c_np(kspace)) ** 2).sum(1)).astype(np.float32)
    return dict(imgs=imgs, maps=maps, kspace=kspace, mask=mask, target=target, rng=rng)


def test_zero_filled_is_rss_of_masked_kspace(sim):
    k, mask = sim["kspace"], sim["mask"]
    out = zero_filled(k, mask)
    ref = fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(torch.view_as_real(torch.from_numpy(k * mask)))), dim=1)
    assert out.dtype == np.float32 and out.shape == (S, H, W)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-6)
    full = zero_filled(torch.from_numpy(k), torch.ones(W))  # torch input, [W] mask
    np.testing.assert_allclose(full, sim["target"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sim["target"], np.abs(sim["imgs"]), rtol=1e-4, atol=1e-5)  # RSS scale


def test_cg_sense_full_sampling_recovers_rss(sim):
    out = cg_sense(sim["kspace"], np.ones(W, np.float32), sim["maps"], lam=0.0, max_iter=20, tol=1e-7)
    assert out.dtype == np.float32 and out.shape == (S, H, W)
    np.testing.assert_allclose(out, sim["target"], atol=1e-4 * sim["target"].max())


def test_cg_sense_beats_zero_filled_and_is_scale_free(sim):
    k, mask, maps, target = sim["kspace"], sim["mask"], sim["maps"], sim["target"]
    zf = zero_filled(k, mask)
    sense = cg_sense(k, mask, maps)
    assert nmse(target, sense) < 0.05 * nmse(target, zf)
    scaled = cg_sense(k * 1e4, mask, maps)
    np.testing.assert_allclose(scaled, 1e4 * sense, rtol=1e-3, atol=1e-3 * scaled.max())
    one_by_one = cg_sense(k, mask, maps, batch_size=1)
    np.testing.assert_allclose(one_by_one, sense, rtol=1e-5, atol=1e-6 * sense.max())


def test_cg_sense_with_espirit_maps(sim):
    k, mask, target = sim["kspace"][:1], sim["mask"], sim["target"][:1]
    maps = espirit_maps(k[0] * mask[0], calib_width=16, thresh=0.02, crop=0.0)[None]
    sense = cg_sense(k, mask, maps)
    assert nmse(target, sense) < 0.2 * nmse(target, zero_filled(k, mask))


def test_map_sets_with_empty_second_set_equal_single_set(sim):
    k, mask, maps = sim["kspace"], sim["mask"], sim["maps"]
    sets = np.stack([maps, np.zeros_like(maps)], axis=1)  # [S, 2, C, H, W]
    single = cg_sense(k, mask, maps, tol=1e-7)
    np.testing.assert_allclose(cg_sense(k, mask, sets, tol=1e-7), single, rtol=1e-4, atol=1e-5 * single.max())
    l1_single = l1_wavelet(k[:1], mask, maps[:1], max_iter=15)
    l1_sets = l1_wavelet(k[:1], mask, sets[:1], max_iter=15)
    np.testing.assert_allclose(l1_sets, l1_single, rtol=1e-3, atol=1e-3 * l1_single.max())


def test_l1_wavelet_beats_zero_filled_and_is_scale_free(sim):
    k, maps, target = sim["kspace"][:1], sim["maps"][:1], sim["target"][:1]
    mask = np.zeros(W, np.float32)
    mask[W // 2 - 6: W // 2 + 6] = 1
    mask[::4] = 1
    out = l1_wavelet(k, mask, maps, max_iter=30)
    assert out.dtype == np.float32 and out.shape == (1, H, W)
    assert nmse(target, out) < 0.5 * nmse(target, zero_filled(k, mask))
    np.testing.assert_allclose(l1_wavelet(k * 100, mask, maps, max_iter=30), 100 * out, rtol=1e-3,
                               atol=1e-3 * 100 * out.max())


def test_inputs_not_modified(sim):
    k, mask, maps = sim["kspace"].copy(), sim["mask"].copy(), sim["maps"].copy()
    kt = torch.from_numpy(k.copy())
    zero_filled(kt, mask)
    cg_sense(kt, mask, maps, max_iter=3)
    l1_wavelet(k[:1], mask, maps[:1], max_iter=2)
    assert np.array_equal(k, sim["kspace"]) and np.array_equal(mask, sim["mask"]) and np.array_equal(maps, sim["maps"])
    assert np.array_equal(kt.numpy(), sim["kspace"])


def test_bad_input_raises_input_error(sim):
    k, mask, maps = sim["kspace"], sim["mask"], sim["maps"]
    nan_k = k.copy()
    nan_k[0, 0, 0, 0] = np.nan
    cases = [
        (lambda: zero_filled(nan_k, mask), "NaN"),
        (lambda: cg_sense(k, np.zeros_like(mask), maps), "mask is all zeros"),
        (lambda: zero_filled(np.zeros_like(k), mask), "all zeros"),
        (lambda: cg_sense(k, mask, maps[:, :4]), "coil maps"),
        (lambda: l1_wavelet(k, mask, maps[..., :-1]), "coil maps"),
        (lambda: zero_filled(k[0], mask), r"\[slices, coils, H, W\]"),
        (lambda: zero_filled(np.abs(k), mask), "complex"),
        (lambda: zero_filled(k, np.ones((1, 1, W + 1), np.float32)), "does not broadcast"),
        (lambda: cg_sense(k, np.stack([mask, 0 * mask]), maps), r"slices \[1\]"),
    ]
    for call, match in cases:
        with pytest.raises(InputError, match=match):
            call()

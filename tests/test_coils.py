"""recon.coils: ESPIRiT (sigpy and multi-map), its disk cache, birdcage and realistic maps."""
from __future__ import annotations

import os

import numpy as np
import pytest

from recon import coils
from recon.coils import (
    birdcage_maps,
    default_cache_dir,
    espirit_maps,
    espirit_maps_cached,
    normalize_maps,
    realistic_maps,
)
from recon.errors import InputError
from recon.fft import fft2c_np

H = W = 48
C = 4


def _phantom() -> np.ndarray:
    y, x = np.mgrid[:H, :W]
    r2 = ((y - H / 2) / (0.42 * H)) ** 2 + ((x - W / 2) / (0.36 * W)) ** 2
    image = (r2 < 1).astype(np.float32) * (1.0 + 0.3 * np.cos(x / 3.0))
    return image * np.exp(1j * 0.5 * (x - W / 2) / W)


@pytest.fixture(scope="module")
def coil_data():
    maps = birdcage_maps(C, H, W)
    image = _phantom()
    kspace = fft2c_np((maps * image).astype(np.complex64))
    return kspace, maps, image


def _match(estimated: np.ndarray, true: np.ndarray, support: np.ndarray) -> np.ndarray:
    """|<S_est, S_true>| per pixel in the support (1 = same map up to a per-pixel phase)."""
    return np.abs(np.sum(estimated.conj() * true, axis=0))[support]


def test_birdcage_normalised_and_randomised():
    maps = birdcage_maps(8, 32, 32)
    assert maps.shape == (8, 32, 32) and maps.dtype == np.complex64
    np.testing.assert_allclose(np.sum(np.abs(maps) ** 2, axis=0), 1.0, atol=1e-5)
    a = birdcage_maps(8, 32, 32, np.random.default_rng(1))
    b = birdcage_maps(8, 32, 32, np.random.default_rng(1))
    c = birdcage_maps(8, 32, 32, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_allclose(np.sum(np.abs(c) ** 2, axis=0), 1.0, atol=1e-5)


def test_birdcage_radius_fixes_the_ring_and_keeps_the_rng_sequence():
    import sigpy.mri

    near = birdcage_maps(8, 32, 32, radius=1.0)
    np.testing.assert_allclose(near, normalize_maps(sigpy.mri.birdcage_maps((8, 32, 32), r=1.0)), atol=1e-6)
    assert not np.allclose(near, birdcage_maps(8, 32, 32))  # the default ring (1.5) differs
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    birdcage_maps(8, 32, 32, rng_a, radius=1.0)
    birdcage_maps(8, 32, 32, rng_b)
    assert rng_a.random() == rng_b.random()  # the radius draw was still taken


def test_normalize_maps_keeps_zero_pixels():
    maps = np.zeros((2, 3, 3), np.complex64)
    maps[0, 1, 1], maps[1, 1, 1] = 3, 4j
    out = normalize_maps(maps)
    assert out[0, 1, 1] == pytest.approx(0.6) and out[1, 1, 1] == pytest.approx(0.8j)
    assert np.count_nonzero(out) == 2


def test_espirit_recovers_birdcage_maps(coil_data):
    kspace, maps, image = coil_data
    estimated = espirit_maps(kspace, calib_width=16, crop=0.8)
    assert estimated.shape == (C, H, W) and estimated.dtype == np.complex64
    support = np.abs(image) > 0
    inner = np.zeros_like(support)
    inner[8:-8, 8:-8] = True
    assert np.median(_match(estimated, maps, support)) > 0.99
    assert _match(estimated, maps, support & inner).min() > 0.95
    power = np.sum(np.abs(estimated) ** 2, axis=0)
    np.testing.assert_allclose(power[(power > 0) & support], 1.0, atol=1e-3)  # unit norm in the support
    assert np.all(power[~support][:5] >= 0)


def test_multi_map_espirit_matches_sigpy_first_map(coil_data):
    kspace, maps, image = coil_data
    single = espirit_maps(kspace, calib_width=16, crop=0.0)
    double = espirit_maps(kspace, calib_width=16, crop=0.0, num_maps=2)
    assert double.shape == (2, C, H, W) and double.dtype == np.complex64
    support = np.abs(image) > 0
    assert np.median(np.abs(double[0] - single)[:, support]) < 1e-3  # same operator, same phase reference
    assert _match(double[0], maps, support).min() > 0.95
    # with a crop, the second set is (nearly) empty when the field of view does not fold over
    cropped = espirit_maps(kspace, calib_width=16, crop=0.8, num_maps=2)
    assert np.count_nonzero(np.abs(cropped[1]).sum(0)) < 0.05 * H * W


def test_espirit_bad_input(coil_data):
    kspace, _, _ = coil_data
    with pytest.raises(InputError, match=r"expected \[C, H, W\]"):
        espirit_maps(kspace[None])
    bad = kspace.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        espirit_maps(bad, source="x.h5")
    with pytest.raises(InputError, match="all zero"):
        espirit_maps(np.zeros_like(kspace))
    with pytest.raises(InputError, match="calibration width"):
        espirit_maps(kspace, calib_width=100)


def test_espirit_refuses_maps_that_come_back_all_zero(coil_data, tmp_path):
    kspace, _, _ = coil_data
    # an 8 x 8 region is too small for a 6 x 6 kernel: no eigenvalue passes the crop, every map is 0
    for kernel in (6, (6, 5)):  # sigpy's path and the exact eigendecomposition
        with pytest.raises(InputError, match=r"x\.h5: ESPIRiT maps .* are all zero .*too small for the kernel"):
            espirit_maps(kspace, calib_width=8, kernel_width=kernel, source="x.h5")
    # an all-zero entry cached before this check is recomputed, not served
    source = tmp_path / "data.h5"
    source.write_bytes(b"x")
    cache = tmp_path / "cache"
    maps = espirit_maps_cached(kspace, source, 0, cache_dir=cache, calib_width=16)
    entry = next(cache.glob("*.npy"))
    np.save(entry, np.zeros_like(maps))
    np.testing.assert_array_equal(espirit_maps_cached(kspace, source, 0, cache_dir=cache, calib_width=16), maps)


def test_espirit_cache_keyed_by_file_slice_and_params(coil_data, tmp_path, monkeypatch):
    kspace, _, _ = coil_data
    source = tmp_path / "data.h5"
    source.write_bytes(b"x" * 10)
    cache = tmp_path / "cache"
    first = espirit_maps_cached(kspace, source, 0, cache_dir=cache, calib_width=16)
    assert len(list(cache.glob("*.npy"))) == 1
    np.testing.assert_array_equal(first, espirit_maps(kspace, calib_width=16))

    calls = []
    real = coils.espirit_maps

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(coils, "espirit_maps", counting)
    again = espirit_maps_cached(kspace, source, 0, cache_dir=cache, calib_width=16)
    np.testing.assert_array_equal(again, first)
    assert calls == []  # served from disk
    espirit_maps_cached(kspace, source, 1, cache_dir=cache, calib_width=16)  # other slice
    espirit_maps_cached(kspace, source, 0, cache_dir=cache, calib_width=12)  # other params
    espirit_maps_cached(kspace * 0.5, source, 0, cache_dir=cache, calib_width=16)  # other k-space
    os.utime(source, ns=(1, 1))  # the file changed
    espirit_maps_cached(kspace, source, 0, cache_dir=cache, calib_width=16)
    assert len(calls) == 4 and len(list(cache.glob("*.npy"))) == 5
    assert not list(cache.glob(".*"))  # no temp files left

    monkeypatch.setenv("MRIQA_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache" / "espirit"
    monkeypatch.delenv("MRIQA_CACHE")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mriqa" / "espirit"  # the user cache, not the CWD


def test_realistic_maps_from_real_kspace(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MRIQA_CACHE", str(tmp_path))
    a = realistic_maps(8, 40, 40, np.random.default_rng(0), shared_data)
    b = realistic_maps(8, 40, 40, np.random.default_rng(0), shared_data)
    c = realistic_maps(5, 40, 40, np.random.default_rng(1), shared_data)
    assert a.shape == (8, 40, 40) and a.dtype == np.complex64 and c.shape == (5, 40, 40)
    np.testing.assert_array_equal(a, b)
    for maps in (a, c):
        np.testing.assert_allclose(np.sum(np.abs(maps) ** 2, axis=0), 1.0, atol=1e-4)
        # smooth: neighbouring pixels differ little (a per-pixel random phase would not)
        assert np.abs(np.diff(maps, axis=-1)).mean() < 0.05
    assert not np.allclose(a[:5], c)
    # coils differ from each other (real coil profiles, not one map repeated)
    assert np.abs(a[0] - a[4]).mean() > 0.05
    with pytest.raises(InputError, match="8-channel"):
        realistic_maps(12, 40, 40, np.random.default_rng(0), shared_data)


def test_realistic_maps_missing_source_is_input_error(tmp_path):
    with pytest.raises(InputError, match="smallfov"):
        realistic_maps(8, 32, 32, np.random.default_rng(0), tmp_path)


def _direct_espirit(kspace, calib, kernel, thresh, crop, num_maps):
    """Reference ESPIRiT: kernel images on the full grid (sigpy's resize + centred ifft), Gram per pixel."""
    import sigpy as sp

    kernels, _ = coils.espirit_kernels(kspace, calib, kernel, thresh)
    c, h, w = kspace.shape
    images = sp.ifft(sp.resize(kernels, (len(kernels), c, h, w)), axes=(-2, -1)).reshape(len(kernels), c, -1)
    gram = np.einsum("nip,njp->pij", images, images.conj()) * h * w / (kernel[0] * kernel[1])
    values, vectors = np.linalg.eigh(gram)
    vectors = vectors[:, :, ::-1][:, :, :num_maps]
    ref = vectors[:, :1]
    vectors = vectors * ref.conj() / np.maximum(np.abs(ref), 1e-30) * (values[:, ::-1][:, None, :num_maps] > crop)
    return vectors.transpose(2, 1, 0).reshape(num_maps, c, h, w)


@pytest.mark.parametrize("calib,kernel", [((16, 16), (6, 6)), ((40, 6), (4, 2)), ((24, 9), (6, 3))])
def test_eigh_path_matches_direct_gram(coil_data, calib, kernel):
    """The correlation-based per-pixel Gram (O(C^2) memory per pixel) is the same operator as building the
    kernel images on the whole grid, for square and rectangular regions and kernels."""
    kspace, _, _ = coil_data
    fast = coils._espirit_eigh(kspace, calib, 0.02, 0.5, 2, kernel)
    slow = _direct_espirit(kspace.astype(np.complex128), calib, kernel, 0.02, 0.5, 2)
    assert np.abs(fast[0] - slow[0]).max() < 1e-4
    assert np.abs(np.abs(fast[1]) - np.abs(slow[1])).max() < 1e-3  # second set: up to its own phase reference


def test_rectangular_espirit_from_six_centre_lines(coil_data):
    """Full readout x 6 phase-encode lines with a 4 x 2 kernel recovers the maps (on real data the square
    24 x 24 region, which reads unsampled columns as zeros, does not: tests/test_guard.py)."""
    kspace, maps, image = coil_data
    narrow = np.zeros_like(kspace)
    narrow[:, :, W // 2 - 3:W // 2 + 3] = kspace[:, :, W // 2 - 3:W // 2 + 3]
    support = np.abs(image) > 0
    rect = espirit_maps(narrow, calib_width=(H, 6), kernel_width=(4, 2), crop=0.8, phase_coil=1)
    assert np.median(_match(rect, maps, support)) > 0.98
    assert np.allclose(np.angle(rect[1][support]), 0, atol=1e-4)  # phase relative to coil 1
    with pytest.raises(InputError, match="kernel width"):
        espirit_maps(kspace, calib_width=(H, 6), kernel_width=(4, 7))
    with pytest.raises(InputError, match="phase_coil"):
        espirit_maps(kspace, calib_width=(H, 6), kernel_width=(4, 2), phase_coil=C)

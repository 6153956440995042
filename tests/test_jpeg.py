"""JPEG round trip, QF distributions, 8-bit quantisation invariance, PSNR-matched QF targets."""
from __future__ import annotations

import numpy as np
import pytest

from mriqa.jpeg import jpeg_bytes, jpeg_compress, qf_pmf, sample_qf
from mriqa.normalize import quantize_8bit, to_unit_range
from mriqa.qf_data import psnr_matched_qf


def _smooth_image(rng, shape):
    from scipy import ndimage

    x = ndimage.gaussian_filter(rng.random(shape), 2.0)
    x = (x - x.min()) / (x.max() - x.min())
    return quantize_8bit(x)


def test_jpeg_is_deterministic_and_on_the_8bit_grid():
    rng = np.random.default_rng(0)
    img = _smooth_image(rng, (64, 64))
    for q in (1, 37, 90, 100):
        a, b = jpeg_bytes(img, q), jpeg_bytes(img.copy(), q)
        assert a == b
        out = jpeg_compress(img, q)
        assert out.shape == img.shape and out.dtype == np.float32
        np.testing.assert_array_equal(out, quantize_8bit(out))
    rgb = quantize_8bit(rng.random((40, 48, 3)))
    assert jpeg_compress(rgb, 50).shape == rgb.shape
    assert jpeg_bytes(rgb, 95, "4:4:4") != jpeg_bytes(rgb, 95, "4:2:0")
    with pytest.raises(ValueError):
        jpeg_compress(img, 0)
    with pytest.raises(ValueError):
        jpeg_compress(img, 101)


def test_uint8_and_quantised_float_inputs_compress_identically():
    """The 8-bit step is applied before the encoder: a float image and its uint8 twin give the same JPEG."""
    rng = np.random.default_rng(1)
    u8 = (rng.random((48, 48)) * 255).astype(np.uint8)
    as_float = to_unit_range(u8, "photo")
    np.testing.assert_array_equal(np.round(as_float * 255).astype(np.uint8), u8)
    assert jpeg_bytes(u8, 80) == jpeg_bytes(as_float, 80)
    # normalisation is idempotent on the grid: clean and JPEG inputs are both exact multiples of 1/255
    np.testing.assert_array_equal(to_unit_range(as_float, "photo"), as_float)
    np.testing.assert_array_equal(to_unit_range(jpeg_compress(as_float, 80), "photo"), jpeg_compress(u8, 80))


def test_more_quality_less_error():
    rng = np.random.default_rng(2)
    img = _smooth_image(rng, (96, 96))
    mse = [float(np.mean((jpeg_compress(img, q) - img) ** 2)) for q in (10, 30, 50, 70, 90, 100)]
    assert all(a > b for a, b in zip(mse, mse[1:]))


def test_log_distribution_mass():
    q, p = qf_pmf("log")
    assert q.min() == 1 and q.max() == 100 and abs(p.sum() - 1) < 1e-12
    assert 0.66 < p[q >= 80].sum() < 0.68  # ln 22 / ln 101
    assert p[q <= 50].sum() > 0.1  # still some low QFs
    assert np.all(np.diff(p) > 0)  # strictly increasing towards QF 100
    # sampler follows the pmf
    s = sample_qf(np.random.default_rng(0), 20000, "log")
    assert abs(np.mean(s >= 80) - p[q >= 80].sum()) < 0.015
    u = sample_qf(np.random.default_rng(0), 20000, "uniform")
    assert abs(np.mean(u >= 80) - 0.21) < 0.015
    c = sample_qf(np.random.default_rng(0), 5000, "classes")
    assert set(np.unique(c)) == {0, 20, 40, 60, 80}
    assert sample_qf(np.random.default_rng(3), None) == sample_qf(np.random.default_rng(3), None)
    with pytest.raises(ValueError):
        qf_pmf("gaussian")


def test_psnr_matched_qf_recovers_jpeg_quality():
    rng = np.random.default_rng(4)
    img = np.round(_smooth_image(rng, (56, 56)) * 255).astype(np.uint8)
    x = img / 255.0
    for q in (20, 50, 80, 95):
        mse = float(np.mean((jpeg_compress(img, q) - x) ** 2))
        assert abs(psnr_matched_qf(img, mse) - q) <= 3
    assert psnr_matched_qf(img, 0.0) == pytest.approx(101)
    assert psnr_matched_qf(img, 1.0) == 1.0
    # more noise -> lower matched QF
    qs = [psnr_matched_qf(img, s**2) for s in (0.002, 0.01, 0.03, 0.1)]
    assert all(a > b for a, b in zip(qs, qs[1:]))

"""NMSE / PSNR / SSIM: identical to fastMRI's evaluate.py (volume max as data range, SSIM per slice)."""
from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest

from recon.errors import InputError
from recon.metrics import evaluate_volume, nmse, psnr, ssim


@pytest.fixture
def volumes():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:36]
    base = np.stack([np.exp(-((xx - 18) ** 2 + (yy - 20 - 3 * s) ** 2) / 120.0) * (1 + 0.5 * s) for s in range(3)])
    gt = base.astype(np.float32)
    pred = (gt + 0.05 * rng.standard_normal(gt.shape)).astype(np.float32)
    return gt, pred


@pytest.fixture
def fastmri_evaluate(monkeypatch):
    """fastmri.evaluate imports ``runstats`` at module level for its CLI; the metric functions do not use it."""
    if "runstats" not in sys.modules:
        try:
            importlib.import_module("runstats")
        except ImportError:
            stub = types.ModuleType("runstats")
            stub.Statistics = object
            monkeypatch.setitem(sys.modules, "runstats", stub)
    monkeypatch.delitem(sys.modules, "fastmri.evaluate", raising=False)
    return importlib.import_module("fastmri.evaluate")


def test_matches_fastmri_evaluate(volumes, fastmri_evaluate):
    gt, pred = volumes
    ev = fastmri_evaluate
    assert nmse(gt, pred) == pytest.approx(float(ev.nmse(gt, pred)), rel=1e-5)
    assert psnr(gt, pred) == pytest.approx(float(ev.psnr(gt, pred)), rel=1e-5)
    assert ssim(gt, pred) == pytest.approx(ev.ssim(gt, pred).item(), rel=1e-4)
    assert ssim(gt, pred, maxval=3.0) == pytest.approx(ev.ssim(gt, pred, maxval=3.0).item(), rel=1e-4)


def test_conventions_by_hand(volumes):
    gt, pred = volumes
    g, p = gt.astype(np.float64), pred.astype(np.float64)
    assert nmse(gt, pred) == pytest.approx(np.sum((g - p) ** 2) / np.sum(g ** 2), rel=1e-9)
    assert psnr(gt, pred) == pytest.approx(10 * np.log10(g.max() ** 2 / np.mean((g - p) ** 2)), rel=1e-9)
    # the data range is the volume max, not each slice's
    per_slice_max = np.mean([ssim(gt[s:s + 1], pred[s:s + 1]) for s in range(3)])
    assert ssim(gt, pred) == pytest.approx(ssim(gt, pred, maxval=float(gt.max())), rel=1e-12)
    assert abs(ssim(gt, pred) - per_slice_max) > 1e-3
    scores = evaluate_volume(gt, pred)
    assert set(scores) == {"NMSE", "PSNR", "SSIM"} and 0 < scores["SSIM"] < 1


def test_identical_and_2d(volumes):
    gt, _ = volumes
    assert nmse(gt, gt) == 0.0
    with np.errstate(all="raise"):  # inf, not a RuntimeWarning printed by `mriqa evaluate`
        assert psnr(gt, gt) == np.inf
    assert ssim(gt, gt) == pytest.approx(1.0)
    assert ssim(gt[1], gt[1] * 0.9) == pytest.approx(ssim(gt[1:2], gt[1:2] * 0.9))


def test_bad_input(volumes):
    gt, pred = volumes
    bad = pred.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="shape"):
        nmse(gt, pred[:2])
    with pytest.raises(InputError, match="NaN"):
        psnr(gt, bad)
    with pytest.raises(InputError, match="all zeros"):
        ssim(np.zeros_like(gt), pred)
    with pytest.raises(InputError, match="real"):
        nmse(gt.astype(np.complex64), pred)
    with pytest.raises(InputError, match=r"\[slices, H, W\]"):
        nmse(gt[None], pred[None])


def test_object_mask_finds_a_disc_with_its_holes_filled():
    from recon.metrics import object_mask

    yy, xx = np.mgrid[:64, :64] - 31.5
    disc = ((xx**2 + yy**2) < 20**2).astype(float)
    disc[(xx**2 + yy**2) < 5**2] = 0.0  # a dark hole inside: still object
    noisy = disc + 0.01 * np.random.default_rng(0).standard_normal(disc.shape)
    mask = object_mask(np.stack([noisy, noisy]))
    assert mask.shape == (2, 64, 64) and mask.dtype == bool
    assert mask[0, 32, 32] and not mask[0, 0, 0]
    inside = (xx**2 + yy**2) < 20**2
    assert mask[0][inside].all()  # the whole disc, edges included (smoothing widens it a little)
    assert not mask[0][(xx**2 + yy**2) > 24**2].any()


def test_photo_conventions_are_options_of_the_same_functions():
    """The IQA registry's psnr / ssim (data range 1, colour images) are recon.metrics with options, and give
    the numbers of the formulas they always stood for."""
    from skimage.metrics import structural_similarity

    from mriqa.iqa.metrics_registry import luma
    from mriqa.iqa.metrics_registry import psnr as registry_psnr
    from mriqa.iqa.metrics_registry import ssim as registry_ssim

    rng = np.random.default_rng(1)
    ref = rng.random((40, 36, 3))
    img = np.clip(ref + 0.05 * rng.standard_normal(ref.shape), 0, 1)
    mse = np.mean((img - ref) ** 2)
    assert registry_psnr(img, ref) == pytest.approx(10 * np.log10(1 / mse), rel=1e-12)
    assert psnr(ref, img, maxval=1.0, channel_axis=-1) == registry_psnr(img, ref)
    assert registry_psnr(ref, ref) == pytest.approx(100.0)  # capped, finite
    assert psnr(np.zeros((8, 8)), np.zeros((8, 8)), maxval=1.0, max_db=100.0) == pytest.approx(100.0)
    gauss = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert registry_ssim(img, ref) == pytest.approx(structural_similarity(luma(ref), luma(img), **gauss), rel=1e-12)
    rgb = ssim(ref, img, maxval=1.0, channel_axis=-1, window="gaussian")
    assert rgb == pytest.approx(structural_similarity(ref, img, channel_axis=-1, **gauss), rel=1e-12)
    with pytest.raises(InputError, match="at least 11 x 11"):
        ssim(ref[:9, :9], img[:9, :9], maxval=1.0, channel_axis=-1, window="gaussian")
    with pytest.raises(InputError, match="unknown SSIM window"):
        ssim(ref, img, maxval=1.0, window="box")
    # with the data range given, a black reference is a valid image (the fastMRI default still refuses it)
    assert np.isfinite(psnr(np.zeros((8, 8)), np.full((8, 8), 0.1), maxval=1.0))

"""scripts/make_r_dataset.py's helpers (:mod:`mriqa.evaluation.r_estimation`): the acquisition variation
(``--augment``) of the R-estimation training data and the mask draw that retries failing seeds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mriqa.evaluation.r_estimation as mrd

REPO = Path(__file__).resolve().parents[1]


def _kspace(rng, s=2, c=3, n=64):
    return (rng.standard_normal((s, c, n, n)) + 1j * rng.standard_normal((s, c, n, n))).astype(np.complex64)


def test_augment_leaves_the_input_alone_and_is_seeded():
    k = _kspace(np.random.default_rng(0))
    before = k.copy()
    a, sig_a, snr_a = mrd.augment_kspace(k, np.array([0.1, 0.2]), np.random.default_rng(5))
    b, sig_b, snr_b = mrd.augment_kspace(k, np.array([0.1, 0.2]), np.random.default_rng(5))
    assert np.array_equal(k, before)
    assert np.array_equal(a, b) and (sig_a, snr_a) == (sig_b, snr_b)
    assert a.dtype == np.complex64 and a.shape == k.shape
    assert mrd.APOD_SIGMA[0] <= sig_a <= mrd.APOD_SIGMA[1] and mrd.SNR_RANGE[0] <= snr_a <= mrd.SNR_RANGE[1]


def test_augment_window_and_noise_have_the_stated_size(monkeypatch):
    n = 128
    zero = np.zeros((1, 4, n, n), np.complex64)
    # noise only: the added std is noise_std * sqrt((40 / snr)^2 - 1), whatever the window
    monkeypatch.setattr(mrd, "SNR_RANGE", (20.0, 20.0))
    monkeypatch.setattr(mrd, "APOD_SIGMA", (0.0, 0.0))
    out, sigma, snr = mrd.augment_kspace(zero, np.array([0.5]), np.random.default_rng(1))
    assert sigma == 0.0 and snr == pytest.approx(20.0)
    assert np.std(out) == pytest.approx(0.5 * np.sqrt(3.0), rel=0.02)
    # window only (SNR 40 adds nothing): a point object's image becomes a Gaussian of std sigma pixels
    monkeypatch.setattr(mrd, "SNR_RANGE", (40.0, 40.0))
    monkeypatch.setattr(mrd, "APOD_SIGMA", (1.0, 1.0))
    flat = np.ones((1, 1, n, n), np.complex64)  # k-space of a centred point, up to scale and phase ramps
    out, sigma, _ = mrd.augment_kspace(flat, np.array([0.0]), np.random.default_rng(1))
    psf = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(out[0, 0]))))
    x = np.arange(-8, 9)  # the central +-8 pixels: the window is cut at Nyquist, which rings faintly far out
    row = psf[n // 2, n // 2 - 8:n // 2 + 9] / psf[n // 2, n // 2 - 8:n // 2 + 9].sum()
    assert np.sqrt((row * x ** 2).sum()) == pytest.approx(1.0, rel=0.05)  # sqrt(2) or 2 pi slips fail


def test_undersample_at_is_the_mask_of_its_seed():
    """The mask of ``seed`` (recon.masks.make_mask, which itself tries the next seeds where sigpy's Poisson-disk
    search fails: tests/test_masks.py), applied to the fully sampled k-space."""
    from recon.masks import make_mask

    k = _kspace(np.random.default_rng(0), s=1, c=2, n=32)
    sampled = mrd.undersample_at(k, "random", 4.0, seed=7)
    assert sampled.retrospective and sampled.mask.acceleration == 4.0
    assert np.array_equal(sampled.kspace, k * sampled.mask.mask.numpy())
    assert not np.array_equal(sampled.mask.mask.numpy(), mrd.undersample_at(k, "random", 4.0, seed=8).mask.mask.numpy())
    assert np.array_equal(sampled.mask.mask.numpy(), mrd.undersample_at(k, "random", 4.0, seed=7).mask.mask.numpy())
    poisson = mrd.undersample_at(k, "poisson", 4.0, seed=3)
    assert np.array_equal(poisson.mask.mask.numpy(), make_mask("poisson", (32, 32), 4.0,
                                                               center_fraction=poisson.mask.center_fraction,
                                                               seed=3).mask.numpy())


def test_script_help_runs():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "make_r_dataset.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--augment" in out.stdout


def test_script_builds_a_split_end_to_end(tmp_path, phantom_kspace):
    """The script's own path, not only its helpers: one volume, two R, one mask kind, CG-SENSE (through
    ``recon.pipeline.reconstruct``, i.e. calibration and the collapse guard), then its scores."""
    import h5py

    from recon.io.fastmri_h5 import write_fastmri_h5

    kspace, rss = phantom_kspace(slices=2, size=64, coils=4)
    folder = tmp_path / "sim" / "multicoil_test"
    folder.mkdir(parents=True)
    write_fastmri_h5(folder / "phantom.h5", kspace, reconstruction_rss=rss, attrs={"noise_std": np.zeros(2)})
    out = tmp_path / "r"
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "make_r_dataset.py"), "--data", str(tmp_path / "sim"),
                          "--out", str(out), "--splits", "test", "--methods", "sense", "--accels", "2", "4",
                          "--masks", "equispaced", "--slices", "1", "1", "2"], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    with h5py.File(out / "test" / "sense.h5") as hf:
        assert hf["images"].shape == (4, 64, 64) and list(hf["accel"][()]) == [2, 2, 4, 4]
        assert np.all((hf["qf_foreground"][()] >= 0) & (hf["qf_foreground"][()] <= 1))


def test_script_keeps_each_slices_snr_and_refuses_to_augment_other_snrs(tmp_path, phantom_kspace):
    """A make-dataset --snr-max file holds one SNR per slice: the script records those (not its SNR-40 default) and
    refuses --augment, whose noise model assumes the SNR-40 simulation, naming the file."""
    import h5py

    from recon.io.fastmri_h5 import write_fastmri_h5

    kspace, rss = phantom_kspace(slices=2, size=64, coils=4)
    folder = tmp_path / "sim" / "multicoil_test"
    folder.mkdir(parents=True)
    write_fastmri_h5(folder / "wide.h5", kspace, reconstruction_rss=rss,
                     attrs={"noise_std": np.zeros(2), "snr": 100.0, "snr_per_slice": np.array([100.0, 300.0])})
    args = [sys.executable, str(REPO / "scripts" / "make_r_dataset.py"), "--data", str(tmp_path / "sim"),
            "--out", str(tmp_path / "r"), "--splits", "test", "--methods", "zf", "--accels", "2",
            "--masks", "equispaced", "--slices", "1", "1", "2"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    with h5py.File(tmp_path / "r" / "test" / "zf.h5") as hf:
        assert sorted(hf["snr"][()]) == [100.0, 300.0]
    run = subprocess.run(args + ["--augment", "test"], capture_output=True, text=True, timeout=600)
    assert run.returncode != 0 and "wide.h5: simulated at SNR 100-300" in run.stderr

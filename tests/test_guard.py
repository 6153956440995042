"""recon.guard: reconstructions that collapse are caught (coverage, data consistency, agreement with the fully
sampled centre and with zero-filled) and fall back or raise one line. Built failures on the real 16-coil brain:
maps from the issue's fixed 24 x 24 block, maps of another slice, maps cropped by a kernel too wide for the
centre (caught by held-out lines), a mask off by one line, a method that returns nothing like the data; a coil with
no signal and too few centre lines are in test_calibration.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recon import baselines
from recon.calibration import calibrate_maps, min_center_fraction
from recon.coils import espirit_maps
from recon.errors import InputError
from recon.baselines import sense_image
from recon.guard import (
    MAX_ACS_DISAGREEMENT,
    acs_disagreement,
    check_reconstruction,
    data_residual,
    guarded,
    mask_matching_data,
    noise_fraction,
)
from recon.masks import center_fraction_for, default_center_fraction, make_mask
from recon.metrics import psnr
from test_calibration import load_brain16, rss_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def brain(shared_data):
    """R = 6 random mask with the default centre (6 lines) on the real brain, as stored."""
    full = load_brain16(shared_data)
    mask = make_mask("random", (96, 96), 6, center_fraction=max(default_center_fraction(6),
                                                                min_center_fraction(96)), seed=0)
    k = full * mask.mask.numpy()
    return full, k, mask, rss_of(full), baselines.zero_filled(k, mask.mask)


def test_good_reconstruction_passes(brain):
    full, k, mask, rss, zf = brain
    maps, _ = calibrate_maps(k, mask)
    image = sense_image(k, mask.mask, maps, max_iter=30)
    complex_report = check_reconstruction(image, k, mask, maps, zf)
    magnitude_report = check_reconstruction(baselines.cg_sense(k, mask.mask, maps), k, mask, maps)
    for report in (complex_report, magnitude_report):
        assert report.ok and not report.reasons
        assert report.coverage > 0.95 and report.residual < 0.1 and report.acs_disagreement < 0.2
    raw, noise = data_residual(image, k, mask.mask, maps)[0], noise_fraction(k, mask)[0]
    assert 0 < noise < raw and complex_report.residual == pytest.approx(np.sqrt(raw**2 - noise**2), rel=1e-5)
    # the true RSS itself sits well inside the centre check (low-passing a magnitude is not the RSS of
    # low-passed coil images, so it is not 0)
    assert acs_disagreement(rss, k, mask)[0] < MAX_ACS_DISAGREEMENT / 2


def test_fixed_24_block_collapse_is_caught_and_replaced(brain):
    """The issue's failure: ESPIRiT's 24 x 24 block on a 6-line centre reads unsampled k-space as zeros;
    CG-SENSE with those maps is far below zero-filled. The guard rejects them and the calibrated maps pass."""
    full, k, mask, rss, zf = brain
    square = espirit_maps(k[0], calib_width=24, kernel_width=3)[None]
    bad = baselines.cg_sense(k, mask.mask, square)
    assert psnr(rss, bad) < psnr(rss, zf) - 5  # measured 11.3 vs 21.1 dB
    report = check_reconstruction(bad, k, mask, square, zf)
    assert not report.ok and any("unexplained" in r or "fully sampled centre" in r for r in report.reasons)
    image, report, used, info = guarded(baselines.cg_sense, k, mask, maps=square)
    assert report.ok and report.attempt == "calibrated" and info.method == "espirit"
    assert any(w.startswith("given maps: rejected") for w in report.warnings)
    assert psnr(rss, image) > psnr(rss, zf) + 1


def test_maps_of_another_slice_are_caught(brain):
    """Built failure: maps that belong elsewhere (shifted 20 px along readout, as from a neighbouring slice
    position): the data-consistency and centre checks fail; the guard recalibrates."""
    full, k, mask, rss, zf = brain
    maps, _ = calibrate_maps(k, mask)
    elsewhere = np.roll(maps, 20, axis=-2)
    report = check_reconstruction(baselines.cg_sense(k, mask.mask, elsewhere), k, mask, elsewhere, zf)
    assert not report.ok and report.residual > 0.5
    assert any("unexplained" in r for r in report.reasons)
    image, report, _, _ = guarded(lambda kk, m, s: baselines.cg_sense(kk, m, s), k, mask, maps=elsewhere)
    assert report.attempt == "calibrated" and psnr(rss, image) > psnr(rss, zf) + 1


def test_maps_cropped_by_a_kernel_too_wide_are_caught_by_heldout_lines(shared_data):
    """Built failure: ESPIRiT with a 6 x 3 kernel (sigpy's habit of half the centre) on the 6-line centre of
    R = 8 (transposed): the eigenvalue crop takes part of the head out of the maps and CG-SENSE lands ~6 dB below
    zero-filled, while coverage (0.90), residual, centre agreement and energy pass their limits. Its maps predict
    measured lines they did not see 2.7x worse than zeros do: rejected, the calibrated maps are used."""
    from recon.calibration import _centred, calibration_region
    from recon.guard import HELDOUT_TRIGGER, MAX_HELDOUT_ERROR

    full = load_brain16(shared_data, transposed=True)
    rss = rss_of(full)
    mask = make_mask("random", (96, 96), 8, center_fraction=center_fraction_for(8, 96), seed=0)
    k = full * mask.mask.numpy()
    zf = baselines.zero_filled(k, mask.mask)
    rows, cols, _, _ = calibration_region(k[0], mask)
    strongest = int(np.argmax(np.sum(np.abs(k[0]) ** 2, axis=(1, 2))))
    wide = espirit_maps(_centred(k[0], rows, cols), calib_width=(rows.stop - rows.start, cols.stop - cols.start),
                        kernel_width=(6, 3), phase_coil=strongest)[None]
    bad = baselines.cg_sense(k, mask.mask, wide)
    assert psnr(rss, bad) < psnr(rss, zf) - 4  # measured 13.2 vs 19.6 dB
    report = check_reconstruction(bad, k, mask, wide, zf)
    assert not report.ok and len(report.reasons) == 1 and "held out" in report.reasons[0]  # only this check sees it
    assert report.residual > HELDOUT_TRIGGER and report.heldout_error > MAX_HELDOUT_ERROR
    image, report, _, info = guarded(baselines.cg_sense, k, mask, maps=wide)
    assert report.ok and report.attempt == "calibrated"
    assert any(w.startswith("given maps: rejected") and "held out" in w for w in report.warnings)
    assert psnr(rss, image) > psnr(rss, zf) + 1  # measured 21.8 vs 19.6 dB


def test_mask_off_by_one_line_recovers(brain):
    """Built failure: the mask handed over is the sampling mask shifted by one line. The guard sees lines
    marked sampled without data, uses the k-space's own pattern, and the reconstruction beats zero-filled."""
    full, k, mask, rss, zf = brain
    wrong = torch.roll(mask.mask, 1, dims=-1)
    fixed, warning = mask_matching_data(k, wrong)
    assert "off by a line" in warning and torch.equal(fixed.mask, mask.mask)
    assert mask_matching_data(k, mask) == (mask, None)
    image, report, _, info = guarded(baselines.cg_sense, k, wrong)
    assert report.ok and any("off by a line" in w for w in report.warnings)
    assert psnr(rss, image) > psnr(rss, zf) + 1


def test_every_attempt_failing_raises_one_line(brain):
    """A method whose output has nothing to do with the data: every fallback fails too -> InputError, one line,
    naming the check that failed."""
    full, k, mask, rss, zf = brain
    rng = np.random.default_rng(0)

    def noise(kk, m, s):
        return rng.random((1, 96, 96)).astype(np.float32) * float(zf.max())

    with pytest.raises(InputError) as err:
        guarded(noise, k, mask, source="brain.mat")
    message = str(err.value)
    assert "collapse guard" in message and "fully sampled centre" in message and "\n" not in message
    assert message.startswith("brain.mat")


@pytest.mark.parametrize("kind, accel, last", [("poisson", 6, "espirit"), ("random", 6, "espirit-refined")])
def test_no_fallback_repeats_another_attempts_maps(brain, monkeypatch, kind, accel, last):
    """Every attempt of the guard asks for maps no earlier attempt had: a 2-D (Poisson-disk) mask, whose default
    calibration already refines its maps, falls back to ESPIRiT alone last (until 2026-12-06 the last fallback,
    "refined", repeated the first attempt's maps); a line mask with a 6-line centre to the refinement step."""
    import recon.calibration as calibration

    full = brain[0]
    mask = make_mask(kind, (96, 96), accel, center_fraction=center_fraction_for(accel, 96), seed=0)
    k = full * mask.mask.numpy()
    asked = []
    real = calibration.calibrate_maps

    def spy(*args, **kw):
        maps, info = real(*args, **kw)
        asked.append((info.method, info.crop, info.num_maps))
        return maps, info

    monkeypatch.setattr(calibration, "calibrate_maps", spy)
    rng = np.random.default_rng(0)
    with pytest.raises(InputError):  # a method unrelated to the data: every attempt runs and fails
        guarded(lambda kk, m, s: rng.random((1, 96, 96)).astype(np.float32), k, mask)
    assert len(asked) == 4 and len(set(asked)) == 4, asked
    assert asked[-1][0] == last


def test_doubtful_image_is_kept_only_when_no_fallback_predicts_better(brain, monkeypatch):
    """A passing image whose maps predict held-out samples more than 1.5x worse than zeros is doubtful: the fallbacks
    run; with every attempt doubtful the best-predicting one is returned, with a warning that says so."""
    import recon.guard as guard

    full, k, mask, rss, zf = brain
    errors = iter([1.9, 1.6, 1.8, 1.7])  # calibrated, crop 0, 2 map sets, other calibration
    real = guard.check_reconstruction

    def doubtful(*args, **kw):
        report = real(*args, **kw)
        return guard.GuardReport(True, report.coverage, report.residual, report.acs_disagreement,
                                 report.correlation, report.energy_ratio, heldout_error=next(errors))

    monkeypatch.setattr(guard, "check_reconstruction", doubtful)
    image, report, _, _ = guarded(baselines.cg_sense, k, mask)
    assert report.ok and report.attempt == "crop 0" and report.heldout_error == pytest.approx(1.6)
    assert sum("doubtful" in w for w in report.warnings) == 4
    assert "may be worse than zero-filled" in report.warnings[-1] and report.warnings[-1].startswith("crop 0: kept")
    errors = iter([1.9, float("nan")])  # the first fallback passes without doubt (its held-out check did not run)
    _, report, _, _ = guarded(baselines.cg_sense, k, mask)
    assert report.attempt == "crop 0" and not any("kept" in w for w in report.warnings)


def test_small_fov_scan_doubtful_with_one_map_set_gets_two(shared_data):
    """The real small-FOV scan (field of view smaller than the head) undersampled further, equispaced R = 4: one
    ESPIRiT map set passes the checks but predicts held-out lines 1.78x worse than zeros (CG-SENSE 20.8 dB against
    zero-filled 22.5, on a proxy reference); the guard moves on to two map sets (held-out error 1.03, 23.5 dB)."""
    from mriqa.recon_quality.data import SMALLFOV
    from recon.pipeline import load_kspace, run_method, undersample

    scan = undersample(load_kspace(shared_data / SMALLFOV), 4, "equispaced", None, 0)
    result = run_method("sense", scan.kspace, scan.mask)
    report = result.guard[0]
    assert report.attempt == "2 map sets" and report.heldout_error < 1.2
    assert any(w.startswith("calibrated: doubtful") for w in report.warnings)


def test_too_few_lines_through_the_guard(shared_data):
    """3 centre lines at R = 12 (0.32 / R on W = 96): the guard's first attempt already uses the refined
    calibration and passes; CG-SENSE beats zero-filled."""
    full = load_brain16(shared_data, transposed=True)
    mask = make_mask("random", (96, 96), 12, seed=0)
    assert mask.num_low_frequencies == 3
    k = full * mask.mask.numpy()
    rss = rss_of(full)
    image, report, _, info = guarded(baselines.cg_sense, k, mask)
    assert report.ok and info.method == "espirit-refined"
    assert psnr(rss, image) > psnr(rss, baselines.zero_filled(k, mask.mask)) + 1  # measured +1.9 dB


def test_pipeline_runs_every_method_under_the_guard(brain):
    """``recon.pipeline.run_method`` (what ``mriqa recon`` runs): the default undersampling keeps the
    calibration's minimum centre, maps come from calibrate_maps, and the guard's report comes back per slice."""
    from types import SimpleNamespace

    from recon.masks import MIN_ACS, center_fraction_for
    from recon.pipeline import run_method, undersample

    full, _, _, reference, _ = brain
    sampled = undersample(SimpleNamespace(kspace=full, mask=None, path="brain"), 12, "random", None, seed=0)
    assert sampled.mask.num_low_frequencies >= MIN_ACS  # fastMRI's 0.32 / 12 would keep 3 of 96 lines
    assert sampled.mask.center_fraction == center_fraction_for(12, 96)
    zf = run_method("zf", sampled.kspace, sampled.mask)
    sense = run_method("sense", sampled.kspace, sampled.mask)
    assert zf.guard == () and len(sense.guard) == 1 and sense.guard[0].ok
    assert sense.calibration[0].method == "espirit" and sense.summary()["guard_attempt"] == "calibrated"
    assert psnr(reference, sense.image) > psnr(reference, zf.image) + 1.0


def test_summary_carries_the_heldout_error_only_where_it_ran():
    """The reconstruction h5's ``guard`` attribute: the worst held-out error over the slices where the check ran
    (residual above recon.guard.HELDOUT_TRIGGER), nothing about it where it ran on none."""
    from recon.guard import GuardReport
    from recon.pipeline import Reconstruction

    def report(residual, heldout=float("nan")):
        return GuardReport(True, 0.99, residual, 0.1, 0.9, 1.05, (), "calibrated", (), heldout)

    quiet = Reconstruction(np.zeros((2, 4, 4), np.float32), (report(0.0), report(0.01)), (None, None))
    assert quiet.summary()["guard"] == "coverage 0.99, residual 0.010, centre disagreement 0.10"
    checked = Reconstruction(np.zeros((2, 4, 4), np.float32), (report(0.03, 0.8), report(0.05, 1.3)), (None, None))
    assert checked.summary()["guard"].endswith("residual 0.050, centre disagreement 0.10, held-out error 1.30")
    assert "held-out error 1.30" in report(0.05, 1.3).line()


def test_pipeline_names_the_slice_that_fails(brain):
    """Two slices, the second's k-space replaced by noise the maps cannot explain: one line naming slice 1."""
    from recon.pipeline import run_method

    _, k, mask, _, _ = brain
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)).astype(np.complex64)
    two = np.concatenate([k, noise * np.abs(k).max() * mask.mask.numpy()])
    given = calibrate_maps(np.concatenate([k, k]), mask, cache_dir=False)[0]  # slice 0's maps for both
    with pytest.raises(InputError, match=r"^brain\.h5: sense: slice 1: .*collapse guard") as err:
        run_method("sense", two, mask, sens_maps=given, source="brain.h5", cache_dir=False)
    assert "\n" not in str(err.value)


def test_noisy_scan_passes_and_wrong_maps_still_fail(brain):
    """A low-SNR scan leaves a data residual that is mostly its noise: the guard subtracts the noise estimated
    from the outer k-space, so good maps pass where the raw residual is over the limit, and wrong maps (the
    slice transposed) still fail."""
    from recon.guard import MAX_RESIDUAL

    full, _, mask, _, _ = brain
    rng = np.random.default_rng(1)
    sigma = 0.5 * float(np.sqrt(np.mean(np.abs(full) ** 2)))
    noisy = full + (sigma / np.sqrt(2) * (rng.standard_normal(full.shape) + 1j * rng.standard_normal(full.shape)))
    k = (noisy * mask.mask.numpy()).astype(np.complex64)
    maps, _ = calibrate_maps(k, mask, cache_dir=False)
    image = sense_image(k, mask.mask, maps, max_iter=30)
    assert data_residual(image, k, mask.mask, maps)[0] > MAX_RESIDUAL  # the raw residual alone would reject it
    assert noise_fraction(k, mask)[0] > 0.9 * data_residual(image, k, mask.mask, maps)[0]
    assert check_reconstruction(image, k, mask, maps).ok
    wrong = np.ascontiguousarray(maps.transpose(0, 1, 3, 2))
    assert not check_reconstruction(sense_image(k, mask.mask, wrong), k, mask, wrong).ok


def test_poisson_mask_small_centre_block_passes(brain):
    """A 2-D Poisson mask's fully sampled block is small: the centre-image check is measured against
    zero-filled's own figure on that mask, so a good CG-SENSE passes (it failed at 0.77 > 0.30 before)."""
    from recon.guard import MAX_ACS_DISAGREEMENT

    full, _, _, reference, _ = brain
    mask = make_mask("poisson", (96, 96), 6, center_fraction=0.08, seed=0)  # an 8 x 8 fully sampled block
    k = full * mask.mask.numpy()
    image, report, _, _ = guarded(lambda kk, m, s: baselines.cg_sense(kk, m, s), k, mask)
    zf = baselines.zero_filled(k, mask.mask)
    assert report.ok and psnr(reference, image) > psnr(reference, zf)
    assert acs_disagreement(zf, k, mask)[0] > 0 and MAX_ACS_DISAGREEMENT == 0.3


def test_image_with_strong_smooth_phase_passes(brain):
    """The centre check low-passes the complex image: the real brain given a smooth phase of up to pi (as the
    simulation gives every slice) still passes with good maps, and stays far better than zero-filled."""
    from recon.fft import fft2c_np, ifft2c_np
    from recon.simulate import smooth_random_phase

    full, _, mask, _, _ = brain
    phase = smooth_random_phase(96, 96, np.random.default_rng(3))
    coil_images = ifft2c_np(full) * np.exp(1j * phase)[None, None]
    phased = fft2c_np(coil_images.astype(np.complex64))
    reference = np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=1))
    k = (phased * mask.mask.numpy()).astype(np.complex64)
    image, report, _, _ = guarded(lambda kk, m, s: baselines.cg_sense(kk, m, s), k, mask)
    assert report.ok and report.acs_disagreement < MAX_ACS_DISAGREEMENT
    assert psnr(reference, image) > psnr(reference, baselines.zero_filled(k, mask.mask)) + 1

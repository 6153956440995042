"""The k-space-aware quality signal (issue 20, optional part): complex outputs of the solvers, k-space
cross-validation (recon.crossval), the NMSE estimate, the per-method check and its combination with the image
score, and the data builder's ``kspace_check`` columns."""
from __future__ import annotations

import numpy as np
import pytest

from recon.crossval import HeldoutLayout, heldout_errors, nmse_estimate, outer_lines, unmeasured_energy
from recon.masks import make_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def disc(phantom_kspace):
    """One fully sampled 4-coil 64 x 64 phantom slice ``[1, C, H, W]`` and its ESPIRiT maps ``[1, C, H, W]``."""
    from recon.coils import espirit_maps

    kspace, rss = phantom_kspace(slices=1, size=64, coils=4)
    return kspace, espirit_maps(kspace[0])[None].astype(np.complex64), rss


def test_complex_outputs_are_the_images_behind_the_magnitudes(disc):
    from recon import baselines
    from recon.modl import load_modl, modl_reconstruct

    kspace, maps, _ = disc
    mask = make_mask("equispaced", kspace.shape[-2:], 4, seed=0).mask
    k = kspace * mask.numpy()
    for name, run in (("sense", lambda **o: baselines.cg_sense(k, mask, maps, **o)),
                      ("l1", lambda **o: baselines.l1_wavelet(k, mask, maps, **o)),
                      ("modl", lambda **o: modl_reconstruct(load_modl("modl"), k, mask, sens_maps=maps, **o))):
        magnitude, image = run(), run(complex_output=True)
        assert image.dtype == np.complex64 and image.shape == magnitude.shape, name
        assert np.allclose(np.abs(image), magnitude, rtol=1e-4, atol=1e-4 * magnitude.max()), name


def test_heldout_errors_of_a_perfect_and_of_a_zero_prediction(disc):
    kspace, _, _ = disc
    full = kspace[0]
    mask = make_mask("random", full.shape[-2:], 4, seed=1)
    points = np.broadcast_to(mask.mask.numpy().reshape(1, -1) > 0, full.shape[-2:]).copy()
    k = full * points
    cols = slice(28, 36)
    layout = HeldoutLayout(points, (slice(0, full.shape[-2]), cols), lines=True)
    errors, held = heldout_errors(k, layout, lambda kept, keep: full, folds=3)
    assert held.any() and not held[:, cols].any() and np.all(errors == 0)
    assert set(np.flatnonzero(held.any(0))) == set(outer_lines(points, cols))  # every outer line, once
    errors, held = heldout_errors(k, layout, lambda kept, keep: np.zeros_like(kept), folds=3)
    nmse, relative = nmse_estimate(k, points, errors, held)
    assert relative == pytest.approx(1.0)
    # no line outside the centre: nothing to hold out
    only_centre = np.zeros_like(points)
    only_centre[:, cols] = True
    errors, held = heldout_errors(full * only_centre, layout._replace(points=only_centre), lambda kept, keep: full)
    assert not held.any() and np.isnan(nmse_estimate(full * only_centre, only_centre, errors, held)[0])


def test_folds_of_a_2d_mask_hold_out_points_and_never_the_calibration_box(disc):
    """A Poisson-disk mask samples points, not lines: its folds deal single points outside the fully sampled box
    (each once), so a fold's reconstruction still sees a Poisson-like mask; a line mask's folds are whole lines."""
    from recon.calibration import heldout_layout
    from recon.crossval import fold_masks

    kspace, _, _ = disc
    full = kspace[0]
    mask = make_mask("poisson", full.shape[-2:], 6, seed=0)
    k = full * mask.mask.numpy()[0]
    layout = heldout_layout(k, mask)
    points, (rows, cols) = layout.points, layout.centre
    assert not layout.lines and rows.stop - rows.start < full.shape[-2]
    folds = fold_masks(layout, folds=4, seed=0)
    held = np.sum(folds, axis=0)
    box = np.zeros_like(points)
    box[rows, cols] = True
    assert len(folds) == 4 and held.max() == 1 and np.array_equal(held > 0, points & ~box)
    assert all(not np.array_equal(f.any(0)[None] & points, f) for f in folds)  # points of a line, not the line
    line = make_mask("random", full.shape[-2:], 4, seed=1)
    lines = heldout_layout(full * line.mask.numpy(), line)
    assert lines.lines
    for f in fold_masks(lines, folds=4, seed=0):
        assert np.array_equal(f, lines.points & f.any(0)[None])  # whole lines


def test_unmeasured_energy_interpolates_a_log_linear_spectrum_exactly():
    h, w = 8, 40
    ky = np.abs(np.arange(w) - w // 2)
    energy = np.exp(-0.3 * ky)[None].repeat(h, 0) * np.linspace(1, 2, h)[:, None]
    kspace = np.sqrt(energy)[None].astype(np.complex64)  # one coil
    points = np.zeros((h, w), bool)
    points[:, ::3] = True
    points[:, w // 2] = True
    estimate = unmeasured_energy(kspace, points)
    assert np.all(estimate[points] == 0)
    inside = ~points & (np.arange(w) > 0)[None] & (np.arange(w) < 39)[None]  # between measured lines
    same_side = inside & ~((np.arange(w) > w // 2 - 3) & (np.arange(w) < w // 2 + 3))[None]
    assert np.allclose(estimate[same_side], energy[same_side], rtol=1e-4)


def test_nmse_estimate_of_zero_filled_is_close_to_the_energy_it_misses(disc):
    """Zero-filled predicts zeros, so its estimate is the estimated unmeasured energy fraction: within 30 % of the
    truth at R = 2-4 on the phantom, biased high beyond (the interpolation bridges wider gaps), rising with R."""
    kspace, _, _ = disc
    full = kspace[0]
    estimates = []
    for accel in (2, 3, 4, 6, 8):
        mask = make_mask("random", full.shape[-2:], accel, seed=0)
        points = np.broadcast_to(mask.mask.numpy().reshape(1, -1) > 0, full.shape[-2:]).copy()
        k = full * points
        centre = (slice(0, 64), slice(32 - mask.num_low_frequencies // 2, 32))
        errors, held = heldout_errors(k, HeldoutLayout(points, centre, lines=True),
                                      lambda kept, keep: np.zeros_like(kept))
        nmse, _ = nmse_estimate(k, points, errors, held)
        missing = float(np.sum(np.abs(full[:, ~points]) ** 2) / np.sum(np.abs(full) ** 2))
        assert 0.9 * missing < nmse < (1.3 if accel <= 4 else 3.0) * missing, accel
        estimates.append(nmse)
    assert np.all(np.diff(estimates) > 0)


def test_banded_nmse_estimate_weighs_each_band_by_its_own_relative_error(disc):
    """``nmse_estimate(bands=B)``: the held-out samples in B radial bands of equal count, each band's relative error
    applied to the unmeasured energy at its radii. One band is ``r U / (M + U)``; zero-filled (r = 1 everywhere)
    and a prediction with the same relative error at every sample get the same estimate for any B; a prediction
    exact near the centre and zero far out gets, with bands, the unmeasured energy of the far bands."""
    from recon.crossval import heldout_weights, kspace_radius

    kspace, _, _ = disc
    full = kspace[0]
    points = make_mask("poisson", full.shape[-2:], 4, seed=0).mask.numpy().reshape(full.shape[-2:]) > 0
    k = full * points
    layout = HeldoutLayout(points, (slice(28, 36), slice(28, 36)), lines=False)
    energy = np.sum(np.abs(full) ** 2, axis=0)
    missing = unmeasured_energy(k, points)
    total = energy[points].sum() + missing.sum()

    errors, held = heldout_errors(k, layout, lambda kept, keep: np.zeros_like(kept))
    for bands in (1, 2, 4, 8):
        assert nmse_estimate(k, points, errors, held, bands)[0] == pytest.approx(missing.sum() / total, rel=1e-6)
    half = heldout_errors(k, layout, lambda kept, keep: 0.5 * full)[0]  # |y - y/2|^2 = |y|^2 / 4 everywhere
    quarter = missing.sum() / total / 4
    assert [nmse_estimate(k, points, half, held, b)[0] for b in (1, 8)] == pytest.approx([quarter, quarter])

    radius = kspace_radius(full.shape[-2:])
    low = heldout_errors(k, layout, lambda kept, keep: full * (radius < 0.2))[0]
    one, relative = nmse_estimate(k, points, low, held, 1)
    assert one == pytest.approx(relative * missing.sum() / total)
    weights = heldout_weights(k, points, held, 8)
    assert np.all(weights[~held] == 0) and np.all(weights[held] > 0)
    edges = np.quantile(radius[held], np.linspace(0, 1, 9)[1:-1])
    inner = radius <= edges[0]  # the first band: all its held-out samples predicted exactly
    assert np.all(low[held & inner] == 0)
    far = np.searchsorted(edges, radius) == 7  # the last band: all of them wrong (predicted 0)
    assert np.allclose(low[held & far], energy[held & far])
    banded = nmse_estimate(k, points, low, held, 8)[0]
    assert banded > one  # the far bands, where the energy is missing, get their own (larger) rate
    assert banded >= missing[far].sum() / total


def test_kspace_check_ranks_methods_and_accelerations(disc):
    from mriqa.recon_quality.kspace import kspace_check

    kspace, maps, _ = disc
    checks = {}
    for accel in (2, 6):
        mask = make_mask("equispaced", kspace.shape[-2:], accel, seed=0)
        k = kspace * mask.mask.numpy()
        for method in ("zf", "sense"):
            checks[method, accel] = kspace_check(method, k, mask, maps)[0]
    assert checks["zf", 2].heldout_error == pytest.approx(1.0) and checks["zf", 6].heldout_error == pytest.approx(1.0)
    assert checks["sense", 2].nmse_estimate < checks["zf", 2].nmse_estimate
    assert checks["sense", 6].nmse_estimate < checks["zf", 6].nmse_estimate
    assert checks["sense", 2].nmse_estimate < checks["sense", 6].nmse_estimate
    assert checks["zf", 2].nmse_estimate < checks["zf", 6].nmse_estimate
    assert all(c.heldout_lines > 0 for c in checks.values())


def test_combined_score_discounts_the_image_score():
    from mriqa.recon_quality.kspace import combined_score

    image = np.array([0.9, 0.9, 0.5, 0.7])
    nmse = np.array([0.0, 0.1, 0.1, np.nan])
    out = combined_score(image, nmse, tau=0.1, power=1.0)
    assert out[0] == pytest.approx(0.9) and out[1] == pytest.approx(0.45) and out[2] == pytest.approx(0.25)
    assert out[3] == pytest.approx(0.7)  # no estimate: the image score alone
    assert np.all((out >= 0) & (out <= 1))
    gentle = combined_score(image, nmse, tau=0.1, power=0.25)
    assert gentle[1] == pytest.approx(0.9 * 2 ** -0.25) and np.all(gentle >= out)


def test_method_predictor_takes_map_sets_and_refuses_unknown_methods(disc):
    """With two ESPIRiT map sets the prediction is ``F sum_m S_m x_m``: a second set of zeros changes nothing."""
    from mriqa.recon_quality.kspace import method_predictor
    from recon.errors import InputError

    kspace, maps, _ = disc
    mask = make_mask("equispaced", kspace.shape[-2:], 3, seed=0)
    keep = np.broadcast_to(mask.mask.numpy().reshape(1, -1) > 0, kspace.shape[-2:]).copy()
    one = method_predictor("sense", maps[0])(kspace[0] * keep, keep)
    two = method_predictor("sense", np.stack([maps[0], np.zeros_like(maps[0])]))(kspace[0] * keep, keep)
    assert one.shape == two.shape == kspace[0].shape
    assert np.allclose(one, two, atol=1e-4 * np.abs(one).max())
    with pytest.raises(InputError, match="must be"):
        method_predictor("sense", maps[0, 0])  # one coil's map [H, W]
    with pytest.raises(InputError, match="unknown method"):
        method_predictor("varnet", maps[0])


def test_builder_stores_the_kspace_check(tmp_path, phantom_kspace):
    from mriqa.recon_quality.data import build_quality_split, read_quality_set
    from recon.io.fastmri_h5 import write_fastmri_h5

    kspace, rss = phantom_kspace(slices=1, size=64, coils=4)
    write_fastmri_h5(tmp_path / "multicoil_test" / "phantom.h5", kspace, reconstruction_rss=rss)
    out = build_quality_split(tmp_path, "test", tmp_path / "q.h5", methods=("zf", "sense"), accels=(2.0, 4.0),
                              masks=("equispaced",), slices=1, kspace_check=True, log=lambda s: None)
    d = read_quality_set([out])
    assert d["kspace_nmse"].shape == (4,) and np.all(np.isfinite(d["kspace_nmse"]))
    zf = d["method"] == "zf"
    assert np.allclose(d["kspace_rel"][zf], 1.0)
    # the estimate with every band choice (what the evaluation chooses from), the shipped one among them
    from recon.crossval import NMSE_BAND_CHOICES, NMSE_BANDS

    assert d["kspace_bands"].shape == (4, len(NMSE_BAND_CHOICES))
    assert np.allclose(d["kspace_bands"][:, NMSE_BAND_CHOICES.index(NMSE_BANDS)], d["kspace_nmse"])
    assert np.allclose(d["kspace_bands"][zf], d["kspace_nmse"][zf][:, None], rtol=1e-5)  # zeros: r = 1 in every band
    for accel in (2.0, 4.0):
        at = d["accel"] == accel
        assert d["kspace_nmse"][at & ~zf][0] < d["kspace_nmse"][at & zf][0]


def test_real_kspace_check_and_combined_score_order_like_the_reference(shared_data):
    """The real 16-coil brain, zero-filled and CG-SENSE at R = 2 and 8: the k-space check's NMSE estimate rises with
    R for both methods and puts CG-SENSE below zero-filled at R = 2 (at R = 8 it does not: each fold is an R ~ 10
    reconstruction); the combined score orders all four of each orientation as their SSIM does."""
    from mriqa import load_predictor
    from mriqa.iqa.correlation import srcc
    from mriqa.recon_quality.data import real_kspace_set
    from mriqa.recon_quality.kspace import combined_score

    real = real_kspace_set(shared_data, methods=("zf", "sense"), accels=(2, 8), masks=("equispaced",),
                           kspace_check=True, log=lambda s: None)
    image = load_predictor("recon", device="cpu").score(real["images"], kind="mri")
    combined = combined_score(image, real["kspace_nmse"])
    for volume in set(real["volume"]):
        sel = real["volume"] == volume
        nmse = {(m, a): v for m, a, v in zip(real["method"][sel], real["accel"][sel], real["kspace_nmse"][sel])}
        assert nmse["zf", 2] < nmse["zf", 8] and nmse["sense", 2] < nmse["sense", 8]
        assert nmse["sense", 2] < nmse["zf", 2]
        assert srcc(combined[sel], real["ssim"][sel]) == pytest.approx(1.0)


def test_shipped_combination_is_the_one_the_evaluation_chose():
    """NMSE_BANDS, COMBINED_TAU, COMBINED_POWER and R_AWARE_POWER are what scripts/eval_kspace_quality.py chose on
    the validation subjects."""
    import json
    from pathlib import Path

    from mriqa.recon_quality.kspace import COMBINED_POWER, COMBINED_TAU
    from mriqa.recon_quality.r_aware import R_AWARE_POWER
    from recon.crossval import NMSE_BANDS

    chosen = json.loads((Path(__file__).resolve().parents[1] / "docs/rq/kspace.json").read_text())
    assert (chosen["bands"], chosen["tau"], chosen["power"], chosen["pool"], chosen["r_power"]) == (
        NMSE_BANDS, COMBINED_TAU, COMBINED_POWER, "mean", R_AWARE_POWER)


def test_kspace_check_sees_the_fold_over_one_map_set_cannot_explain(shared_data):
    """The ESPIRiT small-FOV scan (its field of view smaller than the head) needs two map sets: asked for one, the
    collapse guard falls back to two, and the k-space check with the maps the image was made with says it fits
    (NMSE estimate below 0.2), where one set's maps cannot explain the data (above 0.4; until 2026-12-06
    ``mriqa recon --quality`` checked with freshly calibrated single-set maps and printed that figure, 0.72)."""
    from mriqa.recon_quality.data import SMALLFOV
    from mriqa.recon_quality.kspace import reconstruction_quality
    from recon.calibration import calibrate_maps
    from recon.pipeline import load_kspace, run_method, undersample

    scan = undersample(load_kspace(shared_data / SMALLFOV))
    result = run_method("sense", scan.kspace, scan.mask, num_maps=1, keep_maps=True)
    assert result.guard[0].attempt == "2 map sets" and result.maps[0].shape[:2] == (2, 8)
    one_set = calibrate_maps(scan.kspace, scan.mask, num_maps=1)[0]
    nmse = {sets: reconstruction_quality("sense", scan.kspace, scan.mask, result.image, maps=maps)["kspace_nmse"][0]
            for sets, maps in ((2, result.maps), (1, one_set))}
    assert nmse[2] < 0.2 < 0.4 < nmse[1]

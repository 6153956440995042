"""recon.calibration: a calibration region sized from the fully sampled centre actually there, kernels that fit,
the refinement step for narrow centres, and the minimum centre for retrospective masks. Real-data tests use the
16-coil SENSE-tutorial brain (``../shared/data``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recon import baselines
from recon.calibration import (
    MIN_CALIB_LINES,
    MIN_CENTER_LINES,
    MIN_ESPIRIT_LINES,
    calibrate_maps,
    calibration_region,
    kernel_for,
    min_center_fraction,
)
from recon.errors import InputError
from recon.fft import fft2c_np, ifft2c_np
from recon.masks import default_center_fraction, make_mask
from recon.metrics import psnr

def load_brain16(shared_data, transposed: bool = False) -> np.ndarray:
    """The real 16-coil k-space ``[1, 16, 96, 96]`` (:mod:`recon.io.sense_tutorial`). As stored, the masks select
    the file's last axis (MATLAB's first: the axis the tutorial itself undersamples); ``transposed`` masks the
    other."""
    from recon.io.sense_tutorial import SENSE_TUTORIAL, read_sense_tutorial, sense_tutorial_orientations

    k = read_sense_tutorial(shared_data / SENSE_TUTORIAL)
    return sense_tutorial_orientations(k)["transposed" if transposed else "as-stored"][None]


def rss_of(kspace: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.abs(ifft2c_np(kspace)) ** 2, axis=1))


def line_mask(width: int, centre: int, extra=(), offset: int = 0) -> torch.Tensor:
    """``[1, 1, W]``: ``centre`` lines around ``W // 2`` (shifted by ``offset``) plus the columns in ``extra``."""
    m = torch.zeros(1, 1, width)
    start = width // 2 - centre // 2 + offset
    m[..., start:start + centre] = 1
    m[..., list(extra)] = 1
    return m


@pytest.fixture(scope="module")
def phantom():
    from recon.coils import birdcage_maps

    h, w, c = 64, 48, 6
    maps = birdcage_maps(c, h, w)
    y, x = np.mgrid[:h, :w]
    image = ((((y - h / 2) / (0.4 * h)) ** 2 + ((x - w / 2) / (0.4 * w)) ** 2) < 1) * (1 + 0.3 * np.cos(x / 2.5))
    k = fft2c_np((maps * image).astype(np.complex64))
    rng = np.random.default_rng(0)
    k = k + 0.002 * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)).astype(np.complex64)
    return k[None], maps, image


def test_min_center_fraction_keeps_the_minimum_with_the_default_rule():
    """``max(default_center_fraction(R), min_center_fraction(W))`` never leaves fewer than MIN_CENTER_LINES
    centre lines (0.32 / R alone leaves 3 at W = 96, R = 12), and the masks still reach their R."""
    assert round(96 * default_center_fraction(12)) < MIN_CENTER_LINES
    for width in (96, 168, 320, 368):
        for accel in (2, 3, 4, 6, 8, 10, 12):
            cf = max(default_center_fraction(accel), min_center_fraction(width))
            for kind in ("random", "equispaced"):
                mask = make_mask(kind, (16, width), accel, center_fraction=cf, seed=0)
                assert mask.num_low_frequencies >= MIN_CENTER_LINES
                if kind == "equispaced":
                    assert abs(mask.acceleration_effective - accel) / accel < 0.1
    assert min_center_fraction(4) == 1.0
    with pytest.raises(InputError, match="width"):
        min_center_fraction(0)


def test_kernel_fits_the_region():
    assert kernel_for((48, 6)) == (4, 2)
    assert kernel_for((48, 9)) == (6, 3)
    assert kernel_for((48, 24)) == (6, 6)
    assert kernel_for((3, 3)) == (2, 2)
    for acs in range(2, 30):
        ro, pe = kernel_for((48, acs))
        assert 2 <= pe <= min(6, acs) and pe <= ro <= 2 * pe


def test_region_from_mask_and_data(phantom):
    k, _, _ = phantom
    h, w = k.shape[-2:]
    sparse = line_mask(w, 10, extra=(3, 40))
    rows, cols, acs, warnings = calibration_region(k * sparse.numpy(), sparse)
    assert (rows.stop - rows.start, acs, cols.start) == (48, 10, w // 2 - 5) and not warnings
    assert calibration_region(k, line_mask(w, 10), max_rows=None)[0] == slice(0, h)
    # centre off by one: the run through the neighbouring line is used, not lost
    shifted = line_mask(w, 8, offset=-5)  # columns 15..22, W // 2 = 24 not sampled
    shifted[..., 23] = 1
    assert calibration_region(k * shifted.numpy(), shifted)[2] == 9
    # the mask marks lines that hold no data: they are left out and reported
    data_mask = line_mask(w, 8)
    rows, cols, acs, warnings = calibration_region(k * data_mask.numpy(), line_mask(w, 12))
    assert acs == 8 and "hold no data" in warnings[0]
    # 2-D mask: the fully sampled block
    block = torch.zeros(1, h, w)
    block[:, h // 2 - 6:h // 2 + 6, w // 2 - 4:w // 2 + 4] = 1
    block[:, ::3, ::3] = 1
    rows, cols, acs, _ = calibration_region(k * block.numpy(), block)
    assert rows.stop - rows.start >= 12 and acs >= 8


def test_calibrated_maps_match_true_maps(phantom):
    k, maps, image = phantom
    mask = line_mask(k.shape[-1], 8, extra=range(1, k.shape[-1], 4))
    est, info = calibrate_maps(k * mask.numpy(), mask)
    assert est.shape == k.shape and est.dtype == np.complex64
    assert (info.method, info.calib, info.kernel, info.acs_width) == ("espirit", (48, 8), (6, 3), 8)
    inside = np.abs(image) > 0
    match = np.abs(np.sum(est[0].conj() * maps, axis=0))[inside]
    assert np.median(match) > 0.99
    assert info.describe()["calib"] == [48, 8] and "espirit 48x8 k6x3" == info.short()


def test_single_coil_and_bad_input(phantom):
    k, _, _ = phantom
    mask = line_mask(k.shape[-1], 8)
    ones, info = calibrate_maps(k[:, :1], mask)
    assert info.method == "single-coil" and np.all(ones == 1)
    with pytest.raises(InputError, match=r"complex \[S, C, H, W\]"):
        calibrate_maps(np.abs(k), mask)
    with pytest.raises(InputError, match="unknown calibration method"):
        calibrate_maps(k, mask, method="magic")
    with pytest.raises(InputError, match="only 0 fully sampled centre lines"):
        calibrate_maps(np.zeros_like(k), torch.ones(1, 1, k.shape[-1]))


def test_cache_serves_repeat_calls(phantom, tmp_path):
    from recon import coils

    k, _, _ = phantom
    src = tmp_path / "data.h5"
    src.write_bytes(b"x")
    mask = line_mask(k.shape[-1], 8)
    a, _ = calibrate_maps(k * mask.numpy(), mask, source=src, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    real, calls = coils.espirit_maps, []
    coils.espirit_maps = lambda *args, **kw: calls.append(1) or real(*args, **kw)
    try:
        b, _ = calibrate_maps(k * mask.numpy(), mask, source=src, cache_dir=tmp_path / "cache")
    finally:
        coils.espirit_maps = real
    assert calls == [] and np.array_equal(a, b)


# ------------------------------------------------------------------------------------------------ real data


@pytest.mark.parametrize("transposed", [False, True])
def test_real_default_centre_at_r6_beats_zero_filled(shared_data, transposed):
    """The issue's case: R = 6 with the default centre. Calibrated on the 6 lines there (48 x 6, kernel 4 x 2)
    CG-SENSE beats zero-filled by > 1 dB in both orientations (the fixed 24 x 24 block collapses: test_guard)."""
    full = load_brain16(shared_data, transposed)
    cf = max(default_center_fraction(6), min_center_fraction(96))
    mask = make_mask("random", (96, 96), 6, center_fraction=cf, seed=0)
    k = full * mask.mask.numpy()
    maps, info = calibrate_maps(k, mask)
    assert (info.method, info.calib, info.kernel) == ("espirit", (48, 6), (4, 2)) and not info.warnings
    rss = rss_of(full)
    gain = psnr(rss, baselines.cg_sense(k, mask.mask, maps)) - psnr(rss, baselines.zero_filled(k, mask.mask))
    assert gain > 1.0  # measured +3.0 / +5.8 dB


@pytest.mark.parametrize("accel", [6, 12])
def test_real_too_few_centre_lines_refined_or_one_line_error(shared_data, accel):
    """Built failure 1: 3 centre lines (0.32 / R at R = 12). ESPIRiT alone crops off a quarter of the head
    (CG-SENSE below zero-filled); with the refinement step CG-SENSE beats zero-filled, with a warning.
    2 lines: one clear line."""
    full = load_brain16(shared_data)
    mask = make_mask("random", (96, 96), accel, center_fraction=3 / 96, seed=0)
    k = full * mask.mask.numpy()
    rss = rss_of(full)
    zf = psnr(rss, baselines.zero_filled(k, mask.mask))
    alone, _ = calibrate_maps(k, mask, method="espirit")
    assert psnr(rss, baselines.cg_sense(k, mask.mask, alone)) < zf  # measured 14.1 / 11.2 vs 17.7 / 17.4
    maps, info = calibrate_maps(k, mask)
    assert info.method == "espirit-refined" and info.acs_width == 3 and info.synthesised == (48, 24)
    assert any("only 3 fully sampled centre lines" in w for w in info.warnings)
    assert psnr(rss, baselines.cg_sense(k, mask.mask, maps)) > zf + 1.0  # measured +2.8 / +1.4 dB
    two = line_mask(96, 2, extra=range(0, 96, accel))
    with pytest.raises(InputError) as err:
        calibrate_maps(full * two.numpy(), two, source="brain.mat")
    assert "only 2 fully sampled centre lines" in str(err.value) and f"at least {MIN_CALIB_LINES}" in str(err.value)
    assert "\n" not in str(err.value)
    assert MIN_CALIB_LINES < MIN_ESPIRIT_LINES == MIN_CENTER_LINES


def test_real_dead_coil(shared_data):
    """Built failure 2: coil 0 (the usual phase reference) holds no signal. Its maps are 0, the phase is taken
    from the strongest coil, and CG-SENSE still beats zero-filled."""
    full = load_brain16(shared_data)
    full[:, 0] = 0
    mask = make_mask("equispaced", (96, 96), 4, center_fraction=max(0.08, min_center_fraction(96)), seed=0)
    k = full * mask.mask.numpy()
    maps, info = calibrate_maps(k, mask)
    assert info.dead_coils == (0,) and info.phase_coil != 0 and "coil(s) 0 hold no signal" in info.warnings[0]
    assert not np.any(maps[:, 0])
    rss = rss_of(full)
    assert psnr(rss, baselines.cg_sense(k, mask.mask, maps)) > psnr(rss, baselines.zero_filled(k, mask.mask)) + 1


def test_region_finds_an_off_centre_block_inside_a_wider_run():
    """A 2-D mask whose fully sampled 6 x 6 block sits asymmetric inside the centre row's run of sampled points
    (random points beside it): the region is the block, not a 1-row strip of the run."""
    from recon.calibration import calibration_region

    h = w = 32
    mask = np.zeros((1, h, w), np.float32)
    mask[0, 13:19, 13:19] = 1  # the block: rows 13-18, columns 13-18
    mask[0, 16, 19:23] = 1  # the centre row continues to the right
    k = np.ones((1, 2, h, w), np.complex64) * mask
    rows, cols, acs, _ = calibration_region(k, torch.from_numpy(mask))
    assert (rows.start, rows.stop, cols.start, cols.stop, acs) == (13, 19, 13, 19, 6)


def test_2d_masks_are_refined_on_a_square_and_select_gives_the_same_maps(phantom):
    """A 2-D mask's fully sampled block is small in both directions: auto refines on a SYNTH_LINES square (capped
    by the matrix), and select, whose other candidates never did better on 2-D masks, returns the same maps."""
    from recon.calibration import SYNTH_LINES

    k, _, _ = phantom
    h, w = k.shape[-2:]
    block = torch.zeros(1, h, w)
    block[:, h // 2 - 4:h // 2 + 4, w // 2 - 4:w // 2 + 4] = 1
    block[:, ::3, ::2] = 1
    kk = k * block.numpy()
    maps, info = calibrate_maps(kk, block)
    assert info.method == "espirit-refined" and info.synthesised == (min(SYNTH_LINES, h), min(SYNTH_LINES, w))
    assert not any("centre lines" in line for line in info.warnings)  # the normal 2-D path: no warning
    chosen, chosen_info = calibrate_maps(kk, block, method="select")
    assert np.array_equal(chosen, maps) and chosen_info.method == "espirit-refined"
    assert any("select on a 2-D mask" in line for line in chosen_info.warnings)


def test_real_poisson_masks_gain_from_the_refinement_step(shared_data):
    """The real 16-coil brain, Poisson-disk R = 6 (a 6 x 6 fully sampled square): ESPIRiT of the square gives
    CG-SENSE 9.1 dB over zero-filled, auto's refined maps 15.1 dB (docs/recon/real_kspace.md)."""
    full = load_brain16(shared_data)
    mask = make_mask("poisson", (96, 96), 6, center_fraction=max(default_center_fraction(6), min_center_fraction(96)),
                     seed=0)
    k = full * mask.mask.numpy()
    rss = rss_of(full)
    plain, _ = calibrate_maps(k, mask, method="espirit")
    auto, info = calibrate_maps(k, mask)
    assert info.method == "espirit-refined"
    gain = psnr(rss, baselines.cg_sense(k, mask.mask, auto)) - psnr(rss, baselines.cg_sense(k, mask.mask, plain))
    assert gain > 2.0  # measured +6.0 dB (the refinement on the 6 rows of the square alone: +5.4)


# ------------------------------------------------------------------------------- held-out lines (select)


def test_heldout_line_error_prefers_the_maps_that_made_the_data(phantom):
    """Maps that generated the k-space predict measured lines they did not see far better than wrong maps
    (another coil order); a mask with nothing outside the calibration region gives inf."""
    from recon.calibration import heldout_layout, heldout_line_error

    k, maps, _ = phantom
    width = k.shape[-1]
    m = line_mask(width, 8, extra=range(0, width, 3))
    points = np.broadcast_to(m.numpy()[0] > 0, k.shape[-2:])
    kk = k[0] * points
    layout = heldout_layout(kk, m)
    right = heldout_line_error(kk, layout, maps)
    swapped = heldout_line_error(kk, layout, maps[::-1].copy())
    shifted = heldout_line_error(kk, layout, np.roll(maps, 5, axis=-2))
    assert right < shifted < swapped and right < swapped / 3  # measured 0.74 < 0.79 < 2.69
    only_centre = np.broadcast_to(line_mask(width, 8).numpy()[0] > 0, k.shape[-2:])
    centre_only = line_mask(width, 8)
    assert heldout_line_error(k[0] * only_centre, heldout_layout(k[0] * only_centre, centre_only), maps) == float("inf")


def test_select_keeps_the_maps_of_lower_heldout_error(phantom):
    """select: of ESPIRiT, refined and low-threshold ESPIRiT maps, the one of lowest held-out error, but only where
    it beats what auto returns by SELECT_MARGIN."""
    from recon.calibration import SELECT_MARGIN, SELECT_THRESH_FACTOR, THRESH, heldout_layout, heldout_line_error

    k, _, _ = phantom
    width = k.shape[-1]
    m = line_mask(width, 6, extra=range(0, width, 4))
    kk = k * m.numpy()
    chosen, info = calibrate_maps(kk, m, method="select")
    candidates = [calibrate_maps(kk, m, method="espirit")[0][0], calibrate_maps(kk, m, method="refined")[0][0],
                  calibrate_maps(kk, m, method="espirit", thresh=THRESH * SELECT_THRESH_FACTOR)[0][0]]
    layout = heldout_layout(kk[0], m)
    errors = [heldout_line_error(kk[0], layout, x) for x in candidates]
    best = int(np.argmin(errors))
    expected = best if errors[best] < (1 - SELECT_MARGIN) * errors[0] else 0
    assert np.allclose(chosen[0], candidates[expected])
    assert info.method == ("espirit-refined" if expected == 1 else "espirit")
    assert any(w.startswith("calibration chosen by held-out lines") for w in info.warnings)
    with pytest.raises(InputError, match="unknown calibration method"):
        calibrate_maps(kk, m, method="best")


def test_select_keeps_the_base_unless_a_candidate_is_clearly_better():
    """_select's margin: a candidate 10 % better than the base is not taken, 30 % better is; the base is what auto
    would return (index 1, refined, under MIN_ESPIRIT_LINES centre lines)."""
    from unittest import mock

    from recon import calibration

    def pick(errors, base=0):
        with mock.patch.object(calibration, "heldout_line_error", side_effect=errors):
            return calibration._select(None, None, [None] * len(errors), base)

    assert calibration.SELECT_MARGIN == 0.2
    assert pick([1.0, 0.9, 0.95]) == 0
    assert pick([1.0, 0.9, 0.7]) == 2
    assert pick([1.0, 0.7, 0.75]) == 1
    assert pick([0.5, 1.0, 0.6], base=1) == 0
    assert pick([0.5, 0.45, 0.45], base=1) == 1


def test_real_select_finds_the_better_maps_where_espirit_is_poor(shared_data):
    """The real 16-coil brain as stored, equispaced R = 4 (8 centre lines): ESPIRiT on the centre gives CG-SENSE
    only ~5 dB over zero-filled, the refined maps ~14.5 dB; held-out lines choose the refined ones."""
    full = load_brain16(shared_data)
    mask = make_mask("equispaced", (96, 96), 4, center_fraction=max(default_center_fraction(4),
                                                                     min_center_fraction(96)), seed=0)
    k = full * mask.mask.numpy()
    rss = rss_of(full)
    plain, _ = calibrate_maps(k, mask, method="espirit")
    chosen, info = calibrate_maps(k, mask, method="select")
    assert info.method == "espirit-refined"
    gain = psnr(rss, baselines.cg_sense(k, mask.mask, chosen)) - psnr(rss, baselines.cg_sense(k, mask.mask, plain))
    assert gain > 5.0  # measured +9.5 dB


@pytest.mark.parametrize("accel, lines", [(6, 10), (8, 7), (12, 6)])
def test_calibration_block_of_lines_sampled_near_the_centre_only(shared_data, accel, lines):
    """BART's small-FOV example holds a 24-row calibration block across its 25 centre lines (every other line is
    full, the others only near the readout centre). Undersampled further, the region is that block across the
    centre lines the mask keeps, not one full-readout line (320 x 1 has more area than 24 x 10; until 2026-12-06
    it was chosen, and every method refused "only 1 fully sampled centre lines hold data" from R = 6)."""
    from mriqa.recon_quality.data import SMALLFOV
    from recon.calibration import calibration_region
    from recon.pipeline import load_kspace, run_method, undersample

    scan = undersample(load_kspace(shared_data / SMALLFOV), accel, "random", None, 0)
    rows, cols, acs, _ = calibration_region(scan.kspace, scan.mask)
    assert (rows.stop - rows.start, acs) == (24, lines)
    if accel == 6:
        result = run_method("sense", scan.kspace, scan.mask)
        assert result.calibration[0].acs_width == lines and result.guard[0].ok

"""Coil calibration that fits the data it gets: one entry point, :func:`calibrate_maps`.

``calibrate_maps(kspace [S, C, H, W], mask) -> (maps, CalibrationInfo)``

1. **Where the data are** (:func:`calibration_region`). The largest rectangle through the k-space centre in
   which the mask samples every point *and* some coil holds data: for line masks the readout (the central
   :data:`CALIB_READOUT_MAX` rows) by the run of fully sampled centre lines along the phase encode (the ACS
   width), as BART's ``ecalib -r`` allows; for 2-D masks the largest fully sampled block. Lines the mask calls
   sampled but that hold no data are left out and reported. The region may sit off centre by a line: ESPIRiT's
   kernels depend only on which k-space patches they see, not on where the patches are.
2. **A kernel that fits** (:func:`kernel_for`): a third of the ACS width along the phase encode (2 to 6), at
   most twice that along readout.
3. **Which method.** Line masks with ``acs >= MIN_ESPIRIT_LINES``: ESPIRiT (:func:`recon.coils.espirit_maps`,
   exact per-pixel eigendecomposition, phase relative to the strongest coil). ``MIN_CALIB_LINES <= acs <
   MIN_ESPIRIT_LINES`` (prospective data with a narrow centre): ESPIRiT on the narrow centre, then one joint image /
   maps step (:func:`refine_maps`: CG-SENSE with those maps, ESPIRiT again on a :data:`SYNTH_LINES`-line centre
   that keeps every measured point and takes the model's k-space elsewhere), with a warning. 2-D masks (Poisson
   disk: a small fully sampled square, 6 x 6 to 20 x 20 at R 12-2 on 96-128 px) always get the refinement step,
   on a :data:`SYNTH_LINES` square: on the real 16-coil brain CG-SENSE +4.3 dB on average over ESPIRiT of the
   square (+0.4 to +11.4, both orientations, R 2-12), on simulated held-out slices +0.7
   (``scripts/calibration_study.py --methods auto espirit``). Fewer lines: an ``InputError`` of one line. Coils
   without signal get zero maps (and a warning); single-coil data maps of 1.
4. **Or let the data choose** (``method="select"``, opt-in: ``mriqa recon --calibration select``; line masks,
   2-D masks get ``auto``'s maps): the ESPIRiT maps, the refined ones and ESPIRiT at a quarter of the
   singular-value threshold, and per slice the set whose
   CG-SENSE image predicts measured samples it did not see best (:func:`heldout_line_error`: :data:`CV_FOLDS`
   folds over the samples outside the calibration region, whole lines of line masks, the maps fixed), kept only
   where its error is :data:`SELECT_MARGIN` below that of the maps ``auto`` returns (:func:`_select`). On the real
   16-coil brain, R 2-12, both orientations (``scripts/real_kspace_check.py --calibration auto select refined full
   espirit``, docs/recon/real_kspace.md): CG-SENSE +0.95 dB on average over ``auto`` with equispaced masks, +0.20
   with random ones (up to +9.5), no row of any method worse by more than 0.05 dB; on simulated held-out slices
   (``scripts/calibration_study.py``) no change. Always refining loses up to 1.5 dB on line masks; ESPIRiT maps of
   the fully sampled data would give +2.1 dB on average.

For retrospective masks :func:`min_center_fraction` gives the centre fraction that keeps
:data:`MIN_CENTER_LINES` lines (it lives in :mod:`recon.masks`); ``recon.masks.center_fraction_for(R, W)`` =
``max(default_center_fraction(R), min_center_fraction(W))`` is the default of ``recon.pipeline.undersample``,
``mriqa demo`` and the MoDL training data. :func:`estimate_sens_maps` is the same calibration for a torch batch
(a network's forward pass given no maps).

Measured on the real 16-coil SENSE-tutorial brain (96 x 96, both phase-encode orientations, random masks,
R = 6 and 12, CG-SENSE PSNR against the RSS of the full data; zero-filled 17.4-21.1 dB): ESPIRiT on the narrow
centre alone falls below zero-filled at 3-5 lines (11-19 dB: the crop removes part of the head) and beats it
by 1.1-5.8 dB from 6 lines; with the refinement step 3-5 lines give 18.8-26.2 dB (+1.4 to +6.4 over
zero-filled). Maps from a low-resolution image of the centre (coil images / RSS) stayed below zero-filled at
every width tried (3-7 lines) and are not offered.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, asdict

import numpy as np
import torch

from recon.errors import InputError
from recon.masks import MIN_ACS, min_center_fraction  # noqa: F401 - min_center_fraction re-exported

__all__ = ["CalibrationInfo", "calibrate_maps", "calibration_region", "min_center_fraction", "refine_maps",
           "kernel_for", "MIN_CENTER_LINES", "MIN_ESPIRIT_LINES", "MIN_CALIB_LINES", "CALIB_READOUT_MAX",
           "SYNTH_LINES", "heldout_layout", "heldout_line_error", "CV_FOLDS", "CALIBRATION_METHODS",
           "estimate_sens_maps"]

MIN_ESPIRIT_LINES = MIN_ACS  # = 6: ESPIRiT alone from this many centre lines (measured, see the module docstring)
MIN_CALIB_LINES = 3  # with the refinement step from this many; fewer is an InputError
MIN_CENTER_LINES = MIN_ESPIRIT_LINES  # what retrospective masks must keep (min_center_fraction)
CALIB_READOUT_MAX = 48  # readout rows of the calibration region (24 vs 48 vs 96: within 0.5 dB, 48 best)
SYNTH_LINES = 24  # phase-encode lines of the synthesised centre the refinement step calibrates on
REFINE_CROP = 0.8
CV_FOLDS = 4  # folds of heldout_line_error
CALIBRATION_METHODS = ("auto", "espirit", "refined", "select")
KERNEL_MAX = 6
CROP = 0.95
THRESH = 0.02
# select's candidates: ESPIRiT, the refined maps, and ESPIRiT at a quarter of the threshold (sigpy's 0.02 -> 0.005;
# BART's ecalib uses 0.001); one replaces what auto returns only where its held-out error is 20 % lower.
SELECT_THRESH_FACTOR = 0.25
SELECT_MARGIN = 0.2
DEAD_COIL_FRACTION = 1e-6  # a coil with less than this fraction of the strongest coil's energy has no signal


@dataclass(frozen=True)
class CalibrationInfo:
    """How coil maps were calibrated.

    Attributes:
        method: ``espirit``, ``espirit-refined`` (narrow centre + one joint step), ``single-coil``, or what
            :mod:`recon.guard` fell back to (``given`` for maps passed in).
        calib: (rows, cols) of the fully sampled calibration region measured (readout x phase encode).
        kernel: (rows, cols) of the ESPIRiT kernel on it (None for single-coil / given maps).
        acs_width: fully sampled centre lines along the phase encode (in the mask and holding data).
        num_maps: map sets returned.
        crop: ESPIRiT eigenvalue crop of the maps returned.
        synthesised: (rows, cols) of the synthesised centre of the refinement step (None without it).
        phase_coil: the coil the maps' phase is relative to.
        dead_coils: coils without signal (their maps are 0).
        warnings: one line each.
    """

    method: str
    calib: tuple[int, int]
    kernel: tuple[int, int] | None
    acs_width: int
    num_maps: int = 1
    crop: float = CROP
    phase_coil: int = 0
    dead_coils: tuple[int, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)
    synthesised: tuple[int, int] | None = None

    def describe(self) -> dict:
        """Plain JSON-able values."""
        out = asdict(self)
        out["calib"] = list(self.calib)
        out["kernel"] = None if self.kernel is None else list(self.kernel)
        out["dead_coils"] = list(self.dead_coils)
        out["warnings"] = list(self.warnings)
        out["synthesised"] = None if self.synthesised is None else list(self.synthesised)
        return out

    def short(self) -> str:
        """e.g. ``espirit 48x10 k6x3`` / ``espirit-refined 48x4 k4x2 +48x24``."""
        text = f"{self.method} {self.calib[0]}x{self.calib[1]}"
        if self.kernel is not None:
            text += f" k{self.kernel[0]}x{self.kernel[1]}"
        if self.synthesised is not None:
            text += f" +{self.synthesised[0]}x{self.synthesised[1]}"
        if self.crop not in (CROP, REFINE_CROP):
            text += f" crop{self.crop:g}"
        if self.num_maps > 1:
            text += f" M{self.num_maps}"
        return text


def kernel_for(calib: tuple[int, int]) -> tuple[int, int]:
    """ESPIRiT kernel (readout, phase encode) for a calibration region ``(rows, acs)``.

    Phase encode: ``round(acs / 3)`` clipped to [2, 6], so the kernel leaves about twice its width in shifts.
    Measured on the real 16-coil brain (``scripts/real_kspace_check.py``, R = 6, both orientations): with a
    kernel of about half the ACS width (sigpy's habit) the leading eigenvalue drops below the 0.95 crop over
    much of the head (coverage 0.1-0.8, CG-SENSE below zero-filled); ``acs / 3`` keeps coverage at 1.0 from 6
    lines up. Readout: ``min(6, 2 x phase-encode kernel, round(rows / 3), rows - 1)`` (4 x 2 beats 6 x 2 by 1-2 dB
    at 6 lines; the rows / 3 term matters only for the small blocks of 2-D masks: on an 8 x 8 Poisson block
    a 6 x 3 kernel left no map at all on the real brain, 3 x 3 works). The simulations disagree and the real scan
    decides (2026-12-07, a throwaway script, CG-SENSE over zero-filled, R = 6-12 with 6-7 centre lines, line
    masks): a 4 x 3 kernel instead of 4 x 2 gains 1.0 dB on average on simulated held-out slices (at least +0.2) and
    loses 1.0-8.4 dB on the real brain (6.4 on average): the simulated coil maps are no guide to this choice.
    Calibrating on all 96 readout rows instead of :data:`CALIB_READOUT_MAX` changes neither by more than 0.3 dB.
    """
    rows, acs = calib
    pe = int(min(KERNEL_MAX, max(2, round(acs / 3)), acs))
    ro = int(max(1, min(KERNEL_MAX, 2 * pe, max(2, round(rows / 3)), rows - 1)))
    return ro, pe


# ------------------------------------------------------------------------------------------------ region


def _mask_points(mask, height: int, width: int, source=None) -> np.ndarray:
    """Bool ``[H, W]`` of the points a mask (SamplingMask, tensor or array broadcastable to [1, H, W]) samples."""
    m = getattr(mask, "mask", mask)
    m = m.detach().cpu().numpy() if torch.is_tensor(m) else np.asarray(m)
    if np.iscomplexobj(m) or m.size == 0:
        raise InputError(source, f"sampling mask must be real 0/1, got dtype {m.dtype} shape {m.shape}")
    if m.ndim == 1:
        m = m.reshape(1, -1)
    squeezed = m.reshape(m.shape[-2:]) if m.size == m.shape[-1] * m.shape[-2] else None
    if squeezed is None:
        raise InputError(source, f"calibration takes one mask for all slices ([..., H|1, W]), got shape {m.shape}")
    try:
        return np.broadcast_to(squeezed > 0, (height, width)).copy()
    except ValueError:
        raise InputError(source, f"sampling mask of shape {m.shape} does not fit k-space {height}x{width}") from None


def _run(flags: np.ndarray, center: int) -> tuple[int, int]:
    """``[a, b)``: the run of True through ``center`` (or through a neighbour when the centre itself is
    False: a centre off by one line); ``(center, center)`` when there is none."""
    n = len(flags)
    for c in (center, center - 1, center + 1):
        if 0 <= c < n and flags[c]:
            a = c
            while a > 0 and flags[a - 1]:
                a -= 1
            b = c + 1
            while b < n and flags[b]:
                b += 1
            return a, b
    return center, center


def calibration_region(kspace: np.ndarray, mask, source=None,
                       max_rows: int | None = CALIB_READOUT_MAX) -> tuple[slice, slice, int, tuple[str, ...]]:
    """The fully sampled calibration rectangle of ``kspace`` ``[S, C, H, W]`` (or ``[C, H, W]``) under ``mask``.

    Returns ``(rows, cols, acs_width, warnings)``: slices into (H, W) of the largest rectangle through the
    centre in which the mask samples every point and some coil holds data (at most ``max_rows`` rows, centred;
    None: no cap), the ACS width (``cols`` length), and warnings when the mask marks points sampled that hold
    no data.
    """
    k = np.asarray(kspace)
    height, width = k.shape[-2:]
    marked = _mask_points(mask, height, width, source)
    data = np.any(k.reshape(-1, height, width) != 0, axis=0)
    warnings = []
    empty_lines = int(np.sum(marked.all(0) & ~data.any(0))) if marked.any() else 0
    if empty_lines:
        warnings.append(f"the mask marks {empty_lines} phase-encode lines sampled that hold no data (mask and "
                        f"k-space disagree, e.g. off by one line): calibrating on the lines with data")
    points = marked & data
    ch, cw = height // 2, width // 2
    centre_row = points[ch] if points[ch].any() else points[max(ch - 1, 0)]
    a, b = _run(centre_row, cw)
    best = (0, slice(ch, ch), slice(cw, cw))
    # every column interval inside the centre run, widest first: line masks keep the whole run (full readout at
    # once); 2-D masks trade width for height, and their fully sampled block need not sit symmetric in the run.
    # The area counts at most ``max_rows`` rows, the rows kept: otherwise one full-readout line beats a block of
    # lines whose readout is sampled only near the centre (BART's small-FOV example: a 24-row calibration block
    # across 25 lines, every other line full; at 10 of its lines, 320 x 1 > 24 x 10, and calibration failed)
    cap = height if max_rows is None else min(height, int(max_rows))
    for width_ in range(b - a, 0, -1):
        if width_ * cap <= best[0]:
            break  # no narrower interval can beat the best area
        for c0 in range(a, b - width_ + 1):
            r0, r1 = _run(points[:, c0:c0 + width_].all(1), ch)
            area = min(r1 - r0, cap) * width_
            if area > best[0]:
                best = (area, slice(r0, r1), slice(c0, c0 + width_))
    _, rows, cols = best
    if max_rows is not None and rows.stop - rows.start > max_rows:
        start = min(max(height // 2 - max_rows // 2, rows.start), rows.stop - max_rows)
        rows = slice(start, start + max_rows)
    return rows, cols, cols.stop - cols.start, tuple(warnings)


def _centred_slice(size: int, n: int) -> slice:
    return slice(size // 2 - n // 2, size // 2 - n // 2 + n)


def _centred(kspace: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """``[C, H, W]`` holding only the region, moved to the centred crop ``espirit_maps`` reads (zeros elsewhere)."""
    out = np.zeros_like(kspace)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    r0, c0 = kspace.shape[-2] // 2 - h // 2, kspace.shape[-1] // 2 - w // 2
    out[:, r0:r0 + h, c0:c0 + w] = kspace[:, rows, cols]
    return out


# ------------------------------------------------------------------------------------------------ methods


def refine_maps(kspace: np.ndarray, points: np.ndarray, maps: np.ndarray, rows: slice, *, num_maps: int = 1,
                phase_coil: int = 0, crop: float = REFINE_CROP, thresh: float = THRESH, source=None,
                slice_index: int = 0, cache_dir=None) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
    """One joint image / maps step: CG-SENSE with ``maps``, then ESPIRiT on a wider centre synthesised from it.

    ``kspace`` ``[C, H, W]``, ``points`` bool ``[H, W]`` (sampled and holding data), ``maps`` ``[C, H, W]`` or
    ``[M, C, H, W]``. The centre ``rows`` x :data:`SYNTH_LINES` keeps the measured points and takes ``F S x``
    where nothing was measured; ESPIRiT (kernel :func:`kernel_for`, ``crop``) calibrates on it. Returns
    ``(maps, calib, kernel)``, maps shaped as :func:`recon.coils.espirit_maps` returns them.
    """
    from recon.coils import espirit_maps_cached
    from recon.baselines import sense_image
    from recon.fft import fft2c_np

    width = kspace.shape[-1]
    stack = maps[None] if maps.ndim == 3 else maps  # [M, C, H, W]
    mask = torch.from_numpy(points.astype(np.float32))[None, None]
    image = sense_image(kspace[None], mask, stack[None])[0]  # [M, H, W]
    model = fft2c_np(np.sum(stack * image[:, None], axis=0).astype(np.complex64))
    synth = np.where(points[None], kspace, model).astype(np.complex64)
    lines = min(SYNTH_LINES, width)
    cols = slice(width // 2 - lines // 2, width // 2 - lines // 2 + lines)
    calib = (rows.stop - rows.start, lines)
    kernel = kernel_for(calib)
    out = espirit_maps_cached(_centred(synth, rows, cols), source, slice_index,
                              cache_dir=False if source is None else cache_dir, calib_width=calib,
                              kernel_width=kernel, thresh=thresh, crop=crop, num_maps=num_maps, phase_coil=phase_coil)
    return out, calib, kernel


def heldout_layout(kspace: np.ndarray, mask):
    """:class:`recon.crossval.HeldoutLayout` of one slice ``[C, H, W]`` under ``mask`` (anything
    :func:`calibrate_maps` takes): the samples the mask takes that hold data, the calibration rectangle
    (:func:`calibration_region`), never held out, and whether the mask samples whole lines."""
    from recon.crossval import HeldoutLayout, samples_lines

    rows, cols, _, _ = calibration_region(kspace, mask)
    marked = _mask_points(mask, *kspace.shape[-2:])
    return HeldoutLayout(marked & np.any(kspace != 0, axis=0), (rows, cols), samples_lines(marked))


def heldout_line_error(kspace: np.ndarray, layout, maps: np.ndarray, folds: int = CV_FOLDS, seed: int = 0) -> float:
    """How well ``maps`` let CG-SENSE predict measured k-space it did not see: relative squared error ``[0, inf)``.

    ``kspace`` ``[C, H, W]`` (one slice), ``layout`` its :class:`recon.crossval.HeldoutLayout`
    (:func:`heldout_layout`), ``maps`` ``[C, H, W]`` or ``[M, C, H, W]``. The samples outside the calibration
    rectangle (whole lines of line masks, points of 2-D masks: :func:`recon.crossval.fold_masks`) are dealt into
    ``folds`` folds (shuffled with ``seed``); for each, CG-SENSE (:func:`recon.baselines.sense_image`) from the
    rest predicts the fold's samples, ``F S x``. Returns ``sum |prediction - measured|^2 / sum |measured|^2`` over
    all folds (1.0: no better than predicting zeros; ``inf`` when nothing lies outside the centre to hold out).
    Maps that explain the data score lower."""
    from recon.baselines import sense_image
    from recon.crossval import coil_kspace, heldout_errors

    stack = maps[None] if maps.ndim == 3 else maps  # [M, C, H, W]

    def predict(kept, keep):
        image = sense_image(kept[None], torch.from_numpy(keep.astype(np.float32))[None, None], stack[None])[0]
        return coil_kspace(stack, image)  # F S x, [C, H, W]

    errors, held = heldout_errors(kspace, layout, predict, folds=folds, seed=seed)
    if not held.any():
        return float("inf")
    return float(errors[held].sum()) / max(float(np.sum(np.abs(kspace[:, held]) ** 2)), 1e-30)


def _select(kspace: np.ndarray, layout, candidates, base: int) -> int:
    """Index of the candidate maps ``select`` keeps for one slice: the one of lowest :func:`heldout_line_error`,
    but only where it beats the ``base`` (what ``auto`` would return) by :data:`SELECT_MARGIN`; ties keep ``base``.
    Held-out errors of maps that all explain the data about equally well differ by noise: choosing by the lower
    error alone made ``select`` worse than ``auto`` by > 0.3 dB in 10 of the 189 reconstructions of
    ``scripts/calibration_study.py`` (none with the margin, which was chosen on other simulated slices)."""
    errors = [heldout_line_error(kspace, layout, m) for m in candidates]
    best = int(np.argmin(errors))
    return best if errors[best] < (1.0 - SELECT_MARGIN) * errors[base] else base


def calibrate_maps(kspace, mask, *, num_maps: int = 1, source: str | os.PathLike | None = None,
                   cache_dir: str | os.PathLike | None | bool = None, method: str = "auto",
                   crop: float = CROP, thresh: float = THRESH) -> tuple[np.ndarray, CalibrationInfo]:
    """Coil maps for every slice of undersampled k-space, calibrated on the fully sampled data actually there.

    Args:
        kspace: complex ``[S, C, H, W]`` (numpy or torch), zero where not sampled; H readout, W phase encode.
        mask: :class:`recon.masks.SamplingMask` or a tensor / array broadcastable to ``[1, H, W]`` (one mask
            for all slices).
        num_maps: map sets (2 where a small field of view folds over).
        source: the file the k-space came from: names it in errors and keys the ESPIRiT disk cache.
        cache_dir: ESPIRiT cache folder (:func:`recon.coils.espirit_maps_cached`); False: no cache.
        method: ``auto`` (see the module docstring), ``espirit`` (never refine), ``refined`` (always) or
            ``select`` (per slice ESPIRiT, the refined maps or ESPIRiT at a quarter of ``thresh``, by
            :func:`heldout_line_error`: see :func:`_select`).
        crop: ESPIRiT eigenvalue crop (0 keeps the maps everywhere); the refinement step uses
            ``min(crop, REFINE_CROP)``.
        thresh: ESPIRiT singular-value threshold.

    Returns:
        ``(maps, info)``: complex64 ``[S, C, H, W]`` (``[S, M, C, H, W]`` with ``num_maps > 1``) and a
        :class:`CalibrationInfo`.

    Raises:
        InputError: fewer than :data:`MIN_CALIB_LINES` fully sampled centre lines (one line: how many there
            are and what to do; all-zero k-space has 0), or bad shapes.
    """
    from recon.coils import espirit_maps_cached
    from recon.crossval import HeldoutLayout, samples_lines

    k = kspace.detach().cpu().numpy() if torch.is_tensor(kspace) else np.asarray(kspace)
    if k.ndim != 4 or not np.iscomplexobj(k):
        raise InputError(source, f"k-space for coil calibration must be complex [S, C, H, W], got {k.dtype} "
                                 f"shape {k.shape}")
    if method not in CALIBRATION_METHODS:
        raise InputError(source, f"unknown calibration method {method!r}; choose {', '.join(CALIBRATION_METHODS)}")
    k = k.astype(np.complex64, copy=False)
    slices, num_coils, height, width = k.shape
    rows, cols, acs, warnings = calibration_region(k, mask, source)
    warnings = list(warnings)
    calib = (rows.stop - rows.start, acs)
    if num_coils == 1:
        ones = np.ones_like(k)
        maps = ones if num_maps == 1 else np.stack([ones] + [np.zeros_like(ones)] * (num_maps - 1), axis=1)
        return maps, CalibrationInfo("single-coil", calib, None, acs, num_maps, 0.0, 0, (), tuple(warnings))
    if not 1 <= num_maps <= num_coils:
        raise InputError(source, f"num_maps = {num_maps} must be between 1 and the number of coils ({num_coils})")
    if acs < MIN_CALIB_LINES:
        raise InputError(source, f"only {acs} fully sampled centre lines (ACS) hold data: coil maps need at least "
                                 f"{MIN_CALIB_LINES} ({MIN_ESPIRIT_LINES} without refinement); give coil maps or "
                                 f"sample a wider centre")
    if calib[0] < 2:
        raise InputError(source, f"the fully sampled centre block is only {calib[0]} x {acs} samples (readout x "
                                 f"phase encode): coil maps need at least 2 x {MIN_CALIB_LINES}; give coil maps or "
                                 f"sample a larger centre")
    energy = np.sum(np.abs(k[:, :, rows, cols]) ** 2, axis=(0, 2, 3))  # > 0: the region holds data
    dead = tuple(int(c) for c in np.flatnonzero(energy < DEAD_COIL_FRACTION * energy.max()))
    if dead:
        warnings.append(f"coil(s) {', '.join(map(str, dead))} hold no signal: their maps are 0")
    phase_coil = int(np.argmax(energy))
    marked = _mask_points(mask, height, width, source)
    lines = samples_lines(marked)
    auto_refines = acs < MIN_ESPIRIT_LINES or not lines  # 2-D masks: a small square centre, see the docstring
    if method == "select" and not lines:
        method = "auto"
        warnings.append("calibration select on a 2-D mask gives auto's refined maps (no other candidate did better "
                        "on 2-D masks: see recon.calibration)")
    refine = method == "refined" or (method == "auto" and auto_refines)
    if method == "auto" and acs < MIN_ESPIRIT_LINES:
        warnings.append(f"only {acs} fully sampled centre lines (ESPIRiT alone needs {MIN_ESPIRIT_LINES}): maps "
                        f"refined by one joint image/maps step")
    # the refinement step's synthesised centre: the calibration rows of line masks (readout fully sampled), a
    # SYNTH_LINES square for 2-D masks (their readout is undersampled too; the block's rows alone gave CG-SENSE 0.9 dB
    # less on the real scan's Poisson-disk rows, 0.4 dB less on simulated ones)
    synth_rows = rows if lines else _centred_slice(height, max(rows.stop - rows.start, min(SYNTH_LINES, height)))
    kernel = kernel_for(calib)
    params = dict(calib_width=calib, kernel_width=kernel, thresh=thresh, crop=crop, num_maps=num_maps,
                  phase_coil=phase_coil)
    points = marked & np.any(k.reshape(-1, height, width) != 0, axis=0)
    out, synthesised, chosen = [], None, []
    low = dict(params, thresh=thresh * SELECT_THRESH_FACTOR)
    for s in range(slices):
        centre = _centred(k[s], rows, cols)
        maps = espirit_maps_cached(centre, source, s, cache_dir=False if source is None else cache_dir, **params)
        if refine or method == "select":
            refined, synthesised, _ = refine_maps(k[s], points, maps, synth_rows, num_maps=num_maps,
                                                  phase_coil=phase_coil, crop=min(crop, REFINE_CROP), thresh=thresh,
                                                  source=source, slice_index=s, cache_dir=cache_dir)
            if method == "select":
                candidates = [maps, refined, espirit_maps_cached(centre, source, s,
                                                                 cache_dir=False if source is None else cache_dir,
                                                                 **low)]
                chosen.append(_select(k[s], HeldoutLayout(points, (rows, cols), lines), candidates,
                                      base=int(auto_refines)))
                refined = candidates[chosen[-1]]
            maps = refined
        out.append(maps)
    if method == "select":
        refine = any(c == 1 for c in chosen)
        synthesised = synthesised if refine else None
        names = ("ESPIRiT", "refined", f"ESPIRiT at threshold {low['thresh']:g}")
        warnings.append("calibration chosen by held-out lines: " + (
            names[chosen[0]] + " maps" if len(chosen) == 1
            else ", ".join(f"{names[i]} maps on {chosen.count(i)} of {len(chosen)} slices" for i in range(3)
                           if chosen.count(i))))
    info = CalibrationInfo("espirit-refined" if refine else "espirit", calib, kernel, acs, num_maps,
                           min(crop, REFINE_CROP) if refine else crop, phase_coil, dead, tuple(warnings), synthesised)
    return np.stack(out).astype(np.complex64), info


def estimate_sens_maps(masked_kspace: torch.Tensor, mask: torch.Tensor, num_low_frequencies=None,
                       source: str | None = None) -> torch.Tensor:
    """Coil maps ``[B, C, H, W]`` per sample from masked k-space ``[B, C, H, W]`` and its mask (``[B|1, 1, 1|H, W]``),
    by :func:`recon.calibration.calibrate_maps` (as ``mriqa recon`` and the training data calibrate).

    ``num_low_frequencies`` (fastMRI's batch field) is not needed: the calibration measures the fully sampled
    centre from the mask and the data. Too few centre lines is an ``InputError`` (pass ``sens_maps``).
    Single-coil (C = 1): maps of ones.
    """
    b, c, h, w = masked_kspace.shape
    if c == 1:
        return torch.ones_like(masked_kspace)
    maps = torch.empty_like(masked_kspace)
    for i in range(b):
        mi = mask[i if mask.shape[0] > 1 else 0]
        k = (masked_kspace[i] * mi).detach().cpu().numpy()[None]
        est, _ = calibrate_maps(k, mi.detach().cpu(), source=source, cache_dir=False)
        maps[i] = torch.from_numpy(est[0]).to(masked_kspace.device)
    return maps

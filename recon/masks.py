"""Undersampling masks: fastMRI's Cartesian line masks and sigpy's 2-D Poisson-disk masks, one API.

``make_mask(kind, (H, W), accel, center_fraction=None, seed=None) -> SamplingMask``

=============  ==========================================================================================
kind           what
=============  ==========================================================================================
``random``     ``fastmri.data.subsample.RandomMaskFunc``: a fully sampled centre of ``round(W * cf)``
               columns, other columns kept at random with probability ``(W / R - n_low) / (W - n_low)``
               (expected number of columns W / R)
``equispaced`` ``fastmri.data.subsample.EquispacedMaskFractionFunc``: the same centre plus equally spaced
               columns at the spacing that makes the total W / R (the mask of fastMRI's multi-coil test data)
``poisson``    ``sigpy.mri.poisson``: variable-density Poisson-disk points over (H, W) with a fully sampled
               ``round(H * cf) x round(W * cf)`` calibration block; sigpy tunes the density until the
               acceleration is within 0.1 of R; corners outside the inscribed ellipse are never sampled
=============  ==========================================================================================

Default centre fraction: ``cf = 0.32 / R``. This reproduces fastMRI's two standard pairs exactly
(R = 4 -> 0.08, R = 8 -> 0.04: the centre always holds 32 % of the samples one would take) and extends them
smoothly to other R (R = 2 -> 0.16, R = 6 -> 0.0533, R = 12 -> 0.0267). ``num_low_frequencies`` is the width
of the fully sampled centre in columns (for Poisson masks: in columns of the calibration block).

Every mask reports ``acceleration`` (the nominal R asked for) and ``acceleration_effective``: total lines /
sampled lines (``W / sum(mask)``) for line masks, total points / sampled points (``H W / sum(mask)``) for 2-D
masks. R = 1 gives a fully sampled mask; R < 1, a centre too large for R, or an all-zero mask is an
:class:`recon.errors.InputError`. Masks are deterministic given ``seed`` (fastMRI's and sigpy's own seeding; where
sigpy's Poisson-disk search fails for a seed, the next seeds are tried: :data:`POISSON_TRIES`); ``seed=None`` draws
a fresh mask each call.

Mask tensors follow CONTRIBUTING: float32 0/1, ``[1, 1, W]`` (line masks) or ``[1, H, W]`` (2-D masks),
broadcastable to k-space ``[B, C, H, W]``.

:func:`acs_width` is the width of a mask's fully sampled centre (the calibration region coil maps are
estimated from); ``MIN_ACS`` the narrowest one ESPIRiT alone calibrates from (:mod:`recon.calibration`
refines the maps from 3 lines up).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import torch

from recon.errors import InputError

__all__ = ["SamplingMask", "MASK_KINDS", "MIN_ACS", "default_center_fraction", "min_center_fraction",
           "center_fraction_for", "make_mask", "mask_from_kspace",
           "describe_mask", "acs_width", "POISSON_MIN_ACCEL"]

MASK_KINDS = ("random", "equispaced", "poisson")
# The narrowest fully sampled centre ESPIRiT alone calibrates from, with the kernel of recon.calibration.kernel_for
# (measured on the real 16-coil brain: from 6 lines it beats zero-filled; see recon.calibration).
MIN_ACS = 6
# fastMRI's pairs (R=4, 0.08) and (R=8, 0.04) both keep a centre of 0.32 / R of the columns.
CENTER_FRACTION_TIMES_R = 0.32
# sigpy's Poisson-disk sampler often fails at R = 2 or 3 with the default calibration block on small grids (96 x 96:
# "Cannot generate mask"; make_mask then tries the next seeds, POISSON_TRIES): training and evaluation sets draw
# Poisson masks from this R up (make_mask itself accepts any R and says when sigpy fails).
POISSON_MIN_ACCEL = 4.0
#: sigpy's Poisson-disk density search fails for some seeds on small grids (e.g. 96 x 96 at R = 2 or 3 with seed 0):
#: then seeds ``seed + 1``, ``seed + 2``, ... are tried, this many in all (the mask stays a function of ``seed``)
POISSON_TRIES = 10
#: the largest mask seed: NumPy seeds are 32-bit, and Poisson-disk masks may go on to the next POISSON_TRIES - 1 seeds
MAX_SEED = 2 ** 32 - POISSON_TRIES


class SamplingMask(NamedTuple):
    """A sampling mask and how it was made.

    Attributes:
        mask: float32 torch tensor, ``[1, 1, W]`` (line mask) or ``[1, H, W]`` (2-D mask), values 0/1.
        kind: ``random`` / ``equispaced`` / ``poisson`` / ``from_kspace``.
        acceleration: nominal R asked for (for ``from_kspace``: equal to the effective R).
        acceleration_effective: total lines / sampled lines, or total points / sampled points (2-D).
        center_fraction: fraction of columns in the fully sampled centre.
        num_low_frequencies: number of columns in the fully sampled centre.
        seed: the seed used, or None.
    """

    mask: torch.Tensor
    kind: str
    acceleration: float
    acceleration_effective: float
    center_fraction: float
    num_low_frequencies: int
    seed: int | None

    @property
    def is_2d(self) -> bool:
        return self.mask.shape[-2] > 1


def default_center_fraction(acceleration: float) -> float:
    """fastMRI's convention extended to any R: ``0.32 / R`` (R=4 -> 0.08, R=8 -> 0.04); 1.0 for R <= 1."""
    return 1.0 if acceleration <= 1 else CENTER_FRACTION_TIMES_R / float(acceleration)


def min_center_fraction(width: int, lines: int = MIN_ACS) -> float:
    """The smallest centre fraction whose fully sampled centre (``round(width * cf)`` lines, as
    :func:`make_mask` counts it) holds at least ``lines`` lines: ``lines / width`` (1.0 when the width is
    smaller)."""
    width = int(width)
    if width < 1:
        raise InputError(None, f"min_center_fraction: width {width} must be >= 1")
    return min(1.0, float(lines) / width)


def center_fraction_for(acceleration: float, width: int) -> float:
    """The centre fraction to use by default: fastMRI's (:func:`default_center_fraction`), but never fewer
    than :data:`MIN_ACS` fully sampled centre lines (the coil calibration's minimum, :mod:`recon.calibration`)
    where the width allows it (a centre must stay narrower than ``W / R`` lines: on a small matrix at high R
    it keeps as many as fit, and calibration may then refuse). The nominal R stays ``acceleration``; the
    mask's effective R reports what a wider centre costs."""
    acceleration = _check_accel(acceleration)
    base = default_center_fraction(acceleration)
    if acceleration <= 1:
        return base
    fit = math.ceil(int(width) / float(acceleration)) - 1  # the most centre lines make_mask accepts
    lines = min(MIN_ACS, fit)
    return max(base, lines / int(width)) if lines > 0 else base


def _effective(mask: torch.Tensor) -> float:
    sampled = float(mask.sum())
    if sampled == 0:
        raise InputError(None, "sampling mask is all zero (no k-space sampled)")
    return float(mask.numel()) / sampled


def _check_accel(accel) -> float:
    """``accel`` as a float, or one InputError line: not a number, not finite, or below 1."""
    try:
        accel = float(accel)
    except (TypeError, ValueError):
        raise InputError(None, f"acceleration {accel!r} is not a number") from None
    if not np.isfinite(accel) or accel < 1:
        raise InputError(None, f"acceleration R = {accel:g} is invalid: R must be >= 1")
    return accel


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) < 2 or int(shape[-1]) < 1 or int(shape[-2]) < 1:
        raise InputError(None, f"mask shape {tuple(shape)} must end with (H, W), both >= 1")
    return int(shape[-2]), int(shape[-1])


def make_mask(
    kind: str,
    shape: Sequence[int],
    accel: float,
    center_fraction: float | None = None,
    seed: int | None = None,
) -> SamplingMask:
    """Make a sampling mask for k-space of size ``shape = (..., H, W)`` at nominal acceleration ``accel``.

    Args:
        kind: ``random``, ``equispaced`` (fastMRI line masks over the W columns) or ``poisson`` (2-D).
        shape: k-space shape ending with (H, W); H = readout, W = phase encode.
        accel: nominal R >= 1 (R = 1: fully sampled).
        center_fraction: fully sampled centre fraction; default :func:`default_center_fraction`.
        seed: integer seed; the same seed gives the same mask.

    Returns:
        :class:`SamplingMask` with ``mask`` float32 ``[1, 1, W]`` or ``[1, H, W]``.
    """
    if kind not in MASK_KINDS:
        raise InputError(None, f"unknown mask kind {kind!r}; choose from {', '.join(MASK_KINDS)}")
    height, width = _check_shape(shape)
    accel = _check_accel(accel)
    if seed is not None and not (isinstance(seed, (int, np.integer)) and 0 <= int(seed) <= MAX_SEED):
        raise InputError(None, f"mask seed {seed!r} is invalid: it must be an integer from 0 to {MAX_SEED}")
    if center_fraction is None:
        center_fraction = default_center_fraction(accel)
    center_fraction = float(center_fraction)
    if not 0 <= center_fraction <= 1:
        raise InputError(None, f"center fraction {center_fraction:g} must be in [0, 1]")

    lines = height * width if kind == "poisson" else width
    if accel > lines:
        unit = "k-space points" if kind == "poisson" else "phase-encode lines"
        raise InputError(None, f"acceleration R = {accel:g} would sample less than one of the {lines} {unit}; "
                               f"R can be at most {lines} here")
    if accel == 1:  # fully sampled
        full = torch.ones((1, height, width) if kind == "poisson" else (1, 1, width), dtype=torch.float32)
        return SamplingMask(full, kind, 1.0, 1.0, 1.0, width, seed)

    if kind == "poisson":
        mask, num_low = _poisson(height, width, accel, center_fraction, seed)
    else:
        mask, num_low = _cartesian(kind, width, accel, center_fraction, seed)
    return SamplingMask(mask, kind, accel, _effective(mask), center_fraction, num_low, seed)


def _cartesian(kind: str, width: int, accel: float, center_fraction: float, seed: int | None):
    from fastmri.data.subsample import EquispacedMaskFractionFunc, RandomMaskFunc

    num_low = round(width * center_fraction)
    if num_low * accel >= width:
        raise InputError(None, f"center fraction {center_fraction:g} keeps {num_low} of {width} columns, which is "
                               f"already >= W / R = {width / accel:.1f}; use a smaller center fraction "
                               f"for R = {accel:g}")
    mask_class = RandomMaskFunc if kind == "random" else EquispacedMaskFractionFunc
    mask_func = mask_class(center_fractions=[center_fraction], accelerations=[accel], seed=seed)
    # fastMRI masks act on the real view [..., H, W, 2]: the columns are dim -2.
    mask, num_low_frequencies = mask_func((1, 1, width, 2), seed=seed)
    return mask.reshape(1, 1, width).to(torch.float32), int(num_low_frequencies)


def _poisson(height: int, width: int, accel: float, center_fraction: float, seed: int | None):
    import sigpy.mri

    calib = (round(height * center_fraction), round(width * center_fraction))
    if calib[0] * calib[1] * accel >= height * width:
        raise InputError(None, f"calibration block {calib[0]}x{calib[1]} is too large for R = {accel:g} on a "
                               f"{height}x{width} grid; use a smaller center fraction")
    for attempt in range(POISSON_TRIES):
        try:
            mask = sigpy.mri.poisson((height, width), accel, calib=calib, dtype=np.float32, crop_corner=True,
                                     seed=None if seed is None else seed + attempt)
            break
        except ValueError as exc:  # sigpy's density search did not converge for this seed
            problem = exc
    else:
        raise InputError(None, f"Poisson-disk mask: {problem} ({POISSON_TRIES} seeds tried; grid {height}x{width})")
    return torch.from_numpy(np.ascontiguousarray(mask != 0, dtype=np.float32)).reshape(1, height, width), calib[1]


def _center_run(sampled: np.ndarray) -> int:
    """Length of the run of sampled entries through the centre index len // 2 (0 if the centre is empty)."""
    n = len(sampled)
    center = n // 2
    if not sampled[center]:
        return 0
    left = center
    while left > 0 and sampled[left - 1]:
        left -= 1
    right = center
    while right < n - 1 and sampled[right + 1]:
        right += 1
    return right - left + 1


def acs_width(mask) -> int:
    """Width of the fully sampled centre of one mask (torch or numpy; leading dims of size 1 are ignored).

    - Line masks ``[..., 1, W]``: the length of the run of sampled columns through column ``W // 2``
      (0 when that column is not sampled).
    - 2-D masks ``[..., H, W]``: the side ``n`` of the largest fully sampled ``n x n`` block centred the way
      ESPIRiT's calibration crop is (rows ``H // 2 - n // 2`` to ``H // 2 - n // 2 + n - 1``, columns alike), so
      ``calib_width = acs_width(mask)`` calibrates on sampled points only. A line mask expanded to ``[H, W]``
      gives its centre run (at most H).

    More than one mask (a leading dim > 1) is an :class:`recon.errors.InputError`: call it per sample.
    """
    m = mask.detach().cpu().numpy() if torch.is_tensor(mask) else np.asarray(mask)
    if m.ndim < 1 or m.size == 0:
        raise InputError(None, f"acs_width: mask of shape {m.shape} is empty")
    height, width = (1, m.shape[-1]) if m.ndim == 1 else m.shape[-2:]
    if m.size != height * width:
        raise InputError(None, f"acs_width takes one mask ([..., H|1, W] with leading dims of size 1), got shape "
                               f"{m.shape}")
    sampled = m.reshape(height, width) > 0
    if height == 1:
        return _center_run(sampled[0])
    ch, cw = height // 2, width // 2
    side = 0
    while side < min(height, width):
        n = side + 1
        r0, c0 = ch - n // 2, cw - n // 2
        if not sampled[r0:r0 + n, c0:c0 + n].all():
            break
        side = n
    return side


def mask_from_kspace(kspace: np.ndarray | torch.Tensor, two_d: bool = False,
                     source: str | None = None) -> SamplingMask:
    """The sampling pattern of zero-filled k-space ``[..., H, W]``.

    Args:
        kspace: complex k-space, any leading dims (slices, coils).
        two_d: False (default): a line mask ``[1, 1, W]``, 1 for every column holding any non-zero sample;
            True: a point mask ``[1, H, W]``, 1 where any coil/slice is non-zero.
        source: file name for error messages.

    Returns:
        :class:`SamplingMask` with kind ``from_kspace``, ``acceleration == acceleration_effective`` and the
        width of the contiguous sampled block through the centre column as ``num_low_frequencies``.
    """
    array = kspace.detach().cpu().numpy() if torch.is_tensor(kspace) else np.asarray(kspace)
    if array.ndim < 2 or array.size == 0:
        raise InputError(source, f"k-space of shape {array.shape} has no (H, W) plane")
    points = np.any(array.reshape(-1, *array.shape[-2:]) != 0, axis=0)
    if not points.any():
        raise InputError(source, "k-space is all zero: no sampled points")
    columns = points.any(axis=0)
    num_low = _center_run(columns)
    height, width = points.shape
    if two_d:
        mask = torch.from_numpy(points.astype(np.float32)).reshape(1, height, width)
    else:
        mask = torch.from_numpy(columns.astype(np.float32)).reshape(1, 1, width)
    effective = _effective(mask)
    return SamplingMask(mask, "from_kspace", effective, effective, num_low / width, num_low, None)


def restrict_mask(mask: SamplingMask, acquired: SamplingMask) -> SamplingMask:
    """``mask`` on k-space that was acquired with the pattern ``acquired`` (e.g. :func:`mask_from_kspace` of an
    undersampled file): only the lines (points) both mark are sampled; the effective R and the fully sampled
    centre are recounted on those, the nominal R, kind and seed kept."""
    kept = mask.mask * acquired.mask
    width = kept.shape[-1]
    low = _center_run(kept[0].numpy().any(axis=0))
    return mask._replace(mask=kept, acceleration_effective=_effective(kept), center_fraction=low / width,
                         num_low_frequencies=low)


def describe_mask(mask: SamplingMask) -> dict:
    """The mask's settings as plain JSON-able values (for h5 attrs and reports)."""
    return {
        "mask_type": mask.kind,
        "acceleration": float(mask.acceleration),
        "acceleration_effective": float(mask.acceleration_effective),
        "center_fraction": float(mask.center_fraction),
        "num_low_frequencies": int(mask.num_low_frequencies),
        "seed": mask.seed,
    }

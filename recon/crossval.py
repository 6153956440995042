"""K-space cross-validation: how well a reconstruction predicts measured k-space it did not see.

Without a fully sampled reference the measured k-space is the only ground truth, and a reconstruction is data
consistent on every sample it used. So hold some out (SSDU's idea, Yaman et al., MRM 2020, used there for
training and validation): the samples outside the fully sampled centre are dealt into folds; for each fold the
method reconstructs from the rest and ``F S x`` predicts the held-out samples. What is dealt is what the mask
samples independently (:func:`fold_masks`): whole phase-encode lines for line masks (random, equispaced), single
points for 2-D masks (Poisson disk; in a 3-D scan each is a readout line), so each fold's reconstruction sees a
mask of the same kind as the image being judged.

- :func:`heldout_errors`: the squared prediction error at every held-out sample (one slice, any solver); which
  samples may be held out (a :class:`HeldoutLayout`) comes from :func:`recon.calibration.heldout_layout`.
- :func:`unmeasured_energy`: the k-space energy where nothing was measured, estimated per readout row by
  log-linear interpolation along the phase encode between the measured samples of that row.
- :func:`nmse_estimate`: the two together, an estimate of the reconstruction's k-space NMSE against the fully
  sampled data: the held-out relative error ``r = sum err / sum |y_held|^2`` applied to the estimated unmeasured
  energy ``U``, over the estimated total ``M + U`` (``M`` the measured energy): ``r U / (M + U)``, with ``r``
  measured per band of k-space radius and applied to the unmeasured energy at the same radii
  (:func:`heldout_weights`, :data:`NMSE_BANDS` bands). Zero-filled predicts zeros (``r = 1``) and gets
  ``U / (M + U)``, the energy it misses.

The estimate is biased high for the energy it weighs (each fold is reconstructed from fewer samples than the image
being judged, most at high R), but the bias is shared by every method at a given mask, which is what ranking needs.
With a single relative error (one band, until 2026-12-05) the estimate of a Poisson-disk mask was biased low and
nearly flat in R: the held-out error near the centre, where the energy is, set the rate for the unmeasured energy
far out, where the relative error is larger (held-out subjects, MoDL at R = 4 / 16: 0.0020 / 0.0038 against a true
NMSE of 0.0014 / 0.0125; with 8 bands 0.0071 / 0.0364). Line masks barely change. Measured on simulated subjects
and the real 16-coil brain (``scripts/eval_kspace_quality.py``, docs/rq/kspace.md).

Used by :func:`recon.calibration.heldout_line_error` (which maps explain the data) and by
:mod:`mriqa.recon_quality.kspace` (a reference-free quality signal).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

__all__ = ["HeldoutLayout", "fold_masks", "heldout_errors", "coil_kspace", "unmeasured_energy", "nmse_estimate",
           "heldout_weights", "kspace_radius", "outer_lines", "samples_lines", "NMSE_BANDS", "NMSE_BAND_CHOICES"]

# radial bands of the NMSE estimate (heldout_weights), chosen with the combined score's tau and power on the
# validation subjects by scripts/eval_kspace_quality.py from NMSE_BAND_CHOICES (docs/rq/kspace.md)
# (8 until 2026-12-06; 4 with the recon model fine-tuned that day; the training loss keeps its own 8:
# mriqa.losses.recon_quality_loss.LOSS_BANDS)
NMSE_BANDS = 4
NMSE_BAND_CHOICES = (1, 2, 4, 8)


class HeldoutLayout(NamedTuple):
    """What the k-space check of one slice may hold out (:func:`recon.calibration.heldout_layout` makes it).

    Attributes:
        points: bool ``[H, W]``, the samples the mask takes that hold data.
        centre: ``(rows, cols)``, the calibration rectangle: never held out (line masks keep its whole columns).
        lines: whether the mask samples whole phase-encode lines (:func:`samples_lines`): folds deal lines, else
            single points.
    """

    points: np.ndarray
    centre: tuple[slice, slice]
    lines: bool


def coil_kspace(maps: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``F sum_m S_m x_m``: the multi-coil k-space ``[C, H, W]`` of an image ``[H, W]`` (or ``[M, H, W]``) through
    coil maps ``[C, H, W]`` (or ESPIRiT map sets ``[M, C, H, W]``)."""
    from recon.fft import fft2c_np

    stack = maps[None] if maps.ndim == 3 else maps
    image = image[None] if image.ndim == 2 else image
    return fft2c_np(np.sum(stack * image[:, None], axis=0).astype(np.complex64))


def outer_lines(points: np.ndarray, cols: slice) -> np.ndarray:
    """The sampled phase-encode lines (columns of ``points`` ``[H, W]`` with any sample) outside ``cols``."""
    lines = np.flatnonzero(points.any(axis=0))
    return lines[(lines < cols.start) | (lines >= cols.stop)]


def samples_lines(marked: np.ndarray) -> bool:
    """Whether a mask's sampled points ``marked`` ``[H, W]`` are whole phase-encode lines (every marked column is
    marked in every row). Judged on the mask, not on the data: a scan may hold data in part of a sampled line."""
    return bool(marked[:, marked.any(axis=0)].all())


def fold_masks(layout: HeldoutLayout, folds: int = 4, seed: int = 0) -> list[np.ndarray]:
    """The folds of :func:`heldout_errors`: bool ``[H, W]`` held-out samples per fold.

    ``layout.centre``, the calibration rectangle, is never held out. Line masks: the sampled lines outside its
    columns, shuffled with ``seed`` and dealt round-robin (a fold holds out every sample of its lines). 2-D masks:
    the sampled points outside the rectangle, likewise. Fewer folds than ``folds`` when there are fewer units; none
    when there are none."""
    points, (rows, cols) = layout.points, layout.centre
    if layout.lines:
        units = outer_lines(points, cols)  # column indices
    else:
        kept = np.zeros(points.shape, bool)
        kept[rows, cols] = True
        units = np.flatnonzero(points & ~kept)  # flat point indices
    units = units.copy()
    np.random.default_rng(seed).shuffle(units)
    out = []
    for f in range(min(folds, units.size)):
        held = np.zeros(points.shape[-1] if layout.lines else points.size, bool)
        held[units[f::folds]] = True
        out.append(points & held[None, :] if layout.lines else held.reshape(points.shape))
    return out


def heldout_errors(kspace: np.ndarray, layout: HeldoutLayout, predict: Callable, folds: int = 4,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Squared errors of ``predict`` on held-out samples of one slice.

    Args:
        kspace: complex ``[C, H, W]``, zero where not sampled.
        layout: which samples there are and which may be held out (:class:`HeldoutLayout`).
        predict: ``predict(kspace [C, H, W], keep bool [H, W]) -> [C, H, W]`` complex k-space predicted from the
            samples ``keep`` (e.g. ``fft2c(S x)`` of the method's image).
        folds: the samples outside the centre are dealt into this many folds (:func:`fold_masks`, shuffled with
            ``seed``).

    Returns:
        ``(errors, held)``: float64 ``[H, W]`` ``sum_c |predicted - measured|^2`` at held-out samples (0
        elsewhere) and bool ``[H, W]`` the held-out samples (all False when nothing lies outside the centre).
    """
    points = layout.points
    errors = np.zeros(points.shape, np.float64)
    held = np.zeros(points.shape, bool)
    for test in fold_masks(layout, folds, seed):
        keep = points & ~test
        predicted = predict(kspace * keep, keep)
        errors[test] = np.sum(np.abs(predicted[:, test] - kspace[:, test]) ** 2, axis=0)
        held |= test
    return errors, held


def unmeasured_energy(kspace: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Estimated ``sum_c |y|^2`` ``[H, W]`` at the samples ``points`` leaves out (0 at measured ones): per readout
    row, log-linear interpolation along the phase encode between that row's measured samples (the nearest
    measured value beyond the outermost). Rows with fewer than two measured samples get 0."""
    energy = np.sum(np.abs(kspace) ** 2, axis=0)
    out = np.zeros(points.shape, np.float64)
    position = np.arange(points.shape[1])
    for row in range(points.shape[0]):
        measured = points[row]
        if measured.sum() < 2 or measured.all():
            continue
        log_energy = np.log(np.maximum(energy[row, measured], 1e-30))
        out[row, ~measured] = np.exp(np.interp(position[~measured], position[measured], log_energy))
    return out


def kspace_radius(shape: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` centred radius of every k-space sample, ``sqrt((dy / H)^2 + (dx / W)^2)`` (0 at the centre, 0.5 at
    the edges' middles)."""
    h, w = shape
    dy = (np.arange(h)[:, None] - h // 2) / h
    dx = (np.arange(w)[None, :] - w // 2) / w
    return np.sqrt(dy ** 2 + dx ** 2)


def heldout_weights(kspace: np.ndarray, points: np.ndarray, held: np.ndarray, bands: int = NMSE_BANDS) -> np.ndarray:
    """Per held-out sample, the weight ``w`` ``[H, W]`` (float64, 0 elsewhere) that makes ``sum(w * errors)`` the
    NMSE estimate of :func:`nmse_estimate` from squared errors ``errors`` ``[H, W]`` at the held-out samples
    ``held``; ``points`` are the measured samples of ``kspace`` ``[C, H, W]``.

    The held-out samples are split into ``bands`` bands of equal count by their radius (:func:`kspace_radius`);
    each band's relative error (its errors over its energy) is applied to the estimated unmeasured energy ``U`` at
    the radii of that band (below the first cut: the first band's; beyond the last: the last's), over ``M + U``.
    One band is the whole-k-space relative error; a band without held-out energy adds nothing. Why bands: the
    relative error grows with the radius (less signal, the same noise, more of what a method must guess) and the
    unmeasured energy lies mostly far out, so one relative error, dominated by the strong held-out samples near the
    centre, underestimates the NMSE, and more so at high R."""
    energy = np.sum(np.abs(kspace) ** 2, axis=0)
    weights = np.zeros(points.shape, np.float64)
    if not held.any():
        return weights
    radius = kspace_radius(points.shape)
    edges = np.quantile(radius[held], np.linspace(0, 1, int(bands) + 1)[1:-1])
    band = np.searchsorted(edges, radius)
    missing = unmeasured_energy(kspace, points)
    total = float(energy[points].sum() + missing.sum())
    for b in range(int(bands)):
        in_band = held & (band == b)
        held_energy = float(energy[in_band].sum())
        if held_energy > 0:
            weights[in_band] = float(missing[band == b].sum()) / held_energy / max(total, 1e-30)
    return weights


def nmse_estimate(kspace: np.ndarray, points: np.ndarray, errors: np.ndarray, held: np.ndarray,
                  bands: int = NMSE_BANDS) -> tuple[float, float]:
    """``(nmse, relative)`` of one slice from :func:`heldout_errors`: ``relative`` = held-out error over held-out
    energy (1.0 for a prediction of zeros), ``nmse`` = the estimate of the module docstring, per ``bands`` radial
    bands (:func:`heldout_weights`). NaN when nothing was held out."""
    energy = np.sum(np.abs(kspace) ** 2, axis=0)
    held_energy = float(energy[held].sum())
    if not held.any() or held_energy <= 0:
        return float("nan"), float("nan")
    relative = float(errors[held].sum()) / held_energy
    return float(np.sum(heldout_weights(kspace, points, held, bands) * errors)), relative

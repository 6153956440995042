"""One reconstruction job, end to end: load k-space, undersample (optionally), estimate coil maps, reconstruct.

This is what ``mriqa recon`` and ``mriqa demo`` run; each step is a plain function so that scripts can use
them one at a time.

- :func:`load_kspace` reads a fastMRI h5 or a BART ``.cfl``/``.hdr`` into a :class:`KspaceVolume`.
- :func:`undersample` applies a retrospective mask (``--accel``) or, without one, reads the sampling pattern
  from the zeros of the k-space (:func:`recon.masks.mask_from_kspace`).
- :func:`estimate_maps` calibrates coil maps on the fully sampled data of the *undersampled* k-space
  (:func:`recon.calibration.calibrate_maps`: rectangular ESPIRiT region, a kernel that fits, a refinement step
  for narrow centres), cached on disk (:func:`recon.coils.espirit_maps_cached`).
- :func:`run_method` dispatches to ``zf`` / ``sense`` / ``l1`` (``recon.baselines``) / ``modl``
  (``recon.modl.modl_reconstruct``; :func:`method_solver` turns the name into a solver), every method but ``zf``
  under the collapse guard (:mod:`recon.guard`); :func:`reconstruct` returns just its image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from recon.errors import InputError
from recon.io.fastmri_h5 import KspaceVolume
from recon.masks import MIN_ACS, acs_width

__all__ = ["METHODS", "MIN_ACS", "load_kspace", "undersample", "estimate_maps", "method_solver",
           "reconstruct", "run_method", "Reconstruction", "Undersampled"]

METHODS = ("zf", "sense", "l1", "modl")
# Fraction of a sampled column's points that must be non-zero for the pattern to count as Cartesian lines.
CARTESIAN_MIN_COLUMN_FILL = 0.75


def load_kspace(path: str | os.PathLike) -> KspaceVolume:
    """Read a fastMRI h5 (``.h5``), BART (``.cfl``/``.hdr``/base name) or SENSE-tutorial (``.mat``, MATLAB v7.3
    with dataset ``raw``: the real 16-coil brain of ``recon.io.sense_tutorial``) k-space file."""
    path = Path(path)
    if path.suffix in (".cfl", ".hdr") or (not path.exists() and path.with_suffix(".cfl").exists()):
        from recon.io.bart import read_cfl_kspace

        return read_cfl_kspace(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.suffix.lower() == ".mat":
        from recon.io.sense_tutorial import read_sense_tutorial_kspace

        return read_sense_tutorial_kspace(path)
    from recon.io.fastmri_h5 import read_kspace

    return read_kspace(path)


class Undersampled(NamedTuple):
    """K-space as the reconstruction sees it.

    Attributes:
        kspace: complex64 numpy ``[S, C, H, W]``, zero where not sampled.
        mask: the :class:`recon.masks.SamplingMask` (tensor ``[1, 1, W]`` or ``[1, H, W]``).
        retrospective: True when the mask was applied here.
        input_acceleration: the effective R of the k-space as read (1.0: fully sampled). A retrospective mask on
            k-space that was already undersampled keeps only the lines (points) holding data, and its effective R
            counts those.
    """

    kspace: np.ndarray
    mask: object
    retrospective: bool
    input_acceleration: float = 1.0


def undersample(volume: KspaceVolume, accel: float | None = None, mask_type: str = "random",
                center_fraction: float | None = None, seed: int | None = 0) -> Undersampled:
    """Retrospectively undersample ``volume`` at nominal R = ``accel`` (one mask for all slices; centre
    fraction default :func:`recon.masks.center_fraction_for`: never fewer than ``MIN_ACS`` centre lines), or, with ``accel=None``, take the zeros of the k-space as the unsampled points (the file's own mask if it has one)."""
    from recon.masks import center_fraction_for, make_mask, mask_from_kspace, restrict_mask

    kspace = volume.kspace
    height, width = kspace.shape[-2:]
    if accel is None:
        if volume.mask is not None:
            from recon.masks import SamplingMask

            mask_t = torch.from_numpy(np.asarray(volume.mask, dtype=np.float32))
            if not mask_t.any():
                raise InputError(volume.path, "the file's mask is all zero (no k-space sampled)")
            effective = float(mask_t.numel() / mask_t.sum())
            low = acs_width(mask_t)
            mask = SamplingMask(mask_t, "from_file", effective, effective, low / width, low, None)
        else:
            two_d = _looks_2d(kspace)
            mask = mask_from_kspace(kspace, two_d=two_d, source=str(volume.path))
        return Undersampled(kspace * mask.mask.numpy(), mask, False)
    if center_fraction is None:
        center_fraction = center_fraction_for(accel, width)
    mask = make_mask(mask_type, (height, width), accel, center_fraction=center_fraction, seed=seed)
    acquired = mask_from_kspace(kspace, two_d=mask.is_2d, source=str(volume.path))
    if acquired.acceleration_effective > 1.0:  # already undersampled: the mask can only keep what is there
        mask = restrict_mask(mask, acquired)
    return Undersampled(kspace * mask.mask.numpy(), mask, True, acquired.acceleration_effective)


def _looks_2d(kspace: np.ndarray) -> bool:
    """True when the sampled points do not form whole columns (a 2-D / Poisson pattern).

    A Cartesian acquisition samples (nearly) every point of each sampled column; real scanners may zero the
    k-space corners (an elliptical shutter: the smallfov example keeps 88 % of its sampled columns' points),
    while a 2-D Poisson-disk pattern keeps about 1 / R of them. The cut-off sits between the two.
    """
    points = np.any(kspace.reshape(-1, *kspace.shape[-2:]) != 0, axis=0)
    columns = points.any(axis=0)
    return bool(points[:, columns].mean() < CARTESIAN_MIN_COLUMN_FILL)


def estimate_maps(kspace: np.ndarray, mask, source: str | os.PathLike | None = None, num_maps: int = 1,
                  cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """Coil maps per slice, calibrated on the fully sampled data of undersampled k-space
    (:func:`recon.calibration.calibrate_maps`; its :class:`~recon.calibration.CalibrationInfo` is dropped).

    Args:
        kspace: complex ``[S, C, H, W]`` (zero where not sampled).
        mask: :class:`recon.masks.SamplingMask` or tensor (one mask for all slices).
        source: file the k-space came from; with it, maps are cached on disk (:mod:`recon.coils`).
        num_maps: 1, or 2 when a small field of view folds over (soft SENSE).
    Returns: complex64 ``[S, C, H, W]`` (or ``[S, M, C, H, W]`` with ``num_maps > 1``).
    """
    from recon.calibration import calibrate_maps

    return calibrate_maps(kspace, mask, num_maps=num_maps, source=source, cache_dir=cache_dir)[0]


class Reconstruction(NamedTuple):
    """What :func:`run_method` returns.

    Attributes:
        image: float32 magnitude ``[S, H, W]`` on the scale of the RSS of the fully sampled k-space.
        guard: per slice, the :class:`recon.guard.GuardReport` of the attempt returned (empty for ``zf``).
        calibration: per slice, the :class:`recon.calibration.CalibrationInfo` of the maps used (None for
            maps that were given and passed the guard; empty for ``zf``).
        maps: per slice, the coil maps the returned image was reconstructed with (complex64 ``[C, H, W]``, or
            ``[M, C, H, W]`` for map sets: a guard fallback may change the count per slice), when
            :func:`run_method` was asked to keep them (``keep_maps``); else empty.
        adapt: per slice, the :class:`recon.modl.adapt.AdaptReport` of MoDL's scan-specific adaptation (of the
            slice's last guard attempt), when asked for (``adapt_steps``); else empty.
    """

    image: np.ndarray
    guard: tuple
    calibration: tuple
    maps: tuple = ()
    adapt: tuple = ()

    def notes(self) -> list[str]:
        """One line per distinct warning of the guard and the calibration (slices named), for stderr."""
        seen: dict[str, list[int]] = {}
        for s, report in enumerate(self.guard):
            for w in report.warnings:
                seen.setdefault(w, []).append(s)
            if report.attempt not in ("given maps", "calibrated"):
                seen.setdefault(f"collapse guard: used the fallback '{report.attempt}'", []).append(s)
        for s, report in enumerate(self.adapt):
            seen.setdefault(report.short() if report.skipped else "adapted to the scan (ZS-SSL)", []).append(s)
        n = len(self.guard)
        return [w if len(sl) == n else f"slice {_ranges(sl)}: {w}" for w, sl in seen.items()]

    def summary(self) -> dict:
        """Plain values for the reconstruction h5's attributes: ``calibration`` (short form of slice 0's, or
        ``given``), ``guard_attempt`` (distinct attempts used) and ``guard`` (worst figures over slices, the
        held-out error where it was computed)."""
        if not self.guard:
            return {}
        attempts = sorted({r.attempt for r in self.guard})
        info = next((c for c in self.calibration if c is not None), None)
        figures = "coverage {:.2f}, residual {:.3f}, centre disagreement {:.2f}".format(
            min(r.coverage for r in self.guard), max(r.residual for r in self.guard),
            max(r.acs_disagreement for r in self.guard))
        heldout = [r.heldout_error for r in self.guard if np.isfinite(r.heldout_error)]
        if heldout:  # the held-out check ran (recon.guard.HELDOUT_TRIGGER)
            figures += f", held-out error {max(heldout):.2f}"
        out = {"calibration": "given" if info is None else info.short(),
               "guard_attempt": ",".join(attempts), "guard": figures}
        if self.adapt:
            kept = [r.best_step for r in self.adapt if not r.skipped]
            out["adapt"] = (f"{len(kept)} of {len(self.adapt)} slices adapted"
                            + (f", kept steps {min(kept)}-{max(kept)}" if kept else ""))
        return out


def _ranges(indices: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2, 5``."""
    parts, start = [], None
    for i, s in enumerate(indices):
        if start is None:
            start = s
        if i + 1 == len(indices) or indices[i + 1] != s + 1:
            parts.append(str(start) if start == s else f"{start}-{s}")
            start = None
    return ", ".join(parts)


def reconstruct(method: str, kspace: np.ndarray, mask, **kwargs) -> np.ndarray:
    """:func:`run_method`'s image: float32 magnitude ``[S, H, W]`` (the guard's notes are dropped)."""
    return run_method(method, kspace, mask, **kwargs).image


def method_solver(method: str, *, weights: str | None = None, device: str | None = None, self_ensemble: bool = False,
                  complex_output: bool = False, adapt_steps: int = 0, adapt_lr: float | None = None):
    """``solve(kspace [S, C, H, W], mask, maps [S, C, H, W] | [S, M, C, H, W])`` of ``method`` in :data:`METHODS`
    with its defaults (``recon.baselines.cg_sense`` / ``l1_wavelet``, ``recon.modl.modl_reconstruct`` with MoDL's
    ``weights`` loaded once here, on ``device``; ``self_ensemble``, ``adapt_steps``, ``adapt_lr``: MoDL only, the
    MoDL solver then collects the adaptation reports in its attribute ``adapt_reports``): float32 magnitude
    ``[S, H, W]``, or
    with ``complex_output`` the complex image ``[S, H, W]`` (``[S, M, H, W]`` with map sets). None for ``zf``, which
    needs no maps. The one place a method name becomes a solver (:func:`run_method`, the k-space check of
    ``mriqa.recon_quality.kspace``)."""
    from recon import baselines

    if method not in METHODS:
        raise InputError(None, f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if self_ensemble and method != "modl":
        raise InputError(None, f"self-ensemble is a MoDL option; method {method!r} has no denoiser to average")
    if int(adapt_steps) < 0:
        raise InputError(None, f"adaptation steps must be >= 0, got {adapt_steps}")
    if adapt_steps and method != "modl":
        raise InputError(None, f"scan-specific adaptation is a MoDL option; method {method!r} has no network to adapt")
    if adapt_lr is not None and not (adapt_steps and float(adapt_lr) > 0):
        raise InputError(None, f"a learning rate for the adaptation ({adapt_lr}) needs adaptation steps > 0 and a "
                               "rate > 0")
    if method == "zf":
        return None
    if method == "modl":
        from recon.modl import load_modl, modl_reconstruct

        model = load_modl(weights or "modl")
        reports: list = []

        def solve(k, m, s):
            return modl_reconstruct(model, k, m, sens_maps=s, device=device, complex_output=complex_output,
                                    self_ensemble=self_ensemble, adapt_steps=adapt_steps, adapt_lr=adapt_lr,
                                    adapt_reports=reports)

        solve.adapt_reports = reports
        return solve
    if method == "sense":
        return lambda k, m, s: baselines.cg_sense(k, m, s, device=device, complex_output=complex_output)
    return lambda k, m, s: baselines.l1_wavelet(k, m, s, complex_output=complex_output)


def run_method(method: str, kspace: np.ndarray, mask, *, sens_maps: np.ndarray | None = None,
               source: str | os.PathLike | None = None, num_maps: int = 1, weights: str | None = None,
               device: str | None = None, cache_dir: str | os.PathLike | None = None,
               calibration: str = "auto", keep_maps: bool = False, self_ensemble: bool = False,
               adapt_steps: int = 0, adapt_lr: float | None = None) -> Reconstruction:
    """Reconstruct undersampled multi-coil k-space ``[S, C, H, W]`` with ``method`` in :data:`METHODS`.

    Every method but ``zf`` runs slice by slice under the collapse guard (:func:`recon.guard.guarded`): the
    given ``sens_maps`` are tried first, then maps from :func:`recon.calibration.calibrate_maps` and its
    fallbacks; a slice on which no attempt passes is an ``InputError`` naming the slice (one line, exit 2).
    ``num_maps``: ESPIRiT map sets to calibrate (2: soft SENSE, for a field of view smaller than the object; every
    method takes them, MoDL denoising each set's image; with 1 the guard still falls back to 2 when one set fails
    its checks); ``cache_dir``: the ESPIRiT cache (default the user cache,
    :func:`recon.coils.default_cache_dir`); ``calibration``: the ``method`` of
    :func:`recon.calibration.calibrate_maps` (``auto``, ``espirit``, ``refined``, ``select``); ``keep_maps``: return
    the maps each slice was reconstructed with (``Reconstruction.maps``, e.g. for the k-space check of
    ``mriqa recon --quality``); ``self_ensemble``: MoDL's denoiser averaged over the 8 flips and transposes
    (:func:`recon.modl.modl_reconstruct`; MoDL only); ``adapt_steps``: MoDL fine-tuned on each slice's own
    measurements first (ZS-SSL, :mod:`recon.modl.adapt`; MoDL only; the report of each slice's last attempt is in
    ``Reconstruction.adapt``); ``adapt_lr``: its learning rate (None: :data:`recon.modl.adapt.DEFAULT_LR`).
    """
    from recon import baselines
    from recon.guard import guarded

    solve = method_solver(method, weights=weights, device=device, self_ensemble=self_ensemble, adapt_steps=adapt_steps,
                          adapt_lr=adapt_lr)
    if solve is None:
        return Reconstruction(baselines.zero_filled(kspace, getattr(mask, "mask", mask)), (), ())
    images, reports, infos, used, adapted = [], [], [], [], []
    for s in range(kspace.shape[0]):
        given = None if sens_maps is None else np.asarray(sens_maps[s:s + 1])
        try:
            image, report, maps_used, info = guarded(solve, kspace[s:s + 1], mask, maps=given, num_maps=num_maps,
                                                     source=source, cache_dir=cache_dir, calibration=calibration)
        except InputError as exc:
            where = f"slice {s}: " if kspace.shape[0] > 1 else ""
            raise InputError(source, f"{method}: {where}{exc.problem}") from None
        images.append(image[0])
        reports.append(report)
        infos.append(info)
        if keep_maps:
            used.append(np.asarray(maps_used)[0])
        if adapt_steps:
            adapted.append(solve.adapt_reports[-1])
    return Reconstruction(np.stack(images).astype(np.float32), tuple(reports), tuple(infos), tuple(used),
                          tuple(adapted))

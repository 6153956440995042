"""One reconstruction job, end to end: load k-space, undersample (optionally), estimate coil maps, reconstruct.

This is what ``mriqa recon`` and ``mriqa demo`` run; each step is a plain function so that scripts can use
them one at a time.

- :func:`load_kspace` reads a fastMRI h5 or a BART ``.cfl``/``.hdr`` into a :class:`KspaceVolume`.
- :func:`undersample` applies a retrospective mask (``--accel``) or, without one, reads the sampling pattern
  from the zeros of the k-space (:func:`recon.masks.mask_from_kspace`).
- :func:`estimate_maps` runs ESPIRiT per slice on the fully sampled centre (ACS, :func:`recon.masks.acs_width`)
  of the *undersampled* k-space, cached on disk by file + slice (:func:`recon.coils.espirit_maps_cached`);
  :func:`espirit_calibration` is its calibration rule (MoDL's maps for a batch without them use it too).
- :func:`reconstruct` dispatches to ``zf`` / ``sense`` / ``l1`` (``recon.baselines``) / ``modl``
  (``recon.modl.modl_reconstruct``).
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

__all__ = ["METHODS", "MIN_ACS", "load_kspace", "undersample", "espirit_calibration", "estimate_maps",
           "reconstruct", "Undersampled"]

METHODS = ("zf", "sense", "l1", "modl")
# ESPIRiT needs a fully sampled calibration block at least twice its kernel width (measured: kernel 4 on an
# 8-line block recovers the maps, kernel 6 on it does not). Kernel 6 (sigpy's default) from 12 lines up.
ESPIRIT_KERNEL_WIDTH = 6
ESPIRIT_CALIB_WIDTH = 24
# Fraction of a sampled column's points that must be non-zero for the pattern to count as Cartesian lines.
CARTESIAN_MIN_COLUMN_FILL = 0.75


def load_kspace(path: str | os.PathLike) -> KspaceVolume:
    """Read a fastMRI h5 (``.h5``) or BART (``.cfl``/``.hdr``/base name) k-space file."""
    path = Path(path)
    if path.suffix in (".cfl", ".hdr") or (not path.exists() and path.with_suffix(".cfl").exists()):
        from recon.io.bart import read_cfl_kspace

        return read_cfl_kspace(path)
    if not path.exists():
        raise InputError(path, "no such file")
    from recon.io.fastmri_h5 import read_kspace

    return read_kspace(path)


class Undersampled(NamedTuple):
    """K-space as the reconstruction sees it.

    Attributes:
        kspace: complex64 numpy ``[S, C, H, W]``, zero where not sampled.
        mask: the :class:`recon.masks.SamplingMask` (tensor ``[1, 1, W]`` or ``[1, H, W]``).
        retrospective: True when the mask was applied here (the input was treated as fully sampled).
    """

    kspace: np.ndarray
    mask: object
    retrospective: bool


def undersample(volume: KspaceVolume, accel: float | None = None, mask_type: str = "random",
                center_fraction: float | None = None, seed: int | None = 0) -> Undersampled:
    """Retrospectively undersample ``volume`` at nominal R = ``accel`` (one mask for all slices), or, with
    ``accel=None``, take the zeros of the k-space as the unsampled points (the file's own mask if it has one)."""
    from recon.masks import make_mask, mask_from_kspace

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
    mask = make_mask(mask_type, (height, width), accel, center_fraction=center_fraction, seed=seed)
    return Undersampled(kspace * mask.mask.numpy(), mask, True)


def _looks_2d(kspace: np.ndarray) -> bool:
    """True when the sampled points do not form whole columns (a 2-D / Poisson pattern).

    A Cartesian acquisition samples (nearly) every point of each sampled column; real scanners may zero the
    k-space corners (an elliptical shutter: the smallfov example keeps 88 % of its sampled columns' points),
    while a 2-D Poisson-disk pattern keeps about 1 / R of them. The cut-off sits between the two.
    """
    points = np.any(kspace.reshape(-1, *kspace.shape[-2:]) != 0, axis=0)
    columns = points.any(axis=0)
    return bool(points[:, columns].mean() < CARTESIAN_MIN_COLUMN_FILL)


def espirit_calibration(acs: int, source: str | os.PathLike | None = None,
                        what: str = "only") -> tuple[int, int]:
    """``(calib_width, kernel_width)`` of ESPIRiT for a fully sampled centre of ``acs`` lines
    (:func:`recon.masks.acs_width`): at most 24 lines, kernel at most 6 and at most half the block. Fewer than
    ``MIN_ACS`` lines is an ``InputError`` (``what`` starts its message)."""
    if acs < MIN_ACS:
        raise InputError(source, f"{what} {acs} fully sampled centre lines (ACS); ESPIRiT coil maps need at "
                                 f"least {MIN_ACS}: give coil maps (mriqa recon --maps FILE) or sample a larger centre")
    calib = min(ESPIRIT_CALIB_WIDTH, acs)
    return calib, min(ESPIRIT_KERNEL_WIDTH, calib // 2)


def estimate_maps(kspace: np.ndarray, mask, source: str | os.PathLike | None = None, num_maps: int = 1,
                  cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """ESPIRiT coil maps per slice from the fully sampled centre of undersampled k-space.

    Args:
        kspace: complex ``[S, C, H, W]`` (zero where not sampled).
        mask: :class:`recon.masks.SamplingMask`; its fully sampled centre sets ESPIRiT's calibration width
            (at most 24 lines).
        source: file the k-space came from; with it, maps are cached on disk keyed by file + slice + settings.
        num_maps: 1, or 2 when a small field of view folds over (soft SENSE).
    Returns: complex64 ``[S, C, H, W]`` (or ``[S, M, C, H, W]`` with ``num_maps > 1``).
    """
    from recon.coils import espirit_maps, espirit_maps_cached

    if kspace.shape[1] == 1:  # single-coil: the "map" is 1 everywhere
        ones = np.ones_like(kspace, dtype=np.complex64)
        return ones if num_maps == 1 else np.stack([ones] + [np.zeros_like(ones)] * (num_maps - 1), axis=1)
    calib, kernel = espirit_calibration(acs_width(mask.mask), source)
    maps = []
    for s in range(kspace.shape[0]):
        if source is not None:
            maps.append(espirit_maps_cached(kspace[s], source, s, cache_dir=cache_dir, calib_width=calib,
                                            kernel_width=kernel, num_maps=num_maps))
        else:
            maps.append(espirit_maps(kspace[s], calib_width=calib, kernel_width=kernel, num_maps=num_maps))
    return np.stack(maps).astype(np.complex64)


def reconstruct(method: str, kspace: np.ndarray, mask, *, sens_maps: np.ndarray | None = None,
                source: str | os.PathLike | None = None, num_maps: int = 1, weights: str | None = None,
                device: str | None = None, batch_size: int = 1) -> np.ndarray:
    """Reconstruct undersampled multi-coil k-space ``[S, C, H, W]`` with ``method`` in :data:`METHODS`
    (``batch_size``: MoDL's slices per forward pass).

    Returns: float32 magnitude ``[S, H, W]`` on the scale of the RSS of the fully sampled k-space.
    """
    from recon import baselines

    if method not in METHODS:
        raise InputError(None, f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    mask_t = mask.mask
    if method == "zf":
        return baselines.zero_filled(kspace, mask_t)
    if method == "modl":
        from recon.modl import load_modl, modl_reconstruct

        model = load_modl(weights or "modl")
        if sens_maps is None:
            sens_maps = estimate_maps(kspace, mask, source, num_maps=1)
        return modl_reconstruct(model, kspace, mask_t, sens_maps=sens_maps, device=device, batch_size=batch_size)
    if sens_maps is None:
        sens_maps = estimate_maps(kspace, mask, source, num_maps=num_maps)
    if method == "sense":
        return baselines.cg_sense(kspace, mask_t, sens_maps, device=device)
    return baselines.l1_wavelet(kspace, mask_t, sens_maps)

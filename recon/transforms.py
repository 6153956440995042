"""fastMRI-style data transform for training and evaluating MoDL on fully sampled multi-coil h5 files.

``ModlDataTransform`` has fastMRI's transform signature ``(kspace, mask, target, attrs, fname, slice_num)``,
so it plugs into ``fastmri.data.SliceDataset(root, challenge="multicoil", transform=...)`` (or our
:func:`slice_dataset`). From one fully sampled slice it makes a :class:`ModlSample` (the analogue of fastMRI's
``VarNetSample``, plus coil maps and the mask's settings):

- **Retrospective undersampling** with ``recon.masks.make_mask``. Training (``fixed=False``): every call
  draws a new mask: R uniform in ``[min(accelerations), max(accelerations)]`` (``continuous=True``) or one of
  ``accelerations``, and a kind from ``mask_types``; the draw is a deterministic function of
  ``(seed, epoch, fname, slice_num)`` (call :meth:`ModlDataTransform.set_epoch` each epoch), so training
  is reproducible and resumable. Evaluation (``fixed=True``): one R (``accelerations[0]``), one kind and a mask
  seed from ``(seed, fname)``, so every slice of a volume shares a mask (fastMRI's ``use_seed``) and every run
  sees the same masks. Centre fractions default to fastMRI's (with ``maps="acs"`` never below the
  calibration minimum, ``recon.masks.center_fraction_for``, as ``mriqa recon`` undersamples).
- **Coil maps**, ESPIRiT via ``recon.coils.espirit_maps_cached`` (disk cache: computed once per slice):
  ``maps="full"`` (default) from the central ``calib_width`` x ``calib_width`` block of the fully sampled
  k-space (a calibration scan; independent of the mask, so one cache entry per slice); ``maps="acs"`` from
  the fully sampled data of the *undersampled* k-space only, by :func:`recon.calibration.calibrate_maps` as
  ``mriqa recon`` does (one cache entry per slice and ACS width; too few centre lines is an ``InputError``). Single-coil data gets maps of ones.
- **Flips and transposes** (``dihedral=True``, training only): before the mask is drawn, the slice (coil images
  and target) is flipped and, when square, transposed by one of the 8 elements of the dihedral group, drawn as the
  mask is (from ``(seed, epoch, fname, slice_num)``, its own stream, so the masks stay those of a run without it):
  the phase-encode axis then meets the anatomy in every orientation, as real scans have it (which axis is the phase
  encode is not fixed across scanners and protocols; on the real 16-coil brain MoDL differed by up to 1.8 dB
  between the two orientations, ``docs/recon/real_kspace.md``).
- **Target**: ``reconstruction_rss`` (the RSS of the fully sampled k-space) and ``max_value`` = the file's
  ``max`` attribute (the volume max, fastMRI's data range); the target's ``crop_size``.

Shapes (per sample): masked k-space complex64 ``[C, H, W]``, mask float32 ``[1, 1, W]`` (line masks; ``[1, H, W]``
when ``mask_types`` includes ``poisson``, so that batches stack), maps complex64 ``[C, H, W]``, target float32
``[h, w]``. :func:`collate` stacks samples into a batch (``[B, C, H, W]`` ...).
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from recon.errors import InputError
from recon.masks import POISSON_MIN_ACCEL

__all__ = ["ModlSample", "ModlDataTransform", "collate", "slice_dataset", "mask_seed", "dihedral_image",
           "dihedral_kspace"]


class ModlSample(NamedTuple):
    """One undersampled slice, its coil maps and its reference (fastMRI's ``VarNetSample`` plus maps).

    Attributes:
        masked_kspace: complex64 ``[C, H, W]`` (zero where not sampled).
        mask: float32 ``[1, 1, W]`` or ``[1, H, W]``.
        num_low_frequencies: columns in the fully sampled centre.
        sens_maps: complex64 ``[C, H, W]`` (ESPIRiT; ones for single-coil).
        target: float32 ``[h, w]`` (``reconstruction_rss``), or a 0-d zero tensor when the file has none.
        fname: file name (as the dataset passes it).
        slice_num: slice index in the file.
        max_value: the volume max of the target (fastMRI's ``max`` attribute), 0.0 without a target.
        crop_size: ``(h, w)`` of the target.
        acceleration: nominal R of the mask.
        acceleration_effective: total / sampled columns (or points).
        mask_type: ``random`` / ``equispaced`` / ``poisson``.
    """

    masked_kspace: torch.Tensor
    mask: torch.Tensor
    num_low_frequencies: int
    sens_maps: torch.Tensor
    target: torch.Tensor
    fname: str
    slice_num: int
    max_value: float
    crop_size: tuple[int, int]
    acceleration: float
    acceleration_effective: float
    mask_type: str


def mask_seed(*parts: Any) -> int:
    """A 31-bit seed from any mix of ints and strings (stable across runs and machines)."""
    text = "|".join(str(p) for p in parts)
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


class ModlDataTransform:
    """fastMRI transform: fully sampled slice -> :class:`ModlSample` (see the module docstring).

    Args:
        accelerations: nominal R values; training draws from their range (``continuous``) or the list;
            evaluation (``fixed``) uses the first.
        mask_types: kinds from ``recon.masks.MASK_KINDS`` drawn uniformly (training) or the first (fixed).
            Training draws Poisson-disk masks only from ``recon.masks.POISSON_MIN_ACCEL`` up (sigpy cannot make
            lower ones on small grids): a lower R drawn for one is mapped linearly onto ``[that, max]``.
        center_fraction: fixed centre fraction; default fastMRI's ``0.32 / R``, and with ``maps="acs"``
            ``recon.masks.center_fraction_for(R, W)`` (at least ``MIN_ACS`` lines, as ``mriqa recon``).
        fixed: evaluation mode (one mask per volume, the same every run).
        continuous: draw R uniformly in ``[min, max]`` instead of from the list.
        seed: base seed of the mask draws.
        maps: ``"full"`` or ``"acs"`` (see the module docstring).
        calib_width: ESPIRiT calibration block (largest, for ``"acs"``).
        cache_dir: ESPIRiT disk cache (default ``recon.coils.default_cache_dir()``); ``False`` disables it.
        root: folder the files are in, to key the cache by full path (the dataset passes only file names).
        espirit: extra ``recon.coils.espirit_maps`` parameters (``thresh``, ``crop``).
        dihedral: training only: flip / transpose each slice at random (see the module docstring).
    """

    def __init__(self, accelerations: Sequence[float] = (4.0,), mask_types: Sequence[str] = ("random",),
                 center_fraction: float | None = None, fixed: bool = False, continuous: bool = False,
                 seed: int = 0, maps: str = "full", calib_width: int = 24,
                 cache_dir: str | os.PathLike | None | bool = None, root: str | os.PathLike | None = None,
                 espirit: dict | None = None, dihedral: bool = False):
        from recon.masks import MASK_KINDS

        self.accelerations = [float(r) for r in (accelerations if isinstance(accelerations, (list, tuple))
                                                  else [accelerations])]
        if not self.accelerations or min(self.accelerations) < 1:
            raise InputError(None, f"accelerations must be a non-empty list of R >= 1, got {accelerations}")
        self.mask_types = [str(k) for k in (mask_types if isinstance(mask_types, (list, tuple)) else [mask_types])]
        bad = [k for k in self.mask_types if k not in MASK_KINDS]
        if bad or not self.mask_types:
            raise InputError(None, f"mask types {self.mask_types} must be a non-empty subset of {list(MASK_KINDS)}")
        if maps not in ("full", "acs"):
            raise InputError(None, f"maps must be 'full' or 'acs', got {maps!r}")
        self.center_fraction = center_fraction
        self.fixed = bool(fixed)
        self.continuous = bool(continuous)
        self.seed = int(seed)
        self.maps = maps
        self.calib_width = int(calib_width)
        self.cache_dir = cache_dir
        self.root = None if root is None else Path(root)
        self.espirit = dict(espirit or {})
        self.dihedral = bool(dihedral) and not self.fixed
        self.two_d = "poisson" in self.mask_types
        if self.two_d and not self.fixed and max(self.accelerations) < POISSON_MIN_ACCEL:
            raise InputError(None, f"Poisson-disk training masks need R >= {POISSON_MIN_ACCEL:g}; accelerations "
                                   f"are {self.accelerations}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Training: masks depend on the epoch, so each epoch sees new ones (deterministically)."""
        self.epoch = int(epoch)

    # ------------------------------------------------------------------------------------------------
    def draw_mask(self, shape: tuple[int, int], fname: str, slice_num: int):
        """The :class:`recon.masks.SamplingMask` for this slice (see the class docstring)."""
        from recon.masks import center_fraction_for, default_center_fraction, make_mask

        if self.fixed:
            accel, kind = self.accelerations[0], self.mask_types[0]
            seed = mask_seed(self.seed, fname)
        else:
            rng = np.random.default_rng(mask_seed(self.seed, self.epoch, fname, slice_num))
            if self.continuous and len(self.accelerations) > 1:
                accel = float(rng.uniform(min(self.accelerations), max(self.accelerations)))
            else:
                accel = float(self.accelerations[int(rng.integers(len(self.accelerations)))])
            kind = self.mask_types[int(rng.integers(len(self.mask_types)))]
            seed = int(rng.integers(0, 2**31 - 1))
            if kind == "poisson":
                accel = self._poisson_accel(accel)
        center = self.center_fraction
        if center is None:  # maps from the undersampled data need the calibration's minimum centre
            center = center_fraction_for(accel, shape[-1]) if self.maps == "acs" else default_center_fraction(accel)
        return make_mask(kind, shape, accel, center_fraction=center, seed=seed)

    def dihedral_element(self, fname: str, slice_num: int, square: bool) -> int:
        """Which flip / transpose this slice gets (0: none; 0-3 flips, 4-7 the same after a transpose, square
        slices only); a function of ``(seed, epoch, fname, slice_num)``."""
        if not self.dihedral:
            return 0
        rng = np.random.default_rng(mask_seed(self.seed, self.epoch, fname, slice_num, "dihedral"))
        return int(rng.integers(8 if square else 4))

    def _poisson_accel(self, accel: float) -> float:
        """A training R drawn for a Poisson-disk mask, moved into ``[POISSON_MIN_ACCEL, max]`` (the draw order
        is unchanged, so configs without Poisson masks keep their masks)."""
        lo, hi = min(self.accelerations), max(self.accelerations)
        if accel >= POISSON_MIN_ACCEL:
            return accel
        if self.continuous and hi > lo:
            return POISSON_MIN_ACCEL + (accel - lo) / (hi - lo) * (hi - POISSON_MIN_ACCEL)
        allowed = sorted(r for r in self.accelerations if r >= POISSON_MIN_ACCEL)
        return allowed[self.accelerations.index(accel) % len(allowed)]

    def _source(self, fname: str) -> str:
        return str(self.root / fname) if self.root is not None else str(fname)

    def coil_maps(self, kspace: np.ndarray, sampling, fname: str, slice_num: int) -> np.ndarray:
        """ESPIRiT maps ``[C, H, W]`` for a fully sampled slice and its mask (cached on disk)."""
        from recon.coils import espirit_maps_cached

        num_coils, height, width = kspace.shape
        if num_coils == 1:
            return np.ones_like(kspace, dtype=np.complex64)
        if self.maps == "full":
            calib = min(self.calib_width, height, width)
            calib_kspace = kspace
        else:
            from recon.calibration import calibrate_maps

            try:
                maps, _ = calibrate_maps((kspace * sampling.mask.numpy())[None], sampling,
                                         source=self._source(fname), cache_dir=self.cache_dir,
                                         **{k: v for k, v in self.espirit.items() if k in ("crop", "thresh")})
            except InputError as exc:
                raise InputError(fname, f"slice {slice_num}: R = {sampling.acceleration:g}: {exc.problem} "
                                        f"(or use maps='full')") from None
            return maps[0].astype(np.complex64, copy=False)
        try:  # cache_dir=False computes without the cache
            maps = np.asarray(espirit_maps_cached(calib_kspace, self._source(fname), slice_num,
                                                  cache_dir=self.cache_dir, calib_width=calib, **self.espirit))
        except InputError as exc:  # e.g. all-zero maps from too small a block: a network would train on nothing
            raise InputError(fname, f"slice {slice_num}: {exc.problem} (calib_width = {calib})") from None
        maps = maps[0] if maps.ndim == 4 else maps
        return maps.astype(np.complex64, copy=False)

    def __call__(self, kspace: np.ndarray, mask: np.ndarray | None, target: np.ndarray | None, attrs: dict,
                 fname: str, slice_num: int) -> ModlSample:
        kspace = np.asarray(kspace)
        if kspace.ndim == 2:  # single-coil layout [H, W]
            kspace = kspace[None]
        if kspace.ndim != 3 or not np.iscomplexobj(kspace):
            raise InputError(fname, f"slice {slice_num}: k-space must be complex [C, H, W], got {kspace.dtype} "
                                    f"of shape {kspace.shape}")
        if not np.all(np.isfinite(kspace)):
            raise InputError(fname, f"slice {slice_num}: k-space has NaN/Inf values")
        kspace = kspace.astype(np.complex64, copy=False)
        element = self.dihedral_element(fname, slice_num, kspace.shape[-1] == kspace.shape[-2])
        if element:
            kspace = dihedral_kspace(kspace, element)
            target = None if target is None else dihedral_image(np.asarray(target), element)
        height, width = kspace.shape[-2:]
        sampling = self.draw_mask((height, width), fname, slice_num)
        m = sampling.mask
        if self.two_d and m.shape[-2] == 1:
            m = m.expand(1, height, width).contiguous()
        maps = self.coil_maps(kspace, sampling, fname, slice_num)
        k_t = torch.from_numpy(np.ascontiguousarray(kspace))
        masked = k_t * m  # a new tensor: the input is not modified
        if target is not None:
            tgt = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))
            max_value = float(attrs.get("max", float(np.max(target))))
            crop = (int(tgt.shape[-2]), int(tgt.shape[-1]))
        else:
            tgt = torch.tensor(0.0)
            max_value = 0.0
            crop = (int(height), int(width))
        return ModlSample(
            masked_kspace=masked,
            mask=m.to(torch.float32),
            num_low_frequencies=int(sampling.num_low_frequencies),
            sens_maps=torch.from_numpy(np.ascontiguousarray(maps)),
            target=tgt,
            fname=str(fname),
            slice_num=int(slice_num),
            max_value=max_value,
            crop_size=crop,
            acceleration=float(sampling.acceleration),
            acceleration_effective=float(sampling.acceleration_effective),
            mask_type=str(sampling.kind),
        )


def dihedral_image(image: np.ndarray, element: int) -> np.ndarray:
    """``image`` ``[..., H, W]`` transposed (``element & 4``), then flipped along H (``element & 1``) and W
    (``element & 2``): element 0-7 of the dihedral group (also the flips of ``mriqa.train_rq``)."""
    out = np.swapaxes(image, -1, -2) if element & 4 else image
    if element & 1:
        out = out[..., ::-1, :]
    if element & 2:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def dihedral_kspace(kspace: np.ndarray, element: int) -> np.ndarray:
    """The k-space ``[C, H, W]`` of the coil images flipped / transposed by :func:`dihedral_image` (through the
    image domain: a flip of centred k-space alone would add a linear phase to the image)."""
    from recon.fft import fft2c_np, ifft2c_np

    return fft2c_np(dihedral_image(ifft2c_np(kspace), element)).astype(np.complex64)


def collate(samples: Sequence[ModlSample]) -> dict[str, Any]:
    """Stack samples into a batch dict: tensors ``[B, ...]`` (mask ``[B, 1, 1|H, W]``), lists for the rest."""
    if not samples:
        raise InputError(None, "cannot collate an empty batch")
    first = samples[0]
    shapes = {tuple(s.masked_kspace.shape) for s in samples}
    if len(shapes) > 1:
        raise InputError(None, f"k-space shapes in one batch differ: {sorted(shapes)}; use batch_size 1")
    mshapes = {tuple(s.mask.shape) for s in samples}
    masks = [s.mask for s in samples]
    if len(mshapes) > 1:
        h, w = first.masked_kspace.shape[-2:]
        masks = [m.expand(1, h, w) for m in masks]
    return {
        "masked_kspace": torch.stack([s.masked_kspace for s in samples]),
        "mask": torch.stack(masks),
        "num_low_frequencies": torch.tensor([s.num_low_frequencies for s in samples]),
        "sens_maps": torch.stack([s.sens_maps for s in samples]),
        "target": torch.stack([s.target for s in samples]) if first.target.ndim == 2 else None,
        "fname": [s.fname for s in samples],
        "slice_num": torch.tensor([s.slice_num for s in samples]),
        "max_value": torch.tensor([s.max_value for s in samples], dtype=torch.float32),
        "crop_size": [s.crop_size for s in samples],
        "acceleration": torch.tensor([s.acceleration for s in samples], dtype=torch.float32),
        "acceleration_effective": torch.tensor([s.acceleration_effective for s in samples], dtype=torch.float32),
        "mask_type": [s.mask_type for s in samples],
    }


def slice_dataset(root: str | os.PathLike, transform: ModlDataTransform, sample_filter=None):
    """``fastmri.data.SliceDataset(root, "multicoil", transform)`` over the ``*.h5`` files of ``root``
    (sorted, so slice indices are stable); ``sample_filter(raw_sample) -> bool`` keeps a subset."""
    from fastmri.data import SliceDataset

    root = Path(root)
    if not root.is_dir() or not any(root.glob("*.h5")):
        raise InputError(root, "no .h5 files in this folder")
    ds = SliceDataset(root, challenge="multicoil", transform=transform,
                      raw_sample_filter=sample_filter or (lambda raw: True))
    ds.raw_samples = sorted(ds.raw_samples, key=lambda r: (str(r[0]), int(r[1])))
    return ds

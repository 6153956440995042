"""Simulated multi-coil training data in fastMRI's format, from real magnitude MRI volumes.

There is no fastMRI raw data here, so fully sampled multi-coil k-space is simulated from real volumes in
``<data root>/mri/volumes``. Every choice below is also written into the dataset's ``dataset.json``.

Split (by subject/volume, never by slice; :mod:`recon.splits`; ``--splits ixi`` adds 40 IXI subjects) --
``DEFAULT_SPLITS``:
    train = the 3T MPRAGE DICOM series (``trio-mprage-t1``: one volunteer, single acquisition, native noise),
    val = the MNI ICBM152 2009a template (``pypi-bundled/mni_icbm152_...nii.gz``: average of 152 subjects),
    test = Colin27 (``colin27/ch2.nii.gz``: average of 27 scans of one subject; ``ch2better.nii.gz`` is the
    SAME subject and is never used alongside it).
    Caveat: one volume per split. The averaged templates are smoother and nearly noise-free, so the
    simulated k-space noise sets the noise level in val/test, while train also carries the MPRAGE's own noise.

Per volume (``prepare_volume``):
    read (DICOM/NIfTI, reoriented to canonical RAS+), negative values clipped to 0, divided by the volume's
    99.5th percentile over all voxels (robust to hot voxels; values above 1 are kept), zero-padded to a cube,
    then resliced in all three orientations (sagittal, coronal, axial; superior/anterior up).
Per orientation (one h5 file each):
    slices whose foreground (pixels > 0.1 after normalisation) covers >= ``min_foreground`` (15 %) of the
    slice are candidates; every ``slice_step``-th candidate is kept, then at most ``max_slices_per_file``
    evenly spaced ones. With ``fov_fill`` each is cropped to a tighter field of view (``crop_to_fill``); each is
    resized to ``size x size`` (``resample``: ``linear``, anti-aliased when shrinking, or ``kspace``, the centred
    2-D spectrum cropped or zero-padded: a real acquisition's truncation, with its Gibbs ringing).
Per slice (``simulate_slice``), with its own random stream ``(seed, volume, orientation, slice)``:
    complex image ``x = m * exp(i phi)``; ``phi`` is a smooth random phase (``smooth_random_phase``: the real
    part of a random 5 x 5 block of lowest spatial frequencies, scaled to max |phi| = pi);
    coil images ``x_c = S_c x`` with maps normalised to ``sum_c |S_c|^2 = 1`` (``birdcage``: sigpy birdcage
    maps, random ring radius / rotation / flip; ``espirit``: ESPIRiT maps of the real 8-channel smallfov
    k-space, resampled; ``mixed``: either, 50/50 per slice);
    k-space ``y_c = fft2c(x_c)`` (centred, orthonormal: ``recon.fft.fft2c``) plus i.i.d. complex Gaussian noise
    with ``E|n|^2 = sigma^2`` (real and imaginary parts each sigma / sqrt 2), independent across coils.
SNR:
    ``SNR = mean(m over the slice's foreground) / sigma``. Because the FFT is orthonormal and
    ``sum_c |S_c|^2 = 1``, sigma is also the noise std of each coil image and of the optimally (SENSE)
    combined image, so SNR is the image-domain SNR of the combined image. Default 40.
Target:
    ``reconstruction_rss`` = RSS over coils of ``ifft2c`` of the noisy, fully sampled k-space (fastMRI's
    multi-coil target; here at the full matrix, no oversampling crop).

The per-slice transforms (phase, resampling, the look changes) live in ``recon.slice_transforms``.

``recon.demo_data.demo_slice`` makes one such slice from dipy's real T1 slice, which ships inside the dipy
wheel, so that ``mriqa demo`` runs without ``../shared``.
"""
from __future__ import annotations

import json
import math
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from recon.errors import InputError
from recon.splits import (  # noqa: F401 - re-exported: recon.simulate was their home
    DEFAULT_SPLITS,
    SPLIT_PRESETS,
    VOLUME_SOURCES,
    default_data_root,
    split_preset,
    volume_source,
)
from recon.files import atomic_path
from recon.fft import fft2c, ifft2c
from recon.io.volumes import ORIENTATIONS
from recon.slice_transforms import (  # noqa: F401 - re-exported: recon.simulate was their home
    FOREGROUND_LEVEL,
    NORMALISATION_PERCENTILE,
    crop_to_fill,
    random_bias,
    random_contrast,
    resize_kspace,
    resize_slice,
    smooth_random_phase,
)

__all__ = [
    "SimulationConfig",
    "DEFAULT_SPLITS",
    "VOLUME_SOURCES",
    "volume_source",
    "split_preset",
    "SPLIT_PRESETS",
    "ORIENTATIONS",
    "COIL_MAP_KINDS",
    "default_data_root",
    "smooth_random_phase",
    "simulate_slice",
    "prepare_volume",
    "select_slices",
    "crop_to_fill",
    "resize_slice",
    "resize_kspace",
    "RESAMPLINGS",
    "random_contrast",
    "random_bias",
    "make_dataset",
]

COIL_MAP_KINDS = ("birdcage", "espirit", "mixed")
RESAMPLINGS = ("linear", "kspace")  # how a source slice is brought to the simulation's matrix (CHOICES["resample"])

CHOICES = {
    "split": "by volume, never by slice: train = trio-mprage-t1 (3T MPRAGE DICOM, native noise), val = MNI152 "
             "2009a template, test = Colin27 ch2 (ch2better is the same subject and is not used). Caveat: one "
             "volume per split; the averaged templates are smoother and nearly noise-free, so the simulated "
             "noise sets their noise level, while train also carries the MPRAGE's own noise.",
    "normalisation": "per volume: clip < 0 to 0, divide by the 99.5th percentile over all voxels (values > 1 kept)",
    "slices": "volume padded to a cube, resliced sagittal/coronal/axial (superior/anterior up); slices with "
              "foreground (> 0.1 after normalisation) >= min_foreground of the area; every slice_step-th, at most "
              "max_slices_per_file evenly spaced; resized to size x size (linear, anti-aliased)",
    "phase": "smooth random phase: real part of the inverse centred FFT of i.i.d. complex Gaussian coefficients "
             "on the 5 x 5 lowest spatial frequencies, scaled so max |phase| = pi",
    "coil_maps": "normalised to sum_c |S_c|^2 = 1. birdcage: sigpy.mri.birdcage_maps, ring radius U(1.2, 2.0), "
                 "random 90-degree rotation and left-right flip; espirit: ESPIRiT maps (sigpy, crop 0) of the real "
                 "8-channel smallfov k-space, random coil subset, random window (shift and aspect), rotation, flip, "
                 "linear zoom; mixed: birdcage or espirit with probability 1/2 per slice",
    "fft": "centred orthonormal 2-D FFT (recon.fft.fft2c, identical to fastmri.fft2c)",
    "noise": "i.i.d. complex Gaussian in k-space, E|n|^2 = sigma^2 (real and imaginary parts sigma/sqrt(2)), "
             "independent across coils, sigma = mean foreground magnitude / SNR",
    "snr": "SNR = mean of the noise-free magnitude over the slice's foreground (> 0.1) / sigma; with the "
           "orthonormal FFT and sum_c |S_c|^2 = 1, sigma is the noise std per coil image and in the SENSE-combined "
           "image; with snr_max set, each slice's SNR is drawn log-uniform in [snr, snr_max] (file attribute "
           "snr_per_slice)",
    "target": "reconstruction_rss = root-sum-of-squares over coils of ifft2c(noisy fully sampled k-space), "
              "full matrix (no crop)",
    "fov_fill": "None: the slice of the cube (the volume's own FOV). (lo, hi): each slice is first cropped to the "
                "square window centred on its foreground in which the foreground's larger extent spans U(lo, hi) "
                "of the side (recon.simulate.crop_to_fill; real scans are prescribed with the head filling most "
                "of the FOV), then resized",
    "contrast": "0: the source's intensities. s > 0: per slice a random piecewise-linear remapping of tissue "
                "intensities (recon.simulate.random_contrast; knots' values from 0.3 up (1 - s) x + s U(0.05, 1), "
                "not monotone; below 0.15 unchanged), renormalised: contrasts other than the sources' T1",
    "resample": "linear: skimage resize, linear interpolation (anti-aliased when shrinking): a smooth spectrum "
                "that falls off before the matrix edge. kspace: the magnitude of the slice's centred 2-D spectrum "
                "cropped or zero-padded to size x size (recon.simulate.resize_kspace): the spectrum runs to the "
                "matrix edge and stops there, with the Gibbs ringing of a real acquisition's truncation",
    "bias": "0: none. b > 0: per slice the magnitude times exp of a smooth random field (3 x 3 lowest "
            "frequencies, max |log| = b; recon.simulate.random_bias): a receive-coil shading",
    "seed": "each slice draws from numpy.random.default_rng(SeedSequence([seed, crc32(volume), orientation, "
            "slice])): results do not depend on the order or subset of slices processed",
}


@dataclass
class SimulationConfig:
    """Settings of :func:`make_dataset` (all recorded in ``dataset.json``).

    The defaults keep a full dataset at 256 x 256 x 8 coils under ~1.5 GB: 9 files x at most 36 slices x
    (8 coils x 256 x 256 x 8 bytes + the RSS, 4.46 MB) <= 1.45 GB; with the shipped volumes 303 slices, 1.35 GB.
    """

    size: int = 256
    coils: int = 8
    snr: float = 40.0
    snr_max: float | None = None  # per-slice SNR log-uniform in [snr, snr_max] (None: every slice at snr)
    coil_maps: str = "birdcage"
    slice_step: int = 4
    max_slices_per_file: int = 36
    min_foreground: float = 0.15
    fov_fill: tuple | None = None  # (lo, hi): the object spans U(lo, hi) of the FOV (None: the cube's FOV)
    contrast: float = 0.0  # strength in [0, 1] of a random tissue-intensity remapping per slice (0: the source's)
    bias: float = 0.0  # max |log| of a smooth random receive-bias field per slice (0: none)
    resample: str = "linear"  # how a slice is brought to size x size: linear (interpolation) or kspace (truncation)
    seed: int = 0
    splits: dict = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_SPLITS.items()})
    orientations: tuple = ORIENTATIONS

    def validate(self) -> None:
        if int(self.size) < 8:
            raise InputError(None, f"size {self.size} is too small (>= 8)")
        if int(self.coils) < 1:
            raise InputError(None, f"coils = {self.coils} must be >= 1")
        if not (self.snr > 0):
            raise InputError(None, f"SNR {self.snr} must be > 0 (inf = no added noise)")
        if self.snr_max is not None and not (math.isfinite(self.snr_max) and self.snr_max >= self.snr):
            raise InputError(None, f"SNR range [{self.snr}, {self.snr_max}]: the upper end must be finite and "
                                   f">= the lower")
        if self.coil_maps not in COIL_MAP_KINDS:
            raise InputError(None, f"unknown coil maps {self.coil_maps!r}; choose from {', '.join(COIL_MAP_KINDS)}")
        if int(self.slice_step) < 1 or int(self.max_slices_per_file) < 1:
            raise InputError(None, "slice_step and max_slices_per_file must be >= 1")
        if self.fov_fill is not None and not (len(self.fov_fill) == 2
                                              and 0.1 <= self.fov_fill[0] <= self.fov_fill[1] <= 1.0):
            raise InputError(None, f"fov_fill {self.fov_fill}: need 0.1 <= lo <= hi <= 1 (fraction of the FOV)")
        if not 0 <= self.contrast <= 1 or not 0 <= self.bias <= 2:
            raise InputError(None, f"contrast {self.contrast} must be in [0, 1] and bias {self.bias} in [0, 2]")
        if self.resample not in RESAMPLINGS:
            raise InputError(None, f"unknown resampling {self.resample!r}; choose from {', '.join(RESAMPLINGS)}")
        if not 0 <= self.min_foreground < 1:
            raise InputError(None, f"min_foreground {self.min_foreground} must be in [0, 1)")
        for orientation in self.orientations:
            if orientation not in ORIENTATIONS:
                raise InputError(None, f"unknown orientation {orientation!r}; choose from {', '.join(ORIENTATIONS)}")
        names = [name for names in self.splits.values() for name in names]
        if len(names) != len(set(names)):
            raise InputError(None, "a volume appears in more than one split (splits must be by volume)")
        unknown = [name for name in names if volume_source(name) is None]
        if unknown:
            raise InputError(None, f"unknown volume(s) {unknown}; known: {', '.join(VOLUME_SOURCES)}")


# ------------------------------------------------------------------------------------------------ pieces


def slice_rng(seed: int, name: str, orientation: str, index: int) -> np.random.Generator:
    """The random stream of one simulated slice (maps, SNR, phase, noise): ``SeedSequence([seed, crc32(name),
    orientation, index])``, so a slice's data do not depend on which other slices are made or in what order."""
    orientation_id = ORIENTATIONS.index(orientation) if orientation in ORIENTATIONS else 99
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode()), orientation_id,
                                                         int(index)]))


def _foreground_mean(magnitude: np.ndarray) -> float:
    foreground = magnitude > FOREGROUND_LEVEL
    return float(magnitude[foreground].mean() if foreground.any() else magnitude.mean())


def simulate_slice(magnitude: np.ndarray, maps: np.ndarray, snr: float, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fully sampled noisy multi-coil k-space of one slice.

    Args:
        magnitude: float ``[H, W]``, >= 0, normalised (foreground is > 0.1).
        maps: complex ``[C, H, W]`` with ``sum_c |S_c|^2 = 1``.
        snr: mean foreground magnitude / complex noise std (``inf``: no noise).
        rng: the slice's random stream (phase, noise).

    Returns:
        (kspace complex64 ``[C, H, W]``, rss float32 ``[H, W]`` of the noisy k-space,
        info ``{"noise_std", "foreground_mean"}``).
    """
    magnitude = np.asarray(magnitude, dtype=np.float32)
    height, width = magnitude.shape
    if maps.shape[-2:] != (height, width):
        raise InputError(None, f"coil maps {maps.shape} do not match the image {magnitude.shape}")
    phase = smooth_random_phase(height, width, rng)
    image = magnitude * np.exp(1j * phase)
    coil_images = torch.from_numpy((maps * image[None]).astype(np.complex64))
    kspace = fft2c(coil_images).numpy()
    foreground_mean = _foreground_mean(magnitude)
    sigma = foreground_mean / snr if math.isfinite(snr) else 0.0
    if sigma > 0:
        noise = rng.standard_normal((2, *kspace.shape), dtype=np.float32) * np.float32(sigma / math.sqrt(2))
        kspace = kspace + (noise[0] + 1j * noise[1]).astype(np.complex64)
    kspace = kspace.astype(np.complex64)
    rss = torch.sqrt((ifft2c(torch.from_numpy(kspace)).abs() ** 2).sum(0)).numpy().astype(np.float32)
    return kspace, rss, {"noise_std": float(sigma), "foreground_mean": foreground_mean}


def _coil_maps(kind: str, coils: int, size: int, rng: np.random.Generator, data_root: Path,
               cache_dir) -> tuple[np.ndarray, str]:
    from recon.coils import birdcage_maps, realistic_maps

    if kind == "mixed":
        kind = "espirit" if rng.random() < 0.5 else "birdcage"
    if kind == "espirit":
        return realistic_maps(coils, size, size, rng, data_root, cache_dir=cache_dir), kind
    return birdcage_maps(coils, size, size, rng), kind


def prepare_volume(path: str | os.PathLike) -> np.ndarray:
    """Read a volume, clip < 0, divide by its 99.5th percentile, zero-pad to a cube: float32 ``[N, N, N]``
    in canonical RAS+ axes (see ``recon.io.volumes``). Anisotropic voxels are first resampled (linear) to
    the smallest spacing."""
    from recon.io.volumes import read_volume

    volume = read_volume(path)
    data = np.clip(volume.data, 0, None)
    spacing = np.asarray(volume.spacing, dtype=np.float64)
    if np.ptp(spacing) > 0.01 * spacing.min():
        from scipy.ndimage import zoom

        data = zoom(data, spacing / spacing.min(), order=1)
    scale = float(np.percentile(data, NORMALISATION_PERCENTILE))
    if scale <= 0:
        raise InputError(path, f"volume's {NORMALISATION_PERCENTILE}th percentile is {scale}: no anatomy to simulate")
    data = data / scale
    side = max(data.shape)
    pads = [((side - n) // 2, side - n - (side - n) // 2) for n in data.shape]
    return np.ascontiguousarray(np.pad(data, pads).astype(np.float32))


def select_slices(slices: np.ndarray, slice_step: int, max_slices: int, min_foreground: float) -> list[int]:
    """Indices of the slices ``[N, H, W]`` to simulate: foreground fraction >= ``min_foreground``, every
    ``slice_step``-th of those, then at most ``max_slices`` evenly spaced."""
    fraction = (slices > FOREGROUND_LEVEL).mean(axis=(1, 2))
    candidates = np.flatnonzero(fraction >= min_foreground)[::slice_step]
    if len(candidates) > max_slices:
        picks = np.unique(np.round(np.linspace(0, len(candidates) - 1, max_slices)).astype(int))
        candidates = candidates[picks]
    return [int(i) for i in candidates]


def _orient(volume_cube: np.ndarray, orientation: str) -> np.ndarray:
    from recon.io.volumes import Volume, reslice

    return reslice(Volume(volume_cube, (1.0, 1.0, 1.0), Path("."), ras=True), orientation)


# ------------------------------------------------------------------------------------------------ dataset


def make_dataset(
    out_dir: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    config: SimulationConfig | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> dict:
    """Write a simulated fastMRI multi-coil dataset and its manifest.

    Layout: ``out_dir/multicoil_{train,val,test}/<volume>_<orientation>.h5`` (each readable by
    ``fastmri.data.SliceDataset(out_dir / "multicoil_train", challenge="multicoil")``) and
    ``out_dir/dataset.json`` (files per split, the config, every modelling choice). Every file is written
    atomically; ``dataset.json`` last.

    Each h5 holds ``kspace`` complex64 ``[S, C, size, size]``, ``reconstruction_rss`` float32
    ``[S, size, size]``, ``ismrmrd_header`` and attrs ``max``, ``norm``, ``acquisition``, ``patient_id``,
    ``snr``, ``coil_maps`` (per-slice kinds, comma-separated), ``seed``, ``source_volume``, ``orientation``,
    ``source_slices``, ``noise_std`` (per slice), ``split``.

    Returns:
        The manifest (as written to ``dataset.json``).
    """
    from tqdm import tqdm

    from recon.io.fastmri_h5 import write_fastmri_h5

    config = config or SimulationConfig()
    config.validate()
    data_root = Path(data_root) if data_root is not None else default_data_root()
    if not data_root.is_dir():
        raise InputError(data_root, "data root not found (expected ../shared/data with mri/volumes); pass --data-root")
    sources = {}
    for split, names in config.splits.items():
        for name in names:
            source = data_root / volume_source(name)
            if not source.exists():
                raise InputError(source, f"volume {name!r} for split {split!r} not found")
            sources[name] = source
    if config.coil_maps in ("espirit", "mixed"):
        from recon.coils import SMALLFOV_RELATIVE

        smallfov = data_root / SMALLFOV_RELATIVE
        if not smallfov.with_name(smallfov.name + ".cfl").is_file():
            raise InputError(smallfov.with_name(smallfov.name + ".cfl"),
                             f"not found: --coil-maps {config.coil_maps} needs the real smallfov k-space")
        if config.coils > 8:
            raise InputError(smallfov, f"--coil-maps {config.coil_maps}: realistic maps come from 8-channel data; "
                                       f"asked for {config.coils} coils")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_files: dict[str, list] = {split: [] for split in config.splits}
    jobs = [(split, name, orientation) for split, names in config.splits.items() for name in names
            for orientation in config.orientations]
    total_bytes = 0
    bar = tqdm(total=len(jobs), unit="file", desc="make-dataset", disable=not progress)
    cube, cube_name = None, None
    for split, name, orientation in jobs:
        if cube_name != name:
            cube, cube_name = prepare_volume(sources[name]), name
        stack = _orient(cube, orientation)
        indices = select_slices(stack, config.slice_step, config.max_slices_per_file, config.min_foreground)
        if not indices:
            raise InputError(sources[name], f"no {orientation} slice has foreground >= {config.min_foreground:.0%}")
        kspaces, targets, noise, kinds, snrs = [], [], [], [], []
        for index in indices:
            rng = slice_rng(config.seed, name, orientation, index)
            maps, kind = _coil_maps(config.coil_maps, config.coils, config.size, rng, data_root, cache_dir)
            snr = config.snr
            if config.snr_max is not None:  # drawn after the maps, so fixed-SNR datasets are unchanged
                snr = float(np.exp(rng.uniform(np.log(config.snr), np.log(config.snr_max))))
            source = stack[index]
            if config.fov_fill is not None:  # drawn after the SNR, so datasets without it are unchanged
                source = crop_to_fill(source, float(rng.uniform(*config.fov_fill)))
            magnitude = (resize_kspace if config.resample == "kspace" else resize_slice)(source, config.size)
            if config.contrast > 0:
                magnitude = random_contrast(magnitude, config.contrast, rng)
            if config.bias > 0:
                magnitude = random_bias(magnitude, config.bias, rng)
            kspace, rss, info = simulate_slice(magnitude, maps, snr, rng)
            kspaces.append(kspace)
            targets.append(rss)
            noise.append(info["noise_std"])
            kinds.append(kind)
            snrs.append(snr)
        relative = Path(f"multicoil_{split}") / f"{name.replace('/', '-')}_{orientation}.h5"
        attrs = {
            "snr": float(config.snr),
            "snr_per_slice": np.asarray(snrs, dtype=np.float64),
            "coil_maps": ",".join(kinds),
            "seed": int(config.seed),
            "source_volume": volume_source(name),
            "orientation": orientation,
            "source_slices": np.asarray(indices, dtype=np.int64),
            "noise_std": np.asarray(noise, dtype=np.float64),
            "split": split,
        }
        written = write_fastmri_h5(out_dir / relative, np.stack(kspaces), reconstruction_rss=np.stack(targets),
                                   attrs=attrs, acquisition="SIM_T1", patient_id=name)
        size_bytes = written.stat().st_size
        total_bytes += size_bytes
        manifest_files[split].append({
            "file": relative.as_posix(), "source_volume": volume_source(name), "volume": name,
            "orientation": orientation, "num_slices": len(indices), "source_slices": indices,
            "coil_maps": kinds, "bytes": size_bytes,
        })
        bar.set_postfix_str(f"{name} {orientation}: {len(indices)} slices")
        bar.update(1)
    bar.close()

    manifest = {
        "format": "fastMRI multi-coil HDF5 (kspace [slices, coils, H, W] complex64, reconstruction_rss "
                  "[slices, H, W] float32, ismrmrd_header); read with fastmri.data.SliceDataset(<split folder>, "
                  "challenge='multicoil')",
        "config": {**asdict(config), "orientations": list(config.orientations)},
        "data_root": str(data_root),
        "splits": manifest_files,
        "total_bytes": total_bytes,
        "choices": CHOICES,
    }
    with atomic_path(out_dir / "dataset.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest

"""Built-in simulated inputs that need no ``../shared``: the ``mriqa demo`` slice and a fastMRI-size volume.

Both start from dipy's real T1 coronal slice, which ships inside the dipy wheel, and use the dataset's
simulation model (:mod:`recon.simulate`: normalisation by the 99.5th percentile, smooth random phase, birdcage
maps, complex Gaussian k-space noise).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterable

import numpy as np

from recon.errors import InputError
from recon.simulate import NORMALISATION_PERCENTILE, resize_slice, slice_rng, simulate_slice

__all__ = ["DEMO_COIL_RADIUS", "DEMO_FIELD_OF_VIEW", "demo_slice", "dipy_t1_slice_path", "fastmri_size_volume"]


def _head_square(image: np.ndarray, side: int) -> np.ndarray:
    """The ``side`` x ``side`` square centred on the head (pixels > 5 % of the normalised maximum)."""
    rows = np.flatnonzero((image > 0.05).any(axis=1))
    cols = np.flatnonzero((image > 0.05).any(axis=0))
    side = min(side, *image.shape)
    top = int(np.clip((rows[0] + rows[-1] + 1) // 2 - side // 2, 0, image.shape[0] - side))
    left = int(np.clip((cols[0] + cols[-1] + 1) // 2 - side // 2, 0, image.shape[1] - side))
    return image[top:top + side, left:left + side]


def dipy_t1_slice_path() -> Path:
    """Path of ``t1_coronal_slice.npy`` inside the installed dipy wheel (found without importing dipy)."""
    spec = importlib.util.find_spec("dipy")
    locations: Iterable[str] = (spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "data" / "files" / "t1_coronal_slice.npy"
        if candidate.is_file():
            return candidate
    raise InputError("dipy/data/files/t1_coronal_slice.npy",
                     "not found: the built-in demo needs dipy installed (pip install dipy), or pass --input")


DEMO_FIELD_OF_VIEW = 192  # pixels of the 256 x 256 dipy slice kept around the head (1 mm pixels)
DEMO_COIL_RADIUS = 1.0  # birdcage ring radius of the demo slice's coils (sigpy units; see demo_slice)


def dipy_head() -> np.ndarray:
    """dipy's T1 slice, clipped at 0, divided by its 99.5th percentile, cut to the ``DEMO_FIELD_OF_VIEW`` square
    around the head: float32 ``[192, 192]``. A missing, unreadable or empty file is an ``InputError``."""
    path = dipy_t1_slice_path()
    try:
        image = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read: {exc}") from None
    image = np.clip(np.asarray(image, dtype=np.float32), 0, None)
    if image.ndim != 2 or not np.isfinite(image).all():
        raise InputError(path, f"expected a finite 2-D slice, got shape {image.shape}")
    scale = float(np.percentile(image, NORMALISATION_PERCENTILE))
    if scale <= 0:
        raise InputError(path, "slice has no signal")
    return _head_square(image / scale, DEMO_FIELD_OF_VIEW)


def demo_slice(size: int = DEMO_FIELD_OF_VIEW, coils: int = 8, snr: float = 40.0, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, dict]:
    """One simulated multi-coil slice from dipy's real T1 coronal slice (ships inside the dipy wheel).

    Same model as the dataset (normalisation by the 99.5th percentile, smooth random phase, birdcage maps,
    complex Gaussian k-space noise at ``snr``), deterministic by ``seed``, except that the coils sit on a ring
    of radius ``DEMO_COIL_RADIUS`` (a head array close to the head; the datasets draw 1.2-2.0): with the
    seed-0 draw (1.96) ``mriqa demo`` showed CG-SENSE below zero-filled inside the head at R = 2 (27.7 vs
    30.6 dB; an ad-hoc check found the true maps no better): the noise amplification (g-factor) of eight
    smooth, similar maps, so the demo's table showed that coil geometry rather than the methods. The head fills
    only the middle of the original 256 x 256 slice, so a ``DEMO_FIELD_OF_VIEW``-pixel square around it is kept first (the field
    of view a scanner would prescribe); with a wide empty background, the RSS reference's noise floor would
    dominate every comparison. That square is resized to ``size`` (default: its own size, no resampling).

    Returns:
        (kspace complex64 ``[1, C, size, size]``, rss float32 ``[1, size, size]`` (the reference: RSS of the
        fully sampled noisy k-space), info dict with ``description``, ``source``, ``snr``, ``noise_std``,
        ``coil_maps``, ``seed``, ``size``, ``coils``).
    """
    from recon.coils import birdcage_maps

    magnitude = resize_slice(dipy_head(), int(size))
    rng = slice_rng(seed, "dipy-t1_coronal_slice", "coronal", 0)
    maps = birdcage_maps(int(coils), int(size), int(size), radius=DEMO_COIL_RADIUS)
    kspace, rss, info = simulate_slice(magnitude, maps, float(snr), rng)
    info.update({
        "description": f"simulated {coils}-coil slice ({size}x{size}, SNR {snr:g}, birdcage maps on a ring of "
                       f"radius {DEMO_COIL_RADIUS:g}, seed {seed}) from dipy's real T1 coronal slice",
        "source": "dipy/data/files/t1_coronal_slice.npy",
        "snr": float(snr), "coil_maps": "birdcage", "coil_radius": DEMO_COIL_RADIUS, "seed": int(seed),
        "size": int(size), "coils": int(coils),
    })
    return kspace[None], rss[None], info


def fastmri_size_volume(slices: int = 3, coils: int = 15, shape: tuple[int, int] = (640, 368), snr: float = 40.0,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fully sampled multi-coil k-space the size of a fastMRI knee volume, for benchmarks.

    dipy's T1 slice (as :func:`demo_slice`) resized to ``(H / 2, W)`` and zero-padded to ``(H, W)`` along the
    readout (fastMRI's 2x readout oversampling: the object fills the middle half), birdcage maps of ``coils``
    coils, per slice its own smooth phase and noise at ``snr`` (the same anatomy in every slice).

    Returns: (kspace complex64 ``[S, C, H, W]``, rss float32 ``[S, H, W]``).
    """
    from skimage.transform import resize

    from recon.coils import birdcage_maps

    height, width = int(shape[0]), int(shape[1])
    inner = resize(dipy_head(), (height // 2, width), order=1, mode="constant", preserve_range=True).astype(np.float32)
    magnitude = np.zeros((height, width), np.float32)
    magnitude[height // 4: height // 4 + height // 2] = inner
    maps = birdcage_maps(int(coils), height, width, slice_rng(seed, "fastmri-size", "coronal", 0))
    out = [simulate_slice(magnitude, maps, snr, slice_rng(seed, "fastmri-size", "coronal", s + 1))
           for s in range(int(slices))]
    return np.stack([k for k, _, _ in out]), np.stack([r for _, r, _ in out])

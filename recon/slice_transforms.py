"""Per-slice image transforms of the simulations (:mod:`recon.simulate`): the smooth random fields they draw,
bringing a source slice to the simulation's matrix, and the optional changes that make simulated slices look
more like real scans. Magnitudes are float32 ``[H, W]`` normalised as :func:`recon.simulate.prepare_volume`
normalises volumes (99.5th percentile = 1)."""
from __future__ import annotations

import math

import numpy as np

from recon.fft import fft2c_np, ifft2c_np

__all__ = ["FOREGROUND_LEVEL", "NORMALISATION_PERCENTILE", "PHASE_FREQUENCIES", "CONTRAST_KNOTS",
           "smooth_random_phase", "resize_slice", "resize_kspace", "spectrum_share_beyond", "crop_to_fill",
           "random_contrast", "random_bias"]

FOREGROUND_LEVEL = 0.1  # foreground = normalised magnitude above this
NORMALISATION_PERCENTILE = 99.5
PHASE_FREQUENCIES = 5  # the smooth phase uses the PHASE_FREQUENCIES x PHASE_FREQUENCIES lowest frequencies


def smooth_random_phase(height: int, width: int, rng: np.random.Generator, max_phase: float = math.pi,
                        frequencies: int = PHASE_FREQUENCIES) -> np.ndarray:
    """A smooth random phase map, float32 ``[H, W]`` in radians with ``max |phase| = max_phase``.

    The real part of the centred inverse FFT of i.i.d. complex Gaussian coefficients on the
    ``frequencies x frequencies`` lowest spatial frequencies (DC included), scaled to the maximum.
    """
    coefficients = np.zeros((height, width), dtype=np.complex128)
    half = frequencies // 2
    rows = slice(height // 2 - half, height // 2 - half + frequencies)
    cols = slice(width // 2 - half, width // 2 - half + frequencies)
    block = rng.standard_normal((frequencies, frequencies)) + 1j * rng.standard_normal((frequencies, frequencies))
    coefficients[rows, cols] = block[: coefficients[rows, cols].shape[0], : coefficients[rows, cols].shape[1]]
    field_ = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(coefficients))).real
    peak = np.abs(field_).max()
    return (max_phase * field_ / peak if peak > 0 else field_).astype(np.float32)


def resize_slice(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` ``[H, W]`` as float32 ``[size, size]``: linear interpolation, anti-aliased when shrinking
    (:func:`skimage.transform.resize`); the simulations' resampling."""
    if image.shape == (size, size):
        return image.astype(np.float32)
    from skimage.transform import resize

    shrinking = size < max(image.shape)
    return resize(image, (size, size), order=1, mode="constant", anti_aliasing=shrinking,
                  preserve_range=True).astype(np.float32)


def resize_kspace(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` ``[H, W]`` as float32 ``[size, size]`` by its centred 2-D spectrum (``recon.fft``'s convention),
    cropped or zero-padded per axis, then the magnitude, on the input's intensity scale: what a scan of the same
    field of view acquired with a ``size x size`` matrix shows (the spectrum runs to the matrix edge, Gibbs ringing
    at sharp edges), unlike :func:`resize_slice`'s smooth interpolation."""
    spectrum = fft2c_np(np.asarray(image, dtype=np.complex64))
    for axis in (0, 1):
        n = spectrum.shape[axis]
        if size < n:
            start = n // 2 - size // 2
            spectrum = np.take(spectrum, np.arange(start, start + size), axis=axis)
        elif size > n:
            pad = [(0, 0), (0, 0)]
            pad[axis] = (size // 2 - n // 2, size - n - (size // 2 - n // 2))
            spectrum = np.pad(spectrum, pad)
    scale = math.sqrt(size * size / float(np.prod(np.shape(image))))  # orthonormal FFT: keep the intensities
    return (np.abs(ifft2c_np(spectrum)) * scale).astype(np.float32)


def spectrum_share_beyond(image: np.ndarray, radius: float) -> float:
    """Share of the energy of ``image`` ``[H, W]``'s centred 2-D spectrum beyond ``radius`` (a fraction of the
    half-width, Chebyshev: the square ring between ``radius`` and the matrix edge): how far the spectrum runs
    towards the edge (:func:`resize_kspace` against :func:`resize_slice`, simulated against real scans)."""
    energy = np.abs(fft2c_np(np.asarray(image, dtype=np.complex64))) ** 2
    h, w = energy.shape
    rows = np.abs(np.arange(h) - h // 2)[:, None] / (h / 2)
    cols = np.abs(np.arange(w) - w // 2)[None, :] / (w / 2)
    outer = np.maximum(rows, cols) > radius
    return float(energy[outer].sum() / energy.sum())


def crop_to_fill(image: np.ndarray, fill: float) -> np.ndarray:
    """The square window of ``image`` ``[H, W]`` centred on its foreground (> 0.1) in which the foreground's
    larger extent spans the fraction ``fill`` of the side (zero beyond the image): a tighter field of view,
    as real scans are prescribed. An image without foreground is returned as is."""
    rows, cols = np.nonzero(image > FOREGROUND_LEVEL)
    if len(rows) == 0:
        return image
    # the 1st-99th percentile of the foreground's coordinates: stray bright background pixels do not count
    (r0, r1), (c0, c1) = np.percentile(rows, [1, 99]), np.percentile(cols, [1, 99])
    extent = max(r1 - r0 + 1, c1 - c0 + 1)
    side = max(8, int(round(extent / fill)))
    top = int(round((r0 + r1 + 1) / 2 - side / 2))
    left = int(round((c0 + c1 + 1) / 2 - side / 2))
    out = np.zeros((side, side), dtype=image.dtype)
    src_r = slice(max(top, 0), min(top + side, image.shape[0]))
    src_c = slice(max(left, 0), min(left + side, image.shape[1]))
    out[src_r.start - top:src_r.stop - top, src_c.start - left:src_c.stop - left] = image[src_r, src_c]
    return out


CONTRAST_KNOTS = np.asarray([0.0, 0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.1, 2.0])


def random_contrast(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A random remapping of tissue intensities (another contrast of the same anatomy, e.g. T2-like from T1):
    piecewise linear through :data:`CONTRAST_KNOTS`, each knot's value ``(1 - strength) x + strength u`` with
    ``u ~ U(0.05, 1)`` from 0.3 up (not monotone: tissues may swap order); air and the sources' background noise
    (below 0.15) keep their values. Renormalised to the 99.5th percentile of its foreground, as
    :func:`recon.simulate.prepare_volume` normalises volumes. float32 ``[H, W]``."""
    values = CONTRAST_KNOTS.copy()
    values[3:] = (1 - strength) * values[3:] + strength * rng.uniform(0.05, 1.0, len(values) - 3)
    out = np.interp(image, CONTRAST_KNOTS, values).astype(np.float32)
    foreground = out[image > FOREGROUND_LEVEL]
    scale = float(np.percentile(foreground, NORMALISATION_PERCENTILE)) if foreground.size else 1.0
    return out / max(scale, 1e-6)


def random_bias(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` times a smooth random receive-bias field ``exp(b)``, ``b`` from the 3 x 3 lowest spatial
    frequencies with ``max |b| = strength`` (a real RSS carries its coils' summed sensitivity; the simulated maps
    are normalised to none)."""
    field_ = np.exp(smooth_random_phase(*image.shape, rng, max_phase=strength, frequencies=3))
    return (image * field_).astype(np.float32)

"""Thermal noise level from measured k-space, and the noise floor it leaves in an RSS image.

fastMRI's reference ``reconstruction_rss`` is the root-sum-of-squares of the fully sampled coil images, so
outside the head it is not 0 but the magnitude of pure noise: with ``C`` coils and complex Gaussian noise of
per-coil variance ``sigma_c^2`` (``E|n_c|^2``), ``sqrt(sum_c |n_c|^2)`` follows a scaled chi distribution with
``2C`` degrees of freedom, whose mean is ``sqrt(mean_c sigma_c^2) * Gamma(C + 1/2) / Gamma(C)`` (exact for equal
``sigma_c``). A SENSE-type reconstruction has no data outside the coil maps' support and leaves 0 there;
:func:`rss_noise_floor` is the value that matches the RSS convention without any reference image, from the
noise measured in the acquired samples themselves.

The noise is measured where k-space holds (almost) no signal: the corners, i.e. the outer eighth of the
readout rows on each side (``|k_x| >= 3/8`` of the rows) crossed with the outer quarter of the phase-encoding
columns on each side (``|k_y| >= 1/4``), acquired samples only; for a 2-D (Poisson-disk) mask, whose corners
are empty, the outermost quarter of its acquired points. ``|n|^2`` of complex Gaussian noise is
exponential, so ``sigma^2 = median(|y|^2) / ln 2`` (the median ignores the few samples with signal in them).
On the simulated data (``recon/simulate.py``, whose files store the true ``noise_std``) this estimate is 0-5 %
above the true sigma at SNR 30-60: what little anatomy reaches the corners; at SNR 300-600 that anatomy outweighs
the noise and it reads 2.7-4.4x sigma (configs/modl-noise.yaml). It fails where the corners hold signal: on the
real 16-coil SENSE-tutorial brain (96 x 96, head filling the field of view, bright fat rim) it reads 18-76 per
coil where the image corners show ~4.7 (every quantile of the corner power gives the same, so the corners are
signal, not outliers); ``fill_background="noise_floor"`` and the reference-free training modes inherit that.
The Poisson-disk reading (outermost points) has the same limit there: with it ``modl-qf``'s whole-image PSNR on that
scan's Poisson-disk rows is 35.0 dB at R = 2 (in the object 40.5), where the sigma ~0 read before (the unacquired
points counted as zeros, no fill) gave 40.9 (``scripts/real_kspace_check.py --masks poisson --modl-weights modl-qf``).
:func:`noise_std_from_calibration` reads the fully sampled centre instead (the calibration matrix's smallest
singular values, where the signal does not reach): within 0.95-1.3x on those simulations, 3.5-4.2 on that scan.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from recon.errors import InputError

__all__ = ["noise_std_from_kspace", "noise_std_from_calibration", "rss_noise_floor"]


def _corner_selection(shape: tuple[int, int], mask_cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column boolean selectors ``[H]``, ``[B, W]`` of the k-space corners (acquired columns only)."""
    h, w = shape
    rows = torch.zeros(h, dtype=torch.bool, device=mask_cols.device)
    e = max(1, h // 8)
    rows[:e] = True
    rows[h - e:] = True
    outer = torch.zeros(w, dtype=torch.bool, device=mask_cols.device)
    q = max(1, w // 4)
    outer[:q] = True
    outer[w - q:] = True
    cols = mask_cols & outer
    # a mask without any acquired outer column (e.g. centre-only) falls back to every acquired column
    cols = torch.where(cols.any(-1, keepdim=True), cols, mask_cols)
    return rows, cols


def _outer_points(acquired: torch.Tensor, share: float = 0.25) -> torch.Tensor:
    """The outermost ``share`` of a 2-D mask's acquired points ``[H, W]`` (bool), by radius normalised to each
    axis' half-width: a variable-density mask has few points, or none (sigpy's Poisson-disk crops the corners),
    in the line masks' corners."""
    h, w = acquired.shape
    ky = (torch.arange(h, device=acquired.device) - h // 2) / (h / 2)
    kx = (torch.arange(w, device=acquired.device) - w // 2) / (w / 2)
    radius = ky[:, None].square() + kx[None, :].square()
    cut = torch.quantile(radius[acquired].float(), 1.0 - share)
    return acquired & (radius >= cut)


def noise_std_from_kspace(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-coil noise standard deviation ``sigma_c`` (``E|n|^2 = sigma^2``), from measured k-space.

    Args:
        kspace: complex ``[B, C, H, W]`` (zeros where not acquired is fine: only acquired samples are read).
        mask: ``[B|1, 1, 1|H, W]`` sampling mask (bool or float). A line mask (``[..., 1, W]``): a column counts
            as acquired where any row is, and the corners are read. A 2-D mask (``[..., H, W]``, e.g.
            Poisson-disk): its outermost quarter of acquired points is read (until 2026-12-06 every point of the
            acquired columns was read, the unacquired ones as zeros, which pulled the median, and so the estimate,
            to 0 for Poisson-disk masks).

    Returns:
        float32 ``[B, C]`` in the units of ``kspace`` (with the orthonormal FFT, also the noise std of each coil
        image pixel).
    """
    if kspace.ndim != 4 or not kspace.is_complex():
        raise InputError(None, f"k-space must be complex [B, C, H, W], got {tuple(kspace.shape)} {kspace.dtype}")
    b, c, h, w = kspace.shape
    m = mask.reshape(mask.shape[0], -1, w) if mask.ndim >= 2 else mask.reshape(1, 1, w)
    points = (m != 0).expand(b, h, w) if m.shape[1] == h else None  # a 2-D mask: its acquired points
    mask_cols = (m != 0).any(1).expand(b, w)
    if not bool(mask_cols.any(-1).all()):
        raise InputError(None, "sampling mask is empty: no acquired samples to measure the noise on")
    rows, cols = _corner_selection((h, w), mask_cols)
    power = kspace.detach().abs().square().float()  # [B, C, H, W]
    out = torch.empty(b, c, dtype=torch.float32, device=kspace.device)
    for i in range(b):  # the number of selected samples differs per sample
        chosen = rows[:, None] & cols[i][None, :]
        if points is not None:
            chosen = _outer_points(points[i].to(chosen.device))
        samples = power[i][:, chosen]  # [C, N]
        out[i] = torch.sqrt(samples.median(dim=1).values / math.log(2.0))
    return out


def _corner_rms(kspace: torch.Tensor, mask: torch.Tensor, i: int) -> torch.Tensor:
    m = mask[i:i + 1] if mask.shape[0] == kspace.shape[0] else mask[:1]
    return noise_std_from_kspace(kspace[i:i + 1], m).square().mean().sqrt()


@lru_cache(maxsize=32)
def _pure_noise_tail(rows: int, cols: int, share: float) -> float:
    """The median of the smallest ``share`` of the singular values of a ``rows x cols`` matrix of unit complex
    Gaussian noise (one fixed draw: the Marchenko-Pastur scale of that shape, without its asymptotics)."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(rows, cols, generator=g, dtype=torch.complex128)
    s = torch.linalg.svdvals(noise)
    return float(s[-max(1, int(cols * share)):].median())


def noise_std_from_calibration(kspace: torch.Tensor, mask: torch.Tensor, kernel: int = 3,
                               share: float = 0.25) -> torch.Tensor:
    """Noise standard deviation ``[B]`` of each slice from its fully sampled calibration region: the smallest
    singular values of the calibration matrix (every ``kernel x kernel`` patch of every coil, one row per
    position: ESPIRiT's), which the signal does not reach, against those of pure noise of the same shape.

    Unlike :func:`noise_std_from_kspace` it does not need k-space corners free of anatomy: on simulations of SNR
    33-578 (stored ``noise_std``) it reads 0.95-1.21x sigma at R = 1-8, on the real 16-coil brain 3.4-3.7 (its image
    corners ~4.7 per coil, 2.6-5.5), where the corners read 18-76. One value for all coils (their RMS when coils
    differ). A calibration matrix with fewer rows than columns (the small square centre of a Poisson-disk mask at
    128 px) falls back to the RMS of :func:`noise_std_from_kspace` (5-10x sigma there at SNR 300-600).

    Args:
        kspace: complex ``[B, C, H, W]`` (zeros where not acquired).
        mask: ``[B|1, 1, 1|H, W]`` sampling mask (``recon.calibration.calibration_region`` finds the block).
    """
    from recon.calibration import calibration_region

    b, c, h, w = kspace.shape
    out = torch.empty(b, dtype=torch.float32)
    for i in range(b):
        k = kspace[i].detach().cpu()
        rows, cols, _, _ = calibration_region(k.numpy(), mask[i if mask.shape[0] == b else 0].cpu(), max_rows=None)
        block = k[:, rows, cols]  # [C, h', w']
        if min(block.shape[-2:]) < kernel:
            out[i] = _corner_rms(kspace, mask, i)
            continue
        patches = block.unfold(1, kernel, 1).unfold(2, kernel, 1)  # [C, h'', w'', k, k]
        matrix = patches.permute(1, 2, 0, 3, 4).reshape(-1, c * kernel * kernel).to(torch.complex128)
        n_rows, n_cols = matrix.shape
        if n_rows < n_cols:  # e.g. the small square centre of a Poisson-disk mask at 128 px
            out[i] = _corner_rms(kspace, mask, i)
            continue
        s = torch.linalg.svdvals(matrix)
        out[i] = float(s[-max(1, int(n_cols * share)):].median()) / _pure_noise_tail(n_rows, n_cols, share)
    return out.to(kspace.device)


def rss_noise_floor(sigma: torch.Tensor) -> torch.Tensor:
    """Mean of the RSS magnitude of pure noise, ``[B]``, from per-coil noise std ``sigma`` ``[B, C]``."""
    c = sigma.shape[-1]
    chi_mean = math.exp(math.lgamma(c + 0.5) - math.lgamma(c))  # E of chi with 2C dof, times 1/sqrt(2)
    return torch.sqrt(sigma.square().mean(-1)) * chi_mean

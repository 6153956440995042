"""Classical reconstructions: zero-filled RSS, CG-SENSE (ours, torch) and L1-wavelet (sigpy).

All three take multi-coil k-space ``[S, C, H, W]`` complex (numpy or torch; single-coil is C = 1) and a
real 0/1 sampling mask broadcastable to it (``[W]``, ``[1, 1, W]``, ``[S, 1, 1, W]``, ``[H, W]``,
``[S, 1, H, W]``, ...), and return a float32 numpy magnitude volume ``[S, H, W]`` on the scale of the RSS of
the fully sampled k-space (fastMRI's convention: orthonormal centred FFT, no 1/R rescaling). K-space values
where the mask is 0 are ignored. Coil maps (``[S, C, H, W]``, or ``[S, M, C, H, W]`` for M ESPIRiT map
sets) are the caller's: ``recon.coils.espirit_maps`` per slice; with M sets the magnitude is
``sqrt(sum_m |x_m|^2)``. ESPIRiT maps satisfy ``sum_c |S_c|^2 = 1`` inside the support, which is what puts
the SENSE images on the RSS scale. Inputs are never modified.

Default regularisation, from a sweep on a simulated slice (3T MPRAGE slice 88 of ``../shared/data``, peak 1,
smooth phase, 8 normalised sigpy birdcage coils, complex Gaussian noise, random 1-D line masks with 24 centre
lines at R = 2, 4, 6, 8, ESPIRiT maps from the undersampled data; NMSE against the RSS of the fully sampled noisy
k-space):

- ``cg_sense``: ``lam = 0.003`` (NMSE 0.012 / 0.045 / 0.095 / 0.101 at R = 2 / 4 / 6 / 8; ``lam = 0.01`` within
  10 %, ``lam = 0`` 5-25 % worse, ``0.1`` 2-3x worse at R = 2). The Tikhonov weight is dimensionless: ``A^H A``
  has eigenvalues in [0, 1] (orthonormal FFT, 0/1 mask, normalised maps), so the same ``lam`` fits any k-space
  scale. ``max_iter = 30``, ``tol = 1e-5`` (relative residual).
- ``l1_wavelet``: k-space is divided by the 99.9th percentile of the zero-filled RSS magnitude of the volume
  before sigpy runs and the result multiplied back, so ``lamda`` is relative to an image of peak ~1 and does
  not depend on the data scale. ``lamda = 0.001`` (NMSE 0.0086 / 0.038 / 0.095 / 0.102; 3x larger or smaller
  is up to 20 % worse), ``max_iter = 60`` (FISTA, db4 wavelets; about 1.8 s per 256 x 256 x 8 slice on 2 cores).

Bad input (wrong rank or dtype, NaN/Inf, an all-zero mask or k-space, coil maps that do not match) raises
``recon.errors.InputError``.
"""
from __future__ import annotations

import numpy as np
import torch

from recon.cg import cg_solve
from recon.errors import InputError
from recon.fft import ifft2c
from recon.physics import SenseOperator

__all__ = ["zero_filled", "cg_sense", "sense_image", "l1_wavelet", "DEFAULT_SENSE_LAM", "DEFAULT_L1_LAMDA"]

DEFAULT_SENSE_LAM = 0.003
DEFAULT_SENSE_ITERS = 30
DEFAULT_SENSE_TOL = 1e-5
QUICK_SENSE_ITERS = 20  # sense_image: the collapse guard's and the calibration's k-space predictions
DEFAULT_L1_LAMDA = 1e-3
DEFAULT_L1_ITERS = 60
_L1_SCALE_PERCENTILE = 99.9


def _as_tensor(a, what: str) -> torch.Tensor:
    if torch.is_tensor(a):
        return a.detach()
    try:
        return torch.from_numpy(np.asarray(a))
    except TypeError as exc:
        raise InputError(None, f"{what} must be a numpy array or torch tensor ({exc})") from None


def _prepare_kspace_mask(kspace, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (complex64 k-space [S, C, H, W] on CPU or its device, float32 mask [S|1, C|1, H|1, W|1])."""
    k = _as_tensor(kspace, "k-space")
    if not k.is_complex():
        raise InputError(None, f"k-space must be complex [slices, coils, H, W], got dtype {k.dtype}")
    if k.ndim != 4:
        raise InputError(None, f"k-space must be [slices, coils, H, W] (single-coil: coils = 1), "
                               f"got shape {tuple(k.shape)}")
    if min(k.shape) == 0:
        raise InputError(None, f"k-space is empty: shape {tuple(k.shape)}")
    k = k.to(torch.complex64)
    if not bool(torch.isfinite(k).all()):
        raise InputError(None, "k-space has NaN/Inf values")
    m = _as_tensor(mask, "sampling mask")
    if m.is_complex():
        raise InputError(None, f"sampling mask must be real 0/1, got dtype {m.dtype}")
    m = m.to(device=k.device, dtype=torch.float32)
    try:
        ok = m.ndim <= 4 and torch.broadcast_shapes(m.shape, k.shape) == k.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise InputError(None, f"sampling mask of shape {tuple(m.shape)} does not broadcast to the k-space "
                               f"shape {tuple(k.shape)} [slices, coils, H, W]")
    if not bool(torch.isfinite(m).all()):
        raise InputError(None, "sampling mask has NaN/Inf values")
    while m.ndim < 4:
        m = m.unsqueeze(0)
    per_slice = m.expand(k.shape[0], -1, -1, -1).flatten(1).abs().amax(1)
    if not bool((per_slice > 0).all()):
        empty = (per_slice == 0).nonzero().flatten().tolist()
        raise InputError(None, "sampling mask is all zeros" if m.shape[0] == 1
                         else f"sampling mask is all zeros for slices {empty}")
    if not bool((k * m).ne(0).any()):
        raise InputError(None, "k-space is all zeros where sampled")
    return k, m


def _prepare_maps(sens_maps, k: torch.Tensor) -> torch.Tensor:
    s = _as_tensor(sens_maps, "coil maps")
    if not s.is_complex():
        raise InputError(None, f"coil maps must be complex [slices, coils, H, W] or [slices, sets, coils, H, W], "
                               f"got dtype {s.dtype}")
    ok = (s.ndim == 4 and tuple(s.shape) == tuple(k.shape)) or \
         (s.ndim == 5 and s.shape[0] == k.shape[0] and tuple(s.shape[2:]) == tuple(k.shape[1:]))
    if not ok:
        raise InputError(None, f"coil maps of shape {tuple(s.shape)} do not match k-space of shape "
                               f"{tuple(k.shape)} (expected [S, C, H, W] or [S, M, C, H, W] with the same S, C, H, W)")
    s = s.to(device=k.device, dtype=torch.complex64)
    if not bool(torch.isfinite(s).all()):
        raise InputError(None, "coil maps have NaN/Inf values")
    return s


def _slice_mask(m: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    return m if m.shape[0] == 1 else m[start:stop]


def zero_filled(kspace, mask) -> np.ndarray:
    """Zero-filled reconstruction: RSS over coils of ``ifft2c(mask * kspace)``.

    Args:
        kspace: complex ``[S, C, H, W]`` (numpy or torch).
        mask: real 0/1, broadcastable to ``[S, C, H, W]``.
    Returns: float32 numpy ``[S, H, W]``, the RSS scale.
    """
    k, m = _prepare_kspace_mask(kspace, mask)
    out = torch.empty(k.shape[0], k.shape[2], k.shape[3], dtype=torch.float32)
    with torch.no_grad():
        for s in range(k.shape[0]):  # slice by slice: one coil stack of memory
            img = ifft2c(k[s:s + 1] * _slice_mask(m, s, s + 1))
            out[s] = torch.sqrt((img.real.square() + img.imag.square()).sum(1))[0].cpu()
    return out.numpy()


def cg_sense(kspace, mask, sens_maps, lam: float = DEFAULT_SENSE_LAM, max_iter: int = DEFAULT_SENSE_ITERS,
             tol: float = DEFAULT_SENSE_TOL, *, batch_size: int = 8,
             device: str | torch.device | None = None, complex_output: bool = False) -> np.ndarray:
    """CG-SENSE: per slice, ``x = argmin ||M F S x - y||^2 + lam ||x||^2`` by our batched torch CG.

    Args:
        kspace: complex ``[S, C, H, W]``; mask: real, broadcastable to it.
        sens_maps: complex ``[S, C, H, W]`` or ``[S, M, C, H, W]`` (ESPIRiT, M map sets).
        lam: Tikhonov weight (dimensionless, see the module docstring), >= 0.
        max_iter, tol: CG iterations and relative-residual tolerance per slice.
        batch_size: slices solved together in one batched CG.
        device: torch device for the solve (default: the k-space tensor's device, CPU for numpy input).
        complex_output: return the complex image instead (what ``F S x`` predicts k-space from).
    Returns: float32 numpy ``[S, H, W]`` magnitude (``sqrt(sum_m |x_m|^2)`` with map sets); with
    ``complex_output`` complex64 ``[S, H, W]`` (``[S, M, H, W]`` with map sets).
    """
    k, m = _prepare_kspace_mask(kspace, mask)
    maps = _prepare_maps(sens_maps, k)
    if int(batch_size) < 1:
        raise InputError(None, f"batch_size must be >= 1, got {batch_size}")
    dev = torch.device(device) if device is not None else k.device
    out = _output_array(k, maps, complex_output)
    with torch.no_grad():
        for start in range(0, k.shape[0], int(batch_size)):
            stop = min(start + int(batch_size), k.shape[0])
            op = SenseOperator(maps[start:stop].to(dev), _slice_mask(m, start, stop).to(dev))
            rhs = op.adjoint(k[start:stop].to(dev))
            x = cg_solve(op.normal, rhs, lam, max_iter=max_iter, tol=tol)
            if complex_output:
                out[start:stop] = x.to(torch.complex64).cpu().numpy()
                continue
            mag = x.abs() if x.ndim == 3 else torch.sqrt((x.real.square() + x.imag.square()).sum(1))
            out[start:stop] = mag.float().cpu().numpy()
    return out


def sense_image(kspace, mask, maps, lam: float = DEFAULT_SENSE_LAM, max_iter: int = QUICK_SENSE_ITERS
                ) -> np.ndarray:
    """The complex CG-SENSE image with an axis per map set, complex64 ``[S, M, H, W]`` (M = 1 for maps
    ``[S, C, H, W]``; ``[S, M, C, H, W]`` as they are): :func:`cg_sense` with ``complex_output``, tolerance 1e-6.
    What the collapse guard (:mod:`recon.guard`) and the calibration's held-out lines
    (:func:`recon.calibration.heldout_line_error`) predict measured k-space with, ``F S x``."""
    s = _as_tensor(maps, "coil maps")
    return cg_sense(kspace, mask, s[:, None] if s.ndim == 4 else s, lam=lam, max_iter=max_iter, tol=1e-6,
                    complex_output=True)


def _output_array(k: torch.Tensor, maps: torch.Tensor, complex_output: bool) -> np.ndarray:
    """The result array: float32 ``[S, H, W]``, or complex64 ``[S, H, W]`` / ``[S, M, H, W]`` (map sets)."""
    if not complex_output:
        return np.empty((k.shape[0], k.shape[2], k.shape[3]), dtype=np.float32)
    sets = (maps.shape[1],) if maps.ndim == 5 else ()
    return np.empty((k.shape[0], *sets, k.shape[2], k.shape[3]), dtype=np.complex64)


def _sigpy_sense_sets(mps: np.ndarray, weights: np.ndarray):
    """sigpy linop ``sqrt(W) F sum_m S_m x_m`` for images ``[M, H, W]`` (maps ``[M, C, H, W]``)."""
    import sigpy as sp

    nsets, ncoils, h, w = mps.shape
    reshape = sp.linop.Reshape((nsets, 1, h, w), (nsets, h, w))
    sens = sp.linop.Multiply((nsets, 1, h, w), mps)
    total = sp.linop.Sum((nsets, ncoils, h, w), axes=(0,))
    fft = sp.linop.FFT((ncoils, h, w), axes=(-2, -1))
    weight = sp.linop.Multiply((ncoils, h, w), np.sqrt(weights))
    return weight * fft * total * sens * reshape


def l1_wavelet(kspace, mask, sens_maps, lamda: float = DEFAULT_L1_LAMDA, max_iter: int = DEFAULT_L1_ITERS,
               *, wave_name: str = "db4", complex_output: bool = False) -> np.ndarray:
    """L1-wavelet compressed sensing with ``sigpy.mri.app.L1WaveletRecon`` (FISTA), slice by slice, on CPU.

    Solves ``min_x 1/2 ||M F S x - y / s||^2 + lamda ||W x||_1`` with ``s`` the 99.9th percentile of the
    zero-filled RSS of the volume, and returns ``s |x|`` (so ``lamda`` is relative to a unit-peak image).
    With M map sets the same problem is built from sigpy linops (``L1WaveletRecon`` takes one set).

    Args:
        kspace: complex ``[S, C, H, W]``; mask: real, broadcastable to it.
        sens_maps: complex ``[S, C, H, W]`` or ``[S, M, C, H, W]``.
        lamda: L1 weight on the db4 wavelet coefficients of the normalised image, >= 0.
        max_iter: FISTA iterations.
        complex_output: return the complex image ``s x`` instead.
    Returns: float32 numpy ``[S, H, W]`` magnitude; with ``complex_output`` complex64 ``[S, H, W]``
    (``[S, M, H, W]`` with map sets).
    """
    import sigpy as sp
    import sigpy.mri as mr

    k, m = _prepare_kspace_mask(kspace, mask)
    maps = _prepare_maps(sens_maps, k)
    if not lamda >= 0:
        raise InputError(None, f"lamda must be >= 0, got {lamda}")
    zf = zero_filled(k, m)
    scale = float(np.percentile(zf, _L1_SCALE_PERCENTILE))
    if not scale > 0:
        scale = float(zf.max())
    k_np = k.cpu().numpy()
    m_np = np.broadcast_to(m.cpu().numpy(), k.shape)
    maps_np = maps.cpu().numpy()
    out = _output_array(k, maps, complex_output)
    for s in range(k.shape[0]):
        weights = np.ascontiguousarray(m_np[s], dtype=np.float32)
        y = (k_np[s] / scale).astype(np.complex64)
        if maps_np.ndim == 4:
            x = mr.app.L1WaveletRecon(y, maps_np[s], lamda, weights=weights, wave_name=wave_name,
                                      max_iter=int(max_iter), show_pbar=False).run()
            if complex_output:
                out[s] = (scale * x).astype(np.complex64)
                continue
            mag = np.abs(x)
        else:
            a = _sigpy_sense_sets(maps_np[s], weights)
            wav = sp.linop.Wavelet(a.ishape, axes=(-2, -1), wave_name=wave_name)
            proxg = sp.prox.UnitaryTransform(sp.prox.L1Reg(wav.oshape, lamda), wav)
            x = sp.app.LinearLeastSquares(a, y * np.sqrt(weights), proxg=proxg, max_iter=int(max_iter),
                                          show_pbar=False).run()
            if complex_output:
                out[s] = (scale * x).astype(np.complex64)
                continue
            mag = np.sqrt((np.abs(x) ** 2).sum(0))
        out[s] = (scale * mag).astype(np.float32)
    return out

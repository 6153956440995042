"""Centred, orthonormal 2-D FFTs over the last two dims (fastMRI's convention).

``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))`` on complex tensors ``[..., H, W]``; identical to
``fastmri.fft2c`` applied to ``torch.view_as_real(x)``. Numpy twins ``fft2c_np`` / ``ifft2c_np`` for arrays.

``centering_phases`` gives the unit-modulus diagonals that turn the shifts into multiplications:
``fft2c(x) == d_out * fft2(d_in * x, norm="ortho")`` and ``ifft2c(y) == conj(d_in) * ifft2(conj(d_out) * y)``
for any H, W (±1 checkerboards when the size is even). ``recon.physics.SenseOperator`` folds them into the
coil maps so its normal operator needs no shifts at all.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["fft2c", "ifft2c", "fft2c_np", "ifft2c_np", "centering_phases"]

_DIMS = (-2, -1)


def _check_complex(x: torch.Tensor) -> None:
    if not torch.is_tensor(x) or not x.is_complex():
        raise TypeError(f"expected a complex torch tensor [..., H, W], got {type(x).__name__} "
                        f"{getattr(x, 'dtype', '')}")
    if x.ndim < 2:
        raise ValueError(f"expected at least 2 dims [..., H, W], got shape {tuple(x.shape)}")


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT of a complex tensor ``[..., H, W]`` (image -> k-space); same shape/dtype."""
    _check_complex(x)
    x = torch.fft.ifftshift(x, dim=_DIMS)
    x = torch.fft.fft2(x, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(x, dim=_DIMS)


def ifft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT of a complex tensor ``[..., H, W]`` (k-space -> image)."""
    _check_complex(x)
    x = torch.fft.ifftshift(x, dim=_DIMS)
    x = torch.fft.ifft2(x, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(x, dim=_DIMS)


def fft2c_np(x: np.ndarray) -> np.ndarray:
    """Numpy twin of :func:`fft2c` over the last two axes (keeps complex64 as complex64)."""
    x = np.asarray(x)
    out = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=_DIMS), axes=_DIMS, norm="ortho"), axes=_DIMS)
    return out.astype(np.result_type(x.dtype, np.complex64), copy=False)


def ifft2c_np(x: np.ndarray) -> np.ndarray:
    """Numpy twin of :func:`ifft2c` over the last two axes (keeps complex64 as complex64)."""
    x = np.asarray(x)
    out = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x, axes=_DIMS), axes=_DIMS, norm="ortho"), axes=_DIMS)
    return out.astype(np.result_type(x.dtype, np.complex64), copy=False)


def _phases_1d(n: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(d_in, d_out) of length n with fftshift(fft(ifftshift(v))) == d_out * fft(d_in * v) (any n)."""
    s = n // 2
    k = torch.arange(n, dtype=torch.float64)
    # d_in[k] = exp(+2 pi i s k / n), d_out[k] = exp(+2 pi i s (k - s) / n); exactly +-1 for even n.
    if n % 2 == 0:
        d_in = torch.where(k.remainder(2) == 0, 1.0, -1.0).to(torch.complex128)
        d_out = d_in * (1.0 if s % 2 == 0 else -1.0)
    else:
        d_in = torch.polar(torch.ones_like(k), 2 * math.pi * s * k / n)
        d_out = torch.polar(torch.ones_like(k), 2 * math.pi * s * (k - s) / n)
    return d_in.to(dtype=dtype, device=device), d_out.to(dtype=dtype, device=device)


def centering_phases(h: int, w: int, dtype: torch.dtype = torch.complex64,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-modulus ``[H, W]`` diagonals ``(d_in, d_out)`` with ``fft2c(x) == d_out * fft2(d_in * x)``.

    Hence also ``ifft2c(y) == conj(d_in) * ifft2(conj(d_out) * y)`` (both FFTs orthonormal, unshifted).
    """
    hi, ho = _phases_1d(h, dtype, device)
    wi, wo = _phases_1d(w, dtype, device)
    return hi[:, None] * wi[None, :], ho[:, None] * wo[None, :]

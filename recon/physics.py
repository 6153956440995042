"""The measurement operators of multi-coil MRI on torch complex tensors, and the input conventions they take.

Every operator maps a batched complex tensor of shape ``in_shape`` to one of shape ``out_shape`` (documented
attributes): ``forward`` (``A x``, also ``A(x)``), ``adjoint`` (``A^H y``), ``normal`` (``A^H A x``), and
``A.H`` is the adjoint operator. Nothing here is a ``torch.nn.Module``: operators are cheap to build per batch
(the training step builds one per batch and hands it to every loss as ``physics``), hold no parameters, and
autograd flows through them to the input (and to coil maps that require grad).

- :class:`SenseOperator` ``A = M F S``: image ``[B, H, W]`` (``[B, M, H, W]`` with M map sets) -> masked
  k-space ``[B, C, H, W]``.
  ``S``: coil sensitivities ``[B, C, H, W]`` (or ``[B, M, C, H, W]``: ``S x = sum_m maps_m x_m``);
  ``F``: centred orthonormal 2-D FFT per coil (``recon.fft.fft2c``); ``M``: the sampling mask.
- :class:`Sampling` ``M``: k-space ``[B, C, H, W]`` -> k-space, zero where not sampled. ``A.sampling`` is the
  ``M`` of any operator here, so a loss can compare a predicted k-space (VarNet's) with the data on the
  sampled points of the same physics without knowing the maps.

Masks are real, broadcastable to ``[B, C, H, W]`` (``[B|1, 1, 1, W]`` line masks, ``[B|1, 1, H, W]`` 2-D
masks), 0/1 (other real weights work: ``A^H A`` then uses ``M^2``); bool masks and fastMRI's ``[B, 1, 1, W, 1]``
are taken as they come (:func:`as_mask`). :func:`as_kspace` takes complex k-space or fastMRI's real view
``[B, C, H, W, 2]``.

Units: k-space and images share one scale (the FFT is orthonormal), so with ESPIRiT maps normalised to
``sum_c |S_c|^2 = 1`` in the support the SENSE image is on the scale of the coil-combined RSS image.
Single-coil is ``C = 1`` with maps of ones.
"""
from __future__ import annotations

import numpy as np
import torch

from recon.errors import InputError
from recon.fft import centering_phases

__all__ = ["LinearOperator", "Sampling", "SenseOperator", "as_kspace", "as_mask", "as_maps"]


class LinearOperator:
    """Base class: ``in_shape`` -> ``out_shape``; subclasses implement ``forward`` and ``adjoint``, and ``normal``
    defaults to ``adjoint(forward)``."""

    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x``; subclasses override with a fused version where that is faster."""
        return self.adjoint(self.forward(x))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    @property
    def H(self) -> "LinearOperator":
        """The adjoint operator ``A^H`` (``A.H.H is A``; shapes swapped)."""
        return _Adjoint(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.in_shape)} -> {list(self.out_shape)})"


class _Adjoint(LinearOperator):
    def __init__(self, op: LinearOperator):
        self.op = op
        self.in_shape, self.out_shape = op.out_shape, op.in_shape

    def forward(self, x):
        return self.op.adjoint(x)

    def adjoint(self, y):
        return self.op.forward(y)

    @property
    def H(self):
        return self.op

    def __repr__(self):
        return f"{self.op!r}.H"


# ------------------------------------------------------------------------------------------- input conventions

def _tensor(x, what: str, source) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not torch.is_tensor(x):
        raise InputError(source, f"{what} must be a torch tensor or numpy array, got {type(x).__name__}")
    return x


def as_kspace(kspace, source=None, what: str = "masked k-space", check_finite: bool = True) -> torch.Tensor:
    """Complex64 ``[B, C, H, W]`` from complex ``[B, C, H, W]`` or fastMRI's real view ``[B, C, H, W, 2]``."""
    k = _tensor(kspace, what, source)
    if not k.is_complex():
        if k.ndim == 5 and k.shape[-1] == 2 and k.is_floating_point():
            k = torch.view_as_complex(k.float().contiguous())
        else:
            raise InputError(source, f"{what} must be complex [B, C, H, W] or fastMRI's real view "
                                     f"[B, C, H, W, 2], got {k.dtype} of shape {tuple(k.shape)}")
    if k.ndim != 4:
        raise InputError(source, f"{what} must be [B, C, H, W] (single-coil: C = 1), got shape {tuple(k.shape)}")
    if min(k.shape) == 0:
        raise InputError(source, f"{what} is empty: shape {tuple(k.shape)}")
    k = k.to(torch.complex64)
    if check_finite and not bool(torch.isfinite(torch.view_as_real(k)).all()):
        raise InputError(source, f"{what} has NaN/Inf values")
    return k


def as_mask(mask, kspace_shape, device=None, source=None, *, nonempty: bool = True,
            single_channel: bool = True) -> torch.Tensor:
    """Float32 ``[B|1, 1, H|1, W]`` mask of k-space ``kspace_shape = (B, C, H, W)``.

    Takes float or bool masks, numpy or torch, ``[W]`` / ``[1, W]`` / ``[1, H|1, W]`` / ``[B, 1, H|1, W]``, fastMRI's
    ``[B, 1, 1, W, 1]`` and ``[1, 1, W, 1]`` (the trailing complex dim), and a ``recon.masks.SamplingMask``.
    ``single_channel=False`` also allows per-coil masks ``[B, C, H, W]``; ``nonempty`` makes an all-zero mask
    (of any sample) an error.
    """
    if hasattr(mask, "mask") and hasattr(mask, "kind"):  # a recon.masks.SamplingMask
        mask = mask.mask
    m = _tensor(mask, "sampling mask", source)
    if m.is_complex():
        raise InputError(source, f"sampling mask must be real 0/1, got {m.dtype}")
    b, c, h, w = (int(n) for n in kspace_shape)
    if m.ndim >= 4 and m.shape[-1] == 1 and w != 1:  # fastMRI's trailing (real, imag) dim
        m = m[..., 0]
    m = m.to(device=device, dtype=torch.float32)
    while m.ndim < 4:
        m = m.unsqueeze(0)
    try:
        ok = m.ndim == 4 and (m.shape[1] == 1 or not single_channel) and \
            torch.broadcast_shapes(m.shape, (b, c, h, w)) == (b, c, h, w)
    except RuntimeError:
        ok = False
    if not ok:
        raise InputError(source, f"sampling mask of shape {tuple(mask.shape)} does not match k-space "
                                 f"[B, C, H, W] = {[b, c, h, w]} (expected [B|1, 1, 1, W], [B|1, 1, H, W] "
                                 f"or fastMRI's [B, 1, 1, W, 1])")
    if not bool(torch.isfinite(m).all()):
        raise InputError(source, "sampling mask has NaN/Inf values")
    if nonempty:
        per = m.expand(b, -1, -1, -1).flatten(1).abs().amax(1)
        if not bool((per > 0).all()):
            raise InputError(source, "sampling mask is all zeros" + ("" if b == 1 else
                             f" for batch samples {(per == 0).nonzero().flatten().tolist()}"))
    return m


def as_maps(sens_maps, kspace_shape, device=None, source=None) -> torch.Tensor:
    """Complex64 coil maps ``[B, C, H, W]`` (or ``[B, M, C, H, W]`` for M map sets) of k-space ``kspace_shape``;
    a single ``[C, H, W]`` is taken for ``B = 1``."""
    s = _tensor(sens_maps, "coil maps", source)
    if not s.is_complex():
        raise InputError(source, f"coil maps must be complex [B, C, H, W] or [B, M, C, H, W], got {s.dtype}")
    kshape = tuple(int(n) for n in kspace_shape)
    if s.ndim == 3 and kshape[0] == 1:
        s = s.unsqueeze(0)
    ok = tuple(s.shape) == kshape or (s.ndim == 5 and s.shape[0] == kshape[0] and tuple(s.shape[2:]) == kshape[1:])
    if not ok:
        raise InputError(source, f"coil maps of shape {tuple(sens_maps.shape)} do not match k-space "
                                 f"[B, C, H, W] = {list(kshape)} (expected [B, C, H, W], or [B, M, C, H, W] "
                                 f"for M ESPIRiT map sets)")
    s = s.to(device=device, dtype=torch.complex64)
    if not bool(torch.isfinite(torch.view_as_real(s)).all()):
        raise InputError(source, "coil maps have NaN/Inf values")
    return s


# ------------------------------------------------------------------------------------------------ operators

class Sampling(LinearOperator):
    """``M``: k-space ``[B, C, H, W]`` -> ``M * k`` (same shape); real mask, so self-adjoint; ``normal`` = ``M^2``.

    Args:
        mask: see :func:`as_mask` (fastMRI's layouts and bool included); not required to be non-empty.
        kspace_shape: ``(B, C, H, W)`` of the k-space it acts on.
    """

    def __init__(self, mask, kspace_shape, device=None):
        self.in_shape = self.out_shape = tuple(int(n) for n in kspace_shape)
        if device is None and torch.is_tensor(mask):
            device = mask.device
        self.mask = as_mask(mask, self.in_shape, device, nonempty=False, single_channel=False)

    @property
    def sampling(self) -> "Sampling":
        return self

    def forward(self, k):
        if not torch.is_tensor(k) or tuple(k.shape) != self.in_shape:
            got = tuple(k.shape) if torch.is_tensor(k) else type(k).__name__
            raise InputError(None, f"sampling: expected k-space of shape {list(self.in_shape)}, got {got}")
        return k * self.mask.to(k.device)

    adjoint = forward

    def normal(self, k):
        return self.forward(k) * self.mask.to(k.device)


def _validate_maps_mask(sens_maps, mask) -> tuple[torch.Tensor, torch.Tensor]:
    if not torch.is_tensor(sens_maps) or not sens_maps.is_complex():
        raise InputError(None, f"coil sensitivity maps must be a complex torch tensor [B, C, H, W] or "
                               f"[B, M, C, H, W], got {type(sens_maps).__name__} {getattr(sens_maps, 'dtype', '')}")
    if sens_maps.ndim not in (4, 5):
        raise InputError(None, f"coil sensitivity maps must be [B, C, H, W] or [B, M, C, H, W], "
                               f"got shape {tuple(sens_maps.shape)}")
    kshape = (sens_maps.shape[0],) + tuple(sens_maps.shape[-3:])
    mask = as_mask(mask, kshape, sens_maps.device, nonempty=False, single_channel=False)
    real_dtype = torch.float64 if sens_maps.dtype == torch.complex128 else torch.float32
    return sens_maps, mask.to(real_dtype)


class SenseOperator(LinearOperator):
    """Multi-coil SENSE ``A = M F S`` on torch complex tensors, batched.

    Args:
        sens_maps: complex ``[B, C, H, W]`` coil maps, or ``[B, M, C, H, W]`` for M map sets (ESPIRiT with
            more than one set where the field of view folds over). The dtype (complex64 or complex128) and
            device (CPU or CUDA) of the maps set those of the operator.
        mask: real sampling mask broadcastable to ``[B, C, H, W]`` (e.g. ``[B, 1, 1, W]``, ``[B, 1, H, W]``,
            ``[1, 1, 1, W]``); moved to the maps' device and real dtype.

    Shapes: ``in_shape`` = ``image_shape`` (``[B, H, W]``, ``[B, M, H, W]`` with map sets), ``out_shape`` =
    ``kspace_shape`` (``[B, C, H, W]``). ``forward(x)``: image -> k-space (zero where the mask is 0);
    ``adjoint(y)``: k-space -> image; ``normal(x)`` = ``A^H A x``, image -> image; ``sampling``: the
    :class:`Sampling` ``M`` of the same mask. Bad shapes raise ``recon.errors.InputError``.

    Implementation: the FFT shifts are folded into unit-modulus phase diagonals (``recon.fft.centering_phases``)
    that are premultiplied into the maps, so ``normal`` is ``sum_c conj(S'_c) ifft2(M^2 fft2(S'_c x))`` with
    plain FFTs and no shift copies. Without autograd (no input requires grad, or under ``torch.no_grad``)
    the elementwise steps run in place and the coil images go to one reused scratch buffer (so one operator
    must not be used from two threads at once).
    """

    def __init__(self, sens_maps: torch.Tensor, mask: torch.Tensor):
        sens_maps, mask = _validate_maps_mask(sens_maps, mask)
        self.sens_maps = sens_maps
        self.mask = mask
        self.sets = sens_maps.ndim == 5
        self.batch = sens_maps.shape[0]
        self.num_coils, self.height, self.width = sens_maps.shape[-3:]
        self.image_shape = tuple(sens_maps.shape[:2]) + (self.height, self.width) if self.sets else \
            (self.batch, self.height, self.width)
        self.kspace_shape = (self.batch, self.num_coils, self.height, self.width)
        self.in_shape, self.out_shape = self.image_shape, self.kspace_shape
        d_in, d_out = centering_phases(self.height, self.width, sens_maps.dtype, sens_maps.device)
        # S' = D_in S: fft2c(S x) = D_out fft2(S' x). Contiguous whatever the maps' strides (ESPIRiT maps from
        # sigpy come back coil-last in memory; strided maps made every elementwise pass ~2x slower).
        self._maps = (sens_maps * d_in).contiguous()
        self._maps_conj = self._maps.conj().resolve_conj().contiguous()
        self._mask_fwd = mask * d_out  # M D_out, [B', 1|C, H, W]
        self._mask_adj = self._mask_fwd.conj().resolve_conj()
        self._mask_sq = mask * mask  # D_out^H M^H M D_out = M^2
        self._buf: torch.Tensor | None = None

    @property
    def sampling(self) -> Sampling:
        """``M`` on k-space ``[B, C, H, W]``: the mask of this operator."""
        return Sampling(self.mask, self.kspace_shape)

    def __repr__(self):
        return (f"SenseOperator(maps={list(self.sens_maps.shape)}, mask={list(self.mask.shape)}, "
                f"{self.sens_maps.dtype}, {self.sens_maps.device})")

    def _check(self, t: torch.Tensor, shape: tuple, what: str) -> None:
        if not torch.is_tensor(t) or tuple(t.shape) != tuple(shape):
            got = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
            raise InputError(None, f"SENSE {what}: expected shape {list(shape)}, got {got}")
        if t.dtype != self._maps.dtype:
            raise InputError(None, f"SENSE {what} has dtype {t.dtype} but the coil maps are {self._maps.dtype}")
        if t.device != self.sens_maps.device:
            raise InputError(None, f"SENSE {what} is on {t.device} but the coil maps are on "
                                   f"{self.sens_maps.device}")

    def _needs_graph(self, x: torch.Tensor) -> bool:
        return torch.is_grad_enabled() and (x.requires_grad or self._maps.requires_grad
                                            or self.mask.requires_grad)

    def _work(self) -> torch.Tensor:
        """A coil-sized scratch buffer reused by the no-autograd paths.

        CPU tensors are malloc'd and, at this size, typically handed back to the OS when freed, so every fresh
        coil-sized tensor costs page faults; reusing one buffer for the coil images measured 15-25 % faster CG on
        CPU. (Not thread-safe: one operator, one thread at a time.)
        """
        if self._buf is None:
            self._buf = torch.empty(self.kspace_shape, dtype=self._maps.dtype, device=self._maps.device)
        return self._buf

    def _coil_images(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if self.sets:
            prod = x.unsqueeze(2) * self._maps
            return prod.sum(1) if out is None else torch.sum(prod, dim=1, out=out)
        if out is None:
            return x.unsqueeze(1) * self._maps
        return torch.mul(x.unsqueeze(1), self._maps, out=out)

    def _combine(self, coil: torch.Tensor, inplace: bool) -> torch.Tensor:
        if self.sets:
            return (coil.unsqueeze(1) * self._maps_conj).sum(2)
        if inplace:
            return coil.mul_(self._maps_conj).sum(1)
        return (coil * self._maps_conj).sum(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``[B, H, W]`` (``[B, M, H, W]``) -> masked k-space ``[B, C, H, W]``."""
        self._check(x, self.image_shape, "image")
        if self._needs_graph(x):
            return torch.fft.fft2(self._coil_images(x), norm="ortho") * self._mask_fwd
        return torch.fft.fft2(self._coil_images(x, out=self._work()), norm="ortho").mul_(self._mask_fwd)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Masked k-space ``[B, C, H, W]`` -> image ``[B, H, W]`` (``[B, M, H, W]``)."""
        self._check(y, self.kspace_shape, "k-space")
        if self._needs_graph(y):
            return self._combine(torch.fft.ifft2(y * self._mask_adj, norm="ortho"), inplace=False)
        weighted = torch.mul(y, self._mask_adj, out=self._work())
        return self._combine(torch.fft.ifft2(weighted, norm="ortho"), inplace=True)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x``: image -> image, same shape; one forward and one inverse FFT per coil."""
        self._check(x, self.image_shape, "image")
        if self._needs_graph(x):
            k = torch.fft.fft2(self._coil_images(x), norm="ortho") * self._mask_sq
            return self._combine(torch.fft.ifft2(k, norm="ortho"), inplace=False)
        # out-of-place FFTs: torch's ``out=`` computes into a temporary and copies (measured slower on CPU)
        k = torch.fft.fft2(self._coil_images(x, out=self._work()), norm="ortho").mul_(self._mask_sq)
        return self._combine(torch.fft.ifft2(k, norm="ortho"), inplace=True)

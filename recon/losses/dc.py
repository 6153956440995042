"""Data-consistency loss: ``||M F S x - y||^2 / ||M y||^2`` on the acquired k-space samples, per sample.

Reference-free: it compares the reconstruction with the measured (undersampled) k-space only. With the
SSDU split (``recon.ssdu``) the trainer passes the *loss* mask Lambda as ``mask``, so the same loss is then
SSDU's loss on the held-back samples (Yaman et al., MRM 2020).

Inputs (keyword arguments, as the trainer / ``recon.train_step`` pass them; mriqa never imports recon, so
the FFT is the centred orthonormal one written out here: ``ifftshift -> fftn(norm="ortho") -> fftshift``
over the last two dims, identical to ``fastmri.fft2c`` and ``recon.fft.fft2c``):

- ``masked_kspace``: complex64 ``[B, C, H, W]`` (or fastMRI's real view ``[B, C, H, W, 2]``): ``y``.
- ``mask``: float/bool broadcastable to ``[B, C, H, W]`` (``[B, 1, 1, W]``, ``[B, 1, H, W]``, fastMRI's
  ``[B, 1, 1, W, 1]``): ``M``, 1 where a sample enters the loss.
- one prediction, in this order of preference:
  ``pred_kspace`` complex ``[B, C, H, W]`` (multi-coil k-space of the reconstruction, e.g. VarNet's), or
  ``image`` complex ``[B, H, W]`` (the coil-combined complex image, e.g. MoDL's) with ``sens_maps`` complex
  ``[B, C, H, W]`` (``S``; omitted: single-coil, S = 1). The magnitude ``output`` alone is not enough (no
  phase): that is a :class:`recon.errors.InputError` naming what to pass.

Per sample ``b``: ``d_b = sum |M (F S x - y)|^2 / sum |M y|^2`` (``norm="l2"``, default), or SSDU's
normalised l1-l2 ``||M (F S x - y)||_2 / ||M y||_2 + ||M (F S x - y)||_1 / ||M y||_1`` (``norm="l1l2"``);
the loss is the batch mean (``reduction="none"``: ``[B]``). Units: none (relative residual energy).
"""
from __future__ import annotations

import torch
from torch import nn

from recon.errors import InputError

__all__ = ["DataConsistencyLoss", "dc_loss", "fft2c", "ifft2c"]


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two dims of a complex tensor (``fastmri.fft2c``)."""
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    x = torch.fft.fftn(x, dim=(-2, -1), norm="ortho")
    return torch.fft.fftshift(x, dim=(-2, -1))


def ifft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D inverse FFT (``fastmri.ifft2c``)."""
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    x = torch.fft.ifftn(x, dim=(-2, -1), norm="ortho")
    return torch.fft.fftshift(x, dim=(-2, -1))


def _complex(x: torch.Tensor, name: str, ndim: int) -> torch.Tensor:
    if not torch.is_tensor(x):
        raise InputError(None, f"DataConsistencyLoss: {name} must be a tensor, got {type(x).__name__}")
    if not x.is_complex():
        if x.ndim == ndim + 1 and x.shape[-1] == 2 and x.is_floating_point():
            x = torch.view_as_complex(x.float().contiguous())
        else:
            raise InputError(None, f"DataConsistencyLoss: {name} must be complex with {ndim} dims (or a real "
                                   f"view with a trailing 2), got {x.dtype} {tuple(x.shape)}")
    if x.ndim != ndim:
        raise InputError(None, f"DataConsistencyLoss: {name} must have {ndim} dims, got {tuple(x.shape)}")
    return x.to(torch.complex64)


def dc_loss(masked_kspace: torch.Tensor, mask: torch.Tensor, image: torch.Tensor | None = None,
            sens_maps: torch.Tensor | None = None, pred_kspace: torch.Tensor | None = None,
            norm: str = "l2", reduction: str = "mean") -> torch.Tensor:
    """Functional :class:`DataConsistencyLoss` (arguments as in the module docstring)."""
    if norm not in ("l2", "l1l2"):
        raise InputError(None, f"DataConsistencyLoss norm must be 'l2' or 'l1l2', got {norm!r}")
    y = _complex(masked_kspace, "masked_kspace", 4)
    if pred_kspace is not None:
        k = _complex(pred_kspace, "pred_kspace", 4)
    elif image is not None:
        x = _complex(image, "image", 3)
        if sens_maps is None:
            if y.shape[1] != 1:
                raise InputError(None, f"DataConsistencyLoss: {y.shape[1]}-coil k-space needs sens_maps")
            k = fft2c(x.unsqueeze(1))
        else:
            s = _complex(sens_maps, "sens_maps", 4)
            if s.shape != y.shape:
                raise InputError(None, f"DataConsistencyLoss: sens_maps {tuple(s.shape)} do not match k-space "
                                       f"{tuple(y.shape)}")
            k = fft2c(s * x.unsqueeze(1))
    else:
        raise InputError(None, "DataConsistencyLoss needs the complex reconstruction: pass image= (complex "
                               "[B, H, W], with sens_maps=) or pred_kspace= ([B, C, H, W]); a magnitude has "
                               "no phase")
    if k.shape != y.shape:
        raise InputError(None, f"DataConsistencyLoss: prediction k-space {tuple(k.shape)} does not match "
                               f"masked_kspace {tuple(y.shape)}")
    if not torch.is_tensor(mask):
        raise InputError(None, "DataConsistencyLoss: mask must be a tensor")
    m = mask
    if m.ndim == 5 and m.shape[-1] == 1:
        m = m[..., 0]
    m = m.to(device=y.device, dtype=torch.float32)
    try:
        torch.broadcast_shapes(m.shape, y.shape)
    except RuntimeError:
        raise InputError(None, f"DataConsistencyLoss: mask {tuple(mask.shape)} does not broadcast to k-space "
                               f"{tuple(y.shape)}") from None
    resid = (k - y) * m
    ym = y * m
    dims = tuple(range(1, y.ndim))
    y2 = ym.abs().square().sum(dims)
    if not bool((y2 > 0).all()):
        bad = (y2 <= 0).nonzero().flatten().tolist()
        raise InputError(None, f"DataConsistencyLoss: no acquired signal under the mask for batch samples {bad}")
    if norm == "l2":
        d = resid.abs().square().sum(dims) / y2
    else:
        d = resid.abs().square().sum(dims).clamp_min(1e-30).sqrt() / y2.sqrt() + \
            resid.abs().sum(dims) / ym.abs().sum(dims)
    return d.mean() if reduction == "mean" else d


class DataConsistencyLoss(nn.Module):
    """``||M F S x - y||^2 / ||M y||^2`` per sample, batch mean (see the module docstring).

    Call: ``loss(output, target=None, data_range=None, *, masked_kspace, mask, image=None, sens_maps=None,
    pred_kspace=None, **ignored)``; ``output`` (the magnitude) and ``target`` are not used.
    """

    requires_target = False

    def __init__(self, norm: str = "l2", reduction: str = "mean"):
        super().__init__()
        if norm not in ("l2", "l1l2"):
            raise InputError(None, f"DataConsistencyLoss norm must be 'l2' or 'l1l2', got {norm!r}")
        if reduction not in ("mean", "none"):
            raise InputError(None, f"DataConsistencyLoss reduction must be 'mean' or 'none', got {reduction!r}")
        self.norm, self.reduction = norm, reduction

    def forward(self, output=None, target=None, data_range=None, *, masked_kspace=None, mask=None, image=None,
                sens_maps=None, pred_kspace=None, **batch) -> torch.Tensor:
        if masked_kspace is None or mask is None:
            raise InputError(None, "DataConsistencyLoss needs masked_kspace= and mask= (the acquired data)")
        return dc_loss(masked_kspace, mask, image=image, sens_maps=sens_maps, pred_kspace=pred_kspace,
                       norm=self.norm, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"norm={self.norm!r}"

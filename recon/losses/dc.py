"""Data-consistency loss: ``||M (A x) - M y||^2 / ||M y||^2`` on the samples of the loss physics, per sample.

Reference-free: it compares the reconstruction with the measured (undersampled) k-space only. With the SSDU
split (``recon.ssdu``) the training step hands in the physics of the held-back mask Lambda, so the same loss
is then SSDU's loss on the samples the network never saw (Yaman et al., MRM 2020).

Inputs (the loss call of :mod:`recon.losses`):

- ``physics``: a ``recon.physics.SenseOperator`` (maps ``S``, mask ``M``) or ``recon.physics.Sampling``
  (``M`` only, for a batch without maps).
- ``y``: the acquired k-space, complex ``[B, C, H, W]`` or fastMRI's real view ``[B, C, H, W, 2]``.
- one prediction, in this order of preference: ``pred_kspace`` (``[B, C, H, W]``, complex or real view: the
  network's multi-coil k-space, e.g. VarNet's; compared as ``M k``), or ``image`` (complex ``[B, H, W]``,
  e.g. MoDL's; compared as ``A x = M F S x``, needs a ``SenseOperator``). A magnitude alone has no phase:
  a model that returns only one (fastMRI's ``VarNet.forward``) is run through
  ``recon.train_step.forward_model``, which also returns its k-space; without either prediction the loss is
  a :class:`recon.errors.InputError` naming what to pass.

Per sample ``b``: ``d_b = sum |M (k - y)|^2 / sum |M y|^2`` (``norm="l2"``, default), or SSDU's normalised
l1-l2 ``||M (k - y)||_2 / ||M y||_2 + ||M (k - y)||_1 / ||M y||_1`` (``norm="l1l2"``); the loss is the batch
mean (``reduction="none"``: ``[B]``). Units: none (relative residual energy). A sample with no signal under
the mask (an all-zero ``M y``) is normalised by 1 instead, so it contributes its plain residual (0 for an
empty mask) and the loss never divides by zero.
"""
from __future__ import annotations

import torch
from torch import nn

from recon.errors import InputError
from recon.physics import Sampling, as_kspace

__all__ = ["DataConsistencyLoss", "dc_loss", "NORMS"]

NORMS = ("l2", "l1l2")


def _where_positive(v: torch.Tensor) -> torch.Tensor:
    return torch.where(v > 0, v, torch.ones_like(v))


def dc_loss(physics, y, image: torch.Tensor | None = None, pred_kspace: torch.Tensor | None = None,
            norm: str = "l2", reduction: str = "mean") -> torch.Tensor:
    """Functional :class:`DataConsistencyLoss` (arguments as in the module docstring)."""
    if norm not in NORMS:
        raise InputError(None, f"DataConsistencyLoss norm must be one of {NORMS}, got {norm!r}")
    if physics is None or not hasattr(physics, "sampling"):
        raise InputError(None, "DataConsistencyLoss needs physics= (the batch's recon.physics.SenseOperator or "
                               "Sampling; recon.train_step.batch_physics builds it)")
    if y is None:
        raise InputError(None, "DataConsistencyLoss needs y= (the acquired k-space)")
    sampling = physics.sampling
    y = as_kspace(y, what="DataConsistencyLoss: y (acquired k-space)")
    if tuple(y.shape) != tuple(sampling.in_shape):
        raise InputError(None, f"DataConsistencyLoss: y {tuple(y.shape)} does not match the physics' k-space "
                               f"{list(sampling.in_shape)}")
    if pred_kspace is not None:
        k = sampling(as_kspace(pred_kspace, what="DataConsistencyLoss: pred_kspace", check_finite=False))
    elif image is not None:
        if isinstance(physics, Sampling):
            raise InputError(None, "DataConsistencyLoss: an image= prediction needs coil maps (physics is a "
                                   "Sampling without maps); pass pred_kspace= or a batch with sens_maps")
        if not torch.is_tensor(image) or not image.is_complex():
            raise InputError(None, f"DataConsistencyLoss: image= must be the complex image [B, H, W] (a magnitude "
                                   f"has no phase), got {getattr(image, 'dtype', type(image).__name__)}")
        k = physics(image.to(physics.sens_maps.dtype))
    else:
        raise InputError(None, "DataConsistencyLoss needs the complex reconstruction: pass image= (complex "
                               "[B, H, W]) or pred_kspace= ([B, C, H, W]); a magnitude has no phase (for a "
                               "magnitude-only model use recon.train_step.forward_model, which returns its k-space)")
    ym = sampling(y)
    resid = k - ym.to(k.dtype)
    dims = (1, 2, 3)
    if norm == "l2":
        d = resid.abs().square().sum(dims) / _where_positive(ym.abs().square().sum(dims))
    else:
        d = resid.abs().square().sum(dims).clamp_min(1e-30).sqrt() / _where_positive(ym.abs().square().sum(dims)).sqrt() \
            + resid.abs().sum(dims) / _where_positive(ym.abs().sum(dims))
    return d.mean() if reduction == "mean" else d


class DataConsistencyLoss(nn.Module):
    """``||M (A x) - M y||^2 / ||M y||^2`` per sample, batch mean (see the module docstring).

    Call: ``loss(output=None, target=None, *, physics, y, image=None, pred_kspace=None, **ignored)``; ``output``
    (the magnitude) and ``target`` are not used.
    """

    requires_target = False

    def __init__(self, norm: str = "l2", reduction: str = "mean"):
        super().__init__()
        if norm not in NORMS:
            raise InputError(None, f"DataConsistencyLoss norm must be one of {NORMS}, got {norm!r}")
        if reduction not in ("mean", "none"):
            raise InputError(None, f"DataConsistencyLoss reduction must be 'mean' or 'none', got {reduction!r}")
        self.norm, self.reduction = norm, reduction

    def forward(self, output=None, target=None, *, physics=None, y=None, image=None, pred_kspace=None,
                **_) -> torch.Tensor:
        return dc_loss(physics, y, image=image, pred_kspace=pred_kspace, norm=self.norm, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"norm={self.norm!r}"

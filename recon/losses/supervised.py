"""Supervised loss: ``l1 * mean|out - tgt| / data_range + ssim * (1 - SSIM)`` against the reference.

SSIM is fastMRI's ``SSIMLoss`` (7 x 7 window, ``data_range`` per sample). Both terms are normalised per sample
by the data range (the volume max), so the loss does not depend on the k-space scale. The loss call is
:mod:`recon.losses`'s; it needs ``target`` (``requires_target = True``) and uses ``data_range`` (ones if None).
"""
from __future__ import annotations

import torch
from torch import nn

from recon.errors import InputError

__all__ = ["SupervisedLoss", "supervised_loss"]


def supervised_loss(output: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | None = None,
                    l1: float = 1.0, ssim: float = 0.0, ssim_module: nn.Module | None = None) -> torch.Tensor:
    """Functional :class:`SupervisedLoss`: ``output``, ``target`` ``[B, 1, h, w]``, ``data_range`` ``[B]``."""
    if target is None:
        raise InputError(None, "the supervised loss needs a target (reconstruction_rss)")
    if data_range is None:
        data_range = torch.ones(output.shape[0], device=output.device)
    data_range = torch.as_tensor(data_range).to(output)
    total = output.new_zeros(())
    if l1:
        total = total + l1 * ((output - target).abs() / data_range.reshape(-1, 1, 1, 1).clamp_min(1e-12)).mean()
    if ssim:
        if ssim_module is None:
            from fastmri import SSIMLoss

            ssim_module = SSIMLoss()
        total = total + ssim * ssim_module.to(output.device)(output, target, data_range)
    return total


class SupervisedLoss(nn.Module):
    """``l1 * |out - tgt| / data_range + ssim * (1 - SSIM)`` (see the module docstring); weights >= 0, not both 0."""

    requires_target = True

    def __init__(self, l1: float = 1.0, ssim: float = 0.0):
        super().__init__()
        if l1 < 0 or ssim < 0 or l1 + ssim <= 0:
            raise InputError(None, f"loss weights must be >= 0 and not both 0, got l1={l1}, ssim={ssim}")
        self.l1, self.ssim = float(l1), float(ssim)
        self._ssim = None

    def forward(self, output, target=None, *, data_range=None, **_) -> torch.Tensor:
        if self.ssim and self._ssim is None:
            from fastmri import SSIMLoss

            self._ssim = SSIMLoss()
        return supervised_loss(output, target, data_range, self.l1, self.ssim, self._ssim)

    def extra_repr(self) -> str:
        return f"l1={self.l1}, ssim={self.ssim}"

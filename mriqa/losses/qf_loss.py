"""QF perceptual loss: ``1 - QF`` of a frozen QF predictor, differentiable in the image (paper section 5.3).

The QF predictor (:mod:`mriqa.predictor`) maps an image in [0, 1] to a map of JPEG quality factors / 100; a
reconstruction network trained to *raise* the predicted QF minimises ``1 - QF``. The sign is handled here:
the loss is ``mean over the batch of (1 - pooled QF)`` in [0, 1], lower = better (the trap of pyiqa's
``as_loss``, pyiqa issue #276, where a higher-is-better metric was minimised as is).

Input handling (the same normalisation as :mod:`mriqa.normalize` used in training, made differentiable):

============================  =====================================================================
input                         taken as
============================  =====================================================================
``[B, 1, H, W]`` real          magnitude images (``kind="mri"``: any scale, e.g. RSS reconstructions)
``[B, H, W]`` real / complex   the same (complex -> ``abs``, magnitude of a complex image)
``[B, 1, H, W]`` complex       the same
``[B, 3, H, W]`` real          RGB images in [0, 1] (``kind="photo"``), for the RGB model
============================  =====================================================================

- ``kind="mri"``: negative values -> 0, divide by the 99.5th percentile of each 2-D image (``torch.quantile``,
  linear interpolation as ``numpy.percentile``; computed on the detached image, so the window is a constant
  of the step and the gradient does not push the brightest pixels around; the maximum where that is 0, and
  1 for an all-zero image, which is then scored as the black image it is), clip to [0, 1].
- ``kind="photo"``: clip to [0, 1].
- 8-bit quantisation (``round(x * 255) / 255``, as in training) with a straight-through gradient (the
  forward pass is exactly what the predictor saw in training; the backward pass is the identity).
- Channels: BT.601 luma (then re-quantised) for the gray model on RGB input; repetition for the RGB model
  on gray input.

Pooling: ``"mean"`` (every map cell, the paper's whole-image score) or ``"foreground"``
(:func:`mriqa.pooling.pool_weights` on the detached normalised image: cells that see background weigh 0; an
image without foreground falls back to ``mean``). Weights are constants, so the pooled score stays
differentiable in the map.

The predictor is frozen: its parameters have ``requires_grad=False``, it stays in eval mode (``.train()``
on a parent module does not switch its batch norm to batch statistics), and it is moved lazily to the
input's device. An image smaller than the predictor's receptive field (28 x 28 px for QFNet) is a
:class:`recon.errors.InputError`.

Interface: recon's loss call (:mod:`recon.losses`), ``loss(output, target=None, *, physics, y, image,
pred_kspace, data_range)``; only ``output`` is used (``requires_target = False``: a reference-free loss).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from recon.errors import InputError

__all__ = ["QFLoss", "qf_loss", "normalize_for_qf", "QF_POOLS"]

QF_POOLS = ("mean", "foreground")


def _ste_quantize(x: torch.Tensor) -> torch.Tensor:
    """8-bit rounding in the forward pass, identity gradient (straight-through estimator)."""
    return x + (torch.round(x * 255.0) / 255.0 - x).detach()


def _as_bchw(x: torch.Tensor, source: str | None = None) -> tuple[torch.Tensor, str]:
    """Input -> (real float ``[B, C, H, W]``, default kind)."""
    if not torch.is_tensor(x):
        raise InputError(source, f"QFLoss expects a torch tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputError(source, f"QFLoss expects [B, 1, H, W] / [B, H, W] magnitude (real or complex) or "
                                 f"[B, 3, H, W] RGB, got shape {tuple(x.shape)}")
    if x.is_complex():
        if x.shape[1] != 1:
            raise InputError(source, "QFLoss: a complex input must be one image per sample ([B, H, W])")
        x = x.abs()
    if not x.is_floating_point():
        raise InputError(source, f"QFLoss expects a float or complex tensor, got {x.dtype}")
    return x.float(), ("mri" if x.shape[1] == 1 else "photo")


def normalize_for_qf(x: torch.Tensor, channels: int, kind: str | None = None,
                     source: str | None = None) -> torch.Tensor:
    """Differentiable :func:`mriqa.normalize.as_model_input` for a batch: ``x`` (see the module table) ->
    float32 ``[B, channels, H, W]`` in [0, 1] on the 1/255 grid (straight-through gradient)."""
    x, default_kind = _as_bchw(x, source)
    kind = kind or default_kind
    if kind not in ("mri", "photo"):
        raise InputError(source, f"QFLoss kind must be 'mri' or 'photo', got {kind!r}")
    if not bool(torch.isfinite(x.detach()).all()):
        raise InputError(source, "QFLoss input has NaN/Inf values")
    if kind == "mri":
        if x.shape[1] != 1:
            raise InputError(source, "kind='mri' expects one magnitude channel, got 3 (use kind='photo')")
        mag = x.clamp_min(0)
        from mriqa.normalize import ROBUST_PERCENTILE

        flat = mag.detach().flatten(1)
        scale = torch.quantile(flat.double(), ROBUST_PERCENTILE / 100.0, dim=1).to(mag.dtype)
        scale = torch.where(scale > 0, scale, flat.amax(1))
        # an all-zero image (a network's first steps) is legitimate: score it as the black image it is
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        unit = (mag / scale.reshape(-1, 1, 1, 1)).clamp(0, 1)
    else:
        unit = x.clamp(0, 1)
    unit = _ste_quantize(unit)
    if channels == 1 and unit.shape[1] == 3:
        from mriqa.normalize import LUMA_601

        w = torch.tensor(LUMA_601, dtype=unit.dtype, device=unit.device).reshape(1, 3, 1, 1)
        unit = _ste_quantize((unit * w).sum(1, keepdim=True))
    elif channels == 3 and unit.shape[1] == 1:
        unit = unit.expand(-1, 3, -1, -1)
    return unit


class QFLoss(nn.Module):
    """``mean_b (1 - QF_b)`` of a frozen QF predictor; see the module docstring.

    Args:
        model: ``"gray"`` / ``"rgb"`` (shipped weights), a ``.safetensors`` path, a loaded
            :class:`mriqa.predictor.QFPredictor` or a QFNet-like ``nn.Module`` (input ``[B, C, H, W]`` in
            [0, 1] -> map ``[B, 1, h, w]`` in [0, 1]).
        pool: ``"mean"`` or ``"foreground"``.
        kind: ``None`` (auto: one channel -> ``"mri"``, three -> ``"photo"``), ``"mri"`` or ``"photo"``.
        reduction: ``"mean"`` (scalar) or ``"none"`` (``[B]``).
    Call: ``loss(output, target=None, **ignored) -> 0-d tensor`` (``[B]`` for ``reduction="none"``),
    differentiable in ``output``; no gradient reaches the predictor; the other keywords of recon's loss call
    (``physics``, ``y``, ...) are ignored.
    """

    requires_target = False

    def __init__(self, model: Any = "gray", pool: str = "mean", kind: str | None = None,
                 reduction: str = "mean"):
        super().__init__()
        if pool not in QF_POOLS:
            raise InputError(None, f"QFLoss pool must be one of {QF_POOLS}, got {pool!r}")
        if reduction not in ("mean", "none"):
            raise InputError(None, f"QFLoss reduction must be 'mean' or 'none', got {reduction!r}")
        if kind not in (None, "mri", "photo"):
            raise InputError(None, f"QFLoss kind must be None, 'mri' or 'photo', got {kind!r}")
        if isinstance(model, (str, os.PathLike)):
            from mriqa.predictor import load_predictor

            predictor = load_predictor(model, device="cpu")
            net, self.model_name = predictor.model, predictor.name
        elif isinstance(model, nn.Module):
            net, self.model_name = model, type(model).__name__
        elif hasattr(model, "model") and isinstance(model.model, nn.Module):  # a QFPredictor
            net, self.model_name = model.model, getattr(model, "name", "predictor")
        else:
            raise InputError(None, f"QFLoss model must be 'gray', 'rgb', a weights path, a QFPredictor or a "
                                   f"module, got {type(model).__name__}")
        for p in net.parameters():
            p.requires_grad_(False)
        self.net = net.eval()
        self.pool = pool
        self.kind = kind
        self.reduction = reduction

    # the predictor is frozen: parent.train() must not switch its batch norm to batch statistics
    def train(self, mode: bool = True) -> "QFLoss":
        super().train(mode)
        self.net.eval()
        return self

    @property
    def in_channels(self) -> int:
        return int(getattr(self.net, "in_channels", 1))

    @property
    def min_input_size(self) -> int:
        return int(getattr(self.net, "min_input_size", getattr(self.net, "receptive_field", 1)))

    def qf_maps(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised input ``[B, C, H, W]``, QF maps ``[B, h, w]`` in [0, 1]), differentiable in ``output``."""
        x, _ = _as_bchw(output)
        h, w = x.shape[-2:]
        if min(h, w) < self.min_input_size:
            raise InputError(None, f"QFLoss: image is {h}x{w} pixels, smaller than the QF model's minimum input "
                                   f"{self.min_input_size}x{self.min_input_size} (its receptive field)")
        unit = normalize_for_qf(output, self.in_channels, self.kind)
        device = unit.device
        first = next(self.net.parameters(), None)
        if first is not None and first.device != device:
            self.net.to(device)
        with torch.autocast(device_type=device.type, enabled=False):
            maps = self.net(unit.float())[:, 0]
        return unit, maps

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        """Pooled QF ``[B]`` in [0, 1] (higher = better), differentiable in ``output``."""
        unit, maps = self.qf_maps(output)
        if self.pool == "mean":
            return maps.mean(dim=(-2, -1))
        from mriqa import pooling

        geometry = pooling.MapGeometry.for_model(self.net, tuple(unit.shape[-2:]), tuple(maps.shape[-2:]))
        img = unit.detach().permute(0, 2, 3, 1).cpu().numpy()
        img = img[..., 0] if img.shape[-1] == 1 else img
        weights = pooling.pool_weights(maps.detach().cpu().numpy(), "foreground", image=img, geometry=geometry)
        empty = weights.sum(axis=(-2, -1)) <= 0
        weights[empty] = 1.0
        return pooling.weighted_mean(maps, np.ascontiguousarray(weights))

    def forward(self, output: torch.Tensor, target: torch.Tensor | None = None, **_) -> torch.Tensor:
        loss = 1.0 - self.scores(output)
        return loss.mean() if self.reduction == "mean" else loss

    def extra_repr(self) -> str:
        return f"model={self.model_name!r}, pool={self.pool!r}, kind={self.kind!r}"


def qf_loss(output: torch.Tensor, model: Any = "gray", pool: str = "mean", kind: str | None = None,
            reduction: str = "mean") -> torch.Tensor:
    """Functional form of :class:`QFLoss` (builds the loss each call; keep a :class:`QFLoss` in a loop)."""
    return QFLoss(model, pool=pool, kind=kind, reduction=reduction)(output)

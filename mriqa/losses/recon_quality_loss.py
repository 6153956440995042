"""Reconstruction-quality loss: ``1 - score`` of the frozen reconstruction-quality model, differentiable in the
image.

The reconstruction-quality model (:mod:`mriqa.models.reconq`, ``RQNet``, shipped as ``"recon"``) maps an MRI
magnitude to a map of predicted local SSIM against the fully sampled reference it never sees; its score is the
mean of the map, in [0, 1], higher = better. A reconstruction network trained to *raise* that score minimises

    ``loss = mean over the batch of (1 - score)``  in [0, 1], **lower = better**

(the sign is handled here, as :class:`mriqa.losses.QFLoss` does for the QF predictor).

It can be gamed: as the only term beside data consistency (mode ``dc+qf`` with this loss,
``configs/modl-dc-rq.yaml``) MoDL learned to paint gyrus-like stripes that the model scores 95-97 while PSNR fell
10 dB (``docs/recon/training_eval_rq.md``). Use it beside a loss that anchors the image (SSDU, supervision), or
with ``kspace_check=True`` (below), with which the same recipe kept DC alone's PSNR (30.74 vs 30.72 dB at R = 4,
25.86 vs 25.80 at R = 8; ``docs/recon/training_eval_rqk.md``).

Input handling: ``[B, 1, H, W]`` or ``[B, H, W]``, real or complex (complex -> ``abs``), any scale; normalised by
:func:`mriqa.models.reconq.normalize_magnitude`, exactly as in the model's training and in
:class:`mriqa.predictor.QFPredictor` (magnitude / its own 99.5th percentile, clipped to [0, 2], no quantisation).
That normalisation is differentiable (``kthvalue``, division, ``clamp``), including through the percentile, so
the score is invariant to the scale of the output and the gradient knows it. An all-zero output (a network's
first steps) gives a finite loss and a finite (zero) gradient. NaN/Inf, more than one channel, or an image
smaller than the model's minimum input (32 x 32 px for RQNet) are :class:`recon.errors.InputError`.

The model is frozen: its parameters have ``requires_grad=False``, it stays in eval mode (``.train()`` on a parent
module does not change that), runs in float32 outside autocast and is moved lazily to the input's device. As a
submodule of a Lightning module it is replicated by DDP like :class:`QFLoss`'s predictor.

**Scoring the data-consistent image** (``data_consistent=True``): the score is taken of the network's complex
``image`` with its measured samples replaced by the acquired ones, one step to data consistency through the loss
physics ``A = M F S`` (``recon.physics.SenseOperator``),

    ``x_dc = x + A^H (y - A x) / sum_c |S_c|^2``       (where the maps are non-zero; ``x`` elsewhere)

which, for each coil, keeps the network's k-space where nothing was measured and puts the measurement where
something was. The quality term then judges only what the network invents (its unmeasured k-space) and cannot
pay for a higher score by blurring or repainting what was measured; the data-consistency term keeps the output
itself near the data. Measured, it does not stop the gaming above: DC + 0.01 x this term still paints the
stripes, in the unmeasured k-space (R = 4 PSNR 20.2 vs 30.7 dB for DC alone; docs/recon/training_eval_rq.md).
Needs ``physics`` (a SenseOperator with one map set), ``y`` and the complex ``image`` of the loss call (MoDL gives
it; ``recon.train_step.compute_loss`` passes them); the magnitude is centre-cropped to the output's size. Meant for
mode ``dc+qf``: in ``ssdu+qf`` the loss physics is the held-back mask.

**With the k-space check** (``kspace_check=True``): the loss is ``1 - combined score``, the score
:func:`mriqa.recon_quality.kspace.combined_score` gives a reconstruction when its k-space is at hand, with a
training loss's own ``tau``, ``power`` and bands (:data:`LOSS_TAU` 0.02, :data:`LOSS_POWER` 0.5,
:data:`LOSS_BANDS` 8: a weaker k-space term lets the image score be gamed; measured there),

    ``1 - score(output) * (1 + nmse / tau) ** -power``   (defaults ``tau`` LOSS_TAU, ``power`` LOSS_POWER)

with ``nmse`` the k-space check's estimate (:mod:`recon.crossval`) from one fold per step: of the samples outside
the calibration centre (whole lines of line masks) one fold in :data:`~mriqa.recon_quality.kspace.FOLDS` is held
out (drawn from the step's seeds, so a resumed run repeats it), the network is re-run on the rest (``refit``,
:class:`recon.train_step.Refit`: the trainers hand it to a loss with ``needs_refit``), and its ``F S x``
(or VarNet's predicted k-space) is compared with the held-out samples: ``relative error x U / (M + U)`` (``U``
the estimated unmeasured energy, ``M`` the measured; the relative error per radial band, applied to ``U`` at the
same radii: ``recon.crossval.heldout_weights``). Painting structure where nothing was measured now costs
held-out error, as in SSDU. It doubles the network passes of a step (``scripts/bench_quality_loss.py``: 2.0x).
Measured in docs/recon/training_eval_rqk.md.

Interface: recon's loss call (:mod:`recon.losses`), ``loss(output, target=None, *, physics, y, image,
pred_kspace, data_range)``; only ``output`` is used (and ``physics``, ``y``, ``image`` with ``data_consistent``;
``requires_target = False``: a reference-free loss). In a config: ``qf_loss: {factory:
"mriqa.losses:ReconQualityLoss", kwargs: {model: recon}}`` (``train.qf_loss`` of
the ``+qf`` modes); in code, ``CombinedLoss({"dc": 1.0, "recon": 0.05})`` or ``{"qf": (0.05,
ReconQualityLoss())}``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from recon.errors import InputError

__all__ = ["ReconQualityLoss", "recon_quality_loss", "data_consistent_magnitude", "heldout_nmse", "LOSS_TAU",
           "LOSS_POWER", "LOSS_BANDS"]

# The combination's tau, power and bands as a training loss, kept apart from the ranking's NMSE_BANDS / COMBINED_TAU /
# COMBINED_POWER (chosen for ranking, not for training): the k-space term must weigh enough. DC + 0.01 x this loss
# (configs/modl-dc-rqk.yaml) against DC alone, held out, R = 4 / 8. Stage-1 recon model (until 2026-12-06), 8 bands:
# tau 0.02, power 0.25 +0.26 / +0.05 dB (docs/recon/training_eval_rqk-b8-t002.md); tau 0.1 -0.40 / -0.20 dB
# (-b8-t01.md; one band: -0.63 / -0.32, -b1-t01.md): with a weaker k-space discount the term starts to be gamed.
# Stage-2 recon model (shipped 2026-12-06), 8 bands: tau 0.02, power 0.25 -0.23 / -0.01 dB (-snrwide.md); tau 0.01
# +0.21 / +0.06 (-snrwide-t001.md); power 0.5 +0.83 / +0.22 (-snrwide-p05.md; seed 2 +1.09 / +0.41, -snrwide-p05-s2.md),
# also the best validation PSNR of the three during training. Beside SSDU: a tie at weight 0.01 (-snrwide-ssdu-p05.md,
# -s2.md), at or above SSDU alone with both seeds at weight 0.1 (-snrwide-ssdu-p05-w01*.md).
LOSS_TAU = 0.02
LOSS_POWER = 0.5
LOSS_BANDS = 8


def data_consistent_magnitude(image: torch.Tensor | None, physics, y: torch.Tensor | None,
                              size: tuple[int, int] | None = None) -> torch.Tensor:
    """``|x + A^H (y - A x) / sum_c |S_c|^2|`` as ``[B, 1, h, w]`` (module docstring), differentiable in ``image``.

    Args:
        image: complex ``[B, H, W]`` reconstruction ``x``.
        physics: ``recon.physics.SenseOperator`` ``A = M F S`` (one map set) of the acquired mask.
        y: acquired k-space, complex ``[B, C, H, W]`` (or fastMRI's real view).
        size: ``(h, w)`` to centre-crop to (default: the full image).
    """
    from recon.physics import SenseOperator, as_kspace
    from recon.select import center_crop

    if not isinstance(physics, SenseOperator) or physics.sets:
        raise InputError(None, "ReconQualityLoss(data_consistent=True) needs physics= a recon.physics.SenseOperator "
                               "with one map set (a batch with sens_maps)")
    if y is None or not torch.is_tensor(image) or not image.is_complex():
        raise InputError(None, "ReconQualityLoss(data_consistent=True) needs y= (the acquired k-space) and image= "
                               "(the complex reconstruction [B, H, W]; a magnitude has no phase)")
    x = image.to(physics.sens_maps.dtype)
    y = as_kspace(y, what="ReconQualityLoss: y (acquired k-space)").to(x.dtype)
    weight = physics.sens_maps.abs().square().sum(1)
    inv = torch.where(weight > 1e-6, 1.0 / weight.clamp_min(1e-6), torch.zeros_like(weight))
    x_dc = x + physics.adjoint(y - physics(x)) * inv  # A^H masks the residual itself
    mag = x_dc.abs().unsqueeze(1)
    return mag if size is None else center_crop(mag, tuple(size))


def heldout_nmse(refit, folds: int | None = None, call: int = 0, bands: int | None = None) -> torch.Tensor:
    """The k-space check's NMSE estimate ``[B]`` of a training step's network from one held-out fold per sample
    (module docstring), differentiable in the network's parameters through ``refit``
    (:class:`recon.train_step.Refit`). The fold is drawn from ``refit.seeds`` (the trainers': a resumed run
    repeats it), or from ``call`` and the sample's index when there are none (a loop of your own). The held-out
    error is weighed per ``bands`` radial bands (``recon.crossval.heldout_weights``; default :data:`LOSS_BANDS`). A
    sample with no sample outside its calibration centre gets 0."""
    from mriqa.recon_quality.kspace import FOLDS
    from recon.calibration import heldout_layout
    from recon.crossval import fold_masks, heldout_weights
    from recon.physics import SenseOperator

    if refit is None:
        raise InputError(None, "ReconQualityLoss(kspace_check=True) needs refit= (the network re-run on part of its "
                               "samples): train with recon.train_step.compute_loss, the trainer or the Lightning "
                               "module, which pass it")
    y, mask = refit.y, refit.mask
    b = y.shape[0]
    keeps, helds, weights = [], [], []
    for i in range(b):
        k = y[i].detach().cpu().numpy()
        m = mask[i].detach().cpu().numpy()
        layout = heldout_layout(k, m)
        points = layout.points
        seed = refit.seeds[i] if refit.seeds else int(call) * 1_000_003 + i
        held_folds = fold_masks(layout, int(folds or FOLDS), seed=int(seed) & 0xFFFFFFFF)
        held = held_folds[0] if held_folds else np.zeros(points.shape, bool)
        weights.append(torch.from_numpy(heldout_weights(k, points, held, int(bands or LOSS_BANDS))))
        keeps.append(mask[i] * torch.from_numpy(~held).to(mask)[None])
        helds.append(torch.from_numpy(held))
    keep = torch.stack(keeps)
    held = torch.stack(helds).to(y.device)[:, None]  # [B, 1, H, W]
    pred = refit(keep)
    if pred.get("image") is not None and refit.sens_maps is not None:
        predicted = SenseOperator(refit.sens_maps, held.float())(pred["image"])
    elif pred.get("pred_kspace") is not None:
        predicted = pred["pred_kspace"] * held
    else:
        raise InputError(None, "ReconQualityLoss(kspace_check=True) needs a network that returns a complex image "
                               "(with sens_maps in the batch) or predicted k-space (MoDL, VarNet)")
    error = (predicted - y * held).abs().square().sum(dim=1)  # [B, H, W]
    return (error.float() * torch.stack(weights).to(device=error.device, dtype=torch.float32)).sum(dim=(1, 2))


def _as_b1hw(x: torch.Tensor) -> torch.Tensor:
    """Input -> real float32 magnitude ``[B, 1, H, W]`` (differentiable)."""
    if not torch.is_tensor(x):
        raise InputError(None, f"ReconQualityLoss expects a torch tensor, got {type(x).__name__}")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] != 1:
        raise InputError(None, f"ReconQualityLoss expects [B, 1, H, W] or [B, H, W] magnitudes (real or complex), "
                               f"got shape {tuple(x.shape)}")
    if x.is_complex():
        x = x.abs()
    if not x.is_floating_point():
        raise InputError(None, f"ReconQualityLoss expects a float or complex tensor, got {x.dtype}")
    if not bool(torch.isfinite(x.detach()).all()):
        raise InputError(None, "ReconQualityLoss input has NaN/Inf values")
    return x.float()


def _resolve(model: Any) -> tuple[nn.Module, str]:
    if isinstance(model, (str, os.PathLike)):
        from mriqa.predictor import load_predictor

        predictor = load_predictor(model, device="cpu")
        net, name = predictor.model, predictor.name
    elif isinstance(model, nn.Module):
        net, name = model, type(model).__name__
    elif hasattr(model, "model") and isinstance(model.model, nn.Module):  # a QFPredictor
        net, name = model.model, getattr(model, "name", "predictor")
    else:
        raise InputError(None, f"ReconQualityLoss model must be 'recon', a weights path, a predictor or a module, "
                               f"got {type(model).__name__}")
    if getattr(net, "input_normalization", None) != "magnitude":
        raise InputError(None, f"ReconQualityLoss needs a reconstruction-quality model (rqnet), got "
                               f"{type(net).__name__} ({name}); use QFLoss for a QF model")
    return net, name


class ReconQualityLoss(nn.Module):
    """``mean_b (1 - score_b)`` of the frozen reconstruction-quality model, lower = better (module docstring).

    Args:
        model: ``"recon"`` (shipped weights), an rqnet ``.safetensors`` path, a loaded predictor
            (:func:`mriqa.load_predictor`) of one, or an RQNet-like module (``input_normalization =
            "magnitude"``; normalised ``[B, 1, H, W]`` -> map ``[B, 1, h, w]`` in [0, 1]).
        reduction: ``"mean"`` (scalar) or ``"none"`` (``[B]``).
        data_consistent: score ``x_dc`` (the image with the acquired samples put back; module docstring)
            instead of ``output``.
        kspace_check: ``1 - combined score`` with the k-space check's NMSE estimate from one held-out fold per
            call (module docstring); needs the call's ``refit``. ``folds``: default ``FOLDS`` (4); ``bands``: of
            the estimate, default :data:`LOSS_BANDS`; ``tau``, ``power``: the combination's, default
            :data:`LOSS_TAU` / :data:`LOSS_POWER` (not the ranking's ``NMSE_BANDS`` / ``COMBINED_TAU`` /
            ``COMBINED_POWER``).
    Call: ``loss(output, target=None, *, physics=None, y=None, image=None, refit=None, **ignored) -> 0-d tensor``
    (``[B]`` for ``reduction="none"``), differentiable in ``output`` (and through ``refit`` in the network's
    parameters); no gradient reaches the quality model. ``.last``: ``image`` (mean score) and ``kspace_nmse``.
    """

    requires_target = False

    def __init__(self, model: Any = "recon", reduction: str = "mean", data_consistent: bool = False,
                 kspace_check: bool = False, folds: int | None = None, tau: float | None = None,
                 power: float | None = None, bands: int | None = None):
        super().__init__()
        if data_consistent and kspace_check:
            raise InputError(None, "ReconQualityLoss: choose data_consistent or kspace_check, not both")
        self.kspace_check = bool(kspace_check)
        self.folds = folds
        self.bands = bands
        self.tau = float(LOSS_TAU if tau is None else tau)
        self.power = float(LOSS_POWER if power is None else power)
        if self.tau <= 0 or self.power <= 0:
            raise InputError(None, f"ReconQualityLoss: tau and power must be > 0, got {self.tau:g}, {self.power:g}")
        self.calls = 0  # draws the held-out fold when the call brings no seeds
        self.last: dict[str, float] = {}
        if reduction not in ("mean", "none"):
            raise InputError(None, f"ReconQualityLoss reduction must be 'mean' or 'none', got {reduction!r}")
        net, self.model_name = _resolve(model)
        for p in net.parameters():
            p.requires_grad_(False)
        self.net = net.eval()
        self.reduction = reduction
        self.data_consistent = bool(data_consistent)

    # the model is frozen: parent.train() must not switch it to training mode
    def train(self, mode: bool = True) -> "ReconQualityLoss":
        super().train(mode)
        self.net.eval()
        return self

    @property
    def min_input_size(self) -> int:
        return int(getattr(self.net, "min_input_size", 1))

    def quality_maps(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised input ``[B, 1, H, W]``, quality maps ``[B, h, w]`` in [0, 1]), differentiable in
        ``output``."""
        from mriqa.models.reconq import normalize_magnitude

        x = _as_b1hw(output)
        h, w = x.shape[-2:]
        if min(h, w) < self.min_input_size:
            raise InputError(None, f"ReconQualityLoss: image is {h}x{w} pixels, smaller than the recon model's "
                                   f"minimum input {self.min_input_size}x{self.min_input_size}")
        device = x.device
        first = next(self.net.parameters(), None)
        if first is not None and first.device != device:
            self.net.to(device)
        with torch.autocast(device_type=device.type, enabled=False):
            unit = normalize_magnitude(x)
            maps = self.net(unit.float())[:, 0]
        return unit, maps

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` in [0, 1] (the mean of each map; higher = better), differentiable in ``output``."""
        return self.quality_maps(output)[1].mean(dim=(-2, -1))

    @property
    def needs_refit(self) -> bool:
        return self.kspace_check

    def forward(self, output: torch.Tensor, target: torch.Tensor | None = None, *, physics=None, y=None,
                image: torch.Tensor | None = None, refit=None, **_) -> torch.Tensor:
        if self.data_consistent:
            output = data_consistent_magnitude(image, physics, y, tuple(output.shape[-2:]))
        score = self.scores(output)
        self.last = {"image": float(score.detach().mean())}
        if self.kspace_check:
            self.calls += 1
            nmse = heldout_nmse(refit, folds=self.folds, call=self.calls, bands=self.bands)
            score = score * (1.0 + nmse.to(score) / self.tau) ** -self.power
            self.last["kspace_nmse"] = float(nmse.detach().mean())
        loss = 1.0 - score
        return loss.mean() if self.reduction == "mean" else loss

    def extra_repr(self) -> str:
        combination = (f", bands={self.bands or 'default'}, tau={self.tau:g}, power={self.power:g}"
                       if self.kspace_check else "")
        return (f"model={self.model_name!r}, reduction={self.reduction!r}, data_consistent={self.data_consistent}, "
                f"kspace_check={self.kspace_check}{combination}")


def recon_quality_loss(output: torch.Tensor, model: Any = "recon", reduction: str = "mean") -> torch.Tensor:
    """Functional form of :class:`ReconQualityLoss` (builds the loss each call; keep a module in a loop)."""
    return ReconQualityLoss(model, reduction=reduction)(output)

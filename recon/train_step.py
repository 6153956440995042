"""The training step of every reconstruction network here, plain PyTorch: ``recon.training.trainer.Trainer``,
the Lightning module (``recon.pl_module``) and your own loop all run it.

>>> from recon.train_step import train_step
>>> from mriqa.losses import CombinedLoss
>>> loss = CombinedLoss({"dc": 1.0, "qf": 0.05})                       # reference-free: DC + QF
>>> stats = train_step(model, batch, loss, optimizer, mode="dc+qf")   # one optimiser step; returns floats

**Batches** (:func:`as_batch`) come as they are made: ``recon.transforms.collate`` dicts of
:class:`recon.transforms.ModlSample` (complex ``masked_kspace`` ``[B, C, H, W]``, float ``mask``
``[B, 1, 1|H, W]``, ``sens_maps``, ``target`` ``[B, h, w]`` or None, ``max_value`` ``[B]``, ``crop_size``, ...),
or fastMRI's own ``VarNetSample`` batches from ``fastmri.data.transforms.VarNetDataTransform`` (real-view
k-space ``[B, C, H, W, 2]``, bool mask ``[B, 1, 1, W, 1]``, no maps); :func:`as_batch` turns either into the
first layout (complex64 k-space, float32 mask ``[B, 1, H|1, W]``, ``crop_size`` ``(h, w)``, ``target`` None when
there is none).

**Physics** (:func:`batch_physics`): the measurement operator of a batch, built once per step and handed to
every loss: ``recon.physics.SenseOperator(sens_maps, mask)``, or ``recon.physics.Sampling(mask)`` when the
batch has no maps (fastMRI's VarNet batches). MoDL's unrolls run on the same operator.

**Model adapters** (:func:`forward_model`): one call for every supported network, returning a dict

- ``output``: float32 magnitude ``[B, 1, h, w]`` centre-cropped to ``crop_size`` (what losses and metrics see),
- ``image``: complex64 ``[B, H, W]`` coil-combined image, or None,
- ``pred_kspace``: complex64 ``[B, C, H, W]`` predicted multi-coil k-space, or None,

for ``recon.modl.MoDL`` (``image``: the unrolled complex image), ``fastmri.models.VarNet`` (``pred_kspace``:
the last cascade's k-space, computed by running VarNet's own sensitivity network and cascades, so nothing
hooks into it; ``output``: its RSS, exactly VarNet's ``forward``) and any other module called fastMRI-style
``model(masked_kspace, mask, num_low_frequencies)`` returning a magnitude (then a data-consistency loss is an
``InputError`` naming what it needs: a magnitude has no phase).

**Losses**: one callable, or a dict ``{name: callable}`` / ``{name: (weight, callable)}`` (summed by
:class:`recon.losses.WeightedSum`), all called as in :mod:`recon.losses`: ``loss(output, target, *, physics,
y, image, pred_kspace, data_range)``; ``target`` only in ``mode="supervised"`` and only for losses with
``requires_target``.

**Refit** (:class:`Refit`): a loss with ``needs_refit = True`` also gets ``refit``, the step's network re-run on
a subset of the samples it was given (``refit(keep)``, a :func:`forward_model` dict): what a k-space
cross-validation term needs (``mriqa.losses.ReconQualityLoss(kspace_check=True)``), as deepinv hands the model
to its splitting losses. Other losses never see it.

**Modes**: ``"supervised"`` / ``"dc"`` / ``"dc+qf"`` give the network all acquired samples; ``"ssdu"`` /
``"ssdu+qf"`` split them (:mod:`recon.ssdu`): the network sees Theta (its physics has mask Theta), the losses
get ``y`` = all acquired k-space and a physics with mask Lambda (so a data-consistency loss is SSDU's loss on
the held-back samples).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from recon.errors import InputError
from recon.losses.combine import WeightedSum, requires_target
from recon.physics import Sampling, SenseOperator, as_kspace, as_mask
from recon.select import center_crop

__all__ = ["as_batch", "batch_physics", "forward_model", "Refit", "ssdu_inputs", "ssdu_seeds", "compute_loss",
           "train_step", "model_kind", "build_model", "save_model", "load_model", "MODES", "VARNET_FORMAT"]

MODES = ("supervised", "dc", "ssdu", "dc+qf", "ssdu+qf")
VARNET_FORMAT = "fastmri-varnet"


def _first_int(v) -> int:
    if torch.is_tensor(v):
        return int(v.reshape(-1)[0])
    if isinstance(v, (list, tuple)):
        return _first_int(v[0])
    return int(v)


def _crop_size(crop, fallback: tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` from ``(h, w)``, our collate's list of per-sample tuples, fastMRI's collated
    ``[tensor[B], tensor[B]]`` or a tensor ``[2]`` / ``[B, 2]``."""
    if crop is None:
        return fallback
    if torch.is_tensor(crop):
        crop = crop.tolist()
    if isinstance(crop, (list, tuple)) and crop and isinstance(crop[0], (list, tuple)):
        crop = crop[0]
    return _first_int(crop[0]), _first_int(crop[1])


def as_batch(batch) -> dict[str, Any]:
    """The batch as a dict in this module's layout (see the module docstring); idempotent, inputs not modified."""
    if hasattr(batch, "_asdict"):  # fastMRI's VarNetSample (or our ModlSample) batches are namedtuples
        batch = batch._asdict()
    if not isinstance(batch, Mapping) or "masked_kspace" not in batch or "mask" not in batch:
        raise InputError(None, f"a training batch must be a mapping or namedtuple with masked_kspace and mask, got "
                               f"{type(batch).__name__}")
    out = dict(batch)
    y = as_kspace(out["masked_kspace"], what="batch masked_kspace", check_finite=False)
    out["masked_kspace"] = y
    out["mask"] = as_mask(out["mask"], tuple(y.shape), y.device, nonempty=False).expand(y.shape[0], -1, -1, -1)
    maps = out.get("sens_maps")
    if maps is not None:
        if not torch.is_tensor(maps) or not maps.is_complex():
            raise InputError(None, f"batch sens_maps must be complex [B, C, H, W], got {getattr(maps, 'dtype', maps)}")
        out["sens_maps"] = maps.to(device=y.device, dtype=torch.complex64)
    target = out.get("target")
    out["target"] = target if torch.is_tensor(target) and target.ndim >= 3 else None
    if out.get("max_value") is not None:
        out["max_value"] = torch.as_tensor(out["max_value"]).to(device=y.device, dtype=torch.float32).reshape(-1)
    out["crop_size"] = _crop_size(out.get("crop_size"), tuple(y.shape[-2:]))
    return out


def batch_physics(batch: Mapping, mask: torch.Tensor | None = None):
    """The measurement operator of ``batch`` (made by :func:`as_batch`) with ``mask`` (default the batch's):
    ``SenseOperator(sens_maps, mask)``, or ``Sampling(mask)`` on the k-space when the batch has no maps."""
    mask = batch["mask"] if mask is None else mask
    if batch.get("sens_maps") is not None:
        return SenseOperator(batch["sens_maps"], mask)
    return Sampling(mask, tuple(batch["masked_kspace"].shape))


def model_kind(model: torch.nn.Module) -> str:
    """``"modl"``, ``"varnet"`` or ``"generic"`` (unwraps DDP / Lightning ``.module``)."""
    from recon.modl import MoDL

    m = getattr(model, "module", model)
    if isinstance(m, MoDL):
        return "modl"
    try:
        from fastmri.models import VarNet
    except ImportError:  # pragma: no cover - fastmri is a dependency
        VarNet = ()
    if VarNet and isinstance(m, VarNet):
        return "varnet"
    return "generic"


def forward_model(model: torch.nn.Module, batch, num_unrolls: int | None = None, amp: bool = False,
                  amp_dtype: torch.dtype = torch.bfloat16, physics: SenseOperator | None = None) -> dict[str, Any]:
    """Run ``model`` on ``batch`` (any layout of :func:`as_batch`); ``physics``: MoDL's operator (default built
    from the batch's maps and mask). Returns ``output`` / ``image`` / ``pred_kspace`` (module docstring)."""
    batch = as_batch(batch)
    y, mask = batch["masked_kspace"], batch["mask"]
    kind = model_kind(model)
    net = getattr(model, "module", model)
    dev = y.device.type
    crop = batch["crop_size"]
    if kind == "modl":
        if physics is None:
            if batch.get("sens_maps") is None:
                raise InputError(None, "MoDL needs sens_maps in the batch (fastMRI's VarNetDataTransform makes none: "
                                       "use recon.transforms.ModlDataTransform or recon.modl.estimate_sens_maps)")
            physics = SenseOperator(batch["sens_maps"], mask)
        with torch.autocast(device_type=dev, dtype=amp_dtype, enabled=amp):
            image = net.unroll(y * mask, physics, num_unrolls=num_unrolls)
        out = net.magnitude(image).float().unsqueeze(1)
        return {"output": center_crop(out, crop), "image": image if image.ndim == 3 else None, "pred_kspace": None}
    nlf = batch.get("num_low_frequencies")
    if torch.is_tensor(nlf):
        nlf = int(nlf.min())
    k = torch.view_as_real(y * mask)  # fastMRI's layouts: [B, C, H, W, 2] and a bool [B, 1, 1|H, W, 1] mask
    m = mask.unsqueeze(-1).bool()
    if kind == "varnet":
        import fastmri

        with torch.autocast(device_type=dev, dtype=amp_dtype, enabled=amp):
            sens = net.sens_net(k, m, nlf)
            kp = k.clone()
            for cascade in net.cascades:
                kp = cascade(kp, k, m, sens)
        kp = kp.float()
        out = fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(kp)), dim=1).unsqueeze(1)
        return {"output": center_crop(out, crop), "image": None, "pred_kspace": torch.view_as_complex(kp.contiguous())}
    with torch.autocast(device_type=dev, dtype=amp_dtype, enabled=amp):
        out = model(k, m, nlf)
    out = out.float()
    if out.ndim == 3:
        out = out.unsqueeze(1)
    return {"output": center_crop(out, crop), "image": None, "pred_kspace": None}


class Refit:
    """The network of one training step, re-run on part of what it was given.

    ``refit(keep)`` runs :func:`forward_model` on ``batch`` with k-space ``masked_kspace * keep`` and mask
    ``keep`` (float ``[B, 1, H|1, W]``, inside ``mask``; MoDL's operator built with it), with the step's
    unrolls and autocast, and returns its dict (``output``, ``image``, ``pred_kspace``), differentiable in the
    model's parameters. Attributes: ``y`` (complex ``[B, C, H, W]``, the k-space the network was given),
    ``mask`` (its mask ``[B, 1, H|1, W]``), ``sens_maps`` (or None), ``seeds`` (one int per sample: the
    step's seeds, for a loss that draws which samples to hold out; None outside the trainers).
    """

    def __init__(self, model: torch.nn.Module, batch: Mapping, *, num_unrolls: int | None = None, amp: bool = False,
                 amp_dtype: torch.dtype = torch.bfloat16, seeds: Sequence[int] | None = None):
        self.model, self.batch = model, batch
        self.y, self.mask, self.sens_maps = batch["masked_kspace"], batch["mask"], batch.get("sens_maps")
        self.num_unrolls, self.amp, self.amp_dtype = num_unrolls, amp, amp_dtype
        self.seeds = None if seeds is None else [int(s) for s in seeds]

    def __call__(self, keep: torch.Tensor) -> dict[str, Any]:
        sub = dict(self.batch)
        sub["masked_kspace"] = self.y * keep
        sub["mask"] = keep
        physics = batch_physics(sub) if self.sens_maps is not None else None
        return forward_model(self.model, sub, num_unrolls=self.num_unrolls, amp=self.amp, amp_dtype=self.amp_dtype,
                             physics=physics)


def ssdu_inputs(batch, seeds: Sequence[int], **ssdu) -> tuple[dict, dict]:
    """``(network batch, loss batch)`` of an SSDU split (``ssdu``: :func:`recon.ssdu.split_batch` options).

    Network batch: ``masked_kspace * theta``, ``mask = theta``. Loss batch: the original ``masked_kspace``,
    ``mask = lambda``, ``input_mask = theta``."""
    from recon.ssdu import split_batch

    batch = as_batch(batch)
    if isinstance(ssdu.get("keep_center"), list):  # from a YAML config
        ssdu = {**ssdu, "keep_center": tuple(ssdu["keep_center"])}
    y, mask = batch["masked_kspace"], batch["mask"]
    theta, lam = split_batch(mask, y.shape[-2], seeds, **ssdu)
    net = dict(batch)
    net["masked_kspace"] = y * theta
    net["mask"] = theta
    loss = dict(batch)
    loss["mask"] = lam
    loss["input_mask"] = theta
    return net, loss


def ssdu_seeds(seed: int, step: int, batch) -> list[int]:
    """SSDU split seeds of a training step: a pure function of ``(seed, step, file, slice)``, so a resumed run
    (and every DDP rank) repeats them."""
    from recon.transforms import mask_seed

    batch = batch._asdict() if hasattr(batch, "_asdict") else batch
    sn = batch["slice_num"]
    sn = sn.tolist() if torch.is_tensor(sn) else list(sn)
    return [mask_seed(int(seed), "ssdu", int(step), f, int(s)) for f, s in zip(batch["fname"], sn)]


def compute_loss(model: torch.nn.Module, batch, loss, *, mode: str = "supervised", seeds: Sequence[int] | None = None,
                 ssdu: Mapping | None = None, num_unrolls: int | None = None, amp: bool = False,
                 amp_dtype: torch.dtype = torch.bfloat16) -> tuple[torch.Tensor, dict[str, float]]:
    """``(loss, {term: unweighted value})`` of ``model`` on ``batch`` in ``mode`` (see the module docstring);
    no optimiser step. ``seeds``: the step's seeds, one per sample (the SSDU split's, default ``slice_num``; and
    :class:`Refit`'s). A loss that needs the reference where there is none, or a non-finite loss, is an
    ``InputError``."""
    if mode not in MODES:
        raise InputError(None, f"mode must be one of {MODES}, got {mode!r}")
    batch = as_batch(batch)
    if isinstance(loss, Mapping):
        loss = WeightedSum(loss)
    elif not callable(loss):
        raise InputError(None, f"the loss must be a callable or a dict of them, got {type(loss).__name__}")
    if mode.startswith("ssdu"):
        if seeds is None:
            sn = batch.get("slice_num")
            seeds = sn.tolist() if torch.is_tensor(sn) else list(range(batch["masked_kspace"].shape[0]))
        net_batch, loss_batch = ssdu_inputs(batch, seeds, **dict(ssdu or {}))
        net_physics = batch_physics(net_batch) if batch.get("sens_maps") is not None else None
        physics = batch_physics(loss_batch)
    else:
        net_batch = loss_batch = batch
        physics = batch_physics(batch)
        net_physics = physics if isinstance(physics, SenseOperator) else None
    needs = requires_target(loss)
    target = batch["target"] if mode == "supervised" else None
    if needs and target is None:
        raise InputError(None, "the loss needs the reference (target), which this batch lacks" if mode == "supervised"
                         else f"mode {mode!r} is reference-free but the loss needs the reference (target)")
    pred = forward_model(model, net_batch, num_unrolls=num_unrolls, amp=amp, amp_dtype=amp_dtype,
                         physics=net_physics)
    if target is not None:
        target = target.unsqueeze(1).to(pred["output"]) if target.ndim == 3 else target.to(pred["output"])
    extra = {}
    if getattr(loss, "needs_refit", False):
        extra["refit"] = Refit(model, net_batch, num_unrolls=num_unrolls, amp=amp, amp_dtype=amp_dtype, seeds=seeds)
    total = loss(pred["output"], target if needs else None, physics=physics, y=loss_batch["masked_kspace"],
                 image=pred["image"], pred_kspace=pred["pred_kspace"], data_range=batch.get("max_value"), **extra)
    if not torch.is_tensor(total) or total.ndim != 0:
        raise InputError(None, f"the loss must return a scalar tensor, got {type(total).__name__} "
                               f"{tuple(getattr(total, 'shape', ()))}")
    if not bool(torch.isfinite(total.detach())):
        raise InputError(None, "training loss is not finite")
    return total, {k: float(v) for k, v in (getattr(loss, "last", None) or {}).items()}


def train_step(model: torch.nn.Module, batch, loss, optimizer: torch.optim.Optimizer, *, mode: str = "supervised",
               ssdu: Mapping | None = None, seeds: Sequence[int] | None = None, num_unrolls: int | None = None,
               grad_clip: float | None = None) -> dict[str, float]:
    """One optimiser step of ``model`` on ``batch`` (:func:`compute_loss`, then backward, optional gradient-norm
    clipping, step); returns ``{"loss": total, <term>: value, ...}``. No step is taken when the loss fails."""
    model.train()
    total, parts = compute_loss(model, batch, loss, mode=mode, seeds=seeds, ssdu=ssdu, num_unrolls=num_unrolls)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(grad_clip))
    optimizer.step()
    return {"loss": float(total.detach()), **parts}


# ---------------------------------------------------------------------------------------------- models

def build_model(arch: str, model_cfg: Mapping | None = None) -> torch.nn.Module:
    """``arch="modl"`` -> ``recon.modl.MoDL(model_cfg)``; ``"varnet"`` -> ``fastmri.models.VarNet(**model_cfg)``
    (``num_cascades``, ``chans``, ``pools``, ``sens_chans``, ``sens_pools``, ``mask_center``)."""
    cfg = dict(model_cfg or {})
    if arch == "modl":
        from recon.modl import MoDL

        return MoDL(cfg)
    if arch == "varnet":
        import inspect

        from fastmri.models import VarNet

        known = set(inspect.signature(VarNet.__init__).parameters) - {"self"}
        bad = sorted(set(cfg) - known)
        if bad:
            raise InputError(None, f"unknown VarNet settings {bad}; known: {sorted(known)}")
        return VarNet(**cfg)
    raise InputError(None, f"arch must be 'modl' or 'varnet', got {arch!r}")


def save_model(model: torch.nn.Module, path: str | os.PathLike, arch: str, model_cfg: Mapping | None = None,
               extra: Mapping | None = None) -> Path:
    """Safetensors weights, written atomically: MoDL via ``recon.modl.save_modl``; VarNet with metadata
    ``{format: fastmri-varnet, config, extra}``."""
    if arch == "modl":
        from recon.modl import save_modl

        return save_modl(getattr(model, "module", model), path, extra=dict(extra or {}))
    from safetensors.torch import save_file

    from recon.files import atomic_path

    path = Path(path)
    meta = {"format": VARNET_FORMAT, "config": json.dumps(dict(model_cfg or {}), sort_keys=True)}
    if extra:
        meta["extra"] = json.dumps(dict(extra), sort_keys=True, default=str)
    net = getattr(model, "module", model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[str, torch.nn.Module]:
    """``(arch, model in eval mode)`` from a MoDL or VarNet safetensors file written by :func:`save_model`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weights file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise InputError(path, f"not a safetensors weights file ({type(exc).__name__})") from None
    if meta.get("format") == VARNET_FORMAT:
        from safetensors.torch import load_file

        model = build_model("varnet", json.loads(meta.get("config", "{}")))
        try:
            model.load_state_dict(load_file(str(path)))
        except RuntimeError as exc:
            raise InputError(path, f"VarNet weights do not fit their config ({str(exc).splitlines()[0]})") from None
        return "varnet", model.to(device).eval()
    from recon.modl import load_modl

    return "modl", load_modl(path, device=device)

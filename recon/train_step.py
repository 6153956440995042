"""Plain-PyTorch training step for reconstruction networks with any of the trainer's losses (no Lightning).

>>> from recon.train_step import train_step
>>> from mriqa.losses import CombinedLoss
>>> loss = CombinedLoss({"dc": 1.0, "qf": 0.05})              # reference-free: DC + QF
>>> stats = train_step(model, batch, loss, optimizer)          # one optimiser step; returns floats

``batch`` is a dict as ``recon.transforms.collate`` makes it from :class:`recon.transforms.ModlSample`\\ s
(``masked_kspace`` complex ``[B, C, H, W]``, ``mask`` ``[B, 1, 1|H, W]``, ``sens_maps``, ``target``
``[B, h, w]`` or None, ``max_value`` ``[B]``, ``crop_size``, ``fname``, ``slice_num``, ...).

Model adapters (:func:`forward_model`): one call for every supported network, returning a dict

- ``output``: float32 magnitude ``[B, 1, h, w]`` centre-cropped to ``crop_size`` (what losses and metrics see),
- ``image``: complex64 ``[B, H, W]`` coil-combined image, or None,
- ``pred_kspace``: complex64 ``[B, C, H, W]`` predicted multi-coil k-space, or None,

for ``recon.modl.MoDL`` (``image``: the unrolled complex image, with the batch's ``sens_maps``),
``fastmri.models.VarNet`` (``pred_kspace``: the last cascade's k-space; ``output``: its RSS, as VarNet's
own forward) and any other module called fastMRI-style ``model(masked_kspace, mask, num_low_frequencies)``
returning a magnitude (then a data-consistency loss cannot be computed: no phase).

Losses: one callable, or a dict ``{name: callable}`` / ``{name: (weight, callable)}`` summed. Each is called
``loss(output, target, data_range=max_value, **rest)`` where ``rest`` holds the batch (``masked_kspace``,
``mask``, ``sens_maps``, ...) and the model's ``image`` / ``pred_kspace``; losses with
``requires_target = False`` get ``target=None``.

Modes: ``mode="supervised"``/``"dc"`` give the network all acquired samples; ``mode="ssdu"`` splits them
(:mod:`recon.ssdu`): the network sees Theta, the losses get ``masked_kspace`` = the acquired k-space and
``mask`` = Lambda (so a data-consistency loss is SSDU's loss on the held-back samples), plus
``input_mask`` = Theta.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from recon.errors import InputError

__all__ = ["forward_model", "ssdu_inputs", "compute_loss", "train_step", "model_kind", "build_model",
           "save_model", "load_model", "MODES", "VARNET_FORMAT"]

MODES = ("supervised", "dc", "ssdu", "dc+qf", "ssdu+qf")
VARNET_FORMAT = "fastmri-varnet"


def _center_crop(x: torch.Tensor, size) -> torch.Tensor:
    h, w = x.shape[-2:]
    ch, cw = min(int(size[0]), h), min(int(size[1]), w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


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


def _crop_size(batch: Mapping) -> tuple[int, int]:
    crop = batch.get("crop_size")
    if crop is None:
        return tuple(batch["masked_kspace"].shape[-2:])
    first = crop[0] if isinstance(crop, (list, tuple)) and isinstance(crop[0], (list, tuple)) else crop
    if torch.is_tensor(first):
        first = first.tolist()
    return int(first[0]), int(first[1])


def forward_model(model: torch.nn.Module, batch: Mapping, num_unrolls: int | None = None,
                  amp: bool = False, amp_dtype: torch.dtype = torch.bfloat16) -> dict[str, Any]:
    """Run ``model`` on ``batch`` (``masked_kspace``, ``mask``, ``sens_maps``, ``num_low_frequencies``); see
    the module docstring for the returned ``output`` / ``image`` / ``pred_kspace``."""
    y, mask = batch["masked_kspace"], batch["mask"]
    kind = model_kind(model)
    net = getattr(model, "module", model)
    dev = y.device.type
    crop = _crop_size(batch)
    if kind == "modl":
        maps = batch.get("sens_maps")
        if maps is None:
            raise InputError(None, "MoDL training needs sens_maps in the batch")
        with torch.autocast(device_type=dev, dtype=amp_dtype, enabled=amp):
            image = net.unroll(y * mask, mask, maps, num_unrolls=num_unrolls)
        out = net.magnitude(image).float().unsqueeze(1)
        return {"output": _center_crop(out, crop), "image": image if image.ndim == 3 else None,
                "pred_kspace": None}
    nlf = batch.get("num_low_frequencies")
    if torch.is_tensor(nlf):
        nlf = int(nlf.min())
    if kind == "varnet":
        import fastmri

        k = torch.view_as_real(y * mask)  # [B, C, H, W, 2]
        m = mask.unsqueeze(-1).bool()      # fastMRI's [B, 1, 1|H, W, 1]
        with torch.autocast(device_type=dev, dtype=amp_dtype, enabled=amp):
            sens = net.sens_net(k, m, nlf)
            kp = k.clone()
            for cascade in net.cascades:
                kp = cascade(kp, k, m, sens)
        kp = kp.float()
        out = fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(kp)), dim=1).unsqueeze(1)
        pred = torch.view_as_complex(kp.contiguous())
        return {"output": _center_crop(out, crop), "image": None, "pred_kspace": pred}
    with torch.autocast(device_type=dev, dtype=amp_dtype, enabled=amp):
        out = model(torch.view_as_real(y * mask), mask.unsqueeze(-1).bool(), nlf)
    out = out.float()
    if out.ndim == 3:
        out = out.unsqueeze(1)
    return {"output": _center_crop(out, crop), "image": None, "pred_kspace": None}


def ssdu_inputs(batch: Mapping, seeds: Sequence[int], **ssdu) -> tuple[dict, dict]:
    """``(network batch, loss batch)`` of an SSDU split (``ssdu``: :func:`recon.ssdu.split_batch` options).

    Network batch: ``masked_kspace * theta``, ``mask = theta``. Loss batch: the original ``masked_kspace``,
    ``mask = lambda``, ``input_mask = theta``."""
    from recon.ssdu import split_batch

    y, mask = batch["masked_kspace"], batch["mask"]
    theta, lam = split_batch(mask, y.shape[-2], seeds, **ssdu)
    net = dict(batch)
    net["masked_kspace"] = y * theta
    net["mask"] = theta
    loss = dict(batch)
    loss["mask"] = lam
    loss["input_mask"] = theta
    return net, loss


def _terms(losses) -> list[tuple[str, float, Callable]]:
    if callable(losses) and not isinstance(losses, Mapping):
        return [("loss", 1.0, losses)]
    if isinstance(losses, Mapping):
        out = []
        for name, spec in losses.items():
            if isinstance(spec, (tuple, list)) and len(spec) == 2 and callable(spec[1]):
                out.append((str(name), float(spec[0]), spec[1]))
            elif callable(spec):
                out.append((str(name), 1.0, spec))
            else:
                raise InputError(None, f"loss {name!r}: expected a callable or (weight, callable)")
        if not out:
            raise InputError(None, "no losses given")
        return out
    raise InputError(None, f"losses must be a callable or a dict of them, got {type(losses).__name__}")


def compute_loss(losses, pred: Mapping[str, Any], batch: Mapping, target: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """``(total loss, {name: unweighted value})``; see the module docstring for the call of each loss.

    A single callable's value is the total; its per-term values (``.last`` of a ``CombinedLoss``) are the
    parts. A dict's terms are the parts by their names (and ``name.sub`` for their own ``.last``)."""
    rest = {k: v for k, v in batch.items() if k not in ("target", "max_value")}
    rest["image"] = pred.get("image")
    rest["pred_kspace"] = pred.get("pred_kspace")
    data_range = batch.get("max_value")
    if target is not None and target.ndim == 3:
        target = target.unsqueeze(1).float()
    total, parts = None, {}
    for name, weight, fn in _terms(losses):
        needs = getattr(fn, "requires_target", True)
        if needs and target is None:
            raise InputError(None, f"loss {name!r} needs the reference (target), which this batch lacks")
        value = fn(pred["output"], target if needs else None, data_range=data_range, **rest)
        if not torch.is_tensor(value) or value.ndim != 0:
            raise InputError(None, f"loss {name!r} must return a scalar tensor, got {type(value).__name__} "
                                   f"{getattr(value, 'shape', '')}")
        single = name == "loss"  # one callable: its own parts (e.g. CombinedLoss.last) only
        if not single:
            parts[name] = float(value.detach())
        for sub, v in (getattr(fn, "last", None) or {}).items():
            parts[sub if single else f"{name}.{sub}"] = float(v)
        total = weight * value if total is None else total + weight * value
    return total, parts


def train_step(model: torch.nn.Module, batch: Mapping, losses, optimizer: torch.optim.Optimizer, *,
               mode: str = "supervised", ssdu: Mapping | None = None, seeds: Sequence[int] | None = None,
               num_unrolls: int | None = None, grad_clip: float | None = None) -> dict[str, float]:
    """One optimiser step of ``model`` on ``batch``; returns ``{"loss": total, <term>: value, ...}``.

    ``mode``: ``"ssdu"`` or ``"ssdu+qf"`` split the acquired samples (``ssdu``: options of
    :func:`recon.ssdu.split_batch`; ``seeds``: one per sample, default ``slice_num``); any other mode feeds
    all acquired samples. A non-finite loss is an ``InputError`` (no step is taken).
    """
    if mode not in MODES:
        raise InputError(None, f"mode must be one of {MODES}, got {mode!r}")
    model.train()
    if mode.startswith("ssdu"):
        if seeds is None:
            sn = batch.get("slice_num")
            seeds = sn.tolist() if torch.is_tensor(sn) else list(range(batch["masked_kspace"].shape[0]))
        net_batch, loss_batch = ssdu_inputs(batch, seeds, **dict(ssdu or {}))
    else:
        net_batch = loss_batch = batch
    pred = forward_model(model, net_batch, num_unrolls=num_unrolls)
    total, parts = compute_loss(losses, pred, loss_batch, batch.get("target"))
    if not bool(torch.isfinite(total)):
        raise InputError(None, "training loss is not finite")
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

"""The config of a reconstruction training run (``mriqa train-recon``, :class:`recon.training.trainer.Trainer`):
defaults, the strict loader (``recon.config.load_config``: defaults <- YAML <- ``--set KEY=VALUE``) with the
checks of this trainer, and the losses a config names.

Keys (see ``configs/modl-cpu.yaml`` for a commented example):

- ``name``, ``out_dir``, ``export`` (also write the final weights there), ``init`` (warm-start weights: a
  shipped MoDL name or a ``.safetensors`` file of the same architecture), ``arch`` (``modl`` or ``varnet``).
- ``data``: ``root`` with ``train_split`` / ``val_split`` folders of fastMRI multi-coil h5 files; training
  masks drawn per sample over ``accelerations`` (a range when ``continuous``) and ``mask_types``; validation
  at each of ``val_accelerations`` with ``val_mask_type``; ``maps`` / ``calib_width`` / ``cache_dir`` for the
  ESPIRiT maps (``recon.transforms.ModlDataTransform``); ``dihedral``: training slices flipped / transposed at
  random; ``train_max_slices`` / ``val_max_slices`` keep that many
  evenly spaced slices (``recon.select.evenly_spaced``).
- ``model``: ``recon.modl.ModlConfig`` fields, or ``fastmri.models.VarNet`` arguments (open: any keys).
- ``train``: ``seed``, ``batch_size``, ``lr``, ``lr_min_factor`` (cosine decay per stage down to that fraction),
  ``weight_decay``, ``grad_clip`` (gradient-norm clipping), ``stages`` (``[{num_unrolls: K, steps: N, lr}]``:
  MoDL's K per stage; VarNet uses only steps and lr), ``val_every`` (0: validate at the end only),
  ``ckpt_every``, ``amp`` / ``device`` / ``num_threads``, ``baseline_lam`` (CG-SENSE on the validation
  slices, for the curves), ``mode`` (``recon.train_step.MODES``), and the losses:

  ========================  ==================================================================================
  ``loss``                  supervised mode: ``{l1: w, ssim: w}`` (:class:`recon.losses.SupervisedLoss`; null =
                            ``{l1: 1.0, ssim: 0.0}``) or ``{factory: "package.module:name", kwargs: {...}}``
  ``dc_loss``               reference-free modes: default ``recon.losses:DataConsistencyLoss``
  ``qf_loss``, ``qf_weight``  ``+qf`` modes: the quality term and its weight. recon names none (it never imports
                            mriqa): a config names it (``{factory: "mriqa.losses:QFLoss", kwargs: {model:
                            gray}}``, as ``configs/modl-*-qf*.yaml`` do), ``train(cfg, qf_loss=...)`` injects it,
                            and ``mriqa train-recon`` injects ``mriqa.losses.QFLoss("gray")`` when it is null
  ``ssdu``                  SSDU split options (``recon.ssdu.split_batch``)
  ========================  ==================================================================================
"""
from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Iterable, Mapping

from recon.errors import InputError

__all__ = ["DEFAULT_CONFIG", "OPEN_KEYS", "load_recon_config", "build_loss", "build_mode_loss"]

DEFAULT_CONFIG: dict[str, Any] = {
    "name": "modl",
    "out_dir": "runs/modl",
    "export": None,
    "init": None,
    "arch": "modl",
    "data": {
        "root": "data/sim128",
        "train_split": "train",
        "val_split": "val",
        "accelerations": [3.0, 10.0],
        "continuous": True,
        "mask_types": ["random", "equispaced"],
        "center_fraction": None,
        "maps": "full",
        "calib_width": 24,
        "cache_dir": None,
        "train_max_slices": None,
        "val_accelerations": [6.0],
        "val_mask_type": "random",
        "val_max_slices": 24,
        "dihedral": False,
    },
    "model": {},
    "train": {
        "seed": 0,
        "batch_size": 1,
        "lr": 1.0e-3,
        "lr_min_factor": 0.05,
        "weight_decay": 0.0,
        "grad_clip": 1.0,
        "stages": [{"num_unrolls": 1, "steps": 100}, {"num_unrolls": 10, "steps": 100}],
        "loss": None,
        "val_every": 100,
        "ckpt_every": 25,
        "amp": "auto",
        "device": "auto",
        "num_threads": None,
        "baseline_lam": 0.003,
        "mode": "supervised",
        "qf_weight": 0.05,
        "dc_loss": {"factory": "recon.losses:DataConsistencyLoss", "kwargs": {}},
        "qf_loss": None,
        "ssdu": {"ratio": 0.4, "selection": "points", "std_scale": 4.0, "keep_center": "acs"},
    },
}
#: keys below which any key is allowed (architecture settings, loss specs)
OPEN_KEYS = ("model", "train.loss", "train.dc_loss", "train.qf_loss")


def load_recon_config(path_or_dict: str | os.PathLike | dict, overrides: Iterable[str] | None = None) -> dict:
    """A full, checked config: :data:`DEFAULT_CONFIG` <- the YAML file (or dict) <- ``KEY=VALUE`` overrides.
    Unknown keys (outside :data:`OPEN_KEYS`) and bad values raise ``InputError`` naming the file."""
    from recon.config import load_config

    source = None if isinstance(path_or_dict, dict) else path_or_dict
    cfg = load_config(DEFAULT_CONFIG, path_or_dict, overrides, open_keys=OPEN_KEYS)
    try:
        _check(cfg)
    except InputError as exc:
        raise InputError(source, exc.problem) from None
    return cfg


def _check(cfg: dict) -> None:
    from recon.modl import ModlConfig
    from recon.train_step import MODES, build_model

    if cfg["arch"] == "modl":
        ModlConfig.from_dict(cfg["model"])
    elif cfg["arch"] == "varnet":
        build_model("varnet", {**cfg["model"], "num_cascades": 1, "chans": 1, "sens_chans": 1})
    else:
        raise InputError(None, f"arch must be 'modl' or 'varnet', got {cfg['arch']!r}")
    tcfg = cfg["train"]
    if tcfg["mode"] not in MODES:
        raise InputError(None, f"train.mode must be one of {list(MODES)}, got {tcfg['mode']!r}")
    if float(tcfg["qf_weight"]) < 0:
        raise InputError(None, f"train.qf_weight must be >= 0, got {tcfg['qf_weight']}")
    stages = tcfg["stages"]

    def whole(value, default: int) -> int:  # a count, or -1 for anything that is not one (text, 1.5, inf)
        if value is None:
            return default
        try:
            return int(value) if float(value).is_integer() else -1
        except (TypeError, ValueError):
            return -1

    if not isinstance(stages, list) or not stages or not all(
            isinstance(s, dict) and whole(s.get("steps"), 0) >= 0 and whole(s.get("num_unrolls"), -1) >= 0
            for s in stages):
        raise InputError(None, "train.stages must be a list of {num_unrolls: K >= 0, steps: N >= 0}")
    if int(tcfg["ckpt_every"]) < 1 or int(tcfg["val_every"]) < 0:
        raise InputError(None, "train.ckpt_every must be >= 1 and train.val_every >= 0")


def build_loss(spec) -> Callable:
    """A loss from a config spec (``{l1, ssim}``, ``{factory, kwargs}``, null = ``{l1: 1.0, ssim: 0.0}``), or
    ``spec`` itself if callable, or a :class:`recon.losses.WeightedSum` of a mapping of callables."""
    from recon.losses import SupervisedLoss, WeightedSum

    if callable(spec):
        return spec
    if spec is None:
        return SupervisedLoss(1.0, 0.0)
    if not isinstance(spec, Mapping):
        raise InputError(None, f"train.loss must be a mapping, got {spec!r}")
    if spec and all(callable(v) or (isinstance(v, (tuple, list)) and len(v) == 2 and callable(v[1]))
                    for v in spec.values()):
        return WeightedSum(spec)
    if "factory" in spec:
        unknown = sorted(set(spec) - {"factory", "kwargs"})
        if unknown:
            raise InputError(None, f"unknown loss keys {unknown} beside factory (use {{factory, kwargs}})")
        target = str(spec["factory"])
        module_name, _, attr = target.partition(":")
        if not module_name or not attr:
            raise InputError(None, f"loss factory {target!r} must look like 'package.module:name'")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise InputError(None, f"loss factory {target!r} cannot be imported ({exc})") from None
        loss = obj(**dict(spec.get("kwargs") or {}))
        if not callable(loss):
            raise InputError(None, f"loss factory {target!r} did not return a callable")
        return loss
    unknown = sorted(set(spec) - {"l1", "ssim"})
    if unknown:
        raise InputError(None, f"unknown train.loss keys {unknown}: use {{l1: w, ssim: w}} or "
                               f"{{factory: 'module:name', kwargs: {{...}}}}")
    return SupervisedLoss(float(spec.get("l1", 0.0)), float(spec.get("ssim", 0.0)))


def build_mode_loss(tcfg: dict, qf_loss: Callable | None = None) -> Callable:
    """The loss of ``train.mode``: ``supervised`` -> ``train.loss``; ``dc`` / ``ssdu`` -> ``train.dc_loss``;
    ``dc+qf`` / ``ssdu+qf`` -> DC + ``qf_weight`` x the quality term (``qf_loss`` if given, else
    ``train.qf_loss``), a :class:`recon.losses.WeightedSum` whose ``.last`` the history logs."""
    from recon.losses import WeightedSum, requires_target

    mode = tcfg.get("mode", "supervised")
    if mode == "supervised":
        return build_loss(tcfg.get("loss"))
    dc = build_loss(tcfg["dc_loss"])
    if requires_target(dc):
        raise InputError(None, f"train.dc_loss of mode {mode!r} must be reference-free (requires_target = False)")
    terms: dict[str, tuple[float, Callable]] = {"dc": (1.0, dc)}
    weight = float(tcfg.get("qf_weight", 0.0))
    if mode.endswith("+qf") and weight > 0:
        spec = qf_loss if qf_loss is not None else tcfg.get("qf_loss")
        if spec is None:
            raise InputError(None, f"train.mode {mode!r} needs train.qf_loss, the quality term, e.g. "
                                   "{factory: 'mriqa.losses:QFLoss', kwargs: {model: gray}}, or a loss passed in "
                                   "(recon does not choose one for you)")
        terms["qf"] = (weight, build_loss(spec))
    return WeightedSum(terms)

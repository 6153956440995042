"""Train MoDL (``recon.modl``) on fully sampled multi-coil h5 files: ``mriqa train-recon --config FILE.yaml``.

What a run does (all settings in the YAML config; see ``configs/modl-cpu.yaml``):

- **Data**: ``<data.root>/<train_split>`` and ``<data.root>/<val_split>`` (fastMRI multi-coil h5 files, e.g.
  from ``mriqa make-dataset``; the split is by volume, and the test split is never read here), through
  ``recon.transforms.ModlDataTransform``: training masks are drawn per sample from a range of R and mask
  kinds (an R-agnostic model), validation masks are fixed (one R, kind and seed per volume).
- **Stages**: e.g. K = 1 (warm start), then K = 10 (the same shared denoiser and lambda continue); each stage
  has its own step count and a cosine learning-rate decay.
- **Loss**: any callable ``loss(output [B,1,H,W], target [B,1,H,W] or None, data_range=Tensor[B], **batch)``
  returning a scalar tensor. ``batch`` holds the rest of the batch (``masked_kspace``, ``mask``,
  ``sens_maps``, ``max_value``, ``acceleration``, ``fname``, ...). A loss with attribute
  ``requires_target = False`` (reference-free) gets ``target=None``. The config names it either as
  ``{l1: w1, ssim: w2}`` (:class:`SupervisedLoss`: L1 / data range and fastMRI's ``SSIMLoss``) or as
  ``{factory: "package.module:name", kwargs: {...}}`` (called with ``kwargs`` to build the loss); the Python
  API also takes a ready callable (``train(config, loss=...)``). The trainer never looks inside the loss.
- **Checkpoints**: ``<out_dir>/last.pt`` (model, optimizer, step, history, config) written atomically
  every ``ckpt_every`` steps and at the end; a rerun with the same ``out_dir`` resumes from it automatically
  (loaded with ``torch.load(weights_only=True)``). Data order and masks are pure functions of
  ``(seed, step)``, and the learning rate is a function of the step, so a resumed run takes exactly the
  steps an uninterrupted one would.
- **Warm start**: ``init`` (a shipped weights name or a ``.safetensors`` file of the same architecture) sets
  the starting weights of a new run (ignored when resuming from ``last.pt``): fine-tuning a trained model on
  other data or another R range is a second config whose ``init`` is the first run's ``final.safetensors``.
- **Outputs**: ``history.json``, ``curves.png`` (training loss and validation PSNR/SSIM against CG-SENSE),
  ``final.safetensors`` and ``best.safetensors`` (the best validation PSNR of the last stage), and, when
  ``export`` is set, the final weights there too (e.g. ``recon/weights/modl.safetensors``).
- **Modes** (``train.mode``; issue 6): ``supervised`` (the ``train.loss`` above, against the RSS reference);
  ``dc`` (reference-free: ``train.dc_loss``, by default ``mriqa.losses:DataConsistencyLoss``,
  ``||M F S x - y||^2 / ||M y||^2`` on the acquired samples); ``ssdu`` (reference-free, Yaman et al. 2020,
  :mod:`recon.ssdu`: each step splits the acquired samples into Theta (the network's input) and Lambda
  (``train.ssdu.ratio`` of them, default 0.4; the DC loss is computed on Lambda only)); ``dc+qf`` and
  ``ssdu+qf`` add ``train.qf_weight`` x ``train.qf_loss`` (by default ``mriqa.losses:QFLoss``, ``1 - QF`` of
  the frozen QF predictor). The loss terms are named by ``{factory, kwargs}`` like ``train.loss``, so
  ``recon`` never imports ``mriqa``. Reference-free modes never pass the target to the loss; validation
  still reports PSNR/SSIM against the reference (monitoring only; ``best.safetensors`` is chosen by it,
  ``final.safetensors`` is not). Besides the batch, every loss gets ``image=`` (the complex MoDL image
  ``[B, H, W]``, uncropped; None for VarNet) and ``pred_kspace=`` (VarNet's predicted k-space
  ``[B, C, H, W]``; None for MoDL): a data-consistency loss needs the phase, which ``output`` lacks.
  Per-term values are logged in ``history.json`` (``parts``).
- **Architectures** (``arch``): ``modl`` (default; ``model`` = :class:`recon.modl.ModlConfig` fields) or
  ``varnet`` (fastMRI's ``VarNet``; ``model`` = its constructor arguments; ``stages``' ``num_unrolls`` are
  ignored, only their steps and learning rates count). Model adapters: :mod:`recon.train_step`.
- **Devices**: CUDA when available (``device: auto``) with bf16 autocast for the denoiser (``amp: auto``; CG
  and FFTs stay in full precision); on CPU ``num_threads`` sets torch's thread count.
"""
from __future__ import annotations

import copy
import importlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from recon.errors import InputError
from recon.files import atomic_path

__all__ = ["DEFAULT_CONFIG", "load_config", "SupervisedLoss", "WeightedSum", "build_loss", "build_mode_loss",
           "Trainer", "train"]

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
        "loss": {"l1": 1.0, "ssim": 0.0},
        "val_every": 100,
        "ckpt_every": 25,
        "log_every": 10,
        "amp": "auto",
        "device": "auto",
        "num_threads": None,
        "baseline_lam": 0.003,
        "mode": "supervised",
        "qf_weight": 0.05,
        "dc_loss": {"factory": "mriqa.losses:DataConsistencyLoss", "kwargs": {}},
        "qf_loss": {"factory": "mriqa.losses:QFLoss", "kwargs": {"model": "gray", "pool": "mean"}},
        "ssdu": {"ratio": 0.4, "selection": "points", "std_scale": 4.0, "keep_center": "acs"},
    },
}


def _merge(base: dict, override: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key not in base and where != "model":
            raise InputError(None, f"unknown config key {where + '.' if where else ''}{key}; "
                                   f"known: {sorted(base)}")
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key not in ("loss", "dc_loss", "qf_loss"):
            out[key] = _merge(base[key], value, key if not where else f"{where}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path_or_dict: str | os.PathLike | dict) -> dict:
    """A full config: the YAML file (or dict) merged over :data:`DEFAULT_CONFIG`; unknown keys are errors."""
    if isinstance(path_or_dict, dict):
        user = path_or_dict
        source = None
    else:
        import yaml

        source = Path(path_or_dict)
        if not source.is_file():
            raise InputError(source, "config file not found")
        try:
            user = yaml.safe_load(source.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(source, f"not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(user, dict):
            raise InputError(source, "config must be a YAML mapping")
    try:
        cfg = _merge(DEFAULT_CONFIG, user)
        from recon.modl import ModlConfig
        from recon.train_step import MODES, build_model

        if cfg["arch"] == "modl":
            ModlConfig.from_dict(cfg["model"])
        elif cfg["arch"] == "varnet":
            build_model("varnet", {**cfg["model"], "num_cascades": 1, "chans": 1, "sens_chans": 1})
        else:
            raise InputError(None, f"arch must be 'modl' or 'varnet', got {cfg['arch']!r}")
        if cfg["train"]["mode"] not in MODES:
            raise InputError(None, f"train.mode must be one of {list(MODES)}, got {cfg['train']['mode']!r}")
        if float(cfg["train"]["qf_weight"]) < 0:
            raise InputError(None, f"train.qf_weight must be >= 0, got {cfg['train']['qf_weight']}")
        stages = cfg["train"]["stages"]
        if not stages or not all(isinstance(s, dict) and int(s.get("steps", 0)) >= 0 and
                                 int(s.get("num_unrolls", -1)) >= 0 for s in stages):
            raise InputError(None, "train.stages must be a list of {num_unrolls: K >= 0, steps: N >= 0}")
        if int(cfg["train"]["batch_size"]) < 1:
            raise InputError(None, "train.batch_size must be >= 1")
    except InputError as exc:
        raise InputError(source, exc.problem) from None
    return cfg


# ---------------------------------------------------------------------------------------------- losses

class SupervisedLoss:
    """``l1 * mean|out - tgt| / data_range + ssim * (1 - SSIM)`` (fastMRI's ``SSIMLoss``, 7x7 window).

    Follows the trainer's loss interface; both terms are per-sample normalised by the data range (the
    volume max), so the loss does not depend on the k-space scale.
    """

    requires_target = True

    def __init__(self, l1: float = 1.0, ssim: float = 0.0):
        if l1 < 0 or ssim < 0 or l1 + ssim <= 0:
            raise InputError(None, f"loss weights must be >= 0 and not both 0, got l1={l1}, ssim={ssim}")
        self.l1, self.ssim = float(l1), float(ssim)
        self._ssim = None

    def __call__(self, output: torch.Tensor, target: torch.Tensor | None, data_range: torch.Tensor,
                 **batch) -> torch.Tensor:
        if target is None:
            raise InputError(None, "the supervised loss needs a target (reconstruction_rss)")
        dr = data_range.to(output).reshape(-1, 1, 1, 1).clamp_min(1e-12)
        total = output.new_zeros(())
        if self.l1:
            total = total + self.l1 * ((output - target).abs() / dr).mean()
        if self.ssim:
            if self._ssim is None:
                from fastmri import SSIMLoss

                self._ssim = SSIMLoss()
            self._ssim = self._ssim.to(output.device)
            total = total + self.ssim * self._ssim(output, target, data_range.to(output))
        return total


class WeightedSum:
    """``sum_i w_i * loss_i`` of trainer-interface losses; ``requires_target`` if any term needs it;
    ``.last`` holds the last call's unweighted values (logged as ``parts``)."""

    def __init__(self, terms: dict[str, tuple[float, Callable]]):
        self.terms = {k: (float(w), fn) for k, (w, fn) in terms.items() if float(w) != 0}
        if not self.terms:
            raise InputError(None, "no loss term with a non-zero weight")
        self.requires_target = any(getattr(fn, "requires_target", True) for _, fn in self.terms.values())
        self.last: dict[str, float] = {}

    def __call__(self, output, target, data_range=None, **batch) -> torch.Tensor:
        total, last = None, {}
        for name, (w, fn) in self.terms.items():
            value = fn(output, target if getattr(fn, "requires_target", True) else None,
                       data_range=data_range, **batch)
            last[name] = float(value.detach())
            total = w * value if total is None else total + w * value
        self.last = last
        return total


def build_mode_loss(tcfg: dict) -> Callable:
    """The loss of ``train.mode`` (see the module docstring): ``supervised`` -> ``train.loss``; ``dc`` /
    ``ssdu`` -> ``train.dc_loss``; ``dc+qf`` / ``ssdu+qf`` -> DC + ``qf_weight`` x ``train.qf_loss``."""
    mode = tcfg.get("mode", "supervised")
    if mode == "supervised":
        return build_loss(tcfg["loss"])
    dc = build_loss(tcfg["dc_loss"])
    if getattr(dc, "requires_target", True):
        raise InputError(None, f"train.dc_loss of mode {mode!r} must be reference-free (requires_target = False)")
    terms: dict[str, tuple[float, Callable]] = {"dc": (1.0, dc)}
    weight = float(tcfg.get("qf_weight", 0.0))
    if mode.endswith("+qf") and weight > 0:
        terms["qf"] = (weight, build_loss(tcfg["qf_loss"]))
    return WeightedSum(terms)


def build_loss(spec: dict | Callable) -> Callable:
    """A loss callable from the config's ``train.loss`` (see the module docstring), or ``spec`` if callable."""
    if callable(spec):
        return spec
    if not isinstance(spec, dict):
        raise InputError(None, f"train.loss must be a mapping, got {spec!r}")
    if "factory" in spec:
        target = str(spec["factory"])
        module_name, _, attr = target.partition(":")
        if not module_name or not attr:
            raise InputError(None, f"train.loss.factory {target!r} must look like 'package.module:name'")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise InputError(None, f"train.loss.factory {target!r} cannot be imported ({exc})") from None
        loss = obj(**dict(spec.get("kwargs") or {}))
        if not callable(loss):
            raise InputError(None, f"train.loss.factory {target!r} did not return a callable")
        return loss
    unknown = sorted(set(spec) - {"l1", "ssim"})
    if unknown:
        raise InputError(None, f"unknown train.loss keys {unknown}: use {{l1: w, ssim: w}} or "
                               f"{{factory: 'module:name', kwargs: {{...}}}}")
    return SupervisedLoss(float(spec.get("l1", 0.0)), float(spec.get("ssim", 0.0)))


# ---------------------------------------------------------------------------------------------- trainer

def _center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    ch, cw = min(int(size[0]), h), min(int(size[1]), w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


def _evenly(n: int, k: int | None) -> list[int]:
    if k is None or k >= n:
        return list(range(n))
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, int(k))})


class Trainer:
    """One training run (see the module docstring). ``run()`` trains to the end (or ``stop_after`` steps)."""

    def __init__(self, config: dict | str | os.PathLike, loss: Callable | None = None, progress: bool = True,
                 out_dir: str | os.PathLike | None = None):
        from recon.train_step import build_model
        from recon.transforms import ModlDataTransform, slice_dataset

        self.cfg = load_config(config)
        if out_dir is not None:
            self.cfg["out_dir"] = str(out_dir)
        tcfg, dcfg = self.cfg["train"], self.cfg["data"]
        self.out_dir = Path(self.cfg["out_dir"])
        self.progress = progress
        if tcfg.get("num_threads"):
            torch.set_num_threads(int(tcfg["num_threads"]))
        dev = tcfg.get("device", "auto")
        self.device = torch.device("cuda" if dev == "auto" and torch.cuda.is_available() else
                                   ("cpu" if dev == "auto" else dev))
        amp = tcfg.get("amp", "auto")
        self.amp = self.device.type == "cuda" and amp in ("auto", True, "bf16", "fp16")
        self.amp_dtype = torch.float16 if amp == "fp16" else torch.bfloat16

        root = Path(dcfg["root"])
        cache = dcfg.get("cache_dir")
        common = dict(center_fraction=dcfg.get("center_fraction"), maps=dcfg["maps"],
                      calib_width=int(dcfg["calib_width"]), cache_dir=cache, seed=int(tcfg["seed"]))
        self.train_tf = ModlDataTransform(accelerations=dcfg["accelerations"], mask_types=dcfg["mask_types"],
                                          continuous=bool(dcfg["continuous"]), fixed=False,
                                          root=root / dcfg["train_split"], **common)
        self.train_ds = slice_dataset(root / dcfg["train_split"], self.train_tf)
        self.train_index = _evenly(len(self.train_ds), dcfg.get("train_max_slices"))
        self.val_sets = []
        for r in dcfg.get("val_accelerations") or []:
            tf = ModlDataTransform(accelerations=[float(r)], mask_types=[dcfg["val_mask_type"]], fixed=True,
                                   root=root / dcfg["val_split"], **common)
            ds = slice_dataset(root / dcfg["val_split"], tf)
            self.val_sets.append((float(r), ds, _evenly(len(ds), dcfg.get("val_max_slices"))))

        torch.manual_seed(int(tcfg["seed"]))
        self.arch = self.cfg["arch"]
        self.mode = tcfg["mode"]
        self.model = build_model(self.arch, self.cfg["model"]).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=float(tcfg["lr"]),
                                          weight_decay=float(tcfg["weight_decay"]))
        self.loss = build_loss(loss) if loss is not None else build_mode_loss(tcfg)
        if hasattr(self.loss, "to") and isinstance(self.loss, torch.nn.Module):
            self.loss = self.loss.to(self.device)
        self.stages = [(int(s["num_unrolls"]), int(s["steps"]), float(s.get("lr", tcfg["lr"])))
                       for s in tcfg["stages"]]
        self.total_steps = sum(s[1] for s in self.stages)
        self.step = 0
        self.history: dict[str, Any] = {"train": [], "val": [], "baseline": {}, "stage_starts": [],
                                        "best": None}
        self.batch_size = int(tcfg["batch_size"])
        self.steps_per_epoch = max(1, len(self.train_index) // self.batch_size)
        if len(self.train_index) < self.batch_size:
            raise InputError(root / dcfg["train_split"], f"{len(self.train_index)} training slices, fewer than "
                                                         f"batch_size {self.batch_size}")

    # -- schedule and data ---------------------------------------------------------------------------
    def stage_at(self, step: int) -> tuple[int, int, int, float]:
        """(stage index, K, step within the stage, stage length) of a global step."""
        start = 0
        for i, (k, n, _) in enumerate(self.stages):
            if step < start + n:
                return i, k, step - start, n
            start += n
        i = len(self.stages) - 1
        return i, self.stages[i][0], self.stages[i][1], self.stages[i][1]

    def lr_at(self, step: int) -> float:
        i, _, local, n = self.stage_at(step)
        base = self.stages[i][2]
        floor = base * float(self.cfg["train"]["lr_min_factor"])
        return floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * local / max(n, 1)))

    def batch_indices(self, step: int) -> tuple[int, list[int]]:
        """(epoch, dataset indices) of the batch at ``step``: a pure function of (seed, step)."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        g = torch.Generator().manual_seed(int(self.cfg["train"]["seed"]) * 100003 + epoch)
        perm = torch.randperm(len(self.train_index), generator=g).tolist()
        chosen = perm[pos * self.batch_size:(pos + 1) * self.batch_size]
        return epoch, [self.train_index[j] for j in chosen]

    def load_batch(self, step: int) -> dict:
        from recon.transforms import collate

        epoch, idx = self.batch_indices(step)
        self.train_tf.set_epoch(epoch)
        return collate([self.train_ds[i] for i in idx])

    # -- one step ------------------------------------------------------------------------------------
    def _to_device(self, batch: dict) -> dict:
        return {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items()}

    def _predict(self, batch: dict, num_unrolls: int) -> dict:
        """``{output [B,1,h,w] magnitude cropped, image complex [B,H,W] | None, pred_kspace | None}``."""
        from recon.train_step import forward_model

        return forward_model(self.model, batch, num_unrolls=num_unrolls if self.arch == "modl" else None,
                             amp=self.amp, amp_dtype=self.amp_dtype)

    def _forward(self, batch: dict, num_unrolls: int) -> torch.Tensor:
        return self._predict(batch, num_unrolls)["output"]

    @property
    def ssdu(self) -> bool:
        return self.mode.startswith("ssdu")

    def ssdu_seeds(self, step: int, batch: dict) -> list[int]:
        """SSDU split seeds of a step: a pure function of (seed, step, file, slice), so resuming repeats them."""
        from recon.transforms import mask_seed

        seed = int(self.cfg["train"]["seed"])
        return [mask_seed(seed, "ssdu", step, f, int(s)) for f, s in zip(batch["fname"], batch["slice_num"])]

    def train_step(self, step: int) -> float:
        _, k, _, _ = self.stage_at(step)
        self.model.train()
        if self.arch == "modl":
            self.model.num_unrolls = k
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self._to_device(self.load_batch(step))
        loss_batch = batch
        if self.ssdu:
            from recon.train_step import ssdu_inputs

            ssdu_cfg = dict(self.cfg["train"]["ssdu"])
            if isinstance(ssdu_cfg.get("keep_center"), list):
                ssdu_cfg["keep_center"] = tuple(ssdu_cfg["keep_center"])
            batch, loss_batch = ssdu_inputs(batch, self.ssdu_seeds(step, batch), **ssdu_cfg)
        pred = self._predict(batch, k)
        output = pred["output"]
        target = loss_batch.pop("target")
        needs_target = getattr(self.loss, "requires_target", True)
        if target is not None:
            target = target.unsqueeze(1).float()
        if needs_target and self.mode != "supervised":
            raise InputError(None, f"mode {self.mode!r} is reference-free but the loss needs a target")
        extra = {key: v for key, v in loss_batch.items() if key not in ("max_value", "target")}
        extra["image"] = pred["image"]
        extra["pred_kspace"] = pred["pred_kspace"]
        loss = self.loss(output, target if needs_target else None, data_range=loss_batch["max_value"], **extra)
        if not torch.is_tensor(loss) or loss.ndim != 0:
            raise InputError(None, f"the loss must return a scalar tensor, got {type(loss).__name__} "
                                   f"{getattr(loss, 'shape', '')}")
        if not bool(torch.isfinite(loss)):
            raise InputError(None, f"training loss is not finite at step {step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg["train"].get("grad_clip")
        if clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(clip))
        self.optimizer.step()
        self.last_parts = dict(getattr(self.loss, "last", None) or {})
        return float(loss.detach())

    # -- validation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, num_unrolls: int) -> dict[str, float]:
        """Mean per-slice PSNR / SSIM / NMSE (data range: the volume max) over the fixed validation slices."""
        from recon.metrics import nmse, psnr, ssim
        from recon.transforms import collate

        self.model.eval()
        out: dict[str, float] = {}
        for r, ds, index in self.val_sets:
            scores = []
            for i in index:
                batch = self._to_device(collate([ds[i]]))
                pred = self._forward(batch, num_unrolls)[0, 0].cpu().numpy()
                tgt = batch["target"][0].cpu().numpy()
                mv = float(batch["max_value"][0])
                scores.append((psnr(tgt, pred, mv), ssim(tgt, pred, mv), nmse(tgt, pred)))
            s = np.mean(np.array(scores), axis=0)
            out.update({f"psnr_R{r:g}": float(s[0]), f"ssim_R{r:g}": float(s[1]), f"nmse_R{r:g}": float(s[2])})
        self.model.train()
        return out

    @torch.no_grad()
    def baseline(self) -> dict[str, float]:
        """CG-SENSE (``recon.baselines.cg_sense``) on the validation slices, for the curves."""
        from recon.baselines import cg_sense
        from recon.metrics import psnr, ssim
        from recon.transforms import collate

        out = {}
        for r, ds, index in self.val_sets:
            scores = []
            for i in index:
                b = collate([ds[i]])
                pred = cg_sense(b["masked_kspace"], b["mask"], b["sens_maps"],
                                lam=float(self.cfg["train"]["baseline_lam"]))[0]
                tgt = b["target"][0].numpy()
                mv = float(b["max_value"][0])
                scores.append((psnr(tgt, pred, mv), ssim(tgt, pred, mv)))
            s = np.mean(np.array(scores), axis=0)
            out.update({f"psnr_R{r:g}": float(s[0]), f"ssim_R{r:g}": float(s[1])})
        return out

    # -- files ---------------------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.out_dir / "last.pt"

    def save_checkpoint(self) -> None:
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": json.dumps(self.history),
            "config": json.dumps(self.cfg, sort_keys=True, default=str),
        }
        with atomic_path(self.ckpt_path) as tmp:
            torch.save(state, tmp)

    def try_resume(self) -> bool:
        if not self.ckpt_path.is_file():
            return False
        try:
            state = torch.load(self.ckpt_path, map_location=self.device, weights_only=True)
        except Exception as exc:
            raise InputError(self.ckpt_path, f"cannot read the checkpoint to resume from ({type(exc).__name__}: "
                                             f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it to "
                                             f"start over") from None
        saved_cfg = json.loads(state["config"])
        for key in ("model", "data") + (("arch",) if "arch" in saved_cfg else ()):
            if saved_cfg.get(key) != json.loads(json.dumps(self.cfg[key], default=str)):
                raise InputError(self.ckpt_path, f"checkpoint was made with a different '{key}' config; use "
                                                 f"another out_dir or delete it to start over")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.history = json.loads(state["history"])
        return True

    def warm_start(self, name_or_path: str) -> None:
        """Start from trained weights (MoDL: a shipped name or a file; VarNet: a file) instead of the random init.

        The weights file must hold the same architecture as ``model`` in the config (clear error otherwise)."""
        if self.arch == "modl":
            from recon.modl import load_modl

            source = load_modl(name_or_path, device=self.device)
        else:
            from recon.train_step import load_model

            _, source = load_model(name_or_path, device=self.device)
        try:
            self.model.load_state_dict(source.state_dict())
        except RuntimeError as exc:
            raise InputError(name_or_path, f"init weights do not match the configured model "
                                           f"({str(exc).splitlines()[0]})") from None
        self.history.setdefault("init", str(name_or_path))

    def export(self, path: str | os.PathLike, which: str = "final") -> Path:
        from recon.modl import save_modl
        from recon.train_step import save_model

        k_final = self.stages[-1][0]
        if self.arch == "modl":
            self.model.num_unrolls = k_final
        last_val = self.history["val"][-1] if self.history["val"] else None
        extra = {"name": self.cfg["name"], "steps": self.step, "which": which, "validation": last_val,
                 "baseline_cg_sense": self.history.get("baseline"),
                 "train_config": {k: self.cfg[k] for k in ("data", "train")}, "mode": self.mode}
        if self.arch == "modl":
            return save_modl(self.model, path, extra=extra)
        return save_model(self.model, path, self.arch, self.cfg["model"], extra=extra)

    def write_history(self) -> None:
        with atomic_path(self.out_dir / "history.json") as tmp:
            tmp.write_text(json.dumps(self.history, indent=1))
        self.plot_curves()

    def plot_curves(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        train = self.history["train"]
        if not train:
            return
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        steps = np.array([t["step"] for t in train])
        losses = np.array([t["loss"] for t in train])
        axes[0].plot(steps, losses, lw=0.5, alpha=0.4, label="per step")
        if len(losses) >= 20:
            w = max(5, len(losses) // 50)
            smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
            axes[0].plot(steps[w - 1:], smooth, lw=1.5, label=f"mean of {w}")
        for s in self.history["stage_starts"][1:]:
            axes[0].axvline(s["step"], color="k", ls=":", lw=1)
            axes[1].axvline(s["step"], color="k", ls=":", lw=1)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("step")
        axes[0].set_ylabel("training loss")
        axes[0].legend()
        val = self.history["val"]
        keys = sorted({k for v in val for k in v if k.startswith("psnr_")})
        for key in keys:
            pts = [(v["step"], v[key]) for v in val if key in v]
            axes[1].plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"MoDL {key[5:]}")
            if key in self.history.get("baseline", {}):
                axes[1].axhline(self.history["baseline"][key], ls="--", lw=1, label=f"CG-SENSE {key[5:]}")
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("validation PSNR (dB)")
        if keys:
            axes[1].legend()
        fig.suptitle(f"{self.cfg['name']}: stages " + ", ".join(f"K={k} x {n}" for k, n, _ in self.stages))
        fig.tight_layout()
        with atomic_path(self.out_dir / "curves.png") as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> dict:
        """Train from the last checkpoint (if any) to the end, or for at most ``stop_after`` more steps."""
        tcfg = self.cfg["train"]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.try_resume()
        if not resumed and self.cfg.get("init"):
            self.warm_start(self.cfg["init"])
        if self.val_sets and not self.history["baseline"]:
            self.history["baseline"] = self.baseline()
        end = self.total_steps if stop_after is None else min(self.total_steps, self.step + int(stop_after))
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc=self.cfg["name"], unit="step",
                       dynamic_ncols=True)
            if resumed:
                bar.write(f"resumed from {self.ckpt_path} at step {self.step}")
        val_every, ckpt_every = int(tcfg["val_every"]), int(tcfg["ckpt_every"])
        log_every = max(1, int(tcfg["log_every"]))
        try:
            while self.step < end:
                stage, k, local, n = self.stage_at(self.step)
                if local == 0 and not any(s["step"] == self.step for s in self.history["stage_starts"]):
                    self.history["stage_starts"].append({"step": self.step, "num_unrolls": k})
                t0 = time.perf_counter()
                loss = self.train_step(self.step)
                self.step += 1
                lam = float(self.model.lam.detach()) if self.arch == "modl" else None
                entry = {"step": self.step, "loss": loss, "K": k, "lam": lam,
                         "seconds": time.perf_counter() - t0}
                if getattr(self, "last_parts", None):
                    entry["parts"] = self.last_parts
                self.history["train"].append(entry)
                if bar is not None:
                    bar.update(1)
                    if self.step % log_every == 0:
                        bar.set_postfix(K=k, loss=f"{loss:.4f}", **({} if lam is None else {"lam": f"{lam:.4f}"}),
                                        **{n: f"{v:.4f}" for n, v in (entry.get("parts") or {}).items()})
                stage_end = local + 1 == n
                if self.val_sets and val_every > 0 and (self.step % val_every == 0 or stage_end):
                    metrics = self.validate(k)
                    metrics.update(step=self.step, K=k)
                    self.history["val"].append(metrics)
                    if stage == len(self.stages) - 1:
                        key = f"psnr_R{self.val_sets[0][0]:g}"
                        best = self.history.get("best")
                        if best is None or metrics[key] > best[key]:
                            self.history["best"] = metrics
                            self.export(self.out_dir / "best.safetensors", which="best")
                    if bar is not None:
                        bar.write(f"step {self.step} K={k} val " + " ".join(
                            f"{key}={v:.4f}" for key, v in metrics.items() if key.startswith(("psnr", "ssim"))))
                if self.step % ckpt_every == 0 or self.step == end:
                    self.save_checkpoint()
                    self.write_history()
        finally:
            if bar is not None:
                bar.close()
        if self.step >= self.total_steps:
            self.export(self.out_dir / "final.safetensors")
            if self.cfg.get("export"):
                self.export(self.cfg["export"])
        self.write_history()
        return self.history


def train(config: dict | str | os.PathLike, loss: Callable | None = None, stop_after: int | None = None,
          progress: bool = True, out_dir: str | os.PathLike | None = None) -> Trainer:
    """Build a :class:`Trainer` and run it; returns the trainer (``.model``, ``.history``, ``.step``)."""
    trainer = Trainer(config, loss=loss, progress=progress, out_dir=out_dir)
    trainer.run(stop_after=stop_after)
    return trainer

"""Train a reconstruction network (MoDL or fastMRI's VarNet) on fully sampled multi-coil h5 files:
``mriqa train-recon --config FILE.yaml [--set KEY=VALUE ...]`` or ``recon.training.trainer.train(cfg)``.

What a run does (settings: :mod:`recon.training.recon_config`; example ``configs/modl-cpu.yaml``):

- **Data**: ``<data.root>/<train_split>`` and ``<val_split>`` through ``recon.transforms.ModlDataTransform``:
  training masks drawn per sample over a range of R and mask kinds (an R-agnostic model), validation masks
  fixed (one R, kind and seed per volume). The batch of step ``t`` and its masks are pure functions of
  ``(seed, t)``, so a resumed run takes exactly the steps an uninterrupted one would.
- **Step**: ``recon.train_step.compute_loss`` (the step of every trainer here: SSDU split, physics built once
  per batch, model adapter, the loss call of :mod:`recon.losses`), then the shared step loop
  ``recon.training.loop.run_steps`` (backward, gradient-norm clipping, optimiser step, validation rows,
  checkpoints every ``ckpt_every`` steps, ``history.json``, Ctrl-C / SIGTERM checkpointing).
- **Stages**: e.g. K = 1 (warm start), then K = 10 (the same shared denoiser and lambda continue); each stage
  has its own step count and a cosine learning-rate decay to ``lr_min_factor`` of its ``lr``.
- **Modes** (``train.mode``): ``supervised`` against the RSS reference; reference-free ``dc``
  (``||M F S x - y||^2 / ||M y||^2`` on the acquired samples), ``ssdu`` (Yaman et al. 2020: the network sees
  Theta, the DC loss is computed on the held-back Lambda), and ``dc+qf`` / ``ssdu+qf`` adding ``qf_weight`` x a
  quality term that the user supplies (``train(cfg, qf_loss=...)`` or a ``factory`` path in the config: recon
  never imports mriqa). Reference-free modes never pass the target to a loss; validation still reports
  PSNR / SSIM / NMSE against the reference (monitoring; ``best.safetensors`` is chosen by it).
- **History**: one row per validation (every ``val_every`` steps and at the end): ``step``, ``lr``,
  ``train_loss`` and ``loss_<term>`` (means since the previous row), ``K``, ``lam`` (MoDL's lambda),
  ``psnr_R<r>`` / ``ssim_R<r>`` / ``nmse_R<r>`` per validation R, ``cg_sense_psnr_R<r>`` / ``cg_sense_ssim_R<r>``
  (the CG-SENSE baseline on the same slices), ``select_psnr`` (the first validation R's PSNR within the last
  stage, -inf before it or without validation: what picks ``best.safetensors``), ``wall_s``.
- **Outputs** in ``out_dir``: ``checkpoint.pt`` (resumed automatically by a rerun with the same ``out_dir``;
  a checkpoint of another ``model`` / ``data`` / ``arch`` config is an error), ``history.json``,
  ``curves.png``, ``final.safetensors``, ``best.safetensors`` (the best validation PSNR at the first validation R
  within the last stage) and, with ``export``, the final weights there too.
- **Warm start**: ``init`` (a shipped MoDL name or a weights file of the same architecture) sets the starting
  weights of a new run (ignored when resuming).
- **Devices**: CUDA when available (``device: auto``) with bf16 autocast for the network (``amp: auto``; CG and
  FFTs stay in full precision); on CPU ``num_threads`` sets torch's thread count.
"""
from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from recon.device import resolve_device
from recon.errors import InputError
from recon.training.recon_config import build_loss, build_mode_loss, load_recon_config

__all__ = ["Trainer", "train"]

_CHECKPOINT = "checkpoint.pt"


class Trainer:
    """One training run (see the module docstring); ``run()`` trains to the end or for ``stop_after`` steps.

    Args:
        config: a config file or dict (:func:`recon.training.recon_config.load_recon_config`).
        loss: a ready loss replacing the mode's (a callable, or ``{name: (weight, callable)}``).
        qf_loss: the quality term of the ``+qf`` modes (instead of ``train.qf_loss``).
        progress: tqdm bar and log lines.
        out_dir: overrides ``out_dir``.
        overrides: ``KEY=VALUE`` strings (``--set``).
    """

    def __init__(self, config: dict | str | os.PathLike, loss: Callable | None = None,
                 qf_loss: Callable | None = None, progress: bool = True, out_dir: str | os.PathLike | None = None,
                 overrides: Iterable[str] | None = None):
        from recon.select import evenly_spaced
        from recon.train_step import build_model
        from recon.training.loop import RunState
        from recon.transforms import ModlDataTransform, slice_dataset

        self.cfg = load_recon_config(config, overrides)
        if out_dir is not None:
            self.cfg["out_dir"] = str(out_dir)
        tcfg, dcfg = self.cfg["train"], self.cfg["data"]
        self.out_dir = Path(self.cfg["out_dir"])
        self.progress = progress
        if tcfg.get("num_threads"):
            torch.set_num_threads(int(tcfg["num_threads"]))
        self.device = resolve_device(tcfg.get("device", "auto"))
        amp = tcfg.get("amp", "auto")
        self.amp = self.device.type == "cuda" and amp in ("auto", True, "bf16", "fp16")
        self.amp_dtype = torch.float16 if amp == "fp16" else torch.bfloat16

        root = Path(dcfg["root"])
        common = dict(center_fraction=dcfg.get("center_fraction"), maps=dcfg["maps"],
                      calib_width=int(dcfg["calib_width"]), cache_dir=dcfg.get("cache_dir"), seed=int(tcfg["seed"]))
        self.train_tf = ModlDataTransform(accelerations=dcfg["accelerations"], mask_types=dcfg["mask_types"],
                                          continuous=bool(dcfg["continuous"]), fixed=False,
                                          dihedral=bool(dcfg.get("dihedral", False)),
                                          root=root / dcfg["train_split"], **common)
        self.train_ds = slice_dataset(root / dcfg["train_split"], self.train_tf)
        self.train_index = evenly_spaced(len(self.train_ds), dcfg.get("train_max_slices"))
        self.val_sets = []
        for r in dcfg.get("val_accelerations") or []:
            tf = ModlDataTransform(accelerations=[float(r)], mask_types=[dcfg["val_mask_type"]], fixed=True,
                                   root=root / dcfg["val_split"], **common)
            ds = slice_dataset(root / dcfg["val_split"], tf)
            self.val_sets.append((float(r), ds, evenly_spaced(len(ds), dcfg.get("val_max_slices"))))

        torch.manual_seed(int(tcfg["seed"]))
        self.arch = self.cfg["arch"]
        self.mode = tcfg["mode"]
        self.model = build_model(self.arch, self.cfg["model"]).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=float(tcfg["lr"]),
                                          weight_decay=float(tcfg["weight_decay"]))
        self.loss = build_loss(loss) if loss is not None else build_mode_loss(tcfg, qf_loss=qf_loss)
        if isinstance(self.loss, torch.nn.Module):
            self.loss = self.loss.to(self.device)
        self.stages = [(int(s["num_unrolls"]), int(s["steps"]), float(s.get("lr", tcfg["lr"])))
                       for s in tcfg["stages"]]
        self.total_steps = sum(s[1] for s in self.stages)
        self.state = RunState()
        self.baseline_metrics: dict[str, float] = {}
        self.batch_size = int(tcfg["batch_size"])
        self.steps_per_epoch = max(1, len(self.train_index) // self.batch_size)
        if len(self.train_index) < self.batch_size:
            raise InputError(root / dcfg["train_split"], f"{len(self.train_index)} training slices, fewer than "
                                                         f"batch_size {self.batch_size}")

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def history(self) -> list[dict]:
        return self.state.history

    @property
    def ckpt_path(self) -> Path:
        return self.out_dir / _CHECKPOINT

    # -- schedule and data ---------------------------------------------------------------------------
    def stage_at(self, step: int) -> tuple[int, int, int, int]:
        """(stage index, K, step within the stage, stage length) of a global step."""
        start = 0
        for i, (k, n, _) in enumerate(self.stages):
            if step < start + n:
                return i, k, step - start, n
            start += n
        i = len(self.stages) - 1
        return i, self.stages[i][0], self.stages[i][1], self.stages[i][1]

    def lr_at(self, step: int, tc: dict | None = None) -> float:
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
        batch = collate([self.train_ds[i] for i in idx])
        return {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items()}

    # -- one step ------------------------------------------------------------------------------------
    def step_loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """``(loss, extras)`` of training step ``step`` (``recon.train_step.compute_loss``); no optimiser step."""
        from recon.train_step import compute_loss, ssdu_seeds

        _, k, _, _ = self.stage_at(step)
        self.model.train()
        if self.arch == "modl":
            self.model.num_unrolls = k
        batch = self.load_batch(step)
        seeded = self.mode.startswith("ssdu") or getattr(self.loss, "needs_refit", False)
        try:
            total, parts = compute_loss(
                self.model, batch, self.loss, mode=self.mode, ssdu=self.cfg["train"]["ssdu"],
                seeds=ssdu_seeds(self.cfg["train"]["seed"], step, batch) if seeded else None,
                num_unrolls=k if self.arch == "modl" else None, amp=self.amp, amp_dtype=self.amp_dtype)
        except InputError as exc:
            raise InputError(exc.source, f"step {step}: {exc.problem}") from None
        return total, {f"loss_{name}": v for name, v in parts.items()}

    # -- validation ----------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, num_unrolls: int) -> dict[str, float]:
        """Mean per-slice PSNR / SSIM / NMSE (data range: the volume max) over the fixed validation slices."""
        from recon.metrics import nmse, psnr, ssim
        from recon.train_step import forward_model
        from recon.transforms import collate

        self.model.eval()
        out: dict[str, float] = {}
        for r, ds, index in self.val_sets:
            scores = []
            for i in index:
                batch = {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in collate([ds[i]]).items()}
                pred = forward_model(self.model, batch, num_unrolls=num_unrolls if self.arch == "modl" else None,
                                     amp=self.amp, amp_dtype=self.amp_dtype)["output"][0, 0].cpu().numpy()
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

    def evaluate(self) -> dict[str, float]:
        """The validation row of the step just taken: metrics, baseline, K, lambda, and ``select_psnr`` (the
        first validation R's PSNR within the last stage, else -inf: what picks ``best.safetensors``)."""
        stage, k, _, _ = self.stage_at(max(self.state.step - 1, 0))
        metrics = self.validate(k) if self.val_sets else {}
        metrics.update({f"cg_sense_{key}": v for key, v in self.baseline_metrics.items()})
        metrics["K"] = k
        if self.arch == "modl":
            metrics["lam"] = float(self.model.lam.detach())
        last_stage = stage == len(self.stages) - 1
        metrics["select_psnr"] = metrics[f"psnr_R{self.val_sets[0][0]:g}"] if self.val_sets and last_stage \
            else float("-inf")
        return metrics

    # -- files ---------------------------------------------------------------------------------------
    def try_resume(self) -> bool:
        """Resume from ``checkpoint.pt`` if there is one (checked against this run's config first)."""
        from recon.training.loop import resume_state

        if not self.ckpt_path.is_file():
            return False
        try:
            saved = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
            saved_cfg = (json.loads(saved["config"]) if saved.get("config") else {}).get("recon", {})
        except Exception as exc:
            raise InputError(self.ckpt_path, f"cannot read the checkpoint to resume from ({type(exc).__name__}: "
                                             f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it to "
                                             f"start over") from None
        for key in ("model", "data", "arch"):
            if saved_cfg.get(key) != self._plain(self.cfg[key]):
                raise InputError(self.ckpt_path, f"checkpoint was made with a different '{key}' config; use "
                                                 f"another out_dir or delete it to start over")
        self.state = resume_state(self.ckpt_path, self.model, self.optimizer)
        return True

    @staticmethod
    def _plain(value: Any) -> Any:
        return json.loads(json.dumps(value, default=str))

    def warm_start(self, name_or_path: str) -> None:
        """Start from trained weights (MoDL: a shipped name or a file; VarNet: a file) instead of the random init;
        the weights must hold the configured architecture (clear error otherwise)."""
        if self.arch == "modl":
            from recon.modl import load_modl

            source = load_modl(name_or_path, device=self.device)
            if self.model.config.noise_input and not source.config.noise_input:
                from recon.modl.network import expand_noise_input

                source = expand_noise_input(source)  # the new noise channel starts at zero weight
        else:
            from recon.train_step import load_model

            _, source = load_model(name_or_path, device=self.device)
        try:
            state = source.state_dict()
            grown = [k for k in self.model.state_dict() if k.startswith("denoiser.context.") and k not in state]
            if grown:  # a coarse branch added to trained weights: it starts at zero output (ResidualDenoiser)
                state.update({k: v for k, v in self.model.state_dict().items() if k in grown})
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            raise InputError(name_or_path, f"init weights do not match the configured model "
                                           f"({str(exc).splitlines()[0]})") from None

    def export(self, path: str | os.PathLike, which: str = "final", weights: dict | None = None) -> Path:
        """Write the current weights (or ``weights``) with the run's metadata (``recon.train_step.save_model``)."""
        from recon.train_step import save_model

        model = self.model
        if weights is not None:
            model = copy.deepcopy(self.model)
            model.load_state_dict(weights)
        if self.arch == "modl":
            model.num_unrolls = self.stages[-1][0]
        rows = [h for h in self.history if any(k.startswith("psnr_") for k in h)]
        last_val = {k: v for k, v in rows[-1].items() if k.startswith(("psnr_", "ssim_", "nmse_"))} if rows else None
        extra = {"name": self.cfg["name"], "steps": self.step, "which": which, "validation": last_val,
                 "baseline_cg_sense": self.baseline_metrics, "init": self.cfg.get("init"),
                 "train_config": {k: self.cfg[k] for k in ("data", "train")}, "mode": self.mode}
        return save_model(model, path, self.arch, self.cfg["model"], extra=extra)

    def plot(self, history: list[dict]) -> None:
        from recon.training.curves import Panel, plot_history

        keys = sorted({k for h in history for k in h})
        losses = (("train_loss", "total"),) + tuple((k, k[len("loss_"):]) for k in keys if k.startswith("loss_"))
        psnr = []
        for r, _, _ in self.val_sets:
            psnr += [(f"psnr_R{r:g}", f"{self.arch} R{r:g}"), (f"cg_sense_psnr_R{r:g}", f"CG-SENSE R{r:g}")]
        panels = [Panel("training loss", losses, log_y=True)] + ([Panel("validation PSNR (dB)", tuple(psnr))]
                                                                 if psnr else [])
        title = f"{self.cfg['name']}: stages " + ", ".join(f"K={k} x {n}" for k, n, _ in self.stages)
        plot_history(history, self.out_dir / "curves.png", title, panels, require="train_loss")

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> list[dict]:
        """Train from the last checkpoint (if any) to the end, or for at most ``stop_after`` more steps;
        returns the history. Ctrl-C / SIGTERM checkpoint and raise ``KeyboardInterrupt`` (a rerun resumes)."""
        from recon.training.loop import run_steps

        tcfg = self.cfg["train"]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.try_resume()
        if not resumed and self.cfg.get("init"):
            self.warm_start(self.cfg["init"])
        if self.val_sets and not self.baseline_metrics:
            self.baseline_metrics = self.baseline()
        val_every = int(tcfg["val_every"]) or max(self.total_steps, 1)
        loop_cfg = {"seed": int(tcfg["seed"]), "recon": self._plain(self.cfg),
                    "train": {"steps": self.total_steps, "eval_every": val_every,
                              "checkpoint_every": int(tcfg["ckpt_every"]), "progress": self.progress,
                              "grad_clip": tcfg.get("grad_clip"),
                              "stop_at_step": self.step + int(stop_after) if stop_after else None}}
        if resumed and self.progress:
            print(f"[{self.cfg['name']}] resumed from {self.ckpt_path} at step {self.step}")
        keep = ("select_psnr",) + tuple(k for r, _, _ in self.val_sets for k in (f"psnr_R{r:g}", f"ssim_R{r:g}"))
        if self.step < self.total_steps:
            run_steps(self.state, name=self.cfg["name"], model=self.model, optimizer=self.optimizer, cfg=loop_cfg,
                      lr_at=self.lr_at, train_step=lambda rng: self.step_loss(self.step), evaluate=self.evaluate,
                      select="select_psnr", maximize=True, keep=keep, describe=self._describe, plot=self.plot,
                      output_dir=self.out_dir, log=print if self.progress else (lambda *a, **k: None))
        best = self.state.best
        if best is not None and math.isfinite(best.get("select_psnr", float("-inf"))):
            self.export(self.out_dir / "best.safetensors", which="best", weights=best["state"])
        if self.step >= self.total_steps:
            self.export(self.out_dir / "final.safetensors")
            if self.cfg.get("export"):
                self.export(self.cfg["export"])
        return self.history

    @staticmethod
    def _describe(row: dict) -> str:
        parts = [f"K={row.get('K')}", f"loss {row['train_loss']:.4f}"]
        parts += [f"{k[5:]} {v:.4f}" for k, v in row.items() if k.startswith("loss_")]
        parts += [f"{k} {v:.4f}" for k, v in row.items() if k.startswith(("psnr_", "ssim_"))]
        return " ".join(parts)


def train(config: dict | str | os.PathLike, loss: Callable | None = None, qf_loss: Callable | None = None,
          stop_after: int | None = None, progress: bool = True, out_dir: str | os.PathLike | None = None,
          overrides: Iterable[str] | None = None) -> Trainer:
    """Build a :class:`Trainer` and run it; returns the trainer (``.model``, ``.history``, ``.step``)."""
    trainer = Trainer(config, loss=loss, qf_loss=qf_loss, progress=progress, out_dir=out_dir, overrides=overrides)
    trainer.run(stop_after=stop_after)
    return trainer

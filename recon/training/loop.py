"""The step loop of the trainers (QF predictor, QAIRN, learned R estimator, AR-CNN): one copy of the bookkeeping.

Each trainer supplies what is its own -- how a batch is drawn and scored (``train_step``), how the model is
validated (``evaluate``), which validation metric picks the exported weights, and its learning-rate schedule --
and :func:`run_steps` does the rest the same way for all of them:

- step ``t`` gets ``numpy.random.default_rng([seed, t])`` and the learning rate ``lr_at(t, tc)``, so a resumed
  run draws the same batches and gets the same weights as an uninterrupted one;
- every ``tc["eval_every"]`` steps (and at the last) a history row ``{"step", "lr", "train_loss", <train
  extras averaged since the last row>, <validation metrics>, "wall_s"}`` is appended, logged and written to
  ``history.json``; the best row's weights are kept (CPU copies) for export;
- a checkpoint (:mod:`recon.training.checkpoints`) is written every ``tc["checkpoint_every"]`` steps and whenever
  the run stops; ``tc["max_minutes"]`` (wall clock of this run) and ``tc["stop_at_step"]`` stop early and cleanly;
- ``tc["grad_clip"]`` (optional) clips the gradient norm before each optimiser step;
- a tqdm bar when ``tc["progress"]``; the learning curves are re-plotted at most every two minutes (matplotlib
  is slow) and once at the end;
- ``tc["ema"]`` (a decay in (0, 1); 0 or absent = off) keeps an exponential moving average of the weights,
  updated after every optimiser step with decay ``min(ema, (1 + t) / (10 + t))`` at step ``t`` of the run (the
  usual warm-up, so that the first steps do not drag the average towards the starting weights for long). The
  validation metrics of a row are then the *average's* (the raw weights' are logged as ``raw_<metric>``), the
  best row keeps the average's weights, and the average is checkpointed, so resuming stays exact. Restoration
  networks commonly export such averages (SwinIR, HAT: decay 0.999): the average of the last ~1/(1 - decay)
  steps sits nearer the minimum than the last iterate of a noisy optimiser.
- Ctrl-C (SIGINT) or SIGTERM during the loop lets the step under way finish, writes the checkpoint of that
  step and raises :class:`KeyboardInterrupt` (``mriqa`` prints ``mriqa: interrupted`` and exits 130); a rerun
  resumes there. A second signal interrupts at once, leaving the last checkpoint written. At the start, temp
  files that an earlier process killed mid-write left beside the run's files are removed
  (:func:`recon.files.remove_stale_temps`).
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from recon.errors import InputError
from recon.files import remove_stale_temps
from recon.training.checkpoints import load_checkpoint, save_checkpoint, write_json

PLOT_EVERY_S = 120.0
#: the files a run writes into its output folder (their stale temp files are removed at the start)
RUN_FILES = ("checkpoint.pt", "history.json", "curves.png", "best.safetensors", "final.safetensors", "summary.json")


@dataclass
class RunState:
    """What a run carries across resumptions besides the model and optimiser (all of it is in the checkpoint).

    ``best`` is ``{"step", <selection metrics>, "state": model state dict}`` of the best validation row so far;
    ``wall_before`` the training seconds of earlier runs of the same output folder.
    """

    step: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    wall_before: float = 0.0
    config: dict | None = None  # the config of the run that wrote the checkpoint (None for a fresh run)
    ema: dict[str, torch.Tensor] | None = None  # moving-average weights (tc["ema"] > 0), on the model's device


def resume_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> RunState:
    """Restore ``model`` and ``optimizer`` from the checkpoint at ``path`` and return the rest of the run state."""
    ck = load_checkpoint(path, model, optimizer)
    device = next(iter(model.state_dict().values())).device
    ema = None if ck["ema"] is None else {k: v.to(device) for k, v in ck["ema"].items()}
    return RunState(ck["step"], ck["history"], ck["best"], ck["wall_s"], ck["config"], ema)


def start_state(output_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, resume: bool,
                name: str, log=print) -> RunState:
    """The state a run starts from: ``output_dir/checkpoint.pt``'s (model and optimiser restored, logged) when
    ``resume`` and it exists, else a fresh :class:`RunState`. Creates ``output_dir``: trainers call this once
    their data has loaded, so a run that fails on its inputs leaves nothing behind."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    ckpt = Path(output_dir) / "checkpoint.pt"
    if not (resume and ckpt.is_file()):
        return RunState()
    state = resume_state(ckpt, model, optimizer)
    log(f"[{name}] resumed from {ckpt} at step {state.step}")
    return state


def ema_decay_at(step: int, decay: float) -> float:
    """The moving-average decay used after optimiser step ``step`` (0-based) of a run: ``decay`` after a warm-up."""
    return min(float(decay), (1.0 + step) / (10.0 + step))


@torch.no_grad()
def update_ema(ema: dict[str, torch.Tensor], model: torch.nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * weights`` for floating-point entries; other buffers are copied."""
    for k, v in model.state_dict().items():
        if v.dtype.is_floating_point:
            ema[k].lerp_(v.detach(), 1.0 - decay)
        else:
            ema[k].copy_(v)


@torch.no_grad()
def _swap_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load ``weights`` into ``model`` and return copies of the weights it had."""
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(weights)
    return before


@dataclass
class LoopResult:
    stopped_early: bool  # max_minutes or stop_at_step ended the run before tc["steps"]
    wall_s: float        # training seconds over all resumptions


class _StopSignals:
    """While active (main thread only): the first SIGINT / SIGTERM is recorded in ``received`` for the loop to
    stop after the current step; a second one raises :class:`KeyboardInterrupt` at once."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def run_steps(state: RunState, *, name: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              cfg: dict, lr_at: Callable[[int, dict], float],
              train_step: Callable[[np.random.Generator], tuple[torch.Tensor, dict[str, float]]],
              evaluate: Callable[[], dict[str, float]], select: str | None = None, maximize: bool = False,
              keep: tuple[str, ...] = (), describe: Callable[[dict], str] = lambda row: "",
              plot: Callable[[list[dict]], None] = lambda history: None, output_dir: Path = Path("."),
              log=print) -> LoopResult:
    """Train ``model`` from ``state.step`` to ``cfg["train"]["steps"]``; ``state`` is updated in place.

    ``train_step(rng)`` draws a batch with ``rng`` and returns ``(loss, extras)``: the scalar loss to minimise and
    float metrics to average into the next history row (e.g. ``{"train_acc": ...}``). The loop does
    ``zero_grad / backward / step``. ``evaluate()`` returns the validation metrics (it leaves the model in
    training mode). The best weights are those whose row has the highest (``maximize``) or lowest ``select``;
    ``keep`` names the metrics stored with them; ``select=None`` keeps no best weights (a trainer that exports
    its last ones). ``describe(row)`` is the log text of a row after the step and learning rate;
    ``plot(history)`` draws the learning curves. Raises :class:`KeyboardInterrupt` after checkpointing when
    interrupted (see the module doc).
    """
    tc = cfg["train"]
    seed, total = int(cfg["seed"]), int(tc["steps"])
    ckpt_path = Path(output_dir) / "checkpoint.pt"
    max_s = float(tc["max_minutes"]) * 60 if tc.get("max_minutes") else None
    t0 = last_plot = time.time()

    def checkpoint():
        save_checkpoint(ckpt_path, model, optimizer, state.step, state.history, state.best,
                        state.wall_before + (time.time() - t0), cfg, ema=state.ema)

    ema_decay = float(tc.get("ema") or 0.0)
    if not 0.0 <= ema_decay < 1.0:
        raise InputError(None, f"train.ema must be a decay in [0, 1), got {ema_decay}")
    if ema_decay and state.ema is None:
        state.ema = {k: v.detach().clone() for k, v in model.state_dict().items()}

    remove_stale_temps(output_dir, RUN_FILES)
    bar = None
    if tc.get("progress", True):
        from tqdm import tqdm

        bar = tqdm(total=total, initial=state.step, desc=name, mininterval=10, file=sys.stderr, dynamic_ncols=True)
    run_loss, run_extras, run_n = 0.0, {}, 0
    stopped_early = False
    interrupted = None  # what stopped the run: a signal's name or "KeyboardInterrupt"
    consistent = True  # model, optimiser, average, step and history are those an uninterrupted run has there
    with _StopSignals() as stop:
        try:
            while state.step < total:
                rng = np.random.default_rng([seed, state.step])
                for g in optimizer.param_groups:
                    g["lr"] = lr_at(state.step, tc)
                loss, extras = train_step(rng)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                consistent = False
                if tc.get("grad_clip"):  # optional: clip the gradient norm before the step (the recon trainer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(tc["grad_clip"]))
                optimizer.step()
                if ema_decay:
                    update_ema(state.ema, model, ema_decay_at(state.step, ema_decay))
                state.step += 1
                step = state.step
                run_loss += float(loss.detach())
                for k, v in extras.items():
                    run_extras[k] = run_extras.get(k, 0.0) + float(v)
                run_n += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}", refresh=False)
                if step % int(tc["eval_every"]) == 0 or step == total:
                    metrics = evaluate()
                    if ema_decay:  # the row's metrics (and the best weights below) are the moving average's
                        metrics = {f"raw_{k}": v for k, v in metrics.items()}
                        raw = _swap_weights(model, state.ema)
                        metrics.update(evaluate())
                    row = {"step": step, "lr": lr_at(step - 1, tc), "train_loss": run_loss / run_n,
                           **{k: v / run_n for k, v in run_extras.items()}, **metrics,
                           "wall_s": round(state.wall_before + time.time() - t0, 1)}
                    best = state.best
                    if select is not None and (best is None or (row[select] > best[select] if maximize
                                                                else row[select] < best[select])):
                        state.best = {"step": step, **{k: row[k] for k in keep},
                                      "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
                    if ema_decay:
                        model.load_state_dict(raw)
                    state.history.append(row)
                    run_loss, run_extras, run_n = 0.0, {}, 0
                    log(f"[{name}] step {step}/{total} lr {row['lr']:.2e} {describe(row)} ({row['wall_s']:.0f}s)")
                    if time.time() - last_plot > PLOT_EVERY_S:
                        plot(state.history)
                        last_plot = time.time()
                    write_json(state.history, Path(output_dir) / "history.json")
                consistent = True
                if step % int(tc["checkpoint_every"]) == 0 and step < total:
                    checkpoint()
                if stop.received:
                    interrupted = stop.received
                    break
                timed_out = max_s is not None and time.time() - t0 > max_s
                if step < total and (timed_out or (tc.get("stop_at_step") and step >= int(tc["stop_at_step"]))):
                    stopped_early = True
                    log(f"[{name}] {'max_minutes' if timed_out else 'stop_at_step'} reached at step {step}; "
                        "checkpoint saved (run again to resume)")
                    break
        except KeyboardInterrupt:
            interrupted = "KeyboardInterrupt"
        if interrupted is not None:
            if bar is not None:
                bar.close()
            if consistent:
                checkpoint()
                write_json(state.history, Path(output_dir) / "history.json")
                log(f"[{name}] interrupted ({interrupted}) after step {state.step}; checkpoint saved "
                    "(run again to resume)")
            else:  # mid-step: the weights may be half-way; the last checkpoint written stands
                log(f"[{name}] interrupted ({interrupted}) in the middle of a step; not checkpointed here "
                    "(run again to resume from the last checkpoint)")
            raise KeyboardInterrupt
    if bar is not None:
        bar.close()
    plot(state.history)
    checkpoint()
    return LoopResult(stopped_early, state.wall_before + time.time() - t0)


def training_record(cfg: dict, state: RunState, result: LoopResult, device, **facts) -> dict:
    """The ``training`` metadata of exported weights: the config, steps done / planned, whether complete, the
    best row's step, training seconds, the trainer's ``facts`` (e.g. the image counts), torch, device, Python."""
    import platform

    total = int(cfg["train"]["steps"])
    return {"config": cfg, "steps_done": state.step, "steps_planned": total, "complete": state.step >= total,
            "best_step": None if state.best is None else state.best["step"], "wall_s": round(result.wall_s, 1),
            **facts, "torch": torch.__version__, "device": str(device), "python": platform.python_version()}


def export_weights(model: torch.nn.Module, output_dir: Path, export: str | None, meta: dict, name: str,
                   log=print) -> None:
    """Write ``output_dir/best.safetensors`` and, if ``export`` is set, the same weights there (a relative
    ``export`` is taken from the working directory)."""
    from recon.io.weights import save_weights

    save_weights(model, Path(output_dir) / "best.safetensors", meta)
    if export:
        exp = Path(export) if Path(export).is_absolute() else Path.cwd() / export
        save_weights(model, exp, meta)
        log(f"[{name}] exported {exp}")

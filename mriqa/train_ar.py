"""Artifact removal with a QF loss (QF paper section 5.3, Figs. 16-17): ``mriqa train-ar --config C``.

Reference-free training: the network (AR-CNN or SR-CNN, :mod:`mriqa.models.arcnn`) sees only degraded images
and is trained with ``L1(output, input) + w * QFLoss(output)`` -- an L1 *consistency* term to its own
(degraded) input and the frozen QF predictor's ``mean(1 - QF)`` (:class:`mriqa.losses.QFLoss`, ``gray`` or
``rgb``). The clean images are never used by the loss; they only serve the logged PSNR (and
``scripts/eval_ar.py``). With ``w = 0`` and the residual network (identity at initialisation) the optimum is
the identity: the L1-only model returns its input.

Degradations (``degradation.type``):

- ``jpeg``: Pillow JPEG (4:2:0 for RGB) at a QF drawn uniformly from ``qf_min..qf_max`` on a crop of
  ``patch + 8`` pixels, then a ``patch`` window at a random offset 0..7 (every 8 x 8 grid phase), as QAIRN.
- ``undersample``: MRI magnitude slices (float ``[H, W]`` in [0, 1], treated as real images with zero phase):
  centred orthonormal 2-D FFT, a fastMRI random Cartesian line mask (``recon.masks.make_mask("random",
  ...)``, acceleration ``accel``, default centre fraction ``0.32 / R``, a fresh mask per sample), zero-filled
  inverse FFT, magnitude; then a ``patch`` crop whose clean version has mean intensity >= 0.1 (anatomy).

The step loop is the other trainers' (:func:`recon.training.loop.run_steps`): the batch of step ``t`` is drawn
from ``numpy.random.default_rng([seed, t])``, Adam at a constant ``lr``; ``checkpoint.pt`` (atomic) is written
every ``checkpoint_every`` steps, when the run stops (``max_minutes``, ``stop_at_step``, Ctrl-C) and at the end,
and a rerun resumes from it exactly. ``history.json`` rows (every ``eval_every`` steps) hold the means since the
last row of L1 (``l1``), QF (``qf``) and PSNR to clean of the input and the output (``psnr_in``, ``psnr_out``,
dB; monitoring only). There is no validation-based choice (that would need clean images): the final weights go
to ``output_dir/final.safetensors`` and, if ``export`` is set, there too.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recon.config import build_from_config
from recon.errors import InputError
from mriqa.jpeg import jpeg_compress
from mriqa.models.arcnn import ARCNN
from recon.io.weights import save_weights
from recon.metrics_torch import psnr
from recon.training.loop import run_steps, start_state

DEFAULTS: dict[str, Any] = {
    "name": "ar",
    "seed": 0,
    "model": {"in_channels": 3, "variant": "arcnn", "residual": True},
    "data": {"train": []},
    "degradation": {"type": "jpeg", "qf_min": 10, "qf_max": 30, "subsampling": "4:2:0", "accel": 4.0},
    "loss": {"qf_weight": 0.0, "qf_model": None, "qf_pool": "mean"},
    "train": {"steps": 600, "batch": 8, "patch": 48, "lr": 3.0e-4, "eval_every": 50, "checkpoint_every": 200,
              "threads": 1, "max_minutes": None, "stop_at_step": None, "progress": False},
    "output_dir": "runs/ar",
    "export": None,
}


def load_config(path=None, overrides=None, **extra) -> dict:
    """:data:`DEFAULTS` <- YAML file <- ``extra`` <- ``--set KEY=VALUE`` (:func:`recon.config.load_config`,
    strict: every key has a default)."""
    from recon.config import load_config as layered

    return layered(DEFAULTS, path, overrides, extra)


def constant_lr(step: int, tc: dict) -> float:
    return float(tc["lr"])


# ----------------------------------------------------------------------------------------------- data
def undersample(clean: np.ndarray, accel: float, seed: int) -> np.ndarray:
    """Zero-filled magnitude of a real image ``[H, W]`` under a random Cartesian line mask (columns)."""
    from recon.fft import fft2c_np, ifft2c_np
    from recon.masks import make_mask

    k = fft2c_np(clean.astype(np.float64))
    m = make_mask("random", clean.shape, float(accel), seed=int(seed)).mask.numpy().reshape(1, -1)
    return np.abs(ifft2c_np(k * m)).astype(np.float32)


def degrade(clean01: np.ndarray, dc: dict, rng: np.random.Generator) -> np.ndarray:
    """One degraded copy of ``clean01`` (float32 ``[H, W, C]`` in [0, 1]) -> float32 of the same shape."""
    if dc["type"] == "jpeg":
        qf = int(rng.integers(int(dc["qf_min"]), int(dc["qf_max"]) + 1))
        return jpeg_compress(clean01, qf, dc.get("subsampling", "4:2:0"))
    if dc["type"] == "undersample":
        return undersample(clean01[..., 0], dc["accel"], int(rng.integers(2 ** 31)))[..., None]
    raise InputError(None, f"degradation.type must be 'jpeg' or 'undersample', got {dc['type']!r}")


def sample_batch(images: list[np.ndarray], rng: np.random.Generator, batch: int, patch: int, dc: dict):
    """``(degraded, clean)`` float32 ``[B, C, patch, patch]`` tensors in [0, 1] (see the module doc)."""
    xs, ys = [], []
    for _ in range(batch):
        img = images[int(rng.integers(len(images)))]
        h, w = img.shape[:2]
        big = patch + 8
        if h < big or w < big:
            raise InputError(None, f"training image of {h}x{w} pixels is smaller than patch + 8 = {big}")
        if dc["type"] == "jpeg":
            r0, c0 = int(rng.integers(h - big + 1)), int(rng.integers(w - big + 1))
            crop = img[r0:r0 + big, c0:c0 + big].astype(np.float32) / 255.0
            comp = degrade(crop, dc, rng)
            dr, dc_ = int(rng.integers(8)), int(rng.integers(8))
            ys.append(crop[dr:dr + patch, dc_:dc_ + patch])
            xs.append(comp[dr:dr + patch, dc_:dc_ + patch])
        else:
            clean = img.astype(np.float32) / 255.0
            deg = degrade(clean, dc, rng)
            for _ in range(20):  # a crop on the anatomy
                r0, c0 = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
                if clean[r0:r0 + patch, c0:c0 + patch].mean() >= 0.1:
                    break
            ys.append(clean[r0:r0 + patch, c0:c0 + patch])
            xs.append(deg[r0:r0 + patch, c0:c0 + patch])
    x = torch.from_numpy(np.stack(xs).transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(np.stack(ys).transpose(0, 3, 1, 2).copy())
    return x, y


def make_qf_loss(cfg: dict):
    """The QF term (``None`` when ``loss.qf_weight`` is 0 and no ``qf_model`` is asked for monitoring)."""
    from mriqa.losses import QFLoss

    lc = cfg["loss"]
    model = lc.get("qf_model") or ("rgb" if int(cfg["model"]["in_channels"]) == 3 else "gray")
    return QFLoss(model=model, pool=lc.get("qf_pool", "mean"))


# ----------------------------------------------------------------------------------------------- training
def train(cfg: dict, resume: bool = True, log=print) -> dict:
    """Run (or resume) one artifact-removal training; returns ``{"step", "stopped_early", "wall_s", "weights",
    "model"}``."""
    from mriqa.qf_data import load_pools

    tc, dc = cfg["train"], cfg["degradation"]
    out = Path(cfg["output_dir"])
    if tc.get("threads"):
        torch.set_num_threads(int(tc["threads"]))
    seed, w = int(cfg["seed"]), float(cfg["loss"]["qf_weight"])
    channels = int(cfg["model"]["in_channels"])
    images = list(load_pools(cfg["data"]["train"], channels).images)
    torch.manual_seed(seed)
    model = build_from_config(ARCNN.from_config, cfg["model"])
    qf_loss = make_qf_loss(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=float(tc["lr"]))
    state = start_state(out, model, opt, resume, cfg["name"], log)
    model.train()
    batch, patch = int(tc["batch"]), int(tc["patch"])

    def train_step(rng):
        x, y = sample_batch(images, rng, batch, patch, dc)
        out_img = model(x)
        l1 = F.l1_loss(out_img, x)
        qf = qf_loss.scores(out_img).mean()
        loss = l1 + w * (1.0 - qf) if w else l1
        with torch.no_grad():
            extras = {"l1": float(l1), "qf": float(qf), "psnr_in": float(psnr(x, y)),
                      "psnr_out": float(psnr(out_img.clamp(0, 1), y))}
        return loss, extras

    def describe(row):
        return (f"L1(out, in) {row['l1']:.4f} QF(out) {row['qf']:.3f} "
                f"PSNR to clean {row['psnr_in']:.2f} -> {row['psnr_out']:.2f} dB")

    result = run_steps(state, name=cfg["name"], model=model, optimizer=opt, cfg=cfg, lr_at=constant_lr,
                       train_step=train_step, evaluate=lambda: {}, describe=describe, output_dir=out, log=log)
    meta = {"task": "artifact removal, reference-free: L1(output, input) + w * (1 - QF(output))",
            "training": {"config": cfg, "steps_done": state.step, "wall_s": round(result.wall_s, 1),
                         "torch": torch.__version__}}
    weights = save_weights(model.eval(), out / "final.safetensors", meta)
    if cfg.get("export"):
        save_weights(model, cfg["export"], meta)
        log(f"[{cfg['name']}] exported {cfg['export']}")
    return {"step": state.step, "stopped_early": result.stopped_early, "wall_s": result.wall_s,
            "weights": str(weights), "model": model}


def main(argv: list[str] | None = None) -> int:
    """``python -m mriqa.train_ar ARGS`` = ``mriqa train-ar ARGS``."""
    from mriqa.cli import main as mriqa_main

    return mriqa_main(["train-ar", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())

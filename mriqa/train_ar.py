"""Artifact removal with a QF loss (QF paper section 5.3, Figs. 16-17): ``python -m mriqa.train_ar --config C``.

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

Batches are drawn from ``numpy.random.default_rng([seed, step])``; Adam at a constant ``lr``. The final
weights go to ``output_dir/final.safetensors`` (no validation-based choice: that would need clean images);
``checkpoint.pt`` (atomic) is written every ``checkpoint_every`` steps and at the end, and a new run resumes
from it. ``history.json`` logs the mean L1, QF and PSNR-to-clean (monitoring only) per ``log_every`` steps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recon.errors import InputError
from recon.files import atomic_path
from mriqa.jpeg import jpeg_compress
from mriqa.models.arcnn import ARCNN
from mriqa.train_qf import layered_config
from recon.io.weights import save_weights

DEFAULTS: dict[str, Any] = {
    "name": "ar",
    "seed": 0,
    "model": {"in_channels": 3, "variant": "arcnn", "residual": True},
    "data": {"train": []},
    "degradation": {"type": "jpeg", "qf_min": 10, "qf_max": 30, "subsampling": "4:2:0", "accel": 4.0},
    "loss": {"qf_weight": 0.0, "qf_model": None, "qf_pool": "mean"},
    "train": {"steps": 600, "batch": 8, "patch": 48, "lr": 3.0e-4, "log_every": 50, "checkpoint_every": 200,
              "threads": 1, "max_minutes": None},
    "output_dir": "runs/ar",
}


def load_config(path=None, overrides=None, **extra) -> dict:
    """Defaults <- YAML file <- ``extra`` <- ``KEY=VALUE`` overrides."""
    return layered_config(DEFAULTS, path, overrides, extra)


# ----------------------------------------------------------------------------------------------- data
def undersample(clean: np.ndarray, accel: float, seed: int) -> np.ndarray:
    """Zero-filled magnitude of a real image ``[H, W]`` under a random Cartesian line mask (columns)."""
    from recon.masks import make_mask

    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(clean.astype(np.float64)), norm="ortho"))
    m = make_mask("random", clean.shape, float(accel), seed=int(seed)).mask.numpy().reshape(1, -1)
    zf = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k * m), norm="ortho"))
    return np.abs(zf).astype(np.float32)


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
    """Run (or resume) one artifact-removal training; returns ``{"step", "wall_s", "weights", "model"}``."""
    from mriqa.qf_data import load_pools

    tc, dc = cfg["train"], cfg["degradation"]
    out = Path(cfg["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    if tc.get("threads"):
        torch.set_num_threads(int(tc["threads"]))
    seed, w = int(cfg["seed"]), float(cfg["loss"]["qf_weight"])
    channels = int(cfg["model"]["in_channels"])
    images = list(load_pools(cfg["data"]["train"], channels).images)
    torch.manual_seed(seed)
    model = ARCNN.from_config(cfg["model"])
    qf_loss = make_qf_loss(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=float(tc["lr"]))
    step, history, wall_before = 0, [], 0.0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.is_file():
        ck = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, history, wall_before = int(ck["step"]), json.loads(ck["history"]), float(ck["wall_s"])
        log(f"[{cfg['name']}] resumed at step {step}")
    t0 = time.time()

    def checkpoint():
        with atomic_path(ckpt, suffix=".pt") as tmp:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "history": json.dumps(history), "wall_s": wall_before + time.time() - t0}, tmp)
        with atomic_path(out / "history.json", suffix=".json") as tmp:
            tmp.write_text(json.dumps(history, indent=1))

    total, patch = int(tc["steps"]), int(tc["patch"])
    max_s = float(tc["max_minutes"]) * 60 if tc.get("max_minutes") else None
    acc = {"l1": 0.0, "qf": 0.0, "psnr_in": 0.0, "psnr_out": 0.0, "n": 0}
    model.train()
    while step < total:
        x, y = sample_batch(images, np.random.default_rng([seed, step]), int(tc["batch"]), patch, dc)
        out_img = model(x)
        l1 = F.l1_loss(out_img, x)
        qf = qf_loss.scores(out_img).mean()
        loss = l1 + w * (1.0 - qf) if w else l1
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        with torch.no_grad():
            acc["l1"] += float(l1)
            acc["qf"] += float(qf)
            acc["psnr_in"] += float(-10 * torch.log10(F.mse_loss(x, y).clamp_min(1e-10)))
            acc["psnr_out"] += float(-10 * torch.log10(F.mse_loss(out_img.clamp(0, 1), y).clamp_min(1e-10)))
            acc["n"] += 1
        if step % int(tc["log_every"]) == 0 or step == total:
            n = acc.pop("n")
            row = {"step": step, **{k: v / n for k, v in acc.items()}, "wall_s": round(wall_before + time.time() - t0, 1)}
            history.append(row)
            acc = {"l1": 0.0, "qf": 0.0, "psnr_in": 0.0, "psnr_out": 0.0, "n": 0}
            log(f"[{cfg['name']}] step {step}/{total} L1(out, in) {row['l1']:.4f} QF(out) {row['qf']:.3f} "
                f"PSNR to clean {row['psnr_in']:.2f} -> {row['psnr_out']:.2f} dB ({row['wall_s']:.0f}s)")
        if step % int(tc["checkpoint_every"]) == 0:
            checkpoint()
        if max_s is not None and time.time() - t0 > max_s and step < total:
            log(f"[{cfg['name']}] max_minutes reached at step {step}")
            break
    checkpoint()
    meta = {"task": "artifact removal, reference-free: L1(output, input) + w * (1 - QF(output))",
            "training": {"config": cfg, "steps_done": step, "wall_s": round(wall_before + time.time() - t0, 1),
                         "torch": torch.__version__}}
    weights = save_weights(model.eval(), out / "final.safetensors", meta)
    return {"step": step, "wall_s": wall_before + time.time() - t0, "weights": str(weights), "model": model}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mriqa.train_ar", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="YAML config (configs/ar-rgb*.yaml, configs/ar-gray*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set loss.qf_weight=0.1")
    p.add_argument("--output-dir", help="run folder; default: the config's output_dir")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint and start over")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides, **({"output_dir": args.output_dir} if args.output_dir else {}))
        s = train(cfg, resume=not args.no_resume)
    except InputError as exc:
        print(f"train_ar: error: {exc}", file=sys.stderr)
        return 2
    print(f"train_ar: {cfg['name']} step {s['step']} in {s['wall_s']:.0f}s; weights {s['weights']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

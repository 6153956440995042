"""Self-supervised training of the QF predictor (``mriqa train-qf --config configs/qf-gray.yaml``).

Each step draws a batch of random patches (:class:`mriqa.qf_data.PatchSampler`), JPEG-compresses each at a
random QF (Pillow, quality 1..100; QF distribution ``log`` or ``uniform``, :mod:`mriqa.jpeg`) and fits the
QF map of :class:`mriqa.models.QFNet` to QF / 100 at every output cell:

- ``mode: regression`` (default): mean squared error between the sigmoid map and the target.
- ``mode: classification``: the paper's 5-class variant, QF in {0, 20, 40, 60, 80}, cross-entropy per cell.

Optimiser: Adam (``lr``, ``weight_decay``), linear warm-up for ``warmup`` steps then cosine decay to
``lr_min`` at ``steps``. Validation: a fixed set of ``val_patches`` patches from the validation images
(drawn once with seed ``seed + 1000003``); score of a patch = mean of its QF map; accuracy = fraction with
``|score - target| <= 0.02`` (the paper's definition). The best-validation weights are exported.

Determinism and resume: the batch of step ``t`` is drawn from ``numpy.random.default_rng([seed, t])``, the
model is initialised from ``torch.manual_seed(seed)``, and the learning rate is a function of ``t``; a run
writes ``checkpoint.pt`` (model, optimiser, step, history, best weights; atomic) every
``checkpoint_every`` steps and when it stops, and a new run with the same ``output_dir`` resumes from it
automatically (``--no-resume`` starts over). Resumed and uninterrupted runs give identical weights. Ctrl-C or
SIGTERM checkpoints the last completed step and exits 130 (:mod:`recon.training.loop`). The config is read by
:func:`recon.config.load_config`: a key that :data:`DEFAULTS` lacks is an error (below :data:`OPEN_KEYS` excepted).
Calibration (``calibrate: {max_images: 12}``, optional): after training, the whole-image scores (mean of the
raw map) of ``max_images`` validation images (MRI: cropped to the head's bounding box), JPEG-compressed at QF
5, 10, ..., 100 and uncompressed (target 1.0), are fitted to the true QF by isotonic regression (pool adjacent
violators); the fitted blocks become the monotone piecewise-linear map ``QFNet.calibration`` that is applied
to every map value (see :mod:`mriqa.models.qfnet`). ``mriqa train-qf --calibrate-only`` redoes this on the
run's ``best.safetensors`` without training.
``max_minutes`` stops a run cleanly (checkpoint + export of the best weights so far) after that wall time;
``stop_at_step`` does the same at a given step (splitting a run into sessions; the tests use it).
``init: PATH`` (optional) starts a new run from the weights of an earlier one (a ``.safetensors`` written by this
trainer, same architecture) instead of a random initialisation; a resumed run ignores it (its checkpoint wins).

Outputs in ``output_dir``: ``checkpoint.pt``, ``best.safetensors``, ``history.json``, ``curves.png`` (loss and
accuracy, train and validation), ``train.log`` lines via stdout; and the best weights copied to ``export``.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recon.config import build_from_config
from recon.errors import InputError
from recon.device import resolve_device
from recon.training.loop import export_weights, run_steps, start_state, training_record
from mriqa.models.qfnet import QFNet
from mriqa.normalize import NORMALIZATION
from mriqa.qf_data import PatchSampler, load_pools

ACC_TOL = 0.02
VAL_SEED_OFFSET = 1000003

DEFAULTS: dict[str, Any] = {
    "name": "qf",
    "seed": 0,
    "mode": "regression",
    # num_classes / class_qfs: None = the paper's 5 classes (QF 0, 20, .., 80) in classification mode
    "model": {"in_channels": 1, "width": 32, "blurpool": False, "num_classes": None, "class_qfs": None},
    "data": {"kind": "mri", "train": [], "val": []},
    "sampler": {
        "patch": 64,
        "distribution": "log",
        "p_clean": 0.05,
        "p_foreground": 0.9,
        "subsampling": "4:2:0",
        "noise": None,
        "blur": None,
    },
    "train": {
        "steps": 10000,
        "batch": 32,
        "lr": 1.0e-3,
        "lr_min": 1.0e-5,
        "warmup": 200,
        "weight_decay": 0.0,
        "eval_every": 500,
        "checkpoint_every": 250,
        "val_patches": 512,
        "threads": 1,
        "max_minutes": None,
        "stop_at_step": None,
        "progress": True,
        "device": "auto",
    },
    "calibrate": None,
    "init": None,
    "output_dir": "runs/qf",
    "export": None,
}
CALIBRATION_QFS = [5, 10, 15, 20] + list(range(25, 101, 5))
#: off by default (None), free-form below once set: noise {p, p_native, sigma_min, sigma_max}, blur {p, sigma_min,
#: sigma_max, target, tolerance, qf_at_max} (mriqa.qf_data), calibrate {max_images, qfs}
OPEN_KEYS = ("sampler.noise", "sampler.blur", "calibrate")


# ----------------------------------------------------------------------------------------------- config
def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None, **extra) -> dict:
    """:data:`DEFAULTS` <- YAML file <- ``extra`` <- ``--set KEY=VALUE`` (:func:`recon.config.load_config`:
    unknown keys are errors, except below the option blocks that are off by default: :data:`OPEN_KEYS`)."""
    from recon.config import load_config as layered

    return layered(DEFAULTS, path, overrides, extra, open_keys=OPEN_KEYS)


# ----------------------------------------------------------------------------------------------- helpers
def lr_at(step: int, tc: dict) -> float:
    """Linear warm-up, then cosine from ``lr`` to ``lr_min`` at ``steps``."""
    lr, lr_min, warm, total = float(tc["lr"]), float(tc["lr_min"]), int(tc["warmup"]), int(tc["steps"])
    if warm and step < warm:
        return lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * t))


def build_model(cfg: dict) -> QFNet:
    mc = {k: v for k, v in cfg["model"].items() if v is not None}
    if cfg["mode"] == "classification":
        mc.setdefault("num_classes", 5)
        mc.setdefault("class_qfs", [0, 20, 40, 60, 80])
    return build_from_config(QFNet.from_config, mc)


def _load_init(model: QFNet, path: str) -> None:
    """Copy the weights of an earlier run into ``model`` (clear error when the file or architecture differs)."""
    from recon.io.weights import load_weights

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "init weights file not found")
    state, _ = load_weights(p)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(p, f"init weights do not fit the configured model ({str(e).splitlines()[0]})") from None


def make_sampler(pool, cfg: dict) -> PatchSampler:
    sc = cfg["sampler"]
    return PatchSampler(
        pool,
        patch=sc["patch"],
        distribution=sc["distribution"],
        p_clean=sc["p_clean"],
        p_foreground=sc["p_foreground"],
        subsampling=sc["subsampling"],
        noise=sc.get("noise"),
        mode=cfg["mode"],
        blur=sc.get("blur"),
    )


def loss_fn(model: QFNet, x: torch.Tensor, target: torch.Tensor, label: torch.Tensor, mode: str):
    """(loss, patch scores [B]) for a batch."""
    z = model.logits(x)
    if mode == "classification":
        lab = label.view(-1, 1, 1).expand(-1, z.shape[-2], z.shape[-1])
        loss = F.cross_entropy(z, lab)
        p = torch.softmax(z, dim=1)
        qmap = (p * model._class_values.view(1, -1, 1, 1)).sum(dim=1)
    else:
        qmap = torch.sigmoid(z)[:, 0]
        loss = F.mse_loss(qmap, target.view(-1, 1, 1).expand_as(qmap))
    return loss, qmap.mean(dim=(-2, -1))


@torch.no_grad()
def evaluate(model: QFNet, val: dict, mode: str, batch: int = 128) -> dict:
    model.eval()
    losses, scores = [], []
    n = val["x"].shape[0]
    for i in range(0, n, batch):
        sl = slice(i, i + batch)
        loss, s = loss_fn(model, val["x"][sl], val["target"][sl], val["label"][sl], mode)
        losses.append(float(loss) * s.shape[0])
        scores.append(s)
    model.train()
    s = torch.cat(scores)
    err = (s - val["target"]).abs()
    acc = float((err <= ACC_TOL).float().mean())
    return {"val_loss": sum(losses) / n, "val_mae": float(err.mean()), "val_acc": acc}


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    from recon.training.curves import Panel, plot_history

    plot_history(history, path, title, [
        Panel("loss", (("train_loss", "train"), ("val_loss", "validation")), log_y=True),
        Panel(f"accuracy (|pred-true| <= {ACC_TOL})", (("train_acc", "train"), ("val_acc", "validation")),
              ylim=(0, 1)),
    ])


# ----------------------------------------------------------------------------------------------- calibration
def isotonic_blocks(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators fit of y on x (non-decreasing) -> (block mean x, block value), x increasing."""
    order = np.argsort(x, kind="stable")
    xs, ys = np.asarray(x, float)[order], np.asarray(y, float)[order]
    blocks: list[list[float]] = []  # [sum_y, count, sum_x]
    for xi, yi in zip(xs, ys):
        blocks.append([yi, 1.0, xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            a = blocks.pop()
            blocks[-1] = [blocks[-1][0] + a[0], blocks[-1][1] + a[1], blocks[-1][2] + a[2]]
    bx = np.array([b[2] / b[1] for b in blocks])
    by = np.array([b[0] / b[1] for b in blocks])
    keep = np.concatenate([[True], np.diff(bx) > 1e-9])
    return bx[keep], by[keep]


def _calibration_images(pool, n: int) -> list[np.ndarray]:
    idx = np.unique(np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int))
    out = []
    for i in idx:
        img, mask = pool.images[i], pool.masks[i]
        if mask is not None and mask.any():
            ys, xs = np.nonzero(mask)
            img = img[max(0, ys.min() - 8): ys.max() + 9, max(0, xs.min() - 8): xs.max() + 9]
        out.append(img)
    return out


@torch.no_grad()
def calibrate(model: QFNet, pool, cfg: dict, log=print) -> dict:
    """Fit ``model.calibration`` on validation images (see the module doc); returns the calibration dict."""
    from mriqa.jpeg import jpeg_compress

    cc = cfg.get("calibrate") or {}
    qfs = cc.get("qfs", CALIBRATION_QFS)
    model.eval()
    model.set_calibration(None)
    dev = next(model.parameters()).device
    scores, targets = [], []
    for img in _calibration_images(pool, int(cc.get("max_images", 12))):
        src = img[..., 0] if img.shape[-1] == 1 else img
        for q in list(qfs) + [None]:
            x = src.astype(np.float32) / 255.0 if q is None else jpeg_compress(src, int(q))
            x = x.reshape(img.shape).transpose(2, 0, 1)
            t = torch.from_numpy(np.ascontiguousarray(x))[None].to(dev)
            scores.append(float(model.raw_map(t).mean()))
            targets.append(1.0 if q is None else q / 100.0)
    bx, by = isotonic_blocks(np.array(scores), np.array(targets))
    xs, ys = list(bx), list(by)
    if xs[0] > 0:
        xs, ys = [0.0] + xs, [min(0.0, ys[0])] + ys
    if xs[-1] < 1:
        xs, ys = xs + [1.0], ys + [max(1.0, ys[-1])]
    kx, ky = [], []
    for x, y in zip(xs, ys):  # knots rounded for the metadata; keep x strictly increasing after rounding
        x, y = round(float(x), 6), round(float(y), 6)
        if kx and x <= kx[-1]:
            ky[-1] = max(ky[-1], y)
            continue
        kx.append(x)
        ky.append(max(y, ky[-1]) if ky else y)
    if len(kx) < 2:  # all scores equal: identity
        kx, ky = [0.0, 1.0], [0.0, 1.0]
    cal = {"x": kx, "y": ky}
    model.set_calibration(cal)
    err_before = float(np.mean(np.abs(np.array(scores) - np.array(targets))))
    log(f"[{cfg['name']}] calibration: {len(xs)} knots from {len(scores)} validation scores "
        f"(raw whole-image MAE {err_before:.4f})")
    return cal


def calibrate_run(cfg: dict, log=print) -> Path:
    """``--calibrate-only``: calibrate ``output_dir/best.safetensors`` on the validation data and re-export."""
    from mriqa.weights_io import load_qfnet

    out = Path(cfg["output_dir"]) if Path(cfg["output_dir"]).is_absolute() else Path.cwd() / cfg["output_dir"]
    best = out / "best.safetensors"
    model, meta = load_qfnet(best)
    channels = model.in_channels
    val_pool = load_pools(cfg["data"]["val"] or cfg["data"]["train"], channels)
    meta["calibration"] = calibrate(model, val_pool, cfg, log)
    meta.pop("arch", None), meta.pop("config", None), meta.pop("mriqa_format", None)
    export_weights(model, out, cfg.get("export"), meta, cfg["name"], log)
    return best


# ----------------------------------------------------------------------------------------------- training
def train(cfg: dict, resume: bool = True, log=print) -> dict:
    """Run (or resume) the training described by ``cfg``; returns a summary dict."""
    tc, mode = cfg["train"], cfg["mode"]
    if mode not in ("regression", "classification"):
        raise InputError(None, f"mode must be 'regression' or 'classification', got {mode!r}")
    out = Path(cfg["output_dir"]) if Path(cfg["output_dir"]).is_absolute() else Path.cwd() / cfg["output_dir"]
    if tc.get("threads"):
        torch.set_num_threads(int(tc["threads"]))
    seed = int(cfg["seed"])
    channels = int(cfg["model"]["in_channels"])

    t_load = time.time()
    train_pool = load_pools(cfg["data"]["train"], channels)
    val_pool = load_pools(cfg["data"]["val"], channels) if cfg["data"].get("val") else train_pool
    sampler = make_sampler(train_pool, cfg)
    val_sampler = make_sampler(val_pool, cfg)
    vb = val_sampler.sample(np.random.default_rng([seed, VAL_SEED_OFFSET]), int(tc["val_patches"]))
    val = {
        "x": torch.from_numpy(vb.x),
        "target": torch.from_numpy(vb.target),
        "label": torch.from_numpy(vb.label),
    }
    log(
        f"[{cfg['name']}] data: train {len(train_pool)} images ({train_pool.pixels / 1e6:.1f} Mpx), "
        f"val {len(val_pool)} images, {len(vb.target)} val patches; loaded in {time.time() - t_load:.1f}s"
    )

    device = resolve_device(tc["device"])
    val = {k: v.to(device) for k, v in val.items()}
    torch.manual_seed(seed)
    model = build_model(cfg).to(device)
    if cfg.get("init"):
        _load_init(model, cfg["init"])
    opt = torch.optim.Adam(model.parameters(), lr=float(tc["lr"]), weight_decay=float(tc["weight_decay"]))
    state = start_state(out, model, opt, resume, cfg["name"], log)
    model.train()

    def train_step(rng):
        b = sampler.sample(rng, int(tc["batch"]))
        x, tgt, lab = (torch.from_numpy(a).to(device) for a in (b.x, b.target, b.label))
        loss, scores = loss_fn(model, x, tgt, lab, mode)
        return loss, {"train_acc": float(((scores.detach() - tgt).abs() <= ACC_TOL).float().mean())}

    def describe(row):
        return (f"train_loss {row['train_loss']:.5f} train_acc {row['train_acc']:.3f} val_loss {row['val_loss']:.5f} "
                f"val_mae {row['val_mae']:.4f} val_acc {row['val_acc']:.3f}")

    result = run_steps(state, name=cfg["name"], model=model, optimizer=opt, cfg=cfg, lr_at=lr_at,
                       train_step=train_step, evaluate=lambda: evaluate(model, val, mode), select="val_mae",
                       maximize=False, keep=("val_mae", "val_acc", "val_loss"), describe=describe,
                       plot=lambda h: plot_curves(h, out / "curves.png", f"{cfg['name']} ({mode})"),
                       output_dir=out, log=log)
    step, best, wall = state.step, state.best, result.wall_s

    # export the best validation weights
    final = build_model(cfg)
    final.load_state_dict(best["state"] if best is not None else model.state_dict())
    final.eval()
    calibration = calibrate(final, val_pool, cfg, log) if cfg.get("calibrate") and best is not None else None
    meta = {
        "normalization": NORMALIZATION,
        "kind": cfg["data"].get("kind", "mri" if channels == 1 else "photo"),
        "channels": channels,
        "mode": mode,
        "training": training_record(cfg, state, result, device, train_images=len(train_pool),
                                    val_images=len(val_pool)),
        "val_metrics": None if best is None else {k: best[k] for k in ("val_mae", "val_acc", "val_loss")},
        "calibration": calibration,
    }
    export_weights(final, out, cfg.get("export"), meta, cfg["name"], log)
    return {
        "step": step,
        "stopped_early": result.stopped_early,
        "wall_s": wall,
        "best": None if best is None else {k: best[k] for k in ("step", "val_mae", "val_acc")},
        "output_dir": str(out),
        "model": model.cpu(),
    }

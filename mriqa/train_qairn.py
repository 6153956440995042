"""QAIRN training: JPEG deblocking (``mriqa train-qairn --config configs/qairn.yaml``).

Each step draws ``batch`` patches: a random image of the training pool (uniform over images), a random crop of
``patch + 8`` pixels (random flips / 90-degree rotations), JPEG-compressed as a whole with Pillow at a quality
factor drawn uniformly from ``qf_min..qf_max`` (5..95, as the paper; it used OpenCV's codec, we use
Pillow/libjpeg with 4:2:0 chroma subsampling, :mod:`mriqa.jpeg`), then a ``patch`` x ``patch`` window (96) cut
at a random offset 0..7 of both the clean and the compressed crop, so the 8 x 8 block grid takes every phase.
Loss: ``L1 + (1 - SSIM)`` (equal weights, as the paper; SSIM with an 11 x 11 Gaussian window, sigma 1.5,
averaged over the RGB channels, :func:`recon.metrics_torch.ssim`). Adam at ``lr`` (2e-4), halved every ``halve_every``
steps down to ``lr_min`` (1.25e-5), as the paper's schedule (which halves every 1e4 of its 5e5 steps).

Validation: the validation images (central ``val_crop`` x ``val_crop`` crop on the JPEG grid) at QF 10, 20,
30, 40; reported: PSNR of the JPEG input and of the restoration (mean over images and QFs), the gain, and
the Spearman correlation of Q2 with the QF (the quality signal). The weights with the best mean PSNR gain
are exported.

Option ``train.gate_prior`` (ours, default 0 = the paper's loss): adds ``gate_prior x mean(1 - gamma)`` over the
three attention maps, a small cost for closing a gate, so that the skip path (gamma = 1) is the default and a
gate closes only where the decoder's restoration pays for it. Tried on the global-residual layout, whose gates
came out inverted: it removed the inverted sign but left no quality signal and slowed restoration
(``configs/qairn-cpu-gate.yaml``); the paper's output layer alone gives gamma the paper's reading ("high = little
to restore"). ``init`` (a ``.safetensors`` file of the same architecture) starts from trained weights instead of
the seed's random ones (ignored when resuming); weights with fewer residual blocks per stage (``model.n_res``)
are grown into the deeper network with the extra blocks as identities (:func:`mriqa.models.qairn.load_deepened`:
the same function at step 0, more capacity to train).

``train.ema`` (a decay such as 0.999; default 0 = off): validate and export an exponential moving average of
the weights instead of the last iterate (:mod:`recon.training.loop`); the raw weights' validation metrics are
logged beside it (``raw_val_gain``).

Speed options (``train.precision: bf16``, ``train.channels_last: true``; defaults ``fp32`` / ``false``): the
forward pass runs under ``torch.autocast`` in bfloat16 (weights, optimiser state and the loss stay float32)
and activations use the channels-last layout. On a CPU with AVX-512 BF16 they make a training step about 2.3x
faster (``python scripts/bench_qairn_train.py``); the exported weights are float32 either way.

Pooling selection (``pooling.select``, ours): the paper pools each attention map by Minkowski pooling but does
not give the exponent. With ``select: true`` the exported weights get the exponent ``p`` from ``pooling.grid``
whose Q2 ranks the *validation* images' JPEG versions best (Spearman of Q2 with the QF over every image and every
QF in :data:`POOLING_QFS`, whole images, pooled across images: :func:`select_pooling`); the held-out images play
no part. The table of every ``p`` tried is stored in the weights' metadata (``pooling_selection``).
``mriqa train-qairn --config C --select-pooling [--weights W]`` applies it to existing weights without training.

Determinism and resume: the batch of step ``t`` is drawn from ``numpy.random.default_rng([seed, t])``, the
model is initialised from ``torch.manual_seed(seed)`` and the learning rate is a function of ``t``; a run
writes ``checkpoint.pt`` (model, optimiser, step, history, best weights; atomic, read back with
``torch.load(weights_only=True)``) every ``checkpoint_every`` steps and when it stops, and a new run with the
same ``output_dir`` resumes from it (``--no-resume`` starts over). Resumed and uninterrupted runs give
identical weights. ``max_minutes`` / ``stop_at_step`` stop cleanly with a checkpoint; so does Ctrl-C or SIGTERM
(exit 130). The config is read strictly (:func:`recon.config.load_config`): every key has a default.

Outputs in ``output_dir``: ``checkpoint.pt``, ``best.safetensors``, ``history.json``, ``curves.png``
(loss, validation PSNR gain and Q2 correlation); the best weights are copied to ``export``
(``configs/qairn-ema.yaml``, the fourth cycle -- the third cycle ``configs/qairn-deep.yaml``'s weights trained on
at a lower learning rate with ``train.ema: 0.999`` -- is the run that made the shipped
``mriqa/weights/qairn.safetensors``, stored in float16; the chain starts at ``configs/qairn.yaml``).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from recon.config import build_from_config
from recon.errors import InputError
from mriqa.jpeg import jpeg_compress
from mriqa.models.qairn import QAIRN, load_deepened
from recon.metrics_torch import psnr, ssim
from recon.device import resolve_device
from recon.training.loop import export_weights, run_steps, start_state, training_record
from recon.io.weights import load_weights, save_weights

VAL_QFS = (10, 20, 30, 40)
#: JPEG quality factors of the pooling selection (the same as scripts/eval_qairn.py's proxy correlations)
POOLING_QFS = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)
#: Minkowski exponents tried by the pooling selection (p = 1: plain mean; small p: towards the geometric mean)
POOLING_GRID = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULTS: dict[str, Any] = {
    "name": "qairn",
    "seed": 0,
    "model": {"channels": [32, 64, 128, 256], "n_res": 2, "att_hidden": 16, "att_depth": 2, "minkowski_p": 4.0,
              "global_residual": False},
    "data": {"train": [], "val": [], "held_out": []},  # held_out: image names refused in the training set
    "sampler": {"patch": 96, "qf_min": 5, "qf_max": 95, "subsampling": "4:2:0"},
    "train": {
        "steps": 40000,
        "batch": 16,
        "lr": 2.0e-4,
        "lr_min": 1.25e-5,
        "halve_every": 8000,
        "eval_every": 1000,
        "checkpoint_every": 500,
        "val_crop": 256,
        "threads": 0,
        "max_minutes": None,
        "stop_at_step": None,
        "progress": True,
        "device": "auto",
        "gate_prior": 0.0,
        "precision": "fp32",
        "channels_last": False,
        "ema": 0.0,
    },
    "pooling": {"select": False, "grid": list(POOLING_GRID)},
    "init": None,
    "output_dir": "runs/qairn",
    "export": None,
}


# ----------------------------------------------------------------------------------------------- config
def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None, **extra) -> dict:
    """:data:`DEFAULTS` <- YAML file <- ``extra`` <- ``--set KEY=VALUE`` (:func:`recon.config.load_config`,
    strict: every key has a default)."""
    from recon.config import load_config as layered

    return layered(DEFAULTS, path, overrides, extra)


def lr_at(step: int, tc: dict) -> float:
    """``lr`` halved every ``halve_every`` steps, never below ``lr_min``."""
    lr = float(tc["lr"]) * 0.5 ** (int(step) // max(1, int(tc["halve_every"])))
    return max(lr, float(tc["lr_min"]))


# ----------------------------------------------------------------------------------------------- data
def sample_batch(images: list[np.ndarray], rng: np.random.Generator, batch: int, sc: dict):
    """``(jpeg, clean, qfs)``: float32 ``[B, 3, p, p]`` tensors in [0, 1] and the QFs (see the module doc)."""
    p = int(sc["patch"])
    big = p + 8
    xs, ys, qfs = [], [], []
    for _ in range(batch):
        img = images[int(rng.integers(len(images)))]
        h, w = img.shape[:2]
        if h < big or w < big:
            raise InputError(None, f"training image of {h}x{w} pixels is smaller than patch + 8 = {big}")
        r0, c0 = int(rng.integers(h - big + 1)), int(rng.integers(w - big + 1))
        crop = img[r0:r0 + big, c0:c0 + big]
        k = int(rng.integers(4))
        crop = np.rot90(crop, k)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.ascontiguousarray(crop)
        qf = int(rng.integers(int(sc["qf_min"]), int(sc["qf_max"]) + 1))
        comp = jpeg_compress(crop, qf, sc.get("subsampling", "4:2:0"))
        dr, dc = int(rng.integers(8)), int(rng.integers(8))
        ys.append(crop[dr:dr + p, dc:dc + p].astype(np.float32) / 255.0)
        xs.append(comp[dr:dr + p, dc:dc + p])
        qfs.append(qf)
    x = torch.from_numpy(np.stack(xs).transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(np.stack(ys).transpose(0, 3, 1, 2).copy())
    return x, y, qfs


def loss_fn(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``L1 + (1 - SSIM)`` (the paper's equally weighted sum)."""
    return F.l1_loss(restored, clean) + (1.0 - ssim(restored, clean))


def make_val(images: list[np.ndarray], crop: int) -> dict:
    """Central crops (rounded to the 8 x 8 grid) of the validation images at QF 10, 20, 30, 40."""
    xs, ys, qfs = [], [], []
    for img in images:
        h, w = img.shape[:2]
        s = min(int(crop), (h // 16) * 16, (w // 16) * 16)
        r0, c0 = ((h - s) // 2) // 8 * 8, ((w - s) // 2) // 8 * 8
        clean = img[r0:r0 + s, c0:c0 + s]
        for qf in VAL_QFS:
            xs.append(jpeg_compress(clean, qf))
            ys.append(clean.astype(np.float32) / 255.0)
            qfs.append(qf)
    return {"x": xs, "y": ys, "qf": qfs}


@torch.no_grad()
def evaluate(model: QAIRN, val: dict, device) -> dict:
    from scipy.stats import spearmanr

    model.eval()
    p_in, p_out, q2, losses = [], [], [], []
    for x, y in zip(val["x"], val["y"]):
        xt = torch.from_numpy(x.transpose(2, 0, 1).copy())[None].to(device)
        yt = torch.from_numpy(y.transpose(2, 0, 1).copy())[None].to(device)
        out, maps = model(xt)
        losses.append(float(loss_fn(out, yt)))
        out = out.clamp(0, 1)
        p_in.append(float(psnr(xt, yt)))
        p_out.append(float(psnr(out, yt)))
        q2.append(float(model.quality(maps)[0, 1]))
    model.train()
    rho = spearmanr(q2, val["qf"]).statistic if np.ptp(q2) > 0 else float("nan")
    return {"val_loss": float(np.mean(losses)), "val_psnr_jpeg": float(np.mean(p_in)),
            "val_psnr": float(np.mean(p_out)), "val_gain": float(np.mean(p_out) - np.mean(p_in)),
            "val_q2_srcc": float(rho)}


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    from recon.training.curves import Panel, plot_history

    plot_history(history, path, title, [
        Panel("L1 + (1 - SSIM)", (("train_loss", "train"), ("val_loss", "validation"))),
        Panel("validation PSNR gain over JPEG (dB)",
              (("val_gain", "moving average"), ("raw_val_gain", "raw weights"))
              if any("raw_val_gain" in h for h in history) else (("val_gain", None),)),
        Panel("SRCC(Q2, QF), validation", (("val_q2_srcc", None),), ylim=(-1, 1)),
    ])


def _load_images(specs) -> tuple[list[np.ndarray], list[str]]:
    from mriqa.qf_data import load_pools

    pool = load_pools(specs, 3)
    return list(pool.images), list(pool.names)


# ----------------------------------------------------------------------------------------------- pooling
def pooling_srcc(maps: list, severity, grid=POOLING_GRID) -> dict[float, float]:
    """Spearman of Q2 (Minkowski pooling of the second attention map) with ``severity``, for every exponent.

    maps: one list of attention maps per image (``[1, 1, h, w]`` each, as :class:`QAIRN` returns them);
    severity: ``[N]`` (e.g. the JPEG QF). Returns ``{p: srcc}`` (NaN where Q2 is constant)."""
    from scipy.stats import spearmanr

    from mriqa.models.qairn import minkowski_quality

    table = {}
    for p in grid:
        q2 = [float(minkowski_quality(m, float(p))[0, 1]) for m in maps]
        table[float(p)] = float(spearmanr(q2, severity).statistic) if np.ptp(q2) > 0 else float("nan")
    return table


def best_exponent(table: dict[float, float], default: float) -> float:
    """The exponent with the highest finite Spearman in ``table`` (ties: the earlier entry), else ``default``."""
    order = list(table)
    finite = {p: r for p, r in table.items() if np.isfinite(r)}
    if not finite:
        return float(default)
    return float(max(finite, key=lambda p: (finite[p], -order.index(p))))


@torch.no_grad()
def select_pooling(model: QAIRN, images: list[np.ndarray], grid=POOLING_GRID, qfs=POOLING_QFS,
                   device: str | torch.device = "cpu") -> dict:
    """Pick the Minkowski exponent whose Q2 best follows the JPEG QF on ``images`` (validation only).

    images: uint8 RGB ``[H, W, 3]`` each, compressed whole at every QF of ``qfs``. Returns
    ``{"p": best exponent, "srcc": {p: Spearman(Q2, QF) pooled over images and QFs}, "qfs", "n"}``. The
    attention maps are computed once; only the pooling changes."""
    if not images:
        raise InputError(None, "pooling selection needs at least one validation image")
    model = model.eval().to(device)
    maps, sev = [], []
    for img in images:
        for qf in qfs:
            x = torch.from_numpy(jpeg_compress(img, qf).transpose(2, 0, 1).copy())[None].to(device)
            maps.append([g.float().cpu() for g in model(x)[1]])
            sev.append(qf)
    table = pooling_srcc(maps, sev, grid)
    return {"p": best_exponent(table, model.minkowski_p), "srcc": table, "qfs": list(qfs), "n": len(maps)}


def apply_pooling_selection(model: QAIRN, cfg: dict, meta: dict, log=print) -> dict:
    """Run :func:`select_pooling` on the validation images of ``cfg`` (``data.val``), set the model's exponent
    and record the table in ``meta["pooling_selection"]`` (returned, updated)."""
    specs = cfg["data"].get("val")
    if not specs:
        raise InputError(None, "pooling selection needs validation images (data.val in the config)")
    images, names = _load_images(specs)
    grid = cfg.get("pooling", {}).get("grid") or POOLING_GRID
    sel = select_pooling(model, images, grid=grid)
    old = model.minkowski_p
    model.minkowski_p = sel["p"]
    meta = dict(meta)
    meta["pooling_selection"] = {"p": sel["p"], "previous_p": old, "val_images": names, "qfs": sel["qfs"],
                                 "srcc_q2_qf": {str(k): v for k, v in sel["srcc"].items()}}
    table = ", ".join(f"p={k:g}: {v:+.3f}" for k, v in sel["srcc"].items())
    log(f"[{cfg['name']}] pooling selection on {len(names)} validation images: {table} -> p = {sel['p']:g}")
    return meta


def select_pooling_only(cfg: dict, weights: str | os.PathLike | None = None, log=print) -> Path:
    """Apply the pooling selection to trained weights (default: the config's ``export``) and rewrite them
    (atomically; tensors unchanged, metadata ``config.minkowski_p`` and ``pooling_selection`` updated)."""
    from mriqa.models.qairn import load_qairn

    target = weights or cfg.get("export")
    if not target:
        raise InputError(None, "no weights to select the pooling for (give --weights or set export in the config)")
    path = Path(target)
    model, meta = load_qairn(path, device="cpu")
    meta = apply_pooling_selection(model, cfg, {k: v for k, v in meta.items() if k not in ("config", "arch",
                                                                                           "mriqa_format")}, log)
    save_weights(model, path, meta)
    log(f"[{cfg['name']}] wrote {path} (minkowski_p = {model.minkowski_p:g})")
    return path


# ----------------------------------------------------------------------------------------------- training
def train(cfg: dict, resume: bool = True, log=print) -> dict:
    """Run (or resume) the training described by ``cfg``; returns a summary dict (``model`` on the CPU)."""
    tc, sc = cfg["train"], cfg["sampler"]
    if int(sc["patch"]) % 8:
        raise InputError(None, f"sampler.patch must be a multiple of 8, got {sc['patch']}")
    out = Path(cfg["output_dir"])
    out = out if out.is_absolute() else Path.cwd() / out
    if tc.get("threads"):
        torch.set_num_threads(int(tc["threads"]))
    seed = int(cfg["seed"])
    t_load = time.time()
    train_images, train_names = _load_images(cfg["data"]["train"])
    if cfg["data"].get("val"):
        val_images, val_names = _load_images(cfg["data"]["val"])
    else:
        val_images, val_names = train_images[:1], train_names[:1]
    held_out = set(cfg["data"].get("held_out", []))
    leaked = sorted(n for n in train_names if n in held_out or Path(n).stem in held_out)
    if leaked:
        raise InputError(None, f"held-out images in the training set: {leaked}")
    val = make_val(val_images, int(tc["val_crop"]))
    log(f"[{cfg['name']}] data: train {len(train_images)} images, val {len(val_images)} images "
        f"({len(val['x'])} JPEG crops); loaded in {time.time() - t_load:.1f}s")

    device = resolve_device(tc["device"])
    precision = str(tc.get("precision", "fp32"))
    if precision not in ("fp32", "bf16"):
        raise InputError(None, f"train.precision must be fp32 or bf16, got {precision!r}")
    memory_format = torch.channels_last if tc.get("channels_last") else torch.contiguous_format
    torch.manual_seed(seed)
    model = build_from_config(QAIRN.from_config, {"in_channels": 3, **cfg["model"]})
    model = model.to(device, memory_format=memory_format)
    opt = torch.optim.Adam(model.parameters(), lr=float(tc["lr"]))
    resuming = resume and (out / "checkpoint.pt").is_file()  # a resumed run ignores init: its checkpoint wins
    state = start_state(out, model, opt, resume, cfg["name"], log)
    if not resuming and cfg.get("init"):
        init_state, init_meta = load_weights(cfg["init"])
        init_config = init_meta.get("config") if isinstance(init_meta.get("config"), dict) else {}
        deepen = int(init_config.get("n_res", model.n_res)) < model.n_res
        try:
            if deepen:  # a deeper network grown from shallower weights: same function at step 0
                load_deepened(model, init_state, init_config)
            else:
                model.load_state_dict(init_state)
        except (RuntimeError, ValueError) as e:
            raise InputError(cfg["init"], f"init weights do not match the configured model: "
                                          f"{str(e).splitlines()[0]}") from None
        log(f"[{cfg['name']}] initialised from {cfg['init']}"
            + (f" (deepened from {init_config['n_res']} to {model.n_res} residual blocks per stage; the new "
               f"blocks start as identities)" if deepen else ""))
    model.train()
    gate_prior = float(tc.get("gate_prior") or 0.0)

    def train_step(rng):
        x, y, _ = sample_batch(train_images, rng, int(tc["batch"]), sc)
        x, y = x.to(device, memory_format=memory_format), y.to(device)
        # bf16 autocast: convolutions in bfloat16, weights, optimiser state and the loss in float32
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            restored, maps = model(x)
        loss = loss_fn(restored.float(), y)
        if gate_prior:
            loss = loss + gate_prior * torch.stack([(1.0 - g.float()).mean() for g in maps]).mean()
        return loss, {}

    def describe(row):
        raw = f"; raw weights {row['raw_val_gain']:+.3f}" if "raw_val_gain" in row else ""
        return (f"train_loss {row['train_loss']:.4f} val_loss {row['val_loss']:.4f} val PSNR "
                f"{row['val_psnr_jpeg']:.2f} -> {row['val_psnr']:.2f} dB (gain {row['val_gain']:+.3f}{raw}) "
                f"SRCC(Q2,QF) {row['val_q2_srcc']:.3f}")

    result = run_steps(state, name=cfg["name"], model=model, optimizer=opt, cfg=cfg, lr_at=lr_at,
                       train_step=train_step, evaluate=lambda: evaluate(model, val, device), select="val_gain",
                       maximize=True, keep=("val_gain", "val_psnr", "val_q2_srcc"), describe=describe,
                       plot=lambda h: plot_curves(h, out / "curves.png", cfg["name"]), output_dir=out, log=log)
    step, best, wall = state.step, state.best, result.wall_s

    final = build_from_config(QAIRN.from_config, {"in_channels": 3, **cfg["model"]})
    last = state.ema if state.ema is not None else model.state_dict()  # no validation row yet: the last weights
    final.load_state_dict(best["state"] if best is not None else {k: v.cpu() for k, v in last.items()})
    final.eval()
    meta = {
        "task": "JPEG deblocking (RGB, [0, 1] inputs); quality estimates Q1..Q3 from the attention maps",
        "training": training_record(cfg, state, result, device, train_images=train_names, val_images=val_names),
        "val_metrics": None if best is None else {k: best[k] for k in ("val_gain", "val_psnr", "val_q2_srcc")},
    }
    if cfg.get("pooling", {}).get("select"):
        meta = apply_pooling_selection(final, cfg, meta, log)
    export_weights(final, out, cfg.get("export"), meta, cfg["name"], log)
    return {
        "step": step,
        "stopped_early": result.stopped_early,
        "wall_s": wall,
        "best": None if best is None else {k: best[k] for k in ("step", "val_gain", "val_psnr", "val_q2_srcc")},
        "output_dir": str(out),
        "model": model.cpu(),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m mriqa.train_qairn ARGS`` = ``mriqa train-qairn ARGS``."""
    from mriqa.cli import main as mriqa_main

    return mriqa_main(["train-qairn", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())

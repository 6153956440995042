"""Trainer of the RQNet-backbone R estimator (:mod:`mriqa.restimate.rq_based`).

::

    mriqa train-r --config configs/r-rq.yaml [--set train.steps=600] [--no-resume]

(``mriqa train-r`` dispatches here when the config has ``arch: rqnet``.)

Data: the reconstruction-quality sets of :mod:`mriqa.recon_quality.data` (``scripts/make_quality_dataset.py``;
split by subject: train = 3T MPRAGE + IXI 1-30, val = IXI 31-35; the test subjects are never read here):
zero-filled, CG-SENSE, L1-wavelet and MoDL reconstructions, random / equispaced / Poisson masks, nominal R
2..16, with acquisition variation (blur, noise). Target: log of the nominal R.

Samples: whole images, or (``crop_probability``) one random square window of ``crop_min``..H px for the batch
(the object fills more or less of the field of view, as in scans other than the training volumes); every
image flipped / transposed at random (one of 8), so the phase-encode axis is either image axis. Input
normalisation: :func:`mriqa.models.reconq.normalize_magnitude`, as at inference.

Model: :class:`mriqa.models.reconq.RQNet` (``model``: width, spectral bins, fine stem), initialised from ``init`` (a
``recon`` quality model's weights: the shared backbone, parameters the init lacks, the spectral and fine branches,
start at PyTorch's default with their last layer at zero, the head's bias set to the mean training log R; an R
estimator's weights: every part kept, for fine-tuning; ``null`` = from scratch). Loss:
``L1(map mean, log R) + map_weight * mean_cells L1(cell, log R)``. Validation MAE in R every ``eval_every`` steps
(best kept); at the end the best state is calibrated on the validation images with the learned estimator's rule
(:func:`mriqa.restimate.train.calibrate_pooled`: linear recalibration overall and per method, conformal
half-widths, spread threshold) and the neighbour-correlation threshold of the training inputs, and an outlier head
(:func:`mriqa.restimate.ood.fit_outlier_head` on :func:`outlier_features`, the network's whole-image statistics and
the image's spectral profiles, of training reconstructions against gray photos of ``ood.photos``, synthetic
pictures and noise) is fitted (``calibrate.data``: all of it on other sets than ``data``'s);
then the weights are exported. Loop, checkpoints and resumption: :func:`recon.training.loop.run_steps`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mriqa.models.reconq import RQNet, normalize_magnitude
from mriqa.train_rq import cosine_lr, dihedral  # the quality trainer's schedule and flips
from recon.config import build_from_config
from recon.files import atomic_path
from recon.training.loop import export_weights, run_steps, start_state, training_record

DEFAULTS: dict[str, Any] = {
    "arch": "rqnet",
    "name": "r-rq",
    "seed": 0,
    "init": "recon",
    "model": {"width": 32, "spectral": 0, "fine": 0, "whole_image": True},
    "data": {"train": ["data/rq128/train.0of2.h5", "data/rq128/train.1of2.h5"], "val": ["data/rq128/val.h5"],
             "crop_probability": 0.5, "crop_min": 64, "gamma_range": None, "bias_field": None},
    "loss": {"map_weight": 0.25},
    "train": {"steps": 6000, "batch": 16, "lr": 1.0e-3, "lr_min_factor": 0.05, "eval_every": 500,
              "checkpoint_every": 500, "threads": 1, "max_minutes": None, "stop_at_step": None,
              "progress": True, "ema": 0.0},
    "calibrate": {"linear": True, "coverage": 0.9, "spread_quantile": 0.99, "spread_factor": 1.5,
                  "correlation_factor": 0.5, "data": None},
    "ood": {"photos": "../shared/data/rgb/BSD100", "windows": [128], "window_count": 2, "synthetic": 300, "inliers": 2000},
    "output_dir": "runs/r-rq",
    "export": None,
}

METHODS = ("zf", "sense", "l1", "modl")


def load_config(path=None, overrides=None, **extra) -> dict:
    """:data:`DEFAULTS` <- YAML file <- ``extra`` <- ``--set KEY=VALUE`` (strict)."""
    from recon.config import load_config as layered

    return layered(DEFAULTS, path, overrides, extra)


def bias_fields(rng: np.random.Generator, batch: int, side: int, strength: float) -> torch.Tensor:
    """Smooth random multiplicative fields ``[B, 1, side, side]``: ``exp(f)`` with ``f`` a 4 x 4 grid of Gaussian
    values upsampled bicubically, scaled so ``max |f|`` is uniform in ``[0, strength]`` (natural log units).

    Why: a real RSS image carries the coils' receive profile (bright near the coils, ``sum_c |S_c|^2 != 1``),
    while the simulation normalises its maps so its RSS has none."""
    grid = torch.from_numpy(rng.standard_normal((batch, 1, 4, 4))).float()
    f = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=True)
    peak = f.flatten(1).abs().amax(1).clamp_min(1e-6)
    scale = torch.from_numpy(rng.uniform(0.0, strength, size=batch)).float() / peak
    return torch.exp(f * scale[:, None, None, None])


def draw_batch(rng: np.random.Generator, images: np.ndarray, log_r: np.ndarray, batch: int,
               crop_probability: float, crop_min: int, gamma_range=None,
               bias_field: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(normalised inputs [B, 1, s, s], log R [B])``: rows uniform, one random window side ``s`` for the batch
    with probability ``crop_probability`` (else the whole image), each image flipped / transposed at random,
    with ``gamma_range = (lo, hi)`` raised to a power log-uniform in it (an intensity mapping: contrast and
    display windows differ between scans) and with ``bias_field`` (a strength) multiplied by
    :func:`bias_fields`."""
    rows = rng.integers(len(images), size=batch)
    size = images.shape[-1]
    crop = crop_probability > 0 and rng.random() < crop_probability and crop_min < size
    side = int(rng.integers(crop_min, size + 1)) if crop else size
    out = []
    for i, k in zip(rows, rng.integers(8, size=batch)):
        y, x = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        out.append(dihedral(images[i, y:y + side, x:x + side], int(k)))
    x = normalize_magnitude(torch.from_numpy(np.stack(out)))
    if gamma_range:
        lo, hi = np.log(np.asarray(gamma_range, dtype=np.float64))
        gamma = torch.from_numpy(np.exp(rng.uniform(lo, hi, size=batch))).float()
        x = normalize_magnitude(x.clamp_min(0) ** gamma[:, None, None, None])
    if bias_field:
        x = normalize_magnitude(x * bias_fields(rng, batch, side, float(bias_field)))
    return x, torch.from_numpy(log_r[rows])


@torch.no_grad()
def predict(model: RQNet, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Whole images ``[N, H, W]`` (any scale) -> (map mean [N], map std [N]) of the log R maps, eval mode."""
    from mriqa.restimate.rq_based import pooled_mean

    was = model.training
    model.eval()
    means, spreads = [], []
    for a in range(0, len(images), batch):
        maps = model.logits(normalize_magnitude(torch.from_numpy(np.ascontiguousarray(images[a:a + batch]))))
        m, s = pooled_mean(maps[:, 0].numpy())
        means.append(m)
        spreads.append(s)
    model.train(was)
    return np.concatenate(means), np.concatenate(spreads)


@torch.no_grad()
def outlier_features(model: RQNet, images) -> np.ndarray:
    """What the outlier head reads, ``[N, 4 w + 2 (16 + lags)]``, of magnitude images (a list or ``[N, H, W]``,
    any sizes >= 32 px): the network's whole-image statistics and the image's spectral profiles
    (:func:`mriqa.models.reconq.spectral_features`, 16 bins)."""
    from mriqa.restimate.rq_based import outlier_features_of_input

    return np.concatenate([outlier_features_of_input(model, normalize_magnitude(
        torch.from_numpy(np.ascontiguousarray(im, np.float32))[None])) for im in images])


def photo_negatives(img: np.ndarray, rng: np.random.Generator, windows=(128,), count: int = 2) -> list[np.ndarray]:
    """One gray photo ``[H, W]`` in [0, 1] as outlier-head negatives: whole, and ``count`` random square windows
    of each side in ``windows`` (pixels)."""
    out = [img]
    for side in windows:
        for _ in range(count):
            y, x = (int(rng.integers(0, max(1, n - side) + 1)) for n in img.shape)
            out.append(img[y:y + side, x:x + side])
    return out


def outlier_negatives(cfg: dict, log=print) -> list[np.ndarray]:
    """Negatives of the outlier head: the gray photos of ``ood.photos`` (a folder or a list of folders; each photo
    whole and as ``ood.window_count`` windows of each side in ``ood.windows``, :func:`photo_negatives`; none when
    no folder is there, logged), ``ood.synthetic`` synthetic pictures, and 16 pure-noise magnitudes."""
    from PIL import Image

    from mriqa.restimate.ood import synthetic_pictures

    rng = np.random.default_rng(int(cfg["seed"]) + 1)
    folders = cfg["ood"]["photos"] or []
    folders = [folders] if isinstance(folders, str) else folders
    paths = [p for f in folders if Path(f).is_dir() for p in sorted(Path(f).glob("*.png"))]
    if not paths:
        log(f"[{cfg['name']}] outlier head: no photos at {cfg['ood']['photos']!r}; synthetic negatives only")
    out = []
    for path in paths:
        img = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
        out += photo_negatives(img, rng, cfg["ood"]["windows"], int(cfg["ood"]["window_count"]))
    out += synthetic_pictures(rng, int(cfg["ood"]["synthetic"]))
    noise = rng.standard_normal((16, 2, 128, 128))
    out += list(np.hypot(noise[:, 0], noise[:, 1]).astype(np.float32))
    return [im for im in out if min(im.shape) >= RQNet.min_input_size]


def initial_model(cfg: dict, mean_log_r: float, log=print) -> RQNet:
    """RQNet of ``cfg["model"]`` with the ``init`` weights where names and shapes match, the last layer of a
    branch the init lacks (spectral, fine) at zero (so it starts as the init) and, unless the init is an R
    estimator itself (fine-tuning), the head's bias at ``mean_log_r``."""
    model = build_from_config(RQNet, cfg["model"])
    taken: dict = {}
    init_is_r_estimator = False
    if cfg.get("init"):
        from mriqa.predictor import load_predictor
        from mriqa.restimate.rq_based import TASK

        loaded = load_predictor(cfg["init"], device="cpu")
        src, init_is_r_estimator = loaded.model, (loaded.metadata or {}).get("task") == TASK
        own = model.state_dict()
        taken = {k: v for k, v in src.state_dict().items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(taken, strict=False)
        log(f"[{cfg['name']}] initialised {len(taken)} of {len(own)} tensors from {cfg['init']}")
    with torch.no_grad():
        for branch in ("spec", "fine"):  # branches the init lacks start silent: the model starts as the init
            last = getattr(model, branch, None)
            if last is not None and cfg.get("init") and f"{branch}.{len(last) - 1}.weight" not in taken:
                last[-1].weight.zero_()
                last[-1].bias.zero_()
        if not init_is_r_estimator:  # a quality model's head predicts SSIM logits: start at the mean log R
            model.head[-1].bias.fill_(float(mean_log_r))
    return model


def earlier_stages(cfg: dict) -> list[dict]:
    """The training records of the stages before this one when ``init`` is an R estimator being fine-tuned (its
    own earlier stages first, then its own record), so the exported weights say how they came about; else []."""
    if not cfg.get("init"):
        return []
    from mriqa.predictor import resolve_weights
    from mriqa.restimate.rq_based import TASK
    from recon.io.weights import load_weights

    _, meta = load_weights(resolve_weights(cfg["init"])[0])
    record = meta.get("training") if meta.get("task") == TASK else None
    if not record:
        return []
    return list(record.get("earlier_stages") or []) + [{k: v for k, v in record.items() if k != "earlier_stages"}]


def calibration_sets(cfg: dict, tr: dict | None = None, va: dict | None = None, log=print) -> tuple[dict, dict]:
    """The training and validation sets :func:`calibration` fits on: ``calibrate.data`` (``{train: [...],
    val: [...]}``) when set, so that a model fine-tuned on deliberately shifted simulations keeps its outlier head
    meaning "unlike the sources' own scans"; else ``tr`` / ``va`` (read from ``data`` when not given)."""
    from mriqa.recon_quality.data import read_quality_set

    sets = cfg["calibrate"].get("data")
    if sets:
        tr, va = read_quality_set(sets["train"]), read_quality_set(sets["val"])
        log(f"[{cfg['name']}] calibrating on calibrate.data: {len(tr['images'])} / {len(va['images'])} images")
        return tr, va
    if tr is None or va is None:
        tr, va = read_quality_set(cfg["data"]["train"]), read_quality_set(cfg["data"]["val"])
    return tr, va


def calibration(model: RQNet, cfg: dict, tr: dict, va: dict, log=print) -> dict:
    """The metadata ``r_estimation`` of a trained model: the learned estimator's calibration on the validation
    set (:func:`mriqa.restimate.train.calibrate_pooled`), the neighbour-correlation threshold of the training
    inputs, the trained log R range and the outlier head."""
    from mriqa.restimate import ood
    from mriqa.restimate.train import calibrate_pooled

    y_va = np.log(va["accel"]).astype(np.float32)
    raw, spread = predict(model, va["images"])
    methods = [m for m in METHODS if m in set(va["method"].tolist())]
    r_info = calibrate_pooled(raw, spread, y_va, va["method"], cfg["calibrate"], methods, pool="mean")
    x_tr = normalize_magnitude(torch.from_numpy(tr["images"][:: max(1, len(tr["images"]) // 2000)])).numpy()
    min_corr = float(cfg["calibrate"]["correlation_factor"]) * float(np.quantile(ood.neighbour_correlation(x_tr),
                                                                                  0.001))
    r_info.update({"min_correlation": min_corr, "log_r_range": [float(np.log(1.5)), float(np.log(20.0))]})
    inliers = tr["images"][:: max(1, len(tr["images"]) // int(cfg["ood"]["inliers"]))]
    r_info["outlier_head"] = ood.fit_outlier_head(outlier_features(model, inliers),
                                                  outlier_features(model, outlier_negatives(cfg, log)),
                                                  outlier_features(model, va["images"]))
    return r_info


def recalibrate(cfg: dict, weights: str, log=print) -> dict:
    """Refit :func:`calibration` for existing weights on the config's data and rewrite ``weights`` atomically
    (tensors, training metadata and the best/total steps kept; the training record's ``calibrate`` and ``ood``
    settings become the ones used here, so the weights say how their calibration was made)."""
    from mriqa.weights_io import load_rqnet
    from recon.io.weights import save_weights

    torch.set_num_threads(int(cfg["train"].get("threads") or 1))
    model, meta = load_rqnet(weights)
    old = meta.get("r_estimation") or {}
    r_info = calibration(model, cfg, *calibration_sets(cfg, log=log), log)
    r_info.update({k: old[k] for k in ("best_step", "steps") if k in old})
    meta = {k: v for k, v in meta.items() if k not in ("mriqa_format", "arch", "config")}
    meta["r_estimation"] = r_info
    if isinstance(meta.get("training"), dict) and isinstance(meta["training"].get("config"), dict):
        meta["training"]["config"].update({k: cfg[k] for k in ("calibrate", "ood")})
    save_weights(model, weights, meta)
    log(f"[{cfg['name']}] recalibrated {weights}")
    return r_info


def train(cfg: dict, resume: bool = True, log=print) -> dict:
    """Run (or resume) one training, calibrate and export; returns a summary dict (``stopped_at`` when a
    ``max_minutes`` / ``stop_at_step`` limit stopped it: run again to resume)."""
    from mriqa.recon_quality.data import read_quality_set
    from mriqa.restimate.rq_based import TASK

    tc, dc, lc = cfg["train"], cfg["data"], cfg["loss"]
    torch.set_num_threads(int(tc.get("threads") or 1))
    out = Path(cfg["output_dir"])
    t_load = time.time()
    tr = read_quality_set(dc["train"])
    va = read_quality_set(dc["val"])
    y_tr = np.log(tr["accel"]).astype(np.float32)
    y_va = np.log(va["accel"]).astype(np.float32)
    log(f"[{cfg['name']}] train {len(y_tr)} images ({len(np.unique(tr['volume']))} files), val {len(y_va)}; "
        f"loaded in {time.time() - t_load:.0f} s")
    torch.manual_seed(int(cfg["seed"]))
    model = initial_model(cfg, float(y_tr.mean()), log)
    opt = torch.optim.Adam(model.parameters(), lr=float(tc["lr"]))
    state = start_state(out, model, opt, resume, cfg["name"], log)
    model.train()
    batch = int(tc["batch"])

    def train_step(rng):
        x, y = draw_batch(rng, tr["images"], y_tr, batch, float(dc["crop_probability"]), int(dc["crop_min"]),
                          dc["gamma_range"], dc["bias_field"])
        maps = model.logits(x)
        l_score = F.l1_loss(maps.flatten(1).mean(1), y)
        l_map = (maps - y[:, None, None, None]).abs().mean()
        return l_score + float(lc["map_weight"]) * l_map, {"score_l1": l_score.item(), "map_l1": l_map.item()}

    def evaluate():
        pred, _ = predict(model, va["images"])
        return {"val_mae_log": float(np.mean(np.abs(pred - y_va))),
                "val_mae_r": float(np.mean(np.abs(np.exp(pred) - va["accel"])))}

    def plot(history):
        from recon.training.curves import Panel, plot_history

        plot_history(history, out / "curves.png", cfg["name"], [
            Panel("training loss", (("train_loss", "total"), ("score_l1", "image L1 (log R)"))),
            Panel("validation MAE (R)", (("val_mae_r", "per slice"),)),
        ], require="val_mae_r")

    result = run_steps(state, name=cfg["name"], model=model, optimizer=opt, cfg=cfg, lr_at=cosine_lr,
                       train_step=train_step, evaluate=evaluate, select="val_mae_r", maximize=False,
                       keep=("val_mae_r", "val_mae_log"),
                       describe=lambda r: " ".join(f"{k} {r[k]:.4f}" for k in ("score_l1", "map_l1", "val_mae_r")
                                                   if k in r),
                       plot=plot, output_dir=out, log=log)
    if result.stopped_early:
        return {"name": cfg["name"], "stopped_at": state.step}
    model.load_state_dict(state.best["state"])
    r_info = calibration(model, cfg, *calibration_sets(cfg, tr, va, log), log)
    r_info.update({"best_step": int(state.best["step"]), "steps": state.step})
    best = {k: v for k, v in state.best.items() if k != "state"}
    meta = {"task": TASK, "r_estimation": r_info,
            "training": training_record(cfg, state, result, "cpu", train_images=int(len(y_tr)),
                                        val_images=int(len(y_va)), best=best, earlier_stages=earlier_stages(cfg))}
    export_weights(model.eval(), out, cfg.get("export"), meta, cfg["name"], log)
    summary = {"name": cfg["name"], "r_estimation": r_info, "train_images": int(len(y_tr)),
               "val_images": int(len(y_va)), "wall_s": round(result.wall_s, 1),
               "weights": str(out / "best.safetensors"), "export": cfg.get("export")}
    with atomic_path(out / "summary.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    log(json.dumps(r_info))
    return summary

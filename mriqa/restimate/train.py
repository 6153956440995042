"""Trainer of the learned R estimator (:mod:`mriqa.restimate.learned`).

::

    mriqa train-r --config configs/r-learned.yaml [--set train.steps=600] [--no-resume] [--recalibrate WEIGHTS]

Data: ``data/r128/<split>/<method>.h5`` from ``scripts/make_r_dataset.py`` (reconstructions of simulated
multi-coil brain k-space at nominal R 2..12, random / equispaced / Poisson masks, zero-filled / CG-SENSE /
MoDL). Train on the ``train`` split (3T MPRAGE), select the checkpoint and calibrate the interval on ``val``
(MNI152). The test split (Colin27) is never read here.

Every image is normalised whole by the QF predictor's rule (``QFPredictor.prepare(kind="mri")``: / 99.5th
percentile, 8-bit), then random ``crop`` x ``crop`` crops centred on the anatomy (``p_foreground``), flipped at
random up-down and left-right (the phase-encode axis stays the columns), are the training samples. Loss per
crop: the foreground-weighted mean over the cells of ``(cell - log R)^2`` plus ``(pooled - log R)^2``, with
``pooled`` the foreground-weighted mean (the inference rule). Target: log of the nominal R.

Model: QFNet initialised from ``init`` (the shipped ``qf-gray``); the last 1x1 convolution's weights are scaled
by ``head_scale`` and its bias set to the mean training log R, so training starts at the prior. Adam, linear
warm-up then cosine learning rate. The step loop, checkpoints and resumption are the other trainers'
(:mod:`recon.training.loop`): a rerun resumes from ``<output_dir>/checkpoint.pt``; a run stopped by
``max_minutes`` or ``stop_at_step`` exports nothing. Validation MAE (in R, foreground
pooled whole images, a fixed subset) every ``eval_every`` steps, best kept; ``curves.png`` and
``history.json`` in ``output_dir``. At the end the best state is calibrated on all validation images
(:func:`calibrate`; ``linear``: a 2-parameter recalibration ``log R = a + b * pooled`` against the MSE shrinkage
towards the mean, for all methods and per reconstruction method; conformal half-widths at ``coverage``; OOD
thresholds, see :mod:`mriqa.restimate.ood`) and exported with :func:`recon.io.weights.save_weights` to
``export``. ``--recalibrate WEIGHTS`` refits only that calibration for existing weights.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recon.files import atomic_path
from recon.training.loop import run_steps, start_state
from mriqa.train_qf import lr_at  # linear warm-up, then cosine (shared with the QF trainer)

DEFAULTS = {
    "name": "r-learned",
    "seed": 0,
    "init": "gray",
    "data": {"root": "data/r128", "methods": ["zf", "sense", "modl"], "val_every_nth": 3},
    "sampler": {"crop": 64, "p_foreground": 0.9, "flips": True},
    "model": {"head_scale": 0.1},
    "train": {"steps": 1200, "batch": 16, "lr": 1.0e-3, "lr_min": 1.0e-5, "warmup": 50, "eval_every": 150,
              "checkpoint_every": 100, "threads": 1, "max_minutes": 12, "stop_at_step": None, "progress": True},
    "calibrate": {"linear": True, "coverage": 0.9, "spread_quantile": 0.99, "spread_factor": 1.5,
                  "correlation_factor": 0.5},
    "output_dir": "runs/r-learned",
    "export": "mriqa/weights/r-learned.safetensors",
}


def load_config(path: str | None = None, overrides: list[str] | None = None, **extra) -> dict:
    """:data:`DEFAULTS` <- YAML file <- ``extra`` <- ``--set KEY=VALUE`` (:func:`recon.config.load_config`,
    strict: every key has a default)."""
    from recon.config import load_config as layered

    return layered(DEFAULTS, path, overrides, extra)


def load_images(root: str, split: str, methods, predictor, every_nth: int = 1):
    """Read and normalise a split -> ``(x uint8 [N, H, W] (= 255 x model input), log R float32 [N],
    info dict of [N] arrays: method, mask_kind, accel)``."""
    import h5py

    from recon.errors import InputError, first_line

    xs, ys, meth, kinds = [], [], [], []
    for m in methods:
        path = Path(root) / split / f"{m}.h5"
        if not path.is_file():
            raise InputError(path, "R-estimation data not found (made by scripts/make_r_dataset.py)")
        try:
            with h5py.File(path, "r") as hf:
                idx = np.arange(hf["images"].shape[0])[::every_nth]
                imgs = hf["images"][()][idx]
                acc = hf["accel"][()][idx]
                kd = [k.decode() if isinstance(k, bytes) else str(k) for k in hf["mask_kind"][()][idx]]
        except (OSError, KeyError) as exc:
            raise InputError(path, f"not an R-estimation data file ({first_line(exc)})") from None
        for a in range(0, len(imgs), 64):
            x, _ = predictor.prepare(imgs[a:a + 64], kind="mri")
            xs.append(np.round(x[:, 0].numpy() * 255).astype(np.uint8))
        ys.append(np.log(acc).astype(np.float32))
        meth += [m] * len(imgs)
        kinds += kd
    return (np.concatenate(xs), np.concatenate(ys),
            {"method": np.array(meth), "mask_kind": np.array(kinds), "accel": np.exp(np.concatenate(ys))})


def sample_batch(rng, x, y, masks, cfg, geometry_for):
    """A batch of crops -> (inputs float32 [B, 1, c, c], targets [B], cell weights float32 [B, h, w])."""
    from mriqa.pooling import foreground_weights

    sc, tc = cfg["sampler"], cfg["train"]
    c = int(sc["crop"])
    n, height, width = x.shape
    idx = rng.integers(0, n, int(tc["batch"]))
    crops, ms = [], []
    for i in idx:
        if rng.random() < float(sc["p_foreground"]) and masks[i].any():
            ys_, xs_ = np.nonzero(masks[i])
            j = rng.integers(0, len(ys_))
            cy, cx = ys_[j], xs_[j]
        else:
            cy, cx = rng.integers(0, height), rng.integers(0, width)
        top = int(np.clip(cy - c // 2, 0, height - c))
        left = int(np.clip(cx - c // 2, 0, width - c))
        img, msk = x[i, top:top + c, left:left + c], masks[i, top:top + c, left:left + c]
        if sc.get("flips", True):
            if rng.random() < 0.5:
                img, msk = img[::-1], msk[::-1]
            if rng.random() < 0.5:
                img, msk = img[:, ::-1], msk[:, ::-1]
        crops.append(np.ascontiguousarray(img))
        ms.append(np.ascontiguousarray(msk))
    geom = geometry_for(c)
    w = foreground_weights(np.stack(ms), geom)
    w[w.sum(axis=(-2, -1)) <= 0] = 1.0
    xb = torch.from_numpy(np.stack(crops).astype(np.float32) / 255.0)[:, None]
    return xb, torch.from_numpy(y[idx]), torch.from_numpy(w.astype(np.float32))


def loss_fn(net, xb, yb, wb):
    z = net.logits(xb)[:, 0]
    total = wb.sum(dim=(-2, -1))
    cell = ((z - yb[:, None, None]) ** 2 * wb).sum(dim=(-2, -1)) / total
    pooled = (z * wb).sum(dim=(-2, -1)) / total
    return (cell + (pooled - yb) ** 2).mean()


@torch.no_grad()
def predict(net, x_u8, batch: int = 32):
    """Whole images (uint8 [N, H, W]) -> (pooled log R [N], spread [N]) with the inference rule."""
    from mriqa.pooling import MapGeometry
    from mriqa.restimate.learned import pooled

    was = net.training
    net.eval()
    means, spreads = [], []
    for a in range(0, len(x_u8), batch):
        xb = torch.from_numpy(x_u8[a:a + batch].astype(np.float32) / 255.0)[:, None]
        maps = net.logits(xb)[:, 0].numpy()
        geom = MapGeometry.for_model(net, tuple(xb.shape[-2:]), tuple(maps.shape[-2:]))
        m, s = pooled(maps, xb.numpy(), geom)
        means.append(m)
        spreads.append(s)
    net.train(was)
    return np.concatenate(means), np.concatenate(spreads)


def plot_curves(history, path: Path, title: str) -> None:
    from recon.training.curves import Panel, plot_history

    plot_history(history, path, title, [
        Panel("loss on log R", (("train_loss", "train (crops)"), ("val_loss", "validation (whole images)")),
              log_y=True),
        Panel("MAE (R)", (("val_mae_r", "validation MAE in R"),)),
    ], require=None)


def train(cfg: dict, resume: bool = True, log=print) -> dict:
    from mriqa.normalize import NORMALIZATION
    from mriqa.pooling import MapGeometry, foreground_mask
    from mriqa.predictor import load_predictor
    from mriqa.restimate import ood
    from mriqa.restimate.learned import TASK
    from recon.io.weights import save_weights

    tc, dc = cfg["train"], cfg["data"]
    torch.set_num_threads(int(tc.get("threads", 1)))
    out = Path(cfg["output_dir"])
    seed = int(cfg["seed"])
    t_load = time.time()
    predictor = load_predictor(cfg["init"], device="cpu")
    x_tr, y_tr, _ = load_images(dc["root"], "train", dc["methods"], predictor)
    x_va, y_va, info_va = load_images(dc["root"], "val", dc["methods"], predictor)
    sub = np.arange(len(x_va))[:: int(dc.get("val_every_nth", 1))]
    masks = np.stack([foreground_mask(img.astype(np.float32) / 255.0) for img in x_tr])
    log(f"[{cfg['name']}] train {len(x_tr)} images, val {len(x_va)} ({len(sub)} for model selection); "
        f"loaded in {time.time() - t_load:.0f} s")

    torch.manual_seed(seed)
    net = predictor.model
    net.set_calibration(None)
    head = net.features[-1]
    with torch.no_grad():
        head.weight.mul_(float(cfg["model"]["head_scale"]))
        head.bias.fill_(float(y_tr.mean()))
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=float(tc["lr"]))
    state = start_state(out, net, opt, resume, cfg["name"], log)
    if state.config is not None and state.config["data"] != cfg["data"]:
        state.best = None  # validation set changed: earlier scores are not comparable
        log(f"[{cfg['name']}] data changed since the checkpoint: model selection restarts")

    def geometry_for(c):
        n = net.output_size(c)
        return MapGeometry.for_model(net, (c, c), (n, n))

    def train_step(rng):
        xb, yb, wb = sample_batch(rng, x_tr, y_tr, masks, cfg, geometry_for)
        return loss_fn(net, xb, yb, wb), {}

    def evaluate():
        pred, _ = predict(net, x_va[sub])
        return {"val_loss": float(np.mean((pred - y_va[sub]) ** 2)),
                "val_mae_r": float(np.mean(np.abs(np.exp(pred) - np.exp(y_va[sub]))))}

    result = run_steps(state, name=cfg["name"], model=net, optimizer=opt, cfg=cfg, lr_at=lr_at,
                       train_step=train_step, evaluate=evaluate, select="val_mae_r", maximize=False,
                       keep=("val_mae_r",),
                       describe=lambda r: (f"train_loss {r['train_loss']:.4f} val_loss {r['val_loss']:.4f} "
                                           f"val_mae_R {r['val_mae_r']:.3f}"),
                       plot=lambda h: plot_curves(h, out / "curves.png", f"{cfg['name']}: log R regression"),
                       output_dir=out, log=log)
    step, best = state.step, state.best
    if result.stopped_early:
        return {"name": cfg["name"], "stopped_at": step}

    # ------------------------------------------------------------------ calibrate the best state on validation
    net.load_state_dict(best["state"])
    r_info = calibrate(net, x_va, y_va, info_va, cfg)
    corr_tr = ood.neighbour_correlation(x_tr.astype(np.float32) / 255.0)
    min_corr = float(cfg["calibrate"]["correlation_factor"]) * float(np.quantile(corr_tr, 0.001))
    r_info.update({"best_step": int(best["step"]), "steps": step, "min_correlation": min_corr})
    summary = {"name": cfg["name"], "r_estimation": r_info, "train_images": int(len(x_tr)),
               "val_images": int(len(x_va)), "wall_s": round(result.wall_s, 1)}
    meta = {"task": TASK, "r_estimation": r_info, "normalization": NORMALIZATION, "kind": "mri",
            "training": {"config": cfg, "train_images": int(len(x_tr)), "init": cfg["init"],
                         "wall_s": summary["wall_s"]}}
    save_weights(net, cfg["export"], meta)
    summary["export"] = cfg["export"]
    log(f"[{cfg['name']}] exported {cfg['export']}")
    with atomic_path(out / "summary.json", suffix=".json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    log(json.dumps(r_info))
    return summary


def calibrate(net, x_va, y_va, info_va, cfg: dict) -> dict:
    """The part of the metadata ``r_estimation`` fitted on the validation images: recalibration, conformal
    half-widths and the spread threshold of the OOD checks (the trainer adds ``min_correlation``, from the
    training images, and the steps).

    x_va: uint8 ``[N, H, W]`` (:func:`load_images`); y_va: log R ``[N]``; info_va["method"]: the
    reconstruction method of each validation image. ``linear``: ``log R = a + b * pooled`` on all validation
    images (a regressor trained with MSE shrinks towards the mean), and one such pair per reconstruction method
    (``recalibration_by_method``, used when the input says which method made it), each with the conformal
    half-width of its own residuals (``halfwidth_by_method``)."""
    net.eval()
    raw, spread = predict(net, x_va)
    return calibrate_pooled(raw, spread, y_va, info_va["method"], cfg["calibrate"], cfg["data"]["methods"],
                            pool="foreground")


def calibrate_pooled(raw, spread, y_va, method, cc: dict, methods, pool: str) -> dict:
    """:func:`calibrate` from the pooled validation outputs of any estimator network.

    raw, spread: pooled log R and map spread ``[N]``; y_va: true log R ``[N]``; method: the reconstruction
    method of each image ``[N]``; cc: the ``calibrate`` config (``linear``, ``coverage``, ``spread_quantile``,
    ``spread_factor``); methods: those to fit a pair for; pool: how ``raw`` was pooled (recorded)."""
    from mriqa.restimate import intervals
    from mriqa.restimate.learned import apply_recalibration

    methods = list(methods)
    method = np.asarray(method)
    coverage = float(cc["coverage"])

    def fit(sel):
        if not cc["linear"]:
            return None
        b_, a_ = np.polyfit(raw[sel].astype(np.float64), y_va[sel].astype(np.float64), 1)
        return {"a": float(a_), "b": float(b_)}

    everything = np.ones(len(y_va), bool)
    recal = fit(everything)
    log_r = apply_recalibration(raw, recal)
    halfwidth = intervals.conformal_halfwidth(log_r - y_va, coverage)
    by_method, hw_by_method, log_r_by_method = {}, {}, log_r.copy()
    for m in methods:
        sel = method == m
        by_method[m] = fit(sel)
        log_r_by_method[sel] = apply_recalibration(raw[sel], by_method[m])
        hw_by_method[m] = intervals.conformal_halfwidth(log_r_by_method[sel] - y_va[sel], coverage)
    err = np.abs(np.exp(log_r) - np.exp(y_va))
    err_m = np.abs(np.exp(log_r_by_method) - np.exp(y_va))
    return {
        "target": "log of nominal R", "pool": pool,
        "halfwidth": halfwidth, "coverage_fit": coverage, "recalibration": recal,
        "halfwidth_without_recalibration": intervals.conformal_halfwidth(raw - y_va, coverage),
        "recalibration_by_method": by_method if recal else None, "halfwidth_by_method": hw_by_method,
        "max_spread": float(cc["spread_factor"]) * float(np.quantile(spread, float(cc["spread_quantile"]))),
        "val_mae_r": float(np.mean(err)),
        "val_coverage": intervals.coverage(np.exp(y_va), *intervals.interval(log_r, halfwidth)[1:]),
        "val_mae_r_by_method": {m: float(np.mean(err[method == m])) for m in methods},
        "val_mae_r_by_method_recalibrated": {m: float(np.mean(err_m[method == m])) for m in methods},
    }


def recalibrate(cfg: dict, weights: str, log=print) -> dict:
    """Refit :func:`calibrate` for existing weights on the config's validation split and rewrite ``weights``
    atomically: the tensors, the training metadata, the steps and ``min_correlation`` (a property of the
    training images) are kept."""
    from mriqa.predictor import load_predictor
    from mriqa.weights_io import load_qfnet
    from recon.io.weights import save_weights

    torch.set_num_threads(int(cfg["train"].get("threads", 1)))
    net, meta = load_qfnet(weights)
    old = meta.get("r_estimation") or {}
    dc = cfg["data"]
    predictor = load_predictor(cfg["init"], device="cpu")
    x_va, y_va, info_va = load_images(dc["root"], "val", dc["methods"], predictor)
    r_info = calibrate(net, x_va, y_va, info_va, cfg)
    r_info.update({k: old[k] for k in ("best_step", "steps", "min_correlation") if k in old})
    meta = {k: v for k, v in meta.items() if k not in ("mriqa_format", "arch", "config")}
    meta["r_estimation"] = r_info
    save_weights(net, weights, meta)
    log(f"[{cfg['name']}] recalibrated {weights} on {len(y_va)} validation images")
    log(json.dumps(r_info))
    return r_info


def main(argv: list[str] | None = None) -> int:
    """``python -m mriqa.restimate.train ARGS`` = ``mriqa train-r ARGS``."""
    from mriqa.cli import main as mriqa_main

    return mriqa_main(["train-r", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())

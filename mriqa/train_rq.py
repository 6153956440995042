"""Train the reconstruction-quality model (RQNet, ``mriqa/models/reconq.py``): ``mriqa train-rq --config C``.

Self-supervised from fully sampled data only: the training images are reconstructions of simulated
acquisitions whose fully sampled reference is known (``mriqa.recon_quality.data``, split by subject), and
the target is their full-reference SSIM against it (scikit-image's 7 x 7 uniform window, data range the
reference slice's max: :func:`recon.metrics_torch.ssim_map_uniform`), as a map (averaged over the model's 8 x 8
output cells) and as the whole-image number. A quarter of each batch (``data.reference_fraction``) are the
references themselves, clean or blurred, noised or JPEG-compressed (so that the model also knows a good
image and the classical degradations); every image is flipped / transposed at random (the phase-encode
direction is not known to the model). ``data.noise_probability``: that share of the degraded references get
heavy noise instead (Rician, std 10-300 % of their max: up to an image that is all noise, which a diverged
reconstruction can be and which must score low). ``data.crop_probability``: that share of batches is cut to one random square
window (``crop_min``..H px) of image and reference alike; ``data.slice_probability``: that share of batches is
drawn from two slices only, so the ranking pairs compare methods and R on the same anatomy.

Loss per batch: ``L1(map, SSIM map) + L1(score, SSIM) + rank_weight * logistic ranking loss`` over the pairs of
the batch whose SSIM differs by more than 0.02 (Spearman is what the model is judged by).
``loss.target_region``: ``"image"`` (the whole-image SSIM, the shipped model) or ``"object"`` (the SSIM inside
the reference's object, the score an object-weighted mean of the map: no reward for copying the reference's
background convention; use ``pool="foreground"`` with such a model).

``init``: start from these weights (a path or a shipped name such as ``"recon"``; the architecture must match)
instead of a random initialisation: fine-tuning, e.g. on simulations of another look.

``pretrain_jpeg_steps`` (the paper's self-supervision as pre-training): first that many steps regressing
``QF / 100`` of JPEG-compressed references (QF uniform in 5..95) as a constant map, then the SSIM training.
The step loop, checkpoints, resumption and exports are :func:`recon.training.loop.run_steps`'.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mriqa.models.reconq import OUTPUT_STRIDE, RQNet, normalize_magnitude
from recon.config import build_from_config
from recon.metrics_torch import ssim_map_uniform
from recon.training.loop import export_weights, run_steps, start_state, training_record

DEFAULTS: dict[str, Any] = {
    "name": "rq",
    "seed": 0,
    "model": {"width": 32},
    "data": {"train": ["data/rq128/train.0of2.h5", "data/rq128/train.1of2.h5"], "val": ["data/rq128/val.h5"],
             "reference_fraction": 0.25, "crop_probability": 0.0, "crop_min": 64, "slice_probability": 0.0,
             "noise_probability": 0.0},
    "loss": {"map_weight": 1.0, "score_weight": 1.0, "rank_weight": 0.5, "target_region": "image"},
    "train": {"steps": 3000, "batch": 16, "lr": 1.0e-3, "lr_min_factor": 0.05, "pretrain_jpeg_steps": 0,
              "eval_every": 250, "checkpoint_every": 250, "threads": 1, "max_minutes": None,
              "stop_at_step": None, "progress": True, "ema": 0.0},
    "output_dir": "runs/rq",
    "export": None,
    "init": None,
}


def load_config(path=None, overrides=None, **extra) -> dict:
    """:data:`DEFAULTS` <- YAML file <- ``extra`` <- ``--set KEY=VALUE`` (strict, :func:`recon.config.load_config`)."""
    from recon.config import load_config as layered

    return layered(DEFAULTS, path, overrides, extra)


def cosine_lr(step: int, tc: dict) -> float:
    """Cosine from ``lr`` to ``lr * lr_min_factor`` over the SSIM steps; constant ``lr`` while pre-training."""
    pre, total = int(tc.get("pretrain_jpeg_steps", 0)), int(tc["steps"])
    if step < pre:
        return float(tc["lr"])
    t = (step - pre) / max(1, total - pre)
    lo = float(tc["lr"]) * float(tc["lr_min_factor"])
    return lo + 0.5 * (float(tc["lr"]) - lo) * (1 + math.cos(math.pi * t))


# --------------------------------------------------------------------------------------------------- data
def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips / transposes of ``[..., H, W]`` (square images): ``recon.transforms.dihedral_image``,
    the one MoDL's training slices get."""
    from recon.transforms import dihedral_image

    return dihedral_image(x, int(k))


def degrade_reference(ref: np.ndarray, rng: np.random.Generator, heavy_noise: bool = False) -> np.ndarray:
    """A reference as is, blurred (Gaussian sigma 0.5-2 px), with Rician noise (std 1-10 % of its max) or
    JPEG-compressed (QF 5-95, on its [0, 1] scale); one of the four at random. ``heavy_noise``: Rician noise of
    std 10-300 % of its max instead (log-uniform; at the top the image is noise alone)."""
    from scipy.ndimage import gaussian_filter

    kind = 2 if heavy_noise else int(rng.integers(4))
    peak = float(ref.max())
    if kind == 1:
        return gaussian_filter(ref, float(rng.uniform(0.5, 2.0))).astype(np.float32)
    if kind == 2:
        low, high = (0.10, 3.0) if heavy_noise else (0.01, 0.10)
        std = peak * float(np.exp(rng.uniform(np.log(low), np.log(high))))
        n = rng.standard_normal((2, *ref.shape)) * std
        return np.sqrt((ref + n[0]) ** 2 + n[1] ** 2).astype(np.float32)
    if kind == 3:
        return jpeg_reference(ref, int(rng.integers(5, 96)))
    return ref.astype(np.float32)


def jpeg_reference(ref: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of a magnitude image on its own [0, max] scale (8-bit, gray), back on that scale."""
    from mriqa.jpeg import jpeg_compress

    peak = float(ref.max()) or 1.0
    return (jpeg_compress(np.clip(ref / peak, 0, 1), quality) * peak).astype(np.float32)


class QualityBatches:
    """Draws training batches from a reconstruction-quality data set (``mriqa.recon_quality.data``)."""

    def __init__(self, data: dict[str, np.ndarray], reference_fraction: float, crop_probability: float = 0.0,
                 crop_min: int = 64, slice_probability: float = 0.0, noise_probability: float = 0.0):
        self.images = data["images"]
        self.refs = data["references"]
        self.ref_index = data["ref_index"]
        self.reference_fraction = float(reference_fraction)
        self.crop_probability = float(crop_probability)
        self.crop_min = int(crop_min)
        self.slice_probability = float(slice_probability)
        self.noise_probability = float(noise_probability)
        self.slices: list[np.ndarray] = []
        if self.slice_probability > 0:
            keys = [f"{v}/{s}" for v, s in zip(data["volume"], data["slice"])]
            _, inverse = np.unique(keys, return_inverse=True)
            self.slices = [np.flatnonzero(inverse == k) for k in range(inverse.max() + 1)]

    def _rows(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` image rows: uniform, or (with probability ``slice_probability``) from two slices only, so that the
        batch's ranking pairs compare methods and R on the same anatomy (what the score is judged on)."""
        if not self.slices or rng.random() >= self.slice_probability:
            return rng.integers(len(self.images), size=n)
        pool = np.concatenate([self.slices[i] for i in rng.choice(len(self.slices), size=2, replace=False)])
        return rng.choice(pool, size=n, replace=n > len(pool))

    def _crop(self, rng: np.random.Generator, imgs: list, refs: list) -> tuple[list, list]:
        """With probability ``crop_probability``, one square side in ``[crop_min, H]`` for the batch and a random
        window per pair (image and reference cut alike): the object then fills more or less of the field of
        view, as it does in scans other than the training volumes (the reference's SSIM is recomputed on the
        window, so the target stays exact)."""
        size = imgs[0].shape[-1]
        if self.crop_probability <= 0 or rng.random() >= self.crop_probability or self.crop_min >= size:
            return imgs, refs
        side = int(rng.integers(self.crop_min, size + 1))
        out_i, out_r = [], []
        for img, ref in zip(imgs, refs):
            y, x = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            out_i.append(img[y:y + side, x:x + side])
            out_r.append(ref[y:y + side, x:x + side])
        return out_i, out_r

    def draw(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(images, references)``, float32 ``[batch, H, W]`` each."""
        n_ref = int(round(batch * self.reference_fraction))
        rows = self._rows(rng, batch - n_ref)
        imgs = [self.images[i] for i in rows]
        refs = [self.refs[self.ref_index[i]] for i in rows]
        for g in rng.integers(len(self.refs), size=n_ref):
            refs.append(self.refs[g])
            # no draw when off: the older configs' batches stay as they were
            heavy = self.noise_probability > 0 and bool(rng.random() < self.noise_probability)
            imgs.append(degrade_reference(self.refs[g], rng, heavy_noise=heavy))
        imgs, refs = self._crop(rng, imgs, refs)
        ks = rng.integers(8, size=batch)
        return (np.stack([dihedral(x, k) for x, k in zip(imgs, ks)]),
                np.stack([dihedral(x, k) for x, k in zip(refs, ks)]))

    def draw_jpeg(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(JPEG-compressed references, QF / 100)`` for the pre-training stage."""
        qfs = rng.integers(5, 96, size=batch)
        imgs = [dihedral(jpeg_reference(self.refs[g], int(q)), int(k))
                for g, q, k in zip(rng.integers(len(self.refs), size=batch), qfs, rng.integers(8, size=batch))]
        return np.stack(imgs), qfs.astype(np.float32) / 100.0


def ssim_targets(images: torch.Tensor, refs: torch.Tensor, region: str = "image"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(target map [B, 1, ceil(H/8), ceil(W/8)], SSIM [B], cell weights [B, 1, ceil(H/8), ceil(W/8)])`` of
    images against references ``[B, H, W]``: the valid SSIM map padded back to H x W by edge replication and
    averaged over 8 x 8 cells. ``region="image"``: the scalar is the exact whole-image SSIM
    (:func:`recon.metrics.ssim`), the weights are 1. ``"object"``: the scalar is the mean of the SSIM map inside
    the reference's object (:func:`recon.metrics.object_mask`, as ``support_metrics``' SSIM_in) and the weights
    are each cell's object fraction (the score the model is trained to give is then the object-weighted mean of
    its map, which ``pool="foreground"`` approximates at inference from the image itself)."""
    peak = refs.flatten(1).amax(1)
    smap = ssim_map_uniform(images[:, None], refs[:, None], peak)
    pad_h = (images.shape[-2] - smap.shape[-2]) // 2
    pad_w = (images.shape[-1] - smap.shape[-1]) // 2
    full = F.pad(smap, (pad_w, pad_w, pad_h, pad_h), mode="replicate")
    cells = F.avg_pool2d(full, OUTPUT_STRIDE, ceil_mode=True)
    if region == "image":
        return cells, smap.flatten(1).mean(1), torch.ones_like(cells)
    from recon.metrics import object_mask

    mask = torch.from_numpy(object_mask(refs.numpy()).astype(np.float32))[:, None]
    score = (full * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1.0)
    return cells, score, F.avg_pool2d(mask, OUTPUT_STRIDE, ceil_mode=True)


def weighted_score(qmap: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``[B]`` weighted mean of a quality map ``[B, 1, h, w]`` (weights of the same shape; all-zero -> mean)."""
    total = weights.flatten(1).sum(1)
    weights = torch.where(total[:, None, None, None] > 0, weights, torch.ones_like(weights))
    return (qmap * weights).flatten(1).sum(1) / weights.flatten(1).sum(1)


def ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 0.02, temperature: float = 0.05) -> torch.Tensor:
    """Logistic loss on every ordered pair whose targets differ by more than ``margin``: ``softplus(-(p_i -
    p_j) / T)`` for ``t_i > t_j``; 0 when no pair qualifies."""
    dt = target[:, None] - target[None, :]
    dp = pred[:, None] - pred[None, :]
    pairs = dt > margin
    if not bool(pairs.any()):
        return pred.sum() * 0.0
    return F.softplus(-dp[pairs] / temperature).mean()


# ------------------------------------------------------------------------------------------------- training
def evaluate(model: RQNet, data: dict[str, np.ndarray], batch: int = 64, region: str = "image") -> dict[str, float]:
    """Validation: per-volume Spearman(score, target) (mean over volumes), pooled Spearman and MAE; the target is
    the whole-image SSIM (``region="image"``) or the in-object SSIM with object-weighted scores (``"object"``)."""
    from mriqa.evaluation.recon_quality import within_slice_srcc
    from mriqa.iqa.correlation import srcc

    if region == "object":
        from mriqa.evaluation.recon_quality import in_object_ssim
        from recon.metrics import object_mask

        if "_ssim_in" not in data:  # computed once per validation set
            data["_ssim_in"] = in_object_ssim(data)
            masks = torch.from_numpy(object_mask(data["references"]).astype(np.float32))[:, None]
            data["_cells"] = F.avg_pool2d(masks, OUTPUT_STRIDE, ceil_mode=True)[torch.from_numpy(data["ref_index"])]
        scores, target = predict_scores(model, data["images"], batch, data["_cells"]), data["_ssim_in"]
    else:
        scores, target = predict_scores(model, data["images"], batch), data["ssim"]
    per_volume = [srcc(scores[data["volume"] == v], target[data["volume"] == v]) for v in np.unique(data["volume"])]
    return {"val_srcc_volume": float(np.mean(per_volume)), "val_srcc": float(srcc(scores, target)),
            "val_srcc_slice": within_slice_srcc(data, scores, target),
            "val_mae": float(np.mean(np.abs(scores - target)))}


def predict_scores(model: RQNet, images: np.ndarray, batch: int = 64, weights: torch.Tensor | None = None
                   ) -> np.ndarray:
    """Scores ``[N]`` of magnitude images ``[N, H, W]`` (any scale), in eval mode, no gradients: the map's mean,
    or its ``weights``-weighted mean (``[N, 1, h, w]``)."""
    was = model.training
    model.eval()
    out = []
    with torch.inference_mode():
        for a in range(0, len(images), batch):
            x = normalize_magnitude(torch.from_numpy(np.ascontiguousarray(images[a:a + batch])))
            qmap = model(x)
            out.append((RQNet.score(qmap) if weights is None else weighted_score(qmap, weights[a:a + batch])).numpy())
    model.train(was)
    return np.concatenate(out)


def load_init(model: RQNet, init: str, name: str, log=print) -> None:
    """Copy every tensor of the ``init`` weights (a file or a shipped name) into ``model``; a tensor missing or of
    another shape is an :class:`~recon.errors.InputError` naming ``init`` (fine-tuning needs the same network)."""
    from mriqa.predictor import load_predictor
    from recon.errors import InputError

    src = load_predictor(init, device="cpu").model.state_dict()
    own = model.state_dict()
    bad = [k for k, v in own.items() if k not in src or src[k].shape != v.shape]
    if bad:
        raise InputError(init, f"init weights do not fit the configured RQNet "
                               f"({len(bad)} tensors missing or of another shape, e.g. {bad[0]})")
    model.load_state_dict({k: src[k] for k in own})
    log(f"[{name}] initialised from {init}")


def train(cfg: dict, resume: bool = True, log=print) -> dict:
    """Run (or resume) one training; returns ``{"step", "stopped_early", "wall_s", "weights", "best"}``;
    the exported weights are the best validation row's (per-volume Spearman)."""
    from mriqa.recon_quality.data import read_quality_set

    tc, lc = cfg["train"], cfg["loss"]
    out = Path(cfg["output_dir"])
    if tc.get("threads"):
        torch.set_num_threads(int(tc["threads"]))
    train_data = read_quality_set(cfg["data"]["train"])
    val_data = read_quality_set(cfg["data"]["val"])
    log(f"[{cfg['name']}] train {len(train_data['images'])} images ({len(np.unique(train_data['volume']))} files), "
        f"val {len(val_data['images'])}")
    dc = cfg["data"]
    batches = QualityBatches(train_data, dc["reference_fraction"], dc["crop_probability"], dc["crop_min"],
                             dc["slice_probability"], dc["noise_probability"])
    torch.manual_seed(int(cfg["seed"]))
    model = build_from_config(RQNet, cfg["model"])
    if cfg.get("init"):
        load_init(model, cfg["init"], cfg["name"], log)
    opt = torch.optim.Adam(model.parameters(), lr=float(tc["lr"]))
    state = start_state(out, model, opt, resume, cfg["name"], log)
    model.train()
    batch, pre = int(tc["batch"]), int(tc["pretrain_jpeg_steps"])
    region = str(lc["target_region"])
    if region not in ("image", "object"):
        from recon.errors import InputError

        raise InputError(None, f"loss.target_region must be 'image' or 'object', got {region!r}")

    def train_step(rng):
        if state.step < pre:
            imgs, qf = batches.draw_jpeg(rng, batch)
            qmap = model(normalize_magnitude(torch.from_numpy(imgs)))
            loss = F.l1_loss(qmap, torch.from_numpy(qf)[:, None, None, None].expand_as(qmap))
            return loss, {"jpeg_l1": loss.item()}
        imgs, refs = batches.draw(rng, batch)
        x, r = torch.from_numpy(imgs), torch.from_numpy(refs)
        with torch.no_grad():
            target_map, target, cell_w = ssim_targets(x, r, region)
        qmap = model(normalize_magnitude(x))
        score = weighted_score(qmap, cell_w)
        map_w = cell_w + 0.1  # object cells count most; the background is still asked to look like its SSIM
        l_map = ((qmap - target_map).abs() * map_w).sum() / map_w.sum()
        l_score = F.l1_loss(score, target)
        l_rank = ranking_loss(score, target)
        loss = float(lc["map_weight"]) * l_map + float(lc["score_weight"]) * l_score + float(lc["rank_weight"]) * l_rank
        return loss, {"map_l1": l_map.item(), "score_l1": l_score.item(), "rank": l_rank.item()}

    def describe(row):
        parts = [f"{k} {row[k]:.4f}" for k in ("jpeg_l1", "map_l1", "score_l1", "rank", "val_srcc_volume",
                                                "val_srcc", "val_srcc_slice", "val_mae") if k in row]
        return " ".join(parts)

    def plot(history):
        from recon.training.curves import Panel, plot_history

        plot_history(history, out / "curves.png", cfg["name"], [
            Panel("training loss", (("train_loss", "total"), ("map_l1", "map L1"), ("score_l1", "score L1"))),
            Panel("validation Spearman (score, SSIM)", (("val_srcc_volume", "per volume"), ("val_srcc", "pooled"),
                                                            ("val_srcc_slice", "within method and slice"))),
        ], require="val_srcc")

    result = run_steps(state, name=cfg["name"], model=model, optimizer=opt, cfg=cfg, lr_at=cosine_lr,
                       train_step=train_step, evaluate=lambda: evaluate(model, val_data, region=region),
                       select="val_srcc_volume", maximize=True, keep=("val_srcc_volume", "val_srcc", "val_srcc_slice",
                                                                     "val_mae"),
                       describe=describe, plot=plot, output_dir=out, log=log)
    if state.best is not None:
        model.load_state_dict(state.best["state"])
    best = {k: v for k, v in (state.best or {}).items() if k != "state"}
    meta = {"task": "reference-free reconstruction quality: predicted SSIM map (8 x 8 cells) and its mean",
            "training": training_record(cfg, state, result, "cpu", train_images=len(train_data["images"]),
                                        best=best)}
    export_weights(model.eval(), out, cfg.get("export"), meta, cfg["name"], log)
    return {"step": state.step, "stopped_early": result.stopped_early, "wall_s": result.wall_s,
            "weights": str(out / "best.safetensors"), "best": best}


def main(argv: list[str] | None = None) -> int:
    """``python -m mriqa.train_rq ARGS`` = ``mriqa train-rq ARGS``."""
    from mriqa.cli import main as mriqa_main

    return mriqa_main(["train-rq", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())

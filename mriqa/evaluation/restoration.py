"""Artifact removal by the networks trained with the QF loss (QF paper Figs. 16-17): data, metrics, figure.

For each kind (``rgb``: JPEG; ``gray``: undersampled MRI magnitude) the degraded held-out images go through
every restorer (the AR-CNNs of ``mriqa.train_ar``, one per QF weight w; w = 0 is the L1-only model) and are
compared with their input:

- PSNR and SSIM against the clean image (outputs clipped to [0, 1]; :mod:`mriqa.evaluation.photo_metrics`),
  the QF of the output (:class:`mriqa.losses.QFLoss` ``scores``, mean pooling: the quantity the QF term
  raises; rgb model for RGB, gray model for gray), and the L1 distance to the input (the consistency term);
- artifact indicators of the change ``d = output - input``: the 99.9th percentile of ``|d|`` (isolated dots /
  generative speckles show up here) and, for RGB, the mean absolute chroma shift (BT.601 Cb / Cr of ``d``: a
  colour-tone change, the artifact the paper reports), both in [0, 1] intensity units.

Held out: RGB, Kodak24 ``KODAK_TEST`` (central crop, :func:`mriqa.evaluation.heldout.grid_crop`) at JPEG QF 10
and 20 (training used QF 10..30); gray, Colin27 ch2, 2 slices per orientation (head crop), zero-filled
magnitude at R = 4 (fastMRI random line mask, seed = the image's index).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

from mriqa.evaluation.heldout import COLIN27, KODAK_TEST, grid_crop, kodak, mri_slices
from mriqa.evaluation.photo_metrics import psnr, ssim_rgb
from mriqa.evaluation.tables import md_table

__all__ = ["WEIGHTS", "SETTINGS", "Restorer", "test_images", "degrade", "network", "load_models", "chroma_shift",
           "evaluate", "results_table", "example_figure"]

WEIGHTS = ("0", "0.1", "1", "10")
SETTINGS = {"rgb": ("JPEG QF", (10, 20)), "gray": ("R", (4.0,))}
Restorer = Callable[[np.ndarray], np.ndarray]


def test_images(kind: str, crop: int | None = 256, max_images: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Held-out clean images, float ``[H, W, C]`` in [0, 1] (C = 3 for rgb, 1 for gray)."""
    if kind == "rgb":
        out = [(n, grid_crop(u, crop)) for n, u in kodak(KODAK_TEST)]
    else:
        out = [(n, u[..., None]) for n, u in mri_slices(COLIN27, per_axis=2, name="colin27")]
    return out[:max_images] if max_images else out


def degrade(kind: str, clean: np.ndarray, setting: float, seed: int) -> np.ndarray:
    """RGB: JPEG at QF ``setting``; gray: zero-filled magnitude at R = ``setting`` (mask seed ``seed``)."""
    if kind == "rgb":
        from mriqa.jpeg import jpeg_compress

        return jpeg_compress(clean, int(setting)).astype(np.float32)
    from mriqa.train_ar import undersample

    return undersample(clean[..., 0], float(setting), seed)[..., None]


def network(model) -> Restorer:
    """An ``[H, W, C]`` float restorer from a ``[B, C, H, W] -> [B, C, H, W]`` network (output not clipped)."""
    import torch

    def run(img: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]
        with torch.no_grad():
            return model(x)[0].permute(1, 2, 0).numpy()

    return run


def load_models(kind: str, runs: Path, weights=WEIGHTS) -> dict[str, Restorer]:
    """``{"AR-CNN w=0 (L1 only)": restorer, ...}`` for the runs ``runs/ar-<kind>-w<w>/final.safetensors`` that
    exist (the missing ones are named on stderr)."""
    from mriqa.models.arcnn import load_arcnn

    out = {}
    for w in weights:
        path = Path(runs) / f"ar-{kind}-w{w}" / "final.safetensors"
        if path.is_file():
            model, _ = load_arcnn(path, device="cpu")
            out[f"AR-CNN w={w}" + (" (L1 only)" if float(w) == 0 else "")] = network(model)
        else:
            print(f"AR-CNN run {path} not found; skipped", file=sys.stderr)
    return out


def chroma_shift(d: np.ndarray) -> float:
    """Mean |Cb| + |Cr| (BT.601) of an RGB difference image ``[H, W, 3]``: a colour-tone change."""
    cb = -0.168736 * d[..., 0] - 0.331264 * d[..., 1] + 0.5 * d[..., 2]
    cr = 0.5 * d[..., 0] - 0.418688 * d[..., 1] - 0.081312 * d[..., 2]
    return float(np.mean(np.abs(cb)) + np.mean(np.abs(cr)))


def evaluate(kind: str, models: dict[str, Restorer], images, setting: float) -> dict[str, dict]:
    """Per method (``"input"`` first): mean PSNR, SSIM, QF, L1 to input, p99.9 |d|, chroma shift."""
    import torch

    from mriqa.losses import QFLoss

    qf = QFLoss(model=kind)
    methods: dict[str, Restorer] = {"input": lambda x: x, **models}
    rows = {}
    for label, fn in methods.items():
        acc = {k: [] for k in ("psnr", "ssim", "qf", "l1_to_input", "p999_change", "chroma_shift")}
        for i, (_, clean) in enumerate(images):
            deg = degrade(kind, clean, setting, seed=i)
            raw = fn(deg)
            out = np.clip(raw, 0, 1).astype(np.float64)
            d = raw - deg
            ref = clean.astype(np.float64)
            acc["psnr"].append(psnr(ref, out))
            acc["ssim"].append(ssim_rgb(ref, out))
            t = torch.from_numpy(np.ascontiguousarray(raw.transpose(2, 0, 1), dtype=np.float32))[None]
            with torch.no_grad():
                acc["qf"].append(float(qf.scores(t)[0]))
            acc["l1_to_input"].append(float(np.mean(np.abs(d))))
            acc["p999_change"].append(float(np.percentile(np.abs(d), 99.9)))
            acc["chroma_shift"].append(chroma_shift(d) if kind == "rgb" else float("nan"))
        rows[label] = {k: float(np.mean(v)) for k, v in acc.items()}
    return rows


def results_table(rows: dict[str, dict], kind: str) -> str:
    """The markdown table of :func:`evaluate`'s rows, with each method's PSNR against the L1-only model's."""
    base = next((v for k, v in rows.items() if "L1 only" in k), None)
    out = []
    for label, r in rows.items():
        dp = f"{r['psnr'] - base['psnr']:+.2f}" if base and label != "input" else "-"
        out.append([label, f"{r['psnr']:.2f}", dp, f"{r['ssim']:.4f}", f"{r['qf']:.3f}", f"{r['l1_to_input']:.4f}",
                    f"{r['p999_change']:.4f}", "-" if kind == "gray" else f"{r['chroma_shift']:.4f}"])
    return md_table(["method", "PSNR (dB)", "PSNR vs L1-only", "SSIM", "QF (mean)", "L1 to input",
                     "p99.9 abs change", "chroma shift"], out)


def example_figure(kind: str, models: dict[str, Restorer], clean: np.ndarray, setting: float, path: Path,
                   zoom: int = 128, amplify: float = 8.0, title: str = "") -> None:
    """Top row: clean, input and every output (central ``zoom`` px); bottom: ``amplify * |output - input|``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.files import atomic_path

    deg = degrade(kind, clean, setting, seed=0)
    outs = {"input": deg, **{k: fn(deg) for k, fn in models.items()}}
    z = grid_crop(np.ones(clean.shape[:2]), zoom).shape[0]
    r0, c0 = (clean.shape[0] - z) // 2, (clean.shape[1] - z) // 2

    def show(ax, img, t):
        img = np.clip(img[r0:r0 + z, c0:c0 + z], 0, 1)
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(t, fontsize=7)
        ax.axis("off")

    n = len(outs) + 1
    fig, axes = plt.subplots(2, n, figsize=(2.0 * n, 4.3), dpi=90)
    show(axes[0, 0], clean, "clean (reference)")
    axes[1, 0].axis("off")
    for j, (label, img) in enumerate(outs.items(), start=1):
        show(axes[0, j], img, label)
        if label == "input":
            axes[1, j].axis("off")
        else:
            show(axes[1, j], np.abs(img - deg) * amplify, f"|output - input| x{amplify:g}")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)

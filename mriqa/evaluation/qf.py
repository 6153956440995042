"""Evaluation of the QF predictors (issue 4): accuracy on JPEG, generalisation, blockiness, shift robustness.

- :class:`QFModel`: a QF network from a weights file; ``score(unit)`` = mean of its QF map (QF / 100).
- :func:`accuracy_rows` / :func:`summarize_accuracy`: each held-out image JPEG-compressed at ``QFS`` (and
  lossless); MAE, fraction within +-0.02, Spearman over QF in [30, 100], per ``BINS`` of the true QF.
- :func:`degrade` / :func:`generalisation`: Gaussian blur sigma (px), Gaussian noise sigma ([0, 1] units),
  salt-and-pepper density at ``LEVELS`` (re-quantised to 8 bits, seeded); per image the Spearman of the
  score with the severity (paper Fig. 12; :func:`mriqa.iqa.correlation.srcc`, NaN for a constant score).
- :func:`blockiness`: mean |pixel step| across 8 x 8 block boundaries / elsewhere (1.0 = no grid).
- :func:`shift_std`: std of the score over the 64 one-pixel shifts of the crop window (the BlurPool question).
- :func:`fig_pairs` / :func:`fig_curves`: the pair-value plot and the generalisation curves.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.files import atomic_path
from mriqa.iqa.correlation import srcc

__all__ = ["QFModel", "QFS", "BINS", "LEVELS", "LABEL", "accuracy_rows", "summarize_accuracy", "degrade",
           "generalisation", "blockiness", "shift_std", "fig_pairs", "fig_curves"]

QFS = [10, 20] + list(range(30, 101, 5))
BINS = [(0.0, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0001)]
LEVELS = {"blur": [0.0, 0.4, 0.7, 1.0, 1.5, 2.0, 3.0],
          "noise": [0.0, 0.003, 0.006, 0.01, 0.02, 0.03, 0.05, 0.08],
          "salt": [0.0, 0.001, 0.003, 0.01, 0.02, 0.05, 0.1]}
LABEL = {"blur": "Gaussian blur sigma (px)", "noise": "Gaussian noise sigma ([0,1] units)",
         "salt": "salt-and-pepper density"}


class QFModel:
    """A QF predictor network (``mriqa.weights_io.load_qfnet``) scoring images in [0, 1] on the 1/255 grid."""

    def __init__(self, name: str, path: Path):
        from mriqa.weights_io import load_qfnet

        self.name, self.path = name, path
        self.net, self.meta = load_qfnet(path)
        self.channels = self.net.in_channels

    def qf_map(self, unit: np.ndarray) -> np.ndarray:
        """``[H, W]`` or ``[H, W, C]`` float -> the QF map ``[h, w]`` (QF / 100)."""
        import torch

        from mriqa.normalize import convert_channels

        x = convert_channels(unit, self.channels)
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].float()
        with torch.no_grad():
            return self.net(t)[0, 0].numpy()

    def score(self, unit: np.ndarray) -> float:
        """Whole-image score: the mean of the QF map."""
        return float(self.qf_map(unit).mean())


def accuracy_rows(model: QFModel, images) -> list[dict]:
    """``[{"image", "true": QF / 100 (None: lossless), "pred"}]`` over ``images`` x ``QFS``."""
    from mriqa.jpeg import jpeg_compress

    rows = []
    for name, unit in images:
        for q in QFS:
            rows.append({"image": name, "true": q / 100, "pred": model.score(jpeg_compress(unit, q))})
        rows.append({"image": name, "true": None, "pred": model.score(unit)})
    return rows


def summarize_accuracy(rows) -> dict:
    """MAE / within +-0.02 / Spearman over QF >= 30, MAE over QF >= 80 and overall, the lossless mean, per bin."""
    t = np.array([r["true"] for r in rows if r["true"] is not None])
    p = np.array([r["pred"] for r in rows if r["true"] is not None])
    lossless = np.array([r["pred"] for r in rows if r["true"] is None])
    sel = t >= 0.3 - 1e-9
    hi = t >= 0.8 - 1e-9
    err = np.abs(p - t)
    out = {
        "n": int(sel.sum()),
        "mae_30_100": float(err[sel].mean()),
        "within_002_30_100": float((err[sel] <= 0.02).mean()),
        "spearman_30_100": srcc(t[sel], p[sel]),
        "mae_80_100": float(err[hi].mean()),
        "mae_all": float(err.mean()),
        "lossless_mean": float(lossless.mean()),
        "bins": [],
    }
    for lo, up in BINS:
        b = (t >= lo - 1e-9) & (t < up - 1e-9)
        if b.any():
            out["bins"].append({"bin": f"[{lo:.1f}, {min(up, 1.0):.1f}{']' if up > 1 else ')'}", "n": int(b.sum()),
                                "mae": float(err[b].mean()), "bias": float((p[b] - t[b]).mean()),
                                "within": float((err[b] <= 0.02).mean())})
    return out


def degrade(unit: np.ndarray, kind: str, level: float, seed: int) -> np.ndarray:
    """``unit`` with distortion ``kind`` (``blur`` / ``noise`` / ``salt``) at ``level``; 0 returns it as is."""
    from scipy import ndimage

    from mriqa.normalize import quantize_8bit

    if level == 0:
        return unit
    rng = np.random.default_rng(seed)
    if kind == "blur":
        sig = (level, level, 0) if unit.ndim == 3 else level
        return quantize_8bit(ndimage.gaussian_filter(unit.astype(np.float64), sig, mode="reflect"))
    if kind == "noise":
        return quantize_8bit(unit + rng.standard_normal(unit.shape) * level)
    if kind == "salt":
        out = unit.copy()
        m = rng.random(unit.shape[:2])
        out[m < level / 2] = 0.0
        out[(m >= level / 2) & (m < level)] = 1.0
        return out
    raise ValueError(f"unknown distortion {kind!r}; choose from {', '.join(LEVELS)}")


def generalisation(model, images) -> dict:
    """Per distortion: ``levels``, ``curves`` [image][level] of ``model.score``, per-image ``spearman`` with the
    level and its median (any object with ``score(unit) -> float`` works as ``model``)."""
    res = {}
    for kind, levels in LEVELS.items():
        curves = np.array([[model.score(degrade(u, kind, lv, seed=1000 + i)) for lv in levels]
                           for i, (_, u) in enumerate(images)])
        rhos = [srcc(levels, c) for c in curves]
        res[kind] = {"levels": levels, "curves": curves.tolist(), "spearman": rhos,
                     "median_spearman": float(np.nanmedian(rhos))}
    return res


def blockiness(unit: np.ndarray) -> float:
    """8 x 8 blockiness index of a gray or RGB (BT.601 luma) image: mean |step| across block boundaries over
    the mean |step| elsewhere, averaged over the two directions (JPEG QF 75 about 1.13, QF 50 about 1.29)."""
    g = unit.astype(np.float64)
    if g.ndim == 3:
        g = g @ [0.299, 0.587, 0.114]

    def ratio(d):
        idx = np.arange(len(d))
        return d[idx % 8 == 7].mean() / d[idx % 8 != 7].mean()

    return 0.5 * (ratio(np.abs(np.diff(g, axis=1)).mean(axis=0)) + ratio(np.abs(np.diff(g, axis=0)).mean(axis=1)))


def shift_std(model: QFModel, images, qfs=(50, 80, 95), size: int = 192) -> dict:
    """Median / mean over (image, QF) of the std of the score over the 64 crop offsets (0..7)^2, and the MAE of
    the shift-averaged score."""
    from mriqa.jpeg import jpeg_compress

    stds, maes = [], []
    for _, unit in images:
        for q in qfs:
            j = jpeg_compress(unit, q)
            h0, w0 = (j.shape[0] - size - 8) // 2, (j.shape[1] - size - 8) // 2
            s = [model.score(j[h0 + dy: h0 + dy + size, w0 + dx: w0 + dx + size])
                 for dy in range(8) for dx in range(8)]
            stds.append(np.std(s))
            maes.append(abs(np.mean(s) - q / 100))
    return {"median_std": float(np.median(stds)), "mean_std": float(np.mean(stds)), "mae": float(np.mean(maes))}


def fig_pairs(results: dict, path: Path) -> None:
    """Predicted vs true QF, one panel per ``{name: accuracy rows}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(3.6 * len(results), 3.4), dpi=72, squeeze=False)
    for ax, (name, rows) in zip(axes[0], results.items()):
        t = np.array([r["true"] for r in rows if r["true"] is not None])
        p = np.array([r["pred"] for r in rows if r["true"] is not None])
        ax.scatter(t, p, s=5, alpha=0.5)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlabel("true QF / 100")
        ax.set_ylabel("predicted (mean of QF map)")
        ax.set_title(name)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def fig_curves(gen: dict, path: Path, title: str) -> None:
    """Mean +- std score against each distortion level, one line per ``{name: generalisation(...)}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.0), dpi=72)
    for ax, kind in zip(axes, ("blur", "noise", "salt")):
        for name, g in gen.items():
            c = np.array(g[kind]["curves"])
            lv = g[kind]["levels"]
            ax.errorbar(lv, c.mean(0), yerr=c.std(0), marker="o", ms=3, capsize=2,
                        label=f"{name} (median rho {g[kind]['median_spearman']:.2f})")
        ax.set_xlabel(LABEL[kind])
        ax.set_ylabel("predicted QF / 100")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)

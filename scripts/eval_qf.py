#!/usr/bin/env python
"""Evaluate the QF predictors; writes markdown tables and small PNG figures into docs/qf/ and prints them.

    .venv/bin/python scripts/eval_qf.py                    # both shipped models, all sections
    .venv/bin/python scripts/eval_qf.py --sections 1,2     # a subset
    .venv/bin/python scripts/eval_qf.py --compare rgb-blurpool=runs/qf-rgb-blurpool/best.safetensors:rgb

Sections (see issue 4):
1. QF accuracy on held-out images (never used in training): whole-image score = mean of the QF map;
   MAE, fraction within +-0.02, Spearman, per QF bin, pair-value plot. RGB: Kodak24 test images kodim04, 08,
   12, 16, 20, 24. Gray: Colin27 (ch2) slices, 4 per orientation, each cropped to the head's bounding box
   (+8 px) so that the score is the mean over the head, not over empty air (the paper scores the central patch
   for MRI for the same reason).
2. Generalisation (paper Fig. 12): Gaussian blur sigma, Gaussian noise sigma, salt-and-pepper density, applied to
   the held-out images; Spearman(QF, severity) per image, its median, curves (mean +- std over images).
3. Dataset quality (paper Table 1): mean +- std predicted QF of every folder in ../shared/data/rgb (and the
   scikit-image photos), with the 8x8 blockiness index of each set.
4. Grayscale on MRI: clean volumes' scores, and the section-1/2 curves for the gray model (QF vs JPEG QF, noise
   level, blur).
5. Shift robustness (BlurPool question): std of the score over the 64 one-pixel shifts (0..7, 0..7) of the
   crop window of JPEG images, and held-out MAE, for every model given (``--compare``).

Everything is deterministic (fixed seeds, fixed image lists). Runs on CPU in a few minutes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage, stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mriqa.imageio import read_images, read_volume  # noqa: E402
from mriqa.jpeg import jpeg_compress  # noqa: E402
from mriqa.normalize import convert_channels, quantize_8bit, to_unit_range  # noqa: E402
from mriqa.qf_data import _fg_mask, skimage_data_dir  # noqa: E402
from mriqa.weights_io import load_qfnet  # noqa: E402

DATA = REPO.parent / "shared" / "data"
KODAK_TEST = ["kodim04", "kodim08", "kodim12", "kodim16", "kodim20", "kodim24"]
KODAK_VAL = ["kodim02", "kodim14", "kodim21"]
SKIMAGE_TRAIN = ["coffee", "chelsea", "motorcycle_left", "motorcycle_right", "astronaut"]
QFS = [10, 20] + list(range(30, 101, 5))
BINS = [(0.0, 0.3), (0.3, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0001)]
BLUR = [0.0, 0.4, 0.7, 1.0, 1.5, 2.0, 3.0]
NOISE = [0.0, 0.003, 0.006, 0.01, 0.02, 0.03, 0.05, 0.08]
SALT = [0.0, 0.001, 0.003, 0.01, 0.02, 0.05, 0.1]


# ----------------------------------------------------------------------------------------------- models
class Model:
    def __init__(self, name: str, path: Path):
        self.name, self.path = name, path
        self.net, self.meta = load_qfnet(path)
        self.channels = self.net.in_channels

    @torch.no_grad()
    def qf_map(self, unit: np.ndarray) -> np.ndarray:
        """[H, W(, C)] float on the 1/255 grid -> QF map."""
        x = convert_channels(unit, self.channels)
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].float()
        return self.net(t)[0, 0].numpy()

    def score(self, unit: np.ndarray) -> float:
        return float(self.qf_map(unit).mean())


# ----------------------------------------------------------------------------------------------- data
def kodak(names):
    out = []
    for n in names:
        rec = read_images(DATA / "rgb" / "Kodak24" / f"{n}.png")[0]
        out.append((n, to_unit_range(rec.image, "photo")))
    return out


def bbox_crop(unit: np.ndarray, margin: int = 8) -> np.ndarray:
    m = _fg_mask(unit)
    ys, xs = np.nonzero(m)
    y0, y1 = max(0, ys.min() - margin), min(unit.shape[0], ys.max() + margin + 1)
    x0, x1 = max(0, xs.min() - margin), min(unit.shape[1], xs.max() + margin + 1)
    return unit[y0:y1, x0:x1]


def mri_slices(path: Path, per_axis: int = 4, crop: bool = True, name: str | None = None):
    """Held-out MRI slices: ``per_axis`` evenly spaced slices in the central 60 % of each orientation."""
    vol = read_volume(path)
    out = []
    for ax in range(3):
        v = np.moveaxis(vol, ax, 0)
        n = v.shape[0]
        for i in np.linspace(0.3 * n, 0.7 * n, per_axis).astype(int):
            u = to_unit_range(v[i], "mri")
            out.append((f"{name or path.name}[{ax}:{i}]", bbox_crop(u) if crop else u))
    return out


# ----------------------------------------------------------------------------------------------- metrics
def spearman(a, b) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def accuracy_rows(model: Model, images) -> list[dict]:
    rows = []
    for name, unit in images:
        for q in QFS:
            rows.append({"image": name, "true": q / 100, "pred": model.score(jpeg_compress(unit, q))})
        rows.append({"image": name, "true": None, "pred": model.score(unit)})  # lossless
    return rows


def summarize_accuracy(rows) -> dict:
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
        "spearman_30_100": spearman(t[sel], p[sel]),
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
    raise ValueError(kind)


LEVELS = {"blur": BLUR, "noise": NOISE, "salt": SALT}
LABEL = {"blur": "Gaussian blur sigma (px)", "noise": "Gaussian noise sigma ([0,1] units)",
         "salt": "salt-and-pepper density"}


def generalisation(model: Model, images) -> dict:
    res = {}
    for kind, levels in LEVELS.items():
        curves = np.array([[model.score(degrade(u, kind, lv, seed=1000 + i)) for lv in levels]
                           for i, (_, u) in enumerate(images)])
        rhos = [spearman(levels, c) for c in curves]
        res[kind] = {"levels": levels, "curves": curves.tolist(), "spearman": rhos,
                     "median_spearman": float(np.nanmedian(rhos))}
    return res


def blockiness(unit: np.ndarray) -> float:
    g = unit.astype(np.float64)
    if g.ndim == 3:
        g = g @ [0.299, 0.587, 0.114]

    def ratio(d):
        idx = np.arange(len(d))
        return d[idx % 8 == 7].mean() / d[idx % 8 != 7].mean()

    return 0.5 * (ratio(np.abs(np.diff(g, axis=1)).mean(axis=0)) + ratio(np.abs(np.diff(g, axis=0)).mean(axis=1)))


def shift_std(model: Model, images, qfs=(50, 80, 95), size: int = 192) -> dict:
    """Median over (image, QF) of the std of the score over the 64 crop offsets (0..7)^2."""
    stds, maes = [], []
    for name, unit in images:
        for q in qfs:
            j = jpeg_compress(unit, q)
            h0, w0 = (j.shape[0] - size - 8) // 2, (j.shape[1] - size - 8) // 2
            s = [model.score(j[h0 + dy: h0 + dy + size, w0 + dx: w0 + dx + size])
                 for dy in range(8) for dx in range(8)]
            stds.append(np.std(s))
            maes.append(abs(np.mean(s) - q / 100))
    return {"median_std": float(np.median(stds)), "mean_std": float(np.mean(stds)), "mae": float(np.mean(maes))}


# ----------------------------------------------------------------------------------------------- output
def md_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def fig_pairs(results: dict, path: Path) -> None:
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
    fig.savefig(path)
    plt.close(fig)


def fig_curves(gen: dict, path: Path, title: str) -> None:
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
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gray", default=str(REPO / "mriqa/weights/qf-gray.safetensors"))
    ap.add_argument("--rgb", default=str(REPO / "mriqa/weights/qf-rgb.safetensors"))
    ap.add_argument("--compare", action="append", default=[],
                    help="NAME=PATH:gray|rgb, an extra model evaluated beside the shipped one (sections 1, 2, 5)")
    ap.add_argument("--sections", default="1,2,3,4,5")
    ap.add_argument("--out", default=str(REPO / "docs/qf"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sections = {int(s) for s in args.sections.split(",")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    models = {"gray": [], "rgb": []}
    for kind, path in (("gray", Path(args.gray)), ("rgb", Path(args.rgb))):
        if path.is_file():
            models[kind].append(Model(f"qf-{kind}", path))
        else:
            print(f"eval_qf: {path} not found; skipping the {kind} model", file=sys.stderr)
    for item in args.compare:
        name, rest = item.split("=", 1)
        path, kind = rest.rsplit(":", 1)
        models[kind].append(Model(name, Path(path)))

    images = {
        "rgb": kodak(KODAK_TEST),
        "gray": mri_slices(DATA / "mri/volumes/colin27/ch2.nii.gz", name="colin27"),
    }
    heldout_desc = {"rgb": "Kodak24 " + ", ".join(KODAK_TEST), "gray": "Colin27 ch2, 12 slices (4 per axis), head crop"}
    report: list[str] = []
    results: dict = {}

    def emit(text: str = "") -> None:
        print(text)
        report.append(text)

    if 1 in sections or 4 in sections:
        emit("## 1. QF accuracy on held-out images (whole-image score = mean of the QF map)\n")
        rows, pairs = [], {}
        bins_rows = []
        for kind in ("rgb", "gray"):
            for m in models[kind]:
                acc = accuracy_rows(m, images[kind])
                s = summarize_accuracy(acc)
                results.setdefault("accuracy", {})[m.name] = {**s, "rows": acc}
                pairs[f"{m.name} ({kind} held-out)"] = acc
                ok = s["spearman_30_100"] >= 0.95 and s["mae_30_100"] <= 0.04 and s["mae_80_100"] <= 0.03
                rows.append([m.name, heldout_desc[kind], s["n"], f"{s['spearman_30_100']:.3f}",
                             f"{s['mae_30_100']:.4f}", f"{s['within_002_30_100']:.2f}", f"{s['mae_80_100']:.4f}",
                             f"{s['lossless_mean']:.3f}", "yes" if ok else "no"])
                for b in s["bins"]:
                    bins_rows.append([m.name, b["bin"], b["n"], f"{b['mae']:.4f}", f"{b['bias']:+.4f}",
                                      f"{b['within']:.2f}"])
        emit(md_table(["model", "held-out images", "n (QF>=30)", "Spearman", "MAE [0.3,1]", "within +-0.02",
                       "MAE [0.8,1]", "lossless (clean) score", "meets targets"], rows))
        emit("\nPer QF bin (true QF/100; bias = mean(pred - true)):\n")
        emit(md_table(["model", "QF bin", "n", "MAE", "bias", "within +-0.02"], bins_rows))
        fig_pairs(pairs, out / "pairs.png")
        emit("\n![pair values](pairs.png)\n")

    if 2 in sections or 4 in sections:
        emit("## 2. Generalisation to blur, noise, salt-and-pepper (held-out images)\n")
        rows = []
        for kind in ("rgb", "gray"):
            gen = {}
            for m in models[kind]:
                g = generalisation(m, images[kind])
                gen[m.name] = g
                results.setdefault("generalisation", {})[m.name] = g
                for d in ("blur", "noise", "salt"):
                    c = np.array(g[d]["curves"])
                    rows.append([m.name, d, len(c), f"{g[d]['median_spearman']:+.3f}",
                                 f"{min(g[d]['spearman']):+.3f}", " ".join(f"{v:.3f}" for v in c.mean(0))])
            if gen:
                fig_curves(gen, out / f"generalisation-{kind}.png", f"{kind} model on {heldout_desc[kind]}")
        emit(md_table(["model", "distortion", "images", "median Spearman", "worst image",
                       "mean QF at levels " + "; ".join(f"{k}: {LEVELS[k]}" for k in LEVELS)], rows))
        emit("\n![rgb](generalisation-rgb.png)\n![gray](generalisation-gray.png)\n")

    if 3 in sections:
        emit("## 3. Dataset quality (mean +- std predicted QF; RGB model, and gray model on luma)\n")
        rgbm = models["rgb"][0] if models["rgb"] else None
        graym = models["gray"][0] if models["gray"] else None
        rows = []
        use = {"Kodak24": "train 15 / val 3 / test 6", "CBSD68": "not used", "BSD100": "not used",
               "Set5": "not used", "Set14": "not used"}
        sets = ("Kodak24", "CBSD68", "BSD100", "Set5", "Set14")
        folders = [(f, sorted((DATA / "rgb" / f).glob("*.png"))) for f in sets]
        folders.append(("Kodak24 test only", [DATA / "rgb" / "Kodak24" / f"{n}.png" for n in KODAK_TEST]))
        folders.append(("scikit-image photos", [skimage_data_dir() / f"{n}.png" for n in SKIMAGE_TRAIN]))
        use["Kodak24 test only"] = "held out"
        use["scikit-image photos"] = "train"
        for name, files in folders:
            units = [to_unit_range(read_images(f)[0].image, "photo") for f in files]
            units = [u[..., :3] if u.ndim == 3 else u for u in units]
            sr = np.array([rgbm.score(u) for u in units] if rgbm else [np.nan])
            sg = np.array([graym.score(u) for u in units] if graym else [np.nan])
            bk = np.array([blockiness(u) for u in units])
            rows.append([name, len(units), use[name], f"{sr.mean():.4f} +- {sr.std():.3f}",
                         f"{sg.mean():.4f} +- {sg.std():.3f}", f"{np.median(bk):.3f}", int((bk > 1.05).sum())])
            results.setdefault("datasets", {})[name] = {"rgb": sr.tolist(), "gray": sg.tolist(),
                                                        "blockiness": bk.tolist()}
        emit(md_table(["folder", "n", "training use", "qf-rgb", "qf-gray (luma)", "blockiness median",
                       "images with blockiness > 1.05"], rows))
        emit("\nblockiness = mean |horizontal/vertical pixel step| across 8x8 block boundaries / elsewhere "
             "(1.0 = no grid; JPEG QF 75 gives about 1.13, QF 50 about 1.29 on kodim01).\n")

    if 4 in sections and models["gray"]:
        emit("## 4. Grayscale model on MRI volumes (clean, whole slices vs head crop)\n")
        graym = models["gray"][0]
        rows = []
        vols = [("trio-mprage-t1 (train, acquired)", DATA / "mri/volumes/trio-mprage-t1"),
                ("MNI152 2009a (validation)",
                 DATA / "mri/volumes/pypi-bundled/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),
                ("Colin27 ch2 (test)", DATA / "mri/volumes/colin27/ch2.nii.gz"),
                ("Colin27 ch2better (test, denoised)", DATA / "mri/volumes/colin27/ch2better.nii.gz")]
        for name, p in vols:
            crop = [graym.score(u) for _, u in mri_slices(p, crop=True)]
            full = [graym.score(u) for _, u in mri_slices(p, crop=False)]
            rows.append([name, len(crop), f"{np.mean(crop):.4f} +- {np.std(crop):.3f}",
                         f"{np.mean(full):.4f} +- {np.std(full):.3f}"])
        emit(md_table(["volume", "slices", "QF (head crop)", "QF (whole slice, mean of map)"], rows))
        emit("\nQF vs JPEG QF / noise / blur for the gray model: the `qf-gray` rows of sections 1 and 2.\n")

    if 5 in sections:
        emit("## 5. Shift robustness (std of the score over 64 one-pixel shifts; JPEG QF 50, 80, 95)\n")
        rows = []
        for kind in ("rgb", "gray"):
            for m in models[kind]:
                r = shift_std(m, images[kind][:4] if kind == "rgb" else images[kind][:6],
                              size=192 if kind == "rgb" else 112)
                acc = results.get("accuracy", {}).get(m.name)
                results.setdefault("shift", {})[m.name] = r
                rows.append([m.name, "yes" if m.net.blurpool else "no", f"{r['median_std']:.4f}",
                             f"{r['mean_std']:.4f}", f"{r['mae']:.4f}",
                             f"{acc['mae_30_100']:.4f}" if acc else "-"])
        emit(md_table(["model", "blurpool", "median std over shifts", "mean std", "MAE of shift-mean",
                       "held-out MAE [0.3,1]"], rows))

    emit(f"\n_eval_qf.py: {time.time() - t0:.0f} s on CPU, torch {torch.__version__}_")
    name = "README-eval.md" if sections == {1, 2, 3, 4, 5} else f"eval-{'-'.join(map(str, sorted(sections)))}.md"
    (out / name).write_text("\n".join(report) + "\n")
    slim = {k: v for k, v in results.items() if k != "accuracy"}
    slim["accuracy"] = {k: {kk: vv for kk, vv in v.items() if kk != "rows"}
                        for k, v in results.get("accuracy", {}).items()}
    (out / name.replace(".md", ".json")).write_text(json.dumps(slim, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

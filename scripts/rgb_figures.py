#!/usr/bin/env python
"""The RGB figures of the QF paper, with our models: one sub-command per figure, output in docs/rgb/.

    .venv/bin/python scripts/rgb_figures.py generalisation     # paper Fig. 12 (RGB): blur, noise, salt & pepper
    .venv/bin/python scripts/rgb_figures.py dataset-quality    # paper Table 1: mean QF of each photo set
    .venv/bin/python scripts/rgb_figures.py artifact-removal   # paper Figs. 16-17 (RGB): AR-CNN + QF loss

- ``generalisation``: the RGB QF predictor (``mriqa/weights/qf-rgb.safetensors``) and, beside it, QAIRN's Q2
  (``mriqa/weights/qairn.safetensors``) on the held-out Kodak24 images (kodim04, 08, 12, 16, 20, 24) degraded by
  Gaussian blur, Gaussian noise and salt-and-pepper at the levels of ``scripts/eval_qf.py``
  (:func:`mriqa.evaluation.qf.generalisation` / ``fig_curves``): mean +- std curves, per-image Spearman of
  the score with the severity (median and worst). -> ``generalisation.png``, ``generalisation.md``.
- ``dataset-quality``: every folder of ``../shared/data/rgb`` and the scikit-image photos: mean +- std of the
  QF (rgb model, whole-image mean of the QF map) and of QAIRN's Q2, and the median 8 x 8 blockiness index
  (:func:`mriqa.evaluation.qf.blockiness`). -> ``dataset-quality.png``, ``dataset-quality.md``.
- ``artifact-removal``: the held-out Kodak24 images (central crop) at JPEG QF 10 and 20 through the AR-CNNs
  trained reference-free with L1 consistency + w x QF loss (``runs/ar-rgb-w{0,0.1,1,10}``, see
  ``mriqa/train_ar.py``) and through QAIRN (supervised, for scale): PSNR, SSIM, QF, L1 to input and the
  artifact indicators of ``scripts/eval_ar.py`` (:mod:`mriqa.evaluation.restoration`).
  -> ``artifact-removal.png``, ``artifact-removal.md``.

Every table is printed and written by the script (deterministic: fixed images, levels and seeds).
``--max-images`` / ``--crop`` / ``--folders`` make small runs (tests).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mriqa.evaluation.heldout import DATA, KODAK_TEST, SKIMAGE_TRAIN, grid_crop, kodak
from mriqa.evaluation.qf import LEVELS, QFModel, blockiness, fig_curves, generalisation
from mriqa.evaluation.restoration import evaluate, example_figure, load_models, results_table
from mriqa.evaluation.tables import md_table, publish
from mriqa.normalize import to_unit_range
from mriqa.qf_data import skimage_data_dir
from recon.files import atomic_path
from recon.io.images import read_images

REPO = Path(__file__).resolve().parents[1]
QF_RGB = REPO / "mriqa/weights/qf-rgb.safetensors"
QAIRN = REPO / "mriqa/weights/qairn.safetensors"
RGB_SETS = ("Kodak24", "CBSD68", "BSD100", "Set5", "Set14")


class QAIRNScorer:
    """QAIRN as a scorer (``score(unit [H, W, 3] in [0, 1]) -> Q2``) and a restorer (``restore(img) -> img``)."""

    def __init__(self, path: Path):
        from mriqa.models.qairn import load_qairn

        self.name = "QAIRN Q2"
        self.net, self.meta = load_qairn(path, device="cpu")

    def score(self, unit: np.ndarray) -> float:
        from mriqa.models.qairn import run_qairn

        return float(run_qairn(self.net, unit, restore=False)[1][1])

    def restore(self, img: np.ndarray) -> np.ndarray:
        from mriqa.models.qairn import run_qairn

        return run_qairn(self.net, img)[0]


def scorers(args) -> list:
    """The RGB QF model, plus QAIRN when its weights exist (``--qairn none`` leaves it out)."""
    out = [QFModel("qf-rgb", Path(args.qf))]
    if args.qairn != "none" and Path(args.qairn).is_file():
        out.append(QAIRNScorer(Path(args.qairn)))
    elif args.qairn != "none":
        print(f"rgb_figures: {args.qairn} not found; QAIRN left out", file=sys.stderr)
    return out


def held_out(args) -> list[tuple[str, np.ndarray]]:
    imgs = [(n, grid_crop(u, args.crop)) for n, u in kodak(KODAK_TEST)]
    return imgs[: args.max_images] if args.max_images else imgs


def write(out: Path, name: str, lines: list[str]) -> str:
    return publish("\n".join(lines), out / f"{name}.md")


# ----------------------------------------------------------------------------------------------- figures
def cmd_generalisation(args, out: Path) -> str:
    images = held_out(args)
    gen, rows = {}, []
    for m in scorers(args):
        g = generalisation(m, images)
        gen[m.name] = g
        for d in LEVELS:
            c = np.array(g[d]["curves"])
            rows.append([m.name, d, len(c), f"{g[d]['median_spearman']:+.3f}", f"{min(g[d]['spearman']):+.3f}",
                         " ".join(f"{v:.3f}" for v in c.mean(0))])
    desc = f"Kodak24 {', '.join(n for n, _ in images)}" + (f", central {args.crop} px" if args.crop else "")
    fig_curves(gen, out / "generalisation.png", f"RGB generalisation on {desc}")
    return write(out, "generalisation", [
        "# Generalisation of the RGB quality scores to blur, noise, salt-and-pepper (paper Fig. 12, RGB)\n",
        f"Printed by `python scripts/rgb_figures.py generalisation`; held-out images: {desc}. Score = mean of the "
        "QF map (qf-rgb) or QAIRN's Q2; a score that tracks quality falls with every severity (Spearman < 0).\n",
        md_table(["model", "distortion", "images", "median Spearman", "worst image",
                  "mean score at levels " + "; ".join(f"{k}: {v}" for k, v in LEVELS.items())], rows),
        "\n![generalisation](generalisation.png)"])


def photo_sets(args) -> list[tuple[str, list[Path]]]:
    if args.folders:
        return [(Path(f).name, sorted(Path(f).glob("*.png"))) for f in args.folders.split(",")]
    sets = [(f, sorted((DATA / "rgb" / f).glob("*.png"))) for f in RGB_SETS]
    sets.append(("Kodak24 test only", [DATA / "rgb" / "Kodak24" / f"{n}.png" for n in KODAK_TEST]))
    sets.append(("scikit-image photos", [skimage_data_dir() / f"{n}.png" for n in SKIMAGE_TRAIN]))
    return sets


def cmd_dataset_quality(args, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = scorers(args)
    rows, bars = [], {m.name: [] for m in models}
    names = []
    for name, files in photo_sets(args):
        files = files[: args.max_images] if args.max_images else files
        units = [to_unit_range(read_images(f)[0].image, "photo") for f in files]
        units = [u[..., :3] if u.ndim == 3 else np.repeat(u[..., None], 3, axis=-1) for u in units]
        row = [name, len(units)]
        for m in models:
            s = np.array([m.score(u) for u in units])
            bars[m.name].append((s.mean(), s.std()))
            row.append(f"{s.mean():.4f} +- {s.std():.3f}")
        bk = np.array([blockiness(u) for u in units])
        rows.append(row + [f"{np.median(bk):.3f}", int((bk > 1.05).sum())])
        names.append(name)
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 3.2), dpi=80)
    x = np.arange(len(names))
    for j, (mn, v) in enumerate(bars.items()):
        v = np.array(v)
        ax.bar(x + (j - (len(bars) - 1) / 2) * 0.38, v[:, 0], 0.36, yerr=v[:, 1], capsize=2, label=mn)
    ax.set_xticks(x, names, rotation=20, fontsize=7)
    ax.set_ylabel("mean score (1 = pristine)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out / "dataset-quality.png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return write(out, "dataset-quality", [
        "# Dataset quality: mean +- std score of each photo set (paper Table 1, RGB)\n",
        "Printed by `python scripts/rgb_figures.py dataset-quality`. blockiness = mean |pixel step| across 8x8 "
        "block boundaries / elsewhere (1.0 = no grid; scripts/eval_qf.py).\n",
        md_table(["folder", "n"] + [m.name for m in models] + ["blockiness median", "blockiness > 1.05"], rows),
        "\n![dataset quality](dataset-quality.png)"])


def cmd_artifact_removal(args, out: Path) -> str:
    models = load_models("rgb", Path(args.runs))
    if not models:  # writing the table without them would silently drop the rows the figure is about
        raise SystemExit(f"rgb_figures: error: no AR-CNN runs (ar-rgb-w*) under {args.runs}; train them first: "
                         "mriqa train-ar --config configs/ar-rgb.yaml (and -w0.1, -w1, -w10)")
    if args.qairn != "none" and Path(args.qairn).is_file():
        models["QAIRN (supervised)"] = QAIRNScorer(Path(args.qairn)).restore
    images = held_out(args)
    lines = ["# RGB artifact removal with the QF loss (paper Figs. 16-17, RGB)\n",
             "Printed by `python scripts/rgb_figures.py artifact-removal`: AR-CNNs trained reference-free with "
             "L1(output, JPEG input) + w * (1 - QF) (mriqa/train_ar.py, configs/ar-rgb*.yaml), QAIRN (trained "
             "with clean targets) for scale; definitions in scripts/eval_ar.py.\n"]
    for qf in (10, 20):
        lines += [f"## JPEG QF {qf}, {len(images)} held-out Kodak24 images"
                  + (f" (central {args.crop} px)" if args.crop else "") + "\n",
                  results_table(evaluate("rgb", models, images, qf), "rgb"), ""]
    example_figure("rgb", models, images[0][1], 10, out / "artifact-removal.png",
                   title=f"{images[0][0]}, JPEG QF 10: outputs (top) and 8 x |output - input| (bottom)")
    lines.append("![artifact removal](artifact-removal.png)")
    return write(out, "artifact-removal", lines)


COMMANDS = {"generalisation": cmd_generalisation, "dataset-quality": cmd_dataset_quality,
            "artifact-removal": cmd_artifact_removal}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("figure", choices=sorted(COMMANDS))
    ap.add_argument("--out", default=str(REPO / "docs/rgb"))
    ap.add_argument("--qf", default=str(QF_RGB), help="RGB QF predictor weights")
    ap.add_argument("--qairn", default=str(QAIRN), help="QAIRN weights, or 'none'")
    ap.add_argument("--runs", default=str(REPO / "runs"), help="folder with the ar-rgb-w<w>/ runs")
    ap.add_argument("--crop", type=int, default=None, help="central crop of the held-out images (pixels)")
    ap.add_argument("--max-images", type=int, default=None, help="first N images of each set (quick runs)")
    ap.add_argument("--folders", default=None, help="comma-separated PNG folders for dataset-quality")
    args = ap.parse_args(argv)
    if args.figure == "artifact-removal" and args.crop is None:
        args.crop = 256
    if not Path(args.qf).is_file():
        print(f"rgb_figures: error: QF weights {args.qf} not found", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    COMMANDS[args.figure](args, out)
    print(f"_rgb_figures.py {args.figure}: {time.time() - t0:.0f} s on CPU_")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

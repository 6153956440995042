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

Everything is deterministic (fixed seeds, fixed image lists). Runs on CPU in a few minutes. The measurements
are :mod:`mriqa.evaluation.qf`, the held-out images :mod:`mriqa.evaluation.heldout`; all five sections
regenerate ``docs/qf/README-eval.md`` / ``.json`` and the figures ``docs/qf/pairs.png``,
``docs/qf/generalisation-{rgb,gray}.png``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mriqa.evaluation.heldout import COLIN27, DATA, KODAK_TEST, SKIMAGE_TRAIN, kodak, mri_slices
from mriqa.evaluation.qf import (LEVELS, QFModel, accuracy_rows, blockiness, fig_curves, fig_pairs,
                                 generalisation, shift_std, summarize_accuracy)
from mriqa.evaluation.tables import md_table
from mriqa.normalize import to_unit_range
from mriqa.qf_data import skimage_data_dir
from recon.io.images import read_images

REPO = Path(__file__).resolve().parents[1]


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
            models[kind].append(QFModel(f"qf-{kind}", path))
        else:
            print(f"eval_qf: {path} not found; skipping the {kind} model", file=sys.stderr)
    for item in args.compare:
        name, rest = item.split("=", 1)
        path, kind = rest.rsplit(":", 1)
        models[kind].append(QFModel(name, Path(path)))

    images = {
        "rgb": kodak(KODAK_TEST),
        "gray": mri_slices(COLIN27, name="colin27"),
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

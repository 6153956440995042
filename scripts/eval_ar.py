#!/usr/bin/env python
"""Evaluate the artifact-removal networks trained with the QF loss (QF paper Figs. 16-17) on held-out images.

For each kind (RGB: JPEG QF 10 and 20 on Kodak24 test crops; gray: zero-filled MRI at R = 4 on Colin27 slices)
prints, per AR-CNN of every QF weight w (``runs/ar-<kind>-w<w>``, ``mriqa.train_ar``; w = 0 is the L1-only
model) and for the input: PSNR, SSIM, QF, L1 to the input, the 99.9th percentile of the change and (RGB) the
chroma shift. Definitions and data: :mod:`mriqa.evaluation.restoration`. Regenerates ``docs/ar/README.md``,
``docs/ar/results.json`` and ``docs/ar/examples-{rgb,gray}.png``::

    .venv/bin/python scripts/eval_ar.py --notes docs/ar/notes.md
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from mriqa.evaluation.restoration import SETTINGS, evaluate, example_figure, load_models, results_table, test_images
from recon.files import atomic_path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=str(REPO / "runs"), help="folder with the ar-<kind>-w<w>/ runs")
    ap.add_argument("--kinds", default="rgb,gray")
    ap.add_argument("--crop", type=int, default=256, help="central crop of the RGB test images (pixels)")
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--out", default=str(REPO / "docs/ar"))
    ap.add_argument("--notes", default=None, help="a markdown file appended verbatim (interpretation)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    report, results = ["# Artifact removal with the QF loss (QF paper Figs. 16-17)\n",
                       "Printed by `python scripts/eval_ar.py` (held-out images; see the script's docstring for "
                       "every definition).\n"], {}
    for kind in args.kinds.split(","):
        models = load_models(kind, Path(args.runs))
        images = test_images(kind, args.crop, args.max_images)
        name, settings = SETTINGS[kind]
        for s in settings:
            rows = evaluate(kind, models, images, s)
            results[f"{kind}@{s}"] = rows
            report += [f"## {kind}: {name} {s:g}, {len(images)} held-out images\n", results_table(rows, kind), ""]
        fig = out / f"examples-{kind}.png"
        example_figure(kind, models, images[0][1], settings[0], fig,
                       title=f"{kind}: {images[0][0]}, {name} {settings[0]:g}")
        report.append(f"![{kind} examples]({fig.name})\n")
    if args.notes:
        report.append(Path(args.notes).read_text())
    report.append(f"_eval_ar.py: {time.time() - t0:.0f} s on CPU, torch {torch.__version__}_")
    text = "\n".join(report) + "\n"
    print(text)
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(text)
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

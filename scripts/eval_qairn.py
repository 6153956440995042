#!/usr/bin/env python
"""Evaluate QAIRN on held-out images: restoration (paper Table I) and the proxy quality correlations.

    .venv/bin/python scripts/eval_qairn.py                                   # shipped weights, Kodak24 test
    .venv/bin/python scripts/eval_qairn.py --weights runs/qairn/best.safetensors --json runs/qairn/eval.json \
        --card mriqa/weights/qairn.md

1. Restoration (paper Table I format): each held-out image is JPEG-compressed (Pillow, 4:2:0) at QF 10, 20,
   30, 40 and restored; PSNR, SSIM and PSNR-B of the JPEG input and of the restoration against the original,
   averaged over the images, and the gain. PSNR: RGB, data range 1. SSIM: scikit-image, Gaussian window
   sigma 1.5, mean over the RGB channels (as FBCNN's colour evaluation). PSNR-B (Yim & Bovik 2011): per
   channel ``10 log10(1 / (MSE + BEF))``, BEF = blocking effect factor of the image under test (8 x 8 grid,
   ``eta = log2(8) / log2(min(H, W))``, 0 when boundary differences do not exceed the others), averaged over
   channels. Images are used whole (Kodak24 crops are 500 x 500; the JPEG grid starts at the top-left corner).
2. Proxy correlations: each held-out image degraded by JPEG (QF 5..95), Gaussian blur (sigma 0.5..4 px) and
   additive white Gaussian noise (sigma 0.01..0.12 in [0, 1] units, seeded), each re-quantised to 8 bits;
   Spearman of Q1, Q2, Q3 with the JPEG QF (expected positive) and with the blur / noise sigma (expected
   negative if Q tracks quality; the paper's Table III found the opposite sign for noise), pooled over all
   images and as the mean of the per-image coefficients.

The evaluation itself is :mod:`mriqa.evaluation.qairn` (metrics: :mod:`mriqa.evaluation.photo_metrics`).
Acceptance (issue 7): PSNR gain at QF 10 >= 1.5 dB; pooled Spearman(Q2, JPEG QF) >= 0.85. Printed with the
tables; ``--json`` writes every number, ``--card`` a markdown model card (training metadata + these results),
``--doc`` the printed text as markdown, both followed by ``--notes``. ``--render JSON`` rewrites the card and the
doc from a previous run's ``--json`` without evaluating again (minutes saved when only the notes changed).
Held-out list default: ``data.held_out`` of ``configs/qairn.yaml`` (Kodak24 kodim04, 08, 12, 16, 20, 24).
Regenerates ``docs/qairn/README.md`` and ``mriqa/weights/qairn.md``::

    .venv/bin/python scripts/eval_qairn.py --self-ensemble --json EVAL.json --doc docs/qairn/README.md \
        --card mriqa/weights/qairn.md --notes docs/qairn/notes.md
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from mriqa.evaluation.qairn import TABLE_QFS, evaluate, model_card, pooling_line, report
from recon.errors import InputError
from recon.files import atomic_path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    cfg = yaml.safe_load((REPO / "configs" / "qairn.yaml").read_text())
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default=None,
                   help="QAIRN weights (default: the shipped mriqa/weights/qairn.safetensors)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "rgb" / "Kodak24"), help="image folder")
    p.add_argument("--images", default=",".join(cfg["data"]["held_out"]), help="comma-separated held-out names")
    p.add_argument("--qfs", default=",".join(map(str, TABLE_QFS)), help="Table I quality factors")
    p.add_argument("--crop", type=int, default=None, help="central crop (pixels) for a quick run")
    p.add_argument("--skip-proxy", action="store_true", help="restoration table only")
    p.add_argument("--self-ensemble", action="store_true",
                   help="also print Table I for the x8 geometric self-ensemble (mriqa restore --self-ensemble); "
                        "the acceptance line stays on the single pass")
    p.add_argument("--device", default=None)
    p.add_argument("--json", default=None, help="write all numbers here")
    p.add_argument("--card", default=None, help="write a markdown model card here")
    p.add_argument("--doc", default=None, help="write everything printed here as markdown (docs/qairn/README.md)")
    p.add_argument("--notes", default=None, help="a markdown file appended verbatim to --doc and --card")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="no evaluation: rewrite --doc / --card from the numbers a previous run wrote with --json "
                        "(e.g. after editing --notes)")
    args = p.parse_args(argv)
    from mriqa.models.qairn import load_qairn, resolve_qairn_weights
    from recon.io.weights import load_weights

    try:
        if args.render:
            rendered = json.loads(Path(args.render).read_text()) if Path(args.render).is_file() else None
            if rendered is None or "restoration" not in rendered:
                raise InputError(args.render, "not an evaluation written by eval_qairn.py --json")
            args.weights, args.self_ensemble = rendered.get("weights_arg"), bool(rendered["restoration_self_ensemble"])
            weights = resolve_qairn_weights(rendered["weights"])
            doc, meta = rendered, load_weights(weights)[1]
        else:
            weights = resolve_qairn_weights(args.weights)
            model, meta = load_qairn(weights, device=args.device)
            doc = evaluate(model, meta, weights, data=Path(args.data),
                           names=[n.strip() for n in args.images.split(",") if n.strip()], crop=args.crop,
                           qfs=[int(q) for q in args.qfs.split(",")], self_ensemble=args.self_ensemble,
                           skip_proxy=args.skip_proxy, weights_arg=args.weights)
    except InputError as exc:
        print(f"eval_qairn: {exc}", file=sys.stderr)
        return 2
    printed, t1, t3 = report(doc)
    print("\n".join(printed))
    if args.json and not args.render:
        with atomic_path(args.json, suffix=".json") as tmp:
            tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    if args.card:
        with atomic_path(args.card, suffix=".md") as tmp:
            tmp.write_text(model_card(meta, weights, doc, t1, t3, Path(args.notes).read_text() if args.notes else ""))
    if args.doc:
        tr = meta.get("training") or {}
        flags = (" --weights " + args.weights if args.weights else "")
        flags += " --self-ensemble" if args.self_ensemble else ""
        head = [f"Printed by `python scripts/eval_qairn.py{flags}` "
                f"({tr.get('config', {}).get('name')}, {doc['n_parameters']:,} "
                f"parameters, config `{json.dumps(meta.get('config'))}`, {tr.get('steps_done')} training steps, "
                f"weights of step {tr.get('best_step')}).\n"]
        if pooling_line(meta):
            head.append(pooling_line(meta)[2:] + "\n")
        tail = [Path(args.notes).read_text()] if args.notes else []
        with atomic_path(args.doc, suffix=".md") as tmp:
            tmp.write_text("\n".join(head + printed + tail) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

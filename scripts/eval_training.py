"""Evaluate the training modes of issue 6 on held-out volumes: PSNR, SSIM, NMSE, QF and k-space residual.

Prints a markdown table (``--out FILE`` also writes it) with one row per method and R: every mode whose weights
exist (``runs/<run>/final.safetensors`` for the runs of ``MODES``; supervised falls back to the shipped
``recon/weights/modl.safetensors``; ``--run MODE=PATH`` overrides), the baselines (reference, zero-filled,
CG-SENSE) and, with DC-only, the untrained MoDL it starts from; then the verdict lines of issue 6 (DC-only
against its starting point, SSDU + QF's SSIM against SSDU-only's and its PSNR against supervised, per R), the
weights used and the modes without weights. Default data: the test split of ``data/sim128`` (Colin27, never
seen in training or validation), R 4 and 8, one random mask per volume. Every definition (metrics, in-support
pixels, QF pooling, DC residual) is in :mod:`mriqa.evaluation.training_modes`. Regenerates
``docs/recon/training_eval.md`` and ``docs/recon/training_eval.png``::

    python scripts/eval_training.py --max-slices 12 --out docs/recon/training_eval.md \
        --figure docs/recon/training_eval.png
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import shlex
import sys
from pathlib import Path

from mriqa.evaluation.tables import publish
from mriqa.evaluation.training_modes import EvalSettings, averages, checks, evaluate, figure

REPO = Path(__file__).resolve().parents[1]


def _rel(path) -> str:
    """``path`` relative to the repository when it lies inside it (tables stay machine-independent)."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(REPO / "data/sim128"))
    p.add_argument("--split", default="multicoil_test")
    p.add_argument("--runs", default=str(REPO / "runs"), help="folder of the run folders")
    p.add_argument("--run", action="append", default=[], help="MODE=PATH: weights of a mode (repeatable)")
    p.add_argument("--accels", type=float, nargs="+", default=[4.0, 8.0])
    p.add_argument("--mask", default="random")
    p.add_argument("--max-slices", type=int, default=None)
    p.add_argument("--calib-width", type=int, default=24)
    p.add_argument("--qf-pool", default="foreground", choices=["mean", "foreground"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument("--modes", nargs="+", default=None, help="evaluate only these modes (default: all)")
    p.add_argument("--out", default=None, help="also write the table here")
    p.add_argument("--figure", default=None,
                   help="also write a PNG here: the middle evaluated slice of the first volume, every method, each R")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def settings(args) -> EvalSettings:
    """The evaluation the options ask for."""
    return EvalSettings(data=args.data, split=args.split, runs=args.runs,
                        run=dict(item.split("=", 1) for item in args.run), modes=args.modes, accels=args.accels,
                        mask=args.mask, max_slices=args.max_slices, calib_width=args.calib_width,
                        qf_pool=args.qf_pool, seed=args.seed, baselines=not args.no_baselines)


def main(argv=None) -> str:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows, weights, missing, examples = evaluate(settings(args))
    files = sorted((Path(args.data) / args.split).glob("*.h5"))
    lines = [f"Held-out: {len(files)} volumes of {_rel(Path(args.data) / args.split)}, "
             f"{'all' if args.max_slices is None else args.max_slices} slices each, {args.mask} masks; "
             f"QF = gray predictor, {args.qf_pool} pooling, x 100; recon = the reconstruction-quality score "
             f"(--model recon), mean pooling, x 100", "",
             "| method | R | PSNR (dB) | SSIM | NMSE | PSNR in support | SSIM in support | QF | recon | DC residual |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    avg_all = averages(rows)
    for (name, r), avg in avg_all.items():
        dc = "—" if avg["DC"] is None else f"{avg['DC']:.2e}"
        lines.append(f"| {name} | {r:g} | {avg['PSNR']:.2f} | {avg['SSIM']:.4f} | {avg['NMSE']:.4f} | "
                     f"{avg['PSNR_in']:.2f} | {avg['SSIM_in']:.4f} | {avg['QF']:.1f} | {avg['RQ']:.1f} | {dc} |")
    lines += ["", "Checks (issues 6 and 20):"] + (checks(avg_all) or ["- (no mode pair to compare)"])
    lines.append("")
    lines.append("weights: " + (", ".join(f"{m} = {_rel(p)}" for m, p in weights.items()) or "none"))
    lines.append("missing (not trained yet): " + (", ".join(missing) or "none"))
    if args.figure:
        figure(args.figure, examples)
        lines.append(f"figure: {_rel(args.figure)}")
    command = "python scripts/eval_training.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    return publish("\n".join(lines), args.out, command=command)


if __name__ == "__main__":
    main()

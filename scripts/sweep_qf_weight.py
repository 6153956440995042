"""Sweep the weight of the QF term: a short training per weight, then PSNR / SSIM / NMSE / QF / DC residual on
the validation split (never the test split: the weight is a hyper-parameter), tabulated.

    python scripts/sweep_qf_weight.py --config configs/modl-dc-qf.yaml --weights 0 0.003 0.01 0.03 0.1 \\
        --k1-steps 100 --k-steps 100 --max-slices 6

Each weight trains from the same seed and data order (``--config`` with ``train.qf_weight`` replaced and the
schedule shortened to ``--k1-steps`` at K = 1 and ``--k-steps`` at the config's last K) into
``<out>/w<weight>`` (resumable: rerunning continues unfinished runs and reuses finished ones), then
``scripts/eval_training.py``'s evaluation (:mod:`mriqa.evaluation.training_modes`) runs on ``--split`` (default
``multicoil_val``) at ``--accels``.
Weight 0 is the DC-only (or SSDU-only) baseline of the same schedule. Watch QF rising while PSNR/SSIM fall:
the paper's warning (section 5.3) that an unbalanced QF term invents structure. Prints a markdown table
(``--table FILE`` also writes it).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(REPO / "configs/modl-dc-qf.yaml"))
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.003, 0.01, 0.03, 0.1])
    p.add_argument("--k1-steps", type=int, default=100, help="steps at K = 1 (0: none)")
    p.add_argument("--k-steps", type=int, default=100, help="steps at the config's final K")
    p.add_argument("--out", default=str(REPO / "runs/sweep-qf"), help="folder of the per-weight runs")
    p.add_argument("--init", default=None,
                   help="start every weight from these weights (e.g. a finished reference-free run's "
                        "final.safetensors) instead of the config's init; fine-tuning sweeps")
    p.add_argument("--lr", type=float, default=None, help="learning rate of the final stage (default: the config's)")
    p.add_argument("--data", default=None, help="evaluation dataset (default: the config's data.root)")
    p.add_argument("--split", default="multicoil_val")
    p.add_argument("--accels", type=float, nargs="+", default=[4.0, 8.0])
    p.add_argument("--max-slices", type=int, default=6)
    p.add_argument("--table", default=None, help="also write the table here")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    from mriqa.evaluation.tables import publish
    from mriqa.evaluation.training_modes import EvalSettings, averages, evaluate
    from recon.train import Trainer, load_config

    base = load_config(args.config)
    mode = base["train"]["mode"]
    if not mode.endswith("+qf"):
        raise SystemExit(f"{args.config}: train.mode is {mode!r}; the sweep needs a '+qf' mode")
    k_final = int(base["train"]["stages"][-1]["num_unrolls"])
    final_lr = args.lr or base["train"]["stages"][-1].get("lr", base["train"]["lr"])
    stages = ([{"num_unrolls": 1, "steps": args.k1_steps}] if args.k1_steps else []) + \
             [{"num_unrolls": k_final, "steps": args.k_steps, "lr": final_lr}]
    results = {}
    for w in args.weights:
        cfg = load_config(args.config)
        cfg["train"]["qf_weight"] = float(w)
        cfg["train"]["stages"] = stages
        cfg["name"] = f"{cfg['name']}-w{w:g}"
        cfg["out_dir"] = str(Path(args.out) / f"w{w:g}")
        cfg["export"] = None
        if args.init:
            cfg["init"] = args.init
        trainer = Trainer(cfg, progress=not args.no_progress)
        trainer.run()
        ev = EvalSettings(data=args.data or cfg["data"]["root"], split=args.split, modes=[mode],
                          run={mode: str(trainer.out_dir / "final.safetensors")}, baselines=False,
                          max_slices=args.max_slices, accels=list(args.accels))
        results[w] = averages(evaluate(ev)[0])
    start = f"from {args.init}" if args.init else "from the config's init"
    lines = [f"QF-weight sweep: {args.config} (mode {mode}), {start}, K=1 x {args.k1_steps} + K={k_final} x "
             f"{args.k_steps} steps at lr {final_lr:g} per weight; evaluated on {args.split}, "
             f"{args.max_slices} slices per volume", "",
             "| QF weight | R | PSNR (dB) | SSIM | NMSE | QF | DC residual |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for w, avg in results.items():
        for (_, r), m in avg.items():
            lines.append(f"| {w:g} | {r:g} | {m['PSNR']:.2f} | {m['SSIM']:.4f} | {m['NMSE']:.4f} | {m['QF']:.1f} | "
                         f"{m['DC']:.2e} |")
    return publish("\n".join(lines), args.table)


if __name__ == "__main__":
    main()

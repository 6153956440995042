"""``mriqa train-recon``: train MoDL on simulated (or fastMRI) multi-coil h5 data from a YAML config."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-recon",
        help="train MoDL or VarNet from a YAML config: supervised, dc, ssdu, dc+qf or ssdu+qf (resumable)",
        description="Train MoDL (recon.modl) on fully sampled multi-coil fastMRI h5 files, with masks drawn per "
                    "sample over a range of R. Stages (e.g. K = 1 warm start, then K = 10), loss, data and "
                    "checkpointing are set in the config (see configs/modl-cpu.yaml and recon/train.py). "
                    "Rerunning with the same out_dir resumes from its last checkpoint.",
    )
    p.add_argument("--config", required=True, help="YAML config (e.g. configs/modl-cpu.yaml)")
    p.add_argument("--out-dir", default=None, help="run folder (default: out_dir in the config)")
    p.add_argument("--export", default=None,
                   help="also write the final weights here (default: export in the config, if any)")
    p.add_argument("--device", default=None, help="torch device (default: the config's; auto = cuda if present)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="train at most this many more steps, then checkpoint and stop (resume later)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recon.train import Trainer, load_config

    config = load_config(args.config)
    if args.out_dir:
        config["out_dir"] = args.out_dir
    if args.export:
        config["export"] = args.export
    if args.device:
        config["train"]["device"] = args.device
    trainer = Trainer(config, progress=not args.no_progress)
    history = trainer.run(stop_after=args.stop_after)
    last = history["val"][-1] if history["val"] else {}
    scores = " ".join(f"{k}={v:.4f}" for k, v in last.items() if k.startswith(("psnr", "ssim")))
    done = trainer.step >= trainer.total_steps
    print(f"{config['name']}: step {trainer.step}/{trainer.total_steps} "
          f"({'done' if done else 'stopped; rerun to resume'}) -> {trainer.out_dir}" + (f"; val {scores}" if scores else ""))
    if done and config.get("export"):
        print(f"weights: {config['export']}")
    return 0

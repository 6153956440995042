"""``mriqa train-recon``: train MoDL or VarNet on simulated (or fastMRI) multi-coil h5 data from a YAML config."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-recon",
        help="train MoDL or VarNet from a YAML config: supervised, dc, ssdu, dc+qf or ssdu+qf (resumable)",
        description="Train MoDL (recon.modl) or VarNet on fully sampled multi-coil fastMRI h5 files, with masks "
                    "drawn per sample over a range of R. Stages (e.g. K = 1 warm start, then K = 10), loss, data "
                    "and checkpointing are set in the config (see configs/modl-cpu.yaml and "
                    "recon/training/recon_config.py). Rerunning with the same out_dir resumes from its last "
                    "checkpoint; Ctrl-C checkpoints first. The +qf modes use the config's train.qf_loss, or the "
                    "gray QF predictor's QFLoss when it names none.",
    )
    p.add_argument("--config", required=True, help="YAML config (e.g. configs/modl-cpu.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.stages.0.steps=10 --set train.qf_weight=0.02")
    p.add_argument("--output-dir", "--out-dir", dest="out_dir", default=None,
                   help="run folder (default: out_dir in the config); the same flag as the other train-* commands")
    p.add_argument("--export", default=None,
                   help="also write the final weights here (default: export in the config, if any)")
    p.add_argument("--device", default=None, help="torch device (default: the config's; auto = cuda if present)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="train at most this many more steps, then checkpoint and stop (resume later)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recon.train import Trainer, load_config

    config = load_config(args.config, args.overrides)
    if args.out_dir:
        config["out_dir"] = args.out_dir
    if args.export:
        config["export"] = args.export
    if args.device:
        config["train"]["device"] = args.device
    qf_loss = None
    if config["train"]["mode"].endswith("+qf") and config["train"]["qf_loss"] is None:
        from mriqa.losses import QFLoss

        qf_loss = QFLoss("gray", pool="mean")
    trainer = Trainer(config, qf_loss=qf_loss, progress=not args.no_progress)
    history = trainer.run(stop_after=args.stop_after)
    last = next((row for row in reversed(history) if any(k.startswith("psnr_") for k in row)), {})
    scores = " ".join(f"{k}={v:.4f}" for k, v in last.items() if k.startswith(("psnr_", "ssim_")))
    done = trainer.step >= trainer.total_steps
    print(f"{config['name']}: step {trainer.step}/{trainer.total_steps} "
          f"({'done' if done else 'stopped; rerun to resume'}) -> {trainer.out_dir}" + (f"; val {scores}" if scores else ""))
    if done and config.get("export"):
        print(f"weights: {config['export']}")
    return 0

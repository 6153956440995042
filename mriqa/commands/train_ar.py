"""``mriqa train-ar --config CONFIG.yaml``: reference-free artifact removal with the QF loss (``mriqa/train_ar.py``)."""
from __future__ import annotations

from mriqa.commands.training_flags import add_training_flags, config_extra


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-ar",
        help="train an AR-CNN / SR-CNN reference-free with L1 consistency + the QF loss (resumable)",
        description="Train an artifact-removal network on degraded images only: L1(output, input) + w * "
        "(1 - QF(output)). Resumes from the last checkpoint in the run's output_dir automatically; writes "
        "output_dir/final.safetensors.",
    )
    add_training_flags(p, config_help="YAML config (configs/ar-rgb*.yaml, configs/ar-gray*.yaml)",
                       set_example="loss.qf_weight=0.1",
                       export_help="also write the final weights here (safetensors); default: the config's export")
    p.set_defaults(func=run)


def run(args) -> int:
    from mriqa.train_ar import load_config, train

    cfg = load_config(args.config, args.overrides, **config_extra(args))
    summary = train(cfg, resume=not args.no_resume)
    print(f"train-ar: {cfg['name']} step {summary['step']} in {summary['wall_s']:.0f}s; weights {summary['weights']}")
    return 0

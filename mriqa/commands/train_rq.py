"""``mriqa train-rq --config CONFIG.yaml``: the reference-free reconstruction-quality model (``mriqa/train_rq.py``)."""
from __future__ import annotations

from mriqa.commands.training_flags import add_training_flags, config_extra


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-rq",
        help="train the reconstruction-quality model (RQNet) on reconstructions of known SSIM (resumable)",
        description="Train RQNet to predict the SSIM map of a reconstruction against the fully sampled reference "
        "it never sees (data: scripts/make_quality_dataset.py). Resumes from the last checkpoint in the run's "
        "output_dir automatically; writes output_dir/best.safetensors.",
    )
    add_training_flags(p, config_help="YAML config (configs/rq.yaml)", set_example="train.steps=500",
                       export_help="also write the best weights here (safetensors); default: the config's export")
    p.set_defaults(func=run)


def run(args) -> int:
    from mriqa.train_rq import load_config, train

    cfg = load_config(args.config, args.overrides, **config_extra(args))
    summary = train(cfg, resume=not args.no_resume)
    best = summary["best"]
    print(f"train-rq: {cfg['name']} step {summary['step']} in {summary['wall_s']:.0f}s; best step "
          f"{best.get('step')} per-volume Spearman {best.get('val_srcc_volume', float('nan')):.3f}; "
          f"weights {summary['weights']}")
    return 0

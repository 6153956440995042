"""``mriqa train-qairn --config CONFIG.yaml``: QAIRN JPEG-deblocking training (see ``mriqa/train_qairn.py``)."""
from __future__ import annotations

import math
from pathlib import Path

from mriqa.commands.training_flags import add_training_flags, config_extra


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-qairn",
        help="train QAIRN (JPEG deblocking + attention-map quality estimates)",
        description="Train QAIRN on JPEG-compressed random patches (L1 + SSIM); resumes from the last checkpoint "
        "in the run's output_dir automatically and exports the best-validation weights.",
    )
    add_training_flags(p, config_help="YAML config (configs/qairn-cpu.yaml, configs/qairn.yaml)",
                       set_example="train.steps=100",
                       export_help="where to write the best weights (safetensors); default: the config's export")
    p.add_argument("--select-pooling", action="store_true",
                   help="no training: choose the Minkowski exponent of Q1..Q3 on the config's validation images "
                        "and rewrite the weights (--weights, default: the config's export)")
    p.add_argument("--weights", help="with --select-pooling: the weights file to update")
    p.set_defaults(func=run)


def run(args) -> int:
    from mriqa.train_qairn import REPO_ROOT, load_config, select_pooling_only, train

    config = Path(args.config)
    if not config.is_file() and not config.is_absolute() and (REPO_ROOT / config).is_file():
        config = REPO_ROOT / config  # a repo config named from outside the checkout
    cfg = load_config(config, args.overrides, **config_extra(args))
    if args.select_pooling:
        select_pooling_only(cfg, args.weights)
        return 0
    summary = train(cfg, resume=not args.no_resume)
    best = summary["best"] or {}
    print(f"train-qairn: {cfg['name']} step {summary['step']} in {summary['wall_s']:.0f}s; best val gain "
          f"{best.get('val_gain', math.nan):+.2f} dB at step {best.get('step')}; run folder {summary['output_dir']}")
    return 0

"""``mriqa train-qf --config CONFIG.yaml``: self-supervised JPEG-QF training (see ``mriqa/train_qf.py``)."""
from __future__ import annotations

from mriqa.commands.training_flags import add_training_flags, config_extra


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-qf",
        help="train a QF predictor (self-supervised, JPEG quality factor)",
        description="Train a QF predictor on JPEG-compressed random patches; resumes from the last checkpoint "
        "in the run's output_dir automatically.",
    )
    add_training_flags(p, config_help="YAML config (configs/qf-gray.yaml, qf-rgb.yaml, qf-fastmri.yaml)",
                       set_example="train.steps=100 --set data.train.0.path=/data/knee",
                       export_help="where to write the best weights (safetensors); default: the config's export")
    p.add_argument("--calibrate-only", action="store_true",
                   help="no training: fit the output calibration of the run's best.safetensors and re-export it")
    p.set_defaults(func=run)


def run(args) -> int:
    from mriqa.train_qf import calibrate_run, load_config, train

    cfg = load_config(args.config, args.overrides, **config_extra(args))
    if args.calibrate_only:
        cfg["calibrate"] = cfg["calibrate"] or {}  # the defaults of mriqa.train_qf.calibrate
        print(f"train-qf: calibrated {calibrate_run(cfg)}")
        return 0
    summary = train(cfg, resume=not args.no_resume)
    best = summary["best"] or {}
    print(
        f"train-qf: {cfg['name']} step {summary['step']} in {summary['wall_s']:.0f}s; best val MAE "
        f"{best.get('val_mae', float('nan')):.4f} at step {best.get('step')}; run folder {summary['output_dir']}"
    )
    return 0

"""``mriqa train-qf --config CONFIG.yaml``: self-supervised JPEG-QF training (see ``mriqa/train_qf.py``)."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-qf",
        help="train a QF predictor (self-supervised, JPEG quality factor)",
        description="Train a QF predictor on JPEG-compressed random patches; resumes from the last checkpoint "
        "in the run's output_dir automatically.",
    )
    p.add_argument("--config", required=True, help="YAML config (configs/qf-gray.yaml, qf-rgb.yaml, qf-fastmri.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=100 --set data.train.0.path=/data/knee",
    )
    p.add_argument("--output-dir", help="run folder (checkpoints, curves); default: the config's output_dir")
    p.add_argument("--export", help="where to write the best weights (safetensors); default: the config's export")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument("--calibrate-only", action="store_true",
                   help="no training: fit the output calibration of the run's best.safetensors and re-export it")
    p.set_defaults(func=run)


def run(args) -> int:
    from mriqa.train_qf import calibrate_run, load_config, train

    extra = {}
    if args.output_dir:
        extra["output_dir"] = args.output_dir
    if args.export:
        extra["export"] = args.export
    cfg = load_config(args.config, args.overrides, **extra)
    if args.calibrate_only:
        cfg.setdefault("calibrate", None)
        cfg["calibrate"] = cfg["calibrate"] or {}
        print(f"train-qf: calibrated {calibrate_run(cfg)}")
        return 0
    summary = train(cfg, resume=not args.no_resume)
    best = summary["best"] or {}
    print(
        f"train-qf: {cfg['name']} step {summary['step']} in {summary['wall_s']:.0f}s; best val MAE "
        f"{best.get('val_mae', float('nan')):.4f} at step {best.get('step')}; run folder {summary['output_dir']}"
    )
    return 0

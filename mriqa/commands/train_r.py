"""``mriqa train-r --config CONFIG.yaml``: the learned acceleration (R) estimator (see ``mriqa/restimate/train.py``)."""
from __future__ import annotations

from mriqa.commands.training_flags import add_training_flags, config_extra


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train-r",
        help="train the learned R estimator, or refit its calibration (--recalibrate)",
        description="Fine-tune the QF network to regress log R on reconstructions (scripts/make_r_dataset.py), "
        "select it and fit its calibration on the validation split, and export it. Resumes from the last "
        "checkpoint in the run's output_dir automatically.",
    )
    add_training_flags(p, config_help="YAML config (configs/r-learned-aug.yaml); default: the built-in defaults",
                       set_example="train.steps=600", config_required=False,
                       export_help="where to write the calibrated weights (safetensors); default: the config's export")
    p.add_argument("--recalibrate", metavar="WEIGHTS",
                   help="no training: refit the recalibration, half-widths and OOD thresholds of WEIGHTS on the "
                        "config's validation split and rewrite the file")
    p.set_defaults(func=run)


def _arch(config: str | None) -> str:
    """The config's ``arch`` (``rqnet``: :mod:`mriqa.restimate.train_rq`), else the QFNet trainer's."""
    if not config:
        return "qfnet"
    from recon.config import read_yaml

    return str((read_yaml(config) or {}).get("arch", "qfnet"))


def run(args) -> int:
    def log(line):
        print(line, flush=True)

    if _arch(args.config) == "rqnet":
        from mriqa.restimate import train_rq

        cfg = train_rq.load_config(args.config, args.overrides, **config_extra(args))
        if args.recalibrate:
            train_rq.recalibrate(cfg, args.recalibrate, log=log)
            print(f"train-r: recalibrated {args.recalibrate}")
            return 0
        summary = train_rq.train(cfg, resume=not args.no_resume, log=log)
        if "stopped_at" in summary:
            print(f"train-r: {cfg['name']} stopped at step {summary['stopped_at']} (run again to resume); "
                  "nothing exported")
        else:
            print(f"train-r: {cfg['name']} validation MAE {summary['r_estimation']['val_mae_r']:.3f} in R; "
                  f"weights {summary['weights']}" + (f", exported {summary['export']}" if summary["export"] else ""))
        return 0
    from mriqa.restimate.train import load_config, recalibrate, train

    cfg = load_config(args.config, args.overrides, **config_extra(args))

    if args.recalibrate:
        recalibrate(cfg, args.recalibrate, log=log)
        print(f"train-r: recalibrated {args.recalibrate}")
        return 0
    summary = train(cfg, resume=not args.no_resume, log=log)
    if "stopped_at" in summary:
        print(f"train-r: {cfg['name']} stopped at step {summary['stopped_at']} (run again to resume); nothing exported")
    else:
        print(f"train-r: {cfg['name']} validation MAE {summary['r_estimation']['val_mae_r']:.3f} in R; "
              f"exported {summary['export']}")
    return 0

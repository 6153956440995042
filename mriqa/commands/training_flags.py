"""The flags every ``mriqa train-*`` command shares, spelled once: ``--config``, ``--set KEY=VALUE``
(repeatable), ``--output-dir``, ``--export``, ``--no-resume``. Not a sub-command itself."""
from __future__ import annotations

import argparse


def add_training_flags(p: argparse.ArgumentParser, *, config_help: str, set_example: str, export_help: str,
                       config_required: bool = True) -> None:
    p.add_argument("--config", required=config_required, help=config_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config value (repeatable), e.g. --set {set_example}")
    p.add_argument("--output-dir", help="run folder (checkpoint, history, curves); default: the config's output_dir")
    p.add_argument("--export", help=export_help)
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint and start over")


def config_extra(args: argparse.Namespace) -> dict:
    """The config keys the flags set: ``output_dir`` and ``export``, where given."""
    return {k: v for k, v in (("output_dir", args.output_dir), ("export", args.export)) if v}

"""The ``mriqa`` command line: one console script with sub-commands.

Each sub-command lives in ``mriqa/commands/<name>.py`` and exposes ``add_parser(subparsers)``, which
registers its arguments and sets ``func`` to a ``run(args) -> int``. Heavy imports happen inside ``run`` so
that ``mriqa --help`` stays fast and scoring a photo never imports sigpy.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order --help lists them.
COMMANDS = [
    "demo",
    "recon",
    "evaluate",
    "make_dataset",
    "train_recon",
    "score",
    "train_qf",
    "estimate_r",
    "iqa_bench",
    "restore",
    "train_qairn",
    "train_ar",
    "train_r",
    "train_rq",
    "reader_study",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mriqa",
        description="Reference-free quality assessment for MRI reconstruction, and reconstruction networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mriqa.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"mriqa.commands.{name}":
                continue  # a sub-command that is not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from recon.errors import InputError

    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"mriqa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mriqa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

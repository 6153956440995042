"""QF-predictor weights (:func:`load_qfnet`) and ``python -m mriqa.weights_io --half SRC DST`` (float16 copy).

The file format and the generic readers/writers are :mod:`recon.io.weights`.
"""
from __future__ import annotations

import os

import torch

from recon.errors import InputError
from recon.io.weights import load_weights, save_half_precision


def load_qfnet(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Load a :class:`~mriqa.models.QFNet` saved by :func:`save_weights` -> ``(model in eval mode, metadata)``."""
    from mriqa.models.qfnet import ARCH, QFNet

    state, meta = load_weights(path)
    arch = meta.get("arch")
    if arch != ARCH:
        raise InputError(path, f"weights are for architecture {arch!r}, not {ARCH!r}")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise InputError(path, "weights metadata has no QFNet 'config'")
    try:
        model = QFNet.from_config(config)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"bad QFNet config in metadata: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(path, f"tensors do not match the QFNet config ({first})") from None
    model.eval()
    return model.to(map_location), meta


def main(argv=None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m mriqa.weights_io", description="Weights file utilities.")
    p.add_argument("--half", nargs=2, metavar=("SRC", "DST"), required=True,
                   help="copy SRC to DST with float32 tensors stored as float16")
    args = p.parse_args(argv)
    try:
        out = save_half_precision(*args.half)
    except InputError as exc:
        print(f"mriqa.weights_io: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({out.stat().st_size / 2 ** 20:.1f} MiB, float16 tensors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

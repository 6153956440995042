"""Scoring-model weights and ``python -m mriqa.weights_io --half SRC DST`` (float16 copy).

- :func:`load_qfnet`: a QF predictor (``arch: "qfnet"``, :class:`mriqa.models.QFNet`);
- :func:`load_rqnet`: the reconstruction-quality model (``arch: "rqnet"``, :class:`mriqa.models.reconq.RQNet`);
- :func:`load_scoring_model`: either, by the metadata's ``arch`` (what :func:`mriqa.load_predictor` uses).

The file format and the generic readers/writers are :mod:`recon.io.weights`.
"""
from __future__ import annotations

import os

import torch

from recon.errors import InputError
from recon.io.weights import load_network, load_weights, model_from_state, save_half_precision


def _qfnet():
    from mriqa.models.qfnet import ARCH, QFNet

    return ARCH, QFNet.from_config, "QFNet"


def _rqnet():
    from mriqa.models.reconq import ARCH, RQNet

    return ARCH, RQNet, "RQNet"


def load_qfnet(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Load a :class:`~mriqa.models.QFNet` saved by :func:`save_weights` -> ``(model in eval mode, metadata)``."""
    return load_network(path, *_qfnet(), device=map_location)


def load_rqnet(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Load a :class:`~mriqa.models.reconq.RQNet` saved by :func:`save_weights` (metadata ``arch: "rqnet"``,
    ``config``: the RQNet config dict) -> ``(model in eval mode, metadata)``."""
    return load_network(path, *_rqnet(), device=map_location)


def load_scoring_model(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """A QF predictor or the reconstruction-quality model, by the metadata's ``arch`` (``"qfnet"`` /
    ``"rqnet"``) -> ``(model in eval mode, metadata)``; any other architecture is an InputError."""
    state, meta = load_weights(path)
    known = {arch: (build, what) for arch, build, what in (_qfnet(), _rqnet())}
    if meta.get("arch") not in known:
        raise InputError(path, f"weights are for architecture {meta.get('arch')!r}, not a scoring model "
                               f"({' or '.join(map(repr, known))})")
    return model_from_state(path, state, meta, *known[meta["arch"]], device=map_location), meta


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

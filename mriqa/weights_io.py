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
from recon.io.weights import load_weights, save_half_precision


def _check_arch(path, meta: dict, arch: str) -> None:
    found = meta.get("arch")
    if found != arch:
        raise InputError(path, f"weights are for architecture {found!r}, not {arch!r}")


def _qfnet_from(path, state: dict, meta: dict, map_location):
    from mriqa.models.qfnet import QFNet

    config = meta.get("config")
    if not isinstance(config, dict):
        raise InputError(path, "weights metadata has no QFNet 'config'")
    try:
        model = QFNet.from_config(config)
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"bad QFNet config in metadata: {exc}") from None
    return _load_state(path, model, state, "QFNet", map_location), meta


def _rqnet_from(path, state: dict, meta: dict, map_location):
    from mriqa.models.reconq import RQNet

    config = meta.get("config")
    if not isinstance(config, dict):
        raise InputError(path, "weights metadata has no RQNet 'config'")
    try:
        model = RQNet(config)
    except InputError as exc:
        raise InputError(path, f"bad RQNet config in metadata: {exc.problem}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"bad RQNet config in metadata: {exc}") from None
    return _load_state(path, model, state, "RQNet", map_location), meta


def _load_state(path, model: torch.nn.Module, state: dict, what: str, map_location) -> torch.nn.Module:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(path, f"tensors do not match the {what} config ({first})") from None
    model.eval()
    return model.to(map_location)


def load_qfnet(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Load a :class:`~mriqa.models.QFNet` saved by :func:`save_weights` -> ``(model in eval mode, metadata)``."""
    from mriqa.models.qfnet import ARCH

    state, meta = load_weights(path)
    _check_arch(path, meta, ARCH)
    return _qfnet_from(path, state, meta, map_location)


def load_rqnet(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Load a :class:`~mriqa.models.reconq.RQNet` saved by :func:`save_weights` (metadata ``arch: "rqnet"``,
    ``config``: the RQNet config dict) -> ``(model in eval mode, metadata)``."""
    from mriqa.models.reconq import ARCH

    state, meta = load_weights(path)
    _check_arch(path, meta, ARCH)
    return _rqnet_from(path, state, meta, map_location)


def load_scoring_model(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """A QF predictor or the reconstruction-quality model, by the metadata's ``arch`` (``"qfnet"`` /
    ``"rqnet"``) -> ``(model in eval mode, metadata)``; any other architecture is an InputError."""
    from mriqa.models.qfnet import ARCH as QF_ARCH
    from mriqa.models.reconq import ARCH as RQ_ARCH

    state, meta = load_weights(path)
    arch = meta.get("arch")
    if arch == QF_ARCH:
        return _qfnet_from(path, state, meta, map_location)
    if arch == RQ_ARCH:
        return _rqnet_from(path, state, meta, map_location)
    raise InputError(path, f"weights are for architecture {arch!r}, not a scoring model "
                           f"({QF_ARCH!r} or {RQ_ARCH!r})")


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

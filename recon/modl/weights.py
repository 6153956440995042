"""MoDL weights: safetensors with ``{format, version, config, extra}`` metadata, written atomically.

``save_modl(model, path, extra)`` / ``load_modl(name_or_path)``: a shipped name (``recon/weights/<name>.safetensors``,
default ``modl``) or a file; ``weights_metadata`` reads the metadata back. A file that is not MoDL weights, or
whose tensors do not fit the architecture in its metadata, is a :class:`recon.errors.InputError`.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from recon.errors import InputError
from recon.modl.network import ModlConfig, MoDL

__all__ = ["save_modl", "load_modl", "weights_metadata", "WEIGHTS_DIR", "DEFAULT_WEIGHTS", "FORMAT"]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_WEIGHTS = "modl"
FORMAT = "mriqa-modl"
FORMAT_VERSION = "1"


def save_modl(model: MoDL, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights as safetensors with ``{format, version, config, extra}`` metadata, atomically."""
    from safetensors.torch import save_file

    from recon.files import atomic_path

    path = Path(path)
    cfg = asdict(model.config)
    cfg["num_unrolls"] = int(model.num_unrolls)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": json.dumps(cfg, sort_keys=True)}
    if extra:
        meta["extra"] = json.dumps(extra, sort_keys=True, default=str)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def resolve_weights(name_or_path: str | os.PathLike | None) -> Path:
    """A shipped weights name (``"modl"``, ``"modl-qf"``; None: :data:`DEFAULT_WEIGHTS`) or a path -> the file."""
    if name_or_path is None:
        name_or_path = DEFAULT_WEIGHTS
    p = Path(name_or_path)
    if p.is_file():
        return p
    s = str(name_or_path)
    if re.fullmatch(r"[A-Za-z0-9_.-]+", s) and not s.endswith(".safetensors"):
        shipped = WEIGHTS_DIR / f"{s}.safetensors"
        if shipped.is_file():
            return shipped
        names = sorted(f.stem for f in WEIGHTS_DIR.glob("*.safetensors")) if WEIGHTS_DIR.is_dir() else []
        raise InputError(s, f"no such weights file, and no shipped MoDL weights by that name "
                            f"(shipped: {', '.join(names) or 'none'})")
    raise InputError(s, "weights file not found")


def load_modl(name_or_path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
              **overrides) -> MoDL:
    """Load MoDL weights: a shipped name (``recon/weights/<name>.safetensors``, default ``modl``) or a file.

    ``overrides`` change solver settings that do not touch the architecture (``num_unrolls``, ``cg_iters``,
    ``cg_tol``, ``checkpoint``). A file that is not a MoDL weights file, or whose tensors do not fit the
    architecture in its metadata, raises ``recon.errors.InputError``. The model is returned in eval mode.
    """
    from safetensors import safe_open

    path = resolve_weights(name_or_path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for non-safetensors files
        raise InputError(path, f"not a safetensors weights file ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT:
        raise InputError(path, f"not a MoDL weights file (metadata format is {meta.get('format')!r}, "
                               f"expected {FORMAT!r}); wrong architecture?")
    if meta.get("version") != FORMAT_VERSION:
        raise InputError(path, f"MoDL weights format version {meta.get('version')!r} is not supported "
                               f"(this code reads {FORMAT_VERSION!r})")
    try:
        cfg = json.loads(meta.get("config", "{}"))
    except json.JSONDecodeError:
        raise InputError(path, "MoDL weights file has unreadable config metadata") from None
    solver_only = {"num_unrolls", "cg_iters", "cg_tol", "checkpoint"}
    bad = sorted(set(overrides) - solver_only)
    if bad:
        raise InputError(path, f"cannot override architecture settings {bad} when loading weights")
    try:
        model = MoDL(ModlConfig.from_dict({**cfg, **overrides}))
    except InputError as exc:
        raise InputError(path, f"MoDL weights metadata: {exc.problem}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(tensors[k].shape)} (expected {tuple(expected[k].shape)})"
             for k in sorted(set(expected) & set(tensors)) if tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:4]}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:4]}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:3]}")
        raise InputError(path, "weights do not fit the MoDL architecture in their metadata (wrong architecture): "
                               + "; ".join(parts))
    model.load_state_dict(tensors)
    return model.to(device).eval()


def weights_metadata(name_or_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The metadata of a MoDL weights file (``config`` and ``extra`` decoded from JSON)."""
    from safetensors import safe_open

    path = resolve_weights(name_or_path)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = dict(f.metadata() or {})
    for key in ("config", "extra"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    return meta

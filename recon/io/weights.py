"""Safetensors weights with JSON metadata for every network here (no pickle anywhere).

File layout: a safetensors file holding the model's ``state_dict`` (BatchNorm running statistics included)
and a string-to-string metadata header in which **every value is JSON-encoded** (``json.dumps``), e.g.
``{"arch": "\\"qfnet\\"", "config": "{\\"in_channels\\": 1, ...}", "normalization": "{...}", ...}``.
:func:`save_weights` always writes ``arch`` (the model's ``arch`` attribute, else its class name in lower case)
and ``config`` (``model.config`` where it has one), and ``mriqa_format`` = 1; callers add normalisation,
training info, metrics. :func:`load_weights` decodes every value back with ``json.loads`` (a value that is not
valid JSON, e.g. written by another tool, is returned as the raw string). :func:`load_network` and
:func:`model_from_state` turn such a file into a model of a known architecture (the loaders of the scoring and
restoration networks in ``mriqa`` go through them).

Writes are atomic (:func:`recon.files.atomic_path`). A missing file or a file that is not safetensors raises
:class:`recon.errors.InputError` naming the file. (MoDL's own files: :mod:`recon.modl`.)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from recon.errors import InputError
from recon.files import atomic_path

FORMAT_VERSION = 1


def _arch_of(model: torch.nn.Module) -> str:
    return getattr(model, "arch", type(model).__name__.lower())


def save_weights(model: torch.nn.Module, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model.state_dict()`` and ``metadata`` (JSON-encoded values) to ``path`` atomically."""
    meta: dict[str, Any] = {"mriqa_format": FORMAT_VERSION, "arch": _arch_of(model)}
    if hasattr(model, "config"):
        meta["config"] = model.config
    meta.update(metadata or {})
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return _write(tensors, meta, path)


def _write(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    encoded = {str(k): json.dumps(v, sort_keys=True) for k, v in meta.items()}
    path = Path(path)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=encoded)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors recreates the file 0600; weights are for everyone to read
    return path


def save_half_precision(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy a weights file with its float32 tensors stored as float16 (half the bytes; integer tensors and the
    metadata unchanged, plus ``"stored_dtype": "float16"``). Loading needs nothing special: ``load_state_dict``
    copies the float16 values into the float32 parameters, so the network still computes in float32 (the
    rounding error of the weights, about 5e-4 relative, is what changes; measure it before shipping).

        python -m mriqa.weights_io --half runs/qairn-ema/export.safetensors mriqa/weights/qairn.safetensors
    """
    state, meta = load_weights(src)
    tensors = {k: (v.to(torch.float16) if v.dtype == torch.float32 else v).contiguous() for k, v in state.items()}
    meta["stored_dtype"] = "float16"
    return _write(tensors, meta, dst)


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file -> ``(state_dict, metadata)`` (metadata values JSON-decoded)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weights file not found")
    try:
        state: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = f.metadata() or {}
            for key in f.keys():
                state[key] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(path, f"not a readable safetensors weights file ({msg})") from None
    return state, {k: _decode(v) for k, v in raw.items()}


def model_from_state(path, state: dict[str, torch.Tensor], meta: dict[str, Any],
                     build: Callable[[dict], torch.nn.Module], what: str, device: str | torch.device | None = None,
                     default_config: dict | None = None) -> torch.nn.Module:
    """The model of ``meta["config"]`` (``build(config)``; ``default_config`` when the file has none, else a
    missing config is an error) with ``state`` loaded strictly, in eval mode on ``device``
    (:func:`recon.device.resolve_device`). Each failure is one :class:`InputError` naming ``path`` and ``what``."""
    from recon.device import resolve_device

    config = meta.get("config", default_config)
    if not isinstance(config, dict):
        raise InputError(path, f"weights metadata has no {what} 'config'")
    try:
        model = build(config)
    except InputError as exc:
        raise InputError(path, f"bad {what} config in metadata: {exc.problem}") from None
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"bad {what} config in metadata: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(path, f"tensors do not match the {what} config ({str(exc).splitlines()[0]})") from None
    return model.eval().to(resolve_device(device))


def load_network(path: str | os.PathLike, arch: str, build: Callable[[dict], torch.nn.Module], what: str,
                 device: str | torch.device | None = None, default_config: dict | None = None
                 ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(model in eval mode, metadata)`` from a file of architecture ``arch`` (:func:`load_weights`, then
    :func:`model_from_state`); a file of another architecture is an :class:`InputError`."""
    state, meta = load_weights(path)
    if meta.get("arch") != arch:
        raise InputError(path, f"weights are for architecture {meta.get('arch')!r}, not {arch!r}")
    return model_from_state(path, state, meta, build, what, device, default_config), meta

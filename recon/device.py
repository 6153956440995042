"""Which torch device to run on: the one rule every command, trainer and model loader uses.

``resolve_device(None | "auto")`` is CUDA when available, else the CPU; any other name is read by torch, and a
malformed name, or a CUDA device on a machine without CUDA, is an :class:`~recon.errors.InputError` (one line)
instead of torch's error deep inside a run.
"""
from __future__ import annotations

import torch

from recon.errors import InputError

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``None`` / ``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``, checked."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(None, f"unknown torch device {device!r} (e.g. 'cpu', 'cuda', 'cuda:1')") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, f"device {device!r} asked for, but CUDA is not available on this machine")
    return dev

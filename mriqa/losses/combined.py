"""A weighted sum of losses that share the trainer's call: ``CombinedLoss({"dc": 1.0, "qf": 0.05})``.

Each term is called as ``loss(output, target, data_range=..., **batch)``; the result is
``sum_i w_i * loss_i``. ``requires_target`` is True when any term with a non-zero weight needs the target.
The last call's per-term values (floats, unweighted) are in ``.last`` for logging.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn

from recon.errors import InputError

__all__ = ["CombinedLoss", "build_term", "TERMS"]


def _term(name: str, kwargs: dict) -> Callable:
    if name == "dc":
        from mriqa.losses.dc_loss import DataConsistencyLoss

        return DataConsistencyLoss(**kwargs)
    if name == "qf":
        from mriqa.losses.qf_loss import QFLoss

        return QFLoss(**kwargs)
    if name == "l1":
        return _L1()
    raise InputError(None, f"unknown loss term {name!r}; known: {sorted(TERMS)}")


TERMS = ("dc", "qf", "l1")


class _L1(nn.Module):
    """``mean |output - target| / data_range`` (supervised; needs the target)."""

    requires_target = True

    def forward(self, output, target=None, data_range=None, **batch):
        if target is None:
            raise InputError(None, "the l1 term needs a target")
        dr = torch.ones(output.shape[0], device=output.device) if data_range is None else data_range
        return ((output - target).abs() / dr.to(output).reshape(-1, 1, 1, 1).clamp_min(1e-12)).mean()


def build_term(name: str, **kwargs) -> Callable:
    """One named term: ``dc`` (:class:`DataConsistencyLoss`), ``qf`` (:class:`QFLoss`), ``l1``."""
    return _term(name, kwargs)


class CombinedLoss(nn.Module):
    """``sum_i w_i * loss_i`` (see the module docstring).

    Args:
        weights: ``{name: weight}``; a name is ``dc``, ``qf`` or ``l1`` (built with ``options[name]``), or any
            key whose loss is given in ``losses``.
        losses: ``{name: callable}`` ready losses (e.g. a shared :class:`QFLoss`).
        options: ``{name: kwargs}`` for the named terms (e.g. ``{"qf": {"model": "gray", "pool": "mean"}}``).
    """

    def __init__(self, weights: Mapping[str, float], losses: Mapping[str, Callable] | None = None,
                 options: Mapping[str, dict] | None = None):
        super().__init__()
        if not weights:
            raise InputError(None, "CombinedLoss needs at least one term")
        self.weights = {str(k): float(v) for k, v in weights.items()}
        if any(w < 0 for w in self.weights.values()) or not any(w > 0 for w in self.weights.values()):
            raise InputError(None, f"CombinedLoss weights must be >= 0 and not all 0, got {self.weights}")
        losses, options = dict(losses or {}), dict(options or {})
        terms: dict[str, Any] = {}
        for name in self.weights:
            terms[name] = losses[name] if name in losses else _term(name, dict(options.get(name) or {}))
        self.terms = nn.ModuleDict({k: v for k, v in terms.items() if isinstance(v, nn.Module)})
        self._plain = {k: v for k, v in terms.items() if not isinstance(v, nn.Module)}
        self.requires_target = any(getattr(terms[k], "requires_target", True) for k, w in self.weights.items()
                                   if w > 0)
        self.last: dict[str, float] = {}

    def term(self, name: str) -> Callable:
        return self.terms[name] if name in self.terms else self._plain[name]

    def forward(self, output, target=None, data_range=None, **batch) -> torch.Tensor:
        total = None
        last = {}
        for name, w in self.weights.items():
            if w == 0:
                continue
            value = self.term(name)(output, target, data_range=data_range, **batch)
            last[name] = float(value.detach())
            total = w * value if total is None else total + w * value
        self.last = last
        return total

    def extra_repr(self) -> str:
        return f"weights={self.weights}"

"""The one loss combiner: ``WeightedSum({"dc": (1.0, dc), "qf": (0.05, qf)})`` = ``sum_i w_i * loss_i``.

Each term gets the loss call of :mod:`recon.losses` (``target`` only if the term has ``requires_target``, which
counts as True when absent); the sum has ``requires_target`` when any term does. A term with ``needs_refit``
gets the step's ``refit`` (:class:`recon.train_step.Refit`) too, and the sum has ``needs_refit`` when any does.
``.last`` holds the last call's unweighted per-term values (floats; a term's own ``.last`` appears as
``"name.sub"``) for logging. Terms that are ``nn.Module`` s are submodules (``terms``), so they move with
``.to()`` and DDP replicates them.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from recon.errors import InputError

__all__ = ["WeightedSum", "requires_target"]


def requires_target(loss) -> bool:
    """Whether ``loss`` needs the reference (its ``requires_target``; True when it does not say)."""
    return bool(getattr(loss, "requires_target", True))


class WeightedSum(nn.Module):
    """``sum_i w_i * loss_i`` (see the module docstring).

    Args:
        terms: ``{name: loss}`` (weight 1) or ``{name: (weight, loss)}``; weights >= 0, not all 0; terms of
            weight 0 are left out.
    """

    def __init__(self, terms: Mapping[str, Callable | tuple[float, Callable]]):
        super().__init__()
        parsed: dict[str, tuple[float, Callable]] = {}
        for name, spec in dict(terms or {}).items():
            if isinstance(spec, (tuple, list)) and len(spec) == 2 and callable(spec[1]):
                weight, fn = float(spec[0]), spec[1]
            elif callable(spec):
                weight, fn = 1.0, spec
            else:
                raise InputError(None, f"loss {name!r}: expected a callable or (weight, callable), got {spec!r}")
            parsed[str(name)] = (weight, fn)
        weights = {k: w for k, (w, _) in parsed.items()}
        if not parsed or any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise InputError(None, f"loss weights must be >= 0 and not all 0, got {weights}")
        self.weights = {k: w for k, w in weights.items() if w > 0}
        fns = {k: parsed[k][1] for k in self.weights}
        self.terms = nn.ModuleDict({k: f for k, f in fns.items() if isinstance(f, nn.Module)})
        self._plain = {k: f for k, f in fns.items() if not isinstance(f, nn.Module)}
        self.requires_target = any(requires_target(f) for f in fns.values())
        self.needs_refit = any(getattr(f, "needs_refit", False) for f in fns.values())
        self.last: dict[str, float] = {}

    def term(self, name: str) -> Callable:
        return self.terms[name] if name in self.terms else self._plain[name]

    def forward(self, output, target=None, **kwargs) -> torch.Tensor:
        total, last = None, {}
        refit = kwargs.pop("refit", None)
        for name, weight in self.weights.items():
            fn = self.term(name)
            extra = {"refit": refit} if getattr(fn, "needs_refit", False) else {}
            value = fn(output, target if requires_target(fn) else None, **kwargs, **extra)
            if not torch.is_tensor(value) or value.ndim != 0:
                raise InputError(None, f"loss {name!r} must return a scalar tensor, got {type(value).__name__} "
                                       f"{tuple(getattr(value, 'shape', ()))}")
            last[name] = float(value.detach())
            for sub, v in (getattr(fn, "last", None) or {}).items():
                last[f"{name}.{sub}"] = float(v)
            total = weight * value if total is None else total + weight * value
        self.last = last
        return total

    def extra_repr(self) -> str:
        return f"weights={self.weights}"

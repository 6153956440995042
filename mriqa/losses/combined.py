"""Named weighted sums of losses: ``CombinedLoss({"dc": 1.0, "qf": 0.05})``, built on recon's one combiner
(:class:`recon.losses.WeightedSum`: the call, ``requires_target``, ``.last``).

Names: ``dc`` (:class:`recon.losses.DataConsistencyLoss`), ``qf`` (:class:`mriqa.losses.QFLoss`), ``recon``
(:class:`mriqa.losses.ReconQualityLoss`), ``l1`` (:class:`recon.losses.SupervisedLoss` with ``l1=1``, the
supervised term); ``options[name]`` are the keyword
arguments of a named term, and ``losses[name]`` a ready loss for any name (e.g. a shared ``QFLoss``). A term
of weight 0 is not built (no QF predictor is loaded for nothing).
"""
from __future__ import annotations

from typing import Callable, Mapping

from recon.errors import InputError
from recon.losses import WeightedSum

__all__ = ["CombinedLoss", "build_term", "TERMS"]

TERMS = ("dc", "qf", "recon", "l1")


def build_term(name: str, **kwargs) -> Callable:
    """One named term: ``dc``, ``qf``, ``recon`` or ``l1`` (see the module docstring)."""
    if name == "dc":
        from recon.losses import DataConsistencyLoss

        return DataConsistencyLoss(**kwargs)
    if name == "qf":
        from mriqa.losses.qf_loss import QFLoss

        return QFLoss(**kwargs)
    if name == "recon":
        from mriqa.losses.recon_quality_loss import ReconQualityLoss

        return ReconQualityLoss(**kwargs)
    if name == "l1":
        from recon.losses import SupervisedLoss

        return SupervisedLoss(l1=1.0, ssim=0.0, **kwargs)
    raise InputError(None, f"unknown loss term {name!r}; known: {sorted(TERMS)}")


class CombinedLoss(WeightedSum):
    """``sum_i w_i * loss_i`` of named terms (see the module docstring).

    Args:
        weights: ``{name: weight}``; a name is ``dc``, ``qf``, ``recon`` or ``l1``, or any key of ``losses``.
        losses: ``{name: callable}`` ready losses.
        options: ``{name: kwargs}`` for the named terms (e.g. ``{"qf": {"model": "gray", "pool": "mean"}}``).
    """

    def __init__(self, weights: Mapping[str, float], losses: Mapping[str, Callable] | None = None,
                 options: Mapping[str, dict] | None = None):
        losses, options = dict(losses or {}), dict(options or {})
        terms = {}
        for name, weight in dict(weights or {}).items():
            if name not in losses and name not in TERMS:
                raise InputError(None, f"unknown loss term {name!r}; known: {sorted(TERMS)}")
            if float(weight) > 0:
                fn = losses[name] if name in losses else build_term(name, **dict(options.get(name) or {}))
            else:
                fn = _weight_zero
            terms[name] = (float(weight), fn)
        super().__init__(terms)


def _weight_zero(*args, **kwargs):
    """Stands in for a term of weight 0, which :class:`recon.losses.WeightedSum` leaves out (never called)."""
    raise AssertionError("a weight-0 loss term was called")

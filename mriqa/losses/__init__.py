"""Losses for training reconstruction networks with the QF predictor (issue 6), piq-style: one file per loss,
each with a functional form and an ``nn.Module``.

- :class:`QFLoss` / :func:`qf_loss` (``qf_loss.py``): ``1 - QF`` of a frozen QF predictor (reference-free).
- :class:`DataConsistencyLoss` / :func:`dc_loss` (``dc_loss.py``): ``||M F S x - y||^2 / ||M y||^2``.
- :class:`CombinedLoss` (``combined.py``): a weighted sum, e.g. ``CombinedLoss({"dc": 1.0, "qf": 0.05})``.

All follow the loss call of ``recon.train`` and fastMRI: ``loss(output [B,1,H,W], target=None,
data_range=None, **batch)``; reference-free losses have ``requires_target = False``. Nothing here imports
``recon``.
"""
from mriqa.losses.combined import CombinedLoss, build_term
from mriqa.losses.dc_loss import DataConsistencyLoss, dc_loss
from mriqa.losses.qf_loss import QFLoss, normalize_for_qf, qf_loss

__all__ = ["QFLoss", "qf_loss", "normalize_for_qf", "DataConsistencyLoss", "dc_loss", "CombinedLoss",
           "build_term", "dc_plus_qf"]


def dc_plus_qf(qf_weight: float = 0.05, dc_weight: float = 1.0, qf: dict | None = None,
               dc: dict | None = None) -> CombinedLoss:
    """``dc_weight * DataConsistencyLoss(**dc) + qf_weight * QFLoss(**qf)`` (a config ``factory`` target)."""
    return CombinedLoss({"dc": dc_weight, "qf": qf_weight}, options={"dc": dc or {}, "qf": qf or {}})

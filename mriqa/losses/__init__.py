"""Quality losses for training reconstruction and restoration networks with the QF predictor (issue 6),
piq-style: one file per loss, each with a functional form and an ``nn.Module``.

- :class:`QFLoss` / :func:`qf_loss` (``qf_loss.py``): ``1 - QF`` of a frozen QF predictor (reference-free).
- :class:`ReconQualityLoss` / :func:`recon_quality_loss` (``recon_quality_loss.py``): ``1 - score`` of the frozen
  reconstruction-quality model (``"recon"``: predicted SSIM against the unseen reference; reference-free).
- :class:`CombinedLoss` (``combined.py``): named weighted sums on :class:`recon.losses.WeightedSum`, e.g.
  ``CombinedLoss({"dc": 1.0, "qf": 0.05})`` (``dc`` is recon's :class:`recon.losses.DataConsistencyLoss`;
  ``recon`` the reconstruction-quality loss).

They follow recon's loss call (:mod:`recon.losses`): ``loss(output [B,1,H,W], target=None, *, physics, y,
image, pred_kspace, data_range)``; the quality losses use ``output`` only and ignore the rest
(``requires_target = False``).
"""
from mriqa.losses.combined import CombinedLoss, build_term
from mriqa.losses.qf_loss import QFLoss, normalize_for_qf, qf_loss
from mriqa.losses.recon_quality_loss import ReconQualityLoss, recon_quality_loss

__all__ = ["QFLoss", "qf_loss", "normalize_for_qf", "ReconQualityLoss", "recon_quality_loss", "CombinedLoss",
           "build_term", "dc_plus_qf"]


def dc_plus_qf(qf_weight: float = 0.05, dc_weight: float = 1.0, qf: dict | None = None,
               dc: dict | None = None) -> CombinedLoss:
    """``dc_weight * DataConsistencyLoss(**dc) + qf_weight * QFLoss(**qf)`` (a config ``factory`` target)."""
    return CombinedLoss({"dc": dc_weight, "qf": qf_weight}, options={"dc": dc or {}, "qf": qf or {}})

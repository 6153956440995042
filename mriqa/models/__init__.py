"""Quality networks of mriqa: :class:`QFNet` (the JPEG quality-factor predictor)."""
from mriqa.models.qfnet import QFNet

__all__ = ["QFNet"]

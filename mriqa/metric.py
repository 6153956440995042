"""Metric interfaces of the QF predictor (and of the reconstruction-quality model): a pyiqa-style object and a
``torchmetrics.Metric``.

- :class:`QFMetric` follows pyiqa's inference-model conventions: ``metric = QFMetric("rgb")``,
  ``metric(img_batch) -> Tensor[B]`` with ``lower_better = False``, ``score_range = (0, 1)``,
  ``metric_mode = "NR"`` (no reference). It scores without gradients; a loss built on the predictor comes
  separately.
- :class:`QFScore` is a ``torchmetrics.Metric`` for logging in (Lightning) training loops:
  ``update(preds)`` accumulates the per-image scores of a batch, ``compute()`` returns their mean. torchmetrics
  is imported only when :class:`QFScore` is used, so ``mriqa`` itself does not need it.

Both accept the inputs of :class:`mriqa.predictor.QFPredictor` (a batch ``[B, C, H, W]``/``[B, H, W]`` as numpy
or torch; pyiqa's usual input is RGB float ``[B, 3, H, W]`` in [0, 1]) and its ``kind`` rule: ``None`` = auto,
``"mri"`` for magnitude images (reconstruction outputs on the fastMRI scale want ``kind="mri"``).

``model="recon"`` (or an RQNet weights file or module) scores with the reconstruction-quality model
(:mod:`mriqa.models.reconq`): the predicted SSIM of a reconstruction against the unseen fully sampled
reference, in [0, 1], higher is better (``lower_better = False``); gray magnitudes ``[B, 1, H, W]`` /
``[B, H, W]`` of any scale, real or complex (``kind`` is ignored: its normalisation is scale-free); the metric
is then named ``"recon"``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from mriqa import pooling
from mriqa.predictor import QFPredictor, load_predictor


def _predictor(model, device, batch_size) -> QFPredictor:
    if isinstance(model, QFPredictor):
        return model
    if isinstance(model, torch.nn.Module):
        return QFPredictor(model, device=device, batch_size=batch_size)
    return load_predictor(model, device=device, batch_size=batch_size)


def _as_batch(img) -> Any:
    """One image -> a batch of one, so that the result is always ``[B]``."""
    from mriqa.predictor import is_batch

    shape = tuple(img.shape) if hasattr(img, "shape") else np.shape(img)
    if is_batch(shape):
        return img
    return img[None]


class QFMetric(torch.nn.Module):
    """pyiqa-style no-reference metric: predicted JPEG quality factor / 100 (or, for ``model="recon"``, the
    predicted SSIM of a reconstruction), higher is better.

    Args:
        model: ``"gray"``, ``"rgb"``, ``"recon"``, a weights path, a QFNet / RQNet module or a
            :class:`QFPredictor`.
        pool: ``"mean"``, ``"center"`` or ``"foreground"`` (:mod:`mriqa.pooling`).
        kind: ``None`` (auto), ``"photo"`` or ``"mri"``; see :mod:`mriqa.predictor`.
        device: ``None`` = CUDA when available, else CPU.
        batch_size: images per forward pass.

    ``metric(img_batch)`` -> float32 tensor ``[B]`` (on the input's device for torch input) of scores in
    [0, 1]; ``img_batch`` ``[B, C, H, W]`` (C = 1 or 3), ``[B, H, W]`` or one image (then ``B = 1``); a path
    (str / PathLike) to an image file is read with :func:`recon.io.images.read_images` (all its slices form the batch).
    """

    lower_better = False
    score_range = (0, 1)
    metric_mode = "NR"

    def __init__(
        self,
        model: str | os.PathLike | torch.nn.Module | QFPredictor = "gray",
        pool: str = "mean",
        kind: str | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 16,
    ):
        super().__init__()
        self.pool = pooling.check_pool(pool)
        self.kind = kind
        predictor = _predictor(model, device, batch_size)
        # a plain attribute, not a registered sub-module: the metric carries no trainable state
        object.__setattr__(self, "predictor", predictor)
        self.metric_name = _metric_name(predictor)

    @property
    def net(self) -> torch.nn.Module:
        """The QF (or reconstruction-quality) network."""
        return self.predictor.model

    def forward(self, img_batch, **kwargs) -> torch.Tensor:
        if isinstance(img_batch, (str, os.PathLike)):
            return self._score_file(img_batch)
        # torch input -> torch scores on its device; numpy input -> numpy scores -> CPU tensor
        scores = self.predictor.score(_as_batch(img_batch), pool=self.pool, kind=self.kind)
        return torch.as_tensor(scores, dtype=torch.float32)

    def _score_file(self, path) -> torch.Tensor:
        from recon.io.images import read_images

        records = read_images(path)
        scores = [
            self.predictor.score(r.image, pool=self.pool, kind=self.kind or _record_kind(r), source=str(path))
            for r in records
        ]
        return torch.tensor(scores, dtype=torch.float32)

    def extra_repr(self) -> str:
        return f"model={self.predictor.name!r}, pool={self.pool!r}, kind={self.kind!r}"


def _metric_name(predictor: QFPredictor) -> str:
    """``"qf-gray"`` / ``"qf-rgb"`` / ``"qf"`` (another QF model) / ``"recon"`` (a reconstruction-quality model)."""
    if predictor.uses_magnitude:
        return "recon"
    return f"qf-{predictor.name}" if predictor.name in ("gray", "rgb") else "qf"


def _record_kind(record) -> str | None:
    kind = getattr(record, "kind", None)
    return kind if kind in ("photo", "mri") else None


def _torchmetrics():
    try:
        import torchmetrics
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "mriqa.metric.QFScore needs torchmetrics: pip install 'torchmetrics>=1.3' "
            "(or: pip install 'mriqa[lightning]')"
        ) from None
    return torchmetrics


def _make_qfscore_class():
    torchmetrics = _torchmetrics()

    class QFScore(torchmetrics.Metric):
        """Mean QF score of all images seen (a ``torchmetrics.Metric``; higher is better, range [0, 1]); with
        ``model="recon"``, the mean predicted SSIM of the reconstruction-quality model.

        ``update(preds)``: ``preds`` ``[B, 1, H, W]``, ``[B, 3, H, W]`` or ``[B, H, W]`` (torch or numpy;
        no gradients are kept). ``compute()`` -> float32 scalar tensor, the mean over all images since the last
        ``reset()``; states ``total`` (sum of scores) and ``count`` are summed across processes.
        Arguments as :class:`QFMetric`; further keyword arguments go to ``torchmetrics.Metric``.
        """

        is_differentiable = False
        higher_is_better = True
        full_state_update = False
        plot_lower_bound = 0.0
        plot_upper_bound = 1.0

        def __init__(self, model="gray", pool="mean", kind=None, device=None, batch_size=16, **kwargs):
            super().__init__(**kwargs)
            self.pool = pooling.check_pool(pool)
            self.kind = kind
            # not a sub-module: the QF network's weights must not end up in the training checkpoint
            object.__setattr__(self, "predictor", _predictor(model, device, batch_size))
            self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

        def update(self, preds) -> None:
            scores = self.predictor.score(_as_batch(preds), pool=self.pool, kind=self.kind)
            scores = torch.as_tensor(scores).to(device=self.total.device, dtype=torch.float64)
            self.total += scores.sum()
            self.count += scores.numel()

        def compute(self) -> torch.Tensor:
            if int(self.count) == 0:
                return torch.tensor(float("nan"), dtype=torch.float32, device=self.total.device)
            return (self.total / self.count).to(torch.float32)

    QFScore.__module__ = __name__
    QFScore.__qualname__ = "QFScore"
    return QFScore


_QFSCORE = None


def __getattr__(name):
    # QFScore is built on first access so that importing mriqa.metric does not need torchmetrics
    global _QFSCORE
    if name == "QFScore":
        if _QFSCORE is None:
            _QFSCORE = _make_qfscore_class()
        return _QFSCORE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

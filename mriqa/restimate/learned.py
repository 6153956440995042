"""Learned R estimator: the QF predictor's backbone fine-tuned to regress log R.

Model: :class:`mriqa.models.qfnet.QFNet` (gray, width 32, receptive field 28 px, output stride 4), initialised
from the shipped ``qf-gray`` weights; its last 1x1 convolution's *pre-sigmoid* output (:meth:`QFNet.logits`) is
read as a map of ``log R`` (``[N, 1, h, w]``, one estimate per 28 x 28 receptive field). The image estimate is
the foreground-weighted mean of the map (:func:`mriqa.pooling.pool_weights` ``"foreground"``); the weighted
standard deviation of the map (``spread``) is an out-of-distribution signal. A linear recalibration
``a + b * pooled`` fitted on validation (metadata ``recalibration``) undoes the MSE shrinkage towards the
mean; when the caller says which reconstruction method made the input, that method's own pair and half-width
(``recalibration_by_method``, ``halfwidth_by_method``) are used instead. Input: the QF predictor's
normalisation exactly (:mod:`mriqa.normalize`: MRI magnitude / its 99.5th percentile per slice, 8-bit
quantised), so ``QFPredictor.prepare`` output feeds both estimators.

Weights: ``mriqa/weights/r-learned.safetensors`` (safetensors, no pickle), trained by
``mriqa train-r --config configs/r-learned-aug.yaml`` (:mod:`mriqa.restimate.train`); the metadata
key ``r_estimation`` holds the conformal half-width, the OOD thresholds and the validation scores.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recon.errors import InputError
from mriqa.restimate import REstimator, intervals, ood

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "r-learned.safetensors"
TASK = "log-r"
#: pooled log R outside this range means the network extrapolates beyond the training R (2..12)
LOG_R_RANGE = (float(np.log(1.5)), float(np.log(14.0)))


class LogitMapNet(nn.Module):
    """A network whose pre-sigmoid map ``net.logits(x)`` is read as a log R map: ``forward(x) -> [N, 1, h, w]``.

    Exposes the geometry attributes :class:`mriqa.predictor.QFPredictor` needs, so the predictor's input
    handling and batching are reused unchanged."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    in_channels = property(lambda self: self.net.in_channels)
    receptive_field = property(lambda self: self.net.receptive_field)
    output_stride = property(lambda self: self.net.output_stride)
    min_input_size = property(lambda self: self.net.min_input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.logits(x)


class LogRNet(LogitMapNet):
    """A QFNet as a log R map (inputs ``[N, 1, H, W]`` in [0, 1]); padding-free, so it also exposes the output
    geometry the predictor's tiling uses."""

    output_offset = property(lambda self: self.net.output_offset)

    def output_size(self, n: int) -> int:
        return self.net.output_size(n)

    def output_shape(self, h: int, w: int):
        return self.net.output_shape(h, w)


def apply_recalibration(log_r, recal: dict | None):
    """``a + b * log_r`` with ``recal = {"a", "b"}`` (fitted on validation by the trainer), or ``log_r``."""
    log_r = np.asarray(log_r, dtype=np.float64)
    return log_r if not recal else recal["a"] + recal["b"] * log_r


def pooled(maps, x, geometry) -> tuple[np.ndarray, np.ndarray]:
    """Foreground-weighted mean and standard deviation of log R maps ``[N, h, w]`` (numpy) for inputs ``x``
    ``[N, 1, H, W]`` in [0, 1] -> ``([N], [N])``."""
    from mriqa import pooling

    maps = np.asarray(maps, dtype=np.float64)
    w = pooling.pool_weights(maps, "foreground", image=np.asarray(x[:, 0]), geometry=geometry)
    w[w.sum(axis=(-2, -1)) <= 0] = 1.0
    mean = pooling.weighted_mean(maps, w)
    var = pooling.weighted_mean((maps - mean[:, None, None]) ** 2, w)
    return mean, np.sqrt(np.maximum(var, 0.0))


class LearnedREstimator(REstimator):
    """The fine-tuned network with its interval and OOD thresholds (metadata ``r_estimation``).

    ``predictor``: a :class:`mriqa.predictor.QFPredictor` around :class:`LogRNet` (its input handling, batching
    and tiling; its "maps" are log R maps)."""

    name = "learned"
    #: what a subclass changes: the network wrapper, default weights, metadata task, how the weights are
    #: read, and how the errors name the model and its training config
    wrap = LogRNet
    weights = WEIGHTS
    task = TASK
    model_kind = ""
    config = "configs/r-learned-aug.yaml"

    def __init__(self, net, info: dict, batch_size: int = 16, training: dict | None = None):
        from mriqa.predictor import QFPredictor

        self.info = dict(info)
        self.training = dict(training or {})  # the weights' "training" metadata (config, data size)
        self.predictor = QFPredictor(self.wrap(net), name=f"r-{self.name}", device="cpu", batch_size=batch_size)

    @staticmethod
    def read_net(path):
        """``(network, metadata)`` of a weights file."""
        from mriqa.weights_io import load_qfnet

        return load_qfnet(path)

    @property
    def wrapper(self):
        """The old name of :attr:`predictor` (scripts written before the R estimator protocol use it)."""
        return self.predictor

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, batch_size: int = 16) -> "LearnedREstimator":
        """Load weights saved by the trainer (safetensors); InputError if missing or not this R model."""
        path = Path(path) if path is not None else cls.weights
        if not path.is_file():
            raise InputError(path, f"{cls.name} R estimator weights not found (train: mriqa train-r "
                                   f"--config {cls.config})")
        net, meta = cls.read_net(path)
        if meta.get("task") != cls.task or not isinstance(meta.get("r_estimation"), dict):
            raise InputError(path, f"not an {cls.model_kind}R-estimation model (metadata task must be {cls.task!r})")
        training = meta.get("training") if isinstance(meta.get("training"), dict) else None
        return cls(net, meta["r_estimation"], batch_size=batch_size, training=training)

    @torch.no_grad()
    def log_r_maps(self, x: torch.Tensor) -> np.ndarray:
        """log R maps ``[N, h, w]`` (numpy float32) of model inputs ``x`` ``[N, 1, H, W]`` in [0, 1]."""
        return self.predictor.predict_input(x).float().cpu().numpy()

    def calibration_for(self, recon_method: str | None) -> tuple[dict | None, float]:
        """``(recalibration, conformal half-width)`` for inputs made by ``recon_method`` (``"zf"``, ``"sense"``,
        ``"modl"``): that method's own pair when the metadata has one (fitted on its validation reconstructions),
        else the pair fitted on all methods."""
        by_method = self.info.get("recalibration_by_method") or {}
        if recon_method in by_method:
            return by_method[recon_method], float(self.info["halfwidth_by_method"][recon_method])
        return self.info.get("recalibration"), float(self.info["halfwidth"])

    def pool(self, maps, x) -> tuple[np.ndarray, np.ndarray]:
        """``(pooled log R [N], spread [N])`` of maps ``[N, h, w]`` for inputs ``x``: :func:`pooled`."""
        geom = self.predictor.geometry(tuple(x.shape[-2:]), tuple(np.shape(maps)[-2:]))
        return pooled(maps, x, geom)

    def point_estimate(self, x, recon_method: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(log_r, raw, spread)``, numpy ``[N]``, for model inputs ``x`` ``[N, 1, H, W]``: the network's pooled
        log R (``raw``), recalibrated for ``recon_method`` (``log_r``), and its spread; no interval and no
        out-of-distribution checks (:meth:`estimate` adds them; what a score that only needs R uses)."""
        raw, spread = self.pool(self.log_r_maps(x), x)
        return apply_recalibration(raw, self.calibration_for(recon_method)[0]), raw, spread

    def estimate(self, x, colour=None, recon_method: str | None = None) -> dict:
        """Estimate R for model inputs ``x`` ``[N, 1, H, W]`` in [0, 1]; ``recon_method`` (as written by
        ``mriqa recon``) selects that method's recalibration and interval when the weights have one
        (:meth:`calibration_for`); unknown or None uses the one fitted on all methods. Returns numpy ``[N]``
        arrays ``r_est``, ``r_low``, ``r_high``, ``log_r``, ``spread``, ``halfwidth`` and a list ``ood``
        (reason or None)."""
        log_r, raw, spread = self.point_estimate(x, recon_method)
        halfwidth = self.calibration_for(recon_method)[1]
        r_est, r_low, r_high = intervals.interval(log_r, halfwidth)
        reasons = ood.image_checks(x, colour, self.info["min_correlation"])
        log_range = self.info.get("log_r_range", LOG_R_RANGE)
        for i in range(len(log_r)):
            if reasons[i] is not None:
                continue
            if spread[i] > self.info["max_spread"]:
                reasons[i] = (f"inconsistent local estimates (spread of log R {spread[i]:.2f} > "
                              f"{self.info['max_spread']:.2f})")
            elif not log_range[0] <= raw[i] <= log_range[1]:
                reasons[i] = f"network output R {np.exp(raw[i]):.2f} outside the trained range"
        for i, why in enumerate(reasons):
            if why is not None:
                r_low[i], r_high[i] = intervals.R_BOUNDS
        return {"r_est": r_est, "r_low": r_low, "r_high": r_high, "log_r": log_r, "spread": spread,
                "ood": reasons, "halfwidth": np.full(len(log_r), halfwidth)}

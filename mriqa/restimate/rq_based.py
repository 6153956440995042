"""R estimator on the reconstruction-quality backbone: RQNet's pre-sigmoid map read as a map of log R.

Why this network and not the QF one (:mod:`mriqa.restimate.learned`): undersampling is not local. An
equispaced mask at R folds the object onto copies FOV / R apart and a random mask spreads streaks along the
whole phase-encode axis; the QF network sees 28 px. RQNet (:mod:`mriqa.models.reconq`) sees 119 px through its
convolutions, gives every cell statistics of the whole image, and optionally (``spectral``) profiles of the
image's own 2-D spectrum, where an acquisition's sampling density shows. It is trained
(:mod:`mriqa.restimate.train_rq`) in two stages: from the shipped ``recon`` quality weights (a shared backbone)
on the reconstruction-quality data of 31 subjects (``configs/r-rq.yaml``; zero-filled, CG-SENSE, L1-wavelet and
MoDL, random / equispaced / Poisson masks, R 2..16), then fine-tuned with simulations of the same subjects that
look more like real scans (``configs/r-rq-look.yaml``: the anatomy filling the field of view, random tissue
contrast, receive shading), every image flipped or transposed at random, so the phase-encode direction need not
be known.

Image estimate: the mean of the map (the training rule); ``spread``, the map's standard deviation, is an
out-of-distribution signal. Input: :func:`mriqa.models.reconq.normalize_magnitude` (magnitude / its 99.5th
percentile, clipped to [0, 2], not quantised), so the estimator's ``predictor.prepare`` gives inputs in
[0, 2], not [0, 1]. Calibration (metadata ``r_estimation``, same keys as the learned estimator's: linear
recalibration, per-method pairs, conformal half-widths, OOD thresholds) is fitted on validation subjects.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mriqa.restimate.learned import LearnedREstimator, LogitMapNet

WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "r-rq.safetensors"
TASK = "log-r-rqnet"


class LogRRQNet(LogitMapNet):
    """An RQNet whose pre-sigmoid map is a log R map: ``forward(normalised [N, 1, H, W]) -> [N, 1, h, w]``
    (padded convolutions: no output geometry for tiling)."""

    input_normalization = "magnitude"


def pooled_mean(maps) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of log R maps ``[N, h, w]`` -> ``([N], [N])`` (the training rule)."""
    maps = np.asarray(maps, dtype=np.float64)
    return maps.mean(axis=(-2, -1)), maps.std(axis=(-2, -1))


@torch.no_grad()
def outlier_features_of_input(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """What the outlier head reads, ``[N, 4 w + 2 (16 + lags)]``, of normalised inputs ``[N, 1, H, W]``: the
    network's whole-image statistics and the spectral profiles (:func:`mriqa.models.reconq.spectral_features`,
    16 bins); one forward pass per image (any sizes), eval mode."""
    from mriqa.models.reconq import spectral_features

    was = model.training
    model.eval()
    out = [torch.cat([model.logits_and_stats(x[i:i + 1].float())[1], spectral_features(x[i:i + 1].float(), 16)], 1)
           for i in range(len(x))]
    model.train(was)
    return torch.cat(out).double().numpy()


class RQREstimator(LearnedREstimator):
    """The RQNet-backbone estimator (name ``"rq"``); the interval, recalibration and OOD rules are
    :class:`~mriqa.restimate.learned.LearnedREstimator`'s, the pooling is the map's plain mean."""

    name = "rq"
    wrap = LogRRQNet
    weights = WEIGHTS
    task = TASK
    model_kind = "RQNet "
    config = "configs/r-rq-look.yaml"

    @staticmethod
    def read_net(path):
        from mriqa.weights_io import load_rqnet

        return load_rqnet(path)

    def pool(self, maps, x) -> tuple[np.ndarray, np.ndarray]:
        return pooled_mean(maps)

    def outlier_logits(self, x) -> np.ndarray:
        """The outlier head's logits ``[N]`` (:func:`mriqa.restimate.ood.outlier_logits`) of model inputs ``x``
        ``[N, 1, H, W]`` (already normalised): :func:`outlier_features_of_input`."""
        from mriqa.restimate.ood import outlier_logits

        return outlier_logits(outlier_features_of_input(self.predictor.model.net, x), self.info["outlier_head"])

    def estimate(self, x, colour=None, recon_method: str | None = None) -> dict:
        """:meth:`LearnedREstimator.estimate`, plus two checks: an image more than
        :data:`~mriqa.restimate.ood.MAX_FLAT_FRACTION` of whose object is exactly flat (a drawing), or whose
        whole-image statistics look unlike the training reconstructions' (the outlier head's logit above its
        threshold), is flagged and gets :data:`~mriqa.restimate.intervals.R_BOUNDS`."""
        from mriqa.restimate.intervals import R_BOUNDS

        from mriqa.restimate.ood import MAX_FLAT_FRACTION, flat_fraction

        out = super().estimate(x, colour=colour, recon_method=recon_method)
        head = self.info.get("outlier_head")
        z = self.outlier_logits(x) if head is not None else np.full(len(x), -np.inf)
        flat = flat_fraction(x)
        for i in range(len(z)):
            if out["ood"][i] is not None:
                continue
            if flat[i] > MAX_FLAT_FRACTION:
                out["ood"][i] = f"piecewise-constant picture ({100 * flat[i]:.0f} % of the object exactly flat)"
            elif head is not None and z[i] > head["threshold"]:
                out["ood"][i] = (f"unlike the training reconstructions (outlier score {z[i]:.1f} > "
                                 f"{head['threshold']:.1f})")
            else:
                continue
            out["r_low"][i], out["r_high"][i] = R_BOUNDS
        return out

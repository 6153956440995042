"""RQNet: a reference-free quality map of an MRI reconstruction (magnitude in, SSIM-like map and score out).

Trained (``mriqa train-rq``) to predict the local SSIM of a reconstruction against the fully sampled reference
it never sees (``mriqa.recon_quality``). Higher is better; the whole-image score is the mean of the map, in
[0, 1].

Architecture (all convolutions 3 x 3 with zero padding, ReLU; widths ``w`` = ``width``)::

    stage   op                                         resolution   channels
    e1      conv, stride 2                             1/2          1  -> w
    e2      conv, stride 2; conv                       1/4          w  -> w
    e3      conv, stride 2; conv                       1/8          w  -> 2w
    e4      conv, stride 2; conv dilation 2            1/16         2w -> 2w
    global  [mean, std] over e4's positions -> linear -> 2w, added at every 1/8 position
    head    up(e4) + e3 + global -> conv (2w -> w) -> conv 1 x 1 -> sigmoid     map at 1/8

Why this shape: undersampling artefacts are not local. An equispaced mask at R folds the object onto copies
FOV / R apart (64 px at R = 2 on a 128 px image, 160 px on 320 px) and a random mask spreads incoherent streaks
along the whole phase-encode axis. The convolutions reach 119 px (receptive field of e4, computed by
:func:`receptive_field`), and the global branch gives every position statistics of the whole image, so a
position can tell a replica or streak from anatomy. Computing at 1/2 resolution and below keeps it cheap (a
320 x 320 slice costs about 0.5 GFLOP).

Input normalisation (:func:`normalize_magnitude`, identical at training and inference, differentiable for the
quality loss): magnitude divided by its own 99.5th percentile over the whole image, clipped to [0, 2] (the QF
predictors' ``kind="mri"`` rule of :mod:`mriqa.normalize`, without its 8-bit quantisation, which would erase
the noise floor the score must see, and with headroom above 1 so bright artefacts are not clipped away).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

ARCH = "rqnet"
ROBUST_PERCENTILE = 99.5
CLIP = 2.0
OUTPUT_STRIDE = 8

__all__ = ["ARCH", "RQNet", "RQConfig", "normalize_magnitude", "receptive_field"]


@dataclass
class RQConfig:
    width: int = 32
    in_channels: int = 1

    @classmethod
    def from_dict(cls, d: dict | None) -> "RQConfig":
        from recon.errors import InputError

        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(None, f"unknown RQNet settings {unknown}")
        return cls(**d)


def normalize_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` (or ``[B, H, W]``) magnitudes of any scale -> ``[B, 1, H, W]`` float32, each image divided
    by its 99.5th percentile (its maximum when that is 0) and clipped to [0, 2]. Differentiable."""
    if x.ndim == 3:
        x = x[:, None]
    x = x.float().abs()
    flat = x.flatten(1)
    # kthvalue is much faster than quantile on the CPU and gives the same order statistic
    k = max(1, int(round(flat.shape[1] * ROBUST_PERCENTILE / 100.0)))
    scale = flat.kthvalue(k, dim=1).values
    scale = torch.where(scale > 0, scale, flat.amax(1)).clamp_min(1e-12)
    return (x / scale.reshape(-1, 1, 1, 1)).clamp(0.0, CLIP)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation)


class RQNet(nn.Module):
    """See the module docstring. ``forward(x)``: normalised ``[B, 1, H, W]`` -> quality map ``[B, 1, h, w]`` in
    [0, 1] (``h = ceil(H / 8)``); :meth:`score` pools it to ``[B]``."""

    output_stride = OUTPUT_STRIDE
    #: smallest input side (pixels): four stride-2 stages leave at least 2 x 2 positions for the global statistics
    min_input_size = 32
    #: how a predictor must prepare inputs: :func:`normalize_magnitude` on the magnitude (not mriqa.normalize's
    #: 8-bit [0, 1] windowing of the QF models)
    input_normalization = "magnitude"

    def __init__(self, config: RQConfig | dict | None = None, **overrides):
        super().__init__()
        cfg = config if isinstance(config, RQConfig) else RQConfig.from_dict(config)
        cfg = RQConfig(**{**asdict(cfg), **overrides})
        self.config = asdict(cfg)
        w = cfg.width
        self.e1 = _conv(cfg.in_channels, w, 2)
        self.e2 = nn.ModuleList([_conv(w, w, 2), _conv(w, w)])
        self.e3 = nn.ModuleList([_conv(w, 2 * w, 2), _conv(2 * w, 2 * w)])
        self.e4 = nn.ModuleList([_conv(2 * w, 2 * w, 2), _conv(2 * w, 2 * w, dilation=2)])
        self.glob = nn.Linear(4 * w, 2 * w)
        self.head = nn.Sequential(_conv(2 * w, w), nn.ReLU(inplace=True), nn.Conv2d(w, 1, 1))

    @property
    def in_channels(self) -> int:
        return int(self.config["in_channels"])

    @property
    def receptive_field(self) -> int:
        """Pixels seen by one map cell through the convolutions (the global branch sees the whole image)."""
        return receptive_field(self)

    @staticmethod
    def _stage(x: torch.Tensor, convs: nn.ModuleList) -> torch.Tensor:
        for conv in convs:
            x = F.relu(conv(x), inplace=True)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = F.relu(self.e1(x), inplace=True)
        f2 = self._stage(f1, self.e2)
        f3 = self._stage(f2, self.e3)
        f4 = self._stage(f3, self.e4)
        stats = torch.cat([f4.mean((2, 3)), f4.flatten(2).std(2, unbiased=False)], 1)
        g = self.glob(stats)[:, :, None, None]
        up = F.interpolate(f4, size=f3.shape[-2:], mode="nearest")
        return torch.sigmoid(self.head(F.relu(f3 + up + g)))

    @staticmethod
    def score(quality_map: torch.Tensor) -> torch.Tensor:
        """Whole-image score ``[B]``: the mean of the map."""
        return quality_map.flatten(1).mean(1)


def receptive_field(model: RQNet | None = None) -> int:
    """Receptive field (pixels) of the deepest convolution, from the layer list."""
    model = model or RQNet()
    rf, jump = 1, 1
    layers = [model.e1, *model.e2, *model.e3, *model.e4]
    for conv in layers:
        k = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
        rf += (k - 1) * jump
        jump *= conv.stride[0]
    return rf

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
    (spectral, optional: the image's own spectrum profiles -> linear -> 2w, added likewise)
    (fine, optional: conv at full resolution (1 -> f), conv stride 2 (f -> w), added to e1's output)
    head    up(e4) + e3 + global -> conv (2w -> w) -> conv 1 x 1 -> sigmoid     map at 1/8
    (``whole_image=False``: the global and spectral vector is left out of the head; the map is local evidence)

The pre-sigmoid map (:meth:`RQNet.logits`) is what other heads read: the R estimator
(:mod:`mriqa.restimate.rq_based`) trains it as a map of log R.

Why this shape: undersampling artefacts are not local. An equispaced mask at R folds the object onto copies
FOV / R apart (64 px at R = 2 on a 128 px image, 160 px on 320 px) and a random mask spreads incoherent streaks
along the whole phase-encode axis. The convolutions reach 119 px (receptive field of e4, computed by
:func:`receptive_field`), and the global branch gives every position statistics of the whole image, so a
position can tell a replica or streak from anatomy. Computing at 1/2 resolution and below keeps it cheap (a
320 x 320 slice costs about 0.5 GFLOP).

``spectral`` (default 0 = off): the number of bins of :func:`spectral_features`, profiles of the normalised
magnitude's 2-D power spectrum along each image axis and their autocorrelation, given to the global branch
(the sampling density of an acquisition shows in its image's spectrum: an energy deficit along phase-encode,
a comb for equispaced masks).

``fine`` (default 0 = off): channels of a full-resolution stem beside ``e1`` (which starts at stride 2):
pixel-scale texture (the noise and residual aliasing of a reconstruction at low R) reaches the network.

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

__all__ = ["ARCH", "RQNet", "RQConfig", "normalize_magnitude", "receptive_field", "spectral_features"]
#: lags (in spectral samples) of the profile autocorrelation: an equispaced mask at R repeats every R lines
SPECTRAL_LAGS = tuple(range(1, 17))


@dataclass
class RQConfig:
    width: int = 32
    in_channels: int = 1
    spectral: int = 0
    fine: int = 0
    #: add the whole-image vector (global statistics + spectral branch) to every map cell; False: local evidence
    #: only (the statistics are still computed, for out-of-distribution checks)
    whole_image: bool = True

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


def spectral_features(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Spectrum features of normalised magnitudes ``[B, 1, H, W]`` -> ``[B, 2 * (bins + len(SPECTRAL_LAGS))]``.

    Per image axis (rows first, then columns): the log mean power of the mean-free image's orthonormal 2-D FFT
    as a function of the spatial frequency along that axis (averaged over the other axis and over +-k), resampled
    to ``bins`` values from DC to Nyquist and centred on its mean (a shape, scale-free), then the autocorrelation
    of the same profile after removing its smooth trend (a 5-sample moving average) at
    :data:`SPECTRAL_LAGS`: a peak at lag R marks an equispaced mask at R. Size-independent by construction."""
    x = x - x.mean((-2, -1), keepdim=True)
    power = torch.fft.fft2(x[:, 0], norm="ortho").abs() ** 2
    out = []
    for axis in (-2, -1):
        prof = power.mean(dim=-1 if axis == -2 else -2)            # [B, N]: power vs frequency along ``axis``
        n = prof.shape[-1]
        half = n // 2 + 1
        folded = 0.5 * (prof[:, :half] + torch.roll(prof.flip(-1), 1, -1)[:, :half])
        logp = torch.log(folded + 1e-8)
        coarse = F.interpolate(logp[:, None], size=bins, mode="linear", align_corners=True)[:, 0]
        out.append(coarse - coarse.mean(-1, keepdim=True))
        trend = F.avg_pool1d(F.pad(logp[:, None], (2, 2), mode="replicate"), 5, stride=1)[:, 0]
        detail = logp - trend
        detail = detail - detail.mean(-1, keepdim=True)
        var = (detail ** 2).mean(-1).clamp_min(1e-8)
        acf = [(detail[:, :-lag] * detail[:, lag:]).mean(-1) / var if lag < half else torch.zeros_like(var)
               for lag in SPECTRAL_LAGS]
        out.append(torch.stack(acf, -1))
    return torch.cat(out, -1)


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
        if cfg.fine:
            self.fine = nn.Sequential(_conv(cfg.in_channels, cfg.fine), nn.ReLU(inplace=True),
                                      _conv(cfg.fine, w, 2))
        if cfg.spectral:
            self.spec = nn.Sequential(nn.Linear(2 * (cfg.spectral + len(SPECTRAL_LAGS)), 2 * w),
                                      nn.ReLU(inplace=True), nn.Linear(2 * w, 2 * w))
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
        return torch.sigmoid(self.logits(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid map ``[B, 1, ceil(H / 8), ceil(W / 8)]`` of normalised ``x`` ``[B, 1, H, W]``."""
        return self.logits_and_stats(x)[0]

    def logits_and_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pre-sigmoid map, global statistics [B, 4 w])``: the second is what the global branch reads (mean
        and std of the deepest features), a description of the whole image (used for out-of-distribution
        checks)."""
        parts = self.parts(x)
        vector = parts["global"] + parts["spectral"] if self.config.get("whole_image", True) else None
        return self.head_of(parts, vector), parts["stats"]

    def parts(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the head combines, for normalised ``x`` ``[B, 1, H, W]``: ``local`` (up(e4) + e3, ``[B, 2w, h, w]``),
        the whole-image vector's ``global`` and ``spectral`` parts (``[B, 2w]``; zeros without the spectral
        branch) and ``stats`` (what the global branch reads)."""
        f1 = self.e1(x)
        if self.config["fine"]:
            f1 = f1 + self.fine(x)
        f1 = F.relu(f1, inplace=True)
        f2 = self._stage(f1, self.e2)
        f3 = self._stage(f2, self.e3)
        f4 = self._stage(f3, self.e4)
        stats = torch.cat([f4.mean((2, 3)), f4.flatten(2).std(2, unbiased=False)], 1)
        g = self.glob(stats)
        spectral = (self.spec(spectral_features(x, int(self.config["spectral"]))) if self.config["spectral"]
                    else torch.zeros_like(g))
        local = f3 + F.interpolate(f4, size=f3.shape[-2:], mode="nearest")
        return {"local": local, "global": g, "spectral": spectral, "stats": stats}

    def head_of(self, parts: dict[str, torch.Tensor], vector: torch.Tensor | None) -> torch.Tensor:
        """The pre-sigmoid map from :meth:`parts`' ``local`` plus a whole-image ``vector`` ``[B, 2w]`` added to
        every cell (None: none)."""
        local = parts["local"]
        return self.head(F.relu(local if vector is None else local + vector[:, :, None, None]))

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

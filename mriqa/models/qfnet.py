"""QFNet: a compact, fully convolutional JPEG quality-factor (QF) predictor.

Architecture (seven convolutions, all *unpadded* ("valid"), so that no output value ever sees zero padding)::

    layer  op                                   channels (width w)
    c1     conv 3x3  -> BN -> ReLU              in -> w
    c2     conv 3x3  -> BN -> ReLU -> pool 2    w  -> w
    c3     conv 3x3  -> BN -> ReLU -> pool 2    w  -> 2w
    c4     conv 3x3  -> BN -> ReLU              2w -> 4w
    c5     conv 3x3  -> BN -> ReLU              4w -> 4w
    c6     conv 1x1  -> BN -> ReLU              4w -> w        (channel reduction)
    c7     conv 1x1  -> sigmoid                 w  -> 1        (channel reduction; QF / 100 in [0, 1])

``pool 2`` is ``MaxPool2d(2, stride=2)``, or with ``blurpool=True`` the anti-aliased version of Zhang (2019),
"Making convolutional networks shift-invariant again": ``MaxPool2d(2, stride=1)`` followed by a fixed
3x3 binomial blur ([1, 2, 1] outer [1, 2, 1] / 16) applied with stride 2 (depthwise, unpadded).

Geometry (computed by :func:`receptive_field_of` from the layer list and checked by a gradient test):

- max-pooling (default): **receptive field 28 x 28 pixels, output stride 4**; an input of H x W gives a map of
  ``(floor((floor((H - 4) / 2) - 2) / 2) - 4)`` rows, i.e. about ``(H - 28) / 4 + 1``; output cell ``(i, j)``
  looks at input rows ``4 i .. 4 i + 27`` (centre ``4 i + 13.5``). Minimum input size: 28 x 28.
- ``blurpool=True``: **receptive field 34 x 34 pixels, output stride 4**; minimum input size 34 x 34;
  output cell ``i`` looks at rows ``4 i .. 4 i + 33``.

The receptive field covers more than three 8 x 8 JPEG blocks in each direction, so every output value sees at
least two block boundaries, whatever the block-grid phase.

Classification mode (the paper's 5-class experiment): ``num_classes=5`` makes ``c7`` output 5 logits per
cell (classes = QF ``class_qfs`` = 0, 20, 40, 60, 80); :meth:`QFNet.logits` returns them and
:meth:`QFNet.forward` still returns a ``[B, 1, h, w]`` map in [0, 1]: the softmax-expected QF / 100.

Calibration (optional, ``calibration={"x": [...], "y": [...]}``): a monotone piecewise-linear map applied to
every output value after the sigmoid, fitted after training by isotonic regression of the true QF on the
whole-image score of validation images (:func:`mriqa.train_qf.calibrate`); it corrects the regression towards
the mean of an MSE-trained map (cells that see flat content cannot tell the QF and predict the prior mean).
It is part of ``config`` and of the weights file; ``raw_map`` gives the uncalibrated map.

Input: ``x`` float ``[B, C, H, W]`` in [0, 1], normalised by :mod:`mriqa.normalize` (C = 1 grayscale, C = 3 RGB).
Output: the QF map ``[B, 1, h, w]`` in [0, 1] (QF / 100). The whole-image score is a pooling of the map
(``mriqa.predictor``).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ARCH = "qfnet"


class BlurPool2d(nn.Module):
    """Depthwise fixed binomial blur (3x3, [1,2,1]x[1,2,1]/16) with stride 2, no padding (Zhang 2019)."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k2 = torch.outer(k, k)
        k2 = k2 / k2.sum()
        self.channels = channels
        # Not persistent: a fixed filter, not a learnt weight, so it is not part of the state dict.
        self.register_buffer("kernel", k2.expand(channels, 1, 3, 3).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel.to(dtype=x.dtype), stride=2, groups=self.channels)


def _pool(channels: int, blurpool: bool) -> nn.Module:
    if blurpool:
        return nn.Sequential(nn.MaxPool2d(2, stride=1), BlurPool2d(channels))
    return nn.MaxPool2d(2, stride=2)


def _kernel_stride(m: nn.Module) -> tuple[int, int] | None:
    """(kernel, stride) of a spatial layer, None for point-wise layers (BN, ReLU, ...)."""
    if isinstance(m, nn.Conv2d):
        return int(m.kernel_size[0]), int(m.stride[0])
    if isinstance(m, nn.MaxPool2d):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        s = m.stride if isinstance(m.stride, int) else m.stride[0]
        return int(k), int(s)
    if isinstance(m, BlurPool2d):
        return 3, 2
    return None


def receptive_field_of(modules) -> tuple[int, int]:
    """Receptive field (pixels) and output stride of a chain of unpadded layers, in order."""
    rf, jump = 1, 1
    for m in modules:
        ks = _kernel_stride(m)
        if ks is None:
            continue
        k, s = ks
        rf += (k - 1) * jump
        jump *= s
    return rf, jump


class QFNet(nn.Module):
    """Seven-convolution fully convolutional QF predictor; see the module docstring for the geometry.

    Args:
        in_channels: 1 (grayscale / MRI model) or 3 (RGB model).
        width: base number of channels ``w`` (channels are w, w, 2w, 4w, 4w, w, 1).
        blurpool: anti-aliased pooling (max-pool stride 1, then 3x3 binomial blur with stride 2).
        num_classes: 0 (regression, one sigmoid output) or the number of QF classes (classification).
        class_qfs: the QF of each class (default 0, 20, 40, 60, 80 for 5 classes).
    """

    arch = ARCH  # the name written into weights files (recon.io.weights.save_weights)

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        blurpool: bool = False,
        num_classes: int = 0,
        class_qfs: list[float] | None = None,
        calibration: dict | None = None,
    ):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if int(width) < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        w = int(width)
        self.in_channels = int(in_channels)
        self.width = w
        self.blurpool = bool(blurpool)
        self.num_classes = int(num_classes)
        if self.num_classes:
            default = [100.0 * i / self.num_classes for i in range(self.num_classes)]
            qfs = list(class_qfs) if class_qfs is not None else default
            if len(qfs) != self.num_classes:
                raise ValueError(f"class_qfs needs {self.num_classes} values, got {len(qfs)}")
            self.class_qfs = [float(q) for q in qfs]
            self.register_buffer("_class_values", torch.tensor(self.class_qfs) / 100.0, persistent=False)
        else:
            self.class_qfs = None
        self.calibration = None
        self.set_calibration(calibration)

        def block(cin, cout, k):
            return [nn.Conv2d(cin, cout, k, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        layers: list[nn.Module] = []
        layers += block(in_channels, w, 3)  # c1
        layers += block(w, w, 3)  # c2
        layers += [_pool(w, blurpool)]
        layers += block(w, 2 * w, 3)  # c3
        layers += [_pool(2 * w, blurpool)]
        layers += block(2 * w, 4 * w, 3)  # c4
        layers += block(4 * w, 4 * w, 3)  # c5
        layers += block(4 * w, w, 1)  # c6 (1x1)
        layers += [nn.Conv2d(w, max(1, self.num_classes), 1, bias=True)]  # c7 (1x1)
        self.features = nn.Sequential(*layers)
        flat = list(self._flat_modules())
        self._rf, self._stride = receptive_field_of(flat)
        assert sum(isinstance(m, nn.Conv2d) for m in flat) == 7

    def _flat_modules(self):
        for m in self.features.modules():
            if m is self.features or isinstance(m, nn.Sequential):
                continue
            yield m

    # ----------------------------------------------------------------------------------------------- geometry
    @property
    def receptive_field(self) -> int:
        """Receptive field of one output value, in input pixels (28 with max-pooling, 34 with blurpool)."""
        return self._rf

    @property
    def output_stride(self) -> int:
        """Distance in input pixels between neighbouring output values (4: two stride-2 pools)."""
        return self._stride

    @property
    def min_input_size(self) -> int:
        """Smallest input height/width that gives a map of at least 1 x 1 (equals the receptive field)."""
        n = 1
        while self.output_size(n) < 1:
            n += 1
        return n

    @property
    def output_offset(self) -> float:
        """Input coordinate of the centre of output cell 0: cell i is centred at ``offset + stride * i``."""
        return (self._rf - 1) / 2.0

    def output_size(self, n: int) -> int:
        """Map length for an input length ``n`` (the same for height and width); <= 0 if too small."""
        for m in self._flat_modules():
            ks = _kernel_stride(m)
            if ks is None:
                continue
            k, s = ks
            if n < k:
                return 0
            n = (n - k) // s + 1
        return n

    def output_shape(self, h: int, w: int) -> tuple[int, int]:
        return self.output_size(h), self.output_size(w)

    # ----------------------------------------------------------------------------------------------- config
    @property
    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"in_channels": self.in_channels, "width": self.width, "blurpool": self.blurpool}
        if self.num_classes:
            cfg.update(num_classes=self.num_classes, class_qfs=self.class_qfs)
        if self.calibration is not None:
            cfg["calibration"] = self.calibration
        return cfg

    def set_calibration(self, calibration: dict | None) -> None:
        """Install (or remove, with None) the monotone output map ``{"x": knots, "y": values}``."""
        if calibration is None:
            self.calibration = None
            self._calib = None
            return
        x = [float(v) for v in calibration["x"]]
        y = [float(v) for v in calibration["y"]]
        if len(x) != len(y) or len(x) < 2:
            raise ValueError("calibration needs x and y of the same length >= 2")
        if any(b <= a for a, b in zip(x, x[1:])) or any(b < a for a, b in zip(y, y[1:])):
            raise ValueError("calibration x must increase strictly and y must not decrease")
        self.calibration = {"x": x, "y": y}
        self._calib = (torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))

    def _apply_calibration(self, q: torch.Tensor) -> torch.Tensor:
        if self._calib is None:
            return q
        x, y = (t.to(q.device) for t in self._calib)
        v = q.to(torch.float64).clamp(float(x[0]), float(x[-1]))
        i = torch.searchsorted(x, v.contiguous(), right=True).clamp(1, len(x) - 1)
        x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
        return (y0 + (v - x0) / (x1 - x0) * (y1 - y0)).to(q.dtype).clamp(0, 1)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "QFNet":
        known = {"in_channels", "width", "blurpool", "num_classes", "class_qfs", "calibration"}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown QFNet config keys: {sorted(unknown)}")
        return cls(**{k: config[k] for k in known if k in config})

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ----------------------------------------------------------------------------------------------- forward
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid map ``[B, 1, h, w]`` (regression) or class logits ``[B, num_classes, h, w]``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} is smaller than the receptive field ({self.min_input_size} px)"
            )
        return self.features(x)

    def raw_map(self, x: torch.Tensor) -> torch.Tensor:
        """The uncalibrated QF map ``[B, 1, h, w]`` in [0, 1] (sigmoid, or softmax-expected class QF)."""
        z = self.logits(x)
        if self.num_classes:
            p = torch.softmax(z, dim=1)
            return (p * self._class_values.to(p.dtype).view(1, -1, 1, 1)).sum(dim=1, keepdim=True)
        return torch.sigmoid(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """QF map ``[B, 1, h, w]`` in [0, 1] (QF / 100) of ``x`` ``[B, C, H, W]`` in [0, 1] (calibrated)."""
        return self._apply_calibration(self.raw_map(x))

    def extra_repr(self) -> str:
        return f"receptive_field={self._rf}, output_stride={self._stride}"

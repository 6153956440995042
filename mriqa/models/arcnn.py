"""AR-CNN and SR-CNN backbones for artifact removal (QF paper section 5.3, Figs. 16-17).

AR-CNN (Dong, Deng, Loy & Tang, "Compression Artifacts Reduction by a Deep Convolutional Network", ICCV 2015):
four convolutions with kernels 9-7-1-5 and widths 64-32-16-C, ReLU after the first three::

    feature extraction   conv9x9  C  -> 64, ReLU
    feature enhancement  conv7x7  64 -> 32, ReLU
    mapping              conv1x1  32 -> 16, ReLU
    reconstruction       conv5x5  16 -> C

SR-CNN (Dong et al. 2014/2016, the 9-1-5 network): conv9x9 C -> 64, ReLU; conv1x1 64 -> 32, ReLU;
conv5x5 32 -> C. Here it is used as an artifact-removal network at the input's resolution (no upsampling).

All convolutions are "same"-padded (replicate padding), so the output has the input's size (the original
networks used valid convolutions and a cropped target). ``residual=True`` (our addition, the default in our
configs) predicts a correction added to the input and zero-initialises the last layer, so the untrained
network is the identity; ``residual=False`` is the papers' plain mapping (Gaussian init, std 1e-3 for the
last layer as in AR-CNN).

``forward(x [B, C, H, W], float, values in [0, 1]) -> [B, C, H, W]`` (not clamped). ``C`` = 1 (gray / MRI
magnitude) or 3 (RGB).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

ARCH = "arcnn"
# (kernel, width) per layer; the last width is the number of image channels
LAYOUTS = {
    "arcnn": ((9, 64), (7, 32), (1, 16), (5, None)),
    "srcnn": ((9, 64), (1, 32), (5, None)),
}


class ARCNN(nn.Module):
    """AR-CNN (``variant="arcnn"``, 9-7-1-5, 64-32-16-C) or SR-CNN (``variant="srcnn"``, 9-1-5, 64-32-C).

    Args:
        in_channels: 1 (gray) or 3 (RGB).
        variant: ``"arcnn"`` or ``"srcnn"``.
        residual: output = input + network(input) (our addition; identity at initialisation).
    """

    arch = ARCH

    def __init__(self, in_channels: int = 3, variant: str = "arcnn", residual: bool = True):
        super().__init__()
        if variant not in LAYOUTS:
            raise ValueError(f"variant must be one of {sorted(LAYOUTS)}, got {variant!r}")
        if int(in_channels) not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.in_channels, self.variant, self.residual = int(in_channels), variant, bool(residual)
        layers: list[nn.Module] = []
        cin = self.in_channels
        layout = LAYOUTS[variant]
        for i, (k, w) in enumerate(layout):
            cout = self.in_channels if w is None else w
            layers.append(nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="replicate"))
            if i < len(layout) - 1:
                layers.append(nn.ReLU(inplace=True))
            cin = cout
        self.body = nn.Sequential(*layers)
        last = self.body[-1]
        if self.residual:
            nn.init.zeros_(last.weight)
        else:
            nn.init.normal_(last.weight, std=1e-3)
        nn.init.zeros_(last.bias)

    @property
    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "variant": self.variant, "residual": self.residual}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ARCNN":
        unknown = set(config) - {"in_channels", "variant", "residual"}
        if unknown:
            raise ValueError(f"unknown ARCNN config keys: {sorted(unknown)}")
        return cls(**config)

    @property
    def receptive_field(self) -> int:
        """Side (pixels) of the receptive field: 1 + sum(k - 1) (AR-CNN 19, SR-CNN 13)."""
        return 1 + sum(k - 1 for k, _ in LAYOUTS[self.variant])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        y = self.body(x)
        return x + y if self.residual else y


def load_arcnn(path, device: str | torch.device | None = None) -> tuple[ARCNN, dict]:
    """Load weights written by :func:`recon.io.weights.save_weights` -> ``(model in eval mode, metadata)``."""
    from recon.io.weights import load_network

    return load_network(path, ARCH, ARCNN.from_config, "ARCNN", device=device, default_config={})

"""QAIRN: Quality-Aware Image Restoration Network (Gedik, Venkataramanan & Bovik), our implementation.

A JPEG-deblocking residual U-Net whose skip connections pass through **Residual Quality Attention** (RQA)
blocks; the attention maps double as unsupervised local quality maps.

Trunk (FBCNN's residual U-Net with its quality-factor attention replaced by plain residual blocks, as the
paper describes; ``c = channels``, ``nb = n_res`` residual blocks ``conv3x3-ReLU-conv3x3 + x`` per stage)::

    x1 = head(x)                                  conv3x3 3 -> c0                          (full resolution)
    x2 = down1(x1)   nb x ResBlock(c0), conv2x2 stride 2 -> c1                            (1/2)
    x3 = down2(x2)   nb x ResBlock(c1), conv2x2 stride 2 -> c2                            (1/4)
    x4 = down3(x3)   nb x ResBlock(c2), conv2x2 stride 2 -> c3                            (1/8)
    y  = body(x4)    nb x ResBlock(c3)
    y  = up3(y + x4)               convT2x2 stride 2 -> c2, nb x ResBlock(c2)             (1/4)
    y  = up2(RQA3(x3, y))          convT2x2 -> c1, nb x ResBlock(c1)                      (1/2)
    y  = up1(RQA2(x2, y))          convT2x2 -> c0, nb x ResBlock(c0)                      (full)
    out = tail(RQA1(x1, y))        tail: conv3x3 c0 -> 3 (global_residual=False, the paper's layout)
    out = x + tail(RQA1(x1, y))    global_residual=True (our option): tail zero-initialised, starts as the identity
                                   (learns faster, but inverts the quality maps: see below)

FBCNN adds each encoder feature to the decoder (``x + x_skip``); QAIRN replaces the three additions at
1, 1/2 and 1/4 resolution by RQA blocks (the bottleneck addition stays a plain sum). The paper's Fig. 1 is not
in the text we have: the placement of the three blocks on the three skip connections, their numbering
(gamma_1 shallowest / full resolution, gamma_3 deepest / 1/4 resolution, matching the paper's "shallow map
gamma_1 ... deep map gamma_3") and the autoencoder's input are our reading.

RQA block (``RQAttention``): a small autoencoder on the concatenated ``[x_skip, x_decoder]`` -- conv3x3 ->
``att_depth`` x (conv3x3 stride 2 + ReLU) -> ``att_depth`` x (convT2x2 stride 2 + ReLU) -> conv3x3 -> 1 channel
-> sigmoid -- gives the single-channel map ``gamma in [0, 1]`` (at the block's resolution) that gates all
channels: ``x~ = gamma * x_skip + (1 - gamma) * x_decoder`` (paper eq. 1). High gamma: the encoder features
pass untouched (little to restore, good quality); low gamma: the decoder's restoration is used.

Why ``global_residual`` matters for the quality maps (measured): without it (the default, the paper's layout)
the identity ("nothing to restore") is the skip path, ``tail(head(x))``, so a good input gives a high gamma, as
the paper intends: with the shipped weights (``configs/qairn-ema.yaml``, the fourth training cycle) Q2 rises
with the JPEG QF (held-out Spearman +0.95 pooled, +1.00 per image) and falls with blur; the CPU-sized
``configs/qairn-cpu.yaml`` gave +0.79 with p = 4 and +0.86 with the selected p = 0.1. With a global residual
the identity is "zero correction", which the decoder branch supplies as easily, and the network learned the
gates backwards: ``configs/qairn-cpu-resid.yaml`` gave Q2 a Spearman of -0.96 with the JPEG QF (gamma_2 high
for strongly compressed inputs), and a gate prior (``train.gate_prior``, ``configs/qairn-cpu-gate.yaml``) only
flattened it. docs/qairn/README.md has the numbers.

Quality estimates (:meth:`QAIRN.quality`): ``Q_n`` is the **Minkowski pooling** of map ``gamma_n`` over the
image, taken on the restoration demand ``1 - gamma`` (with ``p > 1`` the worst regions dominate):
``Q_n = 1 - (mean((1 - gamma_n) ** p)) ** (1 / p)`` with exponent ``p`` (``minkowski_p``, 4 by default); Q in
[0, 1], higher = better quality. ``p = 1`` is the plain mean of gamma; a small ``p`` tends to the geometric mean of
``1 - gamma`` (the whole map counts). The paper does not give ``p``; the trainer can choose it on the validation
images (:func:`mriqa.train_qairn.select_pooling`; the shipped weights use p = 4, chosen so).

Any input size: the input is padded (replicate) on the bottom / right to a multiple of :attr:`QAIRN.multiple`
(16 by default: three stride-2 stages, and the autoencoder of the 1/4-resolution block halves twice more),
and the output and maps are cropped back (maps to ``ceil(H / 2^l) x ceil(W / 2^l)`` at level ``l``).

``forward(x [B, 3, H, W] in [0, 1]) -> (restored [B, 3, H, W], [gamma_1, gamma_2, gamma_3])``, each gamma
``[B, 1, h_l, w_l]``; the restored image is not clamped (training sees the raw output; :func:`run_qairn`
clamps to [0, 1]).
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mriqa.normalize import unit_range

ARCH = "qairn"
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "qairn.safetensors"


class ResBlock(nn.Module):
    """``x + conv3x3(relu(conv3x3(x)))`` (FBCNN's 'CRC' residual block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class RQAttention(nn.Module):
    """Residual Quality Attention: gamma = sigmoid(AE([skip, dec])); out = gamma * skip + (1 - gamma) * dec."""

    def __init__(self, channels: int, hidden: int = 16, depth: int = 2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(2 * channels, hidden, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth):
            layers += [nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth):
            layers += [nn.ConvTranspose2d(hidden, hidden, 2, stride=2), nn.ReLU(inplace=True)]
        self.encoder_decoder = nn.Sequential(*layers)
        self.out = nn.Conv2d(hidden, 1, 3, padding=1)
        nn.init.zeros_(self.out.bias)
        self.depth = depth

    def forward(self, skip: torch.Tensor, dec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder_decoder(torch.cat([skip, dec], dim=1))
        gamma = torch.sigmoid(self.out(z))
        return gamma * skip + (1.0 - gamma) * dec, gamma


def _down(cin: int, cout: int, nb: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(cin) for _ in range(nb)], nn.Conv2d(cin, cout, 2, stride=2))


def _up(cin: int, cout: int, nb: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, stride=2), *[ResBlock(cout) for _ in range(nb)])


class QAIRN(nn.Module):
    """QAIRN (see the module docstring).

    Args:
        in_channels: 3 (RGB).
        channels: trunk widths at 1, 1/2, 1/4, 1/8 resolution (FBCNN uses 64, 128, 256, 512).
        n_res: residual blocks per stage (FBCNN: 4).
        att_hidden: autoencoder width of the RQA blocks.
        att_depth: stride-2 stages in each RQA autoencoder.
        minkowski_p: exponent of the Minkowski pooling in :meth:`quality`.
        global_residual: ``out = x + tail(...)`` (zero-initialised tail) instead of the paper's ``tail(...)``.
    """

    arch = ARCH

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 128, 256),
        n_res: int = 2,
        att_hidden: int = 16,
        att_depth: int = 2,
        minkowski_p: float = 4.0,
        global_residual: bool = False,
    ):
        super().__init__()
        ch = [int(c) for c in channels]
        if len(ch) != 4 or min(ch) < 1:
            raise ValueError(f"channels must be 4 positive widths, got {channels}")
        if int(n_res) < 0 or int(att_depth) < 0 or int(att_hidden) < 1:
            raise ValueError("n_res and att_depth must be >= 0 and att_hidden >= 1")
        if not float(minkowski_p) > 0:
            raise ValueError(f"minkowski_p must be > 0, got {minkowski_p}")
        self.in_channels = int(in_channels)
        self.channels = ch
        self.n_res = int(n_res)
        self.att_hidden = int(att_hidden)
        self.att_depth = int(att_depth)
        self.minkowski_p = float(minkowski_p)
        self.global_residual = bool(global_residual)
        nb = self.n_res
        self.head = nn.Conv2d(self.in_channels, ch[0], 3, padding=1)
        self.down1, self.down2, self.down3 = _down(ch[0], ch[1], nb), _down(ch[1], ch[2], nb), _down(ch[2], ch[3], nb)
        self.body = nn.Sequential(*[ResBlock(ch[3]) for _ in range(nb)])
        self.up3, self.up2, self.up1 = _up(ch[3], ch[2], nb), _up(ch[2], ch[1], nb), _up(ch[1], ch[0], nb)
        self.rqa = nn.ModuleList([RQAttention(ch[i], self.att_hidden, self.att_depth) for i in range(3)])
        self.tail = nn.Conv2d(ch[0], self.in_channels, 3, padding=1)
        if self.global_residual:
            nn.init.zeros_(self.tail.weight)  # starts as the identity (restored = input); the tail learns first
            nn.init.zeros_(self.tail.bias)

    # ----------------------------------------------------------------------------------------------- config
    @property
    def multiple(self) -> int:
        """Input height / width are padded to a multiple of this (16 by default)."""
        return max(2 ** 3, 2 ** (2 + self.att_depth))

    @property
    def config(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "channels": list(self.channels), "n_res": self.n_res,
                "att_hidden": self.att_hidden, "att_depth": self.att_depth, "minkowski_p": self.minkowski_p,
                "global_residual": self.global_residual}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "QAIRN":
        known = {"in_channels", "channels", "n_res", "att_hidden", "att_depth", "minkowski_p", "global_residual"}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown QAIRN config keys: {sorted(unknown)}")
        return cls(**config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ----------------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
        x1 = self.head(xp)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        y = self.up3(self.body(x4) + x4)
        y, g3 = self.rqa[2](x3, y)
        y, g2 = self.rqa[1](x2, self.up2(y))
        y, g1 = self.rqa[0](x1, self.up1(y))
        out = xp + self.tail(y) if self.global_residual else self.tail(y)
        out = out[..., :h, :w]
        maps = [g[..., : math.ceil(h / 2 ** lvl), : math.ceil(w / 2 ** lvl)] for lvl, g in enumerate((g1, g2, g3))]
        return out, maps

    def quality(self, maps: Sequence[torch.Tensor], p: float | None = None) -> torch.Tensor:
        """``[B, 3]`` quality estimates Q1..Q3: ``1 - mean((1 - gamma) ** p) ** (1 / p)`` per map (``p``:
        :attr:`minkowski_p` unless given)."""
        return minkowski_quality(maps, self.minkowski_p if p is None else p)


def minkowski_quality(maps: Sequence[torch.Tensor], p: float = 4.0) -> torch.Tensor:
    """Minkowski pooling of attention maps ``[B, 1, h, w]`` -> ``[B, len(maps)]`` in [0, 1] (see
    :meth:`QAIRN.quality`)."""
    qs = []
    for g in maps:
        d = (1.0 - g.float()).clamp(0.0, 1.0).flatten(1)
        qs.append(1.0 - d.pow(p).mean(dim=1).pow(1.0 / p))
    return torch.stack(qs, dim=1)


# ----------------------------------------------------------------------------------------------- deepening
def deepen_state_dict(state: dict[str, torch.Tensor], old_n_res: int, new_n_res: int) -> dict[str, torch.Tensor]:
    """Map the weights of a QAIRN with ``old_n_res`` residual blocks per stage onto one with ``new_n_res`` (more)
    so that the deeper network computes **exactly the same function** (Net2DeeperNet-style growth).

    Each stage keeps its trained blocks in order; the extra blocks go after them (before the stride-2 conv of a
    ``down`` stage, at the end of ``up`` and ``body`` stages) and are identities: the returned dict holds only the
    trained tensors, and the caller zero-initialises ``conv2`` of each new block (:func:`zero_new_blocks`), so
    ``x + conv2(relu(conv1(x))) = x`` while ``conv1`` keeps its random start and gradients reach both convs.
    """
    old_n_res, new_n_res = int(old_n_res), int(new_n_res)
    if new_n_res < old_n_res:
        raise ValueError(f"cannot deepen from {old_n_res} to {new_n_res} residual blocks per stage")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        stage = parts[0]
        if stage in ("down1", "down2", "down3") and int(parts[1]) == old_n_res:  # the stride-2 conv
            parts[1] = str(new_n_res)
        out[".".join(parts)] = value
    return out


def new_block_names(old_n_res: int, new_n_res: int) -> list[str]:
    """Module names of the residual blocks that :func:`deepen_state_dict` adds (``"down1.2"``, ``"up3.3"``, ...)."""
    names = []
    for stage in ("down1", "down2", "down3", "body"):
        names += [f"{stage}.{i}" for i in range(old_n_res, new_n_res)]
    for stage in ("up3", "up2", "up1"):  # index 0 is the transposed conv
        names += [f"{stage}.{i + 1}" for i in range(old_n_res, new_n_res)]
    return names


@torch.no_grad()
def zero_new_blocks(model: "QAIRN", old_n_res: int) -> None:
    """Zero ``conv2`` of the blocks added when deepening from ``old_n_res``, so that each is the identity."""
    modules = dict(model.named_modules())
    for name in new_block_names(old_n_res, model.n_res):
        block = modules[name]
        if not isinstance(block, ResBlock):
            raise ValueError(f"{name} is not a residual block")
        nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(block.conv2.bias)


def load_deepened(model: "QAIRN", state: dict[str, torch.Tensor], old_config: dict[str, Any]) -> None:
    """Load ``state`` (a QAIRN of config ``old_config``) into ``model``, which may have more residual blocks per
    stage but must otherwise have the same config; the new blocks start as identities."""
    old = dict(old_config)
    new = dict(model.config)
    old_n, new_n = int(old.pop("n_res", 2)), int(new.pop("n_res"))
    old.setdefault("in_channels", new["in_channels"])
    if {k: old.get(k) for k in new if k != "minkowski_p"} != {k: v for k, v in new.items() if k != "minkowski_p"}:
        raise ValueError(f"only n_res may differ: {old_config} vs {model.config}")
    result = model.load_state_dict(deepen_state_dict(state, old_n, new_n), strict=False)
    added = tuple(n + "." for n in new_block_names(old_n, new_n))
    missing = [k for k in result.missing_keys if not k.startswith(added)]
    if result.unexpected_keys or missing:
        raise ValueError(f"tensors do not match: unexpected {result.unexpected_keys[:3]}, missing {missing[:3]}")
    zero_new_blocks(model, old_n)


# ----------------------------------------------------------------------------------------------- weights
def resolve_qairn_weights(path: str | os.PathLike | None = None) -> Path:
    """``None`` -> the shipped weights (InputError if not installed); a path -> that file (must exist)."""
    from recon.errors import InputError

    if path is None:
        if not SHIPPED_WEIGHTS.is_file():
            raise InputError(
                SHIPPED_WEIGHTS,
                "no trained QAIRN weights installed (train them with `mriqa train-qairn --config "
                "configs/qairn.yaml`, or pass --weights PATH to a .safetensors file)",
            )
        return SHIPPED_WEIGHTS
    p = Path(os.path.expanduser(os.fspath(path)))
    if not p.is_file():
        raise InputError(p, "QAIRN weights file not found")
    return p


def load_qairn(path: str | os.PathLike, device: str | torch.device | None = None) -> tuple[QAIRN, dict]:
    """Load QAIRN weights saved by :func:`recon.io.weights.save_weights` -> ``(model in eval mode, metadata)``."""
    from recon.io.weights import load_network

    return load_network(path, ARCH, QAIRN.from_config, "QAIRN", device=device)


DIHEDRAL = tuple((k, flip) for k in range(4) for flip in (False, True))  # the 8 rotations / flips of a square


@torch.no_grad()
def restore_self_ensemble(model: QAIRN, x: torch.Tensor, tile: int | None = None
                          ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Geometric self-ensemble ("x8", as EDSR+ / RCAN+): the mean of the restorations of the 8 rotated / flipped
    copies of ``x [B, 3, H, W]``, each turned back -> ``(restored [B, 3, H, W] float32, the attention maps of the
    unrotated pass)``. Costs 8 forward passes (the first is the plain one); the network was trained on all 8
    orientations and on every 8 x 8 JPEG grid phase (:mod:`mriqa.train_qairn`), so each copy is in its training
    distribution. ``tile``: run each pass tile by tile (:func:`mriqa.tiling.qairn_tiled_forward`)."""
    from mriqa.tiling import qairn_tiled_forward

    acc = torch.zeros_like(x, dtype=torch.float32)
    maps: list[torch.Tensor] = []
    for k, flip in DIHEDRAL:
        t = torch.rot90(x, k, dims=(-2, -1))
        t = torch.flip(t, dims=(-1,)) if flip else t
        y, m = model(t) if tile is None else qairn_tiled_forward(model, t, tile)
        if (k, flip) == (0, False):
            maps = m
        y = torch.flip(y.float(), dims=(-1,)) if flip else y.float()
        acc += torch.rot90(y, -k, dims=(-2, -1))
    return acc / len(DIHEDRAL), maps


@torch.no_grad()
def run_qairn(model: QAIRN, image01, restore: bool = True, self_ensemble: bool = False, tile: int | None = None
              ) -> tuple[np.ndarray | None, np.ndarray]:
    """One image, numpy float in [0, 1] or uint8 / uint16 (:func:`unit_range`; ``[H, W, 3]``, or ``[H, W]``
    gray, repeated to RGB) -> ``(restored float32 in [0, 1] of the input's shape, or None with restore=False;
    Q1..Q3 float64 [3])``. A gray input's restoration is returned as the BT.601 luma of the RGB output.
    ``self_ensemble``: the restoration is the x8 geometric self-ensemble (:func:`restore_self_ensemble`); Q1..Q3
    always come from the single pass on the image as given. ``tile``: the largest input side run in one piece
    (default :data:`mriqa.tiling.QAIRN_TILE`); larger images run tile by tile, converted to float tile by tile,
    with the same result (:func:`mriqa.tiling.qairn_tiled_forward`)."""
    from mriqa.tiling import QAIRN_TILE, qairn_tiled_forward

    tile = QAIRN_TILE if tile is None else int(tile)
    arr = np.asarray(image01)
    if arr.dtype not in (np.uint8, np.uint16):
        arr = arr.astype(np.float32, copy=False)
    gray = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 1)
    rgb = np.repeat(arr.reshape(arr.shape[0], arr.shape[1], 1), 3, axis=-1) if gray else arr[..., :3]
    device = next(model.parameters()).device
    with warnings.catch_warnings():  # a decoded photo is a read-only array; x is only read
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]  # a view: tiles are converted and moved one by one
    if max(arr.shape[:2]) <= tile or (restore and self_ensemble):
        x = unit_range(x.contiguous().to(device))
    if restore and self_ensemble:
        out, maps = restore_self_ensemble(model, x, tile)
    else:
        out, maps = qairn_tiled_forward(model, x, tile)
    q = model.quality(maps)[0].double().cpu().numpy()
    if not restore:
        return None, q
    res = out[0].clamp_(0.0, 1.0).permute(1, 2, 0).float().cpu().numpy()
    if gray:
        res = res @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        res = res.reshape(arr.shape)
    return res, q

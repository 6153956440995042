"""MoDL: model-based deep learning reconstruction (Aggarwal, Mani & Jacob, IEEE TMI 2019).

Each of K unrolls alternates a learned denoiser and a data-consistency solve::

    z_k     = D(x_k)                                        (residual CNN, shared across unrolls)
    x_{k+1} = argmin_x ||A x - y||^2 + lam ||x - z_k||^2
            = (A^H A + lam I)^{-1} (A^H y + lam z_k)        (CG, ``recon.cg.cg_solve``)

with ``x_0 = A^H y`` and ``A = M F S`` the SENSE operator (``recon.physics.SenseOperator``; single-coil is
C = 1 with maps of ones). The output is ``x_K``.

Choices (and where they differ from the paper):

- Denoiser: 5 conv layers, 64 channels, 3x3, complex as 2 real channels, ReLU between layers, a residual
  connection (``D(x) = x + CNN(x)``), shared across unrolls. **No batch norm by default** (the paper uses
  BN): our batches are 1-4 slices, where BN's batch statistics are noisy and make a slice's output depend on
  what else is in the batch; ``batch_norm=True`` switches it on (conv -> BN -> ReLU, as in the paper).
- Denoiser's last conv zero-initialised (an untrained D is the identity: stable at any K).
- Outside the support of the coil maps (ESPIRiT sets maps to 0 where its eigenvalue < crop) ``A^H A = 0``
  and the solve would pass the denoiser's output through unchecked at every unroll (in our tests a K = 1
  warm-started model then blew up at K = 10); there the image is held at 0 during the unrolls, as SENSE does.
  With ``fill_background`` (default) a final, non-iterated pass of the same denoiser estimates the image
  outside the support only (the RSS reference is not 0 there: it holds the noise floor, which fastMRI's
  whole-image metrics count; CG-SENSE and L1-wavelet with the same maps leave it at 0, see
  ``scripts/eval_recon.py`` for metrics inside the support as well). ``fill_background="noise_floor"`` instead
  fills the expected RSS magnitude of pure noise, measured from the acquired k-space's corners
  (``recon.noise``): the same convention without learning it from references (the reference-free modes of
  ``recon.train`` use it); ``False`` leaves 0.
- One learnable ``lam`` (init 0.05), parametrised as ``exp(log_lam)`` and clamped to ``>= 1e-4`` in use. 10 CG iterations per unroll, tol 1e-6.
- CG uses ``cg_solve``'s implicit backward (one adjoint CG solve, nothing stored per iteration); with
  ``checkpoint=True`` the denoiser is recomputed in the backward pass (``torch.utils.checkpoint``,
  non-reentrant), so peak training memory barely grows with K.
- Scale: the network is not scale-equivariant, so each sample's k-space is divided by ``s`` = the 99th
  percentile of ``|A^H y|`` before the unrolls and the image multiplied by ``s`` after (MoDL is then
  scale-equivariant as a whole: any k-space scale works). With ESPIRiT maps (``sum_c |S_c|^2 = 1`` in the
  support) ``|x|`` is on the RSS scale of the fully sampled k-space (fastMRI's convention).

Entry point shaped like fastMRI's ``VarNet``: ``model(masked_kspace, mask, num_low_frequencies=None,
sens_maps=None) -> [B, H, W]`` magnitude. ``masked_kspace`` may be complex ``[B, C, H, W]`` or fastMRI's
real view ``[B, C, H, W, 2]``; ``mask`` ``[B|1, 1, 1, W]``, ``[B|1, 1, H, W]`` or fastMRI's
``[B, 1, 1, W, 1]`` (bool or float). Without ``sens_maps`` they are estimated per slice with ESPIRiT from the
fully sampled centre (``num_low_frequencies`` columns, or the run of sampled columns through the centre of the
mask); with no usable centre that is a ``recon.errors.InputError``, as are mismatched shapes.

Weights: safetensors with the architecture in the metadata (``save_modl`` / ``load_modl``); shipped weights
live in ``recon/weights/<name>.safetensors`` (default ``modl``; see ``modl.md`` beside it).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recon.cg import cg_solve
from recon.errors import InputError
from recon.noise import noise_std_from_kspace, rss_noise_floor
from recon.physics import SenseOperator

__all__ = [
    "ModlConfig",
    "ResidualDenoiser",
    "MoDL",
    "estimate_sens_maps",
    "acs_width",
    "save_modl",
    "load_modl",
    "modl_reconstruct",
    "WEIGHTS_DIR",
    "DEFAULT_WEIGHTS",
    "MIN_ACS",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = "modl"
FORMAT = "mriqa-modl"
FORMAT_VERSION = "1"
# ESPIRiT (sigpy, kernel 6x6) needs a calibration region a few samples wider than its kernel.
MIN_ACS = 8
ESPIRIT_CALIB_MAX = 24
LAM_MIN = 1e-4


@dataclass
class ModlConfig:
    """Architecture and solver settings (stored in the weights file's metadata)."""

    num_unrolls: int = 10
    cg_iters: int = 10
    cg_tol: float = 1e-6
    channels: int = 64
    num_layers: int = 5
    kernel_size: int = 3
    batch_norm: bool = False
    lam_init: float = 0.05
    checkpoint: bool = False
    scale_percentile: float = 99.0
    fill_background: bool | str = True

    @property
    def background_mode(self) -> str:
        """``"learned"`` (``True``), ``"zero"`` (``False``) or ``"noise_floor"``: what fills the image outside
        the coil maps' support (module docstring)."""
        if isinstance(self.fill_background, str):
            return self.fill_background
        return "learned" if self.fill_background else "zero"

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ModlConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(None, f"unknown MoDL model settings {unknown}; known: {sorted(known)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        checks = [
            (self.num_unrolls >= 0, "num_unrolls must be >= 0"),
            (self.cg_iters >= 1, "cg_iters must be >= 1"),
            (self.cg_tol >= 0, "cg_tol must be >= 0"),
            (self.channels >= 1, "channels must be >= 1"),
            (self.num_layers >= 2, "num_layers must be >= 2"),
            (self.kernel_size >= 1 and self.kernel_size % 2 == 1, "kernel_size must be odd and >= 1"),
            (self.lam_init > 0, "lam_init must be > 0"),
            (0 < self.scale_percentile <= 100, "scale_percentile must be in (0, 100]"),
            (self.fill_background in (True, False, "learned", "zero", "noise_floor"),
             f"fill_background must be true, false, 'learned', 'zero' or 'noise_floor', got {self.fill_background!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise InputError(None, f"MoDL settings: {msg}")

    @property
    def receptive_field(self) -> int:
        return self.num_layers * (self.kernel_size - 1) + 1


class ResidualDenoiser(nn.Module):
    """``D(x) = x + CNN(x)`` on complex images ``[B, H, W]`` (as 2 real channels).

    CNN: ``num_layers`` convolutions ``kernel_size`` x ``kernel_size`` (2 -> C -> ... -> C -> 2), ReLU after all
    but the last, optional batch norm after each conv (the paper's layout).
    """

    def __init__(self, channels: int = 64, num_layers: int = 5, kernel_size: int = 3, batch_norm: bool = False):
        super().__init__()
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        chans = [2] + [channels] * (num_layers - 1) + [2]
        for i in range(num_layers):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], kernel_size, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(chans[i + 1]))
            if i < num_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers)
        # zero-initialised last conv: D starts as the identity, so an untrained MoDL is a stable
        # proximal CG-SENSE iteration, whatever K is
        last = [m for m in self.net if isinstance(m, nn.Conv2d)][-1]
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        real = torch.view_as_real(x).permute(0, 3, 1, 2)  # [B, 2, H, W]
        out = self.net(real.to(self.net[0].weight.dtype)).to(real.dtype)
        return x + torch.view_as_complex(out.permute(0, 2, 3, 1).contiguous())


# ----------------------------------------------------------------------------------------------------------
# input handling

def _as_complex_kspace(masked_kspace, source: str | None) -> torch.Tensor:
    if isinstance(masked_kspace, np.ndarray):
        masked_kspace = torch.from_numpy(masked_kspace)
    if not torch.is_tensor(masked_kspace):
        raise InputError(source, f"masked k-space must be a torch tensor or numpy array, "
                                 f"got {type(masked_kspace).__name__}")
    k = masked_kspace
    if not k.is_complex():
        if k.ndim == 5 and k.shape[-1] == 2 and k.is_floating_point():
            k = torch.view_as_complex(k.float().contiguous())
        else:
            raise InputError(source, f"masked k-space must be complex [B, C, H, W] or fastMRI's real view "
                                     f"[B, C, H, W, 2], got {k.dtype} of shape {tuple(k.shape)}")
    if k.ndim != 4:
        raise InputError(source, f"masked k-space must be [B, C, H, W] (single-coil: C = 1), "
                                 f"got shape {tuple(k.shape)}")
    if min(k.shape) == 0:
        raise InputError(source, f"masked k-space is empty: shape {tuple(k.shape)}")
    k = k.to(torch.complex64)
    if not bool(torch.isfinite(torch.view_as_real(k)).all()):
        raise InputError(source, "masked k-space has NaN/Inf values")
    return k


def _as_mask(mask, kshape: tuple[int, ...], device, source: str | None) -> torch.Tensor:
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if hasattr(mask, "mask") and hasattr(mask, "kind"):  # a recon.masks.SamplingMask
        mask = mask.mask
    if not torch.is_tensor(mask):
        raise InputError(source, f"sampling mask must be a tensor, got {type(mask).__name__}")
    if mask.is_complex():
        raise InputError(source, f"sampling mask must be real 0/1, got {mask.dtype}")
    m = mask
    if m.ndim == 5 and m.shape[-1] == 1:  # fastMRI's [B, 1, 1, W, 1]
        m = m[..., 0]
    m = m.to(device=device, dtype=torch.float32)
    while m.ndim < 4:
        m = m.unsqueeze(0)
    b, c, h, w = kshape
    try:
        ok = m.ndim == 4 and m.shape[1] == 1 and torch.broadcast_shapes(m.shape, kshape) == tuple(kshape)
    except RuntimeError:
        ok = False
    if not ok:
        raise InputError(source, f"sampling mask of shape {tuple(mask.shape)} does not match k-space "
                                 f"[B, C, H, W] = {list(kshape)} (expected [B|1, 1, 1, W], [B|1, 1, H, W] "
                                 f"or fastMRI's [B, 1, 1, W, 1])")
    if not bool(torch.isfinite(m).all()):
        raise InputError(source, "sampling mask has NaN/Inf values")
    per = m.expand(b, 1, -1, -1).flatten(1).amax(1)
    if not bool((per > 0).all()):
        raise InputError(source, "sampling mask is all zeros" + ("" if b == 1 else
                         f" for batch samples {(per == 0).nonzero().flatten().tolist()}"))
    return m


def _as_maps(sens_maps, kshape, device, source: str | None) -> torch.Tensor:
    if isinstance(sens_maps, np.ndarray):
        sens_maps = torch.from_numpy(sens_maps)
    if not torch.is_tensor(sens_maps) or not sens_maps.is_complex():
        raise InputError(source, f"coil maps must be a complex tensor [B, C, H, W], "
                                 f"got {type(sens_maps).__name__} {getattr(sens_maps, 'dtype', '')}")
    s = sens_maps
    if s.ndim == 3 and kshape[0] == 1:
        s = s.unsqueeze(0)
    ok = tuple(s.shape) == tuple(kshape) or (s.ndim == 5 and s.shape[0] == kshape[0]
                                              and tuple(s.shape[2:]) == tuple(kshape[1:]))
    if not ok:
        raise InputError(source, f"coil maps of shape {tuple(sens_maps.shape)} do not match k-space "
                                 f"[B, C, H, W] = {list(kshape)} (expected [B, C, H, W], or [B, M, C, H, W] "
                                 f"for M ESPIRiT map sets)")
    s = s.to(device=device, dtype=torch.complex64)
    if not bool(torch.isfinite(torch.view_as_real(s)).all()):
        raise InputError(source, "coil maps have NaN/Inf values")
    return s


def acs_width(mask: torch.Tensor) -> int:
    """Width of the fully sampled centre of one mask (``[1, 1, W]`` / ``[1, H, W]`` / ``[1, 1, 1, W]`` ...).

    Line masks: the run of sampled columns through column ``W // 2``. 2-D masks: the side of the largest
    fully sampled square centred at ``(H // 2, W // 2)``.
    """
    m = mask.detach().cpu().float()
    m = m.reshape(m.shape[-2], m.shape[-1]) if m.shape[-2] > 1 else m.reshape(-1)
    if m.ndim == 1:
        col = (m > 0).numpy()
        c = len(col) // 2
        if not col[c]:
            return 0
        lo, hi = c, c
        while lo > 0 and col[lo - 1]:
            lo -= 1
        while hi < len(col) - 1 and col[hi + 1]:
            hi += 1
        return hi - lo + 1
    pts = (m > 0).numpy()
    h, w = pts.shape
    ch, cw = h // 2, w // 2
    side = 0
    while True:
        n = side + 1
        r0, c0 = ch - n // 2, cw - n // 2
        if r0 < 0 or c0 < 0 or r0 + n > h or c0 + n > w or not pts[r0:r0 + n, c0:c0 + n].all():
            return side
        side = n


def estimate_sens_maps(masked_kspace: torch.Tensor, mask: torch.Tensor, num_low_frequencies=None,
                       source: str | None = None, **espirit_params) -> torch.Tensor:
    """ESPIRiT coil maps ``[B, C, H, W]`` per sample from the fully sampled centre of the masked k-space.

    The calibration width is ``min(num_low_frequencies or the mask's centre run, 24)``; fewer than
    ``MIN_ACS`` centre lines is an ``InputError`` (pass ``sens_maps``). Single-coil (C = 1): maps of ones.
    """
    from recon.coils import espirit_maps

    b, c, h, w = masked_kspace.shape
    if c == 1:
        return torch.ones_like(masked_kspace)
    maps = torch.empty_like(masked_kspace)
    nlf = num_low_frequencies
    if torch.is_tensor(nlf):
        nlf = nlf.reshape(-1).tolist()
    for i in range(b):
        mi = mask[i if mask.shape[0] > 1 else 0]
        acs = acs_width(mi)
        if nlf is not None:
            given = nlf[i if len(nlf) > 1 else 0] if isinstance(nlf, (list, tuple)) else nlf
            if given is not None and int(given) > 0:
                acs = min(acs, int(given)) if acs > 0 else 0
        if acs < MIN_ACS:
            raise InputError(source, f"no coil maps given and only {acs} fully sampled centre lines to estimate "
                                     f"them from (ESPIRiT needs >= {MIN_ACS}); pass sens_maps or sample a wider "
                                     f"centre")
        calib = min(acs, ESPIRIT_CALIB_MAX, h)
        params = dict(espirit_params)
        params.setdefault("calib_width", calib)
        k = (masked_kspace[i] * mi).detach().cpu().numpy()
        est = espirit_maps(k, **params)
        est = torch.as_tensor(np.asarray(est)).to(torch.complex64)
        if est.ndim == 4:  # map sets: MoDL takes the first set
            est = est[0]
        maps[i] = est.to(masked_kspace.device)
    return maps


# ----------------------------------------------------------------------------------------------------------
# the model

class MoDL(nn.Module):
    """MoDL with a shared residual CNN denoiser and CG data consistency. See the module docstring.

    Args:
        config: :class:`ModlConfig` (or a dict of its fields, or keyword overrides).
    Attributes:
        num_unrolls: K used by ``forward``; the trainer lowers it for the K = 1 warm start.
        lam: learnable Tikhonov weight (0-d tensor ``exp(log_lam)``; the parameter is ``log_lam``).
    """

    def __init__(self, config: ModlConfig | dict | None = None, **overrides):
        super().__init__()
        if isinstance(config, ModlConfig):
            cfg = ModlConfig(**{**asdict(config), **overrides})
        else:
            cfg = ModlConfig.from_dict({**(config or {}), **overrides})
        cfg.validate()
        self.config = cfg
        self.num_unrolls = cfg.num_unrolls
        self.cg_iters = cfg.cg_iters
        self.checkpoint = cfg.checkpoint
        self.denoiser = ResidualDenoiser(cfg.channels, cfg.num_layers, cfg.kernel_size, cfg.batch_norm)
        # lam is learned in log space: Adam's steps are then relative changes of lam, whatever its size
        # (learned directly, lam = 0.05 was pushed to 0 within ~60 steps at lr 1e-3 in our first runs).
        self.log_lam = nn.Parameter(torch.tensor(math.log(float(cfg.lam_init))))

    @property
    def lam(self) -> torch.Tensor:
        """The Tikhonov weight ``exp(log_lam)`` (0-d tensor, differentiable)."""
        return self.log_lam.exp()

    # -- core ------------------------------------------------------------------------------------------
    def _denoise(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and torch.is_grad_enabled() and self.training:
            from torch.utils.checkpoint import checkpoint
            return checkpoint(self.denoiser, x, use_reentrant=False)
        return self.denoiser(x)

    def _denoise_sets(self, x: torch.Tensor) -> torch.Tensor:
        """The denoiser on ``[B, H, W]`` images, or on each map set's image of ``[B, M, H, W]``."""
        if x.ndim == 4:
            b, m, h, w = x.shape
            return self._denoise(x.reshape(b * m, h, w)).reshape(b, m, h, w)
        return self._denoise(x)

    @staticmethod
    def magnitude(x: torch.Tensor) -> torch.Tensor:
        """``|x|`` ``[B, H, W]``; with map sets (``[B, M, H, W]``) ``sqrt(sum_m |x_m|^2)``."""
        if x.ndim == 4:
            return torch.sqrt(x.real.square().sum(1) + x.imag.square().sum(1))
        return x.abs()

    def unroll(self, y: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor,
               num_unrolls: int | None = None) -> torch.Tensor:
        """The complex MoDL image from checked, complex inputs, on the scale of ``y``.

        ``sens_maps`` ``[B, C, H, W]`` gives images ``[B, H, W]``; ESPIRiT map sets ``[B, M, C, H, W]`` give
        ``[B, M, H, W]`` (soft SENSE: one image per set, each denoised by the same network;
        :meth:`magnitude` combines them).
        """
        k_unrolls = self.num_unrolls if num_unrolls is None else int(num_unrolls)
        op = SenseOperator(sens_maps, mask)
        sets = sens_maps.ndim == 5
        with torch.no_grad():
            x0 = op.adjoint(y)
            mag = self.magnitude(x0).flatten(1)
            q = self.config.scale_percentile / 100.0
            scale = torch.quantile(mag, q, dim=1) if q < 1 else mag.amax(1)
            scale = torch.where(scale > 0, scale, mag.amax(1))
        if not bool((scale > 0).all()):
            bad = (scale <= 0).nonzero().flatten().tolist()
            raise InputError(None, f"k-space is all zeros where sampled (batch samples {bad})")
        scale_v = scale.reshape((-1,) + (1,) * (x0.ndim - 1)).to(x0.dtype)
        rhs0 = x0 / scale_v  # A^H (y / s)
        lam = self.lam.float().clamp(min=LAM_MIN)
        # Where every coil map is 0 (outside ESPIRiT's support) A^H A is 0, so the solve would copy the
        # denoiser's output there unchecked at every unroll; keep the image 0 there instead (as SENSE does).
        support = (sens_maps.abs().square().sum(-3) > 0).to(x0.dtype)
        x = rhs0
        for _ in range(k_unrolls):
            z = self._denoise_sets(x) * support  # may run under autocast (AMP on GPU); comes back complex64
            with torch.autocast(device_type=x.device.type, enabled=False):  # CG in full precision
                x = cg_solve(op.normal, rhs0 + lam * z, lam, max_iter=self.cg_iters, tol=self.config.cg_tol)
        mode = self.config.background_mode
        if mode != "zero" and k_unrolls > 0 and not bool(support.all()):
            # outside the maps' support the data say nothing. "learned": one more (non-iterated) pass of the
            # denoiser estimates the reference there (the noise floor of an RSS target, learnt from references);
            # "noise_floor": the expected RSS noise magnitude from the noise in the acquired k-space corners
            # (recon.noise; no reference needed). With map sets only the first set's image is filled (the
            # others are 0 outside their support, as in SENSE).
            fill = 1 - support
            if sets:
                fill = fill * (torch.arange(x.shape[1], device=x.device) == 0).reshape(1, -1, 1, 1)
            if mode == "learned":
                x = x + self._denoise_sets(x) * fill
            else:
                floor = rss_noise_floor(noise_std_from_kspace(y, mask)).to(x.device) / scale
                x = x + floor.reshape((-1,) + (1,) * (x.ndim - 1)).to(x.dtype) * fill
        return x * scale_v

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor, num_low_frequencies=None,
                sens_maps: torch.Tensor | None = None) -> torch.Tensor:
        """Magnitude ``[B, H, W]`` on the RSS scale (fastMRI ``VarNet``-shaped call; see module docstring)."""
        y, m, maps = self.prepare_inputs(masked_kspace, mask, num_low_frequencies, sens_maps)
        return self.magnitude(self.unroll(y * m, m, maps))

    def prepare_inputs(self, masked_kspace, mask, num_low_frequencies=None, sens_maps=None,
                       source: str | None = None):
        """Check and convert inputs -> (complex64 k-space [B,C,H,W], float32 mask [B|1,1,H|1,W], maps)."""
        device = self.log_lam.device
        y = _as_complex_kspace(masked_kspace, source).to(device)
        m = _as_mask(mask, tuple(y.shape), device, source)
        rf = self.config.receptive_field
        if min(y.shape[-2:]) < rf:
            raise InputError(source, f"image {y.shape[-2]}x{y.shape[-1]} is smaller than the network's field of "
                                     f"view ({rf}x{rf})")
        if sens_maps is None:
            maps = estimate_sens_maps(y, m, num_low_frequencies, source=source)
        else:
            maps = _as_maps(sens_maps, tuple(y.shape), device, source)
        return y, m, maps


# ----------------------------------------------------------------------------------------------------------
# weights

def save_modl(model: MoDL, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights as safetensors with ``{format, version, config, extra}`` metadata, atomically."""
    from safetensors.torch import save_file

    from recon.files import atomic_path

    path = Path(path)
    cfg = asdict(model.config)
    cfg["num_unrolls"] = int(model.num_unrolls)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": json.dumps(cfg, sort_keys=True)}
    if extra:
        meta["extra"] = json.dumps(extra, sort_keys=True, default=str)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def _resolve_weights(name_or_path: str | os.PathLike | None) -> Path:
    if name_or_path is None:
        name_or_path = DEFAULT_WEIGHTS
    p = Path(name_or_path)
    if p.is_file():
        return p
    s = str(name_or_path)
    if re.fullmatch(r"[A-Za-z0-9_.-]+", s) and not s.endswith(".safetensors"):
        shipped = WEIGHTS_DIR / f"{s}.safetensors"
        if shipped.is_file():
            return shipped
        names = sorted(f.stem for f in WEIGHTS_DIR.glob("*.safetensors")) if WEIGHTS_DIR.is_dir() else []
        raise InputError(s, f"no such weights file, and no shipped MoDL weights by that name "
                            f"(shipped: {', '.join(names) or 'none'})")
    raise InputError(s, "weights file not found")


def load_modl(name_or_path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
              **overrides) -> MoDL:
    """Load MoDL weights: a shipped name (``recon/weights/<name>.safetensors``, default ``modl``) or a file.

    ``overrides`` change solver settings that do not touch the architecture (``num_unrolls``, ``cg_iters``,
    ``cg_tol``, ``checkpoint``). A file that is not a MoDL weights file, or whose tensors do not fit the
    architecture in its metadata, raises ``recon.errors.InputError``. The model is returned in eval mode.
    """
    from safetensors import safe_open

    path = _resolve_weights(name_or_path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for non-safetensors files
        raise InputError(path, f"not a safetensors weights file ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT:
        raise InputError(path, f"not a MoDL weights file (metadata format is {meta.get('format')!r}, "
                               f"expected {FORMAT!r}); wrong architecture?")
    if meta.get("version") != FORMAT_VERSION:
        raise InputError(path, f"MoDL weights format version {meta.get('version')!r} is not supported "
                               f"(this code reads {FORMAT_VERSION!r})")
    try:
        cfg = json.loads(meta.get("config", "{}"))
    except json.JSONDecodeError:
        raise InputError(path, "MoDL weights file has unreadable config metadata") from None
    solver_only = {"num_unrolls", "cg_iters", "cg_tol", "checkpoint"}
    bad = sorted(set(overrides) - solver_only)
    if bad:
        raise InputError(path, f"cannot override architecture settings {bad} when loading weights")
    try:
        model = MoDL(ModlConfig.from_dict({**cfg, **overrides}))
    except InputError as exc:
        raise InputError(path, f"MoDL weights metadata: {exc.problem}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(tensors[k].shape)} (expected {tuple(expected[k].shape)})"
             for k in sorted(set(expected) & set(tensors)) if tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:4]}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:4]}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:3]}")
        raise InputError(path, "weights do not fit the MoDL architecture in their metadata (wrong architecture): "
                               + "; ".join(parts))
    model.load_state_dict(tensors)
    return model.to(device).eval()


def weights_metadata(name_or_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The metadata of a MoDL weights file (``config`` and ``extra`` decoded from JSON)."""
    from safetensors import safe_open

    path = _resolve_weights(name_or_path)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = dict(f.metadata() or {})
    for key in ("config", "extra"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    return meta


# ----------------------------------------------------------------------------------------------------------
# volume-level helper for the CLI

def modl_reconstruct(model: MoDL, kspace, mask, sens_maps=None, *, batch_size: int = 1,
                     num_low_frequencies: int | None = None, source: str | None = None,
                     device: str | torch.device | None = None, progress: bool = False) -> np.ndarray:
    """Reconstruct a volume with MoDL: k-space ``[S, C, H, W]`` complex (numpy or torch) -> float32 ``[S, H, W]``.

    Args:
        model: a :class:`MoDL` (e.g. from :func:`load_modl`); run in eval mode, no gradients.
        kspace: complex k-space ``[S, C, H, W]`` (single-coil: C = 1; a single slice ``[C, H, W]`` works too);
            values where the mask is 0 are ignored.
        mask: real 0/1 broadcastable to ``[S, C, H, W]``: ``[W]``, ``[1, 1, W]``, ``[S, 1, 1, W]``,
            ``[1, H, W]``, ``[S, 1, H, W]``, or a ``recon.masks.SamplingMask``.
        sens_maps: complex ``[S, C, H, W]``, or ``[S, M, C, H, W]`` for M ESPIRiT map sets (soft SENSE: the
            magnitude is ``sqrt(sum_m |x_m|^2)``, as ``recon.baselines`` does); default:
            ESPIRiT per slice from the fully sampled centre (needs >= ``MIN_ACS`` centre lines).
        batch_size: slices per forward pass.
        num_low_frequencies: width of the fully sampled centre, if known (else read from the mask).
        source: file name for error messages.
        device: where to run (default: where the model is; the model is moved there for the call).
        progress: show a tqdm bar over the batches.
    Returns: float32 numpy ``[S, H, W]`` magnitude on the RSS scale.
    """
    if isinstance(kspace, np.ndarray):
        kspace = torch.from_numpy(kspace)
    if torch.is_tensor(kspace) and kspace.ndim == 3 and kspace.is_complex():
        kspace = kspace.unsqueeze(0)
    k = _as_complex_kspace(kspace, source)
    s_count = k.shape[0]
    if hasattr(mask, "mask") and hasattr(mask, "kind"):
        if num_low_frequencies is None:
            num_low_frequencies = int(mask.num_low_frequencies) or None
        mask = mask.mask
    m = torch.from_numpy(np.asarray(mask)) if isinstance(mask, np.ndarray) else mask
    if not torch.is_tensor(m):
        raise InputError(source, f"sampling mask must be a numpy array or tensor, got {type(m).__name__}")
    m = _as_mask(m, tuple(k.shape), torch.device("cpu"), source)
    if sens_maps is not None:
        sm = torch.from_numpy(sens_maps) if isinstance(sens_maps, np.ndarray) else sens_maps
        if torch.is_tensor(sm) and sm.ndim == 3 and s_count == 1:
            sm = sm.unsqueeze(0)
        sens_maps = sm
    if int(batch_size) < 1:
        raise InputError(source, f"batch_size must be >= 1, got {batch_size}")
    out = np.empty((s_count, k.shape[2], k.shape[3]), dtype=np.float32)
    was_training = model.training
    old_device = model.log_lam.device
    if device is not None:
        model.to(device)
    model.eval()
    starts = range(0, s_count, int(batch_size))
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="MoDL", unit="batch")
    device = model.log_lam.device
    try:
        with torch.no_grad():
            for a in starts:
                b = min(a + int(batch_size), s_count)
                mb = m if m.shape[0] == 1 else m[a:b]
                maps = None if sens_maps is None else sens_maps[a:b]
                y, mm, maps = model.prepare_inputs(k[a:b].to(device), mb.to(device), num_low_frequencies, maps,
                                                   source=source)
                out[a:b] = model.magnitude(model.unroll(y * mm, mm, maps)).float().cpu().numpy()
    finally:
        model.train(was_training)
        model.to(old_device)
    return out

"""MoDL, the network: model-based deep learning reconstruction (Aggarwal, Mani & Jacob, IEEE TMI 2019).

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
- ``noise_input`` (off by default, as in the paper): the denoiser gets a third input channel, constant over the
  image, ``log10(sigma / s) + 2`` with ``sigma`` the noise std of the SENSE-combined image, measured from the
  singular values of the fully sampled centre's calibration matrix (``recon.noise.noise_std_from_calibration``;
  the k-space corners hold anatomy at high SNR and on real scans) and ``s`` the scale below. A denoiser that sees only the image cannot tell how much noise to remove, and one
  trained over SNR 30-400 smooths a scan of SNR 400 as if it were noisier (``recon/weights/modl.md``); this is
  FFDNet's noise-level map. Weights without it load as before; ``expand_noise_input`` turns them into the
  starting point of such a model (the new channel's weights zero: the same output until trained).
- ``context_channels`` (0 by default): a coarse branch beside the denoiser's CNN, at a quarter of the resolution,
  that sees about 44 px instead of 11 (:class:`ResidualDenoiser`); it starts at zero output, so it can be grown
  onto trained weights (``recon.training.trainer.Trainer.warm_start``). Tried as run 13 of ``recon/weights/modl.md``.
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
``[B, 1, 1, W, 1]`` (bool or float). Without ``sens_maps`` they are calibrated per slice on the fully sampled
data (:func:`recon.calibration.calibrate_maps`, which measures the centre from mask and data, so
``num_low_frequencies`` is accepted for fastMRI's signature and not needed); with no usable centre that is a
``recon.errors.InputError``, as are mismatched shapes.

Modules: :mod:`recon.modl.network` (this network), :mod:`recon.modl.weights` (safetensors with the architecture
in the metadata, ``save_modl`` / ``load_modl``; shipped weights live in ``recon/weights/<name>.safetensors``,
default ``modl``, see ``modl.md`` beside it), :mod:`recon.modl.inference` (a volume at a time, as
``recon.pipeline.reconstruct(method="modl")`` runs it). ``from recon.modl import MoDL, ModlConfig, load_modl,
modl_reconstruct, ...`` imports them all.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from recon.cg import cg_solve
from recon.errors import InputError
from recon.noise import noise_std_from_calibration, noise_std_from_kspace, rss_noise_floor
from recon.physics import SenseOperator, as_kspace, as_maps, as_mask

__all__ = ["ModlConfig", "ResidualDenoiser", "MoDL", "LAM_MIN", "expand_noise_input", "dihedral_mean"]

LAM_MIN = 1e-4
CONTEXT_POOL = 4  # the coarse branch's downsampling (``ModlConfig.context_channels``)
NOISE_LEVEL_OFFSET = 2.0  # the noise channel is log10(sigma / s) + 2: about -1..0.5 for SNR 2000..30


def dihedral_mean(denoise, x: torch.Tensor) -> torch.Tensor:
    """``mean over g of g^-1 denoise(g x)``, g the 8 flips and transposes of the last two dims of ``x``
    (``[..., H, W]``; a transpose swaps H and W, which a convolutional denoiser takes): the denoiser made
    equivariant to them (deepinv's ``EquivariantDenoiser`` over the dihedral group), the self-ensemble of image
    restoration networks."""
    total = torch.zeros_like(x)
    for transpose in (False, True):
        xt = x.transpose(-1, -2) if transpose else x
        for dims in ((), (-2,), (-1,), (-2, -1)):
            z = denoise(torch.flip(xt, dims) if dims else xt)
            z = torch.flip(z, dims) if dims else z
            total = total + (z.transpose(-1, -2) if transpose else z)
    return total / 8


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
    noise_input: bool = False
    context_channels: int = 0

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
            (self.context_channels >= 0, "context_channels must be >= 0"),
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
    but the last, optional batch norm after each conv (the paper's layout). ``context_channels > 0`` adds a
    coarse branch (:data:`CONTEXT_POOL` x average pooling, five 3 x 3 convolutions of that many channels, bilinear
    upsampling back; its last conv zero-initialised, so a model grown from weights without it starts as they
    were): it sees about 44 px instead of 11.
    """

    def __init__(self, channels: int = 64, num_layers: int = 5, kernel_size: int = 3, batch_norm: bool = False,
                 noise_input: bool = False, context_channels: int = 0):
        super().__init__()
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        self.noise_input = bool(noise_input)
        chans = [3 if noise_input else 2] + [channels] * (num_layers - 1) + [2]
        for i in range(num_layers):
            layers.append(nn.Conv2d(chans[i], chans[i + 1], kernel_size, padding=pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(chans[i + 1]))
            if i < num_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        self.net = nn.Sequential(*layers)
        # zero-initialised last conv: D starts as the identity, so an untrained MoDL is a stable
        # proximal CG-SENSE iteration, whatever K is
        self.context = None
        if context_channels:
            cc = int(context_channels)
            coarse: list[nn.Module] = [nn.AvgPool2d(CONTEXT_POOL, ceil_mode=True)]
            for i, (a, b) in enumerate(zip([chans[0]] + [cc] * 4, [cc] * 4 + [2])):
                coarse.append(nn.Conv2d(a, b, 3, padding=1))
                if i < 4:
                    coarse.append(nn.ReLU(inplace=True))
            self.context = nn.Sequential(*coarse)
        for branch in (self.net, self.context):
            if branch is None:
                continue
            last = [m for m in branch if isinstance(m, nn.Conv2d)][-1]
            nn.init.zeros_(last.weight)
            if last.bias is not None:
                nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` complex ``[B, H, W]``; ``noise_level`` ``[B]`` (the extra channel's value; needed with
        ``noise_input``, ignored without)."""
        real = torch.view_as_real(x).permute(0, 3, 1, 2)  # [B, 2, H, W]
        if self.noise_input:
            if noise_level is None:
                raise InputError(None, "this MoDL denoiser takes the noise level as input (noise_input)")
            level = noise_level.to(real.dtype).reshape(-1, 1, 1, 1).expand(-1, 1, *real.shape[-2:])
            real = torch.cat([real, level], dim=1)
        inp = real.to(self.net[0].weight.dtype)
        out = self.net(inp)
        if self.context is not None:
            out = out + nn.functional.interpolate(self.context(inp), size=inp.shape[-2:], mode="bilinear",
                                                  align_corners=False)
        out = out.to(real.dtype)
        return x + torch.view_as_complex(out.permute(0, 2, 3, 1).contiguous())


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
        self.denoiser = ResidualDenoiser(cfg.channels, cfg.num_layers, cfg.kernel_size, cfg.batch_norm,
                                         cfg.noise_input, cfg.context_channels)
        # lam is learned in log space: Adam's steps are then relative changes of lam, whatever its size
        # (learned directly, lam = 0.05 was pushed to 0 within ~60 steps at lr 1e-3 in our first runs).
        self.log_lam = nn.Parameter(torch.tensor(math.log(float(cfg.lam_init))))

    @property
    def lam(self) -> torch.Tensor:
        """The Tikhonov weight ``exp(log_lam)`` (0-d tensor, differentiable)."""
        return self.log_lam.exp()

    # -- core ------------------------------------------------------------------------------------------
    def _denoise(self, x: torch.Tensor, level: torch.Tensor | None = None) -> torch.Tensor:
        if self.checkpoint and torch.is_grad_enabled() and self.training:
            from torch.utils.checkpoint import checkpoint
            return checkpoint(self.denoiser, x, level, use_reentrant=False)
        return self.denoiser(x, level)

    def _denoise_sets(self, x: torch.Tensor, level: torch.Tensor | None = None,
                      self_ensemble: bool = False) -> torch.Tensor:
        """The denoiser on ``[B, H, W]`` images, or on each map set's image of ``[B, M, H, W]`` (``level`` ``[B]``
        or None: the noise channel's value per sample); ``self_ensemble``: averaged over the 8 flips and
        transposes (:func:`dihedral_mean`)."""
        if x.ndim == 4:
            b, m, h, w = x.shape
            level = None if level is None else level.repeat_interleave(m)
            return self._denoise_sets(x.reshape(b * m, h, w), level, self_ensemble).reshape(b, m, h, w)
        if self_ensemble:
            return dihedral_mean(lambda z: self._denoise(z, level), x)
        return self._denoise(x, level)

    def noise_level(self, sigma: torch.Tensor, scale: torch.Tensor) -> torch.Tensor | None:
        """The noise channel's value ``[B]``: ``log10(sigma / scale) + 2`` (module docstring), ``sigma`` ``[B]``
        the noise std (``recon.noise.noise_std_from_calibration``), ``scale`` ``[B]``; None without
        ``noise_input``."""
        if not self.config.noise_input:
            return None
        sigma = sigma.to(scale.device)
        return (torch.log10((sigma / scale).clamp(min=1e-6)) + NOISE_LEVEL_OFFSET).float()

    @staticmethod
    def magnitude(x: torch.Tensor) -> torch.Tensor:
        """``|x|`` ``[B, H, W]``; with map sets (``[B, M, H, W]``) ``sqrt(sum_m |x_m|^2)``."""
        if x.ndim == 4:
            return torch.sqrt(x.real.square().sum(1) + x.imag.square().sum(1))
        return x.abs()

    def unroll(self, y: torch.Tensor, physics: SenseOperator, num_unrolls: int | None = None,
               self_ensemble: bool = False) -> torch.Tensor:
        """The complex MoDL image of masked k-space ``y`` ``[B, C, H, W]`` (complex64) measured through
        ``physics`` (the :class:`recon.physics.SenseOperator` of the maps and the mask), on the scale of ``y``.

        Maps ``[B, C, H, W]`` give images ``[B, H, W]``; ESPIRiT map sets ``[B, M, C, H, W]`` give
        ``[B, M, H, W]`` (soft SENSE: one image per set, each denoised by the same network;
        :meth:`magnitude` combines them). ``self_ensemble`` (inference): every denoiser pass is the mean over
        the 8 flips and transposes of its input (:func:`dihedral_mean`), at 8 times the denoiser's cost.
        """
        k_unrolls = self.num_unrolls if num_unrolls is None else int(num_unrolls)
        op = physics
        sens_maps, mask = op.sens_maps, op.mask
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
        mode = self.config.background_mode
        level = self.noise_level(noise_std_from_calibration(y, mask), scale) if self.config.noise_input else None
        x = rhs0
        for _ in range(k_unrolls):
            z = self._denoise_sets(x, level, self_ensemble) * support  # may run under autocast (AMP on GPU); comes back complex64
            with torch.autocast(device_type=x.device.type, enabled=False):  # CG in full precision
                x = cg_solve(op.normal, rhs0 + lam * z, lam, max_iter=self.cg_iters, tol=self.config.cg_tol)
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
                x = x + self._denoise_sets(x, level, self_ensemble) * fill
            else:
                floor = rss_noise_floor(noise_std_from_kspace(y, mask)).to(x.device) / scale
                x = x + floor.reshape((-1,) + (1,) * (x.ndim - 1)).to(x.dtype) * fill
        return x * scale_v

    def forward(self, masked_kspace: torch.Tensor, mask: torch.Tensor, num_low_frequencies=None,
                sens_maps: torch.Tensor | None = None) -> torch.Tensor:
        """Magnitude ``[B, H, W]`` on the RSS scale (fastMRI ``VarNet``-shaped call; see module docstring)."""
        y, m, maps = self.prepare_inputs(masked_kspace, mask, num_low_frequencies, sens_maps)
        return self.magnitude(self.unroll(y * m, SenseOperator(maps, m)))

    def prepare_inputs(self, masked_kspace, mask, num_low_frequencies=None, sens_maps=None,
                       source: str | None = None):
        """Check and convert inputs -> (complex64 k-space [B,C,H,W], float32 mask [B|1,1,H|1,W], maps)."""
        device = self.log_lam.device
        y = as_kspace(masked_kspace, source).to(device)
        m = as_mask(mask, tuple(y.shape), device, source)
        rf = self.config.receptive_field
        if min(y.shape[-2:]) < rf:
            raise InputError(source, f"image {y.shape[-2]}x{y.shape[-1]} is smaller than the network's field of "
                                     f"view ({rf}x{rf})")
        if sens_maps is None:
            from recon.calibration import estimate_sens_maps

            maps = estimate_sens_maps(y, m, num_low_frequencies, source=source)
        else:
            maps = as_maps(sens_maps, tuple(y.shape), device, source)
        return y, m, maps


def expand_noise_input(model: "MoDL") -> "MoDL":
    """A ``noise_input`` copy of a MoDL trained without it: the same tensors, the first convolution's new input
    channel zero, so that it reconstructs exactly as ``model`` until fine-tuned (a warm start)."""
    if model.config.noise_input:
        return model
    out = MoDL(ModlConfig(**{**asdict(model.config), "noise_input": True}))
    state = model.state_dict()
    old = state["denoiser.net.0.weight"]  # [channels, 2, k, k] -> [channels, 3, k, k]
    state["denoiser.net.0.weight"] = torch.cat([old, old.new_zeros(old.shape[0], 1, *old.shape[2:])], dim=1)
    out.load_state_dict(state)
    return out.to(model.log_lam.device)

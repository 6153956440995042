"""MoDL inference: a volume at a time (what ``recon.pipeline.reconstruct(method="modl")`` runs); a batch that comes
without coil maps gets :func:`recon.calibration.estimate_sens_maps`.
"""
from __future__ import annotations

import numpy as np
import torch

from recon.errors import InputError
from recon.modl.network import MoDL
from recon.physics import SenseOperator, as_kspace, as_mask

__all__ = ["modl_reconstruct"]


def modl_reconstruct(model: MoDL, kspace, mask, sens_maps=None, *, batch_size: int = 1,
                     num_low_frequencies: int | None = None, source: str | None = None,
                     device: str | torch.device | None = None, progress: bool = False,
                     complex_output: bool = False, self_ensemble: bool = False, adapt_steps: int = 0,
                     adapt_lr: float | None = None, adapt_reports: list | None = None) -> np.ndarray:
    """Reconstruct a volume with MoDL: k-space ``[S, C, H, W]`` complex (numpy or torch) -> float32 ``[S, H, W]``.

    Args:
        model: a :class:`MoDL` (e.g. from :func:`load_modl`); run in eval mode, no gradients.
        kspace: complex k-space ``[S, C, H, W]`` (single-coil: C = 1; a single slice ``[C, H, W]`` works too);
            values where the mask is 0 are ignored.
        mask: real 0/1 broadcastable to ``[S, C, H, W]``: ``[W]``, ``[1, 1, W]``, ``[S, 1, 1, W]``,
            ``[1, H, W]``, ``[S, 1, H, W]``, or a ``recon.masks.SamplingMask``.
        sens_maps: complex ``[S, C, H, W]``, or ``[S, M, C, H, W]`` for M ESPIRiT map sets (soft SENSE: the
            magnitude is ``sqrt(sum_m |x_m|^2)``, as ``recon.baselines`` does); default:
            :func:`recon.calibration.estimate_sens_maps` per slice.
        batch_size: slices per forward pass.
        num_low_frequencies: fastMRI's field, passed on (the calibration measures the centre itself).
        source: file name for error messages.
        device: where to run (default: where the model is; the model is moved there for the call).
        progress: show a tqdm bar over the batches.
        complex_output: return the complex image instead (complex64 ``[S, H, W]``, ``[S, M, H, W]`` with map
            sets), e.g. to predict k-space ``F S x`` from it.
        self_ensemble: every denoiser pass averaged over the 8 flips and transposes of its input
            (:func:`recon.modl.network.dihedral_mean`; about 5.5x the time on CPU at 128 x 128): on the real
            16-coil brain -0.2 to +0.4 dB per row (mean +0.12), on held-out simulations +0.11 to +0.28 dB on average
            (``recon/weights/modl.md``).
        adapt_steps: > 0: before each slice is reconstructed, a copy of the model is fine-tuned on that slice's own
            measurements for up to this many steps (ZS-SSL, :func:`recon.modl.adapt.adapt_modl`; about 0.35 s a step
            at 16 x 96 x 96 on 2 CPU threads); slices then go one at a time. Outside the maps' support (where the
            measurements teach nothing) the image keeps the given model's values.
        adapt_lr: the adaptation's Adam learning rate (None: :data:`recon.modl.adapt.DEFAULT_LR`).
        adapt_reports: a list that gets each slice's :class:`recon.modl.adapt.AdaptReport`.
    Returns: float32 numpy ``[S, H, W]`` magnitude on the RSS scale.
    """
    if isinstance(kspace, np.ndarray):
        kspace = torch.from_numpy(kspace)
    if torch.is_tensor(kspace) and kspace.ndim == 3 and kspace.is_complex():
        kspace = kspace.unsqueeze(0)
    k = as_kspace(kspace, source)
    s_count = k.shape[0]
    if hasattr(mask, "mask") and hasattr(mask, "kind"):
        if num_low_frequencies is None:
            num_low_frequencies = int(mask.num_low_frequencies) or None
        mask = mask.mask
    m = torch.from_numpy(np.asarray(mask)) if isinstance(mask, np.ndarray) else mask
    if not torch.is_tensor(m):
        raise InputError(source, f"sampling mask must be a numpy array or tensor, got {type(m).__name__}")
    m = as_mask(m, tuple(k.shape), torch.device("cpu"), source)
    if sens_maps is not None:
        sm = torch.from_numpy(sens_maps) if isinstance(sens_maps, np.ndarray) else sens_maps
        if torch.is_tensor(sm) and sm.ndim == 3 and s_count == 1:
            sm = sm.unsqueeze(0)
        sens_maps = sm
    if int(adapt_steps) > 0:
        batch_size = 1
    if int(batch_size) < 1:
        raise InputError(source, f"batch_size must be >= 1, got {batch_size}")
    out = None if complex_output else np.empty((s_count, k.shape[2], k.shape[3]), dtype=np.float32)
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
                net = model
                if int(adapt_steps) > 0:
                    from recon.modl.adapt import DEFAULT_LR, adapt_modl

                    with torch.enable_grad():
                        net, report = adapt_modl(model, y * mm, mm, maps, steps=int(adapt_steps), source=source,
                                                 lr=DEFAULT_LR if adapt_lr is None else float(adapt_lr),
                                                 progress=progress)
                    if adapt_reports is not None:
                        adapt_reports.append(report)
                image = net.unroll(y * mm, SenseOperator(maps, mm), self_ensemble=self_ensemble)
                if net is not model and report.best_step > 0:
                    # outside the maps' support the k-space loss taught nothing: keep the given model's values there
                    plain = model.unroll(y * mm, SenseOperator(maps, mm), self_ensemble=self_ensemble)
                    inside = maps.abs().square().sum(-3) > 0
                    image = torch.where(inside, image, plain)
                if complex_output:
                    if out is None:
                        out = np.empty((s_count, *image.shape[1:]), dtype=np.complex64)
                    out[a:b] = image.to(torch.complex64).cpu().numpy()
                else:
                    out[a:b] = model.magnitude(image).float().cpu().numpy()
    finally:
        model.train(was_training)
        model.to(old_device)
    return out

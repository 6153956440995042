"""A k-space-aware reference-free quality signal, for when the undersampled k-space is at hand.

The recon model (``load_predictor("recon")``) judges a magnitude image alone. With the k-space and the method,
the measured data can judge too (:mod:`recon.crossval`): the method reconstructs from all but a fold of the
samples outside the calibration centre (whole lines of line masks, points of 2-D masks), its ``F S x`` predicts
the held-out samples, and the held-out error, per band of k-space radius, applied to the estimated unmeasured
energy at the same radii estimates the k-space NMSE of the reconstruction (:func:`kspace_check`; :data:`FOLDS`
extra reconstructions per slice).

The two see different things: the image score ranks methods (MoDL above zero-filled at equal R) but barely
sees R within a method; the k-space estimate falls with R for every method but orders methods worse (each
fold is reconstructed at a higher R than the image). :func:`combined_score` joins them:
``image_score * (1 + nmse_estimate / tau) ** -power`` (in [0, 1], higher is better), ``tau`` =
:data:`COMBINED_TAU` and ``power`` = :data:`COMBINED_POWER` chosen, with the estimate's radial bands
(``recon.crossval.NMSE_BANDS``), on simulated validation subjects (IXI 31-35) by
``scripts/eval_kspace_quality.py``, which prints how each signal and the combination rank reconstructions of held-out
subjects and of the real 16-coil k-space (docs/rq/kspace.md): Spearman(score, SSIM) for the image score, the k-space
estimate and the combination 0.61 / 0.91 / 0.90 on the real scan, 0.94 / 0.68 / 0.95 on the held-out subjects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["KspaceCheck", "kspace_check", "combined_score", "method_predictor", "reconstruction_quality",
           "COMBINED_TAU", "COMBINED_POWER", "FOLDS"]

FOLDS = 4
# chosen on the validation subjects by scripts/eval_kspace_quality.py (docs/rq/kspace.md)
# (the power's grid went down to 0.25 until 2026-12-05, where tau 0.1 / power 0.25 were chosen: the edge of the grid)
# (tau 0.02 with 8 bands until 2026-12-06; the tau grid gained 0.002 that day, and 0.01 is chosen, not its edge)
COMBINED_TAU = 0.01  # with recon.crossval.NMSE_BANDS
COMBINED_POWER = 0.1


@dataclass(frozen=True)
class KspaceCheck:
    """The k-space check of one slice.

    Attributes:
        nmse_estimate: estimated k-space NMSE against the fully sampled data (lower is better; NaN when no
            sample lies outside the calibration centre), with the check's ``bands``.
        heldout_error: squared error on the held-out samples over their energy (1.0: no better than zeros).
        heldout_lines: phase-encode lines with held-out samples over all folds.
        nmse_per_bands: the estimate with each of ``recon.crossval.NMSE_BAND_CHOICES`` bands (what
            ``scripts/eval_kspace_quality.py`` chooses the bands from).
    """

    nmse_estimate: float
    heldout_error: float
    heldout_lines: int
    nmse_per_bands: tuple[float, ...] = ()


def _solver(method: str, weights: str | None, device: str | None, self_ensemble: bool = False,
            adapt_steps: int = 0, adapt_lr: float | None = None) -> Callable | None:
    """``recon.pipeline.method_solver`` with the complex image out (``[1, H, W]`` / ``[1, M, H, W]``); None for
    zero-filled, which predicts zeros."""
    from recon.pipeline import method_solver

    return method_solver(method, weights=weights, device=device, self_ensemble=self_ensemble, complex_output=True,
                         adapt_steps=adapt_steps, adapt_lr=adapt_lr)


def method_predictor(method: str, maps: np.ndarray, *, weights: str | None = None, device: str | None = None,
                     solve: Callable | None = None) -> Callable:
    """``predict(kspace [C, H, W], keep [H, W]) -> F S x [C, H, W]`` for one slice reconstructed by ``method``
    (``zf``, ``sense``, ``l1``, ``modl``: ``recon.baselines`` / ``recon.modl`` with their defaults) from the
    samples ``keep`` with the fixed coil maps ``maps`` ``[C, H, W]`` (or ESPIRiT map sets ``[M, C, H, W]``:
    ``F sum_m S_m x_m``). Zero-filled predicts zeros. ``solve``: a solver already built for ``method``
    (:func:`kspace_check` builds one per volume)."""
    import torch

    from recon.crossval import coil_kspace
    from recon.errors import InputError

    maps = np.asarray(maps, np.complex64)
    if maps.ndim not in (3, 4):
        raise InputError(None, f"coil maps for the k-space check must be [C, H, W] or [M, C, H, W], got shape "
                               f"{maps.shape}")
    solve = solve or _solver(method, weights, device)
    if solve is None:
        return lambda kspace, keep: np.zeros_like(kspace)

    def predict(kspace, keep):
        image = solve(kspace[None].astype(np.complex64), torch.from_numpy(keep.astype(np.float32))[None, None],
                      maps[None])[0]
        return coil_kspace(maps, image)

    return predict


def kspace_check(method: str, kspace: np.ndarray, mask, maps: np.ndarray, *, folds: int = FOLDS, seed: int = 0,
                 bands: int | None = None, weights: str | None = None,
                 device: str | None = None, self_ensemble: bool = False, adapt_steps: int = 0,
                 adapt_lr: float | None = None) -> list[KspaceCheck]:
    """Cross-validate ``method`` on each slice of undersampled k-space ``[S, C, H, W]`` (complex, zero where not
    sampled) under ``mask`` (a ``recon.masks.SamplingMask`` or array broadcastable to ``[1, H, W]``) with the
    coil maps it reconstructs with, ``maps`` ``[S, C, H, W]`` or ``[S, M, C, H, W]`` (e.g.
    ``recon.calibration.calibrate_maps``); the NMSE estimate per ``bands`` radial bands (default
    ``recon.crossval.NMSE_BANDS``).
    ``adapt_steps`` / ``adapt_lr``: MoDL adapted to the scan (ZS-SSL) before every held-out reconstruction, as the
    image was.
    Returns one :class:`KspaceCheck` per slice."""
    from recon.calibration import heldout_layout
    from recon.crossval import NMSE_BAND_CHOICES, NMSE_BANDS, heldout_errors, nmse_estimate

    kspace = np.asarray(kspace)
    solve = _solver(method, weights, device, self_ensemble, adapt_steps, adapt_lr)
    chosen = int(bands or NMSE_BANDS)
    out = []
    for s in range(kspace.shape[0]):
        k = kspace[s].astype(np.complex64)
        layout = heldout_layout(k, mask)
        predict = method_predictor(method, maps[s], solve=solve)
        errors, held = heldout_errors(k, layout, predict, folds=folds, seed=seed)
        estimates = {b: nmse_estimate(k, layout.points, errors, held, b) for b in {*NMSE_BAND_CHOICES, chosen}}
        nmse, relative = estimates[chosen]
        out.append(KspaceCheck(nmse, relative, int(held.any(axis=0).sum()),
                               tuple(estimates[b][0] for b in NMSE_BAND_CHOICES)))
    return out


def combined_score(image_score, nmse_estimate, tau: float = COMBINED_TAU, power: float = COMBINED_POWER):
    """``image_score * (1 + nmse_estimate / tau) ** -power``: the recon model's score (``[0, 1]``) discounted by the
    k-space check's NMSE estimate; higher is better. Arrays broadcast; NaN estimates leave the image score."""
    image_score = np.asarray(image_score, np.float64)
    nmse = np.nan_to_num(np.asarray(nmse_estimate, np.float64), nan=0.0)
    return image_score * (1.0 + np.maximum(nmse, 0.0) / float(tau)) ** -float(power)


def reconstruction_quality(method: str, kspace: np.ndarray, mask, image: np.ndarray, *, maps: np.ndarray | None = None,
                           num_maps: int = 1, calibration: str = "auto", weights: str | None = None,
                           device: str | None = None, source=None, self_ensemble: bool = False,
                           adapt_steps: int = 0, adapt_lr: float | None = None) -> dict[str, list[float]]:
    """Per slice, the three reference-free figures of a reconstruction ``image`` ``[S, H, W]`` (magnitude) that
    ``method`` made from undersampled ``kspace`` ``[S, C, H, W]`` under ``mask``: ``image_score`` (the recon
    model), ``kspace_nmse`` (:func:`kspace_check`, with the maps the image was reconstructed with when given:
    ``maps`` ``[S, C, H, W]`` / ``[S, M, C, H, W]`` or one ``[C, H, W]`` / ``[M, C, H, W]`` per slice, as
    ``recon.pipeline.run_method(..., keep_maps=True).maps``; else ``num_maps`` sets of
    ``recon.calibration.calibrate_maps(method=calibration)``) and ``combined`` (:func:`combined_score`)."""
    from mriqa.predictor import load_predictor
    from recon.calibration import calibrate_maps

    if maps is None:
        maps = calibrate_maps(kspace, mask, num_maps=int(num_maps), source=source, method=calibration)[0]
    checks = kspace_check(method, kspace, mask, maps, weights=weights, device=device, self_ensemble=self_ensemble,
                          adapt_steps=adapt_steps, adapt_lr=adapt_lr)
    scores = load_predictor("recon", device="cpu").score(np.asarray(image, np.float32), kind="mri")
    nmse = np.array([c.nmse_estimate for c in checks])
    return {"image_score": [float(v) for v in scores], "kspace_nmse": [float(v) for v in nmse],
            "combined": [float(v) for v in combined_score(scores, nmse)]}

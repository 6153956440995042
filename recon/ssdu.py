"""SSDU: self-supervised learning via data undersampling (Yaman et al., "Self-supervised learning of
physics-guided reconstruction neural networks without fully sampled reference data", MRM 84(6), 2020).

The acquired samples ``Omega`` of each slice are split into two disjoint sets: ``Theta`` (the network's input:
it reconstructs from ``y_Theta`` only) and ``Lambda`` (the loss: the reconstruction's k-space is compared with
``y_Lambda``, samples the network never saw). At inference the network gets all of ``Omega``. Our
implementation of the paper's selection (written from the paper, no code copied):

- ``|Lambda| = round(ratio * |Omega|)``, ``ratio`` = the paper's ``rho`` (default 0.4, the paper's choice).
- **Gaussian-weighted variable-density selection** (``selection="points"``, the paper's default): candidate
  k-space points are drawn from a 2-D Gaussian centred on the k-space centre with standard deviations
  ``H / std_scale`` and ``W / std_scale`` (``std_scale`` = 4), rounded to the grid; a draw is kept if it is an
  acquired sample outside the kept centre and not chosen yet, until ``|Lambda|`` points are chosen (should the
  Gaussian's tails run dry, the rest are chosen uniformly from the remaining candidates). Lambda is then
  denser near the centre, like the acquisition. ``selection="lines"`` does the same with whole phase-encode
  columns (a 1-D Gaussian over W), which keeps Theta a line mask.
- **The centre stays in Theta** (``keep_center="acs"``, default): the fully sampled centre of the mask
  (``recon.masks.acs_width``: the run of sampled columns through ``W // 2`` for line masks, the centred
  fully sampled square for 2-D masks) is never put in Lambda, so the network input keeps its calibration
  region (coil maps estimated from the ACS stay possible); ``keep_center=(h, w)`` keeps a centred block
  instead (the paper's code keeps a small 4 x 4 block); ``None`` keeps nothing.
- **Deterministic**: the split is a pure function of the mask and ``seed`` (the trainer uses
  ``recon.transforms.mask_seed(seed, step, fname, slice_num)``: a new split every step, reproducible on resume).

Shapes: a mask ``[1, H|1, W]`` / ``[H|1, W]`` (float 0/1, line or 2-D) gives ``(theta, lam)`` float32
``[1, H, W]`` for ``"points"`` and ``[1, 1, W]`` for ``"lines"`` on a line mask; ``theta + lam == mask``.
:func:`split_batch` does a batch (``[B, 1, H|1, W]``).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from recon.errors import InputError
from recon.masks import acs_width

__all__ = ["ssdu_split", "split_batch", "holdout_candidates", "DEFAULT_RATIO", "SELECTIONS"]

DEFAULT_RATIO = 0.4
SELECTIONS = ("points", "lines")


def _keep_region(mask2d: np.ndarray, keep_center, line_mask: bool) -> np.ndarray:
    """Bool ``[H, W]``: where Lambda may not go."""
    h, w = mask2d.shape
    keep = np.zeros((h, w), dtype=bool)
    if keep_center is None or keep_center is False:
        return keep
    if keep_center == "acs":
        m = torch.from_numpy(mask2d[:1] if line_mask else mask2d).float()[None]
        n = acs_width(m)
        if n == 0:
            return keep
        if line_mask:
            # the run through the centre: find its first column exactly (acs_width gives only its length)
            col = mask2d[0] > 0
            lo = w // 2
            while lo > 0 and col[lo - 1]:
                lo -= 1
            keep[:, lo:lo + n] = True
        else:
            r0, c0 = h // 2 - n // 2, w // 2 - n // 2
            keep[r0:r0 + n, c0:c0 + n] = True
        return keep
    try:
        bh, bw = (int(v) for v in keep_center)
    except (TypeError, ValueError):
        raise InputError(None, f"keep_center must be 'acs', None or (h, w), got {keep_center!r}") from None
    r0, c0 = h // 2 - bh // 2, w // 2 - bw // 2
    keep[max(r0, 0):r0 + bh, max(c0, 0):c0 + bw] = True
    return keep


def holdout_candidates(mask, keep_center: Any = "acs") -> np.ndarray:
    """Bool ``[H, W]``: the acquired samples of a 2-D mask ``[1, H, W]`` / ``[H, W]`` that point selection may put
    in ``Lambda`` (those outside the kept centre; a line mask expanded to 2-D keeps its centre as columns)."""
    m = mask.detach().cpu().numpy() if torch.is_tensor(mask) else np.asarray(mask)
    m = m.reshape(m.shape[-2:]) > 0
    return m & ~_keep_region(m, keep_center, bool((m == m[:1]).all()))


def _gaussian_pick(cands: np.ndarray, n: int, centre: Sequence[float], std: Sequence[float],
                   rng: np.random.Generator) -> np.ndarray:
    """Choose ``n`` distinct flat indices of the True entries of ``cands`` (any shape) by rounded Gaussian
    draws around ``centre``; uniform among the rest if the draws run dry."""
    shape = cands.shape
    flat_ok = cands.reshape(-1).copy()
    chosen: list[int] = []
    for _ in range(50):
        need = n - len(chosen)
        if need <= 0:
            break
        draws = np.stack([np.round(rng.normal(c, s, size=4 * need + 16)) for c, s in zip(centre, std)], axis=1)
        inside = np.all((draws >= 0) & (draws < np.array(shape)), axis=1)
        idx = np.ravel_multi_index(tuple(draws[inside].astype(np.int64).T), shape)
        _, first = np.unique(idx, return_index=True)
        idx = idx[np.sort(first)]  # distinct, in draw order
        idx = idx[flat_ok[idx]][:need]
        flat_ok[idx] = False
        chosen.extend(idx.tolist())
    need = n - len(chosen)
    if need > 0:
        rest = np.flatnonzero(flat_ok)
        chosen.extend(rng.choice(rest, size=need, replace=False).tolist())
    return np.asarray(chosen[:n], dtype=np.int64)


def ssdu_split(mask, ratio: float = DEFAULT_RATIO, seed: int = 0, selection: str = "points",
               std_scale: float = 4.0, keep_center: Any = "acs") -> tuple[torch.Tensor, torch.Tensor]:
    """Split one sampling mask into ``(theta, lam)`` (see the module docstring for the method and shapes)."""
    if not 0 < float(ratio) < 1:
        raise InputError(None, f"SSDU ratio must be in (0, 1), got {ratio}")
    if selection not in SELECTIONS:
        raise InputError(None, f"SSDU selection must be one of {SELECTIONS}, got {selection!r}")
    if not float(std_scale) > 0:
        raise InputError(None, f"SSDU std_scale must be > 0, got {std_scale}")
    m = mask.detach().cpu().float() if torch.is_tensor(mask) else torch.as_tensor(np.asarray(mask), dtype=torch.float32)
    if m.ndim == 3:
        if m.shape[0] != 1:
            raise InputError(None, f"SSDU: one mask [1, H|1, W] expected, got shape {tuple(m.shape)}")
        m = m[0]
    if m.ndim != 2:
        raise InputError(None, f"SSDU: mask must be [1, H|1, W] or [H|1, W], got shape {tuple(mask.shape)}")
    omega = m.numpy() > 0
    line_mask = omega.shape[0] == 1
    rng = np.random.default_rng(int(seed) & 0xFFFFFFFFFFFF)
    if selection == "lines":
        cols = omega.any(0)
        keep = _keep_region(omega if line_mask else cols[None], keep_center, True)[0]
        cands = cols & ~keep
        n = int(round(float(ratio) * cols.sum()))
        n = min(n, int(cands.sum()))
        if n < 1:
            raise InputError(None, f"SSDU: no acquired columns outside the kept centre to hold back "
                                   f"({int(cols.sum())} sampled columns)")
        w = omega.shape[1]
        picked = _gaussian_pick(cands, n, [w / 2.0], [w / float(std_scale)], rng)
        lam_cols = np.zeros(w, dtype=bool)
        lam_cols[picked] = True
        lam = torch.from_numpy(lam_cols[None, None].astype(np.float32))
        if not line_mask:
            lam = lam.expand(1, omega.shape[0], w) * torch.from_numpy(omega.astype(np.float32))[None]
        lam = lam.contiguous()
        theta = torch.from_numpy(omega.astype(np.float32))[None] - lam
        return theta.contiguous(), lam
    # points (the paper's)
    if line_mask:
        raise InputError(None, "SSDU point selection needs the 2-D mask [1, H, W] (expand the line mask to "
                               "the k-space height first; split_batch does)")
    h, w = omega.shape
    full = omega
    cands = holdout_candidates(full, keep_center)
    n = min(int(round(float(ratio) * full.sum())), int(cands.sum()))
    if n < 1:
        raise InputError(None, f"SSDU: no acquired samples outside the kept centre to hold back "
                               f"({int(full.sum())} samples)")
    picked = _gaussian_pick(cands, n, [h / 2.0, w / 2.0], [h / float(std_scale), w / float(std_scale)], rng)
    lam = np.zeros(h * w, dtype=np.float32)
    lam[picked] = 1.0
    lam = lam.reshape(1, h, w)
    theta = full.astype(np.float32)[None] - lam
    return torch.from_numpy(theta), torch.from_numpy(lam)


def split_batch(mask: torch.Tensor, height: int, seeds: Sequence[int], ratio: float = DEFAULT_RATIO,
                selection: str = "points", std_scale: float = 4.0,
                keep_center: Any = "acs") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample split of a batch of masks ``[B, 1, H|1, W]`` -> ``(theta, lam)`` ``[B, 1, H, W]`` (points)
    or ``[B, 1, 1, W]`` (lines on line masks), on the mask's device; ``seeds``: one per sample."""
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise InputError(None, f"SSDU: batch masks must be [B, 1, H|1, W], got {tuple(mask.shape)}")
    b = mask.shape[0]
    if len(seeds) != b:
        raise InputError(None, f"SSDU: {len(seeds)} seeds for {b} masks")
    thetas, lams = [], []
    for i in range(b):
        m = mask[i]
        if selection == "points" and m.shape[-2] == 1:
            m = m.expand(1, int(height), m.shape[-1])
        t, l_ = ssdu_split(m, ratio=ratio, seed=int(seeds[i]), selection=selection, std_scale=std_scale,
                           keep_center=keep_center)
        thetas.append(t)
        lams.append(l_)
    shapes = {tuple(t.shape) for t in thetas}
    if len(shapes) > 1:  # mixed line / 2-D masks in one batch: make all 2-D
        thetas = [t.expand(1, int(height), t.shape[-1]) for t in thetas]
        lams = [t.expand(1, int(height), t.shape[-1]) for t in lams]
    return torch.stack(thetas).to(mask.device), torch.stack(lams).to(mask.device)

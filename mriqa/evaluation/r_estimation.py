"""The acceleration (R) estimation data set and the measures of its evaluation.

Data set (``scripts/make_r_dataset.py``):

- :func:`augment_kspace`: one acquisition variation of fully sampled k-space, so that an estimator cannot read
  R off the source volume's sharpness or noise level: a separable Gaussian k-space window
  ``exp(-2 pi^2 sigma^2 f^2)`` (``f`` in cycles per pixel), i.e. an image blur of ``sigma`` pixels with
  ``sigma`` uniform in ``APOD_SIGMA``, then i.i.d. complex Gaussian noise so that the noise std becomes
  ``noise_std * SIM_SNR / snr`` with ``snr`` log-uniform in ``SNR_RANGE`` (the simulation's own SNR is 40).
- :func:`undersample_at`: :func:`recon.pipeline.undersample` of fully sampled k-space with one seed (where sigpy's
  Poisson-disk search fails for it, seen at R = 2 on 128 x 128, ``recon.masks.make_mask`` tries the next seeds).
- :func:`pooled_qf_scores`: the gray QF score with the three poolings from one QF map per image.
- :func:`file_sha256`: which weights made a file (recorded in the data set, checked by the evaluation).

Evaluation (``scripts/eval_r.py``):

- :func:`read_r_dataset`: one ``<split>/<method>.h5`` of the data set as arrays.
- :func:`interval_metrics`: MAE in R over R in [2, 12] and [2, 6], interval coverage, width, OOD fraction.
- :func:`subset` / :func:`volume_level`: a selection of an estimator's results; one estimate per acquisition
  (volume, mask kind, R) from its slices (:func:`mriqa.restimate.volume_estimate`).
- :func:`smallfov_masks`: subsets of a real acquisition's lines at a lower total R.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

__all__ = ["METHODS", "LABELS", "MASKS", "ACCELS", "POOLS", "POOL_LABELS", "SIM_SNR", "APOD_SIGMA", "SNR_RANGE",
           "augment_kspace", "undersample_at", "pooled_qf_scores",
           "file_sha256", "read_r_dataset", "interval_metrics", "subset", "volume_level", "smallfov_masks"]

METHODS = ("zf", "sense", "modl")  # the reconstruction methods of the data set
LABELS = {"zf": "zero-filled", "sense": "CG-SENSE", "modl": "MoDL"}
MASKS = ("random", "equispaced", "poisson")
ACCELS = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0)
POOLS = ("center", "mean", "foreground")
POOL_LABELS = {"center": "center", "mean": "whole (mean)", "foreground": "foreground"}
SIM_SNR = 40.0
APOD_SIGMA = (0.0, 1.2)
SNR_RANGE = (15.0, 40.0)


def augment_kspace(kspace: np.ndarray, noise_std: np.ndarray, rng: np.random.Generator,
                   sim_snr: float | None = None, snr_range: tuple[float, float] | None = None):
    """One acquisition variation (module docstring) of fully sampled k-space ``[S, C, H, W]``; ``noise_std``
    ``[S]`` is the simulation's per-slice noise std at its SNR ``sim_snr``; the new SNR is log-uniform in
    ``snr_range`` (never above ``sim_snr``: noise can be added, not removed). Returns ``(kspace, apod_sigma,
    snr)``; the input is not modified. ``sim_snr`` / ``snr_range`` default to :data:`SIM_SNR` / :data:`SNR_RANGE`,
    read at call time."""
    sim_snr = SIM_SNR if sim_snr is None else float(sim_snr)
    snr_range = SNR_RANGE if snr_range is None else snr_range
    sigma = float(rng.uniform(*APOD_SIGMA))
    lo, hi = min(snr_range[0], sim_snr), min(snr_range[1], sim_snr)
    snr = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    h, w = kspace.shape[-2:]
    fh = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fw = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    window = np.exp(-2 * np.pi ** 2 * sigma ** 2 * (fh ** 2 + fw ** 2)).astype(np.float32)
    out = kspace * window
    extra = np.asarray(noise_std, np.float64) * np.sqrt(max((sim_snr / snr) ** 2 - 1.0, 0.0))
    noise = rng.standard_normal((2, *kspace.shape)).astype(np.float32) / np.float32(np.sqrt(2.0))
    out = out + (extra[:, None, None, None] * (noise[0] + 1j * noise[1])).astype(np.complex64)
    return out.astype(np.complex64), sigma, snr


def undersample_at(kspace: np.ndarray, kind: str, accel: float, seed: int, source=None):
    """``recon.pipeline.Undersampled``: ``kspace`` ``[S, C, H, W]`` (fully sampled) under the mask of ``kind`` at
    nominal R ``accel`` drawn with ``seed`` (where sigpy's Poisson-disk search fails for a seed,
    ``recon.masks.make_mask`` tries the next ones; the mask is a function of ``seed``)."""
    from recon.io.fastmri_h5 import KspaceVolume
    from recon.pipeline import undersample

    volume = KspaceVolume(kspace=kspace, mask=None, target=None, target_key=None, attrs={},
                          path=Path(source) if source is not None else None)
    return undersample(volume, accel, kind, seed=seed)


def pooled_qf_scores(maps: np.ndarray, images: np.ndarray, geometry, pools=POOLS) -> dict[str, np.ndarray]:
    """``{pool: [N]}``: QF maps ``[N, h, w]`` pooled over images ``[N, H, W]`` (the predictor's input
    scale) with each of ``pools`` (:func:`mriqa.pooling.pool_weights`); an image whose pooling weights are all
    zero (e.g. no foreground) gets the plain mean."""
    from mriqa import pooling

    out = {}
    for p in pools:
        w = pooling.pool_weights(maps, p, image=images, geometry=geometry)
        w[w.sum(axis=(-2, -1)) <= 0] = 1.0
        out[p] = np.asarray(pooling.weighted_mean(maps, w))
    return out


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_r_dataset(path: str | os.PathLike) -> dict:
    """Every dataset of one R-estimation file (``mask_kind`` and ``volume`` as str arrays) and ``attrs``."""
    import h5py

    from recon.errors import InputError

    if not Path(path).is_file():
        raise InputError(path, "not found (run scripts/make_r_dataset.py first)")
    with h5py.File(path, "r") as hf:
        d = {k: hf[k][()] for k in hf}
        d["attrs"] = dict(hf.attrs)
    for k in ("mask_kind", "volume"):
        d[k] = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in d[k]])
    return d


def interval_metrics(r_true, res) -> dict:
    """MAE (all R and R <= 6), coverage of ``r_true`` by ``[r_low, r_high]``, median width ``r_high / r_low``
    and the fraction flagged OOD, for estimator results ``res`` (``r_est``, ``r_low``, ``r_high``, ``ood``)."""
    r_true = np.asarray(r_true, float)
    err = np.abs(res["r_est"] - r_true)
    low = r_true <= 6
    inside = (r_true >= res["r_low"] - 1e-9) & (r_true <= res["r_high"] + 1e-9)
    return {"mae": float(err.mean()), "mae_2_6": float(err[low].mean()) if low.any() else float("nan"),
            "coverage": float(inside.mean()), "width": float(np.median(res["r_high"] / res["r_low"])),
            "ood": float(np.mean([o is not None for o in res["ood"]]))}


def subset(res: dict, sel) -> dict:
    """The entries of estimator results ``res`` where the bool array ``sel`` is true."""
    return {k: (np.asarray(v)[sel] if k != "ood" else [v[i] for i in np.flatnonzero(sel)]) for k, v in res.items()}


def volume_level(d: dict, res: dict, kind: str = "all") -> dict:
    """:func:`interval_metrics` of volume estimates, one per (volume, mask kind, R) group of slices of ``kind``."""
    from mriqa.restimate import volume_estimate

    groups = {}
    for i, key in enumerate(zip(d["volume"], d["mask_kind"], d["accel"])):
        if kind in ("all", key[1]):
            groups.setdefault(key, []).append(i)
    r_true, est = [], {"r_est": [], "r_low": [], "r_high": [], "ood": []}
    for (_, _, r), idx in groups.items():
        v = volume_estimate(res["log_r"][idx], res["halfwidth"][idx], [res["ood"][i] for i in idx])
        r_true.append(float(r))
        for k in est:
            est[k].append(v[k])
    return interval_metrics(r_true, {k: (np.asarray(v) if k != "ood" else v) for k, v in est.items()})


def smallfov_masks(cols_sampled: np.ndarray, acs: tuple[int, int], width: int, targets):
    """Subsets of the acquired lines at total R ~ ``targets``: a centre block (32 % of the kept lines, inside
    the acquired ACS ``acs`` = (first, last)) plus equispaced outer lines -> list of (target, mask [W])."""
    out = []
    centre = (acs[0] + acs[1]) / 2
    for r in targets:
        keep = int(round(width / r))
        n_c = max(8, int(round(0.32 * keep)))
        c_lo = int(round(centre - n_c / 2))
        centre_cols = np.arange(c_lo, c_lo + n_c)
        outer = np.array([c for c in cols_sampled if c not in set(centre_cols)])
        pick = outer[np.unique(np.round(np.linspace(0, len(outer) - 1, max(keep - n_c, 2))).astype(int))]
        m = np.zeros(width, np.float32)
        m[centre_cols] = 1
        m[pick] = 1
        out.append((r, m))
    return out

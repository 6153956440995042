"""QF-based R estimator: the grayscale QF predictor's score, mapped to R by a monotone calibration.

Score: ``QF / 100`` of the gray QF predictor (:func:`mriqa.load_predictor` ``("gray")``) pooled over the map
with ``center``, ``mean`` (whole image) or ``foreground`` weights (:mod:`mriqa.pooling`).

Calibration, per pooling and per reconstruction method (``zf``, ``sense``, ``modl``, and ``all`` = the three
pooled, used when the method is not known): an isotonic (pool-adjacent-violators) regression of ``log R``
(nominal R) on the score, constrained non-increasing (more acceleration -> lower QF), fitted on the
**training** split of ``data/r128`` (reconstructions of the 3T MPRAGE volume), then linearly interpolated
between block centres and held constant beyond the ends. The interval half-width on ``log R`` is the split-
conformal quantile (:mod:`mriqa.restimate.intervals`) of the **validation** split (MNI152). The calibration file
is ``mriqa/weights/r-learned.qf-calibration.json`` (written by ``python -m mriqa.restimate.qf_based fit``).

Known weakness, measured in ``docs/r/README.md``: the gray QF model gives high QF to blurry images, so
zero-filled reconstructions (aliasing + blur) and QF are only loosely related; a flat stretch of the calibration
means the score cannot tell those R apart, and the conformal interval is then wide.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from recon.errors import InputError
from mriqa.restimate import REstimator, intervals, ood

POOLS = ("center", "mean", "foreground")
METHODS = ("zf", "sense", "modl")
CALIBRATION = Path(__file__).resolve().parents[1] / "weights" / "r-learned.qf-calibration.json"
QF_RANGE_MARGIN = 0.05


def fit_monotone(qf, r) -> dict:
    """Non-increasing isotonic fit of ``log r`` on ``qf`` (arrays ``[N]``) -> ``{"x": knots, "y": log R}``
    with ``x`` strictly increasing and ``y`` non-increasing."""
    from mriqa.train_qf import isotonic_blocks

    bx, by = isotonic_blocks(np.asarray(qf, float), -np.log(np.asarray(r, float)))
    if len(bx) == 1:
        bx = np.array([bx[0] - 1e-3, bx[0] + 1e-3])
        by = np.array([by[0], by[0]])
    return {"x": [float(v) for v in bx], "y": [float(-v) for v in by]}


def apply_monotone(curve: dict, qf) -> np.ndarray:
    """log R from a fitted curve (``np.interp``, constant beyond the ends); ``qf`` ``[N]`` -> ``[N]``."""
    return np.interp(np.asarray(qf, float), np.asarray(curve["x"]), np.asarray(curve["y"]))


def is_monotone(curve: dict) -> bool:
    """x strictly increasing and log R non-increasing."""
    x, y = np.asarray(curve["x"]), np.asarray(curve["y"])
    return bool(np.all(np.diff(x) > 0) and np.all(np.diff(y) <= 1e-12))


class QFREstimator(REstimator):
    """QF score -> R with a conformal interval (see the module docstring).

    Args:
        calibration: the dict stored in the calibration JSON.
        predictor: a gray :class:`mriqa.predictor.QFPredictor` (default: the shipped ``gray`` model).
        pool: pooling (default: the calibration's ``default_pool``, chosen on validation).
    """

    name = "qf"

    def __init__(self, calibration: dict, predictor=None, pool: str | None = None):
        self.calibration = calibration
        self.pool = pool or calibration["default_pool"]
        if self.pool not in calibration["pools"]:
            raise InputError(None, f"no QF calibration for pooling {self.pool!r}")
        if predictor is None:
            from mriqa.predictor import load_predictor

            predictor = load_predictor("gray", device="cpu")
        self.predictor = predictor

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, predictor=None, pool: str | None = None) -> "QFREstimator":
        path = Path(path) if path is not None else CALIBRATION
        if not path.is_file():
            raise InputError(path, "QF-based R calibration not found (fit it: python -m mriqa.restimate.qf_based fit)")
        try:
            calib = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(path, f"unreadable QF-based R calibration ({exc})") from None
        return cls(calib, predictor=predictor, pool=pool)

    def scores(self, x) -> np.ndarray:
        """QF / 100 of model inputs ``x`` ``[N, 1, H, W]`` in [0, 1] with this estimator's pooling -> ``[N]``."""
        import torch

        from mriqa import pooling

        with torch.no_grad():
            maps = self.predictor.predict_input(x).float().cpu().numpy()
        geom = self.predictor.geometry(tuple(x.shape[-2:]), tuple(maps.shape[-2:]))
        w = pooling.pool_weights(maps, self.pool, image=np.asarray(x[:, 0]), geometry=geom)
        w[w.sum(axis=(-2, -1)) <= 0] = 1.0
        return np.asarray(pooling.weighted_mean(maps, w), dtype=np.float64)

    def estimate(self, x, colour=None, recon_method: str | None = None) -> dict:
        """Estimate R for model inputs ``x`` ``[N, 1, H, W]`` in [0, 1] (:meth:`QFPredictor.prepare`).

        ``colour``: per-image flags from :func:`mriqa.restimate.ood.is_colour`. ``recon_method``: ``zf`` /
        ``sense`` / ``modl`` when known (an h5's ``method`` attribute), else the pooled calibration.
        Returns numpy ``[N]`` arrays ``r_est``, ``r_low``, ``r_high``, ``log_r``, ``qf`` and a list ``ood``
        (reason or None)."""
        table = self.calibration["pools"][self.pool]
        cal = table.get(recon_method or "all") or table["all"]
        qf = self.scores(x)
        log_r = apply_monotone(cal, qf)
        r_est, r_low, r_high = intervals.interval(log_r, cal["halfwidth"])
        reasons = ood.image_checks(x, colour, self.calibration["min_correlation"])
        lo, hi = cal["qf_range"]
        for i, q in enumerate(qf):
            if reasons[i] is None and not (lo - QF_RANGE_MARGIN <= q <= hi + QF_RANGE_MARGIN):
                reasons[i] = f"QF {q:.3f} outside the range of the training reconstructions [{lo:.3f}, {hi:.3f}]"
        for i, why in enumerate(reasons):
            if why is not None:
                r_low[i], r_high[i] = intervals.R_BOUNDS
        return {"r_est": r_est, "r_low": r_low, "r_high": r_high, "log_r": log_r, "qf": qf, "ood": reasons,
                "halfwidth": np.full(len(qf), float(cal["halfwidth"]))}


# ------------------------------------------------------------------------------------------------- fitting
def load_split(root: str | os.PathLike, split: str, methods=METHODS) -> dict[str, dict[str, np.ndarray]]:
    """Read ``<root>/<split>/<method>.h5`` (``scripts/make_r_dataset.py``) -> per method a dict of ``[N]``
    arrays (``accel``, ``accel_effective``, ``mask_kind``, ``volume``, ``slice``, ``qf_<pool>``); ``images``
    is left on disk."""
    import h5py

    out = {}
    for m in methods:
        path = Path(root) / split / f"{m}.h5"
        if not path.is_file():
            continue
        with h5py.File(path, "r") as hf:
            d = {k: hf[k][()] for k in hf if k != "images"}
            d["attrs"] = dict(hf.attrs)
        for k in ("mask_kind", "volume"):
            d[k] = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in d[k]])
        out[m] = d
    if not out:
        raise InputError(Path(root) / split, "no R-estimation data (run scripts/make_r_dataset.py)")
    return out


def fit(root: str | os.PathLike, coverage: float = 0.9, min_correlation: float | None = None) -> dict:
    """Fit every (pooling, method) calibration on ``<root>/train`` and its half-width on ``<root>/val``."""
    train, val = load_split(root, "train"), load_split(root, "val")
    methods = [m for m in METHODS if m in train and m in val]
    pools = {}
    val_mae = {}
    for pool in POOLS:
        table = {}
        for m in methods + ["all"]:
            ms = methods if m == "all" else [m]
            qf_t = np.concatenate([train[k][f"qf_{pool}"] for k in ms])
            r_t = np.concatenate([train[k]["accel"] for k in ms])
            qf_v = np.concatenate([val[k][f"qf_{pool}"] for k in ms])
            r_v = np.concatenate([val[k]["accel"] for k in ms])
            curve = fit_monotone(qf_t, r_t)
            res = apply_monotone(curve, qf_v) - np.log(r_v)
            curve["halfwidth"] = intervals.conformal_halfwidth(res, coverage)
            curve["qf_range"] = [float(qf_t.min()), float(qf_t.max())]
            curve["n_train"], curve["n_val"] = int(len(qf_t)), int(len(qf_v))
            curve["val_mae_r"] = float(np.mean(np.abs(np.exp(apply_monotone(curve, qf_v)) - r_v)))
            table[m] = curve
        pools[pool] = table
        val_mae[pool] = table["all"]["val_mae_r"]
    default_pool = min(val_mae, key=val_mae.get)
    first = train[methods[0]]["attrs"]
    return {
        "version": 1,
        "what": "QF score -> log R isotonic calibration (non-increasing); halfwidth = conformal quantile of "
                "|log residual| on validation",
        "coverage": coverage,
        "default_pool": default_pool,
        "val_mae_r_all_methods": val_mae,
        "min_correlation": min_correlation if min_correlation is not None else 0.25,
        "qf_weights_sha256": str(first.get("qf_weights_sha256", "")),
        "data": {"root": str(root), "train": "train split (3T MPRAGE)", "val": "val split (MNI152)",
                 "methods": methods},
        "pools": pools,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="fit the QF-based R calibration")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--data", default="data/r128")
    f.add_argument("--coverage", type=float, default=0.9)
    f.add_argument("--min-correlation", type=float, default=None,
                   help="noise-like threshold (default: the learned model's, else 0.25)")
    f.add_argument("--out", default=str(CALIBRATION))
    args = p.parse_args(argv)
    from recon.files import atomic_path

    min_corr = args.min_correlation
    if min_corr is None:
        try:
            from mriqa.restimate.learned import LearnedREstimator

            min_corr = LearnedREstimator.load().info["min_correlation"]
        except (InputError, KeyError):
            min_corr = None
    calib = fit(args.data, args.coverage, min_corr)
    with atomic_path(args.out, suffix=".json") as tmp:
        tmp.write_text(json.dumps(calib, indent=1) + "\n")
    for pool in POOLS:
        t = calib["pools"][pool]
        print(f"{pool:10s} " + "  ".join(f"{m}: val MAE {t[m]['val_mae_r']:.2f}, q {t[m]['halfwidth']:.3f}"
                                        for m in t))
    print(f"default pool {calib['default_pool']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

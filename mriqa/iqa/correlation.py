"""Correlation statistics of the standard IQA evaluation protocol.

Plain coefficients (signed, exactly scipy's definitions):

- **SRCC** Spearman rank-order correlation (average ranks for ties) = ``scipy.stats.spearmanr``;
- **KRCC** Kendall rank-order correlation, tau-b (tie-corrected) = ``scipy.stats.kendalltau``;
- **PLCC** Pearson linear correlation of the raw predictions = ``scipy.stats.pearsonr``.

A coefficient of a constant input (or of fewer than 2 points) is NaN, without a warning.

Fitted PLCC / RMSE: the predictions ``x`` are first mapped onto the subjective scale ``y`` by a least-squares
fit ``f`` and the PLCC / RMSE of ``f(x)`` against ``y`` are reported (RMSE in the units of ``y``):

- ``logistic4`` — the 4-parameter logistic of the VQEG FR-TV Phase I/II reports:
  ``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``;
- ``logistic5`` — the 5-parameter logistic of Sheikh, Sabir & Bovik (2006), used with LIVE:
  ``f(x) = b1 * (1/2 - 1 / (1 + exp(b2 * (x - b3)))) + b4 * x + b5``;
- ``poly3`` — the third-order polynomial ``f(x) = c3 x^3 + c2 x^2 + c1 x + c0`` that the NTIRE 2021
  perceptual IQA challenge applies before its PLCC (Gu et al. 2021, "Evaluation protocol").

Each family contains affine maps of its own outputs and, as a special or limiting case, the straight line, so
its least-squares optimum can never correlate worse than the raw predictions. The fits run on standardised
``x`` and ``y`` (the families are invariant to affine changes of either), the logistics by Levenberg-Marquardt
least squares (``scipy.optimize.least_squares``) from several starting points, keeping the best end point even
when the evaluation budget runs out (a logistic fitted to a convex trend keeps stretching towards a line); if
every start fails, or the result correlates worse than the straight line, the straight-line fit is used
instead (``FitResult.fallback``).
Fitted PLCCs carry the sign of the raw PLCC, so a metric that disagrees with humans stays negative.

NTIRE 2021 main score: ``SRCC + PLCC`` with the PLCC after the third-order polynomial fit
(:func:`ntire_score`). For the protocol's sign convention, orient both inputs "higher = better quality" first
(:mod:`mriqa.iqa.datasets` records whether a score file is MOS or DMOS); ``mriqa iqa-bench`` does that.

Per-distortion breakdown: :func:`evaluate` with ``distortion=`` (one label per image). Bootstrap confidence
intervals: :func:`bootstrap_ci` resamples (prediction, score) pairs with replacement, ``n`` times, from
``numpy.random.default_rng(seed)``, and reports percentile intervals (deterministic for a given seed).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import optimize, stats

FITS = ("logistic4", "logistic5", "poly3")
#: minimum number of points for each fit (more than its parameters)
MIN_POINTS = {"linear": 3, "logistic4": 5, "logistic5": 6, "poly3": 5}
#: statistics resampled by :func:`bootstrap_ci` unless asked otherwise (the logistic fits are slower)
BOOTSTRAP_STATS = ("srcc", "krcc", "plcc", "plcc_poly3", "ntire")
ALL_STATS = (
    "srcc", "krcc", "plcc",
    "plcc_logistic4", "plcc_logistic5", "plcc_poly3",
    "rmse_linear", "rmse_logistic4", "rmse_logistic5", "rmse_poly3", "ntire",
)


# ----------------------------------------------------------------------------------------------- inputs
def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"predictions and subjective scores differ in length: {x.size} vs {y.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("predictions and subjective scores must be finite (no NaN / Inf)")
    return x, y


def _degenerate(x: np.ndarray, y: np.ndarray) -> bool:
    return x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0


# ----------------------------------------------------------------------------------------------- plain
def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    xm, ym = x - x.mean(), y - y.mean()
    den = math.sqrt(float(np.dot(xm, xm)) * float(np.dot(ym, ym)))
    if den == 0:
        return float("nan")
    return float(np.clip(np.dot(xm, ym) / den, -1.0, 1.0))


def plcc(pred, mos) -> float:
    """Pearson linear correlation of the raw predictions (``scipy.stats.pearsonr``)."""
    x, y = _pair(pred, mos)
    return float("nan") if _degenerate(x, y) else _pearson(x, y)


def srcc(pred, mos) -> float:
    """Spearman rank-order correlation, average ranks for ties (``scipy.stats.spearmanr``)."""
    x, y = _pair(pred, mos)
    if _degenerate(x, y):
        return float("nan")
    return _pearson(stats.rankdata(x), stats.rankdata(y))


def krcc(pred, mos) -> float:
    """Kendall rank-order correlation, tau-b (``scipy.stats.kendalltau``)."""
    x, y = _pair(pred, mos)
    if _degenerate(x, y):
        return float("nan")
    return float(stats.kendalltau(x, y).statistic)


def rmse(a, b) -> float:
    a, b = _pair(a, b)
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else float("nan")


# ----------------------------------------------------------------------------------------------- fits
def logistic4(x, b1, b2, b3, b4):
    """VQEG 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``."""
    z = np.clip(-(np.asarray(x, dtype=np.float64) - b3) / (abs(b4) + 1e-12), -500, 500)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def logistic5(x, b1, b2, b3, b4, b5):
    """Sheikh et al. (2006) 5-parameter logistic ``b1 (1/2 - 1/(1 + exp(b2 (x - b3)))) + b4 x + b5``."""
    x = np.asarray(x, dtype=np.float64)
    z = np.clip(b2 * (x - b3), -500, 500)
    return b1 * (0.5 - 1.0 / (1.0 + np.exp(z))) + b4 * x + b5


@dataclass
class FitResult:
    """A fitted mapping from predictions to the subjective scale.

    ``kind``: linear / logistic4 / logistic5 / poly3; ``params``: the parameters on the *standardised*
    scales (``x_scale = (mean, std)`` of x and ``y_scale`` of y); ``fallback``: True when the straight line
    replaced a failed or worse fit (``message`` says why). Call it: ``fit(x) -> predicted scores``.
    """

    kind: str
    params: np.ndarray
    x_scale: tuple[float, float]
    y_scale: tuple[float, float]
    fallback: bool = False
    message: str = ""
    _fn: Callable | None = field(default=None, repr=False)

    def __call__(self, x) -> np.ndarray:
        zx = (np.asarray(x, dtype=np.float64) - self.x_scale[0]) / self.x_scale[1]
        return self._fn(zx) * self.y_scale[1] + self.y_scale[0]


def _linear_params(zx, zy):
    slope, intercept = np.polyfit(zx, zy, 1)
    return np.array([slope, intercept])


def _sse(fn, zx, zy) -> float:
    r = fn(zx) - zy
    return float(np.dot(r, r))


def _curve_fit(model, zx, zy, starts, good_enough: float = -math.inf):
    """Least squares (Levenberg-Marquardt) from several starting points; the best finite end point is kept even
    when the optimiser stops on its evaluation budget (a logistic fitted to a convex trend keeps growing its
    range). Stops at the first start that converges with an SSE <= ``good_enough``."""
    best, best_sse = None, math.inf
    for p0 in starts:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                res = optimize.least_squares(lambda p: model(zx, *p) - zy, np.asarray(p0, dtype=np.float64),
                                             method="lm", max_nfev=400)
        except (RuntimeError, ValueError, FloatingPointError):
            continue
        p = res.x
        if not np.all(np.isfinite(p)):
            continue
        s = _sse(lambda t: model(t, *p), zx, zy)
        if np.isfinite(s) and s < best_sse:
            best, best_sse = p, s
        if res.status > 0 and best_sse <= good_enough:
            break
    return best


def fit(pred, mos, kind: str = "poly3") -> FitResult:
    """Least-squares fit of ``mos ~ f(pred)`` for ``kind`` in linear / logistic4 / logistic5 / poly3."""
    if kind not in ("linear",) + FITS:
        raise ValueError(f"fit kind must be one of {('linear',) + FITS}, got {kind!r}")
    x, y = _pair(pred, mos)
    if x.size < MIN_POINTS[kind]:
        raise ValueError(f"{kind} fit needs at least {MIN_POINTS[kind]} points, got {x.size}")
    xs = (float(x.mean()), float(x.std()) or 1.0)
    ys = (float(y.mean()), float(y.std()) or 1.0)
    zx, zy = (x - xs[0]) / xs[1], (y - ys[0]) / ys[1]
    lin = _linear_params(zx, zy)

    def line(t, p=lin):
        return p[0] * t + p[1]

    def result(k, params, fn, fallback=False, message=""):
        return FitResult(k, np.asarray(params, dtype=np.float64), xs, ys, fallback, message, fn)

    if kind == "linear" or np.ptp(zx) == 0 or np.ptp(zy) == 0:
        return result("linear", lin, line)
    sign = 1.0 if _pearson(zx, zy) >= 0 else -1.0
    hi, lo = float(zy.max()), float(zy.min())
    med = float(np.median(zx))
    if kind == "poly3":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = np.polyfit(zx, zy, 3)

        def fn(t, p=p):
            return np.polyval(p, t)
    elif kind == "logistic4":
        top, bottom = (hi, lo) if sign > 0 else (lo, hi)
        starts = [[top, bottom, med, 1.0], [top, bottom, 0.0, 0.5], [2 * top, 2 * bottom, med, 2.0]]
        p = _curve_fit(logistic4, zx, zy, starts, _sse(line, zx, zy))

        def fn(t, p=p):
            return logistic4(t, *p)
    else:
        span = sign * (hi - lo)
        starts = [[span, 1.0, med, 0.0, float(zy.mean())], [span, 2.0, 0.0, 0.0, 0.0],
                  [span * 0.5, 1.0, med, lin[0] * 0.5, lin[1]], [1e-3, 1.0, med, lin[0], lin[1]]]
        p = _curve_fit(logistic5, zx, zy, starts, _sse(line, zx, zy))

        def fn(t, p=p):
            return logistic5(t, *p)
    if p is None:
        return result("linear", lin, line, True, f"{kind} fit did not converge; straight line used")
    r_fit = abs(_pearson(fn(zx), zy))
    r_lin = abs(_pearson(zx, zy))
    if not np.isfinite(r_fit) or r_fit < r_lin:
        return result("linear", lin, line, True, f"{kind} fit ended at a local optimum worse than the line; "
                      "straight line used")
    return result(kind, p, fn)


def fitted(pred, mos, kind: str) -> tuple[float, float]:
    """``(PLCC, RMSE)`` after the ``kind`` fit; PLCC signed like the raw PLCC; NaNs if too few points."""
    x, y = _pair(pred, mos)
    if x.size < MIN_POINTS.get(kind, 3) or _degenerate(x, y):
        return float("nan"), float("nan")
    f = fit(x, y, kind)
    yhat = f(x)
    r = _pearson(yhat, y)
    raw = _pearson(x, y)
    if np.isfinite(r) and np.isfinite(raw):
        r = math.copysign(abs(r), raw)
    return r, rmse(yhat, y)


def fitted_plcc(pred, mos, kind: str = "poly3") -> float:
    """PLCC after the ``kind`` fit (see :func:`fitted`)."""
    return fitted(pred, mos, kind)[0]


def ntire_score(pred, mos) -> float:
    """NTIRE 2021 main score: SRCC + PLCC (after the third-order polynomial fit)."""
    return srcc(pred, mos) + fitted_plcc(pred, mos, "poly3")


# ----------------------------------------------------------------------------------------------- summary
def correlations(pred, mos, stats_wanted: Sequence[str] = ALL_STATS) -> dict:
    """All protocol statistics of one set: ``{"n", "srcc", "krcc", "plcc", "plcc_logistic4",
    "rmse_logistic4", "plcc_logistic5", "rmse_logistic5", "plcc_poly3", "rmse_poly3", "rmse_linear",
    "ntire"}`` (floats; NaN where undefined)."""
    x, y = _pair(pred, mos)
    out: dict = {"n": int(x.size)}
    want = set(stats_wanted)
    if "srcc" in want or "ntire" in want:
        out["srcc"] = srcc(x, y)
    if "krcc" in want:
        out["krcc"] = krcc(x, y)
    if "plcc" in want:
        out["plcc"] = plcc(x, y)
    if "rmse_linear" in want:
        out["rmse_linear"] = fitted(x, y, "linear")[1]
    for kind in FITS:
        if f"plcc_{kind}" in want or f"rmse_{kind}" in want or (kind == "poly3" and "ntire" in want):
            out[f"plcc_{kind}"], out[f"rmse_{kind}"] = fitted(x, y, kind)
    if "ntire" in want:
        out["ntire"] = out["srcc"] + out["plcc_poly3"]
    return {k: v for k, v in out.items() if k == "n" or k in want}


_FAST_STATS = ("srcc", "krcc", "plcc", "plcc_poly3", "ntire")
_KENDALL_PAIRWISE_MAX_N = 400


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    am = a - a.mean(axis=1, keepdims=True)
    bm = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt(np.einsum("ij,ij->i", am, am) * np.einsum("ij,ij->i", bm, bm))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.einsum("ij,ij->i", am, bm) / den
    r[~(den > 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def _rowwise_kendall(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Kendall tau-b of every row pair: ``(C - D) / sqrt((n0 - tx) (n0 - ty))`` (= scipy's tau-b)."""
    m = xs.shape[1]
    if m > _KENDALL_PAIRWISE_MAX_N:
        return np.array([krcc(a, b) for a, b in zip(xs, ys)])
    iu = np.triu_indices(m, 1)
    out = np.empty(xs.shape[0])
    step = max(1, 4_000_000 // max(1, iu[0].size))
    for i in range(0, xs.shape[0], step):
        dx = np.sign(xs[i:i + step, iu[0]] - xs[i:i + step, iu[1]])
        dy = np.sign(ys[i:i + step, iu[0]] - ys[i:i + step, iu[1]])
        n0 = iu[0].size
        den = np.sqrt((n0 - (dx == 0).sum(axis=1)) * (n0 - (dy == 0).sum(axis=1)).astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i:i + step] = (dx * dy).sum(axis=1) / den
        out[i:i + step][~(den > 0)] = np.nan
    return out


def _rowwise_poly3_plcc(xs: np.ndarray, ys: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """PLCC after a least-squares cubic, every row (standardised x, batched normal equations)."""
    if xs.shape[1] < MIN_POINTS["poly3"]:
        return np.full(xs.shape[0], np.nan)
    sd = xs.std(axis=1, keepdims=True)
    z = (xs - xs.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    v = np.stack([np.ones_like(z), z, z * z, z * z * z], axis=2)  # [B, n, 4]
    a = np.einsum("bni,bnj->bij", v, v)
    rhs = np.einsum("bni,bn->bi", v, ys)
    try:
        c = np.linalg.solve(a, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:  # a resample with < 4 distinct x values: row by row
        return np.array([fitted(a_, b_, "poly3")[0] for a_, b_ in zip(xs, ys)])
    r = np.abs(_rowwise_pearson(np.einsum("bni,bi->bn", v, c), ys))
    r = np.copysign(r, raw)
    r[~np.isfinite(raw)] = np.nan
    return r


def _batched_stats(xs: np.ndarray, ys: np.ndarray, wanted) -> dict[str, np.ndarray]:
    """The plain statistics, the cubic-fitted PLCC and the NTIRE score of every resample row at once."""
    out: dict[str, np.ndarray] = {}
    want = set(wanted)
    if want & {"srcc", "ntire"}:
        out["srcc"] = _rowwise_pearson(stats.rankdata(xs, axis=1), stats.rankdata(ys, axis=1))
    raw = _rowwise_pearson(xs, ys)
    if "plcc" in want:
        out["plcc"] = raw
    if "krcc" in want:
        out["krcc"] = _rowwise_kendall(xs, ys)
    if want & {"plcc_poly3", "ntire"}:
        out["plcc_poly3"] = _rowwise_poly3_plcc(xs, ys, raw)
    if "ntire" in want:
        out["ntire"] = out["srcc"] + out["plcc_poly3"]
    return {k: v for k, v in out.items() if k in want}


def bootstrap_ci(
    pred,
    mos,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    stats_wanted: Sequence[str] = BOOTSTRAP_STATS,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals ``{stat: (low, high)}``.

    Resamples the pairs with replacement ``n`` times from ``numpy.random.default_rng(seed)`` (the same
    ``seed`` gives the same intervals); a resample where a statistic is undefined (constant values) is
    left out of that statistic's interval. SRCC, KRCC, PLCC, the cubic-fitted PLCC and the NTIRE score are
    computed for many resamples at once (identical to :func:`correlations` row by row); the logistic fits and
    RMSEs, if asked for, one resample at a time.
    """
    x, y = _pair(pred, mos)
    if n < 1:
        raise ValueError(f"bootstrap needs n >= 1 resamples, got {n}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    unknown = set(stats_wanted) - set(ALL_STATS)
    if unknown:
        raise ValueError(f"unknown statistics {sorted(unknown)}; known: {ALL_STATS}")
    rng = np.random.default_rng(seed)
    fast = [s for s in stats_wanted if s in _FAST_STATS]
    slow = [s for s in stats_wanted if s not in _FAST_STATS]
    samples: dict[str, list] = {s: [] for s in stats_wanted}
    chunk = max(1, min(n, 2_000_000 // max(1, x.size)))
    done = 0
    while done < n:
        b = min(chunk, n - done)
        idx = rng.integers(0, x.size, size=(b, x.size))
        if fast:
            for s, v in _batched_stats(x[idx], y[idx], fast).items():
                samples[s].extend(v.tolist())
        for row in idx if slow else ():
            c = correlations(x[row], y[row], slow)
            for s in slow:
                samples[s].append(c[s])
        done += b
    alpha = (1.0 - level) / 2.0
    out = {}
    for s, vals in samples.items():
        v = np.asarray(vals, dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            out[s] = (float("nan"), float("nan"))
        else:
            out[s] = (float(np.quantile(v, alpha)), float(np.quantile(v, 1.0 - alpha)))
    return out


def evaluate(
    pred,
    mos,
    distortion: Sequence | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.95,
    bootstrap_stats: Sequence[str] = BOOTSTRAP_STATS,
) -> dict:
    """The whole protocol for one metric on one dataset.

    Returns ``{"overall": correlations(...) [+ "ci": {stat: [low, high]}], "per_distortion": {label:
    correlations(...)}}``; ``per_distortion`` is empty without ``distortion`` labels (``None`` labels are
    left out of the breakdown, not of the overall numbers). ``bootstrap`` > 0 adds intervals (overall and
    per distortion) from ``bootstrap`` resamples with ``seed``.
    """
    x, y = _pair(pred, mos)
    overall = correlations(x, y)
    if bootstrap:
        overall["ci"] = {k: list(v) for k, v in bootstrap_ci(x, y, bootstrap, seed, level, bootstrap_stats).items()}
    per: dict[str, dict] = {}
    if distortion is not None:
        labels = list(distortion)
        if len(labels) != x.size:
            raise ValueError(f"{len(labels)} distortion labels for {x.size} images")
        for label in sorted({str(d) for d in labels if d is not None}):
            sel = np.array([d is not None and str(d) == label for d in labels])
            c = correlations(x[sel], y[sel])
            if bootstrap:
                c["ci"] = {k: list(v) for k, v in
                           bootstrap_ci(x[sel], y[sel], bootstrap, seed, level, bootstrap_stats).items()}
            per[label] = c
    return {"overall": overall, "per_distortion": per}

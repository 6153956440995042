"""Scores from pairwise judgments: Elo as PIPAL defines it, Bradley-Terry (Davidson ties) with bootstrap.

A judgment set is three equal-length arrays over J judgments: ``a`` and ``b`` int ``[J]`` (item indices
0..n-1, the two images shown) and ``outcome`` float ``[J]``: 1 = ``a`` preferred, 0 = ``b`` preferred,
0.5 = tie.

**Elo** (Jinjin et al., PIPAL, ECCV 2020, Sec. 3.2): every image starts at ``R = 1400``; the expected
preference is ``P(A > B) = 1 / (1 + 10 ** ((R_B - R_A) / M))`` with ``M = 400``; after a judgment
``R'_A = R_A + K (S_A - P(A > B))`` and ``R'_B = R_B + K (S_B - P(B > A))`` with ``K = 16`` and ``S = 1`` for
the chosen image, 0 for the other (0.5 each for a tie, as in chess Elo; PIPAL has no ties). The paper assigns
"the average of the Elo scores in the last few steps": :func:`elo_scores` returns each image's mean rating
over its last ``last`` updates. Because a single pass depends on the order of the judgments and moves at
most K = 16 points per judgment, the judgments are replayed ``passes`` times, each pass in a fresh seeded
random order, ratings carried over (``passes=1, shuffle=False`` is the plain chronological Elo). Note: the
paper's worked example (1500 vs 1600, A chosen) prints R'_B ~ 1594; Eq. (2) gives 1600 - 16 x 0.640 = 1589.8,
which is what this code computes (its other three numbers agree with Eq. (2)).

**Bradley-Terry with Davidson ties**: :func:`mriqa.reader_study.bt.fit_bt` (Firth-penalised maximum
likelihood; scores on the natural-log scale, mean 0 inside each content group, where they are identified).
``to_elo_scale`` maps them to Elo points (x 400 / ln 10). Confidence intervals (:func:`bootstrap_bt`):
judgments resampled with replacement within each content group, each resample refitted; the interval is the
*basic* (reverse-percentile) bootstrap interval ``[2 t - q(1 - alpha/2), 2 t - q(alpha/2)]`` of the
resampled thetas ``q``: in the simulation the resampled fits sit further from 0 than the fit itself does
(the fit's small-sample bias, repeated once more in the bootstrap world), which pushes plain percentile
intervals outward and under-covers; the basic interval subtracts that shift.

**Agreement**: :func:`reader_agreement` (each reader against the consensus of the other readers) and
:func:`pairwise_agreement` (two readers on the image pairs both judged).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mriqa.reader_study.bt import BTFit, fit_bt

ELO_START = 1400.0
ELO_M = 400.0
ELO_K = 16.0


# ------------------------------------------------------------------------------------------------ Elo
def elo_expected(r_a: float, r_b: float, m: float = ELO_M) -> float:
    """PIPAL Eq. (1): probability that A is preferred to B."""
    return 1.0 / (1.0 + 10.0 ** ((r_b - r_a) / m))


def elo_scores(a, b, outcome, n_items: int, *, passes: int = 20, last: int = 10, shuffle: bool = True,
               seed: int = 0, k: float = ELO_K, m: float = ELO_M, start: float = ELO_START) -> np.ndarray:
    """PIPAL Elo of ``n_items`` images -> float64 ``[n_items]`` (Elo points; 1400 for an unjudged image).

    ``passes`` replays (each shuffled with ``seed`` when ``shuffle``), ``last``: how many of each image's
    final ratings (after its last updates) are averaged.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    s = np.asarray(outcome, dtype=np.float64)
    r = np.full(n_items, float(start))
    history: list[list[float]] = [[] for _ in range(n_items)]
    rng = np.random.default_rng(seed)
    for _ in range(max(1, int(passes))):
        order = rng.permutation(len(a)) if shuffle else np.arange(len(a))
        for j in order.tolist():
            i1, i2, sa = int(a[j]), int(b[j]), float(s[j])
            p = 1.0 / (1.0 + 10.0 ** ((r[i2] - r[i1]) / m))
            delta = k * (sa - p)  # = -K (S_B - P(B > A)): the update conserves the sum
            r[i1] += delta
            r[i2] -= delta
            for i in (i1, i2):
                h = history[i]
                h.append(r[i])
                if len(h) > last:
                    del h[0]
    return np.array([np.mean(h) if h else start for h in history], dtype=np.float64)


# ------------------------------------------------------------------------------------------------ BT
@dataclass
class Bootstrap:
    """Bootstrap of a BT fit: ``samples`` float64 ``[B, n]`` (resampled centred thetas), ``lo`` / ``hi``
    ``[n]`` the basic bootstrap interval at ``level`` (module doc)."""

    samples: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    level: float


def bootstrap_bt(a, b, outcome, n_items: int, groups=None, *, n_boot: int = 200, level: float = 0.95,
                 seed: int = 0, fit: BTFit | None = None, firth: bool = True) -> Bootstrap:
    """Bootstrap of :func:`fit_bt`: judgments resampled with replacement within each content group (the
    group of image ``a``), each resample refitted from ``fit`` (warm start)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    s = np.asarray(outcome, dtype=np.float64)
    fit = fit or fit_bt(a, b, s, n_items, groups, firth=firth)
    rng = np.random.default_rng(seed)
    jg = np.zeros(len(a), dtype=np.int64) if groups is None else np.asarray(groups)[a]
    strata = [np.flatnonzero(jg == g) for g in np.unique(jg)]
    samples = np.empty((max(0, n_boot), n_items))
    for t in range(n_boot):
        idx = np.concatenate([rng.choice(st, size=len(st), replace=True) for st in strata]) if len(a) else a
        samples[t] = fit_bt(a[idx], b[idx], s[idx], n_items, groups, firth=firth, init=fit).theta
    return Bootstrap(samples, *basic_interval(fit.theta, samples, level), level)


def basic_interval(estimate, samples, level: float):
    """Basic bootstrap interval of ``estimate`` ``[...]`` from ``samples`` ``[B, ...]`` -> ``(lo, hi)``
    (NaN without samples)."""
    estimate = np.asarray(estimate, dtype=np.float64)
    if len(samples) == 0:
        nan = np.full(estimate.shape, np.nan)
        return nan, nan.copy()
    alpha = (1.0 - level) / 2.0
    q_lo, q_hi = np.quantile(samples, [alpha, 1.0 - alpha], axis=0)
    return 2 * estimate - q_hi, 2 * estimate - q_lo


# ------------------------------------------------------------------------------------------------ agreement
def reader_agreement(a, b, outcome, readers, n_items: int, groups=None) -> dict[str, dict]:
    """Each reader against the consensus of the **other** readers (BT fitted without the reader's judgments).

    Returns ``{reader: {"n": judgments, "n_scored": non-tie judgments on pairs the consensus orders,
    "agreement": fraction of those where the reader preferred the consensus' better image (NaN if none),
    "ties": fraction of the reader's judgments that are ties}}``. With a single reader the consensus is the
    reader's own fit (self-consistency), flagged by ``"consensus": "self"``.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    s = np.asarray(outcome, dtype=np.float64)
    readers = np.asarray(readers, dtype=object)
    names = sorted(set(readers.tolist()))
    out = {}
    for name in names:
        mine = readers == name
        others = ~mine
        alone = not others.any()
        sel = mine if alone else others
        theta = fit_bt(a[sel], b[sel], s[sel], n_items, groups).theta
        seen = np.zeros(n_items, dtype=bool)
        seen[a[sel]] = True
        seen[b[sel]] = True
        d = theta[a[mine]] - theta[b[mine]]
        sm = s[mine]
        ok = (sm != 0.5) & (np.abs(d) > 1e-9) & seen[a[mine]] & seen[b[mine]]
        agree = ((d > 0) == (sm > 0.5))[ok]
        out[name] = {"n": int(mine.sum()), "n_scored": int(ok.sum()),
                     "agreement": float(agree.mean()) if agree.size else float("nan"),
                     "ties": float(np.mean(sm == 0.5)) if mine.any() else float("nan"),
                     "consensus": "self" if alone else "others"}
    return out


def pairwise_agreement(a, b, outcome, readers) -> list[dict]:
    """Two readers on the unordered image pairs both judged: each reader's verdict on a pair is the sign of
    the mean of its outcomes (from the lower index's side; 0 = tie). Returns ``[{"readers": [r1, r2],
    "shared_pairs": n, "agreement": fraction of shared pairs with the same verdict (NaN if none)}]``."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    s = np.asarray(outcome, dtype=np.float64)
    readers = np.asarray(readers, dtype=object)
    verdict: dict[str, dict[tuple[int, int], list[float]]] = {}
    for i1, i2, sv, r in zip(a.tolist(), b.tolist(), s.tolist(), readers.tolist()):
        key, val = ((i1, i2), sv) if i1 < i2 else ((i2, i1), 1.0 - sv)
        verdict.setdefault(r, {}).setdefault(key, []).append(val)
    names = sorted(verdict)
    out = []
    for x in range(len(names)):
        for y in range(x + 1, len(names)):
            va, vb = verdict[names[x]], verdict[names[y]]
            shared = sorted(set(va) & set(vb))
            same = [np.sign(np.mean(va[p]) - 0.5) == np.sign(np.mean(vb[p]) - 0.5) for p in shared]
            out.append({"readers": [names[x], names[y]], "shared_pairs": len(shared),
                        "agreement": float(np.mean(same)) if same else float("nan")})
    return out

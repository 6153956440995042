"""Which two images to show next: active (close and uncertain first) or random, inside one content group.

State: ``groups`` int ``[n]`` (content group of each image; only images of the same group are compared),
the judgments so far, and a Bradley-Terry estimate ``theta`` ``[n]`` (natural-log scale; ties count as half a
win for each side) with a unit Gaussian prior (``ridge`` = 1), so that it is finite and calm from the first
judgment: the maximum a posteriori point, refitted by Newton steps (warm start) whenever judgments arrive.

**Active** choice (the idea of Swiss / Elo pairing, close ratings and the least-known first, made precise
as D-optimal design). For every candidate pair (i, j) of one group::

    L      = sum over past judgments (k, l) of p_kl (1 - p_kl) (e_k - e_l)(e_k - e_l)^T + ridge * I
    R_ij   = (e_i - e_j)^T L^-1 (e_i - e_j)                 variance of theta_i - theta_j (Laplace)
    p      = 1 / (1 + exp(-(theta_i - theta_j) / sqrt(1 + pi R_ij / 8)))   predicted preference,
                                                             averaged over that uncertainty (probit approx.)
    gain   = log(1 + p (1 - p) R_ij)                         growth of log det L if (i, j) is judged

``p (1 - p)`` is the Fisher information of one judgment (largest for close ratings), ``R_ij`` the
uncertainty of the pair's difference (large for rarely compared images, and for images linked only through
long chains of comparisons). The pair is drawn with probability proportional to ``gain ** (1 / jitter)``
(``argmax log(gain) + jitter * Gumbel``; ``jitter`` = 1 by default: proportional to the gain). Drawing
rather than always taking the best pair keeps two readers at once from getting the same pair, and keeps
the design from locking in early lucky outcomes: a greedy choice stops comparing pairs as soon as they look
decided, which inflates the fitted scale and made the bootstrap intervals under-cover in the simulation
(``scripts/simulate_reader_study.py``).
**Random** choice: a uniformly random pair of the study (of images of the same group).

Both never return the pair in ``exclude`` (a reader's previous pair) as long as another pair exists.
"""
from __future__ import annotations

import numpy as np


class PairingState:
    """Judgments so far and the current estimate; :meth:`choose` picks the next pair.

    ``groups``: int ``[n]``; ``ridge``: prior precision of theta (natural-log scale); ``jitter``, ``moderate``:
    see the module doc.
    """

    def __init__(self, groups, ridge: float = 1.0, jitter: float = 1.0, moderate: float = np.pi / 8):
        self.groups = np.asarray(groups, dtype=np.int64)
        self.n = len(self.groups)
        self.ridge = float(ridge)
        self.jitter = float(jitter)
        self.moderate = float(moderate)
        self.members = [np.flatnonzero(self.groups == g) for g in np.unique(self.groups)]
        self.members = [m for m in self.members if len(m) >= 2]
        self._a: list[int] = []
        self._b: list[int] = []
        self._s: list[float] = []
        self.theta = np.zeros(self.n)
        self._fitted_at = 0

    def __len__(self) -> int:
        return len(self._a)

    def add(self, a: int, b: int, outcome: float) -> None:
        """Record one judgment (``outcome``: 1 = ``a`` preferred, 0 = ``b``, 0.5 = tie)."""
        self._a.append(int(a))
        self._b.append(int(b))
        self._s.append(float(outcome))

    def _local(self, members: np.ndarray):
        """The group's judgments as local indices ``(a, b, s)`` and its theta ``[k]``."""
        pos = np.full(self.n, -1)
        pos[members] = np.arange(len(members))
        a = pos[np.asarray(self._a, dtype=np.int64)]
        b = pos[np.asarray(self._b, dtype=np.int64)]
        keep = (a >= 0) & (b >= 0)
        return a[keep], b[keep], np.asarray(self._s, dtype=np.float64)[keep], self.theta[members]

    def _precision(self, a, b, t) -> np.ndarray:
        """``L + ridge I`` ``[k, k]`` at theta ``t`` (the posterior precision, Laplace)."""
        k = len(t)
        pj = 1.0 / (1.0 + np.exp(-(t[a] - t[b])))
        w = pj * (1.0 - pj)
        lap = np.diag(np.bincount(a, w, k) + np.bincount(b, w, k) + self.ridge)
        off = np.bincount(a * k + b, w, k * k).reshape(k, k)
        return lap - off - off.T

    def refit(self, max_steps: int = 20, tol: float = 1e-6) -> None:
        """Newton steps to the MAP theta of every group, when judgments were added since the last fit."""
        if self._fitted_at == len(self._a):
            return
        for m in self.members:
            a, b, s, t = self._local(m)
            k = len(m)
            for _ in range(max_steps):
                p = 1.0 / (1.0 + np.exp(-(t[a] - t[b])))
                r = s - p
                grad = np.bincount(a, r, k) - np.bincount(b, r, k) - self.ridge * t
                step = np.linalg.solve(self._precision(a, b, t), grad)
                t = t + step
                if np.max(np.abs(step)) < tol:
                    break
            self.theta[m] = t
        self._fitted_at = len(self._a)

    def gains(self, members: np.ndarray) -> np.ndarray:
        """``log(1 + p (1 - p) R)`` ``[k, k]`` for the images ``members`` (indices) of one group."""
        a, b, _, t = self._local(members)
        cov = np.linalg.inv(self._precision(a, b, t))
        dg = np.diag(cov)
        resistance = np.maximum(dg[:, None] + dg[None, :] - 2.0 * cov, 0.0)
        d = (t[:, None] - t[None, :]) / np.sqrt(1.0 + self.moderate * resistance)
        p = 1.0 / (1.0 + np.exp(-d))
        return np.log1p(p * (1.0 - p) * resistance)

    def choose(self, rng: np.random.Generator, exclude=None, mode: str = "active") -> tuple[int, int] | None:
        """The next pair ``(i, j)`` (image indices, same group, ``i < j``; display order not randomised), or
        None when no pair outside ``exclude`` (one pair ``(i, j)`` or a list of pairs) exists."""
        if mode not in ("active", "random"):
            raise ValueError(f"unknown pairing mode {mode!r}")
        skips = _pairs(exclude)
        total = sum(len(m) * (len(m) - 1) // 2 for m in self.members)
        inside = sum(1 for i, j in skips if self.groups[i] == self.groups[j] and i != j)
        if total - inside <= 0:
            return None
        if mode == "random":
            return self._random(rng, skips)
        self.refit()
        best, best_val = None, -np.inf
        for m in self.members:
            iu = np.triu_indices(len(m), 1)
            gain = self.gains(m)[iu]
            val = np.log(np.maximum(gain, 1e-300)) + self.jitter * rng.gumbel(size=gain.shape)
            for i, j in skips:
                val[(m[iu[0]] == i) & (m[iu[1]] == j)] = -np.inf
            k = int(np.argmax(val))
            if val[k] > best_val:
                best_val, best = val[k], (int(m[iu[0][k]]), int(m[iu[1][k]]))
        return best

    def _random(self, rng: np.random.Generator, skips: set) -> tuple[int, int]:
        sizes = np.array([len(m) * (len(m) - 1) / 2 for m in self.members])
        while True:  # a uniformly random pair of the whole study (at least one pair is outside skips)
            m = self.members[int(rng.choice(len(self.members), p=sizes / sizes.sum()))]
            i, j = rng.choice(m, size=2, replace=False)
            pair = (int(min(i, j)), int(max(i, j)))
            if pair not in skips:
                return pair


def _pairs(exclude) -> set[tuple[int, int]]:
    """``None`` / one pair / pairs -> a set of sorted index pairs."""
    if exclude is None:
        return set()
    items = list(exclude)
    if len(items) == 2 and all(isinstance(v, (int, np.integer)) for v in items):
        items = [items]
    return {(int(min(p)), int(max(p))) for p in items}

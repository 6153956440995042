"""Bradley-Terry scores with Davidson ties, by (Firth-penalised) maximum likelihood.

Judgments: ``a``, ``b`` int ``[J]`` (item indices 0..n-1) and ``outcome`` float ``[J]`` (1 = ``a``
preferred, 0 = ``b``, 0.5 = tie). Model (Davidson 1970), with ``d = theta_a - theta_b`` on the natural-log
scale: ``P(a) = e^(d/2) / Z``, ``P(b) = e^(-d/2) / Z``, ``P(tie) = nu / Z``, ``Z = 2 cosh(d/2) + nu``; without
ties (``nu = 0``) this is Bradley-Terry, ``P(a) = 1 / (1 + e^-d)``.

Fit: the log-likelihood plus, by default, Firth's penalty ``0.5 log det I(theta)`` (the Jeffreys prior; it
removes the first-order bias of the maximum-likelihood estimate and keeps an image that won or lost every
judgment finite), plus a negligible ridge ``ridge / 2 * |theta|^2`` (1e-4). ``I`` is the Fisher information
of theta, the weighted Laplacian ``L = sum_j w_j (e_a - e_b)(e_a - e_b)^T`` of the comparison graph
(``w_j`` = information of one Davidson judgment about ``d``), made invertible inside each connected
component by ``+ 11^T / k`` (the unidentified shift). Maximised by Fisher scoring with step halving
(theta and log nu in alternation, warm start from ``init``). Thetas are then centred to mean 0 in each
content group.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class BTFit:
    """``theta`` float64 ``[n]`` (natural-log scale, mean 0 per group), ``nu`` (tie parameter, >= 0),
    ``loglik`` (log-likelihood at the estimate, no penalty), ``iterations``."""

    theta: np.ndarray
    nu: float
    loglik: float
    iterations: int = 0


def components(a, b, n: int) -> np.ndarray:
    """Connected component ``[n]`` of each item in the graph of judged pairs (where BT is identified)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


class _Problem:
    """The penalised log-likelihood of one data set, evaluated with its gradient and scoring matrices."""

    def __init__(self, a, b, y, n, ridge, firth):
        self.a, self.b, self.y, self.n = a, b, y, n
        self.ridge, self.firth = ridge, firth
        comp = components(a, b, n)
        self.blocks = [np.flatnonzero(comp == c) for c in np.unique(comp)]
        self.tie = y == 0
        self.n_tie = float(np.sum(self.tie))

    def evaluate(self, theta, log_nu):
        """-> (value, g_theta [n], g_lognu, step matrix [n, n] (inverse information), info of log nu)."""
        a, b, y, n = self.a, self.b, self.y, self.n
        nu = math.exp(log_nu)
        half = 0.5 * (theta[a] - theta[b])
        ad = np.abs(half)
        e2, e1 = np.exp(-2 * ad), np.exp(-ad)
        den = 1.0 + e2 + nu * e1  # Z = 2 cosh(d/2) + nu = e^|d/2| * den
        log_z = ad + np.log(den)
        sz = np.sign(half) * (1 - e2) / (2 * den)  # sinh(d/2) / Z
        cz = (1 + e2) / (2 * den)  # cosh(d/2) / Z
        p_tie = nu * e1 / den  # nu / Z
        loglik = float(np.sum(np.where(self.tie, log_nu, y * half) - log_z))
        g_d = 0.5 * y - sz  # d loglik / d d
        g_theta = np.bincount(a, g_d, n) - np.bincount(b, g_d, n) - self.ridge * theta
        g_nu = self.n_tie - float(np.sum(p_tie))
        info_nu = float(np.sum(p_tie * (1 - p_tie))) + 1e-9
        w = 0.5 * cz - sz**2  # Var(d loglik / d d) = 0.25 (1 - P_tie) - (sinh / Z)^2
        inv = np.zeros((n, n))
        logdet = 0.0
        for m in self.blocks:
            k = len(m)
            if k == 1:
                inv[m[0], m[0]] = 1.0 / self.ridge
                continue
            pos = np.full(n, -1)
            pos[m] = np.arange(k)
            pa, pb = pos[a], pos[b]
            sel = pa >= 0
            pa, pb, ws = pa[sel], pb[sel], w[sel]
            off = np.bincount(pa * k + pb, ws, k * k).reshape(k, k)
            block = np.diag(np.bincount(pa, ws, k) + np.bincount(pb, ws, k) + self.ridge) - off - off.T + 1.0 / k
            sign, ld = np.linalg.slogdet(block)
            logdet += ld if sign > 0 else -1e12
            inv[np.ix_(m, m)] = np.linalg.inv(block)
        value = loglik - 0.5 * self.ridge * float(theta @ theta)
        if self.firth:
            value += 0.5 * logdet
            dw_dd = sz * (0.25 * p_tie - cz + 2 * sz**2)  # d w / d d
            nu_dw_dnu = p_tie * (2 * sz**2 - 0.5 * cz)  # nu * d w / d nu
            lev = inv[a, a] + inv[b, b] - 2 * inv[a, b]  # (e_a - e_b)^T I^-1 (e_a - e_b)
            gd = 0.5 * dw_dd * lev
            g_theta = g_theta + np.bincount(a, gd, n) - np.bincount(b, gd, n)
            g_nu += 0.5 * float(np.sum(nu_dw_dnu * lev))
        return value, loglik, g_theta, g_nu, inv, info_nu


def _centre(theta: np.ndarray, groups) -> np.ndarray:
    out = theta.copy()
    if groups is None:
        return out - out.mean()
    for g in np.unique(groups):
        sel = groups == g
        out[sel] -= out[sel].mean()
    return out


def fit_bt(a, b, outcome, n_items: int, groups=None, *, firth: bool = True, ridge: float = 1e-4,
           init: BTFit | None = None, max_iter: int = 200, tol: float = 1e-8) -> BTFit:
    """Bradley-Terry-Davidson scores (see the module doc) -> :class:`BTFit`.

    ``groups``: int ``[n_items]`` content group of each image (thetas centred per group) or None (one group).
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    s = np.asarray(outcome, dtype=np.float64)
    groups = None if groups is None else np.asarray(groups)
    if len(a) == 0:
        return BTFit(np.zeros(n_items), 0.0, 0.0)
    y = np.where(s > 0.5, 1.0, np.where(s < 0.5, -1.0, 0.0))
    prob = _Problem(a, b, y, n_items, ridge, firth)
    theta = np.zeros(n_items) if init is None else np.asarray(init.theta, dtype=np.float64).copy()
    ties = float(np.mean(y == 0))
    log_nu = math.log(max(init.nu if init is not None else 2 * ties / max(1e-9, 1 - ties), 1e-4))
    cur = prob.evaluate(theta, log_nu)
    it = 0
    for it in range(1, max_iter + 1):
        moved = 0.0
        # theta: Fisher scoring step, halved until the objective does not decrease
        step = cur[4] @ cur[2]
        for _ in range(30):
            trial = prob.evaluate(theta + step, log_nu)
            if trial[0] >= cur[0] - 1e-12:
                break
            step = step / 2
        theta, cur = theta + step, trial
        moved = max(moved, float(np.max(np.abs(step))))
        # log nu: scoring step, same safeguard, kept in [-12, 5]
        dl = cur[3] / cur[5]
        for _ in range(30):
            new = min(5.0, max(-12.0, log_nu + dl))
            trial = prob.evaluate(theta, new)
            if trial[0] >= cur[0] - 1e-12:
                break
            dl = dl / 2
        moved = max(moved, abs(new - log_nu))
        log_nu, cur = new, trial
        if moved < tol:
            break
    theta = _centre(theta, groups)
    return BTFit(theta, math.exp(log_nu), cur[1], it)


def to_elo_scale(theta) -> np.ndarray:
    """Natural-log BT scores -> Elo points (the same logistic on base 10 / M = 400): ``theta * 400 / ln 10``."""
    return np.asarray(theta, dtype=np.float64) * 400.0 / math.log(10.0)

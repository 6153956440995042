"""Simulated readers, to check the scores and the pairing against a known truth.

Model: image ``i`` has a latent quality ``theta_i ~ N(0, sd^2)`` (natural-log scale, the scale the
Bradley-Terry fit estimates); a reader shown images i and j prefers i with probability
``e^(d/2) / Z``, j with ``e^(-d/2) / Z`` and calls a tie with ``nu / Z`` (``d = theta_i - theta_j``,
``Z = 2 cosh(d/2) + nu``): the Davidson model, i.e. logistic choice noise (``P(i) = 1 / (1 + e^-d)`` without
ties) plus ties that are likeliest for close pairs (``nu`` = 0.3: 13 % ties between equal images). Every
reader follows the same model; readers take turns, and each gets its next pair from
:class:`mriqa.reader_study.pairing.PairingState` excluding its previous pair (as the server does); left /
right order is random. Scores are compared with the truth centred to mean 0 (BT is identified up to a shift;
the simulation's scale is the model's, so no scale is fitted).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from mriqa.reader_study import rating
from mriqa.reader_study.pairing import PairingState


def davidson_choice(rng: np.random.Generator, d: float, nu: float) -> float:
    """One simulated judgment: 1 (first preferred), 0 (second) or 0.5 (tie) for quality difference ``d``."""
    z = 2.0 * np.cosh(d / 2.0) + nu
    u = rng.random() * z
    return 1.0 if u < np.exp(d / 2.0) else (0.5 if u < np.exp(d / 2.0) + nu else 0.0)


def simulate(truth, n_judgments: int, rng: np.random.Generator, mode: str = "active", readers: int = 4,
             nu: float = 0.3, checkpoints=(), on_checkpoint=None):
    """Run a simulated study on ``truth`` ``[n]`` (one content group) -> ``(a, b, s, reader)`` ``[J]``.

    ``on_checkpoint(j, a, b, s)`` is called after ``j`` judgments for each ``j`` in ``checkpoints``.
    """
    truth = np.asarray(truth, dtype=np.float64)
    state = PairingState(np.zeros(len(truth), dtype=np.int64))
    last: dict[int, tuple[int, int]] = {}
    a, b, s, who = [], [], [], []
    marks = set(checkpoints)
    for t in range(n_judgments):
        r = t % readers
        i, j = state.choose(rng, exclude=last.get(r), mode=mode)
        last[r] = (i, j)
        if rng.random() < 0.5:
            i, j = j, i
        out = davidson_choice(rng, truth[i] - truth[j], nu)
        state.add(i, j, out)
        a.append(i)
        b.append(j)
        s.append(out)
        who.append(f"reader{r + 1}")
        if t + 1 in marks and on_checkpoint is not None:
            on_checkpoint(t + 1, np.array(a), np.array(b), np.array(s))
    return np.array(a), np.array(b), np.array(s), np.array(who, dtype=object)


def acceptance(seed: int = 0, n_images: int = 100, per_image: int = 20, sd: float = 3.0, nu: float = 0.3,
               readers: int = 4, n_boot: int = 200, level: float = 0.95, mode: str = "active") -> dict:
    """One simulated study: ``n_images`` x ``per_image`` / 2 judgments (each image in ``per_image`` on
    average). Returns Spearman of Elo and of BT with the truth, the BT interval coverage of the centred truth,
    the mean interval width, the fitted tie parameter and the per-reader agreement with the others."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, sd, n_images)
    n_judgments = n_images * per_image // 2
    a, b, s, who = simulate(truth, n_judgments, rng, mode, readers, nu)
    elo = rating.elo_scores(a, b, s, n_images, seed=seed)
    fit = rating.fit_bt(a, b, s, n_images, firth=True)
    boot = rating.bootstrap_bt(a, b, s, n_images, n_boot=n_boot, level=level, seed=seed, fit=fit, firth=True)
    centred = truth - truth.mean()
    inside = (boot.lo <= centred) & (centred <= boot.hi)
    agree = rating.reader_agreement(a, b, s, who, n_images)
    return {
        "seed": seed, "n_images": n_images, "judgments": int(n_judgments), "ties": float(np.mean(s == 0.5)),
        "spearman_elo": float(spearmanr(elo, truth)[0]), "spearman_bt": float(spearmanr(fit.theta, truth)[0]),
        "coverage": float(inside.mean()), "width": float(np.mean(boot.hi - boot.lo)), "nu": fit.nu,
        "agreement": {k: v["agreement"] for k, v in agree.items()},
    }


def accuracy_curves(seeds, n_images: int = 100, step: int = 100, max_judgments: int = 3000, sd: float = 3.0,
                    nu: float = 0.3, readers: int = 4) -> dict:
    """Spearman(BT, truth) after every ``step`` judgments, active and random pairing on the same truths.

    Returns ``{"judgments": [J], "active": [[spearman per checkpoint] per seed], "random": [...]}``.
    """
    marks = list(range(step, max_judgments + 1, step))
    out = {"judgments": marks, "active": [], "random": []}
    for seed in seeds:
        truth = np.random.default_rng(seed).normal(0.0, sd, n_images)
        for mode in ("active", "random"):
            curve: list[float] = []

            def record(_j, a, b, s, curve=curve):
                curve.append(float(spearmanr(rating.fit_bt(a, b, s, n_images, firth=True).theta, truth)[0]))

            simulate(truth, max_judgments, np.random.default_rng(seed + 1000), mode, readers, nu, marks, record)
            out[mode].append(curve)
    return out


def judgments_needed(judgments, curve, target: float) -> int | None:
    """The first checkpoint from which the (mean) ``curve`` stays >= ``target``, or None."""
    curve = np.asarray(curve)
    for k in range(len(curve)):
        if np.all(curve[k:] >= target):
            return int(judgments[k])
    return None

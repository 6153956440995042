"""IQA protocol statistics: scipy agreement, fits, NTIRE score, per-distortion breakdown, bootstrap."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mriqa.iqa import correlation as C


def _data(n=60, seed=0, noise=0.15):
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    y = 1.0 / (1.0 + np.exp(-8 * (x - 0.5))) + noise * rng.standard_normal(n)
    return x, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plain_coefficients_match_scipy(seed):
    x, y = _data(seed=seed)
    x[3] = x[4]  # ties in both series
    y[7] = y[8] = y[9]
    x = np.round(x, 2)
    for sign in (1, -1):
        xs = sign * x
        assert C.srcc(xs, y) == pytest.approx(stats.spearmanr(xs, y).statistic, abs=1e-12)
        assert C.krcc(xs, y) == pytest.approx(stats.kendalltau(xs, y).statistic, abs=1e-12)
        assert C.plcc(xs, y) == pytest.approx(stats.pearsonr(xs, y).statistic, abs=1e-12)
    # lists and integer scores work too
    a, b = [1, 2, 3, 4, 5, 6], [2, 1, 4, 3, 6, 5]
    assert C.srcc(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    assert C.krcc(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)


def test_degenerate_and_bad_inputs():
    assert math.isnan(C.srcc([1, 1, 1], [1, 2, 3]))
    assert math.isnan(C.plcc([1, 2, 3], [5, 5, 5]))
    assert math.isnan(C.krcc([1], [2]))
    with pytest.raises(ValueError, match="differ in length"):
        C.plcc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        C.srcc([1, np.nan, 3], [1, 2, 3])
    plcc, rmse = C.fitted([1, 2, 3, 4], [1, 3, 2, 4], "logistic5")  # too few points for 5 parameters
    assert math.isnan(plcc) and math.isnan(rmse)


@pytest.mark.parametrize("kind", C.FITS)
def test_fitted_plcc_never_below_unfitted_on_monotone_data(kind):
    x = np.linspace(0, 1, 40)
    curves = [np.exp(3 * x), 1 / (1 + np.exp(-10 * (x - 0.4))), np.sqrt(x), x ** 3]
    rng = np.random.default_rng(1)
    for y in curves:
        for noisy in (y, y + 0.02 * np.ptp(y) * rng.standard_normal(x.size)):
            raw = C.plcc(x, noisy)
            fitted = C.fitted_plcc(x, noisy, kind)
            assert fitted >= raw - 1e-12, (kind, raw, fitted)
            # the fit maps onto the subjective scale: its RMSE is no worse than the straight line's
            assert C.fitted(x, noisy, kind)[1] <= C.fitted(x, noisy, "linear")[1] + 1e-9
    # a decreasing relation keeps its (negative) sign, with a magnitude no smaller than the raw one
    y = -np.exp(3 * x)
    assert C.fitted_plcc(x, y, kind) <= C.plcc(x, y) + 1e-12 < 0


def test_logistic_fits_recover_exact_curves():
    x = np.linspace(-3, 5, 50)
    y4 = C.logistic4(x, 9.0, 1.0, 1.0, 0.7)
    f4 = C.fit(x, y4, "logistic4")
    assert not f4.fallback and np.max(np.abs(f4(x) - y4)) < 1e-4
    y5 = C.logistic5(x, 4.0, 1.5, 0.5, 0.3, 2.0)
    f5 = C.fit(x, y5, "logistic5")
    assert not f5.fallback and np.max(np.abs(f5(x) - y5)) < 1e-3
    p3 = C.fit(x, 0.1 * x ** 3 - x + 2, "poly3")
    assert np.allclose(p3(x), 0.1 * x ** 3 - x + 2, atol=1e-8)
    with pytest.raises(ValueError, match="fit kind"):
        C.fit(x, y4, "spline")


def test_correlations_and_ntire_score():
    x, y = _data()
    c = C.correlations(x, y)
    assert set(c) == {"n", *C.ALL_STATS} and c["n"] == 60
    assert c["ntire"] == pytest.approx(c["srcc"] + c["plcc_poly3"])
    assert C.ntire_score(x, y) == pytest.approx(c["ntire"])
    assert c["rmse_poly3"] == pytest.approx(C.fitted(x, y, "poly3")[1])
    assert 0 < c["plcc"] <= c["plcc_logistic4"] <= 1


def test_per_distortion_breakdown():
    x, y = _data(n=90)
    labels = np.array(["jpeg", "blur", "noise"] * 30, dtype=object)
    labels[0] = None  # unlabelled: in the overall numbers only
    res = C.evaluate(x, y, labels)
    assert res["overall"]["n"] == 90
    assert set(res["per_distortion"]) == {"jpeg", "blur", "noise"}
    assert res["per_distortion"]["jpeg"]["n"] == 29 and res["per_distortion"]["blur"]["n"] == 30
    sel = labels == "noise"
    assert res["per_distortion"]["noise"]["srcc"] == pytest.approx(stats.spearmanr(x[sel], y[sel]).statistic)
    with pytest.raises(ValueError, match="labels"):
        C.evaluate(x, y, ["a"] * 3)


@pytest.mark.parametrize("n", [4, 40, 450])
def test_batched_bootstrap_statistics_equal_the_plain_ones(n):
    """The bootstrap computes its resamples in batches; each row must equal correlations() on that row."""
    rng = np.random.default_rng(n)
    x = np.round(rng.random(n), 1)  # many ties
    y = np.round(x + 0.3 * rng.standard_normal(n), 1)
    idx = rng.integers(0, n, size=(12, n))
    batched = C._batched_stats(x[idx], y[idx], C.BOOTSTRAP_STATS)
    for j, row in enumerate(idx):
        plain = C.correlations(x[row], y[row], C.BOOTSTRAP_STATS)
        for k in C.BOOTSTRAP_STATS:
            a, b = batched[k][j], plain[k]
            assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-9), (k, a, b)


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    x, y = _data(n=50, noise=0.3)
    point = C.correlations(x, y)
    ci = C.bootstrap_ci(x, y, n=200, seed=7)
    assert set(ci) == set(C.BOOTSTRAP_STATS)
    for k, (lo, hi) in ci.items():
        assert lo <= point[k] <= hi, (k, lo, point[k], hi)
        assert hi - lo > 0
    assert C.bootstrap_ci(x, y, n=200, seed=7) == ci
    assert C.bootstrap_ci(x, y, n=200, seed=8) != ci
    wide = C.bootstrap_ci(x, y, n=200, seed=7, level=0.99, stats_wanted=("srcc",))["srcc"]
    assert wide[0] <= ci["srcc"][0] and wide[1] >= ci["srcc"][1]
    res = C.evaluate(x, y, ["a", "b"] * 25, bootstrap=50, seed=3)
    assert res["overall"]["ci"]["srcc"][0] <= res["overall"]["srcc"] <= res["overall"]["ci"]["srcc"][1]
    assert "ci" in res["per_distortion"]["a"]
    with pytest.raises(ValueError, match="unknown statistics"):
        C.bootstrap_ci(x, y, n=10, stats_wanted=("nope",))

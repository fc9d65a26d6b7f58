"""Tests of the bounded-mean confidence bounds (Hoeffding, empirical Bernstein, betting)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import binom

from smoothcert.errors import InvalidParameterError
from smoothcert.stats import (
    betting_lower,
    betting_upper,
    clopper_pearson_lower,
    empirical_bernstein_lower,
    empirical_bernstein_upper,
    hoeffding_lower,
    hoeffding_upper,
)


def _reference_scores() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(0.9 + 0.017 * rng.standard_normal(10_000), 0.0, 1.0)


def _miss_test_passes(misses: int, trials: int, alpha: float) -> bool:
    """One-sided binomial test of H0: miss rate <= alpha, at level 1e-3."""
    return float(binom.sf(misses - 1, trials, alpha)) > 1e-3


# --- reference values (issue 8) ----------------------------------------------------------


def test_reference_values_low_variance_scores() -> None:
    x = _reference_scores()
    n, alpha = x.size, 0.001
    mean, var = float(x.mean()), float(x.var(ddof=1))
    start = time.perf_counter()
    bet = betting_lower(x, alpha=alpha)
    seconds = time.perf_counter() - start
    eb = float(empirical_bernstein_lower(mean, var, n=n, alpha=alpha))
    hf = float(hoeffding_lower(mean, n=n, alpha=alpha))
    assert bet == pytest.approx(0.8985, abs=4e-4)
    assert eb == pytest.approx(0.8975, abs=4e-4)
    assert hf == pytest.approx(0.8813, abs=4e-4)
    assert bet >= eb > hf
    assert seconds < 5.0  # generous: about 0.1 s on one core


# --- closed forms (catch a wrong alpha, a wrong log term) ----------------------------------


@pytest.mark.parametrize("alpha", [0.001, 0.05, 0.3])
def test_hoeffding_closed_form(alpha: float) -> None:
    mean = np.array([0.2, 0.5, 0.95])
    n = np.array([10, 1000, 100_000])
    width = np.sqrt(np.log(1 / alpha) / (2 * n))
    np.testing.assert_allclose(
        hoeffding_lower(mean, n=n, alpha=alpha), np.clip(mean - width, 0, 1), rtol=1e-10
    )
    np.testing.assert_allclose(
        hoeffding_upper(mean, n=n, alpha=alpha), np.clip(mean + width, 0, 1), rtol=1e-10
    )
    assert np.all(hoeffding_lower(mean, n=n, alpha=alpha) <= np.clip(mean - width, 0, 1))


@pytest.mark.parametrize("alpha", [0.001, 0.05, 0.3])
def test_bernstein_closed_form(alpha: float) -> None:
    mean = np.array([0.3, 0.5, 0.9])
    var = np.array([0.01, 0.25, 0.0004])
    n = np.array([50, 1000, 10_000])
    log_term = math.log(2 / alpha)
    width = np.sqrt(2 * var * log_term / n) + 7 * log_term / (3 * (n - 1))
    lo = empirical_bernstein_lower(mean, var, n=n, alpha=alpha)
    hi = empirical_bernstein_upper(mean, var, n=n, alpha=alpha)
    np.testing.assert_allclose(lo, np.clip(mean - width, 0, 1), rtol=1e-10)
    np.testing.assert_allclose(hi, np.clip(mean + width, 0, 1), rtol=1e-10)
    assert np.all(lo <= np.clip(mean - width, 0, 1)) and np.all(hi >= np.minimum(mean + width, 1))


def _betting_lower_reference(x: np.ndarray, alpha: float, c: float) -> float:
    """Independent scalar re-implementation: loops and brentq."""
    n = len(x)
    total, sq, sigma2_prev = 0.0, 0.0, 0.25
    bets = []
    for t, xi in enumerate(x, start=1):
        bets.append(min(c, math.sqrt(2 * math.log(1 / alpha) / (n * sigma2_prev))))
        total += xi
        mu_hat = (0.5 + total) / (t + 1)
        sq += (xi - mu_hat) ** 2
        sigma2_prev = (0.25 + sq) / (t + 1)

    def excess(m: float) -> float:
        logk, best = 0.0, 0.0
        for lam, xi in zip(bets, x, strict=True):
            lam_m = min(lam, c / m) if m > 0 else lam
            logk += math.log1p(lam_m * (xi - m))
            best = max(best, logk)
        return best - math.log(1 / alpha)

    if excess(0.0) < 0:
        return 0.0
    return float(brentq(excess, 0.0, 1.0 - 1e-12, xtol=1e-12))


@pytest.mark.parametrize(
    ("alpha", "c", "seed"), [(0.001, 0.5, 1), (0.05, 0.5, 2), (0.3, 0.75, 3), (0.6, 0.5, 4)]
)
def test_betting_matches_independent_reference(alpha: float, c: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.beta(8, 2, size=300)
    ours = betting_lower(x, alpha=alpha, max_bet=c)
    ref = _betting_lower_reference(x, alpha, c)
    assert ref - 2e-9 <= ours <= ref + 1e-12


# --- betting vs Clopper-Pearson -----------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "n"), [(0.5, 1000), (0.9, 1000), (0.99, 1000), (0.5, 10_000), (0.99, 10_000)]
)
def test_betting_close_to_clopper_pearson_on_votes(p: float, n: int) -> None:
    # Betting is an e-process bound, so it cannot beat the Chernoff bound (log(1/alpha)
    # in place of z_alpha^2 / 2): it pays at most about 35% in width over exact CP.
    k = round(p * n)
    votes = np.zeros(n)
    votes[:k] = 1.0
    np.random.default_rng(5).shuffle(votes)
    cp = float(clopper_pearson_lower(k, n, alpha=0.001))
    bet = betting_lower(votes, alpha=0.001)
    assert bet <= k / n
    assert k / n - bet <= 1.35 * (k / n - cp)


# --- coverage ----------------------------------------------------------------------------


def _bernoulli_and_beta(rng: np.random.Generator, trials: int, n: int) -> list[tuple]:
    return [
        ("bernoulli", 0.7, (rng.random((trials, n)) < 0.7).astype(np.float64)),
        ("beta", 2 / 7, rng.beta(2.0, 5.0, size=(trials, n))),
    ]


def test_closed_form_bounds_cover_at_large_alpha() -> None:
    rng = np.random.default_rng(11)
    alpha, trials, n = 0.3, 20_000, 30
    for _, mu, x in _bernoulli_and_beta(rng, trials, n):
        mean, var = x.mean(axis=1), x.var(axis=1, ddof=1)
        for lo, hi in (
            (hoeffding_lower(mean, n=n, alpha=alpha), hoeffding_upper(mean, n=n, alpha=alpha)),
            (
                empirical_bernstein_lower(mean, var, n=n, alpha=alpha),
                empirical_bernstein_upper(mean, var, n=n, alpha=alpha),
            ),
        ):
            assert _miss_test_passes(int(np.sum(lo > mu)), trials, alpha)
            assert _miss_test_passes(int(np.sum(hi < mu)), trials, alpha)


@pytest.mark.slow
def test_betting_coverage() -> None:
    rng = np.random.default_rng(12)
    alpha, trials, n = 0.2, 2000, 100
    for _, mu, x in _bernoulli_and_beta(rng, trials, n):
        lo_miss = sum(betting_lower(row, alpha=alpha) > mu for row in x)
        hi_miss = sum(betting_upper(row, alpha=alpha) < mu for row in x)
        assert _miss_test_passes(int(lo_miss), trials, alpha)
        assert _miss_test_passes(int(hi_miss), trials, alpha)


def test_betting_coverage_quick() -> None:
    rng = np.random.default_rng(13)
    alpha, trials, n = 0.2, 300, 50
    for _, mu, x in _bernoulli_and_beta(rng, trials, n):
        misses = sum(betting_lower(row, alpha=alpha) > mu for row in x)
        assert _miss_test_passes(int(misses), trials, alpha)


# --- symmetry and monotonicity -----------------------------------------------------------


def test_upper_is_mirrored_lower() -> None:
    rng = np.random.default_rng(7)
    x = rng.beta(2, 3, size=500)
    assert betting_upper(x, alpha=0.01) == pytest.approx(
        1 - betting_lower(1 - x, alpha=0.01), abs=1e-12
    )
    m = np.array([0.1, 0.4, 0.8])
    np.testing.assert_allclose(
        hoeffding_upper(m, n=200, alpha=0.01), 1 - hoeffding_lower(1 - m, n=200, alpha=0.01)
    )
    np.testing.assert_allclose(
        empirical_bernstein_upper(m, 0.02, n=200, alpha=0.01),
        1 - empirical_bernstein_lower(1 - m, 0.02, n=200, alpha=0.01),
    )


def test_monotonicity() -> None:
    means = np.linspace(0, 1, 21)
    assert np.all(np.diff(hoeffding_lower(means, n=100, alpha=0.05)) >= 0)
    assert np.all(np.diff(empirical_bernstein_lower(means, 0.05, n=100, alpha=0.05)) >= 0)
    alphas = [0.001, 0.01, 0.1, 0.5]
    for f in (
        lambda a: hoeffding_lower(0.7, n=100, alpha=a),
        lambda a: empirical_bernstein_lower(0.7, 0.05, n=100, alpha=a),
        lambda a: betting_lower([0.7] * 100, alpha=a),
    ):
        values = [float(f(a)) for a in alphas]
        assert values == sorted(values)
    # More samples of the same value: the betting bound increases.
    values = [betting_lower([0.8] * k, alpha=0.05) for k in (10, 100, 1000)]
    assert values == sorted(values) and values[-1] < 0.8
    # Higher scores: the betting bound increases.
    values = [betting_lower([v] * 200, alpha=0.05) for v in (0.2, 0.5, 0.9, 1.0)]
    assert values == sorted(values)


def test_horizon() -> None:
    x = np.random.default_rng(8).beta(5, 2, size=400)
    assert betting_lower(x, alpha=0.05, horizon=400) == betting_lower(x, alpha=0.05)
    # A longer horizon bets less per step: here a slightly looser bound on the same data.
    assert betting_lower(x[:200], alpha=0.05, horizon=400) < betting_lower(x[:200], alpha=0.05)
    assert betting_upper(x, alpha=0.05, horizon=1000) >= betting_lower(x, alpha=0.05)


def test_edge_values() -> None:
    assert float(hoeffding_lower(0.0, n=5, alpha=0.1)) == 0.0
    assert float(hoeffding_upper(1.0, n=5, alpha=0.1)) == 1.0
    assert betting_lower([0.0] * 20, alpha=0.1) == 0.0
    assert betting_upper([1.0] * 20, alpha=0.1) == 1.0
    assert 0.0 < betting_lower([1.0], alpha=0.9) < 1.0
    assert hoeffding_lower([0.5, 0.6], n=[[10], [20]], alpha=0.1).shape == (2, 2)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: hoeffding_lower(1.2, n=10, alpha=0.1), "mean = 1.2"),
        (lambda: hoeffding_upper(float("nan"), n=10, alpha=0.1), "NaN"),
        (lambda: hoeffding_lower(0.5, n=0, alpha=0.1), "n = 0"),
        (lambda: hoeffding_lower(0.5, n=2.5, alpha=0.1), "n = 2.5"),
        (lambda: hoeffding_lower(0.5, n=10, alpha=1.0), "alpha = 1.0"),
        (lambda: hoeffding_lower(0.5, n=10, alpha=0.0), "0 < alpha < 1"),
        (lambda: empirical_bernstein_lower(0.5, -0.1, n=10, alpha=0.1), "variance = -0.1"),
        (lambda: empirical_bernstein_upper(0.5, 0.1, n=1, alpha=0.1), "n >= 2"),
        (lambda: empirical_bernstein_lower(-0.1, 0.1, n=10, alpha=0.1), "mean = -0.1"),
        (lambda: betting_lower([0.5, 1.5], alpha=0.1), "scores = 1.5"),
        (lambda: betting_upper([0.5, float("nan")], alpha=0.1), "NaN"),
        (lambda: betting_lower([], alpha=0.1), "at least"),
        (lambda: betting_lower([[0.5]], alpha=0.1), "1-D"),
        (lambda: betting_lower([0.5], alpha=-1.0), "alpha = -1.0"),
        (lambda: betting_lower([0.5], alpha=0.1, max_bet=1.0), "max_bet"),
        (lambda: betting_lower([0.5, 0.5], alpha=0.1, horizon=1), "horizon >= 2"),
    ],
)
def test_bad_input(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidParameterError, match=match):
        call()

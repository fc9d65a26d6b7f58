"""The order-invariant betting bounds (mixture of constant bets) on multisets and histograms.

Oracles: Clopper-Pearson and empirical Bernstein (reference comparisons), exact binomial
enumeration (coverage on votes, with a doubled-alpha mutant that the check catches),
Monte Carlo coverage on continuous [0, 1] scores, and the exact-score bound for the
quantisation argument (stats/bounded.py, "order-invariant betting").
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta as beta_dist
from scipy.stats import binom

from smoothcert.errors import InvalidParameterError
from smoothcert.stats import (
    HISTOGRAM_BINS,
    betting_histogram_lower,
    betting_histogram_upper,
    betting_mixture_lower,
    betting_mixture_upper,
    clopper_pearson_lower,
    empirical_bernstein_lower,
    histogram_edges,
    hoeffding_lower,
    mixture_bets,
    score_histogram,
)

VOTES = np.array([0.0, 1.0])


def _reference_scores(mean: float = 0.9, sd: float = 0.017, n: int = 10_000) -> np.ndarray:
    """n scores with exactly the given sample mean and (population) s.d., in [0, 1]."""
    x = np.random.default_rng(0).normal(size=n)
    x = (x - x.mean()) / x.std()
    return mean + sd * x


# --- reference values --------------------------------------------------------------------


def test_reference_case_beats_bernstein_and_hoeffding() -> None:
    x = _reference_scores()
    alpha = 0.001
    exact = float(betting_mixture_lower(x, alpha=alpha))
    hist = float(betting_histogram_lower(score_histogram(x), alpha=alpha))
    bern = float(empirical_bernstein_lower(0.9, 0.017**2, n=10_000, alpha=alpha))
    hoeff = float(hoeffding_lower(0.9, n=10_000, alpha=alpha))
    assert round(bern, 4) == 0.8976 and round(hoeff, 4) == 0.8814
    assert 0.8985 <= exact <= 0.8995, exact
    assert 0.8982 <= hist <= exact, (hist, exact)  # histogram loses < 1/B = 2.4e-4
    assert exact - hist < 1.0 / HISTOGRAM_BINS
    assert hist > bern + 5e-4 > hoeff


@pytest.mark.parametrize("n", [100, 1_000, 10_000, 100_000])
def test_votes_within_a_small_tolerance_of_clopper_pearson(n: int) -> None:
    # A product of constant bets is a Chernoff bound, which is below the exact binomial
    # tail; the mixture costs about log(8) more. Measured: width at most 1.42 times
    # Clopper-Pearson's (1.53 at k = n), gap at most 0.61 / sqrt(n) (at p = 1/2).
    alpha = 0.001
    k = np.unique(np.round(np.array([0.5, 0.7, 0.9, 0.95, 0.99, 1.0]) * n).astype(np.int64))
    lower = betting_mixture_lower(VOTES, counts=np.stack([n - k, k], axis=1), alpha=alpha)
    cp = clopper_pearson_lower(k, n, alpha=alpha)
    phat = k / n
    assert np.all(lower <= phat)
    ratio = (phat - lower) / (phat - cp)
    assert np.all(ratio[k < n] <= 1.45) and np.all(ratio <= 1.55), ratio
    assert np.all(cp - lower <= 0.65 / np.sqrt(n)), cp - lower


@pytest.mark.parametrize("mean", [0.6, 0.9, 0.97])
@pytest.mark.parametrize("sd", [0.003, 0.01, 0.03])
@pytest.mark.parametrize("n", [1_000, 10_000])
def test_low_variance_scores_match_or_beat_empirical_bernstein(mean, sd, n) -> None:
    x = np.clip(_reference_scores(mean, sd, n), 0.0, 1.0)
    alpha = 0.001
    bern = float(empirical_bernstein_lower(x.mean(), x.var(ddof=1), n=n, alpha=alpha))
    hist = float(betting_histogram_lower(score_histogram(x), alpha=alpha))
    assert hist >= bern - 1.0 / HISTOGRAM_BINS, (hist, bern)


def test_bets_are_a_fixed_geometric_grid() -> None:
    bets = mixture_bets(10_000, alpha=0.001)
    assert bets.shape == (16,)
    assert bets[0] == pytest.approx(np.sqrt(2 * np.log(1000) / 10_000) / 0.5)
    assert bets[-1] == pytest.approx(4.0)
    assert np.allclose(np.diff(np.log(bets)), np.log(bets[1] / bets[0]))
    assert mixture_bets([10, 10_000], alpha=0.01).shape == (2, 16)


# --- coverage --------------------------------------------------------------------------


def _max_failure(lower: np.ndarray, n: int) -> float:
    """Exact max over p of P(lower(K) > p), K ~ Binomial(n, p), on a fine grid of p."""
    ps = np.linspace(0.0005, 0.9995, 1999)
    pmf = binom.pmf(np.arange(n + 1)[None, :], n, ps[:, None])
    return float((pmf * (lower[None, :] > ps[:, None])).sum(axis=1).max())


def _vote_lowers(n: int, alpha: float) -> np.ndarray:
    k = np.arange(n + 1)
    return betting_mixture_lower(VOTES, counts=np.stack([n - k, k], axis=1), alpha=alpha)


@pytest.mark.parametrize("n", [10, 20, 50, 200])
@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_exact_coverage_on_votes(n: int, alpha: float) -> None:
    assert _max_failure(_vote_lowers(n, alpha), n) <= alpha
    # the upper bound, by symmetry of the enumeration: P(upper(K) < p) <= alpha
    k = np.arange(n + 1)
    upper = betting_mixture_upper(VOTES, counts=np.stack([n - k, k], axis=1), alpha=alpha)
    assert _max_failure(1.0 - upper[::-1], n) <= alpha


@pytest.mark.parametrize("n", [10, 20, 50])
def test_the_coverage_check_catches_a_doubled_alpha(n: int) -> None:
    alpha = 0.2
    assert _max_failure(_vote_lowers(n, 2 * alpha), n) > alpha  # the mutant fails


def _mc_failures(rng, a: float, b: float, n: int, trials: int, alpha: float) -> float:
    x = rng.beta(a, b, size=(trials, n))
    mu = a / (a + b)
    counts = score_histogram(x, bins=64)  # any B is sound; few bins keep the batch small
    low = betting_histogram_lower(counts, alpha=alpha)
    up = betting_histogram_upper(counts, alpha=alpha)
    return float(np.mean(low > mu)), float(np.mean(up < mu))


@pytest.mark.parametrize(("a", "b"), [(0.3, 0.3), (8.0, 2.0), (50.0, 1.0)])
def test_monte_carlo_coverage_on_continuous_scores(a: float, b: float) -> None:
    alpha, trials = 0.2, 600
    low_fail, up_fail = _mc_failures(np.random.default_rng(1), a, b, 30, trials, alpha)
    slack = 3 * np.sqrt(alpha * (1 - alpha) / trials)
    assert low_fail <= alpha + slack and up_fail <= alpha + slack, (low_fail, up_fail)


@pytest.mark.slow
@pytest.mark.parametrize(("a", "b"), [(0.5, 0.5), (20.0, 2.0), (200.0, 3.0)])
def test_monte_carlo_coverage_large(a: float, b: float) -> None:
    alpha, trials = 0.05, 20_000
    low_fail, up_fail = _mc_failures(np.random.default_rng(2), a, b, 200, trials, alpha)
    slack = 3 * np.sqrt(alpha * (1 - alpha) / trials)
    assert low_fail <= alpha + slack and up_fail <= alpha + slack, (low_fail, up_fail)


# --- quantisation ------------------------------------------------------------------------


@pytest.mark.parametrize("bins", [1, 16, HISTOGRAM_BINS])
def test_histogram_bounds_are_outside_the_exact_score_bounds(bins: int) -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.beta(9, 1, size=(5, 300)), np.ones((5, 20))], axis=1)
    x[0, :10] = 0.0
    counts = score_histogram(x, bins=bins)
    low_h = betting_histogram_lower(counts, alpha=0.01)
    up_h = betting_histogram_upper(counts, alpha=0.01)
    for i in range(x.shape[0]):
        # same n, same grid: only the values differ (rounded down / up to the bin edges)
        assert low_h[i] <= betting_mixture_lower(x[i], alpha=0.01) <= x[i].mean()
        assert up_h[i] >= betting_mixture_upper(x[i], alpha=0.01) >= x[i].mean()


def test_histogram_edges_bracket_every_score() -> None:
    x = np.random.default_rng(4).random(10_000)
    x[:3] = [0.0, 1.0, 1.0 - 2.0**-53]
    for bins in (1, 8, HISTOGRAM_BINS):
        idx = np.minimum(np.floor(x * bins), bins).astype(int)
        assert np.all(histogram_edges(bins)[idx] <= x)
        assert np.all(histogram_edges(bins, upper=True)[idx] >= x)
        assert score_histogram(x, bins=bins).sum() == x.size


def test_votes_are_exact_in_a_histogram_lower_bound() -> None:
    counts = np.zeros(HISTOGRAM_BINS + 1, dtype=np.int64)
    counts[0], counts[-1] = 30, 970
    exact = betting_mixture_lower(VOTES, counts=[30, 970], alpha=0.001)
    assert betting_histogram_lower(counts, alpha=0.001) == exact
    assert betting_histogram_lower([30, 970], alpha=0.001) == exact  # B = 1


def test_batch_rows_equal_single_calls() -> None:
    counts = score_histogram(np.random.default_rng(5).beta(5, 2, size=(3, 500)), bins=64)
    batch = betting_histogram_lower(counts, alpha=0.05)
    assert batch.shape == (3,)
    assert [float(betting_histogram_lower(c, alpha=0.05)) for c in counts] == batch.tolist()


def test_lower_bound_is_below_the_mean_and_matches_the_beta_reference() -> None:
    # one sample per row: a constant-bet bound on one score never exceeds it
    x = np.array([0.0, 0.3, 1.0])
    for v in x:
        assert betting_mixture_lower([v], alpha=0.05) <= v
    # all-ones votes: the bound is below Clopper-Pearson's alpha^(1/n)
    assert betting_mixture_lower(VOTES, counts=[0, 50], alpha=0.05) <= beta_dist.ppf(0.05, 50, 1)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "alpha", "needle"),
    [
        ([5, -1, 3], 0.05, "negative entry -1"),
        ([1, 2, 3, 4], 0.05, r"shape \(4,\) is invalid; valid: a histogram of B \+ 1 bins"),
        ([7], 0.05, r"shape \(1,\) is invalid"),
        ([0, 0, 0], 0.05, "row with n = 0"),
        ([1.5, 2.0, 1.0], 0.05, "is invalid; valid: nonnegative integer"),
        ([np.nan, 2.0, 1.0], 0.05, "is invalid; valid: nonnegative integer"),
        ([1, 2, 3], 0.0, "alpha = 0.0 is invalid; valid range: 0 < alpha < 1"),
        ([1, 2, 3], 1.0, "alpha = 1.0 is invalid"),
        ([1, 2, 3], float("nan"), "alpha = nan is invalid"),
    ],
)
def test_bad_histograms_raise(counts, alpha, needle) -> None:
    for fn in (betting_histogram_lower, betting_histogram_upper):
        with pytest.raises(InvalidParameterError, match=needle):
            fn(counts, alpha=alpha)


@pytest.mark.parametrize(
    ("scores", "counts", "needle"),
    [
        ([0.2, 1.2], None, "scores = 1.2 is invalid; valid range: 0 <= scores <= 1"),
        ([[0.2, 0.3]], None, r"scores of shape \(1, 2\) is invalid"),
        ([], None, r"scores of shape \(0,\) is invalid"),
        ([0.0, 1.0], [1, 2, 3], r"counts of shape \(3,\) is invalid"),
        ([0.0, 1.0], [1, -2], "negative entry -2"),
    ],
)
def test_bad_multisets_raise(scores, counts, needle) -> None:
    for fn in (betting_mixture_lower, betting_mixture_upper):
        with pytest.raises(InvalidParameterError, match=needle):
            fn(scores, counts=counts, alpha=0.05)


def test_bad_histogram_rules_raise() -> None:
    with pytest.raises(InvalidParameterError, match="bins = 3 is invalid; valid: a power of two"):
        score_histogram([0.5], bins=3)
    with pytest.raises(InvalidParameterError, match="n = 0 is invalid"):
        mixture_bets(0, alpha=0.05)

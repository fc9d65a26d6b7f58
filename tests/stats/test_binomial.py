import math

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import beta, binomtest

from smoothcert.errors import InvalidParameterError
from smoothcert.stats import clopper_pearson_lower, clopper_pearson_upper, runner_up_upper

GRID_N = [1, 2, 3, 10, 57, 1000]
ALPHAS = [0.001, 0.05, 0.3]


@pytest.mark.parametrize("n", GRID_N)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_matches_scipy_beta_ppf_on_full_grid(n, alpha):
    k = np.arange(n + 1)
    lower = clopper_pearson_lower(k, n, alpha=alpha)
    upper = clopper_pearson_upper(k, n, alpha=alpha)
    with np.errstate(invalid="ignore"):
        ref_lower = np.where(k == 0, 0.0, beta.ppf(alpha, k, n - k + 1))
        ref_upper = np.where(k == n, 1.0, beta.ppf(1 - alpha, k + 1, n - k))
    # The bounds sit a relative ~1e-7 * alpha (in tail probability) on the conservative
    # side of the exact quantile (LEVEL_MARGIN and one ulp), never on the other side.
    np.testing.assert_allclose(lower, ref_lower, rtol=2e-7, atol=1e-14)
    np.testing.assert_allclose(upper, ref_upper, rtol=2e-7, atol=1e-14)
    assert np.all(lower <= ref_lower) and np.all(upper >= ref_upper)
    assert lower[0] == 0.0 and upper[-1] == 1.0


@pytest.mark.parametrize("n", [1, 10, 57, 1000])
def test_matches_scipy_binomtest_exact_interval(n):
    # A two-sided exact interval at confidence 1 - 2 alpha has one-sided ends at alpha.
    alpha = 0.025
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        ci = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact")
        assert clopper_pearson_lower(k, n, alpha=alpha) == pytest.approx(ci.low, rel=2e-7)
        assert clopper_pearson_upper(k, n, alpha=alpha) == pytest.approx(ci.high, rel=2e-7)


mpmath.mp.dps = 40


def _log_binom_pmf(j, n, p):
    return (
        mpmath.loggamma(n + 1)
        - mpmath.loggamma(j + 1)
        - mpmath.loggamma(n - j + 1)
        + j * mpmath.log(p)
        + (n - j) * mpmath.log(1 - p)
    )


def exact_tail_at_least(k, n, p):
    """P(Binomial(n, p) >= k) for the float p, exactly (mpmath, 40 digits), k > n p."""
    p = mpmath.mpf(p)
    if p == 0:
        return mpmath.mpf(k == 0)
    term, total, ratio = mpmath.exp(_log_binom_pmf(k, n, p)), mpmath.mpf(0), p / (1 - p)
    for j in range(k, n + 1):  # terms decrease geometrically beyond the mean
        total += term
        if term < total * mpmath.mpf(10) ** -30:
            break
        term *= mpmath.mpf(n - j) / (j + 1) * ratio
    return total


def exact_tail_at_most(k, n, p):
    """P(Binomial(n, p) <= k) for the float p, exactly (mpmath), k < n p."""
    p = mpmath.mpf(p)
    if p == 1:
        return mpmath.mpf(k >= n)
    term, total, ratio = mpmath.exp(_log_binom_pmf(k, n, p)), mpmath.mpf(0), (1 - p) / p
    for j in range(k, -1, -1):
        total += term
        if term < total * mpmath.mpf(10) ** -30:
            break
        term *= mpmath.mpf(j) / (n - j + 1) * ratio
    return total


CONSERVATIVE_ALPHAS = [1e-9, 1e-3, 0.05, 0.5, 0.9]


def _conservative_violations(lower_fn, upper_fn, grid_n):
    bad = []
    for n in grid_n:
        ks = {0, 1, 2, 3, n // 1000, n // 3, n // 2, n - n // 100, n - 3, n - 2, n - 1, n}
        for k in sorted(k for k in ks if 0 <= k <= n):
            for alpha in CONSERVATIVE_ALPHAS:
                if k > 0:
                    lo = float(lower_fn(k, n, alpha=alpha))
                    if exact_tail_at_least(k, n, lo) > alpha:
                        bad.append(("lower", k, n, alpha, lo))
                if k < n:
                    hi = float(upper_fn(k, n, alpha=alpha))
                    if exact_tail_at_most(k, n, hi) > alpha:
                        bad.append(("upper", k, n, alpha, hi))
    return bad


def test_bounds_are_conservative_in_floating_point():
    # The returned FLOAT must satisfy the defining inequality exactly: for the lower
    # bound L, P(Binomial(n, L) >= k) <= alpha; for the upper bound U, P(Bin(n, U) <= k)
    # <= alpha. Rounded-to-nearest quantiles (scipy's betaincinv, beta.ppf) break this on
    # this grid, and so does a one-ulp nudge alone (by up to 7e-11 of alpha at n = 1e5).
    grid = [1, 2, 3, 10, 57, 1000, 10**5]
    assert _conservative_violations(clopper_pearson_lower, clopper_pearson_upper, grid) == []


@pytest.mark.slow
def test_bounds_are_conservative_in_floating_point_at_n_1e7():
    # Rounded-to-nearest quantiles miss here by up to 11% of alpha (U = 1 - 1e-16 rounded
    # to the float below it); scipy's own error reaches 2.4e-8 of alpha (LEVEL_MARGIN).
    assert _conservative_violations(clopper_pearson_lower, clopper_pearson_upper, [10**7]) == []


def test_conservative_check_catches_round_to_nearest_quantiles():
    # The check above can fail: the plain quantiles (no margin, no directed rounding).
    def plain_lower(k, n, *, alpha):
        return beta.ppf(alpha, k, n - k + 1)

    def plain_upper(k, n, *, alpha):
        return 1.0 - beta.ppf(alpha, n - k, k + 1)

    assert len(_conservative_violations(plain_lower, plain_upper, [3, 10, 57, 1000])) > 5


@pytest.mark.parametrize("alpha", [1e-9, 0.001, 0.5])
@pytest.mark.parametrize("n", [10**6, 10**12, 10**18])
def test_closed_forms_at_the_extreme_counts_for_huge_n(n, alpha):
    # k = n: L = alpha^(1/n); k = 0: U = 1 - alpha^(1/n) = -expm1(log(alpha)/n).
    lo = clopper_pearson_lower(n, n, alpha=alpha)
    hi = clopper_pearson_upper(0, n, alpha=alpha)
    exact_w = -mpmath.expm1(mpmath.log(alpha) / n)  # 1 - alpha^(1/n)
    assert 0.0 < hi and mpmath.mpf(hi) >= exact_w
    assert float(hi) == pytest.approx(float(exact_w), rel=1e-6)
    assert lo < 1.0 and mpmath.mpf(lo) <= 1 - exact_w
    # Within one float spacing near 1 (plus the margin) of the exact value.
    assert 1.0 - lo <= float(exact_w) * (1 + 1e-6) + 2.3e-16
    assert lo == pytest.approx(math.exp(math.log(alpha) / n), abs=3e-16 + 1e-6 * float(exact_w))


@pytest.mark.parametrize("p", [0.3, 0.9, 0.995])
def test_coverage_miss_rate_stays_under_alpha(p):
    rng = np.random.default_rng(12345)
    n, alpha, reps = 200, 0.1, 20_000
    k = rng.binomial(n, p, size=reps)
    miss_lower = np.mean(clopper_pearson_lower(k, n, alpha=alpha) > p)
    miss_upper = np.mean(clopper_pearson_upper(k, n, alpha=alpha) < p)
    # Clopper-Pearson is conservative: the miss rate is at most alpha; allow 4 standard errors.
    slack = 4 * np.sqrt(alpha * (1 - alpha) / reps)
    assert miss_lower <= alpha + slack
    assert miss_upper <= alpha + slack


def test_vectorised_broadcast_and_scalar_types():
    out = clopper_pearson_lower(np.array([[1, 2], [3, 4]]), np.array([10, 20]), alpha=0.05)
    assert out.shape == (2, 2)
    scalar = clopper_pearson_lower(5, 10, alpha=0.05)
    assert np.ndim(scalar) == 0
    assert clopper_pearson_lower(5.0, 10.0, alpha=0.05) == scalar


@given(
    n=st.integers(1, 10_000),
    frac=st.floats(0, 1),
    alpha=st.floats(1e-9, 0.5),
)
def test_lower_below_estimate_below_upper(n, frac, alpha):
    k = int(round(frac * n))
    lo = clopper_pearson_lower(k, n, alpha=alpha)
    hi = clopper_pearson_upper(k, n, alpha=alpha)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


@pytest.mark.parametrize(
    ("k", "n", "alpha", "fragment"),
    [
        (5, 0, 0.05, "n = 0"),
        (11, 10, 0.05, "k = 11"),
        (-1, 10, 0.05, "k = -1"),
        (2.5, 10, 0.05, "integer counts"),
        (5, 10, 0.0, "alpha = 0.0"),
        (5, 10, 1.0, "alpha = 1.0"),
        (5, 10, float("nan"), "alpha = nan"),
    ],
)
def test_bad_input_names_value_and_range(k, n, alpha, fragment):
    with pytest.raises(InvalidParameterError, match="valid") as info:
        clopper_pearson_lower(k, n, alpha=alpha)
    assert fragment in str(info.value)


def test_runner_up_upper_is_max_over_other_classes():
    counts = [30, 900, 70]
    expected = max(
        clopper_pearson_upper(30, 1000, alpha=0.01), clopper_pearson_upper(70, 1000, alpha=0.01)
    )
    assert runner_up_upper(counts, 1, alpha=0.01) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("counts", "top", "fragment"),
    [
        ([5, 990, 5], -1, "top = -1"),
        ([5, 990, 5], 3, "top = 3"),
        ([1000], 0, "at least 2 classes"),
        ([[1, 2], [3, 4]], 0, "1-D"),
        ([1.5, 2.0], 0, "integer"),
        ([3, -1], 0, "counts >= 0"),
    ],
)
def test_runner_up_upper_bad_input(counts, top, fragment):
    with pytest.raises(InvalidParameterError, match="valid") as info:
        runner_up_upper(counts, top, alpha=0.01)
    assert fragment in str(info.value)

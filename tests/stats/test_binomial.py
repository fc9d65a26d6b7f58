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
    np.testing.assert_allclose(lower, ref_lower, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(upper, ref_upper, rtol=1e-10, atol=1e-14)
    assert lower[0] == 0.0 and upper[-1] == 1.0


@pytest.mark.parametrize("n", [1, 10, 57, 1000])
def test_matches_scipy_binomtest_exact_interval(n):
    # A two-sided exact interval at confidence 1 - 2 alpha has one-sided ends at alpha.
    alpha = 0.025
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        ci = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact")
        assert clopper_pearson_lower(k, n, alpha=alpha) == pytest.approx(ci.low, abs=1e-12)
        assert clopper_pearson_upper(k, n, alpha=alpha) == pytest.approx(ci.high, abs=1e-12)


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

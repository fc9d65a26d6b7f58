import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from smoothcert.certificates.gaussian import (
    gaussian_radius,
    gaussian_radius_top2,
    max_certifiable_radius,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.stats import clopper_pearson_lower


def test_radius_closed_form():
    p = np.array([0.6, 0.9, 0.999])
    np.testing.assert_allclose(gaussian_radius(p, sigma=0.25), 0.25 * norm.ppf(p), rtol=1e-12)


def test_radius_zero_at_or_below_half():
    assert gaussian_radius(0.5, sigma=1.0) == 0.0
    assert np.all(gaussian_radius([0.0, 0.2, 0.5], sigma=1.0) == 0.0)


def test_top2_reduces_to_standard_when_runner_up_takes_the_rest():
    for p in [0.55, 0.8, 0.99]:
        assert gaussian_radius_top2(p, 1 - p, sigma=0.5) == pytest.approx(
            gaussian_radius(p, sigma=0.5)
        )


def test_top2_larger_when_runner_up_is_small():
    assert gaussian_radius_top2(0.8, 0.05, sigma=1.0) > gaussian_radius(0.8, sigma=1.0)
    assert gaussian_radius_top2(0.4, 0.45, sigma=1.0) == 0.0


def test_max_certifiable_radius_published_value():
    # DESIGN.md: n = 100000, alpha = 0.001 gives 3.81 sigma.
    assert max_certifiable_radius(n=100_000, alpha=0.001, sigma=1.0) == pytest.approx(
        3.81, abs=5e-3
    )
    assert max_certifiable_radius(n=100_000, alpha=0.001, sigma=0.5) == pytest.approx(
        0.5 * max_certifiable_radius(n=100_000, alpha=0.001, sigma=1.0)
    )


@pytest.mark.parametrize("n", [1, 9, 10, 100, 12345])
def test_max_certifiable_radius_equals_best_outcome(n):
    best = clopper_pearson_lower(n, n, alpha=0.001)
    assert max_certifiable_radius(n=n, alpha=0.001, sigma=0.7) == pytest.approx(
        float(gaussian_radius(best, sigma=0.7)), abs=1e-9
    )


def test_small_n_can_never_certify():
    assert max_certifiable_radius(n=9, alpha=0.001, sigma=1.0) == 0.0


@given(st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True))
def test_radius_monotone_in_p_lower(p1, p2):
    lo, hi = sorted([p1, p2])
    assert gaussian_radius(lo, sigma=1.0) <= gaussian_radius(hi, sigma=1.0)
    assert np.isfinite(gaussian_radius(hi, sigma=1.0))


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: gaussian_radius(0.9, sigma=0.0), "sigma = 0.0"),
        (lambda: gaussian_radius(0.9, sigma=-1), "sigma = -1"),
        (lambda: gaussian_radius(float("nan"), sigma=1.0), "p_lower"),
        (lambda: gaussian_radius(1.0, sigma=1.0), "p_lower = 1.0"),
        (lambda: gaussian_radius(1.5, sigma=1.0), "p_lower = 1.5"),
        (lambda: gaussian_radius_top2(0.9, 0.0, sigma=1.0), "p_upper = 0.0"),
        (lambda: max_certifiable_radius(n=0, alpha=0.001, sigma=1.0), "n = 0"),
        (lambda: max_certifiable_radius(n=10, alpha=1.5, sigma=1.0), "alpha = 1.5"),
    ],
)
def test_bad_input(call, fragment):
    with pytest.raises(InvalidParameterError, match="valid") as info:
        call()
    assert fragment in str(info.value)

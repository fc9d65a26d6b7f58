import mpmath
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
    # The Clopper-Pearson bound sits a relative 1e-7 of alpha (in tail probability) on the
    # conservative side of alpha^(1/n): the best certified radius is a hair below the cap.
    best = clopper_pearson_lower(n, n, alpha=0.001)
    cap = max_certifiable_radius(n=n, alpha=0.001, sigma=0.7)
    achieved = float(gaussian_radius(best, sigma=0.7))
    assert achieved <= cap
    assert cap == pytest.approx(achieved, abs=1e-7)


def _mp_phi_inv_upper(t):
    """Phi^-1(1 - t) in 50-digit arithmetic (independent of scipy)."""
    with mpmath.workdps(50):
        return mpmath.sqrt(2) * mpmath.erfinv(1 - 2 * mpmath.mpf(t))


@pytest.mark.parametrize("n", [10**6, 10**9, 10**12, 10**15, 10**17, 10**18, 2**63 - 1])
@pytest.mark.parametrize("alpha", [1e-9, 0.001, 0.5])
def test_max_certifiable_radius_closed_form_for_huge_n(n, alpha):
    # sigma * Phi^-1(alpha^(1/n)) in exact arithmetic; alpha^(1/n) rounds to 1.0 in
    # float64 from n ~ 1e17 on, which used to give an infinite radius.
    with mpmath.workdps(50):
        t = 1 - mpmath.power(mpmath.mpf(alpha), mpmath.mpf(1) / n)
        exact = float(0.7 * _mp_phi_inv_upper(t))
    got = max_certifiable_radius(n=n, alpha=alpha, sigma=0.7)
    assert np.isfinite(got)
    assert got == pytest.approx(exact, rel=1e-12)


def test_counts_of_1e18_give_a_finite_conservative_radius():
    # k = n = 1e18: the exact bound alpha^(1/n) = 1 - 6.9e-18 is above every float below
    # 1; the bound rounds DOWN to the largest float below 1 (never to 1.0, which would be
    # an infinite radius), and the radius is sigma * Phi^-1(1 - 2^-53).
    n = 10**18
    p = clopper_pearson_lower(n, n, alpha=0.001)
    assert p == np.nextafter(1.0, 0.0)
    r = gaussian_radius(p, sigma=0.5)
    assert r == pytest.approx(float(0.5 * _mp_phi_inv_upper(2.0**-53)), rel=1e-12)
    assert r < max_certifiable_radius(n=n, alpha=0.001, sigma=0.5) < np.inf
    # Half of the samples: a finite bound just below 1/2 (abstain), not an error.
    half = clopper_pearson_lower(n // 2, n, alpha=0.001)
    assert 0.499 < half < 0.5 and gaussian_radius(half, sigma=0.5) == 0.0


@pytest.mark.parametrize("q", [1e-3, 1e-9, 1e-15, 2.0**-52, 2.0**-53])
def test_radius_near_one_uses_the_exact_complement(q):
    p = 1.0 - q  # exact for these q
    assert gaussian_radius(p, sigma=1.0) == pytest.approx(
        float(_mp_phi_inv_upper(1.0 - p)), rel=1e-13
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

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.stats import norm

from smoothcert.certificates import (
    gaussian_radius,
    gaussian_radius_top2,
    lipschitz_radius,
    lipschitz_radius_top2,
)
from smoothcert.certificates.lipschitz import _scaled_rate
from smoothcert.errors import InvalidParameterError

# ---------------------------------------------------------------- reference values


@pytest.mark.parametrize(("l_sigma", "expected"), [(0.25, 0.5981), (0.5, 0.8556), (1.0, 0.9599)])
def test_reference_sigma_ell_at_half(l_sigma: float, expected: float) -> None:
    # ell(q) = gamma(q) / phi(Phi^-1(q)), the local Lipschitz constant of Phi^-1(S).
    sigma = 0.5
    sg = _scaled_rate(0.5, sigma=sigma, lipschitz=l_sigma / sigma)
    assert round(float(sg) / norm.pdf(0.0), 4) == expected
    kappa = 1.0 / l_sigma
    closed = math.sqrt(2 * math.pi) * (2 * norm.cdf(kappa / 2) - 1) / kappa
    assert float(sg) / norm.pdf(0.0) == pytest.approx(closed, rel=1e-12)


def test_reference_radii() -> None:
    r = lipschitz_radius([0.9, 0.999], sigma=0.5, lipschitz=0.5)
    assert round(float(r[0]), 3) == 0.999
    assert round(float(r[1]), 3) == 2.135
    # Larger than Cohen's radius for a smooth score.
    assert np.all(r > gaussian_radius([0.9, 0.999], sigma=0.5))


def test_integral_matches_quadrature_of_one_over_rate() -> None:
    sigma, lip = 0.5, 0.5
    for p in [0.6, 0.9, 0.99]:
        val, _ = quad(
            lambda q: sigma / float(_scaled_rate(q, sigma=sigma, lipschitz=lip)),
            0.5,
            p,
            epsabs=1e-11,
            epsrel=1e-11,
        )
        got = float(lipschitz_radius(p, sigma=sigma, lipschitz=lip))
        # The quadrature (and the rate's own 1e-9 root-find margin) is the approximate side.
        assert got == pytest.approx(val, rel=1e-7)


# ---------------------------------------------------------------- Cohen limit


def test_infinite_lipschitz_is_cohen_exactly() -> None:
    p = np.array([0.3, 0.5, 0.6, 0.9, 0.999, 1 - 1e-12])
    np.testing.assert_array_equal(
        lipschitz_radius(p, sigma=0.25, lipschitz=math.inf), gaussian_radius(p, sigma=0.25)
    )
    np.testing.assert_array_equal(
        lipschitz_radius_top2(0.9, 0.05, sigma=0.25, lipschitz=math.inf),
        gaussian_radius_top2(0.9, 0.05, sigma=0.25),
    )


@pytest.mark.parametrize("form", ["integral", "local"])
def test_large_lipschitz_tends_to_cohen(form: str) -> None:
    p = np.array([0.51, 0.6, 0.9, 0.999, 1 - 1e-9])
    got = lipschitz_radius(p, sigma=0.5, lipschitz=1e12, form=form)
    np.testing.assert_allclose(got, gaussian_radius(p, sigma=0.5), atol=1e-9, rtol=0)


# ---------------------------------------------------------------- brute-force oracles


def _smoothed_ramp(x: float, *, lip: float, b: float, sigma: float) -> float:
    # S(x) = E clip(L (x + sigma Z) + b, 0, 1), by numerical integration.
    lo, hi = -b / lip, (1 - b) / lip  # ramp support in t
    f = lambda t: np.clip(lip * t + b, 0.0, 1.0) * norm.pdf(t, loc=x, scale=sigma)  # noqa: E731
    inner, _ = quad(f, lo, hi, epsabs=1e-13, epsrel=1e-12)
    return float(inner + norm.sf(hi, loc=x, scale=sigma))


@pytest.mark.parametrize(("lip", "sigma"), [(0.5, 0.5), (2.0, 0.25), (20.0, 0.5), (0.1, 1.0)])
def test_ramp_model_exact_radius(lip: float, sigma: float) -> None:
    b = 0.3
    x_half = brentq(
        lambda x: _smoothed_ramp(x, lip=lip, b=b, sigma=sigma) - 0.5, -50, 50, xtol=1e-13
    )
    for dx in [0.05, 0.3, 1.0, 2.5]:
        x0 = x_half + dx * sigma
        p = _smoothed_ramp(x0, lip=lip, b=b, sigma=sigma)
        r = float(lipschitz_radius(p, sigma=sigma, lipschitz=lip))
        true = x0 - x_half
        assert r <= true + 1e-9  # never more than the true distance
        assert r == pytest.approx(true, rel=1e-6, abs=1e-9)  # the ramp is the worst case


def _smooth_on_grid(s: np.ndarray, dt: float, sigma: float) -> np.ndarray:
    half = int(math.ceil(8 * sigma / dt))
    k = norm.pdf(np.arange(-half, half + 1) * dt, scale=sigma) * dt
    k /= k.sum()
    return np.convolve(np.pad(s, half, mode="edge"), k, mode="valid")


@pytest.mark.parametrize("seed", range(6))
def test_random_piecewise_linear_profiles_never_beat_the_bound(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sigma = float(rng.choice([0.25, 0.5, 1.0]))
    lip = float(rng.choice([0.3, 1.0, 3.0])) / sigma
    dt = 2e-3 * sigma
    t = np.arange(-12 * sigma, 12 * sigma, dt)
    knots = np.sort(rng.uniform(t[0], t[-1], size=rng.integers(3, 30)))
    # Slopes mostly at +-L (bang-bang profiles are the extreme ones), some inside.
    slopes = lip * np.where(
        rng.random(knots.size + 1) < 0.7,
        rng.choice([-1.0, 1.0], knots.size + 1),
        rng.uniform(-1, 1, knots.size + 1),
    )
    seg = np.searchsorted(knots, t)
    s = np.empty_like(t)
    s[0] = rng.uniform(0, 1)
    for i in range(1, t.size):
        s[i] = min(1.0, max(0.0, s[i - 1] + slopes[seg[i]] * dt))  # clip keeps it L-Lipschitz
    S = _smooth_on_grid(s, dt, sigma)
    inner = slice(int(4 * sigma / dt), t.size - int(4 * sigma / dt))
    # Rate: |S'| <= gamma(S) everywhere (up to discretisation).
    dS = np.gradient(S, dt)[inner]
    Sv = np.clip(S[inner], 1e-12, 1 - 1e-12)
    gamma = np.asarray(_scaled_rate(Sv, sigma=sigma, lipschitz=lip)) / sigma
    assert np.all(np.abs(dS) <= gamma + 1e-5 * lip)
    # Away from the far tails (where the grid convolution's absolute error dominates)
    # the check is relative: within 0.1 %, while the ramp stretches reach ratio ~1.
    mid = (Sv > 1e-6) & (Sv < 1 - 1e-6)
    assert np.all(np.abs(dS[mid]) <= gamma[mid] * (1 + 1e-3))
    # Distance: the certified radius never exceeds the distance to the nearest point
    # where S <= 1/2 (grid resolution dt).
    idx = np.arange(t.size)[inner]
    low = np.flatnonzero(S <= 0.5)
    if low.size == 0:
        return
    for i in idx[:: max(1, idx.size // 200)]:
        if S[i] <= 0.5 + 1e-6:
            continue
        dist = float(np.min(np.abs(low - i))) * dt
        r = float(lipschitz_radius(S[i] - 1e-6, sigma=sigma, lipschitz=lip))
        assert r <= dist + dt


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("form", ["integral", "local"])
def test_monotone(form: str) -> None:
    p = np.linspace(0.0, 1 - 1e-9, 400)
    r = lipschitz_radius(p, sigma=0.5, lipschitz=1.0, form=form)
    assert np.all(np.diff(r) >= 0)
    radii = [
        float(lipschitz_radius(0.9, sigma=0.5, lipschitz=lip, form=form))
        for lip in [0.01, 0.1, 0.5, 1.0, 4.0, 100.0, 1e6, math.inf]
    ]
    # Non-increasing in L; the finite-L radii are rounded down by a ~1e-9 relative
    # allowance, so next to L = inf (Cohen, exact) they may sit that much below it.
    assert all(a >= b for a, b in zip(radii[:-2], radii[1:-1], strict=True))
    assert radii[-2] >= radii[-1] - 1e-8


def test_zero_at_or_below_half_and_finite() -> None:
    assert lipschitz_radius(0.5, sigma=1.0, lipschitz=1.0) == 0.0
    assert np.all(lipschitz_radius([0.0, 0.2, 0.5], sigma=1.0, lipschitz=1.0) == 0.0)
    extreme = lipschitz_radius([1 - 2**-53, 0.5 + 2**-53], sigma=1.0, lipschitz=1e-8)
    assert np.all(np.isfinite(extreme)) and np.all(extreme >= 0)
    for lip in [1e-8, 1e-3, 1.0, 1e3, 1e10]:
        r = lipschitz_radius([0.5 + 1e-12, 0.7, 1 - 1e-15], sigma=0.3, lipschitz=lip)
        assert np.all(np.isfinite(r)) and np.all(np.diff(r) >= 0)


def test_vectorised() -> None:
    p = np.array([[0.6, 0.9], [0.99, 0.4]])
    r = lipschitz_radius(p, sigma=0.5, lipschitz=2.0)
    assert r.shape == (2, 2)
    for i in range(2):
        for j in range(2):
            assert r[i, j] == lipschitz_radius(float(p[i, j]), sigma=0.5, lipschitz=2.0)
    assert isinstance(lipschitz_radius(0.9, sigma=0.5, lipschitz=2.0), float)
    r2 = lipschitz_radius_top2(p, 0.05, sigma=0.5, lipschitz=2.0)
    assert r2.shape == (2, 2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"p_lower": 1.2, "sigma": 1.0, "lipschitz": 1.0},
        {"p_lower": -0.1, "sigma": 1.0, "lipschitz": 1.0},
        {"p_lower": float("nan"), "sigma": 1.0, "lipschitz": 1.0},
        {"p_lower": 1.0, "sigma": 1.0, "lipschitz": 1.0},
        {"p_lower": 0.9, "sigma": 0.0, "lipschitz": 1.0},
        {"p_lower": 0.9, "sigma": -1.0, "lipschitz": 1.0},
        {"p_lower": 0.9, "sigma": 1.0, "lipschitz": 0.0},
        {"p_lower": 0.9, "sigma": 1.0, "lipschitz": -2.0},
        {"p_lower": 0.9, "sigma": 1.0, "lipschitz": float("nan")},
        {"p_lower": 0.9, "sigma": 1.0, "lipschitz": 1.0, "form": "paper"},
    ],
)
def test_bad_input(kwargs: dict[str, object]) -> None:
    p = kwargs.pop("p_lower")
    with pytest.raises(InvalidParameterError, match="valid range"):
        lipschitz_radius(p, **kwargs)  # type: ignore[arg-type]


def test_bad_input_top2() -> None:
    with pytest.raises(InvalidParameterError, match="p_upper"):
        lipschitz_radius_top2(0.9, 0.0, sigma=1.0, lipschitz=1.0)
    with pytest.raises(InvalidParameterError, match="lipschitz"):
        lipschitz_radius_top2(0.9, 0.1, sigma=1.0, lipschitz=0.0)


def test_error_names_value() -> None:
    with pytest.raises(InvalidParameterError, match=r"lipschitz = -2\.0"):
        lipschitz_radius(0.9, sigma=1.0, lipschitz=-2.0)


# ---------------------------------------------------------------- top-two


@pytest.mark.parametrize("lip", [0.2, 1.0, 5.0, 1e4])
def test_top2_equals_one_class_when_runner_up_takes_the_rest(lip: float) -> None:
    for p in [0.55, 0.8, 0.99, 0.9999]:
        one = float(lipschitz_radius(p, sigma=0.5, lipschitz=lip))
        two = float(lipschitz_radius_top2(p, 1 - p, sigma=0.5, lipschitz=lip))
        assert two == pytest.approx(one, rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("lip", [0.2, 1.0, 5.0])
def test_top2_at_least_one_class_when_runner_up_is_smaller(lip: float) -> None:
    rng = np.random.default_rng(0)
    pa = rng.uniform(0.5, 0.999, 200)
    pb = (1 - pa) * rng.uniform(0.001, 1.0, 200)
    one = lipschitz_radius(pa, sigma=0.5, lipschitz=lip)
    two = lipschitz_radius_top2(pa, pb, sigma=0.5, lipschitz=lip)
    assert np.all(two >= one - 1e-9)
    assert np.all(lipschitz_radius_top2(pa, pa, sigma=0.5, lipschitz=lip) == 0.0)


def test_top2_two_ramp_oracle() -> None:
    # A rises along a ramp, B = 1 - A falls along the mirrored ramp: the top-two radius
    # is the distance at which they cross, i.e. the one-class distance to 1/2.
    lip, sigma, b = 1.0, 0.5, 0.2
    x_half = brentq(
        lambda x: _smoothed_ramp(x, lip=lip, b=b, sigma=sigma) - 0.5, -50, 50, xtol=1e-13
    )
    x0 = x_half + 0.7
    pa = _smoothed_ramp(x0, lip=lip, b=b, sigma=sigma)
    r = float(lipschitz_radius_top2(pa, 1 - pa, sigma=sigma, lipschitz=lip))
    assert r <= 0.7 + 1e-9
    assert r == pytest.approx(0.7, rel=1e-6)


def test_top2_tends_to_cohen() -> None:
    got = lipschitz_radius_top2([0.9, 0.6], [0.05, 0.3], sigma=0.5, lipschitz=1e12)
    np.testing.assert_allclose(
        got, gaussian_radius_top2([0.9, 0.6], [0.05, 0.3], sigma=0.5), atol=1e-9, rtol=0
    )


@pytest.mark.parametrize(("l_sigma", "seed"), [(0.5, 0), (2.0, 1)])
def test_optimised_profiles_never_beat_the_ramp(l_sigma: float, seed: int) -> None:
    # Maximise sigma S'(0) / (sigma gamma(S(0))) over clipped piecewise-linear profiles
    # (8 free slopes in [-L, L] on [-3 sigma, 3 sigma] and a start value); the ramp is in
    # the family, so the optimum is 1 and nothing may exceed it.
    from scipy.optimize import differential_evolution

    sigma = 1.0
    lip = l_sigma / sigma
    z = np.linspace(-9.0, 9.0, 6001)
    w = norm.pdf(z) * (z[1] - z[0])
    edges = np.linspace(-3.0, 3.0, 9)
    seg = np.clip(np.searchsorted(edges, z) - 1, 0, 7)
    dz = np.diff(z, prepend=z[0])

    def ratio(params: np.ndarray) -> float:
        slopes = lip * params[:8]
        s = np.clip(params[8] + np.cumsum(slopes[seg] * dz), 0.0, 1.0)
        q = float(np.sum(s * w))
        if not 1e-4 < q < 1 - 1e-4:
            return 0.0
        rate = abs(float(np.sum(s * z * w)))  # sigma * S'(0), Stein's identity
        return rate / float(_scaled_rate(q, sigma=sigma, lipschitz=lip))

    bounds = [(-1.0, 1.0)] * 8 + [(-10.0, 10.0)]
    res = differential_evolution(
        lambda x: -ratio(x), bounds, seed=seed, maxiter=40, popsize=10, tol=1e-10
    )
    best = -float(res.fun)
    assert best <= 1 + 1e-4
    assert best >= 0.99  # the optimiser does find the (ramp-like) worst case


def test_top2_tiny_runner_up_is_floored_conservatively() -> None:
    pb = np.array([5e-324, 1e-300, 1e-90, 1e-17, 1e-12, 1e-6])
    r = lipschitz_radius_top2(0.9, pb, sigma=0.5, lipschitz=1.0)
    assert np.all(np.isfinite(r))
    assert np.all(np.diff(r) <= 0)
    assert np.all(r[:4] == r[3])
    assert lipschitz_radius_top2(1e-18, 1e-20, sigma=0.5, lipschitz=1.0) == 0.0

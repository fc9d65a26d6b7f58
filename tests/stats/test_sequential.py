"""Tests of the anytime-valid binomial bounds (union over a schedule, beta-binomial mixture).

The main oracle is an EXACT dynamic program over the checkpoints: the probability that
the lower bound ever crosses the true p (the error of the adversarial rule "stop at the
first crossing") is computed by propagating the distribution of S_k with binomial
increments and absorbing the mass that has crossed.
"""

from __future__ import annotations

import math
import time

import mpmath
import numpy as np
import pytest
from scipy.special import betaln
from scipy.stats import beta, binom

from smoothcert.errors import InvalidParameterError
from smoothcert.stats import (
    SEQUENCE_BOUNDS,
    checkpoint_schedule,
    clopper_pearson_lower,
    clopper_pearson_upper,
    mixture_lower,
    mixture_upper,
    sequence_lower,
    sequence_upper,
    union_levels,
    union_lower,
    union_upper,
)
from smoothcert.stats.sequential import MIXTURE_LOG_MARGIN

CPS = checkpoint_schedule(5000, first=20)  # 9 looks: 20, 40, ..., 2560, 5000


# --- exact anytime error by dynamic programming ------------------------------------------------


def bound_table(fn, checkpoints):
    """``[fn(0..n_k, n_k) for each checkpoint]``, computed in ONE vectorised call."""
    cps = np.asarray(checkpoints)
    s = np.concatenate([np.arange(n + 1) for n in cps])
    n = np.repeat(cps, cps + 1)
    return np.split(np.asarray(fn(s, n)), np.cumsum(cps + 1)[:-1])


def exact_anytime_error(table, p, checkpoints, *, upper=False):
    """P(exists k: lower(S_k, n_k) > p) (or upper(S_k, n_k) < p), S_k ~ Binomial(n_k, p).

    ``table[k]`` holds the bound at ``s = 0..n_k`` (see :func:`bound_table`). The
    distribution of ``S_k`` is propagated with binomial increments; mass that has
    crossed is absorbed (the loop stopped there with a wrong bound).
    """
    dist = np.array([1.0])
    prev, error = 0, 0.0
    for n, bound in zip(checkpoints, table, strict=True):
        step = n - prev
        inc = [1.0 - p, p] if step == 1 else binom.pmf(np.arange(step + 1), step, p)
        dist = np.convolve(dist, inc)
        crossed = bound < p if upper else bound > p
        error += float(dist[crossed].sum())
        dist[crossed] = 0.0
        prev = n
    return error


def _union(alpha, cps=CPS):
    return bound_table(lambda s, n: union_lower(s, n, alpha=alpha, checkpoints=cps), cps)


def _union_up(alpha, cps=CPS):
    return bound_table(lambda s, n: union_upper(s, n, alpha=alpha, checkpoints=cps), cps)


def _mix(alpha, cps=CPS):
    return bound_table(lambda s, n: mixture_lower(s, n, alpha=alpha), cps)


def _mix_up(alpha, cps=CPS):
    return bound_table(lambda s, n: mixture_upper(s, n, alpha=alpha), cps)


DP_PS = [0.01, 0.1, 0.5, 0.7, 0.9, 0.99]
EVERY = tuple(range(1, 401))  # look after every sample


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_exact_anytime_error_at_most_alpha(alpha):
    # Measured (alpha = 0.05): union 0.012-0.031, mixture 0.0004-0.0034; (alpha = 0.2):
    # union 0.043-0.113, mixture 0.003-0.020. Both well below alpha: Bonferroni ignores
    # the correlation of the looks; Ville's inequality loses to the discrete overshoot and
    # the mixture only looked at 9 of the 5000 sample counts here.
    tables = [
        (_union(alpha), False),
        (_union_up(alpha), True),
        (_mix(alpha), False),
        (_mix_up(alpha), True),
    ]
    for p in DP_PS:
        for table, upper in tables:
            assert exact_anytime_error(table, p, CPS, upper=upper) <= alpha, (p, upper)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_exact_error_of_mixture_when_looking_after_every_sample(alpha):
    # The mixture holds at EVERY n, not only at checkpoints: look after each sample.
    lo, hi = _mix(alpha, EVERY), _mix_up(alpha, EVERY)
    for p in (0.3, 0.5, 0.9, 0.99):
        err = exact_anytime_error(lo, p, EVERY)
        assert err <= alpha
        assert exact_anytime_error(hi, p, EVERY, upper=True) <= alpha
        if p <= 0.5:  # ... and not vacuous: looking often spends a visible part of alpha.
            assert err > alpha / 5


@pytest.mark.parametrize("alpha", [0.05, 0.2])
@pytest.mark.parametrize("share", [0.5, 0.9])
def test_exact_anytime_error_of_final_heavy_spending_at_most_alpha(alpha, share):
    def table(fn):
        return bound_table(
            lambda s, n: fn(s, n, alpha=alpha, checkpoints=CPS, final_share=share), CPS
        )

    lo, hi = table(union_lower), table(union_upper)
    for p in DP_PS:
        assert exact_anytime_error(lo, p, CPS) <= alpha, p
        assert exact_anytime_error(hi, p, CPS, upper=True) <= alpha, p


def test_final_share_levels_and_reference_values():
    levels = union_levels(0.01, checkpoints=CPS, final_share=0.5)
    assert levels.sum() == pytest.approx(0.01, rel=1e-12)
    assert levels[-1] == 0.005 and np.all(levels[:-1] == 0.005 / (len(CPS) - 1))
    assert union_levels(0.01, checkpoints=(7,), final_share=0.5).tolist() == [0.01]
    # the last checkpoint is Clopper-Pearson at share * alpha (scipy's Beta quantile)
    got = float(union_lower(4900, 5000, alpha=0.01, checkpoints=CPS, final_share=0.5))
    assert got == pytest.approx(beta.ppf(0.005, 4900, 101), rel=1e-6)
    got = float(union_lower(39, 40, alpha=0.01, checkpoints=CPS, final_share=0.5))
    assert got == pytest.approx(beta.ppf(0.005 / (len(CPS) - 1), 39, 2), rel=1e-6)
    mixed = union_lower([39, 4900], [40, 5000], alpha=0.01, checkpoints=CPS, final_share=0.5)
    assert mixed.tolist() == [
        float(union_lower(39, 40, alpha=0.01, checkpoints=CPS, final_share=0.5)),
        float(union_lower(4900, 5000, alpha=0.01, checkpoints=CPS, final_share=0.5)),
    ]


def test_final_share_spending_everything_at_every_look_is_caught():
    # Mutant: the final share applied at EVERY checkpoint (levels summing to K w alpha).
    alpha = 0.05
    table = bound_table(lambda s, n: clopper_pearson_lower(s, n, alpha=0.5 * alpha), CPS)
    assert any(exact_anytime_error(table, p, CPS) > alpha for p in (0.5, 0.7))


# --- mutants: the DP oracle can fail -------------------------------------------------------------


def test_peeking_with_plain_clopper_pearson_breaks_the_level():
    # CP at alpha at every look, no correction: measured 0.214 (p = 0.5) and 0.181 (p = 0.9)
    # at alpha = 0.05, i.e. more than 3 alpha.
    alpha = 0.05
    table = bound_table(lambda s, n: clopper_pearson_lower(s, n, alpha=alpha), CPS)
    for p in (0.5, 0.9):
        assert exact_anytime_error(table, p, CPS) > 3 * alpha


def test_union_with_doubled_alpha_breaks_the_level():
    # CP at 2 alpha / K: measured 0.0598 (p = 0.5) and 0.0600 (p = 0.7) at alpha = 0.05.
    # (At alpha = 0.2 the doubled union stays below alpha, 0.186-0.196: Bonferroni's slack.)
    alpha = 0.05
    table = _union(2 * alpha)
    for p in (0.5, 0.7):
        assert exact_anytime_error(table, p, CPS) > alpha


@pytest.mark.parametrize(("alpha", "p"), [(0.05, 0.3), (0.2, 0.5)])
def test_mixture_with_inflated_alpha_breaks_the_level(alpha, p):
    # Ville's inequality is loose on Bernoulli data: at 2 alpha the mixture, checked after
    # EVERY sample up to 400, still stays under alpha (measured 0.0477 at alpha = 0.05,
    # p = 0.3; 0.169 at alpha = 0.2, p = 0.1), so this DP does NOT pin the mixture's alpha
    # to a factor 2: the reference values below (closed form at S = n, dense grid,
    # mpmath) do. A factor 3 is caught: measured 0.0601 and 0.2144.
    assert exact_anytime_error(_mix(2 * alpha, EVERY), p, EVERY) <= alpha
    assert exact_anytime_error(_mix(3 * alpha, EVERY), p, EVERY) > alpha


# --- Monte Carlo with simulated streams, adversarial stopping ------------------------------------


def _miss_test_passes(misses, trials, alpha):
    """One-sided binomial test of H0: miss rate <= alpha, at level 1e-3."""
    return float(binom.sf(misses - 1, trials, alpha)) > 1e-3


@pytest.mark.parametrize("bound", SEQUENCE_BOUNDS)
@pytest.mark.parametrize("p", [0.5, 0.95])
def test_monte_carlo_streams_first_crossing(bound, p):
    rng = np.random.default_rng(2024)
    alpha, streams = 0.3, 4000
    cps = np.array(CPS)
    steps = np.diff(np.concatenate(([0], cps)))
    s = np.cumsum(rng.binomial(steps, p, size=(streams, cps.size)), axis=1)
    n = np.broadcast_to(cps, s.shape)
    lo = sequence_lower(s, n, alpha=alpha, bound=bound, checkpoints=CPS)
    hi = sequence_upper(s, n, alpha=alpha, bound=bound, checkpoints=CPS)
    # A stream fails if the loop, stopping at the first crossing, stops with a wrong bound.
    miss_lo = int(np.count_nonzero(np.any(lo > p, axis=1)))
    miss_hi = int(np.count_nonzero(np.any(hi < p, axis=1)))
    assert _miss_test_passes(miss_lo, streams, alpha)
    assert _miss_test_passes(miss_hi, streams, alpha)
    # Agrees with the exact DP (3.5 standard errors).
    table = _union(alpha) if bound == "union" else _mix(alpha)
    exact = exact_anytime_error(table, p, CPS)
    assert abs(miss_lo / streams - exact) <= 3.5 * math.sqrt(exact * (1 - exact) / streams)


@pytest.mark.slow
@pytest.mark.parametrize("p", [0.5, 0.99])
def test_monte_carlo_mixture_every_sample(p):
    # Streams of single samples, the mixture checked after EVERY sample up to 2000.
    rng = np.random.default_rng(7)
    alpha, streams, horizon = 0.2, 3000, 2000
    s = np.cumsum(rng.random((streams, horizon)) < p, axis=1)
    n = np.broadcast_to(np.arange(1, horizon + 1), s.shape)
    lo = mixture_lower(s, n, alpha=alpha)
    hi = mixture_upper(s, n, alpha=alpha)
    assert _miss_test_passes(int(np.count_nonzero(np.any(lo > p, axis=1))), streams, alpha)
    assert _miss_test_passes(int(np.count_nonzero(np.any(hi < p, axis=1))), streams, alpha)


# --- reference values ----------------------------------------------------------------------------


def test_union_equals_clopper_pearson_at_alpha_over_k():
    cps = checkpoint_schedule(1000, first=100)  # (100, 200, 400, 800, 1000): K = 5
    assert cps == (100, 200, 400, 800, 1000)
    lo = float(union_lower(390, 400, alpha=0.001, checkpoints=cps))
    hi = float(union_upper(10, 400, alpha=0.001, checkpoints=cps))
    ref_lo = float(beta.ppf(0.001 / 5, 390, 11))  # independent: scipy.stats.beta
    ref_hi = float(beta.ppf(1 - 0.001 / 5, 11, 390))
    assert lo == pytest.approx(0.934638, abs=1e-6)
    assert lo == pytest.approx(ref_lo, rel=1e-7) and lo <= ref_lo
    assert hi == pytest.approx(ref_hi, rel=1e-7) and hi >= ref_hi
    s = np.arange(401)
    np.testing.assert_array_equal(
        union_lower(s, 400, alpha=0.05, checkpoints=cps),
        clopper_pearson_lower(s, 400, alpha=0.01),
    )
    np.testing.assert_array_equal(
        union_upper(s, 400, alpha=0.05, checkpoints=cps),
        clopper_pearson_upper(s, 400, alpha=0.01),
    )


@pytest.mark.parametrize("prior", [(0.5, 0.5), (1.0, 1.0), (2.0, 0.7)])
@pytest.mark.parametrize("alpha", [1e-6, 0.001, 0.05, 0.5])
@pytest.mark.parametrize("n", [1, 7, 100, 10_000, 10**7])
def test_mixture_closed_form_at_all_successes(n, alpha, prior):
    # S = n: log M_n(p) = betaln(a + n, b) - betaln(a, b) - n log p, so the lower end is
    # exp((log alpha + betaln(a + n, b) - betaln(a, b)) / n); mpmath, 40 digits.
    a, b = prior
    mpmath.mp.dps = 40
    log_c = mpmath.log(mpmath.beta(a + n, b)) - mpmath.log(mpmath.beta(a, b))
    exact = mpmath.exp((mpmath.log(alpha) + log_c) / n)
    lo = float(mixture_lower(n, n, alpha=alpha, prior=prior))
    assert mpmath.mpf(lo) <= exact  # conservative
    assert lo == pytest.approx(float(exact), rel=1e-9)
    # mirror: S = 0 upper end is 1 - (the same with the prior reversed)
    log_c2 = mpmath.log(mpmath.beta(b + n, a)) - mpmath.log(mpmath.beta(b, a))
    exact_hi = 1 - mpmath.exp((mpmath.log(alpha) + log_c2) / n)
    hi = float(mixture_upper(0, n, alpha=alpha, prior=prior))
    assert mpmath.mpf(hi) >= exact_hi
    # Tight in log M: the safety margin is MIXTURE_LOG_MARGIN * N log N (about 1e-6 at
    # n = 1e7: alpha shrinks by that relative amount), plus ulp(1) from 1 - L.
    log_m_hi = -n * mpmath.log1p(-mpmath.mpf(hi)) + log_c2
    slack = 8 * MIXTURE_LOG_MARGIN * (n + a + b) * math.log(n + a + b + math.e) + 1e-9
    assert -mpmath.log(alpha) <= log_m_hi <= -mpmath.log(alpha) + slack + n * 2.3e-16


def test_mixture_matches_dense_grid_at_interior_counts():
    # Independent: the confidence set {p : log M_n(p) < log(1/alpha)} on a grid of 2e6 points.
    a = b = 0.5
    grid = np.linspace(0.0, 1.0, 2_000_001)[1:-1]
    for s, n, alpha in [(50, 100, 0.05), (3, 40, 0.01), (930, 1000, 0.001)]:
        log_m = betaln(a + s, b + n - s) - betaln(a, b) - s * np.log(grid)
        log_m -= (n - s) * np.log1p(-grid)
        inside = grid[log_m < math.log(1 / alpha)]
        lo = float(mixture_lower(s, n, alpha=alpha))
        hi = float(mixture_upper(s, n, alpha=alpha))
        assert inside.min() - 5e-7 <= lo <= inside.min()
        assert inside.max() <= hi <= inside.max() + 5e-7
    assert float(mixture_lower(50, 100, alpha=0.05)) == pytest.approx(0.338258, abs=1e-6)
    assert float(mixture_upper(50, 100, alpha=0.05)) == pytest.approx(0.661742, abs=1e-6)


def _mp_log_m(s, n, p, a=0.5, b=0.5):
    p = mpmath.mpf(p)
    return (
        mpmath.log(mpmath.beta(a + s, b + n - s))
        - mpmath.log(mpmath.beta(a, b))
        - s * mpmath.log(p)
        - (n - s) * mpmath.log1p(-p)
    )


def _mixture_float_violations(grid_n, alphas):
    """Bounds whose float is NOT truly outside the sequence (mpmath), and loose ones."""
    mpmath.mp.dps = 40
    bad = []
    for n in grid_n:
        ss = {1, 2, n // 1000, n // 3, n // 2, n - n // 100, n - 2, n - 1, n}
        for s in sorted(s for s in ss if 1 <= s <= n):
            for alpha in alphas:
                thr = -mpmath.log(alpha)
                lo = float(mixture_lower(s, n, alpha=alpha))
                if not _mp_log_m(s, n, lo) >= thr:
                    bad.append(("lower", s, n, alpha, lo))
                # tight: log M at the bound exceeds the threshold by at most a few times
                # the safety margin (alpha shrinks by that relative amount), plus the
                # change of log M over a few ulps of the bound.
                big_n = n + 1.0
                terms = big_n * math.log(big_n + math.e) + abs(s * math.log(lo))
                terms += abs((n - s) * math.log1p(-lo)) + float(thr)
                slack = 8 * MIXTURE_LOG_MARGIN * terms + 1e-15 * n + 1e-12
                if not _mp_log_m(s, n, lo) <= thr + slack:
                    bad.append(("loose lower", s, n, alpha, lo))
                hi = float(mixture_upper(n - s, n, alpha=alpha))
                if hi < 1.0 and not _mp_log_m(n - s, n, hi) >= thr:
                    bad.append(("upper", n - s, n, alpha, hi))
    return bad


def test_mixture_is_conservative_in_floating_point():
    alphas = [1e-9, 1e-3, 0.05, 0.5, 0.95]
    assert _mixture_float_violations([1, 2, 3, 10, 57, 1000, 10**5], alphas) == []


@pytest.mark.slow
def test_mixture_is_conservative_in_floating_point_large_n():
    assert _mixture_float_violations([10**7, 10**9], [1e-9, 1e-3, 0.5]) == []


def test_float_check_catches_a_bound_without_margin():
    # The float check above can fail: the root of the computed log M, moved one ulp inward.
    from scipy.optimize import brentq

    def naive(s, n, alpha):
        def g(p):
            return (
                betaln(0.5 + s, 0.5 + n - s)
                - betaln(0.5, 0.5)
                - s * math.log(p)
                - (n - s) * math.log1p(-p)
                + math.log(alpha)
            )

        root = brentq(g, 1e-300, s / n, xtol=1e-300, rtol=1e-15)
        return float(np.nextafter(root, 1.0))

    mpmath.mp.dps = 40
    bad = [
        (s, n, alpha)
        for n in (57, 1000, 10**5, 10**6)
        for s in (1, 2, n // 3, n // 2, n - 2, n - 1)
        for alpha in (1e-3, 0.05, 0.5)
        if not _mp_log_m(s, n, naive(s, n, alpha)) >= -mpmath.log(alpha)
    ]
    assert len(bad) >= 10  # measured 31 of 72 (26 without the inward ulp)


def test_mixture_is_fast_and_vectorised():
    s = np.random.default_rng(0).integers(0, 10_001, size=1000)
    start = time.perf_counter()
    lo = mixture_lower(s, 10_000, alpha=0.001)
    hi = mixture_upper(s, 10_000, alpha=0.001)
    seconds = time.perf_counter() - start
    assert lo.shape == hi.shape == (1000,)
    assert seconds < 1.0  # about 0.02 s on one core
    assert mixture_lower(np.array([[1, 2], [3, 4]]), np.array([10, 20]), alpha=0.1).shape == (
        2,
        2,
    )
    assert np.ndim(mixture_lower(5, 10, alpha=0.05)) == 0
    assert mixture_lower(5.0, 10.0, alpha=0.05) == mixture_lower(5, 10, alpha=0.05)


# --- schedule --------------------------------------------------------------------------------


def test_checkpoint_schedule_examples():
    assert checkpoint_schedule(5000, first=20) == CPS
    assert CPS == (20, 40, 80, 160, 320, 640, 1280, 2560, 5000)
    assert checkpoint_schedule(10, first=3, growth=1.5) == (3, 5, 8, 10)
    assert checkpoint_schedule(10, first=1, growth=1.01) == tuple(range(1, 11))
    assert checkpoint_schedule(100, first=100) == (100,)
    assert checkpoint_schedule(100, first=500) == (100,)
    assert checkpoint_schedule(1, first=1) == (1,)
    assert checkpoint_schedule(1000, first=100, growth=10) == (100, 1000)
    assert all(type(c) is int for c in CPS)


@pytest.mark.parametrize("budget", [1, 2, 17, 1000, 12_345, 10**6])
@pytest.mark.parametrize("first", [1, 5, 100])
@pytest.mark.parametrize("growth", [1.1, 2.0, 3.7])
def test_checkpoint_schedule_properties(budget, first, growth):
    cps = checkpoint_schedule(budget, first=first, growth=growth)
    assert cps[-1] == budget and cps[0] == min(first, budget)
    assert all(b > a for a, b in zip(cps, cps[1:], strict=False))
    for a, b in zip(cps, cps[1:-1], strict=False):
        assert b == max(a + 1, math.ceil(a * growth))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"budget": 0, "first": 1}, "budget = 0"),
        ({"budget": 10.0, "first": 1}, "budget = 10.0"),
        ({"budget": 10, "first": 0}, "first = 0"),
        ({"budget": 10, "first": 2, "growth": 1.0}, "growth = 1.0"),
        ({"budget": 10, "first": 2, "growth": float("inf")}, "growth = inf"),
        ({"budget": 10, "first": 2, "growth": "2"}, "growth = '2'"),
    ],
)
def test_checkpoint_schedule_bad_input(kwargs, fragment):
    with pytest.raises(InvalidParameterError, match="valid") as info:
        checkpoint_schedule(**kwargs)
    assert fragment in str(info.value)


# --- monotonicity and bad inputs ----------------------------------------------------------------


@pytest.mark.parametrize("bound", SEQUENCE_BOUNDS)
@pytest.mark.parametrize("n", [20, 640, 5000])
@pytest.mark.parametrize("alpha", [1e-6, 0.05, 0.5])
def test_monotone_and_ordered(bound, n, alpha):
    s = np.arange(n + 1)
    lo = sequence_lower(s, n, alpha=alpha, bound=bound, checkpoints=CPS)
    hi = sequence_upper(s, n, alpha=alpha, bound=bound, checkpoints=CPS)
    assert np.all(np.diff(lo) >= 0) and np.all(np.diff(hi) >= 0)
    assert np.all((0 <= lo) & (lo <= s / n) & (s / n <= hi) & (hi <= 1))
    assert lo[0] == 0.0 and hi[-1] == 1.0
    # anytime bounds are wider than a fixed-n Clopper-Pearson at the same alpha
    assert np.all(lo <= clopper_pearson_lower(s, n, alpha=alpha))
    assert np.all(hi >= clopper_pearson_upper(s, n, alpha=alpha))


def test_mixture_upper_is_mirror_of_lower():
    s, n = np.arange(201), 200
    lo = mixture_lower(s, n, alpha=0.01, prior=(2.0, 0.5))
    hi = mixture_upper(n - s, n, alpha=0.01, prior=(0.5, 2.0))
    np.testing.assert_allclose(hi, 1 - lo, atol=3e-16)
    assert np.all(hi >= 1 - lo)


def test_dispatch_matches_direct_calls():
    s, n = np.arange(0, 641, 7), 640
    np.testing.assert_array_equal(
        sequence_lower(s, n, alpha=0.05, bound="union", checkpoints=CPS),
        union_lower(s, n, alpha=0.05, checkpoints=CPS),
    )
    np.testing.assert_array_equal(
        sequence_upper(s, n, alpha=0.05, bound="mixture", checkpoints=CPS),
        mixture_upper(s, n, alpha=0.05),
    )
    # mixture ignores checkpoints (any n is fine, also one off the schedule)
    assert sequence_lower(5, 7, alpha=0.05, bound="mixture") == mixture_lower(5, 7, alpha=0.05)


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "fragment"),
    [
        (mixture_lower, (5, 10), {"alpha": 0.0}, "alpha = 0.0"),
        (mixture_upper, (5, 10), {"alpha": 1.0}, "alpha = 1.0"),
        (mixture_lower, (11, 10), {"alpha": 0.05}, "successes = 11"),
        (mixture_lower, (-1, 10), {"alpha": 0.05}, "successes = -1"),
        (mixture_lower, (0, 0), {"alpha": 0.05}, "n = 0"),
        (mixture_lower, (2.5, 10), {"alpha": 0.05}, "integer counts"),
        (mixture_lower, (5, 10), {"alpha": 0.05, "prior": (0.0, 1.0)}, "prior = (0.0, 1.0)"),
        (mixture_upper, (5, 10), {"alpha": 0.05, "prior": (1.0,)}, "prior = (1.0,)"),
        (mixture_lower, (5, 10), {"alpha": 0.05, "prior": (1.0, math.nan)}, "prior = (1.0, nan)"),
        (union_lower, (5, 30), {"alpha": 0.05, "checkpoints": CPS}, "n = 30"),
        (union_upper, (5, 30), {"alpha": 0.05, "checkpoints": CPS}, "checkpoint of the schedule"),
        (union_lower, (5, 20), {"alpha": 1.5, "checkpoints": CPS}, "alpha = 1.5"),
        (union_lower, (21, 20), {"alpha": 0.05, "checkpoints": CPS}, "successes = 21"),
        (union_lower, (5, 20), {"alpha": 0.05, "checkpoints": (20, 10)}, "checkpoints = "),
        (union_lower, (5, 20), {"alpha": 0.05, "checkpoints": ()}, "checkpoints = "),
        (union_lower, (5, 20), {"alpha": 0.05, "checkpoints": (0, 20)}, "checkpoints = "),
        (sequence_lower, (5, 20), {"alpha": 0.05, "bound": "bonferroni"}, "'bonferroni'"),
        (sequence_upper, (5, 20), {"alpha": 0.05, "bound": "betting"}, "'union', 'mixture'"),
        (sequence_lower, (5, 20), {"alpha": 0.05, "bound": "union"}, "checkpoints = None"),
    ],
)
def test_bad_input_names_value_and_range(fn, args, kwargs, fragment):
    with pytest.raises(InvalidParameterError, match="valid") as info:
        fn(*args, **kwargs)
    assert fragment in str(info.value)


def test_scipy_betaln_error_is_far_inside_the_margin():
    # The margin assumes |betaln error| << MIXTURE_LOG_MARGIN * N log N. Measured: at most
    # about one ulp of N log N (2.2e-16 N log N) on this grid, 225 times below the margin.
    mpmath.mp.dps = 50
    worst = 0.0
    for a in (0.5, 1.0, 3.0):
        for s in (0, 1, 7, 333, 12_345, 10**6, 10**9, 10**12, 10**15):
            for f in (0, 3, 10**4, 10**6, 10**9, 10**12):
                x, y = a + s, 0.5 + f
                big_n = x + y
                err = abs(mpmath.mpf(float(betaln(x, y))) - mpmath.log(mpmath.beta(x, y)))
                worst = max(worst, float(err) / (big_n * math.log(big_n + math.e)))
    assert worst < MIXTURE_LOG_MARGIN / 20

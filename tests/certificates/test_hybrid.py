"""Hybrid text+image bound L(d, r) and radius curve r(d): reductions, oracles, extremes."""

import functools
import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.special import gammaln, log_ndtr, logsumexp, ndtr, ndtri
from scipy.stats import norm

import token_enumeration
from smoothcert.certificates import (
    TokenField,
    hybrid_lower_bound,
    hybrid_radius_curve,
    token_lower_bound,
)
from smoothcert.errors import InvalidParameterError
from token_enumeration import hybrid_oracle, small_fields


def phi_inv(p):
    """Phi^-1 accurate near 1 (via the exact complement)."""
    p = np.asarray(p, dtype=float)
    return np.where(p > 0.5, -ndtri(1.0 - p), ndtri(p))


# ------------------------------------------------------ independent enumeration oracle
def enumerate_pair(positions, attacked):
    """Float arrays of the exact clean/adversarial laws (see ``token_enumeration``)."""
    pc, qa = token_enumeration.enumerate_pair(positions, attacked)
    return np.array(pc, dtype=float), np.array(qa, dtype=float)


def worst_over_positions(positions, d, p_lower, mu):
    n = len(positions)
    best = 1.0
    for size in range(min(d, n) + 1):
        for subset in itertools.combinations(range(n), size):
            pc, qa = enumerate_pair(positions, [i in subset for i in range(n)])
            best = min(best, hybrid_oracle(pc, qa, p_lower, mu))
    return best


# ---------------------------------------------------------------------- reductions
TAUS = [1e-12, 4.6e-5, 0.3, 0.5, 0.9, 1 - 1e-9]
PS = np.array([0.2, 0.5, 0.51, 0.7, 0.9, 0.999, 1 - 1e-6, 1 - 1e-12])


@pytest.mark.parametrize("tau", TAUS)
def test_d0_radius_is_gaussian_closed_form(tau):
    sigma = 0.37
    got = hybrid_radius_curve(PS, d_max=0, sigma=sigma, beta=0.3, vocab_size=7, tau=tau)[:, 0]
    expected = np.maximum(sigma * (phi_inv(PS) - phi_inv(tau)), 0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12)
    assert np.all(got <= expected * (1 + 1e-12))  # never above the exact radius


def test_d0_bound_is_gaussian_closed_form():
    r = np.array([0.0, 0.01, 0.3, 1.0, 2.5])
    for p in [0.3, 0.6, 0.99, 1 - 1e-12]:
        got = hybrid_lower_bound(p, d=0, r=r, sigma=0.5, beta=0.2, vocab_size=9)
        expected = ndtr(phi_inv(p) - r / 0.5)
        np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_cohen_radius_at_tau_half():
    p = np.array([0.6, 0.9, 0.999])
    got = hybrid_radius_curve(p, d_max=0, sigma=0.25, beta=0.5, vocab_size=3)[:, 0]
    np.testing.assert_allclose(got, 0.25 * norm.ppf(p), rtol=1e-8)


@pytest.mark.parametrize(
    ("vocab", "beta", "kernel"),
    [
        (2, 0.3, "uniform"),
        (2, 0.8, "uniform"),
        (5, 0.2, "uniform"),
        (30522, 0.4, "uniform"),
        (None, 0.7, "mask"),
    ],
)
@pytest.mark.parametrize("d", [1, 2, 5])
def test_r_to_zero_is_the_discrete_bound(vocab, beta, kernel, d):
    p = np.array([0.05, 0.4, 0.8, 0.95, 0.9999])
    kw = {"beta": beta, "vocab_size": vocab, "kernel": kernel}
    discrete = token_lower_bound(p, d=d, **kw)
    np.testing.assert_array_equal(hybrid_lower_bound(p, d=d, r=0.0, sigma=1.0, **kw), discrete)
    # Continuity: the gap to the discrete bound shrinks like r (|dL/dr| <= max_k q_k
    # phi(0) / sigma as r -> 0); tiny r are evaluated at a floor of ~1e-6 (1 + |log gamma|).
    previous = np.zeros_like(p)
    for r in [1e-1, 1e-2, 1e-3, 1e-4, 1e-9]:
        near = hybrid_lower_bound(p, d=d, r=r, sigma=1.0, **kw)
        assert np.all(near <= discrete + 1e-10)  # equal up to the rounding slack
        assert np.all(near >= previous - 1e-10)
        assert np.all(discrete - near <= 0.5 * r + 1e-4 * (r < 1e-3) + 1e-10)
        previous = near


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("tau", [1e-12, 0.1, 0.5, 0.8])
def test_mask_closed_form_curve(beta, tau):
    sigma, d_max = 0.5, 10
    p = np.array([0.6, 0.9, 0.99, 0.99999, 1 - 1e-12])
    got = hybrid_radius_curve(p, d_max=d_max, sigma=sigma, beta=beta, kernel="mask", tau=tau)
    for d in range(d_max + 1):
        v = beta**d
        ok = (1 - p) < v - tau  # p > 1 - v + tau, without cancellation
        arg = np.clip((1 - p) / v, 1e-300, 1.0)
        expected = np.where(ok, sigma * (-ndtri(arg) - phi_inv(min(tau / v, 1.0))), 0.0)
        np.testing.assert_allclose(got[:, d], np.maximum(expected, 0.0), rtol=1e-8, atol=1e-10)


# ------------------------------------------------------------ enumeration oracle
@pytest.mark.parametrize(
    ("vocab", "beta"),
    [(2, Fraction(3, 10)), (2, Fraction(7, 10)), (3, Fraction(2, 5)), (5, Fraction(9, 10))],
)
@pytest.mark.parametrize("d", [1, 2, 3])
def test_bound_equals_enumeration_oracle(vocab, beta, d):
    positions = [("uniform", beta, vocab)] * d
    pc, qa = enumerate_pair(positions, [True] * d)
    for p in [0.2, 0.6, 0.9, 0.99]:
        for mu in [0.05, 0.4, 1.5]:
            got = hybrid_lower_bound(
                p, d=d, r=mu * 0.3, sigma=0.3, beta=float(beta), vocab_size=vocab
            )
            exact = hybrid_oracle(pc, qa, p, mu)
            assert got == pytest.approx(exact, rel=1e-7, abs=1e-12)


def test_mask_bound_equals_enumeration_oracle():
    for d in [1, 2, 3]:
        positions = [("mask", Fraction(4, 5), 0)] * d
        pc, qa = enumerate_pair(positions, [True] * d)
        for p in [0.3, 0.6, 0.9, 0.99]:
            for mu in [0.05, 0.4, 1.5]:
                got = hybrid_lower_bound(p, d=d, r=mu, sigma=1.0, beta=0.8, kernel="mask")
                assert got == pytest.approx(hybrid_oracle(pc, qa, p, mu), rel=1e-7, abs=1e-12)


FIELDS, FIELD_POSITIONS = small_fields()


@functools.cache
def fields_oracle(d, p, mu):
    return worst_over_positions(FIELD_POSITIONS, d, p, mu)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("d", [1, 2, 4])
def test_fields_bound_equals_worst_attacked_subset(d, order):
    # Every order of the fields: the minimum must run over all allocations.
    fields = [FIELDS[i] for i in order]
    for p in [0.7, 0.95]:
        for mu in [0.1, 0.8]:
            got = hybrid_lower_bound(p, d=d, r=mu, sigma=1.0, fields=fields)
            assert got == pytest.approx(fields_oracle(d, p, mu), rel=1e-7, abs=1e-12)


def discrete_oracle(pc, qa, p_lower):
    """Neyman-Pearson fractional fill per noisy OUTCOME (r = 0)."""
    ratio = np.where(pc > 0, qa / np.where(pc > 0, pc, 1.0), np.inf)
    order = np.argsort(ratio, kind="stable")
    left, total = p_lower, 0.0
    for i in order:
        if left <= 0 or pc[i] == 0:
            break
        take = min(pc[i], left)
        total += ratio[i] * take
        left -= take
    return total


# (field, oracle position) pairs; the curve must not depend on the order of the fields.
FIELD_SPECS = [
    (TokenField(0.3, 2, positions=2), ("uniform", Fraction(3, 10), 2)),
    (TokenField(0.4, 3, positions=1), ("uniform", Fraction(2, 5), 3)),
    (TokenField(0.6, kernel="mask", positions=1), ("mask", Fraction(3, 5), 0)),
]


def oracle_positions(specs, d):
    """Every eligible position; a field without positions gets d of them (enough)."""
    out = []
    for field, pos in specs:
        out += [pos] * (d if field.positions is None else field.positions)
    return out


@pytest.mark.parametrize("unbounded", [None, 0, 2])
@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_fields_curve_is_sound_and_tight_against_the_oracle(order, unbounded):
    # Brute force over every set of attacked positions, for every order of the fields
    # (a curve that kept only some of the allocations passes for some orders only).
    p, tau, sigma = 0.99, 0.3, 0.5
    specs = []
    for i in order:
        field, pos = FIELD_SPECS[i]
        positions = None if i == unbounded else field.positions
        specs.append((TokenField(field.beta, field.vocab_size, field.kernel, positions), pos))
    fields = [f for f, _ in specs]
    d_max = 5 if unbounded is None else 3
    curve = hybrid_radius_curve(p, d_max=d_max, sigma=sigma, tau=tau, fields=fields)
    assert np.all(np.diff(curve) <= 0)
    if unbounded is None:
        assert curve[5] == curve[4]  # only 4 eligible positions
    for d in range(min(d_max, 4) + 1):
        positions = oracle_positions(specs, d)
        r = curve[d]
        if r > 0:
            assert worst_over_positions(positions, d, p, r / sigma) >= tau * (1 - 1e-9)
            assert worst_over_positions(positions, d, p, r * (1 + 1e-5) / sigma) < tau
        else:  # not certified even at r = 0
            worst = 1.0
            for size in range(min(d, len(positions)) + 1):
                for subset in itertools.combinations(range(len(positions)), size):
                    hit = [i in subset for i in range(len(positions))]
                    worst = min(worst, discrete_oracle(*enumerate_pair(positions, hit), p))
            assert worst < tau * (1 + 1e-9)


def test_fields_curve_with_the_mask_field_first():
    # Regression: the minimum over allocations must cover the last allocation too
    # (keeping only the first one gave r(1) = 1.343 here instead of 1.064).
    fields = [TokenField(0.6, kernel="mask", positions=1), *(f for f, _ in FIELD_SPECS[:2])]
    curve = hybrid_radius_curve(0.99, d_max=1, sigma=0.5, tau=0.3, fields=fields)
    assert curve[1] == pytest.approx(1.064, abs=5e-4)


# ------------------------------------- independent closed-form oracle at large d
def closed_form_levels(vocab, beta, d):
    """(log gamma_k, log p_k, log q_k) of the uniform kernel, multinomial closed form.

    ``i`` positions show u (clean 1 - beta), ``j`` show u' (clean a), ``o`` another token;
    ``k = i - j``. The adversarial mass is ``gamma^k p_k`` (not the mirror image).
    """
    a = beta / (vocab - 1)
    i = np.arange(d + 1)[:, None]
    j = np.arange(d + 1)[None, :]
    o = d - i - j
    valid = (o >= 0) & ((o == 0) if vocab == 2 else True)
    oo = np.where(valid, o, 0)
    log_other = math.log(beta - a) if vocab > 2 else 0.0
    log_p = (
        gammaln(d + 1)
        - gammaln(i + 1)
        - gammaln(j + 1)
        - gammaln(oo + 1)
        + i * math.log1p(-beta)
        + j * math.log(a)
        + oo * log_other
    )
    log_p = np.where(valid, log_p, -np.inf)
    ks = np.arange(-d, d + 1)
    # Entries with i - j = k lie on the diagonal of offset -k.
    lp = np.array([logsumexp(np.diagonal(log_p, offset=-k)) for k in ks])
    keep = np.isfinite(lp)
    lg = ks[keep] * (math.log(a) - math.log1p(-beta))
    return lg, lp[keep], lp[keep] + lg


def closed_form_bound(levels, p, mu):
    """(L, 1 - L) by brentq on the clean CDF in log t (complement form for p > 1/2)."""
    lg, lp, lq = levels
    comp = p > 0.5

    def h(s):  # increasing in s, root at F(s) = p
        z = (s - lg) / mu + mu / 2
        if comp:
            return math.log1p(-p) - logsumexp(lp + log_ndtr(-z))
        return logsumexp(lp + log_ndtr(z)) - math.log(p)

    lo = lg.min() - mu * (mu + 45.0) - 1.0
    hi = lg.max() + mu * (mu + 45.0) + 1.0
    assert h(lo) < 0 < h(hi)
    s = brentq(h, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500)
    z = (s - lg) / mu - mu / 2
    return math.exp(logsumexp(lq + log_ndtr(z))), math.exp(logsumexp(lq + log_ndtr(-z)))


def assert_radius_against_closed_form(levels, p, r, sigma, tau):
    """Certified at r (within 1e-9 relative) and not at r (1 + 1e-4)."""
    lower, upper_c = closed_form_bound(levels, p, r / sigma)
    if tau <= 0.5:
        assert lower >= tau * (1 - 1e-9)
    else:
        assert upper_c <= (1 - tau) * (1 + 1e-9)
    if r / sigma > 1e-3:  # tightness (far above the evaluation floor of mu)
        lower, upper_c = closed_form_bound(levels, p, r * (1 + 1e-4) / sigma)
        assert (lower < tau) if tau <= 0.5 else (upper_c > 1 - tau)


@pytest.mark.parametrize(
    ("vocab", "beta", "p", "tau", "ds"),
    [
        (30522, 0.9, 1 - 1e-12, 1e-12, [1, 10, 100, 200, 257]),
        (2, 0.45, 1 - 1e-9, 4.6e-5, [1, 50, 150]),
        (5, 0.75, 0.999, 0.5, [1, 20, 60]),
        (5, 0.85, 1 - 1e-6, 0.9, [1, 30, 90]),  # rho > 1
    ],
)
def test_uniform_curve_against_closed_form_oracle_at_large_d(vocab, beta, p, tau, ds):
    sigma = 0.5
    curve = hybrid_radius_curve(p, d_max=max(ds), sigma=sigma, beta=beta, vocab_size=vocab, tau=tau)
    for d in ds:
        assert curve[d] > 0
        assert_radius_against_closed_form(
            closed_form_levels(vocab, beta, d), p, curve[d], sigma, tau
        )


@settings(max_examples=15, deadline=None)
@given(
    vocab=st.sampled_from([2, 3, 5, 50, 30522, 10**6]),
    log_rho=st.one_of(st.floats(-4.0, 2.0), st.floats(-0.05, 0.05)),
    p=st.one_of(st.floats(0.5, 1 - 1e-12), st.floats(1e-9, 1e-2).map(lambda x: 1 - x)),
    tau=st.sampled_from([1e-12, 4.6e-5, 0.1, 0.5, 0.9]),
    d_max=st.integers(1, 300),
    pick=st.randoms(use_true_random=False),
)
def test_uniform_curve_against_closed_form_oracle(vocab, log_rho, p, tau, d_max, pick):
    # beta from rho = beta / ((V - 1)(1 - beta)): covers rho < 1, rho ~ 1 and rho > 1,
    # the latter two certify hundreds of tokens.
    x = math.exp(log_rho) * (vocab - 1)
    beta = x / (1 + x)
    assume(0.0 < beta < 1.0)
    sigma = 0.5
    curve = hybrid_radius_curve(p, d_max=d_max, sigma=sigma, beta=beta, vocab_size=vocab, tau=tau)
    positive = [d for d in range(1, d_max + 1) if curve[d] > 0]
    checks = set(pick.sample(positive, min(2, len(positive))))
    if positive:
        checks.add(positive[-1])
    for d in sorted(checks):
        assert_radius_against_closed_form(
            closed_form_levels(vocab, beta, d), p, curve[d], sigma, tau
        )


def test_every_returned_radius_is_reverified(monkeypatch):
    # Sabotage the root finder (radii 0.1 % too large): the re-verification must shrink
    # every radius until the bound holds, for every allocation of the fields.
    import smoothcert.certificates.hybrid as hybrid_module

    real = hybrid_module.radius_step

    def too_far(levels, p, tau, cap):
        mu, s = real(levels, p, tau, cap)
        return mu * 1.001, s

    monkeypatch.setattr(hybrid_module, "radius_step", too_far)
    p, sigma = np.array([0.7, 0.99, 1 - 1e-9]), 0.5
    for tau, kw in [
        (0.5, {"beta": 0.3, "vocab_size": 5}),
        (1e-6, {"beta": 0.9, "kernel": "mask"}),
        (0.3, {"fields": FIELDS}),
    ]:
        curve = hybrid_radius_curve(p, d_max=4, sigma=sigma, tau=tau, **kw)
        assert np.any(curve[:, 1:] > 0)
        for d in range(5):
            lower = hybrid_lower_bound(p, d=d, r=curve[:, d], sigma=sigma, **kw)
            assert np.all(lower[curve[:, d] > 0] >= tau)


# --------------------------------------------------------------------- Monte Carlo
def _sample_uniform_tokens(rng, n, d, beta, vocab, token):
    keep = rng.random((n, d)) < 1 - beta
    other = rng.integers(0, vocab - 1, size=(n, d))
    other = other + (other >= token)  # uniform over the V - 1 other tokens
    return np.where(keep, token, other)


def _token_log_ratio(z, beta, vocab):
    a = beta / (vocab - 1)
    per = np.where(
        z == 0, math.log(a / (1 - beta)), np.where(z == 1, math.log((1 - beta) / a), 0.0)
    )
    return per.sum(axis=1)


def test_monte_carlo_adversarial_probability_of_worst_case_set():
    from smoothcert.certificates._levels import Group, group_levels
    from smoothcert.certificates._mixture import solve_threshold

    rng = np.random.default_rng(12345)
    vocab, beta, d, sigma, r, dim, p = 3, 0.4, 2, 0.5, 0.35, 4, 0.8
    n = 400_000
    lev = group_levels(Group("uniform", beta, vocab, None), d)
    _, _, s_star = solve_threshold(lev, np.array([p]), np.array([r / sigma]))
    delta = rng.normal(size=dim)
    delta *= r / np.linalg.norm(delta)

    def log_ratio(tokens, x):
        image = (x @ delta - 0.5 * delta @ delta) / sigma**2
        return _token_log_ratio(tokens, beta, vocab) + image

    clean = log_ratio(
        _sample_uniform_tokens(rng, n, d, beta, vocab, 0), rng.normal(0, sigma, (n, dim))
    )
    adv = log_ratio(
        _sample_uniform_tokens(rng, n, d, beta, vocab, 1), delta + rng.normal(0, sigma, (n, dim))
    )
    lower = hybrid_lower_bound(p, d=d, r=r, sigma=sigma, beta=beta, vocab_size=vocab)
    p_hat = np.mean(clean <= s_star[0])
    l_hat = np.mean(adv <= s_star[0])
    assert abs(p_hat - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert abs(l_hat - lower) < 5 * math.sqrt(lower * (1 - lower) / n)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("vocab", "beta", "kernel", "d", "p"),
    [(2, 0.3, "uniform", 3, 0.9), (5, 0.85, "uniform", 2, 0.95), (0, 0.8, "mask", 2, 0.9)],
)
def test_monte_carlo_more_kernels(vocab, beta, kernel, d, p):
    from smoothcert.certificates._levels import Group, group_levels
    from smoothcert.certificates._mixture import solve_threshold

    rng = np.random.default_rng(7)
    sigma, r, n = 1.0, 0.6, 2_000_000
    lev = group_levels(Group(kernel, beta, vocab, None), d)
    _, _, s_star = solve_threshold(lev, np.array([p]), np.array([r / sigma]))
    if kernel == "mask":
        masked_c = rng.random((n, d)) < beta
        masked_a = rng.random((n, d)) < beta
        # Clean shows u (ratio 0) unless all masked; adversarial shows u' (ratio inf).
        lr_clean = np.where(masked_c.all(axis=1), 0.0, -np.inf)
        lr_adv = np.where(masked_a.all(axis=1), 0.0, np.inf)
    else:
        lr_clean = _token_log_ratio(_sample_uniform_tokens(rng, n, d, beta, vocab, 0), beta, vocab)
        lr_adv = _token_log_ratio(_sample_uniform_tokens(rng, n, d, beta, vocab, 1), beta, vocab)
    mu = r / sigma
    lr_clean = lr_clean + mu * rng.normal(size=n) - mu**2 / 2
    lr_adv = lr_adv + mu * rng.normal(size=n) + mu**2 / 2
    lower = hybrid_lower_bound(
        p, d=d, r=r, sigma=sigma, beta=beta, vocab_size=vocab or None, kernel=kernel
    )
    assert abs(np.mean(lr_clean <= s_star[0]) - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert abs(np.mean(lr_adv <= s_star[0]) - lower) < 5 * math.sqrt(lower * (1 - lower) / n) + 1e-6


# -------------------------------------------------------------------- monotonicity
KERNELS = st.sampled_from(
    [
        {"beta": 0.3, "vocab_size": 2},
        {"beta": 0.8, "vocab_size": 2},
        {"beta": 0.25, "vocab_size": 5},
        {"beta": 0.6, "vocab_size": 30522},
        {"beta": 0.05, "vocab_size": 10**6},
        {"beta": 0.85, "kernel": "mask"},
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    p=st.floats(0.0, 1.0),
    dp=st.floats(0.0, 0.5),
    d=st.integers(0, 12),
    r=st.floats(0.0, 4.0),
    dr=st.floats(0.0, 2.0),
    kw=KERNELS,
)
def test_bound_monotone_in_d_r_and_p(p, dp, d, r, dr, kw):
    sigma = 0.5
    base = hybrid_lower_bound(p, d=d, r=r, sigma=sigma, **kw)
    tol = 1e-10 + 1e-9 * base
    assert hybrid_lower_bound(p, d=d + 1, r=r, sigma=sigma, **kw) <= base + tol
    assert hybrid_lower_bound(p, d=d, r=r + dr, sigma=sigma, **kw) <= base + tol
    assert hybrid_lower_bound(min(1.0, p + dp), d=d, r=r, sigma=sigma, **kw) >= base - tol
    assert 0.0 <= base <= 1.0


@settings(max_examples=40, deadline=None)
@given(
    p=st.floats(0.0, 1 - 1e-12),
    tau=st.sampled_from([1e-12, 4.6e-5, 0.1, 0.5, 0.9]),
    kw=KERNELS,
)
def test_curve_non_increasing_verified_and_tight(p, tau, kw):
    sigma = 0.25
    curve = hybrid_radius_curve(p, d_max=6, sigma=sigma, tau=tau, **kw)
    assert np.all(np.diff(curve) <= 0.0)
    for d, r in enumerate(curve):
        if r > 0:
            assert hybrid_lower_bound(p, d=d, r=r, sigma=sigma, **kw) >= tau
            assert hybrid_lower_bound(p, d=d, r=r * (1 + 1e-6), sigma=sigma, **kw) < tau
        else:
            assert token_lower_bound(p, d=d, **kw) < tau * (1 + 1e-9) or curve[0] == 0


# ------------------------------------------------------------------ vectorisation
def test_batch_equals_one_by_one_and_shapes():
    rng = np.random.default_rng(3)
    p = rng.uniform(0.4, 1 - 1e-9, size=(4, 5))
    kw = {"d_max": 5, "sigma": 0.5, "beta": 0.3, "vocab_size": 100, "tau": 0.2}
    batch = hybrid_radius_curve(p, **kw)
    assert batch.shape == (4, 5, 6)
    for idx in np.ndindex(p.shape):
        np.testing.assert_allclose(batch[idx], hybrid_radius_curve(p[idx], **kw), rtol=1e-12)
    lower = hybrid_lower_bound(
        p[:, :1], d=2, r=np.array([0.1, 0.5, 1.0]), sigma=0.5, beta=0.3, vocab_size=100
    )
    assert lower.shape == (4, 3)
    assert isinstance(
        hybrid_lower_bound(0.9, d=1, r=0.1, sigma=1.0, beta=0.3, vocab_size=5), np.floating
    )


# ------------------------------------------------------------------------ extremes
@pytest.mark.parametrize(
    ("kw", "d_max"),
    [
        ({"beta": 0.02, "vocab_size": 10**6}, 8),
        ({"beta": 0.1, "vocab_size": 2}, 8),
        ({"beta": 0.9, "vocab_size": 2}, 8),  # rho > 1
        ({"beta": 0.5, "vocab_size": 2}, 8),  # rho = 1: tokens carry no information
        ({"beta": 0.999, "kernel": "mask"}, 40),
    ],
)
def test_extreme_probabilities_and_thresholds(kw, d_max):
    p = np.array([0.0, 1e-12, 0.3, 0.5, 0.9, 1 - 1e-6, 1 - 1e-12])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for tau in [1e-12, 0.5, 1 - 1e-9]:
            curve = hybrid_radius_curve(p, d_max=d_max, sigma=1.0, tau=tau, **kw)
            assert np.all(np.isfinite(curve)) and np.all(curve >= 0)
            assert np.all(curve[p <= tau] == 0.0)
            for d in [0, 1, d_max]:
                lower = hybrid_lower_bound(p, d=d, r=curve[:, d], sigma=1.0, **kw)
                assert np.all(np.isfinite(lower))
                assert np.all(lower[curve[:, d] > 0] >= tau)
    if kw.get("vocab_size") == 2 and kw["beta"] == 0.5:
        # rho = 1: the curve is the Gaussian one at every d.
        np.testing.assert_allclose(curve[:, d_max], curve[:, 0], rtol=1e-12)


def test_thousands_of_tokens():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lower = hybrid_lower_bound(
            [1e-12, 0.5, 1 - 1e-12, 1.0], d=1500, r=0.2, sigma=1.0, beta=0.002, vocab_size=50_000
        )
    assert np.all(np.isfinite(lower)) and np.all(np.diff(lower) >= 0)
    assert lower[0] == pytest.approx(0.0, abs=1e-12)
    assert lower[-1] == pytest.approx(1.0, abs=1e-12)


def test_p_lower_one_gives_adversarial_mass_of_clean_support():
    r = np.array([0.0, 0.5, 40.0, 1e3, 1e200])  # independent of r
    uniform = hybrid_lower_bound(1.0, d=3, r=r, sigma=1.0, beta=0.3, vocab_size=5)
    np.testing.assert_allclose(uniform, 1.0, rtol=1e-12)
    assert np.all(uniform <= 1.0)
    mask = hybrid_lower_bound(1.0, d=3, r=r, sigma=1.0, beta=0.8, kernel="mask")
    np.testing.assert_allclose(mask, 0.8**3, rtol=1e-9)
    assert np.all(mask <= 0.8**3)


def test_tiny_p_lower_against_closed_form_at_d0():
    # Regression: p_lower at or below the safety margin used to give 0 (L = 9.96e-13 here).
    got = hybrid_lower_bound(1e-12, d=0, r=1.5e-5, sigma=0.03, beta=0.99, vocab_size=2)
    assert got == pytest.approx(ndtr(ndtri(1e-12) - 5e-4), rel=1e-9)
    p = np.array([1e-300, 1e-200, 1e-100, 1e-30, 1e-13, 1e-12, 2e-12, 1e-9])
    for kw in [{"beta": 0.99, "vocab_size": 2}, {"beta": 0.3, "kernel": "mask"}]:
        for mu in [5e-4, 0.01, 0.5, 1.5]:
            got = hybrid_lower_bound(p, d=0, r=mu * 0.03, sigma=0.03, **kw)
            log_exact = log_ndtr(ndtri(p) - mu)
            normal = log_exact > math.log(1e-290)  # the rest underflows (to subnormals)
            assert np.all(got[normal] > 0)
            log_got = np.log(got[normal])
            assert np.all(log_got <= log_exact[normal] + 1e-15)  # sound
            np.testing.assert_allclose(log_got, log_exact[normal], rtol=0, atol=1e-9)  # tight


def test_huge_image_radius_gives_zero_without_warnings():
    # r / sigma overflows to inf, or is finite but far beyond any certifiable radius.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = hybrid_lower_bound(0.9, d=1, r=1e300, sigma=1e-10, beta=0.3, vocab_size=5)
        assert got == 0.0
        p = np.array([0.0, 1e-300, 0.5, 0.9, 1 - 1e-16])
        for r in [60.0, 1e10, 1e200, 1.7e308]:
            for kw in [{"beta": 0.3, "vocab_size": 5}, {"beta": 0.8, "kernel": "mask"}]:
                got = hybrid_lower_bound(p, d=2, r=r, sigma=1.0, **kw)
                np.testing.assert_array_equal(got, 0.0)
        # Just below the cutoff (Phi^-1(p) + 39) the value is tiny but evaluated.
        below = hybrid_lower_bound(0.5, d=0, r=38.0, sigma=1.0, beta=0.3, vocab_size=5)
        assert below == pytest.approx(ndtr(-38.0), rel=1e-9)
        # An r / sigma that underflows to 0 is not treated as r = 0 (a larger bound).
        tiny = hybrid_lower_bound(0.9, d=1, r=1e-300, sigma=1e10, beta=0.3, vocab_size=5)
        assert tiny < hybrid_lower_bound(0.9, d=1, r=0.0, sigma=1e10, beta=0.3, vocab_size=5)


def test_values_near_one_never_exceed_the_exact_bound():
    # L is computed as 1 - x near 1; round-to-nearest used to exceed the exact value by
    # up to half an ulp. Exact: Phi(Phi^-1(p) - mu) at d = 0, p (1 - tiny) for r = 0.
    mp = pytest.importorskip("mpmath")
    ps = [1 - 2.0**-k for k in (20, 30, 40, 45, 50, 52, 53)] + [1 - 3e-16, 1 - 1e-15]
    with mp.workdps(40):
        for p in ps:
            z = -mp.sqrt(2) * mp.erfinv(1 - 2 * mp.mpf(p))
            for mu in [0.0, 1e-6, 1e-4, 1e-3, 0.01]:
                got = hybrid_lower_bound(p, d=0, r=mu, sigma=1.0, beta=0.3, vocab_size=5)
                exact = mp.ncdf(z - mu)
                assert mp.mpf(float(got)) <= exact
                assert exact - mp.mpf(float(got)) <= 1e-9 * (1 - exact) + 4.5e-16
                assert mp.mpf(float(token_lower_bound(p, d=0, beta=0.3, vocab_size=5))) <= p


def test_rho_one_up_to_rounding_matches_the_gaussian_curve():
    # beta = (V - 1) / V: log rho is 0 or a few 1e-16 (not snapped), the curve stays the
    # d = 0 one up to O(d 1e-16).
    p = np.array([0.6, 0.99, 1 - 1e-9])
    for vocab in [2, 3, 4, 5, 7]:
        beta = (vocab - 1) / vocab
        curve = hybrid_radius_curve(p, d_max=100, sigma=1.0, beta=beta, vocab_size=vocab, tau=0.3)
        np.testing.assert_allclose(curve[:, -1], curve[:, 0], rtol=1e-9)
        lower = token_lower_bound(p, d=1000, beta=beta, vocab_size=vocab)
        np.testing.assert_allclose(lower, p, rtol=1e-8)  # margin 2^-40 (2d + 2), twice
        assert np.all(lower <= p)


# ----------------------------------------------------------------------- bad input
BASE = {"p_lower": 0.9, "d": 1, "r": 0.1, "sigma": 0.5, "beta": 0.3, "vocab_size": 5}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"r": -0.1}, "r = -0.1"),
        ({"r": float("nan")}, "r = nan"),
        ({"r": float("inf")}, "r >= 0"),
        ({"sigma": 0.0}, "sigma = 0.0"),
        ({"sigma": -1.0}, "sigma > 0"),
        ({"beta": 0.0}, "0 < beta < 1"),
        ({"beta": 1.5}, "beta = 1.5"),
        ({"vocab_size": 1}, "vocab_size >= 2"),
        ({"d": -2}, "d = -2"),
        ({"p_lower": 1.2}, "0 <= p_lower <= 1"),
        ({"p_lower": [0.5, float("nan")]}, "NaN"),
    ],
)
def test_bound_rejects_bad_input(change, fragment):
    with pytest.raises(InvalidParameterError, match="valid range") as err:
        hybrid_lower_bound(**{**BASE, **change})
    assert fragment in str(err.value)


CURVE = {"p_lower": 0.9, "d_max": 3, "sigma": 0.5, "beta": 0.3, "vocab_size": 5, "tau": 0.5}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"tau": 0.0}, "0 < tau < 1"),
        ({"tau": 1.0}, "tau = 1.0"),
        ({"tau": float("nan")}, "tau = nan"),
        ({"p_lower": 1.0}, "p_lower = 1.0"),
        ({"p_lower": -0.5}, "p_lower = -0.5"),
        ({"d_max": -1}, "d_max >= 0"),
        ({"sigma": 0.0}, "sigma > 0"),
        ({"beta": 1.0}, "beta = 1.0"),
        ({"vocab_size": 0}, "vocab_size = 0"),
    ],
)
def test_curve_rejects_bad_input(change, fragment):
    with pytest.raises(InvalidParameterError, match="valid range") as err:
        hybrid_radius_curve(**{**CURVE, **change})
    assert fragment in str(err.value)

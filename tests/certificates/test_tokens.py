"""Token-substitution bound: exact enumeration / LP oracles, extremes, bad input."""

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.special import gammaln, logsumexp

from smoothcert.certificates import (
    max_certifiable_tokens,
    max_certifiable_tokens_for_samples,
    token_lower_bound,
)
from smoothcert.certificates._levels import Group, group_levels, one_minus_down, one_minus_up
from smoothcert.errors import InvalidParameterError
from token_enumeration import enumerate_pair


# --------------------------------------------------------------------------- oracle
def enumerate_attacked(positions):
    """Exact laws for ``positions`` given as ``(kernel, beta, vocab, attacked)``."""
    return enumerate_pair([p[:3] for p in positions], [p[3] for p in positions])


def ratio_distribution(pc, qa):
    """Clean mass of each distinct finite positive ratio, plus the two atoms."""
    levels = {}
    zero = Fraction(0)
    inf = Fraction(0)
    for p, q in zip(pc, qa, strict=True):
        if p == 0:
            inf += q
        elif q == 0:
            zero += p
        else:
            levels[q / p] = levels.get(q / p, 0) + p
    return dict(sorted(levels.items())), zero, inf


def fill_oracle(pc, qa, p_lower):
    """Exact Neyman-Pearson fractional fill over the enumerated outcomes."""
    items = sorted(
        ((q / p if p > 0 else None, p, q) for p, q in zip(pc, qa, strict=True)),
        key=lambda t: (t[0] is None, t[0] if t[0] is not None else 0),
    )
    left = Fraction(p_lower)
    total = Fraction(0)
    for ratio, p, _q in items:
        if left <= 0:
            break
        if p == 0:
            continue
        take = min(p, left)
        total += ratio * take
        left -= take
    return float(total)


def lp_oracle(pc, qa, p_lower):
    """Worst case as a linear program: min sum f Q  s.t. sum f P >= p, 0 <= f <= 1."""
    c = np.array([float(q) for q in qa])
    a = -np.array([[float(p) for p in pc]])
    res = linprog(c, A_ub=a, b_ub=[-p_lower], bounds=(0, 1), method="highs")
    assert res.status == 0
    return res.fun


CASES = [
    # (vocab, beta): V = 2 (zero "other" mass), rho < 1, rho = 1, rho > 1
    (2, Fraction(3, 10)),
    (2, Fraction(1, 2)),
    (2, Fraction(7, 10)),
    (3, Fraction(2, 5)),
    (3, Fraction(4, 5)),
    (5, Fraction(1, 5)),
    (5, Fraction(9, 10)),
]


# ---------------------------------------------------------------- level distributions
@pytest.mark.parametrize(("vocab", "beta"), CASES)
@pytest.mark.parametrize("d", [0, 1, 2, 3])
def test_uniform_levels_equal_enumeration(vocab, beta, d):
    pc, qa = enumerate_attacked([("uniform", beta, vocab, True)] * d)
    exact, zero, inf = ratio_distribution(pc, qa)
    assert zero == 0 and inf == 0
    lev = group_levels(Group("uniform", float(beta), vocab, None), d)
    np.testing.assert_allclose(np.exp(lev.log_ratio), [float(r) for r in exact], rtol=1e-12)
    np.testing.assert_allclose(
        np.exp(lev.log_clean), [float(m) for m in exact.values()], rtol=1e-12
    )
    np.testing.assert_allclose(
        np.exp(lev.log_adv), [float(r * m) for r, m in exact.items()], rtol=1e-12
    )
    assert lev.clean_zero == 0.0 and lev.adv_inf == 0.0


@pytest.mark.parametrize("beta", [Fraction(1, 10), Fraction(3, 5), Fraction(19, 20)])
@pytest.mark.parametrize("d", [0, 1, 2, 3])
def test_mask_levels_equal_enumeration(beta, d):
    pc, qa = enumerate_attacked([("mask", beta, 0, True)] * d)
    exact, zero, inf = ratio_distribution(pc, qa)
    lev = group_levels(Group("mask", float(beta), 0, None), d)
    np.testing.assert_allclose(np.exp(lev.log_ratio), [float(r) for r in exact], rtol=1e-12)
    np.testing.assert_allclose(
        np.exp(lev.log_clean), [float(m) for m in exact.values()], rtol=1e-12
    )
    assert lev.clean_zero == pytest.approx(float(zero), abs=1e-15)
    assert lev.adv_inf == pytest.approx(float(inf), abs=1e-15)


def test_levels_match_multinomial_formula_at_large_d():
    # Independent closed form: P(k) = sum_j d! / (i! j! o!) (1-b)^i a^j (b-a)^o, i = j + k.
    beta, vocab, d = 0.3, 7, 300
    a = beta / (vocab - 1)
    lev = group_levels(Group("uniform", beta, vocab, None), d)
    log_rho = math.log(a) - math.log1p(-beta)
    ks = np.rint(lev.log_ratio / log_rho).astype(int)
    for k, lc in zip(ks[::37], lev.log_clean[::37], strict=True):
        j = np.arange(max(0, -k), (d - k) // 2 + 1)
        i, o = j + k, d - 2 * j - k
        terms = (
            gammaln(d + 1)
            - gammaln(i + 1)
            - gammaln(j + 1)
            - gammaln(o + 1)
            + i * math.log1p(-beta)
            + j * math.log(a)
            + o * math.log(beta - a)
        )
        assert lc == pytest.approx(logsumexp(terms), rel=1e-11, abs=1e-9)


# ------------------------------------------------------------------- discrete bound
P_GRID = [0.0, 0.05, 0.3, 0.5, 0.77, 0.9, 0.99, 0.999999, 1.0]


@pytest.mark.parametrize(("vocab", "beta"), CASES)
@pytest.mark.parametrize("d", [0, 1, 2, 3])
def test_bound_equals_exact_fill_and_linear_program(vocab, beta, d):
    pc, qa = enumerate_attacked([("uniform", beta, vocab, True)] * d)
    got = token_lower_bound(P_GRID, d=d, beta=float(beta), vocab_size=vocab)
    for p, value in zip(P_GRID, got, strict=True):
        exact = fill_oracle(pc, qa, Fraction(p))
        assert value <= exact + 1e-15  # conservative
        assert value == pytest.approx(exact, rel=1e-9, abs=1e-12)
        assert value == pytest.approx(lp_oracle(pc, qa, p), rel=1e-7, abs=1e-9)


@pytest.mark.parametrize("beta", [Fraction(1, 4), Fraction(4, 5)])
@pytest.mark.parametrize("d", [0, 1, 2, 3])
def test_mask_bound_equals_linear_program_and_closed_form(beta, d):
    pc, qa = enumerate_attacked([("mask", beta, 0, True)] * d)
    got = token_lower_bound(P_GRID, d=d, beta=float(beta), kernel="mask")
    v = float(beta) ** d
    for p, value in zip(P_GRID, got, strict=True):
        assert value == pytest.approx(lp_oracle(pc, qa, p), rel=1e-7, abs=1e-9)
        assert value == pytest.approx(max(0.0, p - 1 + v), rel=1e-9, abs=1e-12)


def test_unattacked_positions_do_not_change_the_bound():
    # Positions the attacker leaves alone have ratio 1 (shared sampling is valid).
    vocab, beta = 3, Fraction(2, 5)
    pc, qa = enumerate_attacked([("uniform", beta, vocab, True), ("uniform", beta, vocab, False)])
    for p in [0.2, 0.6, 0.95]:
        got = token_lower_bound(p, d=1, beta=float(beta), vocab_size=vocab)
        assert got == pytest.approx(lp_oracle(pc, qa, p), rel=1e-7, abs=1e-9)


def test_scalar_and_array_outputs():
    assert isinstance(token_lower_bound(0.9, d=1, beta=0.3, vocab_size=5), np.floating)
    out = token_lower_bound(np.full((2, 3), 0.9), d=1, beta=0.3, vocab_size=5)
    assert out.shape == (2, 3)


# ------------------------------------------------------------------------ extremes
@pytest.mark.parametrize(
    ("d", "beta", "vocab"),
    [
        (3000, 0.1, 2),
        (2000, 0.3, 10**6),
        (1500, 0.99, 3),
        (1000, 0.05, 30522),
        (500, 0.5, 2),  # rho = 1: every level merges into ratio 1
    ],
)
def test_large_d_and_alphabets_stay_finite(d, beta, vocab):
    p = np.array([0.0, 1e-300, 1e-12, 0.3, 0.5, 0.9, 1 - 1e-6, 1 - 1e-12, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = token_lower_bound(p, d=d, beta=beta, vocab_size=vocab)
    assert np.all(np.isfinite(got)) and np.all((got >= 0) & (got <= 1))
    assert np.all(np.diff(got) >= -1e-15)
    assert got[0] == 0.0
    assert got[-1] == pytest.approx(1.0, abs=1e-9)


def test_reference_overflow_regime():
    # A linear-space implementation overflows near d = 70 with a big alphabet.
    got = token_lower_bound(0.999999, d=80, beta=0.05, vocab_size=30522)
    assert 0.0 <= got < 0.999999
    # One attacked position is never worse than 80.
    assert got <= token_lower_bound(0.999999, d=1, beta=0.05, vocab_size=30522)


# --------------------------------------------------------------------- monotonicity
@settings(max_examples=60, deadline=None)
@given(
    p=st.floats(0.0, 1.0),
    p2=st.floats(0.0, 1.0),
    d=st.integers(0, 40),
    beta=st.floats(0.01, 0.99),
    vocab=st.sampled_from([2, 3, 5, 50, 30522, 10**6]),
    kernel=st.sampled_from(["uniform", "mask"]),
)
def test_monotone_in_d_and_p(p, p2, d, beta, vocab, kernel):
    kw = {"beta": beta, "vocab_size": vocab, "kernel": kernel}
    lo, hi = min(p, p2), max(p, p2)
    a = token_lower_bound(lo, d=d, **kw)
    b = token_lower_bound(hi, d=d, **kw)
    c = token_lower_bound(hi, d=d + 1, **kw)
    assert a <= b + 1e-12
    assert c <= b + 1e-12
    assert 0.0 <= c <= 1.0


# ---------------------------------------------------------------- max certifiable d
@pytest.mark.parametrize("p", [0.5, 0.6, 0.9, 0.999, 1 - 1e-9])
@pytest.mark.parametrize("tau", [1e-6, 0.5])
def test_max_tokens_mask_closed_form(p, tau):
    beta = 0.9
    got = int(max_certifiable_tokens(p, beta=beta, tau=tau, kernel="mask"))
    d = 0
    while p - 1 + beta ** (d + 1) >= tau * (1 + 1e-9):
        d += 1
    assert got == d


def test_max_tokens_uniform_matches_scan():
    p = np.array([0.3, 0.55, 0.9, 0.99, 0.99999])
    got = max_certifiable_tokens(p, beta=0.6, vocab_size=20, tau=0.5)
    for pi, g in zip(p, got, strict=True):
        values = [token_lower_bound(pi, d=d, beta=0.6, vocab_size=20) for d in range(40)]
        best = max([d for d, v in enumerate(values) if v >= 0.5], default=0)
        assert g == best


def test_max_tokens_for_samples_is_the_all_agree_case():
    n, alpha = 10_000, 0.001
    best = alpha ** (1 / n)
    assert max_certifiable_tokens_for_samples(
        n, alpha=alpha, beta=0.8, vocab_size=100
    ) == max_certifiable_tokens(best, beta=0.8, vocab_size=100)
    assert max_certifiable_tokens_for_samples(1, alpha=0.5, beta=0.8, kernel="mask") == 0


def test_max_tokens_limit():
    assert max_certifiable_tokens(1.0, beta=0.3, vocab_size=5, d_limit=7) == 7


@settings(max_examples=60, deadline=None)
@given(
    vocab=st.sampled_from([2, 3, 5, 100, 30522]),
    rho=st.floats(1e-4, 2.0),
    d=st.integers(1, 25),
    p=st.one_of(st.floats(0.0, 1.0), st.floats(1e-12, 1e-1).map(lambda x: 1 - x)),
)
def test_uniform_never_below_mask_while_rho_at_most_two(vocab, rho, d, p):
    # rho <= 2: the uniform noisy token can be simulated from the masked one (a garbling),
    # so its Neyman-Pearson bound is at least the mask one at every d and p_lower.
    x = rho * (vocab - 1)
    beta = x / (1 + x)
    uniform = token_lower_bound(p, d=d, beta=beta, vocab_size=vocab)
    mask = token_lower_bound(p, d=d, beta=beta, kernel="mask")
    assert uniform >= mask * (1 - 1e-9)


def test_uniform_against_mask_examples_of_the_docs():
    # Uniform can certify many more tokens (rho ~ 0.05) or far fewer (rho = 9 > 2).
    assert max_certifiable_tokens(0.9, beta=0.05, vocab_size=2, tau=1e-6) == 6
    assert max_certifiable_tokens(0.9, beta=0.05, kernel="mask", tau=1e-6) == 0
    assert max_certifiable_tokens(0.99, beta=0.9, vocab_size=2, tau=1e-6) == 12
    assert max_certifiable_tokens(0.99, beta=0.9, kernel="mask", tau=1e-6) == 43
    # Just above rho = 2 the mask kernel already wins at some (d, p_lower).
    beta = 2.02 / 3.02  # V = 2, rho = 2.02
    p = np.linspace(0.0, 1.0, 401)
    gaps = [
        np.max(
            token_lower_bound(p, d=d, beta=beta, kernel="mask")
            - token_lower_bound(p, d=d, beta=beta, vocab_size=2)
        )
        for d in range(1, 6)
    ]
    assert max(gaps) > 1e-4


@settings(max_examples=200, deadline=None)
@given(x=st.one_of(st.floats(0.0, 1.0), st.floats(0.0, 1e-12), st.floats(0.4, 0.6)))
def test_one_minus_rounds_in_the_conservative_direction(x):
    exact = 1 - Fraction(x)
    down = float(one_minus_down(np.array([x]))[0])
    up = float(one_minus_up(np.array([x]))[0])
    assert Fraction(down) <= exact < Fraction(np.nextafter(down, np.inf))
    assert Fraction(np.nextafter(up, -np.inf)) < exact <= Fraction(up)


# -------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"p_lower": 0.9, "d": 1, "beta": 0.0, "vocab_size": 5}, "beta = 0.0"),
        ({"p_lower": 0.9, "d": 1, "beta": 1.0, "vocab_size": 5}, "0 < beta < 1"),
        ({"p_lower": 0.9, "d": 1, "beta": float("nan"), "vocab_size": 5}, "beta = nan"),
        ({"p_lower": 0.9, "d": 1, "beta": 0.3, "vocab_size": 1}, "vocab_size >= 2"),
        ({"p_lower": 0.9, "d": 1, "beta": 0.3, "vocab_size": None}, "vocab_size = None"),
        ({"p_lower": 0.9, "d": 1, "beta": 0.3, "vocab_size": 2.5}, "vocab_size = 2.5"),
        ({"p_lower": 0.9, "d": -1, "beta": 0.3, "vocab_size": 5}, "d >= 0"),
        ({"p_lower": 0.9, "d": 1.5, "beta": 0.3, "vocab_size": 5}, "d = 1.5"),
        ({"p_lower": 1.5, "d": 1, "beta": 0.3, "vocab_size": 5}, "0 <= p_lower <= 1"),
        ({"p_lower": -0.1, "d": 1, "beta": 0.3, "vocab_size": 5}, "p_lower = -0.1"),
        ({"p_lower": float("nan"), "d": 1, "beta": 0.3, "vocab_size": 5}, "NaN"),
        ({"p_lower": 0.9, "d": 1, "beta": 0.3, "vocab_size": 5, "kernel": "gauss"}, "kernel"),
    ],
)
def test_bad_input_is_rejected_with_value_and_range(kwargs, fragment):
    with pytest.raises(InvalidParameterError, match="valid range") as err:
        token_lower_bound(**kwargs)
    assert fragment in str(err.value)


def test_bad_tau_and_limits():
    for tau in [0.0, 1.0, -1.0, float("nan")]:
        with pytest.raises(InvalidParameterError, match="0 < tau < 1"):
            max_certifiable_tokens(0.9, beta=0.3, vocab_size=5, tau=tau)
    with pytest.raises(InvalidParameterError, match="n >= 1"):
        max_certifiable_tokens_for_samples(0, alpha=0.01, beta=0.3, vocab_size=5)
    with pytest.raises(InvalidParameterError, match="alpha"):
        max_certifiable_tokens_for_samples(10, alpha=1.0, beta=0.3, vocab_size=5)


def test_invalid_parameter_error_is_a_value_error():
    with pytest.raises(ValueError):
        token_lower_bound(0.9, d=1, beta=2.0, vocab_size=5)

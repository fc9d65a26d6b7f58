"""Any-token attacker (``attacker="any"``): exact enumeration oracles, dominance, bad input."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.special import ndtr

from smoothcert.certificates import (
    TokenField,
    hybrid_lower_bound,
    hybrid_radius_curve,
    max_certifiable_tokens,
    token_lower_bound,
)
from smoothcert.certificates._levels import (
    Group,
    discrete_lower,
    group_levels,
    outside_dominates,
    outside_levels,
    product,
)
from smoothcert.errors import InvalidParameterError
from token_enumeration import any_token_attacks, enumerate_tokens, fractional_fill, hybrid_oracle

PS = (0.3, 0.7, 0.9, 0.99)


def worst_oracle(vocab, beta, clean, d, p_lower, mu=0.0):
    """Smallest exact NP bound over every attack with at most ``d`` edits (any ids)."""
    best = 1.0
    for adv in any_token_attacks(vocab, clean, d):
        pc, qa = enumerate_tokens(beta, vocab, clean, adv)
        if mu == 0.0:
            val = float(fractional_fill(pc, qa, p_lower))
        else:
            val = hybrid_oracle(np.array(pc, dtype=float), np.array(qa, dtype=float), p_lower, mu)
        best = min(best, val)
    return best


def test_audited_number():
    kw = {"d": 1, "beta": 0.3, "vocab_size": 5}
    assert float(token_lower_bound(0.9, **kw)) == pytest.approx(0.275, abs=1e-9)
    assert float(token_lower_bound(0.9, attacker="any", **kw)) == pytest.approx(0.22, abs=1e-9)
    assert float(token_lower_bound(0.9, attacker="any", **kw)) <= 0.22


# ------------------------------------------------------------ enumeration oracle
@pytest.mark.parametrize("vocab", [2, 3, 4])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_bound_equals_enumeration_over_every_attack(vocab, d):
    """Clean tokens in the alphabet; every mix of alphabet and out-of-alphabet writes.

    The betas cover both regimes: below ``V / (V + 1)`` (all-out-of-alphabet proven
    worst) and above it (every split evaluated).
    """
    clean = [0] * d
    betas = (0.2, 0.5, (vocab + 0.5) / (vocab + 1.5), 0.95)
    for beta in betas:
        got = token_lower_bound(np.array(PS), d=d, beta=beta, vocab_size=vocab, attacker="any")
        for p, g in zip(PS, got, strict=True):
            exact = worst_oracle(vocab, beta, clean, d, p)
            assert g <= exact + 1e-12, (beta, p)
            assert g == pytest.approx(exact, abs=1e-9), (beta, p)


@pytest.mark.parametrize(
    ("vocab", "clean", "d"),
    [
        (2, [5], 1),
        (3, [9, 0], 1),
        (3, [9, 0], 2),
        (2, [9, 8, 0], 2),
        (3, [9, 0, 1], 3),
        (4, [9, 9], 2),
        (2, [9, 0, 0], 3),
    ],
)
@pytest.mark.parametrize("beta", [0.2, 0.45, 0.6])
def test_clean_tokens_outside_the_alphabet(vocab, clean, d, beta):
    """Clean out-of-alphabet tokens: the attacker picks where to edit and what to write."""
    if not outside_dominates(beta, vocab):
        pytest.skip("clean out-of-alphabet tokens are certified for beta <= V / (V + 1)")
    outside = sum(t >= vocab for t in clean)
    got = token_lower_bound(
        np.array(PS), d=d, beta=beta, vocab_size=vocab, attacker="any", clean_outside=outside
    )
    for p, g in zip(PS, got, strict=True):
        exact = worst_oracle(vocab, beta, clean, d, p)
        assert g <= exact + 1e-12, p
        assert g == pytest.approx(exact, abs=1e-9), p


def test_linprog_agrees_with_the_fill():
    """The NP bound as a linear program over every test function (scipy's HiGHS)."""
    vocab, beta, p = 3, 0.4, 0.8
    pc, qa = enumerate_tokens(beta, vocab, [0, 0], [0, 7])
    pc, qa = np.array(pc, dtype=float), np.array(qa, dtype=float)
    res = linprog(qa, A_ub=-pc[None, :], b_ub=[-p], bounds=[(0, 1)] * pc.shape[0])
    got = float(token_lower_bound(p, d=1, beta=beta, vocab_size=vocab, attacker="any"))
    assert got <= res.fun + 1e-12
    assert got == pytest.approx(res.fun, abs=1e-8)


# ------------------------------------------------------------ dominance (the proof's claim)
def _split_bounds(beta, vocab, d, p):
    """Bound of every split: j out-of-alphabet writes, d - j alphabet writes."""
    group = Group("uniform", beta, vocab, None)
    out = []
    for j in range(d + 1):
        lev = outside_levels(beta, vocab, j)
        if j < d:
            alpha_lev = group_levels(group, d - j)
            lev = alpha_lev if j == 0 else product(alpha_lev, lev)
        out.append(discrete_lower(lev, np.array(p))[0])
    return np.array(out)


@pytest.mark.parametrize("vocab", [2, 3, 5, 50])
@pytest.mark.parametrize("d", [1, 2, 4, 7])
def test_all_outside_writes_are_worst_when_beta_at_most_v_over_v_plus_1(vocab, d):
    ps = np.linspace(0.01, 0.999, 60)
    edge = vocab / (vocab + 1)
    for beta in (0.05, 0.3, 0.5, 0.7, edge * 0.999, edge):
        if not (0 < beta < 1 and outside_dominates(beta, vocab)):
            continue
        splits = _split_bounds(beta, vocab, d, ps)
        assert np.all(splits[-1] <= splits.min(axis=0) + 1e-12), beta
        got = token_lower_bound(ps, d=d, beta=beta, vocab_size=vocab, attacker="any")
        np.testing.assert_allclose(got, splits[-1], atol=1e-12)


def test_a_mixed_split_can_be_strictly_worst_above_v_over_v_plus_1():
    """Why every split is evaluated there: neither j = d nor j = 0 is always worst."""
    found_inner = found_alphabet = False
    for vocab, beta, d in itertools.product((2, 3), (0.8, 0.9, 0.97), (2, 3, 4)):
        if outside_dominates(beta, vocab):
            continue
        ps = np.linspace(0.05, 0.999, 40)
        splits = _split_bounds(beta, vocab, d, ps)
        arg = splits.argmin(axis=0)
        worst = splits.min(axis=0)
        found_inner |= bool(
            np.any((arg > 0) & (arg < d) & (worst < splits[-1] - 1e-6) & (worst < splits[0] - 1e-6))
        )
        found_alphabet |= bool(np.any(splits[0] < splits[-1] - 1e-6))
        got = token_lower_bound(ps, d=d, beta=beta, vocab_size=vocab, attacker="any")
        np.testing.assert_allclose(got, worst, atol=1e-12)
    assert found_alphabet
    assert found_inner


@settings(max_examples=60, deadline=None)
@given(
    p=st.floats(0.0, 1.0),
    d=st.integers(0, 12),
    vocab=st.integers(2, 40),
    beta=st.floats(0.01, 0.99),
)
def test_any_never_above_alphabet(p, d, vocab, beta):
    kw = {"d": d, "beta": beta, "vocab_size": vocab}
    any_ = float(token_lower_bound(p, attacker="any", **kw))
    assert any_ <= float(token_lower_bound(p, **kw)) + 1e-15
    assert 0.0 <= any_ <= 1.0


@pytest.mark.parametrize("p", [0.0, 0.4, 0.9, 1.0])
def test_d0_and_mask_unchanged(p):
    kw = {"beta": 0.3, "vocab_size": 7}
    assert token_lower_bound(p, d=0, attacker="any", **kw) == token_lower_bound(p, d=0, **kw)
    for d in (0, 1, 3):
        mask = {"d": d, "beta": 0.8, "kernel": "mask"}
        assert token_lower_bound(p, attacker="any", **mask) == token_lower_bound(p, **mask)


def test_p_lower_one_gives_beta_to_the_d():
    got = float(token_lower_bound(1.0, d=3, beta=0.4, vocab_size=9, attacker="any"))
    assert got == pytest.approx(0.4**3, rel=1e-9)
    assert got <= 0.4**3


def test_large_d_is_finite_and_fast():
    got = token_lower_bound([0.9, 1 - 1e-9], d=2000, beta=0.3, vocab_size=30522, attacker="any")
    assert np.all(np.isfinite(got)) and np.all(got >= 0)
    big = token_lower_bound(0.999, d=10**5, beta=0.3, vocab_size=30522, attacker="any")
    assert big == 0.0


def test_max_certifiable_tokens_matches_the_bound():
    kw = {"beta": 0.9, "vocab_size": 1000, "tau": 0.5}
    for p in (0.9, 0.99, 0.9999):
        d = int(max_certifiable_tokens(p, attacker="any", **kw))
        lb = {"beta": 0.9, "vocab_size": 1000, "attacker": "any"}
        assert token_lower_bound(p, d=d, **lb) >= 0.5 or d == 0
        assert token_lower_bound(p, d=d + 1, **lb) < 0.5
        assert d <= int(max_certifiable_tokens(p, **kw))


# ------------------------------------------------------------ fields
def test_fields_against_brute_force():
    """Two uniform fields (per-field alphabets) and a mask field, any-token attacker."""
    fields = [TokenField(0.3, 2, positions=1), TokenField(0.4, 3, positions=1)]
    kernels = [(0.3, 2), (0.4, 3)]
    for d in (1, 2):
        got = token_lower_bound(np.array(PS), d=d, fields=fields, attacker="any")
        for p, g in zip(PS, got, strict=True):
            exact = worst_oracle(kernels, None, [0, 0], d, p)
            assert g <= exact + 1e-12
            assert g == pytest.approx(exact, abs=1e-9)
    mask_only = [TokenField(0.6, kernel="mask", positions=2)]
    assert token_lower_bound(0.9, d=2, fields=mask_only, attacker="any") == token_lower_bound(
        0.9, d=2, fields=mask_only
    )


# ------------------------------------------------------------ hybrid, r > 0
@pytest.mark.parametrize(
    ("vocab", "beta", "clean", "d"),
    [(3, 0.4, [0, 0], 2), (2, 0.9, [0, 0], 2), (4, 0.3, [9, 0], 2), (2, 0.5, [0], 1)],
)
@pytest.mark.parametrize("mu", [0.05, 0.6, 2.0])
def test_hybrid_against_per_outcome_oracle(vocab, beta, clean, d, mu):
    outside = sum(t >= vocab for t in clean)
    for p in (0.5, 0.9, 0.999):
        got = float(
            hybrid_lower_bound(
                p,
                d=d,
                r=mu * 0.5,
                sigma=0.5,
                beta=beta,
                vocab_size=vocab,
                attacker="any",
                clean_outside=outside,
            )
        )
        exact = worst_oracle(vocab, beta, clean, d, p, mu=mu)
        assert got <= exact + 1e-10
        assert got == pytest.approx(exact, abs=1e-7)


def test_hybrid_r0_and_d0_reductions():
    kw = {"sigma": 0.5, "beta": 0.3, "vocab_size": 6, "attacker": "any"}
    for d in (0, 1, 3):
        assert float(hybrid_lower_bound(0.9, d=d, r=0.0, **kw)) == pytest.approx(
            float(token_lower_bound(0.9, d=d, beta=0.3, vocab_size=6, attacker="any")), abs=1e-12
        )
    gauss = ndtr(float(np.sqrt(2) * 0) + 1.2815515655446004 - 0.4 / 0.5)
    assert float(hybrid_lower_bound(0.9, d=0, r=0.4, **kw)) == pytest.approx(gauss, abs=1e-9)


def test_monte_carlo_hybrid_any():
    """Sample both laws from the kernel definition (an out-of-alphabet write, image shift)."""
    from smoothcert.certificates._levels import any_levels
    from smoothcert.certificates._mixture import solve_threshold

    rng = np.random.default_rng(2024)
    vocab, beta, d, sigma, r, dim, p, n = 3, 0.4, 2, 0.5, 0.3, 3, 0.8, 300_000
    _, _, s_star = solve_threshold(
        any_levels(beta, vocab, d, 0), np.array([p]), np.array([r / sigma])
    )
    delta = rng.normal(size=dim)
    delta *= r / np.linalg.norm(delta)

    def sample(token):
        keep = rng.random((n, d)) >= beta
        return np.where(
            keep,
            token,
            rng.integers(0, vocab, (n, d))
            if token >= vocab
            else (token + 1 + rng.integers(0, vocab - 1, (n, d))) % vocab,
        )

    def log_ratio(z, x):
        # adversarial (token 9 at every position) / clean (token 0); -inf / +inf atoms
        per = np.where(
            z == 9,
            np.inf,
            np.where(z == 0, math.log(beta / vocab / (1 - beta)), math.log((vocab - 1) / vocab)),
        )
        return per.sum(axis=1) + (x @ delta - 0.5 * delta @ delta) / sigma**2

    clean = log_ratio(sample(0), rng.normal(0, sigma, (n, dim)))
    adv = log_ratio(sample(9), delta + rng.normal(0, sigma, (n, dim)))
    lower = float(
        hybrid_lower_bound(p, d=d, r=r, sigma=sigma, beta=beta, vocab_size=vocab, attacker="any")
    )
    assert abs(np.mean(clean <= s_star[0]) - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert abs(np.mean(adv <= s_star[0]) - lower) < 5 * math.sqrt(lower * (1 - lower) / n)


@pytest.mark.parametrize(("vocab", "beta", "tau"), [(3, 0.4, 0.05), (2, 0.9, 0.01), (50, 0.5, 0.3)])
def test_curve_certified_at_r_and_not_beyond(vocab, beta, tau):
    kw = {"sigma": 0.5, "beta": beta, "vocab_size": vocab, "attacker": "any"}
    for p in (0.9, 0.999):
        curve = hybrid_radius_curve(p, d_max=4, tau=tau, **kw)
        assert np.all(np.diff(curve) <= 0)
        alpha_curve = hybrid_radius_curve(
            p, d_max=4, tau=tau, sigma=0.5, beta=beta, vocab_size=vocab
        )
        assert np.all(curve <= alpha_curve)
        for d, r in enumerate(curve):
            if r > 0:
                assert hybrid_lower_bound(p, d=d, r=r, **kw) >= tau
                assert hybrid_lower_bound(p, d=d, r=r * (1 + 1e-4), **kw) < tau


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"attacker": "everyone"}, "attacker = 'everyone'"),
        ({"clean_outside": 1}, "clean_outside = 1 is invalid with attacker = 'alphabet'"),
        ({"attacker": "any", "clean_outside": -1}, "clean_outside = -1"),
        ({"attacker": "any", "clean_outside": 1, "beta": 0.9, "vocab_size": 2}, "V / (V + 1)"),
    ],
)
def test_bad_input(kw, fragment):
    base = {"d": 1, "beta": 0.3, "vocab_size": 5}
    for fn in (token_lower_bound, hybrid_lower_bound, hybrid_radius_curve):
        args = {**base, **kw}
        if fn is hybrid_lower_bound:
            args.update(r=0.1, sigma=0.5)
        if fn is hybrid_radius_curve:
            args.pop("d")
            args.update(d_max=1, sigma=0.5)
        with pytest.raises(
            InvalidParameterError,
            match=fragment.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+"),
        ):
            fn(0.9, **args)


def test_fields_reject_what_they_cannot_certify():
    fields = [TokenField(0.3, 5), TokenField(0.9, 2)]
    with pytest.raises(InvalidParameterError, match="with fields"):
        token_lower_bound(0.9, d=1, fields=fields, attacker="any")
    with pytest.raises(InvalidParameterError, match="clean_outside = 2 is invalid here"):
        token_lower_bound(0.9, d=1, fields=fields[:1], attacker="any", clean_outside=2)


def test_single_field_with_positions_caps_the_edits_in_both_regimes():
    for beta, vocab in ((0.3, 5), (0.9, 2)):  # proven regime, and every split evaluated
        field = [TokenField(beta, vocab, positions=2)]
        ps = np.array(PS)
        plain = token_lower_bound(ps, d=2, beta=beta, vocab_size=vocab, attacker="any")
        np.testing.assert_array_equal(
            token_lower_bound(ps, d=5, fields=field, attacker="any"), plain
        )
        for p, g in zip(PS, plain, strict=True):
            assert g == pytest.approx(worst_oracle(vocab, beta, [0, 0], 2, p), abs=1e-9)

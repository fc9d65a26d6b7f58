"""Large numbers of edited tokens: the Chernoff shortcut to an exact 0 (issue 6).

The level recursion costs O(d^2); ``token_lower_bound(p, d=10**5)`` used to run for about
an hour although the bound is astronomically small. Where a Chernoff bound proves
``L(d) <= 1e-300`` the certificates now return exactly 0 (conservative) without levels.
These tests check (a) that bound against an independent trinomial oracle, i.e. the
shortcut only fires where the exact answer is negligible, (b) the shortcut against the
full computation at moderate d, and (c) that d = 1e5 now returns 0 (it would hang before).
"""

import math

import numpy as np
import pytest
from scipy.special import gammaln, logsumexp

from smoothcert.certificates import (
    TokenField,
    hybrid_lower_bound,
    max_certifiable_tokens,
    token_lower_bound,
)
from smoothcert.certificates._levels import Group, attack_levels, discrete_lower, log_bound_upper
from smoothcert.certificates.tokens import NEGLIGIBLE, negligible_entries


def oracle_log_lower(p, d, beta, vocab):
    """log of the discrete Neyman-Pearson bound L(d) for the uniform kernel, from scratch.

    The clean law of (n_plus, n_minus) = (#z = u, #z = u') over d attacked positions is
    trinomial with probabilities (1 - beta, a, beta - a); the ratio is rho^(n_plus -
    n_minus) and the adversarial law swaps n_plus and n_minus. Fill clean mass p from the
    smallest ratio up, the boundary level fractionally.
    """
    a = beta / (vocab - 1)
    logs = [math.log1p(-beta), math.log(a), math.log(beta - a) if vocab > 2 else -math.inf]
    lc, la, kk = [], [], []
    for n_plus in range(d + 1):
        for n_minus in range(d - n_plus + 1):
            n_zero = d - n_plus - n_minus
            if vocab == 2 and n_zero:
                continue
            coef = gammaln(d + 1) - gammaln(n_plus + 1) - gammaln(n_minus + 1) - gammaln(n_zero + 1)
            zero_term = n_zero * logs[2] if n_zero else 0.0
            lc.append(coef + n_plus * logs[0] + n_minus * logs[1] + zero_term)
            la.append(coef + n_plus * logs[1] + n_minus * logs[0] + zero_term)
            kk.append(n_plus - n_minus)
    lc, la, kk = np.array(lc), np.array(la), np.array(kk)
    log_rho = math.log(a) - math.log1p(-beta)
    levels = sorted(set(kk.tolist()), key=lambda k: k * log_rho)
    filled, log_adv_parts = 0.0, []
    for k in levels:
        sel = kk == k
        c = math.exp(logsumexp(lc[sel]))
        q = logsumexp(la[sel])
        if filled + c >= p:
            frac = (p - filled) / c
            if frac > 0:
                log_adv_parts.append(q + math.log(frac))
            break
        filled += c
        log_adv_parts.append(q)
    return logsumexp(log_adv_parts) if log_adv_parts else -math.inf


KERNELS = [(0.3, 5), (0.05, 30522), (0.6, 3), (0.9, 2), (0.2, 2)]


@pytest.mark.parametrize(("beta", "vocab"), KERNELS)
@pytest.mark.parametrize("d", [1, 3, 10, 40, 120])
@pytest.mark.parametrize("one_minus_p", [0.5, 1e-3, 1e-12])
def test_chernoff_bound_is_above_the_exact_bound(beta, vocab, d, one_minus_p):
    # The shortcut is sound only if log_bound_upper >= log L(d) for every p <= 1 - eps.
    p = 1.0 - one_minus_p
    exact = oracle_log_lower(p, d, beta, vocab)
    bound = log_bound_upper([Group("uniform", beta, vocab, None)], d, math.log(one_minus_p))
    assert bound >= exact - 1e-9 * (1 + abs(exact))


@pytest.mark.parametrize("d", [1, 5, 30])
def test_chernoff_bound_is_above_the_exact_bound_for_mask_and_fields(d):
    # mask: L(d) = max(0, p - 1 + beta^d) in closed form.
    for beta in [0.2, 0.7, 0.95]:
        for eps in [0.5, 1e-3, 1e-12]:
            exact = max(0.0, (1 - eps) - 1 + beta**d)
            bound = log_bound_upper([Group("mask", beta, 0, None)], d, math.log(eps))
            assert exact == 0.0 or bound >= math.log(exact) - 1e-9
    # Several fields: the library's own minimum over allocations (tested elsewhere
    # against enumeration) must lie below the bound.
    groups = [Group("uniform", 0.3, 5, 4), Group("uniform", 0.1, 50, None)]
    fields = [TokenField(0.3, 5, positions=4), TokenField(0.1, 50)]
    for eps in [0.5, 1e-3, 1e-12]:
        full = float(token_lower_bound(1 - eps, d=d, fields=fields))
        bound = log_bound_upper(groups, d, math.log(eps))
        assert full == 0.0 or bound >= math.log(full) - 1e-9


def full_computation(p, d, **kernel):
    """token_lower_bound without the shortcut (levels for every entry)."""
    groups = [Group(kernel.get("kernel", "uniform"), kernel["beta"], kernel["vocab_size"], None)]
    flat = np.atleast_1d(np.asarray(p, dtype=np.float64))
    out = np.ones(flat.shape[0])
    for _, lev in attack_levels(groups, d):
        out = np.minimum(out, discrete_lower(lev, flat)[0])
    return out


@pytest.mark.parametrize(("beta", "vocab", "d"), [(0.3, 5, 800), (0.05, 30522, 200), (0.9, 2, 600)])
def test_shortcut_matches_full_computation_where_it_fires(beta, vocab, d):
    p = np.array([0.5, 0.999, 1 - 1e-12, np.nextafter(1.0, 0.0)])
    groups = [Group("uniform", beta, vocab, None)]
    assert negligible_entries(groups, d, p).all()  # the shortcut fires here ...
    full = full_computation(p, d, beta=beta, vocab_size=vocab)
    assert np.all(full <= NEGLIGIBLE)  # ... and the full answer is negligible too
    assert np.all(token_lower_bound(p, d=d, beta=beta, vocab_size=vocab) == 0.0)


@pytest.mark.parametrize(("beta", "vocab", "d"), [(0.3, 5, 50), (0.05, 30522, 20), (0.5, 2, 300)])
def test_no_shortcut_where_the_bound_matters(beta, vocab, d):
    # Moderate d (and V = 2, beta = 1/2, where rho = 1 and L = p at every d): the
    # result is exactly the full computation, and it is not negligible.
    p = np.array([0.9, 0.999, 1 - 1e-12, 1.0])
    got = token_lower_bound(p, d=d, beta=beta, vocab_size=vocab)
    np.testing.assert_array_equal(got, full_computation(p, d, beta=beta, vocab_size=vocab))
    assert got[-2] > 1e-100


def test_p_lower_one_is_never_shortcut():
    groups = [Group("uniform", 0.3, 5, None)]
    assert not negligible_entries(groups, 10**6, np.array([1.0])).any()
    assert negligible_entries(groups, 10**6, np.array([0.2, 1.0])).tolist() == [True, False]


@pytest.mark.parametrize(("beta", "vocab"), [(0.3, 5), (0.05, 30522), (0.9, 2)])
def test_hundred_thousand_tokens_gives_zero(beta, vocab):
    # Used to take about an hour (O(d^2) recursion); the exact value is below 1e-300.
    d = 10**5
    p = [0.5, 0.99, 1 - 1e-15]
    np.testing.assert_array_equal(token_lower_bound(p, d=d, beta=beta, vocab_size=vocab), 0.0)
    assert hybrid_lower_bound(0.999, d=d, r=0.0, sigma=0.5, beta=beta, vocab_size=vocab) == 0.0
    assert hybrid_lower_bound(0.999, d=d, r=0.3, sigma=0.5, beta=beta, vocab_size=vocab) == 0.0
    # The mask kernel needed no shortcut (two levels), and agrees: p - 1 + beta^d < 0.
    assert token_lower_bound(0.99, d=d, beta=beta, kernel="mask") == 0.0


def test_hundred_thousand_tokens_over_fields():
    fields = [TokenField(0.3, 5, positions=10**6), TokenField(0.2, 100, positions=3)]
    assert token_lower_bound(0.99, d=10**5, fields=fields) == 0.0


def test_max_certifiable_tokens_at_p_lower_one_returns_d_limit_without_scanning():
    # L(d) = 1 at p_lower = 1 for the uniform kernel: every d is certified; the scan used
    # to walk all d_limit levels (O(d_limit^2), minutes at the default 10_000).
    out = max_certifiable_tokens([1.0, 0.999], beta=0.3, vocab_size=5, tau=0.5)
    assert out.tolist() == [10_000, int(max_certifiable_tokens(0.999, beta=0.3, vocab_size=5))]
    assert max_certifiable_tokens(1.0, beta=0.3, vocab_size=5, d_limit=10**6) == 10**6
    # mask: p_lower = 1 certifies only while beta^d >= tau (no shortcut there).
    assert max_certifiable_tokens(1.0, beta=0.5, kernel="mask", tau=0.1) == 3

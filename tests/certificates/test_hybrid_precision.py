"""Extreme regimes against exact rationals and 40-digit arithmetic (mpmath) oracles.

p_lower near 1 - 1e-12, tau down to 1e-12, tiny worst-case probabilities, large ratios:
the float64 log-space results must be conservative (never above the exact value) and
tight (relative error far below the statistical error of any p_lower).
"""

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from smoothcert.certificates import hybrid_lower_bound, hybrid_radius_curve, token_lower_bound

mp = pytest.importorskip("mpmath")
mp.mp.dps = 40


def exact_levels(vocab, beta, d):
    """Exact clean/adversarial masses of each ratio rho^k (Fractions, closed form)."""
    a = beta / (vocab - 1)
    o_mass = beta - a
    levels = {}
    for i in range(d + 1):
        for j in range(d - i + 1):
            o = d - i - j
            if o > 0 and o_mass == 0:
                continue
            m = comb(d, i) * comb(d - i, j)
            pc = m * (1 - beta) ** i * a**j * o_mass**o
            qa = m * a**i * (1 - beta) ** j * o_mass**o
            ratio = qa / pc
            c, q = levels.get(ratio, (0, 0))
            levels[ratio] = (c + pc, q + qa)
    return sorted((r, c, q) for r, (c, q) in levels.items())


def exact_discrete(levels, p):
    left, total = Fraction(p), Fraction(0)
    for ratio, c, _ in levels:
        take = min(c, left)
        total += ratio * take
        left -= take
        if left <= 0:
            break
    return total


def mp_hybrid(levels, p, mu):
    """L(d, r) with 40 digits: solve F(s) = p (bracketing solver in s), return G(s)."""
    mu = mp.mpf(mu)
    g = [mp.log(mp.mpf(r.numerator) / r.denominator) for r, _, _ in levels]
    c = [mp.mpf(x.numerator) / x.denominator for _, x, _ in levels]
    q = [mp.mpf(x.numerator) / x.denominator for _, _, x in levels]
    target = mp.mpf(Fraction(p).numerator) / Fraction(p).denominator

    def clean_tail(s):  # 1 - F(s), accurate for p near 1
        return mp.fsum(ci * mp.ncdf(-((s - gi) / mu + mu / 2)) for ci, gi in zip(c, g, strict=True))

    def excess(s):  # log of the clean tail over its target: increasing -> decreasing
        return mp.log(clean_tail(s)) - mp.log(1 - target)

    lo, hi = min(g) - 40 * mu - 40, max(g) + 40 * mu + 40
    for _ in range(30):  # coarse bisection, then a superlinear bracketing solver
        mid = (lo + hi) / 2
        if excess(mid) > 0:
            lo = mid
        else:
            hi = mid
    s = mp.findroot(excess, (lo, hi), solver="anderson", tol=mp.mpf(10) ** -35)
    return mp.fsum(qi * mp.ncdf((s - gi) / mu - mu / 2) for qi, gi in zip(q, g, strict=True))


CASES = [
    (2, Fraction(95, 100), 26),
    (2, Fraction(3, 10), 40),
    (3, Fraction(1, 5), 20),
    (5, Fraction(9, 10), 12),
    (30522, Fraction(1, 2), 6),
]
P_EXTREME = [1e-9, 0.3, 0.9, 1 - 1e-6, 1 - 8.9e-10, 1 - 1e-12]


@pytest.mark.parametrize(("vocab", "beta", "d"), CASES)
def test_discrete_bound_against_exact_rationals(vocab, beta, d):
    levels = exact_levels(vocab, beta, d)
    got = token_lower_bound(P_EXTREME, d=d, beta=float(beta), vocab_size=vocab)
    for p, value in zip(P_EXTREME, got, strict=True):
        exact = float(exact_discrete(levels, p))
        assert value <= exact * (1 + 1e-14) + 1e-300  # sound
        assert value >= exact * (1 - 1e-8) - 1e-13  # tight


@pytest.mark.parametrize(("vocab", "beta", "d"), CASES[:4])
@pytest.mark.parametrize("mu", [0.02, 1.5])
def test_hybrid_bound_against_40_digit_oracle(vocab, beta, d, mu):
    levels = exact_levels(vocab, beta, d)
    p = np.array([0.3, 1 - 1e-6, 1 - 1e-12])
    got = hybrid_lower_bound(p, d=d, r=mu, sigma=1.0, beta=float(beta), vocab_size=vocab)
    for pi, value in zip(p, got, strict=True):
        exact = float(mp_hybrid(levels, float(pi), mu))
        assert value <= exact * (1 + 1e-12) + 1e-300
        assert value >= exact * (1 - 1e-7) - 1e-300


def test_radius_at_tiny_tau_against_40_digit_oracle():
    vocab, beta, d, tau = 3, Fraction(1, 5), 6, 1e-12
    p = 1 - 1e-12
    levels = exact_levels(vocab, beta, d)
    r = hybrid_radius_curve(p, d_max=d, sigma=1.0, beta=float(beta), vocab_size=vocab, tau=tau)[d]
    assert r > 0
    assert float(mp_hybrid(levels, p, r)) >= tau
    assert float(mp_hybrid(levels, p, r * (1 + 1e-7))) < tau

"""Heterogeneous fields: exact enumeration oracle over WHICH positions are attacked."""

import functools
import itertools
import re
import time
from fractions import Fraction

import numpy as np
import pytest

from smoothcert.certificates import TokenField, max_certifiable_tokens, token_lower_bound
from smoothcert.errors import InvalidParameterError
from token_enumeration import enumerate_pair, small_fields


def fill_oracle(pc, qa, p_lower):
    items = sorted((q / p, p) for p, q in zip(pc, qa, strict=True) if p > 0)
    left, total = Fraction(p_lower), Fraction(0)
    for ratio, p in items:
        if left <= 0:
            break
        take = min(p, left)
        total += ratio * take
        left -= take
    return float(total)


def worst_over_positions(positions, d, p_lower):
    """min over every set of at most d attacked positions (brute force)."""
    best = None
    n = len(positions)
    for size in range(0, min(d, n) + 1):
        for subset in itertools.combinations(range(n), size):
            attacked = [i in subset for i in range(n)]
            value = fill_oracle(*enumerate_pair(positions, attacked), Fraction(p_lower))
            best = value if best is None else min(best, value)
    return best


FIELDS_A, POSITIONS_A = small_fields()
P_GRID = [0.1, 0.45, 0.7, 0.9, 0.97, 0.999]


@functools.cache
def exact_a(d, p):
    return worst_over_positions(POSITIONS_A, d, p)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("d", [0, 1, 2, 3, 4, 6])
def test_fields_equal_enumeration_over_attacked_positions(d, order):
    # Every order of the fields: the minimum must run over all allocations.
    got = token_lower_bound(P_GRID, d=d, fields=[FIELDS_A[i] for i in order])
    for p, value in zip(P_GRID, got, strict=True):
        exact = exact_a(d, p)
        assert value <= exact + 1e-15
        assert value == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_unbounded_field_with_a_capped_one():
    fields = [TokenField(0.25, 5), TokenField(0.5, kernel="mask", positions=1)]
    for d in [1, 2, 3]:
        positions = [("uniform", Fraction(1, 4), 5)] * d + [("mask", Fraction(1, 2), 0)]
        got = token_lower_bound(P_GRID, d=d, fields=fields)
        for p, value in zip(P_GRID, got, strict=True):
            assert value == pytest.approx(
                worst_over_positions(positions, d, p), rel=1e-9, abs=1e-12
            )


def test_identical_fields_merge_into_one_alphabet():
    fields = [TokenField(0.3, 5, positions=2), TokenField(0.3, 5, positions=1)]
    p = np.array([0.5, 0.9, 0.99])
    for d in range(6):
        expected = token_lower_bound(p, d=min(d, 3), beta=0.3, vocab_size=5)
        np.testing.assert_allclose(token_lower_bound(p, d=d, fields=fields), expected, rtol=1e-12)


def test_single_field_equals_homogeneous_call():
    p = np.linspace(0, 1, 11)
    for d in range(4):
        np.testing.assert_allclose(
            token_lower_bound(p, d=d, fields=[TokenField(0.2, 7)]),
            token_lower_bound(p, d=d, beta=0.2, vocab_size=7),
            rtol=1e-12,
        )


def test_max_tokens_with_fields():
    fields = [TokenField(0.5, 4), TokenField(0.9, kernel="mask", positions=2)]
    p = np.array([0.8, 0.99])
    got = max_certifiable_tokens(p, fields=fields, tau=0.5)
    assert np.all(got < 25)
    for pi, g in zip(p, got, strict=True):
        values = [token_lower_bound(pi, d=d, fields=fields) for d in range(30)]
        assert g == max([d for d, v in enumerate(values) if v >= 0.5], default=0)


def test_max_tokens_over_unbounded_fields_raises_quickly():
    # Three distinct unbounded fields: the cost of d grows like d^5; the default d_limit
    # used to run for minutes. Now the scan stops at a fixed budget and says how far it got.
    # (p_lower = 1 needs no scan with uniform kernels: every d is certified, L(d) = 1.)
    fields = [TokenField(0.3, 5), TokenField(0.4, 7), TokenField(0.5, 9)]
    assert max_certifiable_tokens(1.0, fields=fields, tau=0.5) == 10_000
    p, tau = 1 - 1e-15, 1e-12  # still certified at d = 31
    start = time.perf_counter()
    with pytest.raises(InvalidParameterError, match="valid range") as err:
        max_certifiable_tokens(p, fields=fields, tau=tau)
    assert time.perf_counter() - start < 20.0  # a hang guard, not a benchmark
    message = str(err.value)
    assert "d_limit = 10000" in message and "positions" in message
    limit = int(re.search(r"d_limit <= (\d+)", message).group(1))
    assert 5 <= limit < 200
    # The suggested d_limit works and gives "at least d_limit".
    assert max_certifiable_tokens(p, fields=fields, tau=tau, d_limit=limit) == limit
    # Examples that stop early never hit the budget.
    assert max_certifiable_tokens(0.9, fields=fields, tau=0.5) == 0


def test_max_tokens_with_bounded_fields_stops_at_the_capacity():
    fields = [TokenField(0.3, 5, positions=3), TokenField(0.9, kernel="mask", positions=2)]
    p = np.array([0.9, 0.999999, 1.0])
    got = max_certifiable_tokens(p, fields=fields, tau=1e-3)  # default d_limit = 10000
    for pi, g in zip(p, got, strict=True):
        values = [token_lower_bound(pi, d=d, fields=fields) for d in range(7)]
        assert values[5] == values[6]  # 5 positions: more budget is the same attack
        best = max([d for d, v in enumerate(values) if v >= 1e-3], default=0)
        assert g == (10_000 if best == 6 else best)
    assert got[-1] == 10_000
    assert max_certifiable_tokens(1.0, fields=fields, tau=1e-3, d_limit=4) == 4


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"fields": [TokenField(0.3, 5)], "beta": 0.3}, "either"),
        ({"fields": [TokenField(0.3, 5)], "kernel": "mask"}, "kernel of each TokenField"),
        ({"fields": []}, "non-empty sequence of TokenField"),
        ({"fields": [(0.3, 5)]}, "TokenField"),
    ],
)
def test_bad_fields(kwargs, fragment):
    with pytest.raises(InvalidParameterError, match=fragment):
        token_lower_bound(0.9, d=1, **kwargs)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"beta": 1.2, "vocab_size": 5}, "beta = 1.2"),
        ({"beta": 0.2, "vocab_size": 1}, "vocab_size = 1"),
        ({"beta": 0.2}, "vocab_size = None"),
        ({"beta": 0.2, "vocab_size": 5, "kernel": "x"}, "kernel = 'x'"),
        ({"beta": 0.2, "vocab_size": 5, "positions": 0}, "positions >= 1"),
    ],
)
def test_token_field_validation(args, fragment):
    with pytest.raises(InvalidParameterError, match="valid range") as err:
        TokenField(**args)
    assert fragment in str(err.value)


def test_too_many_allocations_is_refused():
    fields = [TokenField(0.1 + 0.02 * i, 5) for i in range(20)]
    with pytest.raises(InvalidParameterError, match="allocations"):
        token_lower_bound(0.9, d=12, fields=fields)

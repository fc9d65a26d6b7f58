"""hybrid-fields decision against an exact enumeration of the product law (tiny fields).

The oracle is written from scratch here: it enumerates every noisy category vector of
the fields, for every choice of attacked fields (any subset of at most ``d``) and every
value the attacker writes, then solves the Neyman-Pearson problem directly: discrete
(sort by likelihood ratio, fill ``p_lower``, fractional boundary) at ``r = 0``, and with
the Gaussian part (a shift of ``mu = r / sigma`` along one direction turns the joint
log-likelihood ratio into ``log gamma(z) + N(-+mu^2/2, mu^2)``) by root finding with
scipy at ``r > 0``; ``r(d)`` by bisection. No code of smoothcert.certificates is used.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri

from smoothcert.decisions.fields import FieldsParams, certified_fields, decide_fields, fields_curve
from smoothcert.decisions.tokens import TokenFacts
from smoothcert.errors import InvalidParameterError
from smoothcert.records import Evidence, StageEvidence
from smoothcert.stats.binomial import clopper_pearson_lower

VOCAB = (2, 3)
BETAS = (0.2, 0.45)


def field_law(beta: float, vocab: int, value: int) -> np.ndarray:
    law = np.full(vocab, beta / (vocab - 1))
    law[value] = 1.0 - beta
    return law


def joint(laws: list[np.ndarray]) -> np.ndarray:
    out = np.array([1.0])
    for law in laws:
        out = np.outer(out, law).reshape(-1)
    return out


def attacks(d: int, vocab=VOCAB, clean=(0, 0)):
    """Every (attacked subset, written values) with at most d changed fields."""
    fields = range(len(vocab))
    for k in range(d + 1):
        for subset in itertools.combinations(fields, k):
            choices = [
                [v for v in range(vocab[f]) if v != clean[f]] if f in subset else [clean[f]]
                for f in fields
            ]
            for values in itertools.product(*choices):
                yield subset, values


def laws(betas, vocab, clean, attacked):
    p = joint([field_law(b, v, c) for b, v, c in zip(betas, vocab, clean, strict=True)])
    q = joint([field_law(b, v, a) for b, v, a in zip(betas, vocab, attacked, strict=True)])
    return p, q


def np_discrete(p_lower: float, p: np.ndarray, q: np.ndarray) -> float:
    order = np.argsort(q / p, kind="stable")
    filled = adv = 0.0
    for i in order:
        take = min(p[i], p_lower - filled)
        if take <= 0:
            break
        adv += q[i] * take / p[i]
        filled += take
    return adv


def np_gaussian(p_lower: float, p: np.ndarray, q: np.ndarray, mu: float) -> float:
    log_gamma = np.log(q / p)

    def clean_cdf(log_t: float) -> float:
        return float(np.sum(p * ndtr((log_t - log_gamma) / mu + mu / 2))) - p_lower

    log_t = brentq(clean_cdf, -60.0, 60.0, xtol=1e-14, rtol=1e-14)
    return float(np.sum(q * ndtr((log_t - log_gamma) / mu - mu / 2)))


def oracle_bound(p_lower: float, d: int, r: float, sigma: float, betas=BETAS, vocab=VOCAB):
    worst = 1.0
    for _, values in attacks(d, vocab):
        p, q = laws(betas, vocab, (0, 0), values)
        value = np_discrete(p_lower, p, q) if r == 0 else np_gaussian(p_lower, p, q, r / sigma)
        worst = min(worst, value)
    return worst


def oracle_radius(p_lower: float, d: int, sigma: float, **kw) -> float:
    if oracle_bound(p_lower, d, 0.0, sigma, **kw) <= 0.5:
        return 0.0
    lo, hi = 0.0, sigma * (float(ndtri(p_lower)) + 1e-9)
    for _ in range(60):
        mid = (lo + hi) / 2
        if oracle_bound(p_lower, d, mid, sigma, **kw) >= 0.5:
            lo = mid
        else:
            hi = mid
    return lo


def params(**kw) -> FieldsParams:
    base = dict(field_vocab_sizes=VOCAB, field_betas=BETAS, sigma=0.5, n0=10, n=1000, alpha=0.01)
    return FieldsParams(**{**base, **kw})


@pytest.mark.parametrize("p_lower", [0.8, 0.95, 0.99, 0.999])
def test_curve_matches_the_exact_enumeration_oracle(p_lower: float) -> None:
    curve, d_cert = fields_curve(p_lower, params(), d_max=2)
    for d in range(3):
        expected = oracle_radius(p_lower, d, 0.5)
        assert curve[d] <= expected + 1e-9  # sound: never above the exact value
        assert curve[d] == pytest.approx(expected, abs=2e-6)  # and tight
    discrete = [oracle_bound(p_lower, d, 0.0, 0.5) > 0.5 for d in range(3)]
    assert d_cert == (max(d for d in range(3) if all(discrete[: d + 1])) if discrete[0] else None)


def test_worst_case_is_over_which_fields_are_attacked() -> None:
    # Attacking field 1 (V = 3, beta = 0.45) alone is not the worst single change: the
    # oracle over one fixed field gives a larger radius than the minimum over fields, and
    # the decision follows the minimum (a mutant that attacks only the first or only the
    # last field fails this test).
    p_lower = 0.99

    def single(field: int) -> float:
        def bound(r: float) -> float:
            worst = 1.0
            for subset, values in attacks(1):
                if subset == (field,):
                    p, q = laws(BETAS, VOCAB, (0, 0), values)
                    worst = min(worst, np_gaussian(p_lower, p, q, r / 0.5))
            return worst

        return brentq(lambda r: bound(r) - 0.5, 1e-9, 0.5 * float(ndtri(p_lower)))

    r0, r1 = single(0), single(1)
    assert abs(r0 - r1) > 0.05
    curve, _ = fields_curve(p_lower, params(), d_max=1)
    assert curve[1] == pytest.approx(min(r0, r1), abs=2e-6)


def test_d0_is_cohens_radius() -> None:
    for p_lower in (0.6, 0.9, 0.999):
        curve, _ = fields_curve(p_lower, params(sigma=0.7), d_max=0)
        assert curve[0] == pytest.approx(0.7 * float(ndtri(p_lower)), rel=1e-9, abs=1e-12)
        assert curve[0] <= 0.7 * float(ndtri(p_lower))


def evidence(k: int, n: int = 1000, *, tv: float = 0.0, fields: int = 2, d_max: int = 2):
    return Evidence(
        (
            StageEvidence("selection", n=10, alpha=0.0, counts=(1, 9)),
            StageEvidence("estimation", n=n, alpha=0.01, counts=(n - k, k)),
        ),
        TokenFacts(
            num_classes=2, length=fields, num_eligible=fields, d_max=d_max, sampling_tv_bound=tv
        ),
    )


def test_decide_bounds_with_clopper_pearson_minus_tv_and_uses_the_curve() -> None:
    res = decide_fields(evidence(990, tv=1e-6), params())
    p = float(clopper_pearson_lower(990, 1000, alpha=0.01)) - 1e-6
    assert res.p_lower == pytest.approx(p, abs=1e-15)
    curve, d_cert = fields_curve(p, params(), d_max=2)
    assert res.radius_curve == tuple(curve.tolist())
    assert res.prediction == 1 and res.details.d_certified == d_cert
    assert res.radius == res.radius_curve[0] > 0


def test_abstains_below_one_half() -> None:
    res = decide_fields(evidence(480), params())
    assert res.abstained and res.prediction is None
    assert res.radius == 0.0 and set(res.radius_curve) == {0.0}


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"threat_d_max": 3}, "d_max = 3"),
        ({"field_betas": (0.2,)}, "1 field betas"),
        ({"field_betas": (0.2, 1.0)}, "field beta = 1.0"),
        ({"field_vocab_sizes": (1, 3)}, "field vocab size = 1"),
        ({"sigma": 0.0}, "sigma = 0.0"),
        ({"tau": 0.4}, "tau = 0.4"),
        ({"alpha": 0.0}, "alpha"),
    ],
)
def test_bad_parameters_are_rejected(kw: dict, needle: str) -> None:
    with pytest.raises(InvalidParameterError, match=needle.replace("(", r"\(")):
        params(**kw)


def test_evidence_for_another_number_of_fields_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="evidence for 3 fields"):
        decide_fields(evidence(990, fields=3), params())


def test_certified_fields_steps_with_p_lower() -> None:
    values = [certified_fields(p, params(), d_max=2) for p in (0.4, 0.7, 0.999999)]
    assert values[0] is None and values[2] == 2
    assert math.isfinite(fields_curve(0.999999, params(), d_max=2)[0][2])

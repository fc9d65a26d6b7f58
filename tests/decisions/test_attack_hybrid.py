"""The hybrid attack's pure decision: flag rule, un-flagging test, validation.

Oracle for the un-flagging test: EXACT enumeration of the binomial counts at P(target) = tau
(the worst case for a false success: the pair is still flagged, barely): the probability
that the attack is declared successful is <= alpha; a doubled-alpha mutant breaks it.
"""

from __future__ import annotations

import dataclasses

import pytest
from scipy.stats import binom

from smoothcert.decisions.attack_hybrid import (
    HybridAttackDetails,
    HybridAttackFacts,
    HybridAttackParams,
    decide_attack_hybrid,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.records import CertifyResult, Evidence, StageEvidence

N = 200


def params(**kw) -> HybridAttackParams:
    base = {
        "sigma": 0.5,
        "beta": 0.1,
        "alphabet": 7,
        "n0": 0,
        "n": N,
        "alpha": 0.001,
        "target": 1,
        "tau": 0.3,
        "radii": (0.0, 0.5),
        "attack_d_max": 1,
    }
    return HybridAttackParams(**{**base, **kw})


def evidence(clean: int, attacked: list[int], n: int = N) -> Evidence:
    stages = [StageEvidence("selection", n=n, alpha=0.0, counts=(n - clean, clean))]
    stages += [StageEvidence("attack", n=n, alpha=0.0, counts=(n - k, k)) for k in attacked]
    return Evidence(tuple(stages), HybridAttackFacts(num_classes=2, num_eligible=3), seed=0)


def test_points_are_d_major_without_the_clean_pair() -> None:
    assert params().points() == ((0, 0.5), (1, 0.0), (1, 0.5))
    assert params(radii=(0.25,), attack_d_max=0).points() == ((0, 0.25),)


@pytest.mark.parametrize(
    ("attacked", "unflagged", "radius"),
    [
        ([150, 150, 150], (False, False, False), 0.5),
        ([5, 150, 5], (True, False, True), 0.0),
        ([150, 5, 5], (False, True, True), 0.5),
        ([150, 55, 5], (False, False, True), 0.5),  # 55/200 = 0.275 < tau: not significant
    ],
)
def test_unflagged_only_when_the_upper_bound_is_below_tau(attacked, unflagged, radius) -> None:
    res = decide_attack_hybrid(evidence(180, attacked), params())
    assert res.prediction == 1 and not res.abstained and res.claim == "empirical"
    assert isinstance(res.details, HybridAttackDetails)
    assert res.details.unflagged == unflagged
    assert res.radius == radius
    assert res.details.flag_rate == 0.9
    assert [s.alpha for s in res.evidence.stages] == [0.0, 0.001, 0.001, 0.001]
    assert CertifyResult.from_json(res.to_json()) == res


def test_a_pair_not_flagged_at_the_clean_input_abstains() -> None:
    res = decide_attack_hybrid(evidence(50, [0, 0, 0]), params())  # 0.25 < tau
    assert res.abstained and res.prediction is None and res.radius == 0.0
    assert res.details.unflagged == (False, False, False)


def _false_success(alpha: float, tau: float = 0.3, n: int = 300) -> float:
    p = params(alpha=alpha, tau=tau, n=n, radii=(0.5,), attack_d_max=0)
    total = 0.0
    for k in range(n + 1):
        ev = evidence(n, [k], n=n)
        if decide_attack_hybrid(ev, p).details.unflagged[0]:
            total += float(binom.pmf(k, n, tau))
    return total


def test_false_successes_are_at_most_alpha_exactly() -> None:
    alpha = 0.05
    rate = _false_success(alpha)
    assert 0.0 < rate <= alpha
    assert _false_success(2 * alpha) > alpha  # the check can fail


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"target": None}, "target = None"),
        ({"radii": ()}, "radii = ()"),
        ({"radii": (0.5, 0.5)}, "strictly increasing"),
        ({"radii": (-0.1, 0.5)}, "radii = (-0.1, 0.5)"),
        ({"radii": (0.0,), "attack_d_max": 0}, "nothing to attack"),
        ({"attack_d_max": -1}, "attack_d_max = -1"),
        ({"steps": 0}, "steps = 0"),
        ({"step_size": 0.0}, "step_size = 0.0"),
        ({"noise_samples": 0}, "noise_samples = 0"),
        ({"candidates": 0}, "candidates = 0"),
        ({"beta": 1.5}, "beta = 1.5"),
    ],
)
def test_bad_parameters_name_the_value(change, needle) -> None:
    with pytest.raises(InvalidParameterError, match="valid") as err:
        params(**change)
    assert needle in str(err.value)


def test_evidence_that_does_not_fit_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="3 attack stages"):
        decide_attack_hybrid(evidence(180, [0, 0]), params())
    with pytest.raises(InvalidParameterError, match="n = 100"):
        decide_attack_hybrid(evidence(180, [0, 0, 0]), params(n=100))
    ev = dataclasses.replace(
        evidence(180, [0, 0, 0]), facts=HybridAttackFacts(num_classes=2, num_eligible=3)
    )
    with pytest.raises(InvalidParameterError, match="target = 2"):
        decide_attack_hybrid(ev, params(target=2))


def test_forward_samples_counts_every_pass() -> None:
    p = params(steps=5, noise_samples=4, candidates=3)
    # evaluations + (0, 0.5): PGD; (1, 0): 1 edit; (1, 0.5): 1 edit + PGD
    assert p.forward_samples() == N * 4 + 5 * 4 + 4 * 4 + (4 * 4 + 5 * 4)

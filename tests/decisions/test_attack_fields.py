"""The fields attack's pure decision: change test, radius, validation, hashing.

Oracle for the change test: EXACT enumeration of the binomial counts at a true tie
(P(c) = 1/2 at the attacked row, the worst case for a false change of a prediction that did
not change): the probability that a change is declared is <= alpha / 2 (PREDICT's
two-sided test, one side); a doubled-alpha mutant breaks it, so the check can fail.
"""

from __future__ import annotations

import dataclasses

import pytest
from scipy.stats import binom

from smoothcert.decisions.attack_fields import (
    FieldsAttackDetails,
    FieldsAttackFacts,
    FieldsAttackParams,
    decide_attack_fields,
)
from smoothcert.decisions.attack_hybrid import HybridAttackFacts
from smoothcert.errors import InvalidParameterError
from smoothcert.records import CertifyResult, Evidence, StageEvidence
from smoothcert.runner.config import RunConfig

N = 200
BASE = {
    "field_vocab_sizes": (2, 3),
    "field_betas": (0.2, 0.3),
    "sigma": 0.5,
    "radii": (0.0, 0.5),
    "attack_d_max": 1,
    "eval_n": N,
}


def params(**kw) -> FieldsAttackParams:
    return FieldsAttackParams(**{**BASE, **kw})


def evidence(clean: int, attacked: list[int], n: int = N, fields: int = 2) -> Evidence:
    """Counts of class 1: ``clean`` at the clean row, ``attacked`` at each point."""
    stages = [StageEvidence("selection", n=n, alpha=0.0, counts=(n - clean, clean))]
    stages += [StageEvidence("attack", n=n, alpha=0.0, counts=(n - k, k)) for k in attacked]
    return Evidence(tuple(stages), FieldsAttackFacts(num_classes=2, num_fields=fields), seed=0)


def test_points_default_to_every_field_d_major_without_the_clean_row() -> None:
    assert params().points() == ((0, 0.5), (1, 0.0), (1, 0.5))
    assert params(attack_d_max=None, radii=(0.0,)).points() == ((1, 0.0), (2, 0.0))


@pytest.mark.parametrize(
    ("attacked", "flipped", "radius"),
    [
        ([180, 180, 180], (False, False, False), 0.5),
        ([10, 180, 10], (True, False, True), 0.0),
        ([180, 10, 10], (False, True, True), 0.5),
        ([180, 95, 10], (False, False, True), 0.5),  # 105 vs 95: not significant
    ],
)
def test_change_declared_only_when_predict_is_significant(attacked, flipped, radius) -> None:
    res = decide_attack_fields(evidence(180, attacked), params())
    assert res.prediction == 1 and not res.abstained and res.claim == "empirical"
    assert isinstance(res.details, FieldsAttackDetails)
    assert res.details.flipped == flipped
    assert res.radius == radius
    assert res.details.d_values == (0, 1, 1) and res.details.r_values == (0.5, 0.0, 0.5)
    assert [s.alpha for s in res.evidence.stages] == [0.0, 0.001, 0.001, 0.001]
    assert CertifyResult.from_json(res.to_json()) == res


def test_prediction_is_the_clean_majority_and_a_change_to_it_is_no_success() -> None:
    res = decide_attack_fields(evidence(20, [10, 180, 10]), params())
    assert res.prediction == 0
    assert res.details.flipped == (False, True, False)


def _false_change(alpha: float, n: int = 300) -> float:
    p = params(alpha=alpha, eval_n=n, radii=(0.5,), attack_d_max=0)
    total = 0.0
    for k in range(n + 1):
        if decide_attack_fields(evidence(n, [k], n=n), p).details.flipped[0]:
            total += float(binom.pmf(k, n, 0.5))
    return total


def test_false_changes_at_a_true_tie_are_at_most_half_alpha_exactly() -> None:
    alpha = 0.05
    rate = _false_change(alpha)
    assert 0.0 < rate <= alpha / 2
    assert _false_change(2 * alpha) > alpha / 2  # the check can fail


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"radii": ()}, "radii = ()"),
        ({"radii": (0.5, 0.5)}, "strictly increasing"),
        ({"radii": (-0.1, 0.5)}, "radii = (-0.1, 0.5)"),
        ({"radii": (0.0,), "attack_d_max": 0}, "nothing to attack"),
        ({"attack_d_max": 3}, "attack_d_max = 3"),
        ({"steps": 0}, "steps = 0"),
        ({"step_size": 0.0}, "step_size = 0.0"),
        ({"noise_samples": 0}, "noise_samples = 0"),
        ({"rounds": 0}, "rounds = 0"),
        ({"eval_n": 0}, "eval_n = 0"),
        ({"alpha": 1.0}, "alpha = 1.0"),
        ({"field_betas": (0.2, 1.0)}, "field beta = 1.0"),
        ({"field_vocab_sizes": (2, 1)}, "field vocab size = 1"),
    ],
)
def test_bad_parameters_name_the_value(change, needle) -> None:
    with pytest.raises(InvalidParameterError, match="valid") as err:
        params(**change)
    assert needle in str(err.value)


def test_evidence_that_does_not_fit_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="3 attack stages"):
        decide_attack_fields(evidence(180, [0, 0]), params())
    with pytest.raises(InvalidParameterError, match="eval_n = 100"):
        decide_attack_fields(evidence(180, [0, 0, 0]), params(eval_n=100))
    with pytest.raises(InvalidParameterError, match="evidence for 3 fields"):
        decide_attack_fields(evidence(180, [0, 0, 0], fields=3), params())
    other = HybridAttackFacts(num_classes=2, num_eligible=2)
    ev = dataclasses.replace(evidence(180, [0, 0, 0]), facts=other)
    with pytest.raises(InvalidParameterError, match="attack_fields_facts"):
        decide_attack_fields(ev, params())


def test_forward_samples_bound_every_pass() -> None:
    p = params(steps=5, noise_samples=4, rounds=2)
    changes = (2 - 1) + (3 - 1) + 1  # every other level of each field, and no change
    # (0, 0.5): PGD; (1, 0): 1 greedy edit; (1, 0.5): 2 rounds of (1 edit + PGD)
    expected = N * 4 + 5 * 4 + changes * 4 + 2 * (changes * 4 + 5 * 4)
    assert p.forward_samples() == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("radii", (0.0, 0.25)),
        ("attack_d_max", 2),
        ("steps", 7),
        ("step_size", 0.1),
        ("noise_samples", 9),
        ("rounds", 3),
        ("eval_n", 201),
        ("alpha", 0.01),
        ("sigma", 0.25),
        ("field_betas", (0.2, 0.4)),
    ],
)
def test_every_parameter_changes_the_config_hash(name, value) -> None:
    one = RunConfig(method="attack-fields", params=BASE, model="tabular_mlp", dataset="fair")
    two = RunConfig(
        method="attack-fields", params={**BASE, name: value}, model="tabular_mlp", dataset="fair"
    )
    assert one.config_hash() != two.config_hash()

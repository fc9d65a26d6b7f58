"""The attack's pure decision (attack-l2): radius rule, flip test, validation.

Oracles: the radius rule against a hand enumeration of flip patterns; the flip test's
false-flip probability by EXACT enumeration of the binomial counts at a true tie (the
worst case with no flip), which must be <= alpha / 2 (PREDICT's two-sided test used on
one side); a doubled-alpha mutant breaks that bound, so the check can fail.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from scipy.stats import binom

from smoothcert.decisions.attack import (
    AttackDetails,
    AttackFacts,
    AttackParams,
    check_radius_grid,
    decide_attack,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.records import CertifyResult, Evidence, StageEvidence

RADII = (0.25, 0.5, 0.75)
N = 400


def evidence(clean, attacked, *, radii=RADII, n=N, num_classes=3):
    stages = [StageEvidence("selection", n=n, alpha=0.0, counts=clean)]
    stages += [StageEvidence("attack", n=n, alpha=0.0, counts=c) for c in attacked]
    return Evidence(tuple(stages), AttackFacts(num_classes=num_classes, radii=radii), seed=1)


def params(**kw):
    base = {"sigma": 0.5, "radii": RADII, "eval_n": N, "alpha": 0.001}
    return AttackParams(**{**base, **kw})


KEEP = (380, 10, 10)  # the clean class 0 stays the clear majority
FLIP = (10, 380, 10)  # class 1 is the clear majority: a flip


@pytest.mark.parametrize("pattern", list(itertools.product([False, True], repeat=3)))
def test_radius_is_the_largest_grid_radius_before_the_first_flip(pattern) -> None:
    res = decide_attack(evidence(KEEP, [FLIP if f else KEEP for f in pattern]), params())
    first = next((i for i, f in enumerate(pattern) if f), None)
    expected = RADII[-1] if first is None else (RADII[first - 1] if first > 0 else 0.0)
    assert res.radius == expected
    assert res.prediction == 0 and not res.abstained and res.claim == "empirical"
    assert isinstance(res.details, AttackDetails)
    assert res.details.flipped == pattern
    assert res.details.first_flip == (None if first is None else RADII[first])
    assert res.details.attacked_class == tuple(1 if f else 0 for f in pattern)
    # the evidence records the alpha each flip test spent
    assert [s.alpha for s in res.evidence.stages] == [0.0, 0.001, 0.001, 0.001]


def test_prediction_is_the_clean_majority_whatever_the_label() -> None:
    res = decide_attack(evidence((5, 15, 380), [KEEP] * 3), params())
    # every attacked point is class 0: a flip away from the clean class 2
    assert res.prediction == 2 and res.radius == 0.0 and res.details.flipped == (True,) * 3


def test_a_near_tie_is_no_flip_found() -> None:
    # top class 1 but not significantly: PREDICT abstains, no flip is declared
    res = decide_attack(evidence(KEEP, [(190, 210, 0), FLIP, FLIP]), params())
    assert res.details.flipped == (False, True, True)
    assert res.details.attacked_class[0] == 1 and res.details.p_values[0] > 0.001
    assert res.radius == 0.25


def _false_flip_probability(n: int, alpha: float) -> float:
    """Exact P(flip declared) when the clean class and another are tied at 1/2 (2 classes)."""
    p = params(eval_n=n, alpha=alpha, radii=(0.5,))
    total = 0.0
    for k in range(n + 1):  # k = count of the other class
        ev = evidence((n, 0), [(n - k, k)], radii=(0.5,), n=n, num_classes=2)
        if decide_attack(ev, p).details.flipped[0]:
            total += float(binom.pmf(k, n, 0.5))
    return total


def test_false_flips_are_at_most_half_alpha_at_a_true_tie_exactly() -> None:
    # With p_clean = p_other = 1/2 the smoothed prediction did not flip (or is a tie); the
    # worst case for a false flip. Exact enumeration over the binomial counts.
    n, alpha = 200, 0.05
    rate = _false_flip_probability(n, alpha)
    assert 0.0 < rate <= alpha / 2
    # the check can fail: a decision at doubled alpha declares too many flips
    assert _false_flip_probability(n, 2 * alpha) > alpha / 2


def test_json_round_trip() -> None:
    res = decide_attack(evidence(KEEP, [KEEP, FLIP, KEEP]), params(step_size=0.1))
    assert CertifyResult.from_json(res.to_json()) == res


def test_forward_samples_count_evaluations_and_pgd() -> None:
    p = params(steps=7, noise_samples=3)
    assert p.forward_samples() == N * 4 + 3 * 7 * 3
    assert p.step_length(0.5) == pytest.approx(2.5 * 0.5 / 7)
    assert params(step_size=0.2).step_length(0.5) == 0.2


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"sigma": 0.0}, "sigma = 0.0"),
        ({"radii": ()}, "radii = ()"),
        ({"radii": (0.5, 0.25)}, "strictly increasing"),
        ({"radii": (0.0, 0.5)}, "radii = (0.0, 0.5)"),
        ({"radii": (0.5, float("nan"))}, "finite radii > 0"),
        ({"radii": "0.5"}, "radii = '0.5'"),
        ({"steps": 0}, "steps = 0"),
        ({"step_size": -1.0}, "step_size = -1.0"),
        ({"noise_samples": 0}, "noise_samples = 0"),
        ({"eval_n": 0}, "eval_n = 0"),
        ({"temperature": 0.0}, "temperature = 0.0"),
        ({"score": "margin"}, "score = 'margin'"),
        ({"random_start": 1}, "random_start = 1"),
        ({"clip": "yes"}, "clip = 'yes'"),
        ({"alpha": 1.0}, "alpha = 1.0"),
    ],
)
def test_bad_parameters_name_the_value_and_the_valid_range(change, needle) -> None:
    with pytest.raises(InvalidParameterError, match="valid") as err:
        params(**change)
    assert needle in str(err.value)


def test_evidence_that_does_not_fit_is_rejected() -> None:
    good = evidence(KEEP, [KEEP] * 3)
    with pytest.raises(InvalidParameterError, match="3 attack stages"):
        decide_attack(evidence(KEEP, [KEEP] * 2), params())
    with pytest.raises(InvalidParameterError, match="eval_n = 500"):
        decide_attack(good, params(eval_n=500))
    with pytest.raises(InvalidParameterError, match="radius grid"):
        decide_attack(
            dataclasses.replace(good, facts=AttackFacts(num_classes=3, radii=(0.1, 0.2, 0.3))),
            params(),
        )
    with pytest.raises(InvalidParameterError, match="classes"):
        decide_attack(evidence((390, 10), [(390, 10)] * 3, num_classes=3), params())


def test_check_radius_grid_returns_floats() -> None:
    grid = check_radius_grid(np.array([1, 2]).tolist())
    assert grid == (1.0, 2.0) and all(isinstance(r, float) for r in grid)

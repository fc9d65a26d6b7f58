"""Sequential hybrid certification (``hybrid-sequential``): target points (d, r) of a filter.

Oracle: the flag probability ``p`` of a simulated stream is known, and the smallest
``p_lower`` that certifies a point ``(d, r)`` is found independently by bisection on
:func:`smoothcert.certificates.hybrid_lower_bound` (``L(d', r) >= tau`` for all ``d' <= d``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline_toys import VOCAB, TextImageModel, text_image_dataset
from smoothcert.certificates import hybrid_lower_bound
from smoothcert.decisions.hybrid_sequential import (
    HybridSequentialParams,
    decide_hybrid_sequential,
    next_round_size,
    schedule,
)
from smoothcert.decisions.tokens import TokenFacts
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.hybrid import certify, certify_sequential
from smoothcert.records import CertifyResult, Evidence, StageEvidence

SIGMA, BETA, V, TAU = 0.5, 0.3, 5, 0.05


def facts(tv: float = 0.0) -> TokenFacts:
    return TokenFacts(num_classes=2, length=4, num_eligible=4, d_max=4, sampling_tv_bound=tv)


def filter_params(**kw) -> HybridSequentialParams:
    base = {
        "sigma": SIGMA,
        "beta": BETA,
        "alphabet": V,
        "n0": 0,
        "alpha": 0.01,
        "tau": TAU,
        "target": 1,
        "max_samples": 4_000,
        "targets": ((1, 0.2),),
        "first_round": 20,
    }
    base.update(kw)
    return HybridSequentialParams(**base)


def needed_p(d: int, r: float) -> float:
    """Smallest p_lower with L(d', r) >= tau for every d' <= d (bisection, independent)."""
    lo, hi = TAU, 1.0 - 1e-12
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        ok = all(
            float(hybrid_lower_bound(mid, d=k, r=r, sigma=SIGMA, beta=BETA, vocab_size=V)) >= TAU
            for k in range(d + 1)
        )
        lo, hi = (lo, mid) if ok else (mid, hi)
    return hi


def simulate(params: HybridSequentialParams, p: float, rng, tv: float = 0.0) -> CertifyResult:
    stages: list[StageEvidence] = []
    while (size := next_round_size(params, Evidence(tuple(stages), facts(tv)))) is not None:
        k = int(rng.binomial(size, p))
        stages.append(StageEvidence("round", n=size, alpha=0.0, counts=(size - k, k)))
    return decide_hybrid_sequential(Evidence(tuple(stages), facts(tv), seed=0), params)


def test_a_clearly_flagged_pair_is_certified_at_its_point_after_one_round() -> None:
    res = simulate(filter_params(), 0.999, np.random.default_rng(0))
    assert res.claim == "flagged" and res.prediction == 1
    assert res.details.stop == "decided" and res.details.rounds == 1
    assert res.details.targets_certified == ((1, 0.2),)
    assert res.radius_curve[1] >= 0.2
    assert res.samples_used == 20  # a filter draws no selection samples


def test_certified_points_match_the_independent_threshold() -> None:
    params = filter_params(targets=((0, 0.3), (1, 0.2), (2, 0.1)))
    res = simulate(params, 0.6, np.random.default_rng(1))
    for d, r in params.targets:
        assert ((d, r) in res.details.targets_certified) == (res.p_lower >= needed_p(d, r))


def test_tv_bound_is_subtracted_from_the_sequence_bound() -> None:
    res = simulate(filter_params(), 0.9, np.random.default_rng(2), tv=0.01)
    assert res.p_lower == pytest.approx(res.details.sequence_lower - 0.01, abs=1e-15)


def test_an_unreachable_point_stops_early_and_abstains() -> None:
    res = simulate(filter_params(targets=((4, 2.0),)), 0.3, np.random.default_rng(3))
    assert res.abstained and res.details.stop == "refuted"
    assert res.samples_used < 4_000 and not any(res.radius_curve)


@pytest.mark.parametrize("bound", ["union", "mixture"])
def test_at_the_threshold_wrong_certificates_stay_under_alpha(bound) -> None:
    # p exactly at the point's threshold: any certificate of it is wrong, and the loop
    # stops at the first crossing (the adversarial stopping rule)
    alpha = 0.2
    params = filter_params(alpha=alpha, bound=bound, max_samples=640)
    p = needed_p(1, 0.2)
    rng = np.random.default_rng(4)
    trials = 150
    wrong = sum(not simulate(params, p, rng).abstained for _ in range(trials))
    assert wrong / trials <= alpha


def test_torch_loop_on_a_real_text_image_model_matches_fixed_n_counts() -> None:
    data = text_image_dataset()
    model = TextImageModel().eval()
    tokens, image = torch.as_tensor(data.tokens[0]), torch.as_tensor(data.images[0])
    kw = {
        "sigma": SIGMA,
        "beta": BETA,
        "alphabet": VOCAB,
        "alpha": 0.01,
        "tau": 0.2,
        "target": 1,
        "seed": 5,
        "batch_size": 64,
    }
    seq = certify_sequential(
        model, tokens, image, max_samples=500, target_points=[(9, 9.0)], first_round=500, **kw
    )
    fixed = certify(model, tokens, image, n0=0, n=500, **kw)
    # one round of the whole budget draws the same samples as fixed n with the same seed
    assert seq.evidence.stages[0].counts == fixed.evidence.stages[0].counts
    again = certify_sequential(
        model, tokens, image, max_samples=500, target_points=[(9, 9.0)], first_round=500, **kw
    )
    assert again.evidence.stages == seq.evidence.stages


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"targets": ()}, "at least one target point"),
        ({"targets": ((-1, 0.2),)}, "target d = -1 is invalid"),
        ({"targets": ((1, -0.2),)}, "target r = -0.2 is invalid"),
        ({"targets": ((1,),)}, "valid: a pair"),
        ({"n": 7}, "n = 7 is invalid for a sequential run"),
        ({"max_samples": 0}, "max_samples = 0 is invalid"),
        ({"target": None, "n0": 100, "tau": 0.5, "max_samples": 100}, "max_samples > n0 = 100"),
        ({"growth": 0.5}, "growth = 0.5 is invalid"),
    ],
)
def test_bad_parameters_are_one_clear_error(kw, match) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        filter_params(**kw)


def test_majority_mode_counts_selection_samples_in_the_budget() -> None:
    params = filter_params(target=None, tau=0.5, n0=50, max_samples=1_050)
    assert params.n == 1_000 and schedule(params)[-1] == 1_000
    assert params.forward_samples() == 1_050

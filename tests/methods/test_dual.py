"""Dual randomized smoothing (arXiv 2512.01782) against independent oracles.

Pure decisions on hand-built evidence against scipy (``dual_oracle.decide``); the torch
half on toy models whose smoothed probabilities are closed forms
(``dual_oracle.ThresholdEstimator``, ``LinearExpert``); and the coverage of the whole
two-stage procedure against its EXACT failure probability
(``dual_oracle.exact_miss_probability``), with mutants (alpha_1 doubled, no min with
R_sigma) that the same check must catch. DESIGN.md: "Input-dependent sigma", soundness
rules 1-3.
"""

import inspect
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.stats import binom, norm

from dual_oracle import (
    ConstantModel,
    LinearExpert,
    ThresholdEstimator,
    cp_lower,
    decide,
    exact_miss_probability,
)
from smoothcert.decisions.cohen import GaussianFacts, GaussianParams, decide_cohen
from smoothcert.decisions.dual import (
    DualDetails,
    DualFacts,
    DualParams,
    decide_dual,
    dual_next_stage,
)
from smoothcert.errors import InvalidParameterError, ResultStoreError
from smoothcert.methods.dual import DualSmoothingModel, certify, prepare
from smoothcert.methods.sampler import draw, draw_many
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.records import CertifyResult, Evidence, Payload, StageEvidence
from smoothcert.results.records import record_line, validate_record

ROLES = ("sigma_selection", "sigma_estimation", "selection", "estimation")
SIGMAS = (0.25, 0.5)


def _evidence(counts, *, num_classes, num_sigmas, n0, n, seed=0, roles=ROLES):
    """Evidence of the given count vectors (None entries are left out)."""
    stages = tuple(
        StageEvidence(role, n=n0 if role.endswith("selection") else n, alpha=0.0, counts=c)
        for role, c in zip(roles, counts, strict=True)
        if c is not None
    )
    return Evidence(stages, DualFacts(num_classes=num_classes, num_sigmas=num_sigmas), seed=seed)


def _counts(res):
    return tuple(
        None if res.evidence.stage(r) is None else res.evidence.stage(r).counts for r in ROLES
    )


def _oracle(counts, params, **overrides):
    kw = dict(
        sigmas=params.sigmas,
        sigma_estimator=params.sigma_estimator,
        n=params.n,
        alpha_sigma=params.alpha_sigma,
        alpha_classifier=params.alpha_classifier,
    )
    return decide(counts, **{**kw, **overrides})


# --- pure decision ---------------------------------------------------------------------


def _composition(rng, total, parts, concentration):
    return tuple(int(v) for v in rng.multinomial(total, rng.dirichlet([concentration] * parts)))


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(2, 3),
    num_classes=st.integers(2, 4),
    n0=st.integers(1, 30),
    n=st.integers(1, 2000),
    alpha=st.floats(1e-4, 0.5),
    split=st.floats(0.05, 0.95),
    concentration=st.sampled_from([0.05, 0.3, 1.0]),
)
def test_decision_matches_scipy_oracle(seed, m, num_classes, n0, n, alpha, split, concentration):
    rng = np.random.default_rng(seed)
    sigmas = tuple(np.cumsum(rng.uniform(0.05, 0.5, m)).round(4))
    params = DualParams(
        sigmas=sigmas,
        sigma_estimator=sigmas[-1] * rng.uniform(1.0, 2.0),
        n0=n0,
        n=n,
        alpha=alpha,
        alpha_split=split,
    )
    counts = [
        _composition(rng, n0, m, concentration),
        _composition(rng, n, m, concentration),
        _composition(rng, n0, num_classes, concentration),
        _composition(rng, n, num_classes, concentration),
    ]
    j = int(np.argmax(counts[0]))
    cls = int(np.argmax(counts[2]))
    # CP bounds at exactly 1/2 are decided either way by a 1e-9 margin: not a test case
    assume(abs(cp_lower(counts[1][j], n, params.alpha_sigma) - 0.5) > 1e-7)
    assume(abs(cp_lower(counts[3][cls], n, params.alpha_classifier) - 0.5) > 1e-7)
    want = _oracle(counts, params)
    if want.radius_sigma is None:
        counts[2] = counts[3] = None  # stage 2 is not drawn after an abstaining estimator
    res = decide_dual(_evidence(counts, num_classes=num_classes, num_sigmas=m, n0=n0, n=n), params)
    d = res.details
    assert isinstance(d, DualDetails)
    assert res.method == "dual" and res.claim == "majority" and res.alpha == alpha
    assert d.sigma_index == want.index == j and d.sigma == sigmas[j]
    assert res.prediction == want.prediction and res.abstained == (want.prediction is None)
    if want.radius_sigma is None:
        assert d.abstained_at == "sigma" and d.radius_sigma == 0.0 and res.radius == 0.0
        return
    assert d.radius_sigma == pytest.approx(want.radius_sigma, rel=1e-6, abs=1e-7)
    if want.radius_classifier is None:
        assert d.abstained_at == "classifier" and res.radius == 0.0 and d.limited_by is None
        return
    assert d.abstained_at is None
    assert d.radius_classifier == pytest.approx(want.radius_classifier, rel=1e-6, abs=1e-7)
    assert res.radius == min(d.radius_sigma, d.radius_classifier)  # exactly the min
    assert res.radius == pytest.approx(want.radius, rel=1e-6, abs=1e-7)
    assert d.limited_by == ("sigma" if d.radius_sigma <= d.radius_classifier else "classifier")


def test_hand_computed_radius_is_the_min_of_two_scipy_radii():
    # R_sigma = sigma_e Phi^-1(CP_lower(980, 1000, alpha alpha_split)),
    # R_c = sigmas[j] Phi^-1(CP_lower(990, 1000, alpha - alpha alpha_split)); j = 1.
    params = DualParams(
        sigmas=(0.25, 0.5), sigma_estimator=0.5, n0=10, n=1000, alpha=0.002, alpha_split=0.3
    )
    counts = [(1, 9), (20, 980), (0, 10, 0), (5, 990, 5)]
    res = decide_dual(_evidence(counts, num_classes=3, num_sigmas=2, n0=10, n=1000), params)
    r_sigma = 0.5 * norm.ppf(cp_lower(980, 1000, 0.002 * 0.3))
    r_c = 0.5 * norm.ppf(cp_lower(990, 1000, 0.002 - 0.002 * 0.3))
    assert res.prediction == 1
    assert res.details.radius_sigma == pytest.approx(r_sigma, rel=1e-7)
    assert res.details.radius_classifier == pytest.approx(r_c, rel=1e-7)
    assert res.radius == pytest.approx(min(r_sigma, r_c), rel=1e-7)
    assert res.details.limited_by == "sigma" and r_sigma < r_c
    assert res.p_lower == pytest.approx(cp_lower(990, 1000, 0.002 * 0.7), rel=1e-7)
    assert res.details.p_lower_sigma == pytest.approx(cp_lower(980, 1000, 0.0006), rel=1e-7)


@pytest.mark.parametrize("alpha", [1e-3, 0.1, 0.2, 0.3, 1 / 3, 0.7])
@pytest.mark.parametrize("split", [0.1, 0.3, 0.5, 0.7, 0.9, 1 / 3])
def test_alpha_split_is_exact_and_recorded_on_the_stages(alpha, split):
    params = DualParams(
        sigmas=(0.25, 0.5), sigma_estimator=1.0, n0=10, n=100, alpha=alpha, alpha_split=split
    )
    assert abs(params.alpha_sigma + params.alpha_classifier - alpha) <= 1e-15
    assert params.alpha_sigma == pytest.approx(alpha * split, rel=1e-15)
    assert params.estimator_params().alpha == params.alpha_sigma
    assert params.estimator_params().sigma == 1.0
    assert params.classifier_params(1).alpha == params.alpha_classifier
    assert params.classifier_params(1).sigma == 0.5
    counts = [(0, 10), (0, 100), (10, 0), (100, 0)]
    res = decide_dual(_evidence(counts, num_classes=2, num_sigmas=2, n0=10, n=100), params)
    spent = {s.role: s.alpha for s in res.evidence.stages}
    assert spent == {
        "sigma_selection": 0.0,
        "sigma_estimation": params.alpha_sigma,
        "selection": 0.0,
        "estimation": params.alpha_classifier,
    }
    assert abs(sum(spent.values()) - res.alpha) <= 1e-15 and res.alpha == alpha


def test_abstains_when_the_estimator_abstains():
    params = DualParams(sigmas=(0.25, 0.5), sigma_estimator=0.5, n0=10, n=1000, alpha=0.01)
    counts = [(3, 7), (480, 520), None, None]
    res = decide_dual(_evidence(counts, num_classes=3, num_sigmas=2, n0=10, n=1000), params)
    assert res.abstained and res.prediction is None and res.radius == 0.0
    d = res.details
    assert d.abstained_at == "sigma" and d.limited_by is None and d.sigma_index == 1
    assert d.radius_sigma == 0.0 and d.radius_classifier == 0.0
    assert d.p_lower_sigma == pytest.approx(cp_lower(520, 1000, 0.005), rel=1e-7)
    # Classifier stages after an abstaining estimator (evidence drawn at a larger alpha,
    # re-decided at a smaller one) cannot rescue it: still an abstention at the estimator.
    full = [(3, 7), (480, 520), (0, 10, 0), (0, 1000, 0)]
    res = decide_dual(_evidence(full, num_classes=3, num_sigmas=2, n0=10, n=1000), params)
    assert res.abstained and res.details.abstained_at == "sigma"


def test_estimator_certifying_only_at_a_larger_alpha_abstains_at_the_classifier():
    # Evidence drawn at a small alpha (the estimator abstained, so no classifier samples)
    # and re-decided at a larger one (recertify): no classifier evidence, no certificate.
    counts = [(2, 8), (0, 100), None, None]
    ev = _evidence(counts, num_classes=2, num_sigmas=2, n0=10, n=100)
    small = DualParams(sigmas=SIGMAS, sigma_estimator=0.5, n0=10, n=100, alpha=0.002)
    res = decide_dual(ev, small)
    assert res.abstained and res.prediction is None and res.radius == 0.0
    assert res.p_lower == 0.0 and res.details.radius_classifier == 0.0
    assert res.details.radius_sigma > 0 and res.details.limited_by is None
    with pytest.raises(InvalidParameterError, match="limited_by"):
        DualDetails(
            sigma_index=0,
            sigma=0.25,
            p_lower_sigma=0.9,
            radius_sigma=0.1,
            radius_classifier=0.1,
            limited_by="both",
            abstained_at=None,
        )


def test_abstains_when_the_classifier_abstains():
    params = DualParams(sigmas=(0.25, 0.5), sigma_estimator=0.5, n0=10, n=1000, alpha=0.01)
    counts = [(10, 0), (1000, 0), (4, 6), (490, 510)]
    res = decide_dual(_evidence(counts, num_classes=2, num_sigmas=2, n0=10, n=1000), params)
    assert res.abstained and res.prediction is None and res.radius == 0.0
    d = res.details
    assert d.abstained_at == "classifier" and d.limited_by is None
    assert d.radius_sigma == pytest.approx(0.5 * norm.ppf(cp_lower(1000, 1000, 0.005)))
    assert d.radius_classifier == 0.0 and d.sigma == 0.25


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    label=st.integers(0, 3),
)
def test_choice_of_sigma_ignores_classifier_counts_and_label(seed, label):
    # j is the argmax of the stage-1 SELECTION counts, whatever the classifier's counts
    # (even when another sigma would certify a larger radius) and whatever the label.
    rng = np.random.default_rng(seed)
    params = DualParams(sigmas=(0.25, 0.5, 1.0), sigma_estimator=1.0, n0=20, n=500, alpha=0.01)
    sel1 = (2, 15, 3)
    est1 = (20, 470, 10)
    stage2 = [_composition(rng, 20, 4, 0.2), _composition(rng, 500, 4, 0.2)]
    ev = _evidence([sel1, est1, *stage2], num_classes=4, num_sigmas=3, n0=20, n=500)
    res = decide_dual(ev, params)
    assert res.details.sigma_index == 1 and res.details.sigma == 0.5
    r_sigma = 1.0 * norm.ppf(cp_lower(470, 500, 0.005))
    assert res.details.radius_sigma == pytest.approx(r_sigma, rel=1e-7)
    if not res.abstained:  # R_c at sigmas[1], not at the larger sigmas[2]
        top = int(np.argmax(stage2[0]))
        want = 0.5 * norm.ppf(cp_lower(stage2[1][top], 500, 0.005))
        assert res.details.radius_classifier == pytest.approx(want, rel=1e-6, abs=1e-7)
    # the label never reaches the decision: it only grades the record
    assert "label" not in inspect.signature(decide_dual).parameters
    line = record_line(res, index=0, label=label)
    assert line["correct"] == (not res.abstained and res.prediction == label)


def test_api_cannot_name_a_sigma_or_a_label():
    for fn in (certify, prepare):
        names = set(inspect.signature(fn).parameters)
        assert not names & {"sigma", "sigma_index", "label", "labels", "y", "target"}


@pytest.mark.parametrize(
    ("counts", "facts", "fragment"),
    [
        # wrong n of the estimator's estimation stage
        ([(0, 10), (0, 99), (10, 0), (100, 0)], (2, 2), "n = 99"),
        # wrong n0 of the classifier's selection (counts sum to the stage n)
        ([(0, 10), (0, 100), (11, 0), (100, 0)], (2, 2), "n = 11"),
        # three estimator outputs for two sigmas
        ([(0, 10, 0), (0, 100, 0), (10, 0), (100, 0)], (2, 3), "3 outputs"),
        ([(0, 10, 0), (0, 100, 0), (10, 0), (100, 0)], (2, 2), "counts 3 classes"),
        # classifier counts of another width than num_classes
        ([(0, 10), (0, 100), (10, 0, 0), (100, 0, 0)], (2, 2), "counts 3 classes"),
        # no estimator estimation stage
        ([(0, 10), None, (10, 0), (100, 0)], (2, 2), "'estimation'"),
    ],
)
def test_rejects_evidence_that_does_not_fit(counts, facts, fragment):
    params = DualParams(sigmas=(0.25, 0.5), sigma_estimator=0.5, n0=10, n=100, alpha=0.01)
    stages = []
    for role, c in zip(ROLES, counts, strict=True):
        if c is not None:
            stages.append(StageEvidence(role, n=sum(c), alpha=0.0, counts=c))
    ev = Evidence(tuple(stages), DualFacts(num_classes=facts[0], num_sigmas=facts[1]))
    with pytest.raises(InvalidParameterError, match="valid") as info:
        decide_dual(ev, params)
    assert fragment in str(info.value)


def test_rejects_evidence_of_another_method():
    params = DualParams(sigmas=(0.25, 0.5), sigma_estimator=0.5, n0=10, n=100, alpha=0.01)
    ev = Evidence(
        (
            StageEvidence("selection", n=10, alpha=0.0, counts=(10, 0)),
            StageEvidence("estimation", n=100, alpha=0.0, counts=(100, 0)),
        ),
        GaussianFacts(num_classes=2),
    )
    with pytest.raises(InvalidParameterError, match="dual_facts"):
        decide_dual(ev, params)


@pytest.mark.parametrize(
    "order",
    [
        (2, 3, 0, 1),  # classifier stages before the estimator's
        (1, 0, 2, 3),  # estimation before selection
        (0, 1, 2, 3, 3),  # a second classifier estimation stage
    ],
)
def test_rejects_stages_out_of_order_or_repeated(order):
    params = DualParams(sigmas=(0.25, 0.5), sigma_estimator=0.5, n0=10, n=100, alpha=0.01)
    counts = [(0, 10), (0, 100), (10, 0), (100, 0)]
    stages = [StageEvidence(ROLES[i], n=sum(counts[i]), alpha=0.0, counts=counts[i]) for i in order]
    ev = Evidence(tuple(stages), DualFacts(num_classes=2, num_sigmas=2))
    with pytest.raises(InvalidParameterError, match="in that order"):
        decide_dual(ev, params)


def test_next_stage_sequence():
    params = DualParams(sigmas=(0.25, 0.5, 1.0), sigma_estimator=1.0, n0=10, n=100, alpha=0.01)
    facts = DualFacts(num_classes=2, num_sigmas=3)

    def after(*counts):
        return dual_next_stage(
            _evidence(
                list(counts) + [None] * (4 - len(counts)),
                num_classes=2,
                num_sigmas=3,
                n0=10,
                n=100,
            ),
            params,
        )

    assert dual_next_stage(Evidence((), facts), params) == ("sigma_selection", 10, -1)
    assert after((1, 2, 7)) == ("sigma_estimation", 100, -1)
    assert after((1, 2, 7), (0, 1, 99)) == ("selection", 10, 2)
    assert after((1, 2, 7), (0, 1, 99), (3, 7)) == ("estimation", 100, 2)
    assert after((1, 2, 7), (0, 1, 99), (3, 7), (30, 70)) is None
    assert after((1, 8, 1), (0, 100, 0)) == ("selection", 10, 1)
    # the estimator's certificate abstains: no classifier stages
    assert after((1, 2, 7), (30, 20, 50)) is None
    # the choice is the SELECTION's argmax, not the estimation's
    assert after((6, 4, 0), (0, 100, 0)) is None
    bad = Evidence(
        (
            StageEvidence("sigma_estimation", n=100, alpha=0.0, counts=(0, 1, 99)),
            StageEvidence("sigma_selection", n=10, alpha=0.0, counts=(1, 2, 7)),
        ),
        facts,
    )
    with pytest.raises(InvalidParameterError, match="prefix"):
        dual_next_stage(bad, params)
    skipped = Evidence((StageEvidence("selection", n=10, alpha=0.0, counts=(3, 7)),), facts)
    with pytest.raises(InvalidParameterError, match="prefix"):
        dual_next_stage(skipped, params)


@pytest.mark.parametrize(
    "counts",
    [
        [(1, 9), (20, 980), (0, 10, 0), (5, 990, 5)],  # certified, limited by sigma
        [(10, 0), (0, 1000), None, None],  # the estimator abstains
        [(10, 0), (1000, 0), (4, 6, 0), (490, 500, 10)],  # the classifier abstains
    ],
)
def test_record_json_round_trip_and_recertification(counts):
    params = DualParams(
        sigmas=(0.25, 0.5), sigma_estimator=0.5, n0=10, n=1000, alpha=0.002, alpha_split=0.4
    )
    res = decide_dual(_evidence(counts, num_classes=3, num_sigmas=2, n0=10, n=1000), params)
    for payload in (params, res.details, res.evidence.facts):
        assert Payload.from_dict(json.loads(json.dumps(payload.to_dict()))) == payload
    line = json.loads(json.dumps(record_line(res, index=4, label=1)))
    assert (
        CertifyResult.from_dict(
            {k: v for k, v in line.items() if k not in ("type", "index", "label", "correct")}
        )
        == res
    )
    expected = {"method": "dual", "params": params.to_dict()}
    assert validate_record(line, where="f: line 2", expected=expected) == line
    # re-deciding the saved evidence reproduces the record; alterations are caught
    again = decide_dual(CertifyResult.from_dict(res.to_dict()).evidence, params)
    assert again.to_dict() == {**res.to_dict(), "seconds": again.seconds}
    tampered = [
        {**line, "radius": line["radius"] + 0.1},
        {**line, "details": {**line["details"], "sigma_index": 1 - line["details"]["sigma_index"]}},
        {**line, "details": {**line["details"], "radius_sigma": 3.0}},
        {**line, "details": {**line["details"], "sigma": 0.25 + 0.5 - line["details"]["sigma"]}},
    ]
    for bad in tampered:
        with pytest.raises(ResultStoreError):
            validate_record(bad, where="f: line 2", expected=expected)
    other = {"method": "dual", "params": {**params.to_dict(), "alpha_split": 0.5}}
    with pytest.raises(ResultStoreError, match="alpha_split"):
        validate_record(line, where="f: line 2", expected=other)


# --- torch half: toy models with closed forms --------------------------------------------


def _unit(v):
    v = torch.as_tensor(v, dtype=torch.float32)
    return v / v.norm()


def _estimator_for(x, p_index1, sigma_e, w=(1.0, 2.0, -2.0), **kw):
    """A threshold estimator with P(h(x + e) = 1) = p_index1 at sigma_e (closed form)."""
    w = _unit(w)
    c = float(x @ w) - sigma_e * float(norm.ppf(p_index1))
    est = ThresholdEstimator(w, c, **kw).eval()
    assert est.vote_probability(x, sigma_e) == pytest.approx(p_index1, abs=1e-6)
    return est


def _expert_for(x, p_class0, sigma, w=(0.5, 0.5, 1.0), **kw):
    """A linear expert with smoothed P(class 0) = p_class0 at sigma (closed form)."""
    w = _unit(w)
    b = sigma * float(norm.ppf(p_class0)) - float(x @ w)
    expert = LinearExpert(w, b, **kw).eval()
    assert expert.class0_probability(x, sigma) == pytest.approx(p_class0, abs=1e-6)
    return expert


X3 = torch.tensor([0.2, -0.1, 0.3])


@pytest.mark.parametrize(
    ("j", "split", "p_class", "binds"),
    [
        (0, 0.5, 0.9, "classifier"),
        (1, 0.5, 0.9, "classifier"),
        (2, 0.5, 0.9, "classifier"),
        (2, 0.8, 0.9, "classifier"),
        (1, 0.3, 0.9, "classifier"),
        # sigmas[j] = sigma_e and n-of-n votes in both stages with alpha_1 < alpha_2:
        # R_sigma < R_c, the only case where R_sigma can bind for a constant estimator
        (2, 0.3, None, "sigma"),
    ],
)
def test_constant_estimator_equals_cohen_at_alpha_2(j, split, p_class, binds):
    sigmas, sigma_e, n0, n, alpha = (0.25, 0.5, 1.0), 1.0, 50, 2000, 0.01
    estimator = ConstantModel(j, width=3).eval()
    classifier = ConstantModel(0) if p_class is None else _expert_for(X3, p_class, sigmas[j])
    res = certify(
        estimator,
        [classifier.eval()],
        X3,
        sigmas=sigmas,
        sigma_estimator=sigma_e,
        n0=n0,
        n=n,
        alpha=alpha,
        alpha_split=split,
        seed=3,
        batch_size=512,
    )
    alpha_1 = alpha * split
    alpha_2 = alpha - alpha_1
    assert res.evidence.stage("sigma_estimation").counts[j] == n  # all votes for j
    r_sigma = sigma_e * norm.ppf(cp_lower(n, n, alpha_1))
    assert res.details.radius_sigma == pytest.approx(r_sigma, rel=1e-7)
    assert res.details.sigma_index == j and res.details.sigma == sigmas[j]
    stage2 = Evidence(
        (res.evidence.stage("selection"), res.evidence.stage("estimation")),
        GaussianFacts(num_classes=2),
        seed=res.seed,
    )
    cohen = decide_cohen(stage2, GaussianParams(sigma=sigmas[j], n0=n0, n=n, alpha=alpha_2))
    assert not cohen.abstained
    assert res.prediction == cohen.prediction == 0
    assert res.p_lower == cohen.p_lower
    assert res.details.radius_classifier == cohen.radius
    assert res.details.limited_by == binds
    if binds == "classifier":  # the dual certificate IS Cohen's at sigmas[j], alpha_2
        assert res.radius == cohen.radius
    else:
        assert res.radius == res.details.radius_sigma < cohen.radius


def test_routes_to_the_expert_of_the_chosen_sigma():
    # Experts are constants on different classes: the prediction names the expert used.
    x = torch.zeros(3)
    experts = [ConstantModel(c, width=3).eval() for c in (2, 0, 1)]
    for j in range(3):
        for e in experts:
            e.noisy_calls = 0
        res = certify(
            ConstantModel(j, width=3).eval(),
            experts,
            x,
            sigmas=(0.25, 0.5, 1.0),
            sigma_estimator=1.0,
            n0=10,
            n=200,
            alpha=0.01,
            batch_size=50,
        )
        assert res.details.sigma_index == j and res.prediction == (2, 0, 1)[j]
        assert [e.noisy_calls > 0 for e in experts] == [k == j for k in range(3)]


def test_no_classifier_samples_after_an_abstaining_estimator():
    x = torch.zeros(3)
    estimator = _estimator_for(x, 0.5, 0.5)
    expert = ConstantModel(0).eval()
    res = certify(
        estimator, [expert], x, sigmas=SIGMAS, sigma_estimator=0.5, n0=10, n=500, alpha=0.01
    )
    assert res.abstained and res.details.abstained_at == "sigma"
    assert [s.role for s in res.evidence.stages] == ["sigma_selection", "sigma_estimation"]
    assert expert.noisy_calls == 0 and estimator.noisy_calls > 0


def test_stages_draw_fresh_independent_noise_at_their_own_sigma():
    # Standardised noise e = (z - x) / sigma of the classifier's samples must not repeat
    # the estimator's: a stage 2 that re-seeded (or reused the stage-1 stream) would.
    d, n0, n, seed = 16, 64, 256, 11
    x = torch.linspace(-0.3, 0.3, d)
    w = torch.ones(d)
    estimator = _estimator_for(x, 0.999, 1.0, w=w, record=True)  # picks sigmas[1]
    classifier = _expert_for(x, 0.9, 0.5, w=-w, record=True)
    res = certify(
        estimator,
        [classifier],
        x,
        sigmas=SIGMAS,
        sigma_estimator=1.0,
        n0=n0,
        n=n,
        alpha=0.01,
        seed=seed,
        batch_size=1024,
    )
    assert res.details.sigma_index == 1 and not res.abstained
    probe1, sel1, est1 = estimator.seen
    probe2, sel2, est2 = classifier.seen
    assert probe1.shape[0] == probe2.shape[0] == 1
    assert sel1.shape[0] == sel2.shape[0] == n0 and est1.shape[0] == est2.shape[0] == n
    e1 = (torch.cat([sel1, est1]) - x) / 1.0
    e2 = (torch.cat([sel2, est2]) - x) / 0.5
    # the kernel sampled is the one certified (rule 2): unit variance after scaling
    assert float(e1.std()) == pytest.approx(1.0, rel=0.05)
    assert float(e2.std()) == pytest.approx(1.0, rel=0.05)
    assert abs(float(e1.mean())) < 0.06 and abs(float(e2.mean())) < 0.06
    assert float(torch.cdist(e2, e1).min()) > 1.0  # no stage-2 draw repeats a stage-1 one
    corr = float(torch.corrcoef(torch.stack([e1[:n0].flatten(), e2[:n0].flatten()]))[0, 1])
    assert abs(corr) < 0.1
    # The check has teeth: a generator re-seeded with the same seed gives exactly the
    # stage-1 noise, which the cdist check above would flag (distance 0).
    replay = GaussianNoise(0.5).sample(x, n0, generator=torch.Generator().manual_seed(seed))
    assert torch.allclose((replay - x) / 0.5, e1[:n0], atol=1e-5)


# --- bad input: one clear error each, before any noisy sample --------------------------

GOOD = dict(sigmas=(0.25, 0.5, 1.0), sigma_estimator=1.0, n0=10, n=100, alpha=0.01)


@pytest.mark.parametrize(
    ("overrides", "num_classifiers", "width", "fragments"),
    [
        ({"sigma_estimator": 0.9}, 1, 3, ["sigma_estimator = 0.9", ">= max(sigmas) = 1.0"]),
        ({"sigmas": (0.5, 0.25, 1.0)}, 1, 3, ["sigmas = (0.5, 0.25, 1.0)", "strictly increasing"]),
        ({"sigmas": (0.25, 0.25, 1.0)}, 1, 3, ["sigmas = (0.25, 0.25, 1.0)", "strictly"]),
        ({"sigmas": (0.0, 0.5, 1.0)}, 1, 3, ["= 0.0", "> 0"]),
        ({"sigmas": (-0.25, 0.5, 1.0)}, 1, 3, ["= -0.25", "> 0"]),
        ({}, 2, 3, ["2 classifiers", "1 (one model at every sigma) or 3"]),
        ({}, 4, 3, ["4 classifiers", "or 3"]),
        ({}, 1, 2, ["2 columns", "len(sigmas) = 3"]),
        ({}, 3, 4, ["4 columns", "len(sigmas) = 3"]),
        ({"alpha_split": 0}, 1, 3, ["alpha_split = 0", "0 < alpha_split < 1"]),
        ({"alpha_split": 1}, 1, 3, ["alpha_split = 1", "0 < alpha_split < 1"]),
        ({"alpha_split": 1.5}, 1, 3, ["alpha_split = 1.5", "0 < alpha_split < 1"]),
        ({"alpha_split": -0.1}, 1, 3, ["alpha_split = -0.1", "0 < alpha_split < 1"]),
    ],
)
def test_bad_input_one_clear_error_before_sampling(overrides, num_classifiers, width, fragments):
    x = torch.zeros(3)
    estimator = ConstantModel(0, width=width).eval()
    classifiers = [ConstantModel(1, width=2).eval() for _ in range(num_classifiers)]
    kw = {**GOOD, **overrides}
    with pytest.raises(InvalidParameterError, match="valid") as info:
        certify(estimator, classifiers, x, **kw)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert estimator.noisy_calls == 0
    assert all(c.noisy_calls == 0 for c in classifiers)


def test_experts_with_different_numbers_of_classes_rejected_before_sampling():
    estimator = ConstantModel(0, width=2).eval()
    experts = [ConstantModel(1, width=2).eval(), ConstantModel(1, width=3).eval()]
    with pytest.raises(InvalidParameterError, match=r"\[2, 3\] outputs"):
        certify(estimator, experts, torch.zeros(3), **{**GOOD, "sigmas": SIGMAS})
    with pytest.raises(InvalidParameterError, match="num_classes = 3"):
        certify(estimator, experts[:1], torch.zeros(3), **{**GOOD, "sigmas": SIGMAS}, num_classes=3)
    assert estimator.noisy_calls == 0 and all(e.noisy_calls == 0 for e in experts)


def test_bundle_trained_for_other_sigmas_is_rejected_before_sampling():
    x = torch.zeros(3)
    estimator = ConstantModel(0, width=3).eval()
    expert = ConstantModel(1).eval()
    params = DualParams(**GOOD)
    bundle = DualSmoothingModel(estimator, [expert] * 3, sigmas=(0.25, 0.5, 0.75))
    with pytest.raises(InvalidParameterError, match=r"sigmas = \(0.25, 0.5, 0.75\)"):
        prepare(bundle, (x,), params, seed=0)
    estimator.dual_sigmas = (0.1, 0.5, 1.0)
    with pytest.raises(InvalidParameterError, match="the estimator were trained"):
        prepare(DualSmoothingModel(estimator, [expert]), (x,), params, seed=0)
    with pytest.raises(InvalidParameterError, match="2 classifiers"):
        DualSmoothingModel(estimator, [expert] * 2, sigmas=(0.25, 0.5, 1.0))
    assert estimator.noisy_calls == 0 and expert.noisy_calls == 0


# --- shared forward passes and the fast path --------------------------------------------


def test_draw_many_equals_draw_per_input():
    params = DualParams(sigmas=SIGMAS, sigma_estimator=0.5, n0=30, n=300, alpha=0.05)
    w = _unit((1.0, 2.0, -2.0))
    estimator = ThresholdEstimator(w, 0.0).eval()  # index 1 iff w.z > 0
    experts = [LinearExpert(_unit((1.0, 0.0, 0.0)), 0.1), LinearExpert(_unit((0, 1.0, 0)), -0.05)]
    bundle = DualSmoothingModel(estimator, [e.eval() for e in experts]).eval()
    xs = [w * 0.8, -w * 0.8, w * 0.0, w * 0.3 + 0.1, -w * 0.5 + 0.2]  # j = 1, 0, abstain, ...

    def plans():
        return [
            prepare(bundle, (x,), params, seed=100 + i, batch_size=32) for i, x in enumerate(xs)
        ]

    alone = [draw(p) for p in plans()]
    together = draw_many(plans())
    capped = draw_many(plans(), max_batch=64)
    chosen = set()
    for a, b, c in zip(alone, together, capped, strict=True):
        assert [(s.role, s.n, s.counts) for s in a.stages] == [
            (s.role, s.n, s.counts) for s in b.stages
        ]
        assert [s.counts for s in a.stages] == [s.counts for s in c.stages]
        res = decide_dual(b, params)
        chosen.add(res.details.abstained_at or res.details.sigma_index)
    assert {0, 1, "sigma"} <= chosen  # both sigmas and an estimator abstention were shared


def test_fast_path_prepares_each_part_and_still_certifies():
    from smoothcert.sampling.fast_path import PreparedModel, prepare_model

    torch.manual_seed(0)

    def cnn(out):
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(64, out)
        ).eval()

    bundle = DualSmoothingModel(cnn(2), [cnn(3), cnn(3)], sigmas=SIGMAS).eval()
    fast = prepare_model(bundle, channels_last=True)
    assert isinstance(fast, DualSmoothingModel) and fast is not bundle
    assert fast.sigmas == SIGMAS and not fast.training
    parts = [fast.estimator, *fast.classifiers]
    assert all(isinstance(p, PreparedModel) for p in parts)
    assert all(p.options == {"compile": False, "channels_last": True} for p in parts)
    assert parts[0].module[0].weight.is_contiguous(memory_format=torch.channels_last)
    params = DualParams(sigmas=SIGMAS, sigma_estimator=0.5, n0=20, n=200, alpha=0.1)
    x = torch.rand(3, 4, 4)
    ev_fast = draw(prepare(fast, (x,), params, seed=5, batch_size=64))
    ev_ref = draw(prepare(bundle, (x,), params, seed=5, batch_size=64))
    assert [s.role for s in ev_fast.stages] == [s.role for s in ev_ref.stages]
    for a, b in zip(ev_fast.stages, ev_ref.stages, strict=True):
        assert sum(abs(u - v) for u, v in zip(a.counts, b.counts, strict=True)) <= 2
    res = decide_dual(ev_fast, params)
    assert res.method == "dual" and len(res.evidence.stages) in (2, 4)


# --- the oracle coverage test (the key soundness test) -----------------------------------


def _coverage_case(
    *, p_estimator, true_index, p_class, n0, n, alpha, split, runs, seed0, check_oracle=True
):
    """Monte Carlo misses of the implementation and of two mutants on the same evidence.

    Geometry (3-D input x = X3; sigmas (0.25, 0.5), sigma_e = 0.5): the threshold
    estimator picks ``true_index`` at x with smoothed probability ``p_estimator``, so H
    flips at distance D_flip = sigma_e Phi^-1(p_estimator) (closed form). The expert of
    the chosen sigma is linear with smoothed P(class 0) = ``p_class`` (boundary at D_c);
    the other expert is the constant class 1. So the dual classifier G(x') =
    g_{sigmas[H(x')]}(x') is 0 exactly on {H = true_index, g = 0}: its true radius at x
    is min(D_flip, D_c), and beyond the flip it answers 1. A miss: a certificate of class
    1, or of class 0 with a radius above the true one.
    """
    sigma_e = 0.5
    sigma_j = SIGMAS[true_index]
    p_index1 = p_estimator if true_index == 1 else 1 - p_estimator
    estimator = _estimator_for(X3, p_index1, sigma_e)
    chosen = _expert_for(X3, p_class, sigma_j)
    wrong = ConstantModel(1).eval()
    experts = [chosen, wrong] if true_index == 0 else [wrong, chosen]
    d_flip = estimator.flip_distance(X3)
    d_c = chosen.boundary_distance(X3)
    assert d_flip == pytest.approx(sigma_e * norm.ppf(p_estimator), rel=1e-5)
    assert d_c == pytest.approx(sigma_j * norm.ppf(p_class), rel=1e-5)
    r_true = min(d_flip, d_c)
    params = DualParams(
        sigmas=SIGMAS, sigma_estimator=sigma_e, n0=n0, n=n, alpha=alpha, alpha_split=split
    )
    exact = {}
    for name, kw in {
        "dual": {},
        "doubled alpha_1": {"alpha_sigma": 2 * params.alpha_sigma},
        "no min with R_sigma": {"use_min": False},
    }.items():
        exact[name] = exact_miss_probability(
            p_estimator=p_estimator,
            true_index=true_index,
            p_class=p_class,
            true_class=0,
            sigma_estimator=sigma_e,
            sigma_chosen=sigma_j,
            r_true=r_true,
            n0=n0,
            n=n,
            **{
                "alpha_sigma": params.alpha_sigma,
                "alpha_classifier": params.alpha_classifier,
                **kw,
            },
        )
    misses = dict.fromkeys(exact, 0)
    bundle = DualSmoothingModel(estimator, experts).eval()
    for i in range(runs):
        plan = prepare(bundle, (X3,), params, seed=seed0 + i, batch_size=n, probe=i == 0)
        ev = draw(plan)
        res = decide_dual(ev, params)
        counts = tuple(None if ev.stage(r) is None else ev.stage(r).counts for r in ROLES)
        full = counts
        if counts[2] is None:  # a mutant may go on where dual stopped: draw what it would
            source = plan.sources[int(np.argmax(counts[0]))]
            full = (*counts[:2], tuple(source.counts(n0)), tuple(source.counts(n)))
        mutants = {
            "doubled alpha_1": _oracle(full, params, alpha_sigma=2 * params.alpha_sigma),
            "no min with R_sigma": _oracle(full, params, use_min=False),
        }
        if check_oracle:  # the implementation decides as the scipy oracle does
            want = _oracle(counts, params)
            assert res.prediction == want.prediction
            assert res.radius == pytest.approx(want.radius, rel=1e-6, abs=1e-12)
        misses["dual"] += not res.abstained and (res.prediction != 0 or res.radius > r_true)
        for name, m in mutants.items():
            misses[name] += m.prediction is not None and (m.prediction != 0 or m.radius > r_true)
    return exact, misses, r_true, d_flip, d_c


def _assert_coverage(exact, misses, *, runs, alpha, sharp=True):
    rate = exact["dual"]
    assert rate <= alpha  # the guarantee, computed exactly
    threshold = binom.isf(1e-4, runs, rate)
    assert misses["dual"] <= threshold, (misses, exact)
    # two-sided: the exact law is the implementation's (not just an upper bound on it)
    assert misses["dual"] >= binom.ppf(1e-4, runs, rate), (misses, exact)
    if sharp:
        for name in ("doubled alpha_1", "no min with R_sigma"):
            # design: the same check fails for the mutant with probability > 0.9999 ...
            assert binom.sf(threshold, runs, exact[name]) > 0.9999, (name, exact)
            # ... and it does
            assert misses[name] > threshold, (name, misses, exact)


def test_coverage_when_the_estimator_flips_just_outside_r_sigma():
    # The estimator binds: H flips at D_flip = 0.5 Phi^-1(0.7) = 0.262, the chosen
    # expert's boundary is at D_c = 0.5 Phi^-1(0.99) = 1.16 and beyond the flip the
    # other expert answers the wrong class. alpha = 0.2 with alpha_1 = 0.18: the exact
    # miss rate is 0.158 (close to alpha), doubling alpha_1 gives 0.353 and dropping the
    # min with R_sigma 0.999; both are caught with probability > 0.9999.
    runs, alpha = 400, 0.2
    exact, misses, r_true, d_flip, d_c = _coverage_case(
        p_estimator=0.7,
        true_index=1,
        p_class=0.99,
        n0=51,
        n=200,
        alpha=alpha,
        split=0.9,
        runs=runs,
        seed0=0,
    )
    assert r_true == d_flip < d_c
    assert exact["dual"] > 0.7 * alpha  # sharp: near alpha
    _assert_coverage(exact, misses, runs=runs, alpha=alpha)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("p_estimator", "true_index", "p_class", "split", "binds"),
    [
        (0.7, 1, 0.99, 0.5, "sigma"),  # the paper's even split, the estimator binds
        (0.65, 0, 0.999, 0.7, "sigma"),  # the smaller sigma chosen
        (0.995, 0, 0.75, 0.5, "classifier"),  # the classifier binds
    ],
)
def test_coverage_over_many_trials(p_estimator, true_index, p_class, split, binds):
    runs, alpha = 2000, 0.2
    exact, misses, r_true, d_flip, d_c = _coverage_case(
        p_estimator=p_estimator,
        true_index=true_index,
        p_class=p_class,
        n0=51,
        n=200,
        alpha=alpha,
        split=split,
        runs=runs,
        seed0=10_000,
    )
    assert (d_flip < d_c) == (binds == "sigma") and r_true == min(d_flip, d_c)
    _assert_coverage(exact, misses, runs=runs, alpha=alpha, sharp=binds == "sigma")
    if binds == "classifier":
        assert misses["doubled alpha_1"] <= binom.isf(1e-4, runs, exact["doubled alpha_1"])


def test_exact_miss_probability_matches_brute_force_enumeration():
    # The exact law used above, against a direct enumeration of all count outcomes with
    # the scipy decision (tiny n so every outcome is listed).
    n0, n, alpha_1, alpha_2, r_true = 3, 6, 0.3, 0.2, 0.1
    p_e, p_c = 0.8, 0.9
    params = dict(sigmas=SIGMAS, sigma_estimator=0.5, n=n)
    total = 0.0
    for s1 in range(n0 + 1):  # votes for index 1 (true) in the selection
        for e1 in range(n + 1):
            pr1 = binom.pmf(s1, n0, p_e) * binom.pmf(e1, n, p_e)
            j = int(np.argmax((n0 - s1, s1)))
            est1 = (n - e1, e1)
            if cp_lower(est1[j], n, alpha_1) <= 0.5:
                continue
            if j == 0:  # the constant wrong expert: n-of-n votes for class 1
                stage2 = [((0, n0), (0, n), 1.0)]
            else:
                stage2 = [
                    ((s2, n0 - s2), (e2, n - e2), binom.pmf(s2, n0, p_c) * binom.pmf(e2, n, p_c))
                    for s2 in range(n0 + 1)
                    for e2 in range(n + 1)
                ]
            for sel2, est2, pr2 in stage2:
                got = decide(
                    ((n0 - s1, s1), est1, sel2, est2),
                    alpha_sigma=alpha_1,
                    alpha_classifier=alpha_2,
                    **params,
                )
                if got.prediction is not None and (got.prediction != 0 or got.radius > r_true):
                    total += pr1 * pr2
    exact = exact_miss_probability(
        p_estimator=p_e,
        true_index=1,
        p_class=p_c,
        true_class=0,
        sigma_estimator=0.5,
        sigma_chosen=0.5,
        r_true=r_true,
        n0=n0,
        n=n,
        alpha_sigma=alpha_1,
        alpha_classifier=alpha_2,
    )
    assert exact == pytest.approx(total, rel=1e-12, abs=1e-15)
    assert math.isfinite(exact) and 0 < exact < 1


def test_predict_is_cohen_predict_at_the_chosen_sigma_with_alpha_2():
    from smoothcert.decisions.cohen import GaussianPredictParams, decide_predict
    from smoothcert.methods.dual import predict

    kw = dict(sigmas=(0.25, 0.5, 1.0), sigma_estimator=1.0, n=500, alpha=0.01, alpha_split=0.3)
    experts = [ConstantModel(c, width=3).eval() for c in (2, 0, 1)]
    res = predict(ConstantModel(1, width=3).eval(), experts, torch.zeros(3), **kw, seed=2)
    assert res.method == "dual-predict" and res.prediction == 0 and res.radius == 0.0
    assert [s.role for s in res.evidence.stages] == ["sigma_estimation", "prediction"]
    assert experts[0].noisy_calls == experts[2].noisy_calls == 0
    stage2 = Evidence((res.evidence.stage("prediction"),), GaussianFacts(num_classes=3))
    cohen = decide_predict(stage2, GaussianPredictParams(sigma=0.5, n=500, alpha=0.01 * 0.7))
    assert cohen.prediction == res.prediction
    assert res.evidence.stage("sigma_estimation").alpha == pytest.approx(0.003, rel=1e-15)
    assert res.evidence.stage("prediction").alpha == pytest.approx(0.007, rel=1e-15)
    # an estimator at its threshold (a coin between two sigmas) abstains; no classifier samples
    x = torch.zeros(3)
    coin = _estimator_for(x, 0.5, 1.0)
    expert = ConstantModel(0).eval()
    res = predict(coin, [expert], x, **{**kw, "sigmas": SIGMAS})
    assert res.abstained and res.details.abstained_at == "sigma" and expert.noisy_calls == 0

"""Sequential Gaussian certification (``cohen-sequential``) against independent oracles.

The pure loop is driven with simulated Bernoulli streams whose class probability is known
(the anytime-validity checks), and the torch half with linear models whose smoothed
probability is ``Phi((w.x + b) / (sigma ||w||))`` (DESIGN.md soundness rule 3).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from pipeline_toys import METHOD_RUNS, toy_for
from smoothcert.decisions.cohen import GaussianFacts
from smoothcert.decisions.sequential import (
    SequentialParams,
    decide_sequential,
    next_round_size,
    schedule,
    sequential_state,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.cohen import certify, certify_sequential
from smoothcert.records import CertifyResult, Evidence, StageEvidence
from smoothcert.results import read_results
from smoothcert.runner import RunConfig, run_certification
from smoothcert.stats.sequential import sequence_lower


class Linear(torch.nn.Module):
    """Class 1 iff w.x + b > 0: smoothed P(1) = Phi((w.x + b) / (sigma ||w||))."""

    def __init__(self, dim: int = 3) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(dim) / math.sqrt(dim), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w
        return torch.stack([-z, z], dim=1)


class Recorder(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def at_margin(margin: float, dim: int = 3) -> torch.Tensor:
    """An input at signed L2 distance ``margin`` from the decision plane of :class:`Linear`."""
    return torch.full((dim,), margin / math.sqrt(dim))


def simulate(params: SequentialParams, p: float, rng: np.random.Generator) -> CertifyResult:
    """Run the pure loop on a Bernoulli(p) stream for class 1 (selection picks class 1)."""
    stages = [StageEvidence("selection", n=params.n0, alpha=0.0, counts=(0, params.n0))]
    facts = GaussianFacts(num_classes=2)
    while (size := next_round_size(params, Evidence(tuple(stages), facts))) is not None:
        k = int(rng.binomial(size, p))
        stages.append(StageEvidence("round", n=size, alpha=0.0, counts=(size - k, k)))
    return decide_sequential(Evidence(tuple(stages), facts, seed=0), params)


def target_params(**kw) -> SequentialParams:
    base = {"sigma": 0.5, "n0": 10, "alpha": 0.001, "max_samples": 100_010}
    base.update(kw)
    return SequentialParams(**base)


# -- the pure loop -------------------------------------------------------------------


def test_schedule_spends_exactly_the_budget_left_after_selection() -> None:
    params = target_params(target_radii=(0.25,), first_round=100)
    checkpoints = schedule(params)
    assert checkpoints[0] == 100 and checkpoints[1] == 200
    assert checkpoints[-1] == 100_000
    assert all(b > a for a, b in zip(checkpoints, checkpoints[1:], strict=False))


def test_an_obvious_input_stops_after_the_first_round_with_a_target_radius() -> None:
    params = target_params(target_radii=(0.5,))
    res = simulate(params, 1.0, np.random.default_rng(0))
    assert res.details.rounds == 1 and res.details.stop == "decided"
    assert res.samples_used == params.n0 + params.first_round
    assert res.prediction == 1 and res.radius >= 0.5
    assert res.details.targets_certified == (0.5,)


def test_hopeless_input_stops_early_and_abstains() -> None:
    params = target_params(target_radii=(0.5,))
    res = simulate(params, 0.3, np.random.default_rng(0))
    assert res.abstained and res.details.stop == "refuted"
    assert res.samples_used < 2_000


def test_out_of_reach_target_stops_without_certifying_it() -> None:
    # p = 0.7 certifies 0.1 but can never certify 2.0 (Phi(4) = 0.99997)
    params = target_params(target_radii=(0.1, 2.0))
    res = simulate(params, 0.7, np.random.default_rng(1))
    assert res.details.stop == "decided"
    assert res.details.targets_certified == (0.1,)
    assert 0.1 <= res.radius < 2.0
    assert res.samples_used < params.max_samples


def test_undecided_input_spends_the_budget_and_abstains_when_no_target_is_certified() -> None:
    # Counts at every checkpoint sit right at the target's threshold: never certified,
    # never ruled out, so the loop asks for every round and the result abstains.
    sigma, r = 0.5, 0.5
    params = target_params(sigma=sigma, target_radii=(r,), max_samples=5_010, alpha=0.01)
    threshold = float(norm.cdf(r / sigma))
    stages = [StageEvidence("selection", n=params.n0, alpha=0.0, counts=(0, params.n0))]
    done = 0
    while size := next_round_size(params, Evidence(tuple(stages), GaussianFacts(num_classes=2))):
        k = round(threshold * (done + size)) - sum(s.counts[1] for s in stages[1:])
        stages.append(StageEvidence("round", n=size, alpha=0.0, counts=(size - k, k)))
        done += size
    assert done == schedule(params)[-1]
    res = decide_sequential(Evidence(tuple(stages), GaussianFacts(num_classes=2)), params)
    assert res.details.stop == "budget" and res.samples_used == params.max_samples
    assert res.abstained and res.radius == 0.0 and res.details.targets_certified == ()


def test_target_mode_abstains_below_the_smallest_target_although_p_lower_exceeds_half() -> None:
    params = target_params(target_radii=(1.0,), max_samples=1_010, first_round=1_000)
    stages = (
        StageEvidence("selection", n=10, alpha=0.0, counts=(0, 10)),
        StageEvidence("round", n=1000, alpha=0.0, counts=(300, 700)),
    )
    res = decide_sequential(Evidence(stages, GaussianFacts(num_classes=2)), params)
    assert res.p_lower > 0.5 and res.abstained and res.radius == 0.0
    assert res.details.stop == "budget"  # one round is the whole budget
    precision = dataclasses.replace(params, target_radii=(), tolerance=0.05)
    res = decide_sequential(Evidence(stages, GaussianFacts(num_classes=2)), precision)
    assert not res.abstained and 0 < res.radius < 1.0


def test_precision_mode_stops_when_the_radius_cannot_grow_by_the_tolerance() -> None:
    params = target_params(tolerance=0.05)
    res = simulate(params, 0.8, np.random.default_rng(3))
    assert res.details.stop == "converged"
    state = sequential_state(
        params,
        int(
            res.evidence.stages[-1].counts[1] + sum(s.counts[1] for s in res.evidence.stages[1:-1])
        ),
        res.samples_used - params.n0,
    )
    assert state.stop == "converged" and state.radius == res.radius
    # the radius is within the tolerance of what the budget could reach at p = 0.8
    assert res.radius > 0.5 * norm.ppf(0.8) - 0.05 - 0.02


def test_the_decision_is_the_class_of_the_selection_stage_only() -> None:
    params = target_params(target_radii=(0.1,), max_samples=1_010, first_round=1_000)
    stages = (
        StageEvidence("selection", n=10, alpha=0.0, counts=(10, 0)),
        StageEvidence("round", n=1000, alpha=0.0, counts=(0, 1000)),
    )
    res = decide_sequential(Evidence(stages, GaussianFacts(num_classes=2)), params)
    assert res.abstained and res.p_lower == 0.0


def test_only_the_last_round_records_the_alpha_of_the_sequence() -> None:
    res = simulate(target_params(target_radii=(3.0,), alpha=0.01), 0.999, np.random.default_rng(4))
    alphas = [s.alpha for s in res.evidence.stages]
    assert alphas[-1] == 0.01 and set(alphas[:-1]) == {0.0}


def test_evidence_with_other_round_sizes_is_refused() -> None:
    params = target_params(target_radii=(0.1,))
    stages = (
        StageEvidence("selection", n=10, alpha=0.0, counts=(0, 10)),
        StageEvidence("round", n=150, alpha=0.0, counts=(0, 150)),
    )
    with pytest.raises(InvalidParameterError, match="round 1 drew n = 150"):
        decide_sequential(Evidence(stages, GaussianFacts(num_classes=2)), params)
    with pytest.raises(InvalidParameterError, match="no 'round' stage"):
        decide_sequential(Evidence(stages[:1], GaussianFacts(num_classes=2)), params)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"max_samples": 0}, r"max_samples = 0 is invalid; valid range: integer max_samples >= 1"),
        ({"max_samples": 10}, r"max_samples = 10 is invalid; valid range: max_samples > n0"),
        ({"target_radii": (-0.5,)}, r"target_radius = -0.5 is invalid"),
        ({"target_radii": (), "tolerance": 0.0}, r"tolerance = 0.0 is invalid"),
        ({"target_radii": (), "tolerance": -1.0}, r"tolerance = -1.0 is invalid"),
        ({"target_radii": ()}, r"exactly one of them"),
        ({"tolerance": 0.1}, r"exactly one of them"),
        ({"growth": 1.0}, r"growth = 1.0 is invalid; valid range: finite growth > 1"),
        ({"bound": "hoeffding"}, r"bound = 'hoeffding' is invalid"),
        ({"first_round": 0}, r"first_round = 0 is invalid"),
        ({"final_share": 1.0}, r"final_share = 1.0 is invalid; valid range: 0 < final_share < 1"),
        ({"futility_z": -1.0}, r"futility_z = -1.0 is invalid"),
    ],
)
def test_bad_parameters_are_one_clear_error(kw, match) -> None:
    base = {"target_radii": (0.25,)}
    base.update(kw)
    with pytest.raises(InvalidParameterError, match=match):
        target_params(**base)


# -- anytime validity of the whole loop (the stopping rule is the adversary) --------


def wrong_certificate_rate(params: SequentialParams, p: float, trials: int, seed: int) -> float:
    """Fraction of runs certifying a radius the truth p does not support."""
    rng = np.random.default_rng(seed)
    true_radius = params.sigma * norm.ppf(p) if p > 0.5 else 0.0
    wrong = 0
    for _ in range(trials):
        res = simulate(params, p, rng)
        wrong += int(not res.abstained and res.radius >= true_radius)
    return wrong / trials


@pytest.mark.parametrize("bound", ["union", "mixture"])
def test_target_mode_stops_at_the_first_crossing_and_stays_under_alpha(bound) -> None:
    # p exactly at the threshold of the target: certifying it is always wrong, and target
    # mode stops the first time the bound crosses (the adversarial stopping rule)
    sigma, r, alpha = 0.5, 0.5, 0.2
    params = target_params(
        sigma=sigma, alpha=alpha, target_radii=(r,), max_samples=1_210, first_round=20, bound=bound
    )
    rate = wrong_certificate_rate(params, float(norm.cdf(r / sigma)), 300, seed=5)
    assert rate <= alpha


def test_peeking_without_the_union_bound_is_caught() -> None:
    # Mutant: Clopper-Pearson at the full alpha at every checkpoint. The same check as
    # above must fail for it, so the check has the power to catch an unsound loop.
    from smoothcert.stats.binomial import clopper_pearson_lower

    sigma, r, alpha = 0.5, 0.5, 0.2
    p = float(norm.cdf(r / sigma))
    params = target_params(
        sigma=sigma, alpha=alpha, target_radii=(r,), max_samples=1_210, first_round=20
    )
    rng = np.random.default_rng(5)
    wrong = 0
    trials = 300
    for _ in range(trials):
        k = n = 0
        for checkpoint in schedule(params):
            k += int(rng.binomial(checkpoint - n, p))
            n = checkpoint
            if clopper_pearson_lower(k, n, alpha=alpha) >= p:
                wrong += 1
                break
    assert wrong / trials > alpha


@pytest.mark.slow
@pytest.mark.parametrize("bound", ["union", "mixture"])
@pytest.mark.parametrize("mode", ["target", "precision"])
def test_anytime_validity_over_many_streams_near_the_threshold(bound, mode) -> None:
    sigma, alpha = 0.5, 0.1
    for p in (0.69, float(norm.cdf(1.0)), 0.95):
        kw = {"target_radii": (0.25, 0.5, 0.75)} if mode == "target" else {"tolerance": 0.05}
        params = target_params(
            sigma=sigma, alpha=alpha, max_samples=5_010, first_round=20, bound=bound, **kw
        )
        assert wrong_certificate_rate(params, p, 600, seed=6) <= alpha


# -- the torch half --------------------------------------------------------------------


def test_linear_model_certifies_the_target_with_few_samples_and_below_the_exact_radius() -> None:
    model = Linear().eval()
    x = at_margin(1.0)  # exact robust radius 1.0
    res = certify_sequential(
        model, x, sigma=0.25, alpha=0.001, max_samples=100_100, target_radius=0.5, seed=0
    )
    assert res.method == "cohen-sequential" and res.prediction == 1
    assert 0.5 <= res.radius < 1.0
    assert res.samples_used < 1_000  # fixed n spends 100,100
    assert res.samples_used == sum(s.n for s in res.evidence.stages)
    assert res.details.samples_used == res.samples_used


def test_same_seed_same_rounds_and_decision_other_seed_other_counts() -> None:
    model = Linear().eval()
    x = at_margin(0.3)
    kw = {"sigma": 0.5, "alpha": 0.01, "max_samples": 20_100, "tolerance": 0.05}
    a = certify_sequential(model, x, seed=7, **kw)
    b = certify_sequential(model, x, seed=7, **kw)
    c = certify_sequential(model, x, seed=8, **kw)
    strip = lambda r: dataclasses.replace(  # noqa: E731
        r, seconds=0.0, evidence=dataclasses.replace(r.evidence, seconds=0.0)
    )
    assert strip(a) == strip(b)
    assert a.evidence.stages != c.evidence.stages


def test_rounds_are_fresh_draws_of_one_generator() -> None:
    # With the budget spent in one round of n, the counts are those of fixed-n CERTIFY
    # with the same seed (same generator, selection then estimation).
    model = Linear().eval()
    x = at_margin(0.2)
    seq = certify_sequential(
        model,
        x,
        sigma=0.5,
        alpha=0.01,
        max_samples=2_100,
        target_radius=5.0,
        first_round=2_000,
        seed=11,
        batch_size=500,
    )
    fixed = certify(model, x, sigma=0.5, n0=100, n=2_000, alpha=0.01, seed=11, batch_size=500)
    assert seq.evidence.stages[0].counts == fixed.evidence.stages[0].counts
    assert seq.evidence.stages[1].counts == fixed.evidence.stages[1].counts


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"max_samples": 0}, "max_samples = 0 is invalid"),
        ({"target_radius": -0.1}, "target_radius = -0.1 is invalid"),
        ({"target_radius": None, "tolerance": 0.0}, "tolerance = 0.0 is invalid"),
        ({"sigma": 0.0}, "sigma = 0.0 is invalid"),
    ],
)
def test_bad_input_fails_before_any_forward_pass(kw, match) -> None:
    model = Recorder(Linear()).eval()
    args = {"sigma": 0.5, "alpha": 0.01, "max_samples": 1_000, "target_radius": 0.5}
    args.update(kw)
    with pytest.raises(InvalidParameterError, match=match):
        certify_sequential(model, at_margin(1.0), **args)
    assert model.calls == 0


@pytest.mark.slow
def test_coverage_of_the_torch_loop_on_a_linear_model_at_large_alpha() -> None:
    # exact radius 0.5 = the target: any certificate at the target is wrong
    model = Linear().eval()
    x = at_margin(0.5)
    alpha, trials = 0.2, 200
    wrong = 0
    for seed in range(trials):
        res = certify_sequential(
            model,
            x,
            sigma=0.5,
            alpha=alpha,
            max_samples=2_020,
            target_radius=0.5,
            n0=20,
            first_round=20,
            seed=seed,
            batch_size=2_000,
        )
        wrong += int(not res.abstained)
    assert wrong / trials <= alpha


# -- dataset runs ------------------------------------------------------------------------


def test_dataset_run_records_samples_and_rounds_and_resumes_an_interrupted_input(
    tmp_path,
) -> None:
    kind, params = METHOD_RUNS["cohen-sequential"]
    model, data = toy_for(kind)
    config = RunConfig(
        method="cohen-sequential",
        params=params,
        model="toy",
        dataset=data.name,
        split="test",
        batch_size=64,
        seed=3,
    )
    reference = run_certification(config, tmp_path / "ref.jsonl", model=model, dataset=data)
    records = read_results(reference).records
    used = [r["details"]["samples_used"] for r in records]
    assert all(params["n0"] < u <= params["max_samples"] for u in used)
    assert len(set(used)) > 1  # inputs stop at different rounds
    for r in records:
        assert r["details"]["rounds"] == sum(s["role"] == "round" for s in r["evidence"]["stages"])
    # an input interrupted mid-way (its line half-written) restarts from scratch with its
    # own seed and gets the record of an uninterrupted run
    data_bytes = reference.read_bytes()
    offsets = [i for i, b in enumerate(data_bytes) if b == ord("\n")]
    crashed = tmp_path / "crashed.jsonl"
    crashed.write_bytes(data_bytes[: offsets[4] + (offsets[5] - offsets[4]) // 2])
    run_certification(config, crashed, model=model, dataset=data)

    def strip(rs):
        return [{**r, "seconds": 0, "evidence": {**r["evidence"], "seconds": 0}} for r in rs]

    assert strip(read_results(crashed).records) == strip(records)


def test_sequence_bound_used_is_the_recorded_p_lower() -> None:
    params = target_params(target_radii=(0.25,), bound="mixture")
    res = simulate(params, 0.9, np.random.default_rng(9))
    k = sum(s.counts[1] for s in res.evidence.stages if s.role == "round")
    n = res.samples_used - params.n0
    assert res.p_lower == float(
        sequence_lower(k, n, alpha=params.alpha, bound="mixture", checkpoints=schedule(params))
    )


def test_futility_gives_up_on_a_target_the_rate_cannot_reach_and_stays_sound() -> None:
    # p = 0.9985 sits just below the threshold of 0.75 at sigma 0.25 (Phi(3) = 0.99865):
    # the upper bound needs a huge sample to rule 0.75 out; the futility guess does not.
    params = target_params(sigma=0.25, target_radii=(0.5, 0.75))
    slow = simulate(params, 0.9985, np.random.default_rng(10))
    fast = simulate(dataclasses.replace(params, futility_z=1.0), 0.9985, np.random.default_rng(10))
    assert fast.samples_used < slow.samples_used
    assert fast.details.targets_certified == (0.5,)
    # the guess only moves the stop: the certificate is the bound at the stop
    assert fast.p_lower == float(
        sequence_lower(
            sum(s.counts[1] for s in fast.evidence.stages[1:]),
            fast.samples_used - params.n0,
            alpha=params.alpha,
            bound="union",
            checkpoints=schedule(params),
            final_share=params.final_share,
        )
    )


@pytest.mark.parametrize("z", [0.0, 1.0])
def test_futility_keeps_anytime_validity(z) -> None:
    sigma, r, alpha = 0.5, 0.5, 0.2
    params = target_params(
        sigma=sigma,
        alpha=alpha,
        target_radii=(r,),
        max_samples=1_210,
        first_round=20,
        futility_z=z,
    )
    assert wrong_certificate_rate(params, float(norm.cdf(r / sigma)), 200, seed=12) <= alpha

"""Soft-score smoothing (method ``soft``) against independent oracles (DESIGN.md rule 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm
from typer.testing import CliRunner

import smoothcert.decisions.soft as soft_decisions
from smoothcert.cli import app
from smoothcert.decisions.cohen import GaussianFacts
from smoothcert.decisions.soft import SoftParams, decide_soft, decide_soft_top2
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.registry import get_method
from smoothcert.methods.sampler import draw
from smoothcert.methods.soft import certify, prepare
from smoothcert.records import CertifyResult, Evidence, StageEvidence
from smoothcert.sampling.scores import SCORE_SCALE

QUANTUM = 1.0 / SCORE_SCALE


class LinearBinary(torch.nn.Module):
    """Logits (z, -z), z = w.x + b: smoothed P(argmax = 0) = Phi((w.x + b) / (sigma ||w||))."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w.clone(), requires_grad=False)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w.flatten() + self.b
        return torch.stack([z, -z], dim=1)

    def p_class0(self, x: torch.Tensor, sigma: float) -> float:
        margin = float(x.flatten() @ self.w.flatten()) + self.b
        return float(norm.cdf(margin / (sigma * float(self.w.norm()))))


class ConstantLogits(torch.nn.Module):
    """The same logits for every input: every score is deterministic (variance 0)."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.logits.expand(x.shape[0], -1).clone()


def hoeffding(mean: float, n: int, alpha: float) -> float:
    return mean - math.sqrt(math.log(1 / alpha) / (2 * n))


def bernstein(mean: float, var: float, n: int, alpha: float) -> float:
    log_term = math.log(2 / alpha)
    return mean - math.sqrt(2 * var * log_term / n) - 7 * log_term / (3 * (n - 1))


# --- parameters and bad input -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"temperature": 0.0}, "temperature = 0.0 is invalid"),
        ({"temperature": -2.0}, "temperature = -2.0 is invalid"),
        ({"temperature": float("inf")}, "temperature = inf is invalid"),
        ({"score_map": "argmax"}, "score_map = 'argmax' is invalid.*'hardmax', 'softmax'"),
        ({"score_bound": "kelly"}, "score_bound = 'kelly' is invalid.*'hoeffding'"),
        ({"n": 1}, "n = 1 is invalid with score_bound = 'bernstein'"),
        ({"sigma": 0.0}, "sigma = 0.0 is invalid"),
        ({"alpha": 1.0}, "alpha = 1.0 is invalid"),
    ],
)
def test_bad_parameters_raise_clear_errors_before_any_sampling(kwargs, needle) -> None:
    model = ConstantLogits([1.0, 0.0]).eval()
    args = {"sigma": 0.5, "n0": 5, "n": 20, "alpha": 0.01, **kwargs}
    with pytest.raises(InvalidParameterError, match=needle):
        certify(model, torch.zeros(3), **args)
    assert model.calls == 0
    with pytest.raises(InvalidParameterError, match=needle):
        SoftParams(**args)


def test_bad_inputs_raise_before_sampling() -> None:
    model = ConstantLogits([1.0, 0.0]).eval()
    with pytest.raises(InvalidParameterError, match="NaN or Inf"):
        certify(model, torch.tensor([0.0, float("nan")]), sigma=0.5, n0=5, n=20, alpha=0.01)
    assert model.calls == 0
    SoftParams(sigma=0.5, n0=1, n=1, alpha=0.1, score_bound="hoeffding")  # n = 1 is fine here


# --- oracles ------------------------------------------------------------------------------


@pytest.mark.parametrize("score_bound", ["hoeffding", "bernstein"])
def test_constant_logits_give_the_exact_score_and_zero_variance(score_bound) -> None:
    model = ConstantLogits([2.0, 0.0, 0.0]).eval()
    n, alpha, sigma = 400, 0.01, 0.5
    res = certify(
        model,
        torch.zeros(4),
        sigma=sigma,
        n0=10,
        n=n,
        alpha=alpha,
        score_map="softmax",
        temperature=1.0,
        score_bound=score_bound,
    )
    exact = math.exp(2) / (math.exp(2) + 2)
    assert res.prediction == 0 and res.details is not None
    assert exact - 2 * QUANTUM <= res.details.mean <= exact
    assert 0 <= res.details.variance <= 2 * QUANTUM
    want = (
        hoeffding(exact, n, alpha) if score_bound == "hoeffding" else bernstein(exact, 0, n, alpha)
    )
    assert res.p_lower == pytest.approx(want, abs=1e-7) and res.p_lower <= want + 1e-12
    assert res.radius == pytest.approx(sigma * norm.ppf(want), abs=1e-6)
    # sparsemax of (0.2, 0, 0): (7/15, 4/15, 4/15), below 1/2: abstain
    res = certify(
        ConstantLogits([0.2, 0.0, 0.0]).eval(),
        torch.zeros(4),
        sigma=sigma,
        n0=10,
        n=n,
        alpha=alpha,
        score_map="sparsemax",
        score_bound=score_bound,
    )
    assert res.abstained and res.radius == 0.0
    z0 = float(np.float32(0.2))  # the model's float32 logit
    assert res.details.mean == pytest.approx((2 * z0 + 1) / 3, abs=2 * QUANTUM)


@pytest.mark.parametrize("score_map", ["hardmax", "softmax", "sparsemax"])
@pytest.mark.parametrize("score_bound", ["hoeffding", "bernstein"])
def test_decision_matches_an_independent_computation(score_map, score_bound) -> None:
    model = LinearBinary(torch.tensor([1.5, -0.5]), 0.1).eval()
    n, alpha, sigma = 300, 0.005, 0.4
    res = certify(
        model,
        torch.tensor([0.6, 0.1]),
        sigma=sigma,
        n0=20,
        n=n,
        alpha=alpha,
        score_map=score_map,
        temperature=3.0,
        score_bound=score_bound,
        seed=4,
    )
    sel, est = res.evidence.stages
    top = int(np.argmax(sel.score_sums))
    total, sq = est.score_sums[top], est.score_sq_sums[top]
    mean = total / n
    var = (sq - total**2 / n) / (n - 1)
    want = (
        hoeffding(mean, n, alpha) if score_bound == "hoeffding" else bernstein(mean, var, n, alpha)
    )
    assert want > 0.5 and res.prediction == top == 0
    assert res.p_lower == pytest.approx(want, abs=1e-9)
    assert res.radius == pytest.approx(sigma * norm.ppf(want), abs=1e-8)
    assert res.details.mean == pytest.approx(mean, abs=1e-12)
    assert res.details.variance == pytest.approx(var, abs=1e-12)
    assert res.details.score_bound == score_bound
    assert est.alpha == alpha and sel.alpha == 0.0
    if score_map == "hardmax":  # votes: the score sums are the counts
        assert list(est.score_sums) == [float(c) for c in est.counts]
    # a doubled-alpha mutant is a different (larger) number: this test catches it
    doubled = (
        hoeffding(mean, n, 2 * alpha)
        if score_bound == "hoeffding"
        else bernstein(mean, var, n, 2 * alpha)
    )
    assert doubled - res.p_lower > 1e-4
    assert CertifyResult.from_json(res.to_json()) == res


def linear_evidences(model, x, sigma, n0, n, seeds) -> list[Evidence]:
    params = SoftParams(
        sigma=sigma, n0=n0, n=n, alpha=0.2, score_map="hardmax", score_bound="hoeffding"
    )
    return [
        draw(prepare(model, (x,), params, seed=s, batch_size=256, num_classes=2, probe=False))
        for s in seeds
    ]


def failures(evidences, truth, params) -> int:
    """How often the certified lower bound exceeds the true smoothed score of the class."""
    bad = 0
    for ev in evidences:
        res = decide_soft(ev, params)
        top = int(np.argmax(ev.stages[0].score_sums))
        bad += res.p_lower > truth[top]
    return bad


@pytest.fixture(scope="module")
def coverage_runs():
    """Monte Carlo runs on linear models with a closed-form smoothed hardmax score."""
    sigma = 0.5
    model = LinearBinary(torch.tensor([1.0, 0.0]), 0.0).eval()
    x = torch.tensor([0.3 * sigma, 0.0])  # P(class 0) = Phi(0.3)
    p0 = model.p_class0(x, sigma)
    assert p0 == pytest.approx(norm.cdf(0.3))
    typical = linear_evidences(model, x, sigma, 5, 50, range(300))
    x_edge = torch.tensor([0.0, 0.0])  # on the boundary: P = 1/2 for both classes
    edge = linear_evidences(model, x_edge, sigma, 1, 2, range(1000, 4000))
    return sigma, (typical, (p0, 1 - p0)), (edge, (0.5, 0.5))


def threshold(trials: int, alpha: float) -> int:
    """Failures a valid bound exceeds with probability < 1e-4."""
    return int(binom.ppf(1 - 1e-4, trials, alpha))


@pytest.mark.parametrize("score_bound", ["hoeffding", "bernstein"])
def test_monte_carlo_coverage_of_the_lower_bound(coverage_runs, score_bound, monkeypatch) -> None:
    sigma, (typical, truth), _ = coverage_runs
    alpha = 0.2
    params = SoftParams(
        sigma=sigma, n0=5, n=50, alpha=alpha, score_map="hardmax", score_bound=score_bound
    )
    assert failures(typical, truth, params) <= threshold(len(typical), alpha)
    # the check has power: a bound without its width fails about half of the time
    monkeypatch.setattr(soft_decisions, "soft_lower", lambda mean, variance, **kw: mean)
    assert failures(typical, truth, params) > threshold(len(typical), alpha)


def test_monte_carlo_coverage_catches_a_doubled_alpha_mutant(coverage_runs, monkeypatch) -> None:
    # With n = 2 votes at P = 1/2 Hoeffding is nearly tight: the bound at alpha = 0.2 never
    # exceeds 1/2, the bound at 2 alpha exceeds it whenever both votes agree (rate 1/4).
    sigma, _, (edge, truth) = coverage_runs
    alpha = 0.2
    params = SoftParams(
        sigma=sigma, n0=1, n=2, alpha=alpha, score_map="hardmax", score_bound="hoeffding"
    )
    assert failures(edge, truth, params) <= threshold(len(edge), alpha)
    original = soft_decisions.soft_lower

    def doubled(mean, variance, *, n, alpha, score_bound):
        return original(mean, variance, n=n, alpha=2 * alpha, score_bound=score_bound)

    monkeypatch.setattr(soft_decisions, "soft_lower", doubled)
    assert failures(edge, truth, params) > threshold(len(edge), alpha)


class ThreeClass(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1)
        return torch.stack([2 * z[:, 0], z[:, 1], -z[:, 0] - z[:, 1]], dim=1)


def hoeffding_up(mean: float, n: int, alpha: float) -> float:
    return mean + math.sqrt(math.log(1 / alpha) / (2 * n))


def bernstein_up(mean: float, var: float, n: int, alpha: float) -> float:
    log_term = math.log(2 / alpha)
    return mean + math.sqrt(2 * var * log_term / n) + 7 * log_term / (3 * (n - 1))


@pytest.mark.parametrize("score_bound", ["hoeffding", "bernstein"])
def test_top2_matches_an_independent_computation(score_bound) -> None:
    n, alpha, sigma = 400, 0.01, 0.5
    x = torch.tensor([0.8, 0.2])
    res = certify(
        ThreeClass().eval(),
        x,
        sigma=sigma,
        n0=20,
        n=n,
        alpha=alpha,
        score_map="softmax",
        temperature=2.0,
        score_bound=score_bound,
        top2=True,
    )
    assert res.method == "soft-top2"
    sel, est = res.evidence.stages
    top = int(np.argmax(sel.score_sums))
    sums, sq = np.array(est.score_sums), np.array(est.score_sq_sums)
    means, var = sums / n, (sq - sums**2 / n) / (n - 1)
    half = alpha / 2
    if score_bound == "hoeffding":
        lower = hoeffding(means[top], n, half)
        upper = max(hoeffding_up(means[c], n, half) for c in range(3) if c != top)
    else:
        lower = bernstein(means[top], var[top], n, half)
        upper = max(bernstein_up(means[c], var[c], n, half) for c in range(3) if c != top)
    upper = min(upper, 1 - lower)
    assert lower > upper and res.prediction == top == 0
    assert res.p_lower == pytest.approx(lower, abs=1e-9)
    assert res.p_upper == pytest.approx(upper, abs=1e-9)
    want = sigma / 2 * (norm.ppf(lower) - norm.ppf(upper))
    assert res.radius == pytest.approx(want, abs=1e-8)
    # the same evidence, one-class: the bound at the full alpha
    one = decide_soft(res.evidence, res.params)
    assert one.p_lower > res.p_lower and one.evidence.stages == res.evidence.stages
    assert decide_soft_top2(one.evidence, one.params) == res


# --- soundness rule 1: the class comes from the selection stage only -----------------------


def disagreeing_evidence() -> Evidence:
    """Selection says class 1; estimation says class 0 (0.7) over class 1 (0.3)."""
    sel = StageEvidence(
        "selection", n=10, alpha=0.0, counts=(2, 8), score_sums=(2.5, 7.5), score_sq_sums=(1.0, 6.0)
    )
    est = StageEvidence(
        "estimation",
        n=1000,
        alpha=0.0,
        counts=(700, 300),
        score_sums=(700.0, 300.0),
        score_sq_sums=(700.0, 300.0),
    )
    return Evidence((sel, est), GaussianFacts(num_classes=2), seed=0)


def follows_selection(decide) -> bool:
    params = SoftParams(sigma=0.5, n0=10, n=1000, alpha=0.2, score_map="hardmax")
    res = decide(disagreeing_evidence(), params)
    # class 1 bounded on its estimation mean 0.3: abstain; class 0 would certify
    return res.abstained and res.details.mean == pytest.approx(0.3, abs=1e-12)


@pytest.mark.parametrize("decide", [decide_soft, decide_soft_top2])
def test_the_class_is_chosen_on_selection_samples_only(decide, monkeypatch) -> None:
    assert follows_selection(decide)

    # a mutant that picks A from the estimation stage is detected
    def leaky_select(evidence, params):
        return int(np.argmax(evidence.stage("estimation").score_sums))

    monkeypatch.setattr(soft_decisions, "select_class", leaky_select)
    assert not follows_selection(decide)


def test_evidence_that_does_not_fit_is_rejected() -> None:
    params = SoftParams(sigma=0.5, n0=10, n=1000, alpha=0.2)
    ev = disagreeing_evidence()
    no_scores = Evidence(
        tuple(StageEvidence(s.role, n=s.n, alpha=0.0, counts=s.counts) for s in ev.stages),
        ev.facts,
    )
    with pytest.raises(InvalidParameterError, match="no score sums"):
        decide_soft(no_scores, params)
    with pytest.raises(InvalidParameterError, match="drew n = 1000 samples but the parameters"):
        decide_soft(ev, SoftParams(sigma=0.5, n0=10, n=999, alpha=0.2))


# --- registry and CLI -----------------------------------------------------------------------


def test_registry_entry() -> None:
    spec = get_method("soft")
    assert spec.params_type is SoftParams and spec.decide is decide_soft
    assert spec.load_preparer() is prepare
    top2 = get_method("soft-top2")
    assert top2.params_type is SoftParams and top2.decide is decide_soft_top2
    params = spec.params({"sigma": 0.25, "n0": 10, "n": 100, "alpha": 0.01, "temperature": 2})
    assert params == SoftParams(sigma=0.25, n0=10, n=100, alpha=0.01, temperature=2.0)


def test_cli_rejects_foreign_options_with_the_soft_flags() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["certify", "--method", "soft", "--bound", "union"])
    assert result.exit_code == 2
    assert "--bound is not an option of method 'soft'" in result.stderr
    assert "--score-map" in result.stderr and "--score-bound" in result.stderr
    result = runner.invoke(app, ["certify", "--method", "cohen", "--temperature", "2"])
    assert result.exit_code == 2 and "--temperature is not an option" in result.stderr
    result = runner.invoke(app, ["certify", "--method", "soft", "--temperature", "0"])
    assert result.exit_code == 2 and "temperature = 0.0 is invalid" in result.stderr

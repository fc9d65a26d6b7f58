"""Method ``lipschitz``: soft smoothing with the Lipschitz-aware radius of a certified model."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from smoothcert.certificates import (
    gaussian_radius,
    lipschitz_radius,
    softmax_score_lipschitz,
)
from smoothcert.cli import app
from smoothcert.decisions.cohen import GaussianFacts
from smoothcert.decisions.lipschitz import LipschitzParams, decide_lipschitz
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.lipschitz import certify, prepare
from smoothcert.methods.registry import get_method
from smoothcert.models import lipschitz_upper_bound, load_model
from smoothcert.records import Evidence, ScoreHistograms, StageEvidence
from smoothcert.stats.bounded import (
    betting_histogram_lower,
    empirical_bernstein_lower,
    hoeffding_lower,
    score_histogram,
)

SQRT2_4 = math.sqrt(2.0) / 4.0


class Counting(torch.nn.Module):
    """A linear 2-class model that counts its forward passes."""

    def __init__(self, lipschitz: float | None) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
            self.lin.bias.zero_()
        if lipschitz is not None:
            self.lipschitz = lipschitz
        self.calls = 0
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.lin(x)


def params(**kw) -> LipschitzParams:
    base = {
        "sigma": 0.5,
        "n0": 10,
        "n": 1000,
        "alpha": 0.001,
        "temperature": 2.0,
        "logit_lipschitz": 1.0,
    }
    base.update(kw)
    return LipschitzParams(**base)


def evidence(sel_sums, est_sums, est_sq, *, n0=10, n=1000) -> Evidence:
    k = len(sel_sums)
    sel = StageEvidence(
        "selection",
        n=n0,
        alpha=0.0,
        counts=(n0,) + (0,) * (k - 1),
        score_sums=tuple(sel_sums),
        score_sq_sums=tuple(s * 0.9 for s in sel_sums),
    )
    est = StageEvidence(
        "estimation",
        n=n,
        alpha=0.001,
        counts=(n,) + (0,) * (k - 1),
        score_sums=tuple(est_sums),
        score_sq_sums=tuple(est_sq),
    )
    return Evidence((sel, est), GaussianFacts(num_classes=k), seed=0)


# --- the score's constant -------------------------------------------------------------


def test_softmax_score_constant_is_the_proven_formula() -> None:
    for lz, t in ((1.0, 1.0), (2.5, 0.3), (0.1, 40.0)):
        value = softmax_score_lipschitz(lz, temperature=t)
        assert SQRT2_4 * t * lz <= value <= SQRT2_4 * t * lz * (1 + 1e-11)
    assert softmax_score_lipschitz(math.inf, temperature=2.0) == math.inf
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(InvalidParameterError, match="lipschitz"):
            softmax_score_lipschitz(bad, temperature=1.0)
    for bad in (0.0, -2.0, math.inf):
        with pytest.raises(InvalidParameterError, match="temperature"):
            softmax_score_lipschitz(1.0, temperature=bad)


def test_softmax_gradient_never_exceeds_sqrt2_over_4() -> None:
    """Maximise |grad softmax_A(t z)| over z (random starts + gradient ascent)."""
    gen = torch.Generator().manual_seed(0)
    t = 3.0
    best = 0.0
    for k in (2, 3, 10):
        z = (torch.randn(256, k, generator=gen, dtype=torch.float64) * 2).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.05)
        for _ in range(150):
            p = torch.softmax(t * z, dim=1)[:, 0]
            (grad,) = torch.autograd.grad(p.sum(), z, create_graph=True)
            norms = grad.norm(dim=1)
            best = max(best, float(norms.detach().max()))
            opt.zero_grad()
            (-norms.sum()).backward()
            opt.step()
    bound = softmax_score_lipschitz(1.0, temperature=t)
    assert best <= bound
    assert best > 0.999 * bound  # attained (two classes at p_A = 1/2)


def test_score_of_a_certified_network_respects_the_score_constant() -> None:
    model = load_model("digits_lipschitz", sigma=0.5)
    t = 8.0
    bound = softmax_score_lipschitz(model.lipschitz, temperature=t)
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(300, 1, 8, 8, generator=gen)
    y = x + 0.05 * torch.randn(x.shape, generator=gen)
    with torch.no_grad():
        sx, sy = (torch.softmax(t * model(v).double(), dim=1) for v in (x, y))
    ratio = (sx - sy).abs().max(dim=1).values / (x - y).flatten(1).norm(dim=1).double()
    assert float(ratio.max()) <= bound * (1 + 1e-4)  # float32 forward passes


# --- parameters -----------------------------------------------------------------------


def test_params_validation() -> None:
    for kw, text in (
        ({"temperature": 0.0}, "temperature"),
        ({"logit_lipschitz": 0.0}, "logit_lipschitz"),
        ({"logit_lipschitz": math.inf}, "logit_lipschitz"),
        ({"logit_lipschitz": math.nan}, "logit_lipschitz"),
        ({"score_bound": "cp"}, "score_bound"),
        ({"n": 1}, "n = 1"),
    ):
        with pytest.raises(InvalidParameterError, match=text):
            params(**kw)
    spec = get_method("lipschitz")
    with pytest.raises(InvalidParameterError, match="needs temperature, logit_lipschitz"):
        spec.params({"sigma": 0.5, "n0": 10, "n": 100, "alpha": 0.01})
    assert params().forward_samples() == 1010
    assert params().to_dict()["logit_lipschitz"] == 1.0  # hashed and recorded


# --- the decision ---------------------------------------------------------------------


@pytest.mark.parametrize("score_bound", ["bernstein", "hoeffding"])
def test_radius_is_lipschitz_radius_of_an_independent_bound(score_bound: str) -> None:
    rng = np.random.default_rng(0)
    n = 1000
    for _ in range(30):
        scores = rng.beta(8, 2, size=n)
        s, sq = float(scores.sum()), float((scores**2).sum())
        p = params(score_bound=score_bound, temperature=rng.uniform(0.5, 20))
        res = decide_lipschitz(evidence([1.0, 9.0], [n - s, s], [n - 2 * s + sq, sq]), p)
        mean = s / n
        if score_bound == "hoeffding":
            expected = float(hoeffding_lower(mean, n=n, alpha=p.alpha))
        else:
            var = float(scores.var(ddof=1))
            expected = float(empirical_bernstein_lower(mean, var, n=n, alpha=p.alpha))
        assert res.p_lower == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert res.p_lower <= expected + 1e-12  # rounding goes the safe way
        l_s = SQRT2_4 * p.temperature * p.logit_lipschitz
        assert res.details.score_lipschitz == pytest.approx(l_s, rel=1e-11)
        radius = float(lipschitz_radius(res.p_lower, sigma=p.sigma, lipschitz=l_s))
        assert res.method == "lipschitz" and res.claim == "majority"
        if res.p_lower > 0.5:
            assert not res.abstained and res.prediction == 1
            assert res.radius == pytest.approx(radius, rel=1e-12)
        else:
            assert res.abstained and res.prediction is None and res.radius == 0.0


def test_betting_reads_the_histograms_and_feeds_the_lipschitz_radius() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    scores = rng.dirichlet((1.0, 12.0), size=n)  # class 1 scores, mean 12/13
    q = np.floor(scores * 2.0**31) / 2.0**31
    est = StageEvidence(
        "estimation",
        n=n,
        alpha=0.001,
        counts=tuple(int(c) for c in np.bincount(scores.argmax(1), minlength=2)),
        score_sums=tuple(float(v) for v in q.sum(0)),
        score_sq_sums=tuple(float(v) for v in (q * q).sum(0)),
        score_histograms=ScoreHistograms.from_dense(score_histogram(scores.T)),
    )
    sel = StageEvidence(
        "selection",
        n=10,
        alpha=0.0,
        counts=(1, 9),
        score_sums=(1.0, 9.0),
        score_sq_sums=(0.5, 8.5),
    )
    ev = Evidence((sel, est), GaussianFacts(num_classes=2), seed=0)
    p = params(score_bound="betting", n=n, temperature=1.0)
    res = decide_lipschitz(ev, p)
    expected = float(betting_histogram_lower(score_histogram(scores.T)[1], alpha=p.alpha))
    assert res.prediction == 1 and res.p_lower == expected
    l_s = SQRT2_4 * p.temperature * p.logit_lipschitz
    assert res.radius == pytest.approx(
        float(lipschitz_radius(expected, sigma=p.sigma, lipschitz=l_s)), rel=1e-12
    )
    bern = decide_lipschitz(ev, params(score_bound="bernstein", n=n, temperature=1.0))
    assert res.p_lower > bern.p_lower - 1e-3  # same samples; betting is not looser here
    without = Evidence((sel, dataclasses.replace(est, score_histograms=None)), ev.facts, seed=0)
    with pytest.raises(InvalidParameterError, match="histograms"):
        decide_lipschitz(without, p)


def test_radius_is_never_below_cohens_for_the_same_bound() -> None:
    n = 1000
    for mean in np.linspace(0.55, 0.999, 25):
        for t, lz in ((0.5, 1.0), (4.0, 1.0), (16.0, 1.0), (1.0, 50.0)):
            s = mean * n
            res = decide_lipschitz(
                evidence([1.0, 9.0], [n - s, s], [n - s, s * mean]),
                params(temperature=t, logit_lipschitz=lz),
            )
            if res.abstained:
                continue
            cohen = float(gaussian_radius(res.p_lower, sigma=0.5))
            assert res.radius >= cohen * (1 - 1e-12) - 1e-12
    # a small score constant gives a much larger radius than Cohen's
    res = decide_lipschitz(
        evidence([1.0, 9.0], [100.0, 900.0], [12.0, 812.0]), params(temperature=1.0)
    )
    assert res.radius > 2 * float(gaussian_radius(res.p_lower, sigma=0.5))


def test_class_comes_from_the_selection_stage_only() -> None:
    # The estimation stage favours class 0; selection chose class 1: the bound is on 1.
    n = 1000
    res = decide_lipschitz(evidence([2.0, 8.0], [900.0, 100.0], [810.0, 10.0]), params())
    assert res.abstained and res.details.mean == pytest.approx(0.1)
    res = decide_lipschitz(evidence([8.0, 2.0], [900.0, 100.0], [810.0, 10.0]), params())
    assert not res.abstained and res.prediction == 0 and res.details.mean == pytest.approx(0.9)
    assert n == 1000


# --- the torch half: refusals before sampling -----------------------------------------


def test_model_without_a_certified_constant_is_refused_before_sampling() -> None:
    model = Counting(None)
    with pytest.raises(InvalidParameterError, match="no certified Lipschitz constant"):
        prepare(model, (torch.tensor([1.0, 0.0]),), params(), seed=0)
    assert model.calls == 0
    for bad in (0.0, -1.0, math.nan, True, "1"):
        model = Counting(bad)
        with pytest.raises(InvalidParameterError, match="lipschitz"):
            prepare(model, (torch.tensor([1.0, 0.0]),), params(), seed=0)
        assert model.calls == 0


def test_a_constant_below_the_models_is_refused_before_sampling() -> None:
    model = Counting(1.5)
    with pytest.raises(InvalidParameterError, match=r"logit_lipschitz >= 1.5"):
        prepare(model, (torch.tensor([1.0, 0.0]),), params(logit_lipschitz=1.4), seed=0)
    assert model.calls == 0
    prepare(model, (torch.tensor([1.0, 0.0]),), params(logit_lipschitz=1.5), seed=0, probe=False)
    model = Counting(1.0)
    with pytest.raises(InvalidParameterError, match="autocast_dtype"):
        prepare(model, (torch.tensor([1.0, 0.0]),), params(), seed=0, autocast_dtype=torch.bfloat16)
    assert model.calls == 0
    with pytest.raises(InvalidParameterError, match="LipschitzParams"):
        prepare(model, (torch.tensor([1.0, 0.0]),), object(), seed=0)  # type: ignore[arg-type]


def test_certify_on_a_linear_model_with_its_exact_constant() -> None:
    model = Counting(None)
    model.lipschitz = lipschitz_upper_bound(torch.nn.Sequential(model.lin))
    assert model.lipschitz >= math.sqrt(2)
    res = certify(
        model, torch.tensor([2.0, 0.0]), sigma=0.5, n0=50, n=2000, alpha=0.001, temperature=2.0
    )
    assert res.prediction == 0 and res.params.logit_lipschitz == model.lipschitz
    cohen = float(gaussian_radius(res.p_lower, sigma=0.5))
    assert res.radius > cohen
    # the smoothed score of the true class: E softmax(t z)_0 with z_0 - z_1 = 2 (x_0 + e_0)
    gen = np.random.default_rng(0)
    e = gen.normal(0, 0.5, size=200_000)
    exact = float(np.mean(1 / (1 + np.exp(-2.0 * 2 * (2.0 + e)))))
    assert res.p_lower <= exact


def test_bundled_model_certifies_with_a_larger_radius_than_cohen() -> None:
    from smoothcert.data import load_dataset

    model = load_model("digits_lipschitz", sigma=0.5)
    data = load_dataset("digits", "test")
    certified = 0
    for i in range(5):
        x = torch.from_numpy(data.images[i].copy())
        res = certify(model, x, sigma=0.5, n0=50, n=1000, alpha=0.001, temperature=16.0, seed=i)
        assert res.params.logit_lipschitz == model.lipschitz
        if not res.abstained:
            certified += 1
            assert res.radius >= float(gaussian_radius(res.p_lower, sigma=0.5))
    assert certified >= 2


# --- CLI ------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_defaults_to_the_manifest_constant_and_refuses_a_smaller_one(tmp_path) -> None:
    from smoothcert.cli import build_run_config

    run_fields = {"model": "digits_lipschitz", "dataset": "digits", "model_sigma": None}
    config = build_run_config(
        method="lipschitz", options={"sigma": 0.5, "temperature": 8.0}, run_fields=run_fields
    )
    assert config.params["logit_lipschitz"] == load_model("digits_lipschitz", sigma=0.5).lipschitz
    common = [
        "certify",
        "--method",
        "lipschitz",
        "--sigma",
        "0.5",
        "--temperature",
        "8",
        "--n0",
        "10",
        "--n",
        "100",
        "--num-examples",
        "1",
        "--no-plot",
        "--no-progress",
    ]
    out = tmp_path / "r.jsonl"
    result = runner.invoke(
        app,
        [*common, "--model", "digits_lipschitz", "--logit-lipschitz", "0.5", "--output", str(out)],
    )
    assert result.exit_code == 2, result.output
    assert "logit_lipschitz >= 1.0000" in result.stderr
    result = runner.invoke(app, [*common, "--model", "digits_cnn", "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert "no certified Lipschitz constant" in result.stderr
    result = runner.invoke(app, [*common, "--model", "digits_lipschitz", "--output", str(out)])
    assert result.exit_code == 0, result.output

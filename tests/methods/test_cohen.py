"""Cohen CERTIFY/PREDICT against independent oracles (DESIGN.md soundness rule 3)."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import beta, binom, norm

from smoothcert.certificates.gaussian import max_certifiable_radius
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.cohen import certify, predict


class LinearBinary(torch.nn.Module):
    """sign(w.x + b) as two logits; smoothed P(class 0) = Phi((w.x+b) / (sigma ||w||))."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w.clone(), requires_grad=False)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.w.flatten() + self.b
        return torch.stack([z, -z], dim=1)

    def exact_radius(self, x: torch.Tensor) -> float:
        return abs(float(x.flatten() @ self.w.flatten()) + self.b) / float(self.w.norm())


class Constant(torch.nn.Module):
    def __init__(self, cls: int, num_classes: int = 4) -> None:
        super().__init__()
        self.cls, self.num_classes = cls, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.num_classes)
        out[:, self.cls] = 1.0
        return out


class OnePixel(torch.nn.Module):
    """Class 1 iff pixel j > 0.5: smoothed P(1) = Phi((x_j - 0.5) / sigma), radius |x_j - 0.5|."""

    def __init__(self, j: int) -> None:
        super().__init__()
        self.j = j

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)[:, self.j] - 0.5
        return torch.stack([-v, v], dim=1)


class Recorder(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return self.inner(x)


def _linear(dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, generator=g)
    return LinearBinary(w, 0.1).eval(), torch.randn(dim, generator=g) * 0.3


def test_linear_oracle_coverage_miss_rate_below_alpha():
    model, _ = _linear()
    sigma, alpha, n, runs = 0.5, 0.1, 300, 150
    misses = 0
    for i in range(runs):
        x = torch.randn(16, generator=torch.Generator().manual_seed(1000 + i)) * 0.3
        x = x + model.w.detach() * 0.05  # bias the points towards certifiable
        res = certify(model, x, sigma=sigma, n0=20, n=n, alpha=alpha, batch_size=300, seed=i)
        exact = model.exact_radius(x)
        true_cls = 0 if float(x @ model.w) + model.b > 0 else 1
        if not res.abstained and (res.prediction != true_cls or res.radius > exact + 1e-9):
            misses += 1
    # The certificate fails with probability <= alpha per run; the number of failures is
    # stochastically below Binomial(runs, alpha). Reject only at a 1e-4 tail.
    assert misses <= binom.ppf(1 - 1e-4, runs, alpha)


def test_linear_oracle_radius_approaches_exact_as_n_grows():
    model, x = _linear(seed=3)
    x = x + 0.2 * model.w.detach() / model.w.norm()
    exact = model.exact_radius(x)
    radii = [
        certify(model, x, sigma=0.5, n0=100, n=n, alpha=0.001, batch_size=10_000, seed=1).radius
        for n in (1_000, 100_000)
    ]
    assert radii[0] < radii[1] <= exact
    assert radii[1] > 0.9 * exact


def test_constant_model_reaches_max_certifiable_radius():
    res = certify(Constant(2).eval(), torch.zeros(3, 5), sigma=0.25, n0=10, n=5000, alpha=0.001)
    assert res.prediction == 2
    assert res.counts_estimation == (0, 0, 5000, 0)
    assert res.radius == pytest.approx(max_certifiable_radius(n=5000, alpha=0.001, sigma=0.25))


def test_one_pixel_model_matches_closed_form():
    x = torch.full((1, 4, 4), 0.2)
    x[0, 1, 2] = 0.9  # pixel j = 6, exact radius 0.4
    sigma, n = 0.5, 50_000
    res = certify(OnePixel(6).eval(), x, sigma=sigma, n0=100, n=n, alpha=0.001, seed=7)
    p_true = norm.cdf(0.4 / sigma)
    assert res.prediction == 1
    assert res.p_lower <= p_true
    assert res.radius <= 0.4
    # Standard error of the empirical frequency bounds how far below the truth we end up.
    assert res.radius > sigma * norm.ppf(p_true - 6 * math.sqrt(p_true * (1 - p_true) / n))


def test_counts_sum_and_same_seed_same_counts():
    model, x = _linear()
    a = certify(model, x, sigma=0.5, n0=50, n=777, alpha=0.01, batch_size=100, seed=5)
    b = certify(model, x, sigma=0.5, n0=50, n=777, alpha=0.01, batch_size=100, seed=5)
    c = certify(model, x, sigma=0.5, n0=50, n=777, alpha=0.01, batch_size=100, seed=6)
    assert sum(a.counts_selection) == 50 and sum(a.counts_estimation) == 777
    assert (a.counts_selection, a.counts_estimation) == (b.counts_selection, b.counts_estimation)
    assert a.counts_estimation != c.counts_estimation
    assert a.seed == 5 and a.n0 == 50 and a.n == 777 and a.alpha == 0.01
    assert all(isinstance(v, int) for v in a.counts_estimation)


def test_selection_and_estimation_use_independent_noise():
    inner, x = _linear()
    model = Recorder(inner).eval()
    certify(model, x, sigma=0.5, n0=64, n=64, alpha=0.01, batch_size=64, seed=0)
    probe, selection, estimation = model.seen
    assert probe.shape[0] == 1
    assert selection.shape == estimation.shape == (64, 16)
    assert not torch.isclose(selection, estimation).all(dim=1).any()
    # Noise has the kernel's scale: empirical std close to sigma.
    assert float((estimation - x).std()) == pytest.approx(0.5, rel=0.1)


def test_top2_binary_equals_standard_at_half_alpha():
    model, x = _linear(seed=2)
    x = x + 0.3 * model.w.detach() / model.w.norm()
    std = certify(model, x, sigma=0.5, n0=50, n=2000, alpha=0.0005, seed=4)
    top2 = certify(model, x, sigma=0.5, n0=50, n=2000, alpha=0.001, seed=4, top2=True)
    assert top2.method == "cohen_top2" and top2.p_upper is not None
    assert top2.radius == pytest.approx(std.radius)
    assert top2.radius <= model.exact_radius(x)


class ThreeIntervals(torch.nn.Module):
    """Class of the interval that x0 + e falls in: P = [0.2, 0.6, 0.2] at x0 = 0, sigma = 1."""

    T1, T2 = float(norm.ppf(0.2)), float(norm.ppf(0.8))

    def forward(self, x):
        v = x.flatten(1)[:, 0]
        return torch.stack([v < self.T1, (v >= self.T1) & (v < self.T2), v >= self.T2], 1).float()


def test_top2_multiclass_closed_form_and_offline_recomputation():
    x = torch.tensor([0.0, 0.0])
    kw = dict(sigma=1.0, n0=100, n=20_000, alpha=0.001, seed=0)
    std = certify(ThreeIntervals().eval(), x, **kw)
    top2 = certify(ThreeIntervals().eval(), x, **kw, top2=True)
    exact_top2 = 0.5 * (norm.ppf(0.6) - norm.ppf(0.2))
    assert std.prediction == top2.prediction == 1
    assert std.radius < top2.radius <= exact_top2
    # Recompute the certificate offline from the ESTIMATION counts only (rule 1).
    counts = np.array(top2.counts_estimation)
    p_lower = float(beta.ppf(0.0005, counts[1], kw["n"] - counts[1] + 1))
    p_upper = max(float(beta.ppf(1 - 0.0005, c + 1, kw["n"] - c)) for c in np.delete(counts, 1))
    assert top2.p_lower == pytest.approx(p_lower, rel=1e-9)
    assert top2.p_upper == pytest.approx(min(p_upper, 1 - p_lower), rel=1e-9)
    assert top2.radius == pytest.approx(0.5 * (norm.ppf(p_lower) - norm.ppf(top2.p_upper)))


def test_top2_coverage_on_closed_form_model():
    x = torch.tensor([0.0, 0.0])
    exact_top2 = 0.5 * (norm.ppf(0.6) - norm.ppf(0.2))
    runs, alpha = 120, 0.2
    misses = sum(
        certify(
            ThreeIntervals().eval(), x, sigma=1.0, n0=30, n=300, alpha=alpha, seed=s, top2=True
        ).radius
        > exact_top2
        for s in range(runs)
    )
    assert misses <= binom.ppf(1 - 1e-4, runs, alpha)


def test_abstains_when_model_is_a_coin():
    res = certify(
        OnePixel(0).eval(), torch.tensor([0.5, 0.0]), sigma=1.0, n0=10, n=1000, alpha=0.01
    )
    assert res.abstained and res.prediction is None and res.radius == 0.0
    assert res.p_lower < 0.55


def test_predict_errs_at_most_alpha_on_closed_form_model():
    # OnePixel at x_j = 0.55, sigma = 1: g(x) = 1 with P = Phi(0.05) = 0.52; 0 is an error.
    x = torch.tensor([0.55, 0.0])
    runs, alpha = 200, 0.1
    wrong = sum(
        predict(OnePixel(0).eval(), x, sigma=1.0, n=400, alpha=alpha, seed=s).prediction == 0
        for s in range(runs)
    )
    assert wrong <= binom.ppf(1 - 1e-4, runs, alpha)


def test_predict_constant_and_coin():
    pred = predict(Constant(1).eval(), torch.zeros(2, 2), sigma=0.5, n=100, alpha=0.001)
    assert pred.prediction == 1 and pred.params["p_value"] < 1e-20
    coin = predict(OnePixel(0).eval(), torch.tensor([0.5, 0.0]), sigma=1.0, n=2000, alpha=0.001)
    assert coin.abstained


class CallCounter(torch.nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.calls, self.num_classes = 0, num_classes

    def forward(self, x):
        self.calls += 1
        return torch.zeros(x.shape[0], self.num_classes)


GOOD = dict(sigma=0.5, n0=10, n=100, alpha=0.01, batch_size=10)


@pytest.mark.parametrize(
    ("x", "overrides", "fragment"),
    [
        (torch.tensor([0.0, float("nan")]), {}, "NaN"),
        (torch.tensor([0.0, float("inf")]), {}, "NaN or Inf"),
        (torch.tensor([1, 2]), {}, "dtype"),
        ([0.0, 1.0], {}, "torch.Tensor"),
        (torch.zeros(3), {"input_shape": (2,)}, "shape"),
        (torch.zeros(2), {"sigma": 0.0}, "sigma = 0.0"),
        (torch.zeros(2), {"sigma": -0.5}, "sigma = -0.5"),
        (torch.zeros(2), {"alpha": 0.0}, "alpha = 0.0"),
        (torch.zeros(2), {"alpha": 1.0}, "alpha = 1.0"),
        (torch.zeros(2), {"n0": 0}, "n0 = 0"),
        (torch.zeros(2), {"n": 0}, "n = 0"),
        (torch.zeros(2), {"batch_size": 0}, "batch_size = 0"),
        (torch.zeros(2), {"num_classes": 5}, "num_classes = 5"),
    ],
)
def test_bad_input_rejected_before_sampling(x, overrides, fragment):
    model = CallCounter().eval()
    with pytest.raises(InvalidParameterError, match="valid") as info:
        certify(model, x, **{**GOOD, **overrides})
    assert fragment in str(info.value)
    assert model.calls <= 1  # at most the one clean probe that checks the output shape


def test_model_rejecting_shape_and_training_mode():
    lin = torch.nn.Linear(3, 2).eval()
    with pytest.raises(InvalidParameterError, match="rejected by the model"):
        certify(lin, torch.zeros(4), **GOOD)
    with pytest.raises(InvalidParameterError, match="eval mode"):
        certify(torch.nn.Linear(3, 2), torch.zeros(3), **GOOD)
    with pytest.raises(InvalidParameterError, match="n = 0"):
        predict(lin, torch.zeros(3), sigma=0.5, n=0, alpha=0.01)


class InPlaceShift(torch.nn.Module):
    """Edits its input in place (like x.sub_(mean)); votes by the sign of pixel 0."""

    def forward(self, x):
        x.sub_(0.4)
        v = x.flatten(1)[:, 0]
        return torch.stack([v, -v], dim=1)


class CleanShift(torch.nn.Module):
    def forward(self, x):
        v = x.flatten(1)[:, 0] - 0.4
        return torch.stack([v, -v], dim=1)


def test_model_editing_its_input_in_place_does_not_move_the_certified_point():
    x = torch.tensor([0.5, 0.0])
    kw = dict(sigma=0.25, n0=50, n=2000, alpha=0.001, seed=3)
    res = certify(InPlaceShift().eval(), x, **kw)
    assert torch.equal(x, torch.tensor([0.5, 0.0]))
    ref = certify(CleanShift().eval(), x, **kw)
    assert res.counts_estimation == ref.counts_estimation


def test_submodule_in_training_mode_rejected():
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4)).eval()
    model[1].train()
    with pytest.raises(InvalidParameterError, match="submodule '1'"):
        certify(model, torch.zeros(2), **GOOD)


class NanScores(torch.nn.Module):
    def forward(self, x):
        out = torch.zeros(x.shape[0], 3)
        out[:, 1:] = torch.where(x[:, :1] > 0.5, float("nan"), 0.0)
        return out


def test_nan_scores_raise_instead_of_voting():
    with pytest.raises(InvalidParameterError, match="NaN or Inf"):
        certify(NanScores().eval(), torch.tensor([0.0, 0.0]), **{**GOOD, "sigma": 1.0})
    with pytest.raises(InvalidParameterError, match="NaN or Inf at the clean input"):
        certify(NanScores().eval(), torch.tensor([1.0, 0.0]), **GOOD)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"autocast_dtype": torch.float32}, "autocast_dtype"),
        ({"autocast_dtype": "bf16"}, "autocast_dtype = 'bf16'"),
        ({"device": "nonsense"}, "device = 'nonsense'"),
        ({"device": "cuda:7"}, "device = 'cuda:7'"),
    ],
)
def test_bad_device_and_autocast(overrides, fragment):
    with pytest.raises(InvalidParameterError, match="valid") as info:
        certify(torch.nn.Linear(2, 2).eval(), torch.zeros(2), **{**GOOD, **overrides})
    assert fragment in str(info.value)


def test_autocast_bfloat16_runs_and_counts_sum():
    res = certify(
        torch.nn.Linear(2, 3).eval(),
        torch.zeros(2),
        **{**GOOD, "autocast_dtype": torch.bfloat16},
    )
    assert sum(res.counts_estimation) == GOOD["n"]


def test_bfloat16_input_rounds_the_fp32_sum_once():
    from smoothcert.noise import GaussianNoise

    x32 = torch.linspace(0, 1, 10)
    x16 = x32.to(torch.bfloat16)
    a = GaussianNoise(0.05).sample(x16, 500, generator=torch.Generator().manual_seed(0))
    b = GaussianNoise(0.05).sample(x16.float(), 500, generator=torch.Generator().manual_seed(0))
    assert a.dtype == torch.bfloat16
    assert torch.equal(a, b.to(torch.bfloat16))

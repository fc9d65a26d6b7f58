"""Cohen CERTIFY/PREDICT against independent oracles (DESIGN.md soundness rule 3)."""

import math

import numpy as np
import pytest
import torch
from scipy.special import gammaln
from scipy.stats import beta, binom, multinomial, norm

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


def _cp_miss_rate(p_true, n, alpha):
    """Exact P(Clopper-Pearson lower bound > p_true) for K ~ Binomial(n, p_true).

    Computed with scipy's beta.ppf (independent of smoothcert.stats).
    """
    k = np.arange(n + 1)
    with np.errstate(invalid="ignore"):
        lower = np.where(k > 0, beta.ppf(alpha, k, n - k + 1), 0.0)
    return float(binom.pmf(k, n, p_true)[lower > p_true].sum())


def _point_with_probability(model, p_true, sigma):
    """A point x on the normal of w where P(class 0) = p_true exactly (closed form)."""
    w = model.w.detach().double()
    z = float(norm.ppf(p_true)) * sigma * float(w.norm()) - model.b
    return (w * z / float(w @ w)).float()


def test_linear_oracle_coverage_miss_rate_below_alpha():
    # One point of a linear model, where the smoothed P(class 0) = Phi((w.x + b) /
    # (sigma ||w||)) = 0.7 and the exact radius are known; T independent runs (seeds).
    # A miss: a certified answer that is wrong (wrong class, or radius above the exact
    # one, i.e. p_lower > 0.7). Its probability is at most alpha: reject at a 1e-4 tail
    # of Binomial(T, alpha). Sized so that certifying at 2 alpha (a miss rate of 0.379
    # here) fails with probability 0.99999; the correct rate is 0.173.
    model, _ = _linear()
    sigma, alpha, n, n0, runs = 0.5, 0.2, 300, 51, 400
    x = _point_with_probability(model, 0.7, sigma)
    margin = float(x @ model.w.detach()) + model.b
    p_true = float(norm.cdf(margin / (sigma * float(model.w.detach().norm()))))
    assert p_true == pytest.approx(0.7, abs=1e-6)
    exact = model.exact_radius(x)
    # Design check (exact, scipy only): the correct miss rate is below alpha and the
    # doubled-alpha one far above the rejection threshold.
    threshold = binom.isf(1e-4, runs, alpha)
    wrong_class = binom.cdf(n0 // 2, n0, p_true)  # selection picks class 1 (then: abstain)
    assert _cp_miss_rate(p_true, n, alpha) + wrong_class <= alpha
    doubled = _cp_miss_rate(p_true, n, 2 * alpha) * (1 - wrong_class)
    assert binom.sf(threshold, runs, doubled) > 0.9999
    misses = 0
    for i in range(runs):
        res = certify(model, x, sigma=sigma, n0=n0, n=n, alpha=alpha, batch_size=n, seed=i)
        if not res.abstained and (res.prediction != 0 or res.radius > exact + 1e-7):
            misses += 1
    assert misses <= threshold


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
    assert top2.method == "cohen-top2" and top2.p_upper is not None
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


def _top2_miss_rate(probs, n, alpha, top=1):
    """Exact miss probability of the top-two certificate given the class ``top``.

    Enumerates the multinomial counts of n estimation samples; bounds from scipy's
    beta.ppf at alpha/2 each (p_upper capped at 1 - p_lower); a miss is a radius above
    the exact top-two radius.
    """
    p = np.asarray(probs, dtype=np.float64)
    o1, o2 = [i for i in range(3) if i != top]
    ct, c1 = np.array([(i, j) for i in range(n + 1) for j in range(n + 1 - i)]).T
    c2 = n - ct - c1
    logpmf = (
        gammaln(n + 1)
        - gammaln(ct + 1)
        - gammaln(c1 + 1)
        - gammaln(c2 + 1)
        + ct * np.log(p[top])
        + c1 * np.log(p[o1])
        + c2 * np.log(p[o2])
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(ct > 0, beta.ppf(alpha / 2, ct, n - ct + 1), 0.0)
        up1 = np.where(c1 < n, beta.ppf(1 - alpha / 2, c1 + 1, n - c1), 1.0)
        up2 = np.where(c2 < n, beta.ppf(1 - alpha / 2, c2 + 1, n - c2), 1.0)
        upper = np.minimum(np.maximum(up1, up2), 1.0 - lower)
        radius = np.where(lower > upper, 0.5 * (norm.ppf(lower) - norm.ppf(upper)), 0.0)
    exact = 0.5 * (norm.ppf(p[top]) - norm.ppf(max(p[o1], p[o2])))
    return float(np.exp(logpmf)[radius > exact].sum())


def test_top2_coverage_on_closed_form_model():
    # P = [0.2, 0.6, 0.2] at x = 0: the exact top-two radius is known. The top-two miss
    # rate is far below alpha (0.023 at alpha = 0.2: both bounds have to err), so a test
    # against alpha could not see a doubled alpha (0.071). The threshold is the 1e-4
    # tail of Binomial(T, exact miss rate + P(selection picks another class)), both
    # computed exactly with scipy; certifying at 2 alpha fails with probability 0.9999.
    x = torch.tensor([0.0, 0.0])
    probs = (0.2, 0.6, 0.2)
    exact_top2 = 0.5 * (norm.ppf(0.6) - norm.ppf(0.2))
    runs, alpha, n, n0 = 1000, 0.2, 300, 100
    # Selection: P(count of class 1 <= the largest other count) among n0 samples.
    c0, c1 = np.array([(i, j) for i in range(n0 + 1) for j in range(n0 + 1 - i)]).T
    sel = multinomial.pmf(np.stack([c0, c1, n0 - c0 - c1], 1), n0, probs)
    wrong_selection = float(sel[c1 <= np.maximum(c0, n0 - c0 - c1)].sum())
    rate = _top2_miss_rate(probs, n, alpha) + wrong_selection
    threshold = binom.isf(1e-4, runs, rate)
    assert rate < alpha / 4
    doubled = _top2_miss_rate(probs, n, 2 * alpha) * (1 - wrong_selection)
    assert binom.sf(threshold, runs, doubled) > 0.9998
    misses = 0
    for s in range(runs):
        res = certify(
            ThreeIntervals().eval(),
            x,
            sigma=1.0,
            n0=n0,
            n=n,
            alpha=alpha,
            batch_size=n,
            seed=s,
            top2=True,
        )
        misses += not res.abstained and (res.prediction != 1 or res.radius > exact_top2 + 1e-7)
    assert misses <= threshold


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
    assert pred.prediction == 1 and pred.details.p_value < 1e-20
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

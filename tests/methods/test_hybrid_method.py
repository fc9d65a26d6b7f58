"""Hybrid text+image certification against closed forms and linear-model oracles."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm

from smoothcert.certificates.gaussian import gaussian_radius
from smoothcert.errors import InvalidParameterError
from smoothcert.methods import threats
from smoothcert.methods.hybrid import certify
from smoothcert.records import CertifyResult


class LinearImage(torch.nn.Module):
    """Ignores the text; class 0 iff w.x + b > 0: P(0) = Phi((w.x + b) / (sigma ||w||))."""

    def __init__(self, w, b):
        super().__init__()
        self.w = torch.nn.Parameter(w.clone(), requires_grad=False)
        self.b = b

    def margin(self, x):
        return x.flatten(-1 if x.ndim == 1 else 1) @ self.w + self.b

    def forward(self, toks, imgs):
        z = imgs.flatten(1) @ self.w + self.b
        return torch.stack([z, -z], dim=1)

    def exact_radius(self, x):
        return abs(float(self.margin(x))) / float(self.w.norm())


class JointFilter(torch.nn.Module):
    """Flags (class 1) iff token j is unchanged AND w.x + b > 0.

    Smoothed P(flag) = (1 - beta) Phi((w.x + b) / (sigma ||w||)) under the uniform kernel.
    """

    def __init__(self, j, original, w, b):
        super().__init__()
        self.j, self.original = j, original
        self.w = torch.nn.Parameter(w.clone(), requires_grad=False)
        self.b = b

    def forward(self, toks, imgs):
        flag = (toks[:, self.j] == self.original) & (imgs.flatten(1) @ self.w + self.b > 0)
        f = flag.float()
        return torch.stack([1 - f, f], dim=1)


class Constant(torch.nn.Module):
    def forward(self, toks, imgs):
        out = torch.zeros(toks.shape[0], 3)
        out[:, 1] = 1.0
        return out


class Recorder(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []
        self.eval()

    def forward(self, *args):
        self.seen.append(tuple(a.clone() for a in args))
        return self.inner(*args)


def _linear(dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, generator=g)
    x = torch.randn(dim, generator=g) * 0.2 + 0.3 * w / w.norm()
    return LinearImage(w, 0.05).eval(), x


TOKENS = torch.tensor([3, 1, 4, 1, 5, 9])


def test_text_blind_linear_model_d0_is_cohen_and_below_exact_radius():
    model, x = _linear()
    sigma = 0.5
    res = certify(
        model,
        TOKENS,
        x,
        sigma=sigma,
        beta=0.3,
        alphabet=10,
        n0=100,
        n=20_000,
        alpha=0.001,
        seed=1,
        threat=threats.last_d(3),
    )
    p_true = norm.cdf(float(model.margin(x)) / (sigma * float(model.w.norm())))
    assert res.prediction == 0 and res.p_lower <= p_true
    assert res.radius == res.radius_curve[0]
    assert res.radius == pytest.approx(float(gaussian_radius(res.p_lower, sigma=sigma)), rel=1e-6)
    assert res.radius <= model.exact_radius(x)
    assert len(res.radius_curve) == 4
    assert np.all(np.diff(res.radius_curve) <= 0)
    assert res.radius_unit == "l2"
    assert res.params["sigma"] == sigma and res.params["num_eligible"] == 3


def test_safety_mode_d0_closed_form():
    model, x = _linear(seed=2)
    sigma, tau = 0.25, 1e-3
    res = certify(
        model,
        TOKENS,
        x,
        sigma=sigma,
        beta=0.3,
        alphabet=10,
        n0=0,
        n=5000,
        alpha=0.001,
        tau=tau,
        target=0,
        threat=threats.last_d(2),
    )
    expected = sigma * (norm.ppf(res.p_lower) - norm.ppf(tau))
    assert res.radius == pytest.approx(expected, rel=1e-6)


def test_mask_kernel_curve_matches_closed_form():
    model, x = _linear(seed=4)
    sigma, beta = 0.5, 0.9
    x = x + 0.5 * model.w / model.w.norm()
    res = certify(
        model,
        TOKENS,
        x,
        sigma=sigma,
        beta=beta,
        kernel="mask",
        mask_id=100,
        n0=100,
        n=10_000,
        alpha=0.001,
        threat=threats.anywhere(d_max=4),
    )
    p, tau = res.p_lower, 0.5
    for d, r in enumerate(res.radius_curve):
        v = beta**d
        if p > 1 - v + tau:
            closed = sigma * (norm.ppf((p - 1 + v) / v) - norm.ppf(tau / v))
            assert r == pytest.approx(closed, rel=1e-5, abs=1e-9)
        else:
            assert r == 0.0


def test_constant_model_certifies_every_d():
    res = certify(
        Constant().eval(),
        TOKENS,
        torch.zeros(2, 3),
        sigma=0.25,
        beta=0.9,
        alphabet=1000,
        n0=10,
        n=2000,
        alpha=0.001,
        threat=threats.anywhere(d_max=3),
    )
    assert res.prediction == 1 and res.params["d_certified"] == 3
    assert all(r > 0 for r in res.radius_curve)
    assert res.counts_estimation == (0, 2000, 0)


def test_joint_filter_tiny_tau_is_sound_against_the_real_attack():
    beta, vocab, sigma, tau = 0.2, 3, 0.5, 4.6e-5
    g = torch.Generator().manual_seed(5)
    w = torch.randn(6, generator=g)
    x = 0.2 * w / w.norm()
    tokens = torch.tensor([0, 1, 2, 0, 1, 2])
    model = JointFilter(2, 2, w, 0.0).eval()  # position 2 holds token 2
    res = certify(
        model,
        tokens,
        x,
        sigma=sigma,
        beta=beta,
        alphabet=vocab,
        n0=0,
        n=20_000,
        alpha=0.001,
        tau=tau,
        target=1,
        seed=3,
    )
    margin = float(x @ w) / float(w.norm())  # L2 distance to the hyperplane
    p_true = (1 - beta) * norm.cdf(margin / sigma)
    assert res.prediction == 1 and res.p_lower <= p_true
    curve = res.radius_curve
    assert len(curve) == 7 and curve[0] > 0
    for d, r in enumerate(curve):
        if r <= 0:
            continue
        # Best attack on this model: edit position 2 (if d >= 1), move x against w by r.
        p_tok = beta / (vocab - 1) if d >= 1 else 1 - beta
        attacked = p_tok * norm.cdf((margin - r) / sigma)
        assert attacked >= tau * (1 - 1e-9)


def test_p_lower_coverage_over_repeated_runs():
    beta, vocab, sigma, alpha, runs = 0.3, 4, 0.5, 0.1, 120
    w = torch.tensor([1.0, -1.0, 0.5])
    x = torch.tensor([0.1, 0.0, 0.0])
    model = JointFilter(0, 0, w, 0.0).eval()
    p_true = (1 - beta) * norm.cdf(float(x @ w) / (sigma * float(w.norm())))
    misses = 0
    for i in range(runs):
        res = certify(
            model,
            torch.tensor([0, 1, 2]),
            x,
            sigma=sigma,
            beta=beta,
            alphabet=vocab,
            n0=0,
            n=200,
            alpha=alpha,
            tau=0.01,
            target=1,
            seed=100 + i,
            batch_size=200,
        )
        misses += res.p_lower > p_true
    assert misses <= binom.ppf(1 - 1e-4, runs, alpha)


def test_seeds_independent_stages_and_one_generator():
    model = Recorder(_linear()[0])
    kw = dict(sigma=0.5, beta=0.5, alphabet=10, n0=32, n=32, alpha=0.01, batch_size=32)
    a = certify(model, TOKENS, torch.zeros(8), seed=7, **kw)
    (_, _), (t_sel, x_sel), (t_est, x_est) = model.seen
    assert not torch.equal(t_sel, t_est) and not torch.equal(x_sel, x_est)
    assert x_sel.shape == (32, 8) and t_sel.shape == (32, 6) and t_sel.dtype == torch.int64
    b = certify(model, TOKENS, torch.zeros(8), seed=7, **kw)
    assert a.counts_estimation == b.counts_estimation and a.radius_curve == b.radius_curve
    assert torch.equal(model.seen[5][1], x_est) and torch.equal(model.seen[5][0], t_est)
    assert sum(a.counts_selection) == 32 and sum(a.counts_estimation) == 32
    assert CertifyResult.from_json(a.to_json()) == a


class Exploding(torch.nn.Module):
    def forward(self, *args):
        raise AssertionError("the model must not be called")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sigma": 0.0}, r"sigma = 0.0 is invalid; valid range: sigma > 0"),
        ({"beta": 1.5}, r"beta = 1.5 is invalid; valid range: 0 < beta < 1"),
        ({"alphabet": [4]}, r"vocab_size = 1 is invalid; valid range: vocab_size >= 2"),
        ({"tau": 1.0, "target": 0}, r"tau = 1.0 is invalid; valid range: 0 < tau < 1"),
        ({"threat": threats.anywhere(d_max=7)}, r"d_max = 7 is invalid; .*D = 6"),
        ({"tokens": torch.tensor([3, 1, 40])}, r"token id 40 at eligible position 2"),
        ({"tokens": torch.tensor([3.0, 1.0])}, r"tokens.dtype = torch.float32 is invalid"),
        ({"tokens": torch.tensor([[3, 1]])}, r"tokens.shape = \(1, 2\) is invalid with image"),
        ({"image": torch.tensor([0.0, float("nan")])}, r"image contains NaN or Inf"),
        ({"image": torch.tensor([1, 2])}, r"image.dtype = torch.int64 is invalid"),
        ({"image_shape": (3,)}, r"image.shape = \(8,\) is invalid; valid shape: \(3,\)"),
        ({"n": 0}, r"n = 0 is invalid"),
    ],
)
def test_bad_input_rejected_before_any_model_call(kwargs, match):
    kwargs = dict(kwargs)
    tokens = kwargs.pop("tokens", TOKENS)
    image = kwargs.pop("image", torch.zeros(8))
    args = {"sigma": 0.5, "beta": 0.3, "alphabet": 10, "n0": 10, "n": 100, "alpha": 0.01}
    args.update(kwargs)
    with pytest.raises(InvalidParameterError, match=match):
        certify(Exploding().eval(), tokens, image, **args)


def test_abstains_when_p_lower_below_half():
    model, x = _linear()
    x = x - float(model.margin(x)) * model.w / model.w.norm() ** 2  # on the boundary
    res = certify(
        model,
        TOKENS,
        x,
        sigma=0.5,
        beta=0.3,
        alphabet=10,
        n0=50,
        n=500,
        alpha=0.001,
        threat=threats.last_d(2),
    )
    assert res.abstained and res.radius == 0.0 and res.radius_curve == (0.0, 0.0, 0.0)
    assert res.params["d_certified"] == -1
    assert math.isfinite(res.p_lower) and not np.isnan(res.p_lower)

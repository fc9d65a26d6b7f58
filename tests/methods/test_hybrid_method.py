"""Hybrid text+image certification against closed forms and linear-model oracles."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm

from smoothcert.certificates import hybrid_radius_curve
from smoothcert.certificates.gaussian import gaussian_radius
from smoothcert.errors import InvalidParameterError
from smoothcert.methods import threats
from smoothcert.methods.hybrid import certify
from smoothcert.records import CertifyResult
from smoothcert.stats.binomial import CLOSED_FORM_MARGIN, clopper_pearson_lower


def _load_token_oracles():
    """The exact-enumeration oracle of test_tokens_method.py (tests are not a package)."""
    path = Path(__file__).with_name("test_tokens_method.py")
    spec = importlib.util.spec_from_file_location("_token_method_oracles", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ORACLES = _load_token_oracles()
brute_force_radius = _ORACLES.brute_force_radius


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


def _expected_curve(res, *, d_max, sigma, beta, vocab, tau=0.5, kernel="uniform"):
    """The library's curve at the result's p_lower, cut after the certified d (staircase)."""
    curve = np.asarray(
        hybrid_radius_curve(
            res.p_lower,
            d_max=d_max,
            sigma=sigma,
            beta=beta,
            vocab_size=vocab,
            tau=tau,
            kernel=kernel,
        ),
        dtype=np.float64,
    ).copy()
    curve[res.details.d_certified + 1 :] = 0.0
    return tuple(curve.tolist())


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
    assert res.params.sigma == sigma and res.evidence.facts.num_eligible == 3


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
    n, alpha, sigma, beta, vocab = 2000, 0.001, 0.25, 0.9, 1000
    res = certify(
        Constant().eval(),
        TOKENS,
        torch.zeros(2, 3),
        sigma=sigma,
        beta=beta,
        alphabet=vocab,
        n0=10,
        n=n,
        alpha=alpha,
        threat=threats.anywhere(d_max=3),
    )
    assert res.prediction == 1 and res.details.d_certified == 3
    assert res.counts_estimation == (0, n, 0)
    # Every vote for the class: p_lower = alpha^(1/n) minus the token sampler's TV bound
    # (6 eligible positions, V - 1 = 999 not a power of two, beta on the 2**-62 grid).
    tv = 6 * (999 * 2.0**-63)
    assert res.evidence.facts.sampling_tv_bound == pytest.approx(tv, rel=1e-12)
    assert res.details.p_lower_cp == pytest.approx(
        (alpha * (1 - CLOSED_FORM_MARGIN)) ** (1 / n), rel=1e-12
    )
    assert res.p_lower == res.details.p_lower_cp - res.evidence.facts.sampling_tv_bound
    expected = hybrid_radius_curve(
        res.p_lower, d_max=3, sigma=sigma, beta=beta, vocab_size=vocab, tau=0.5
    )
    assert res.radius_curve == tuple(expected.tolist())
    assert all(r > 0 for r in res.radius_curve) and res.radius == res.radius_curve[0]
    assert res.radius == pytest.approx(float(gaussian_radius(res.p_lower, sigma=sigma)), rel=1e-9)


@pytest.mark.parametrize("vocab, beta", [(3, 0.3), (4, 0.4)])
def test_alphabet_size_reaches_the_certificate_and_the_curve(vocab, beta):
    sigma, n, alpha = 0.25, 2000, 0.001
    res = certify(
        Constant().eval(),
        torch.zeros(6, dtype=torch.int64),
        torch.zeros(4),
        sigma=sigma,
        beta=beta,
        alphabet=vocab,
        n0=10,
        n=n,
        alpha=alpha,
        threat=threats.anywhere(d_max=5),
    )
    kw = {"d_max": 5, "tau": 0.5, "majority": True, "beta": beta}
    expected_d = brute_force_radius(res.p_lower, vocab_size=vocab, **kw)
    assert expected_d != brute_force_radius(res.p_lower, vocab_size=vocab + 1, **kw)
    assert res.details.d_certified == expected_d and res.params.vocab_size == vocab
    curve = _expected_curve(res, d_max=5, sigma=sigma, beta=beta, vocab=vocab)
    assert res.radius_curve == curve
    assert curve != _expected_curve(res, d_max=5, sigma=sigma, beta=beta, vocab=10 * vocab)
    assert all(r > 0 for r in curve[: expected_d + 1]) and all(
        r == 0 for r in curve[expected_d + 1 :]
    )


def test_p_lower_is_clopper_pearson_minus_the_tv_bound_safety_mode():
    vocab, sigma, n, alpha, tau = 30_522, 0.5, 3000, 0.001, 1e-3
    res = certify(
        Constant().eval(),
        torch.arange(10),
        torch.zeros(4),
        sigma=sigma,
        beta=0.5,
        alphabet=vocab,
        n0=25,
        n=n,
        alpha=alpha,
        tau=tau,
        target=1,
        threat=threats.anywhere(d_max=2),
    )
    tv = 10 * ((vocab - 1) * 2.0**-63)
    assert res.evidence.facts.sampling_tv_bound == pytest.approx(tv, rel=1e-12) and tv > 0
    assert res.details.p_lower_cp == float(clopper_pearson_lower(n, n, alpha=alpha))
    assert res.p_lower == max(0.0, res.details.p_lower_cp - res.evidence.facts.sampling_tv_bound)
    assert res.p_lower < res.details.p_lower_cp
    assert res.details.certified_not_flagged is False
    # n0 is ignored in safety-filter mode: no selection sample is drawn.
    assert res.n0 == 0 and res.counts_selection == () and res.params.n0 == 25
    assert res.radius_curve == _expected_curve(
        res, d_max=2, sigma=sigma, beta=0.5, vocab=vocab, tau=tau
    )


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
    """Miss rate of p_lower matches the exact Clopper-Pearson miss rate (<= alpha).

    For K ~ Binomial(n, p_true) the probability that the CP bound at alpha exceeds
    p_true is computed exactly (q, about 0.094 here); the TV correction only lowers
    p_lower. The observed misses must lie inside the 1e-4 tails of Binomial(runs, q):
    a bound at level 2 alpha (q about 0.19) fails the upper check with probability 0.99.
    """
    beta, vocab, sigma, alpha, runs, n = 0.3, 4, 0.5, 0.1, 500, 200
    w = torch.tensor([1.0, -1.0, 0.5])
    x = torch.tensor([0.1, 0.0, 0.0])
    model = JointFilter(0, 0, w, 0.0).eval()
    p_true = (1 - beta) * norm.cdf(float(x @ w) / (sigma * float(w.norm())))
    ks = np.arange(n + 1)
    lows = np.array([float(clopper_pearson_lower(int(k), n, alpha=alpha)) for k in ks])
    q = float(binom.pmf(ks, n, p_true)[lows > p_true].sum())
    assert 0.05 < q <= alpha
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
            n=n,
            alpha=alpha,
            tau=0.01,
            target=1,
            seed=100 + i,
            batch_size=n,
        )
        misses += res.p_lower > p_true
    assert misses <= binom.ppf(1 - 1e-4, runs, q)
    assert misses >= binom.ppf(1e-4, runs, q)


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
    assert res.details.d_certified is None
    assert math.isfinite(res.p_lower) and not np.isnan(res.p_lower)


class SwitchesAfter(torch.nn.Module):
    """Stateful: after the clean probe, class 0 for the first ``first`` samples, then 1."""

    def __init__(self, first):
        super().__init__()
        self.first, self.seen = first, None

    def forward(self, toks, imgs):
        b = toks.shape[0]
        out = torch.zeros(b, 2)
        if self.seen is None:  # the clean probe
            self.seen = 0
            out[:, 1] = 1.0
            return out
        cls = (torch.arange(self.seen, self.seen + b) >= self.first).long()
        out[torch.arange(b), cls] = 1.0
        self.seen += b
        return out


def test_class_is_chosen_from_the_selection_samples_only():
    """Choosing from the estimation counts would certify class 1 with a large radius."""
    res = certify(
        SwitchesAfter(100).eval(),
        TOKENS,
        torch.zeros(8),
        sigma=0.5,
        beta=0.3,
        alphabet=10,
        n0=100,
        n=1000,
        alpha=0.01,
        batch_size=64,
    )
    assert res.counts_selection == (100, 0) and res.counts_estimation == (0, 1000)
    assert int(np.argmax(res.counts_selection)) == 0
    assert res.abstained and res.prediction is None and res.p_lower == 0.0
    assert res.radius == 0.0 and set(res.radius_curve) == {0.0}
    assert res.details.d_certified is None


def test_curve_is_cut_after_the_last_d_certified_at_r_zero(monkeypatch):
    """The staircase cut: nothing is certified past d_certified, whatever the curve says."""
    import smoothcert.decisions.hybrid as hybrid_module

    kw = dict(sigma=0.25, beta=0.9, alphabet=1000, n0=10, n=2000, alpha=0.001)
    threat = threats.anywhere(d_max=3)
    full = certify(Constant().eval(), TOKENS, torch.zeros(4), threat=threat, **kw)
    assert full.details.d_certified == 3 and all(r > 0 for r in full.radius_curve)
    monkeypatch.setattr(hybrid_module, "certified_tokens", lambda *a, **k: 1)
    cut = certify(Constant().eval(), TOKENS, torch.zeros(4), threat=threat, **kw)
    assert cut.details.d_certified == 1
    assert cut.radius_curve == (*full.radius_curve[:2], 0.0, 0.0)

"""The hybrid attack (attack-hybrid) against a closed-form oracle: a text+image linear score.

``TextImageModel`` (tests/pipeline_toys.py) has class-1 logit ``s = 6 frac3 + 3 mean(img) -
4.5`` (and ``-s`` for class 0), where ``frac3`` is the share of token 3 in the 6 tokens and
the image has 4 pixels. So the exact worst case of ``d`` substitutions and an L2 image
perturbation of norm ``r`` (inside the pixel box) lowers ``s`` by exactly ``d + 1.5 r``
(remove ``d`` threes; move every pixel down by ``r / 2``). With little noise (beta 0.05,
sigma 0.1) the smoothed filter's flag follows the sign of ``s``: the attack must reach that
worst case, un-flag the pair exactly where the worst case crosses 0 by a margin, never
where it stays clearly positive, and never inside the region ``hybrid`` certifies.
"""

from __future__ import annotations

import pytest
import torch

from pipeline_toys import TextImageModel
from smoothcert.decisions.attack_hybrid import HybridAttackParams
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.attack_hybrid import attack_hybrid, attack_pair, prepare
from smoothcert.methods.hybrid import certify
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.noise.product import TokenImageNoise
from smoothcert.noise.tokens import TokenSubstitutionNoise

TOKENS = torch.tensor([5, 3, 3, 3, 1, 1])  # frac3 = 1/2
IMAGE = torch.full((1, 2, 2), 0.9)  # s = 3 + 2.7 - 4.5 = 1.2
KW = {"sigma": 0.1, "beta": 0.05, "alphabet": 7, "target": 1, "tau": 0.5}


def score(tokens: torch.Tensor, image: torch.Tensor) -> float:
    return 6 * float((tokens == 3).float().mean()) + 3 * float(image.mean()) - 4.5


def params(**kw) -> HybridAttackParams:
    base = {**KW, "n0": 0, "n": 1000, "alpha": 0.001, "radii": (0.0, 0.4), "attack_d_max": 2}
    return HybridAttackParams(**{**base, **kw})


@pytest.mark.parametrize(("d", "radius"), [(1, 0.0), (2, 0.0), (0, 0.4), (1, 0.2), (2, 0.4)])
def test_attack_reaches_the_exact_worst_case(d, radius) -> None:
    kernel = TokenImageNoise(TokenSubstitutionNoise(beta=0.05, alphabet=7), GaussianNoise(0.1))
    tokens, image = attack_pair(
        TextImageModel().eval(),
        kernel,
        TOKENS,
        IMAGE,
        torch.arange(6),
        torch.arange(7),
        d=d,
        radius=radius,
        params=params(steps=30, noise_samples=32),
        generator=torch.Generator().manual_seed(d),
    )
    assert int((tokens != TOKENS).sum()) <= d
    assert float((image - IMAGE).norm()) <= radius * (1 + 1e-5)
    assert score(tokens, image) == pytest.approx(1.2 - d - 1.5 * radius, abs=0.03)


def test_unflags_where_the_worst_case_crosses_zero_and_never_elsewhere() -> None:
    res = attack_hybrid(
        TextImageModel().eval(),
        TOKENS,
        IMAGE,
        **KW,
        radii=(0.0, 0.05, 0.4),
        attack_d_max=2,
        n=2000,
        steps=30,
        noise_samples=32,
        seed=3,
    )
    assert res.prediction == 1 and res.claim == "empirical"
    points = list(zip(res.details.d_values, res.details.r_values, strict=True))
    worst = {p: 1.2 - p[0] - 1.5 * p[1] for p in points}
    # s >= 0.125 keeps P(flag) near 0.7 or more: never un-flagged (no false success);
    # s <= -0.4 leaves P(flag) below 0.05: un-flagged
    for p, unflagged in zip(points, res.details.unflagged, strict=True):
        assert unflagged == (worst[p] < 0), (p, worst[p])
    assert res.radius == 0.4  # nothing at d = 0 un-flags it


def test_the_certified_region_is_never_unflagged() -> None:
    cert = certify(TextImageModel().eval(), TOKENS, IMAGE, **KW, n0=0, n=10_000, alpha=0.001)
    assert cert.radius_curve is not None and cert.radius_curve[0] > 0
    radii = (0.0, 0.1, 0.3, 0.6)
    res = attack_hybrid(
        TextImageModel().eval(),
        TOKENS,
        IMAGE,
        **KW,
        radii=radii,
        attack_d_max=2,
        n=2000,
        steps=20,
        noise_samples=16,
        seed=1,
    )
    for d, r, unflagged in zip(
        res.details.d_values, res.details.r_values, res.details.unflagged, strict=True
    ):
        if r < cert.radius_curve[d] or (r == 0 and cert.radius_curve[d] > 0):
            assert not unflagged, (d, r, cert.radius_curve)
    assert any(res.details.unflagged)  # and the attack does succeed somewhere


def test_bad_input_is_rejected_before_sampling() -> None:
    model = TextImageModel().eval()
    with pytest.raises(InvalidParameterError, match="target = None"):
        HybridAttackParams(sigma=0.1, beta=0.05, alphabet=7, n0=1, n=10, alpha=0.01)
    with pytest.raises(InvalidParameterError, match="nothing to attack"):
        params(radii=(0.0,), attack_d_max=0)
    with pytest.raises(InvalidParameterError, match="radii = "):
        params(radii=(0.4, 0.1))
    with pytest.raises(InvalidParameterError, match="attack_d_max = 7"):
        prepare(model, (TOKENS, IMAGE), params(attack_d_max=7), seed=0)
    with pytest.raises(InvalidParameterError, match="pixels in"):
        prepare(model, (TOKENS, IMAGE + 1.0), params(), seed=0)
    with pytest.raises(InvalidParameterError, match="target = 2"):
        prepare(model, (TOKENS, IMAGE), params(target=2), seed=0)


def test_an_unflagged_pair_is_not_attacked_and_abstains() -> None:
    res = attack_hybrid(
        TextImageModel().eval(),
        torch.tensor([5, 1, 1, 1, 1, 1]),
        torch.full((1, 2, 2), 0.1),
        **KW,
        radii=(0.0, 0.2),
        attack_d_max=1,
        n=200,
        steps=2,
        noise_samples=4,
        seed=0,
    )
    assert res.abstained and res.prediction is None and not any(res.details.unflagged)

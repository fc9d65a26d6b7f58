"""The attack's torch half (attack-l2) against a closed-form oracle: a linear model.

For a 2-class linear model with logits ``(s, -s)``, ``s = w.x + b``, the Gaussian-smoothed
classifier is ``P(class 0) = Phi(s / (sigma ||w||))`` (DESIGN.md, soundness rule 3): its
decision boundary is the hyperplane ``s = 0`` itself, so the worst-case L2 perturbation of
``x`` is known exactly: the distance ``d = |s(x)| / ||w||``, along ``-sign(s) w``. PGD must
flip the smoothed prediction when ``r`` exceeds ``d`` by a margin, must never declare a flip
below ``d`` (no false flips), must reach the closest point of the hyperplane, and Cohen's
certified radius at the same input must sit below the attack's first flip.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from smoothcert.decisions.attack import AttackParams
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.attack import attack, prepare, smoothed_pgd
from smoothcert.methods.cohen import certify
from smoothcert.methods.sampler import draw, draw_many

SIGMA = 0.25
SHAPE = (1, 4, 4)


def linear_case(seed: int, distance: float) -> tuple[torch.nn.Module, torch.Tensor, np.ndarray]:
    """A linear 2-class model whose hyperplane passes through the box's centre, and an input
    at L2 ``distance`` from it (on the class-0 side), with its closest boundary point inside
    the pixel box."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=16)
    u = w / np.linalg.norm(w)
    centre = np.full(16, 0.5)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(np.stack([w, -w]), dtype=torch.float32))
        b = -float(w @ centre)
        model[1].bias.copy_(torch.tensor([b, -b], dtype=torch.float32))
    x = centre + distance * u
    return model.eval(), torch.tensor(x.reshape(SHAPE), dtype=torch.float32), u


def signed_distance(model: torch.nn.Module, x: torch.Tensor) -> float:
    lin = model[1]
    w = lin.weight[0].detach().double().numpy()
    s = float(w @ x.double().flatten().numpy() + float(lin.bias[0].detach()))
    return s / float(np.linalg.norm(w))


def box_margin(x: torch.Tensor, u: np.ndarray, reach: float) -> bool:
    """True if moving x by up to ``reach`` along -u stays inside [0, 1]."""
    end = x.flatten().numpy() - reach * u
    return bool(end.min() >= 0.0 and end.max() <= 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pgd_reaches_the_closest_point_of_the_hyperplane(seed) -> None:
    model, x, u = linear_case(seed, distance=0.4)
    assert box_margin(x, u, 0.6)
    assert signed_distance(model, x) == pytest.approx(0.4, abs=1e-5)
    for radius in (0.2, 0.6):
        x_adv = smoothed_pgd(
            model,
            x,
            0,
            radius=radius,
            sigma=SIGMA,
            steps=40,
            step_size=2.5 * radius / 40,
            noise_samples=16,
            generator=torch.Generator().manual_seed(seed),
        )
        moved = float((x_adv - x).norm())
        assert moved <= radius * (1 + 1e-5)
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
        # the exact worst case moves the full radius along -w: the signed distance drops by r
        assert signed_distance(model, x_adv) == pytest.approx(0.4 - radius, abs=0.02 * radius)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_flips_beyond_the_distance_and_never_below_it(seed) -> None:
    d = 0.3 + 0.1 * seed
    model, x, u = linear_case(seed, distance=d)
    assert box_margin(x, u, d + 0.3)
    # below d: the smoothed prediction provably cannot change (P(class 0) >= Phi((d-r)/sigma)
    # > 1/2); just above d + margin it provably changes (P(class 0) <= Phi(-0.25/sigma))
    radii = (d - 0.15, d - 0.02, d + 0.25)
    res = attack(
        model,
        x,
        sigma=SIGMA,
        radii=radii,
        steps=30,
        noise_samples=16,
        eval_n=2000,
        alpha=0.001,
        seed=seed,
    )
    assert res.prediction == 0
    assert res.details.flipped == (False, False, True)
    assert res.radius == pytest.approx(d - 0.02) and res.details.first_flip == d + 0.25


def test_no_false_flips_right_below_the_boundary() -> None:
    # 12 inputs attacked just inside the boundary (r = d - 0.01: the best point has
    # P(class 0) = Phi(0.04) ~ 0.516): the counts there are a near-tie, never a flip
    for seed in range(12):
        model, x, _ = linear_case(seed, distance=0.3)
        res = attack(
            model,
            x,
            sigma=SIGMA,
            radii=(0.29,),
            steps=20,
            noise_samples=8,
            eval_n=500,
            alpha=0.001,
            seed=seed,
        )
        assert res.details.flipped == (False,)


@pytest.mark.parametrize("seed", [0, 1])
def test_certified_radius_is_below_the_attack(seed) -> None:
    # Cohen's certificate <= true robust radius d <= the attack's first flip; and at every
    # grid radius the certificate covers, the attack finds no flip (certified <= empirical)
    d = 0.45
    model, x, u = linear_case(seed, distance=d)
    assert box_margin(x, u, 0.8)
    cert = certify(model, x, sigma=SIGMA, n0=100, n=10_000, alpha=0.001, seed=seed)
    assert cert.prediction == 0 and 0.2 < cert.radius < d
    grid = tuple(np.round(np.arange(0.05, 0.8, 0.05), 2))
    res = attack(
        model, x, sigma=SIGMA, radii=grid, steps=30, noise_samples=16, eval_n=2000, seed=seed
    )
    assert res.details.first_flip is not None
    assert cert.radius <= d < res.details.first_flip
    assert cert.radius <= res.radius + 0.05  # the grid's resolution
    assert not any(f for r, f in zip(grid, res.details.flipped, strict=True) if r <= cert.radius)


def test_logit_margin_score_and_fixed_start_also_flip() -> None:
    model, x, _ = linear_case(5, distance=0.3)
    res = attack(
        model,
        x,
        sigma=SIGMA,
        radii=(0.2, 0.6),
        steps=20,
        noise_samples=4,
        eval_n=1000,
        score="logits",
        random_start=False,
        seed=0,
    )
    assert res.details.flipped == (False, True)


def test_same_seed_same_record_and_no_global_rng() -> None:
    model, x, _ = linear_case(0, distance=0.3)
    state = torch.get_rng_state()
    one = attack(model, x, sigma=SIGMA, radii=(0.2, 0.4), steps=5, eval_n=200, seed=7)
    two = attack(model, x, sigma=SIGMA, radii=(0.2, 0.4), steps=5, eval_n=200, seed=7)
    assert torch.equal(state, torch.get_rng_state())
    assert one.evidence.stages == two.evidence.stages


def test_works_inside_inference_mode_and_in_shared_batches() -> None:
    model, x, _ = linear_case(1, distance=0.3)
    p = AttackParams(sigma=SIGMA, radii=(0.2, 0.5), steps=5, noise_samples=4, eval_n=300)
    xs = [x, x.flip(-1)]
    with torch.inference_mode():
        alone = [draw(prepare(model, (xi,), p, seed=i, batch_size=64)) for i, xi in enumerate(xs)]
    shared = draw_many([prepare(model, (xi,), p, seed=i, batch_size=64) for i, xi in enumerate(xs)])
    assert [e.stages for e in alone] == [e.stages for e in shared]
    assert [s.role for s in alone[0].stages] == ["selection", "attack", "attack"]


def test_bad_inputs_are_rejected_before_sampling() -> None:
    model, x, _ = linear_case(0, distance=0.3)
    p = AttackParams(sigma=SIGMA, radii=(0.2,))
    with pytest.raises(InvalidParameterError, match=r"clip = True.*valid: x in \[0, 1\]"):
        prepare(model, (x + 2.0,), p, seed=0)
    with pytest.raises(InvalidParameterError, match="NaN"):
        prepare(model, (x * math.nan,), p, seed=0)
    from smoothcert.decisions.cohen import GaussianParams

    with pytest.raises(InvalidParameterError, match="valid: AttackParams"):
        prepare(model, (x,), GaussianParams(sigma=0.5, n0=1, n=1, alpha=0.1), seed=0)
    # clip = False accepts inputs outside the pixel box
    res = attack(model, x + 2.0, sigma=SIGMA, radii=(0.2,), steps=2, eval_n=50, clip=False)
    assert res.details.radii == (0.2,) and res.prediction in (0, 1)

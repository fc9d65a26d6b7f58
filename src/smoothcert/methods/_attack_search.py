"""Search loops shared by the attacks on smoothed models (torch).

* :func:`l2_pgd`: L2 projected gradient descent (Madry et al. 2018, arXiv 1706.06083) of
  any stochastic objective (``attack-l2``, ``attack-hybrid``, ``attack-fields``);
* :func:`smoothed_score`: the Monte Carlo smoothed score of one class at a (tokens, x)
  pair under a joint kernel (no gradient);
* :func:`attack_plan`: the stages of every attack (clean ``selection``, then one
  ``attack`` stage per attacked point, the attack running in ``next_stage``);
* :func:`greedy_edits`: greedy coordinate search over discrete edits, each candidate
  scored on the SAME noise draws (common random numbers), as in the token attacks of
  Ebrahimi et al. 2018 (HotFlip, arXiv 1712.06751) and Zou et al. 2023 (GCG,
  arXiv 2307.15043, whose candidate evaluation this follows).

All randomness comes from the caller's ``torch.Generator``.

Example:
    >>> import torch
    >>> out = l2_pgd(lambda p: (p * torch.tensor([1.0, 0.0])).sum(), torch.zeros(2),
    ...              radius=0.5, steps=3, step_size=0.3)
    >>> [round(v, 3) for v in out.tolist()]
    [-0.5, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from smoothcert.errors import InvalidParameterError
from smoothcert.methods.sampler import PlannedStage, Prepared, Sampler
from smoothcert.records import Evidence, Facts
from smoothcert.sampling.engine import autocast_context


class JointSampler(Protocol):
    """A kernel bound to one (tokens, x) pair: ``sample(num, generator=)`` -> both noised."""

    def sample(
        self, num: int, *, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


Bind = Callable[[torch.Tensor, torch.Tensor], JointSampler]
"""``bind(tokens, x)``: the smoothed model's kernel bound to a (tokens, x) pair."""


def l2_pgd(
    objective: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    radius: float,
    steps: int,
    step_size: float,
    clip: bool = False,
    start_delta: torch.Tensor | None = None,
) -> torch.Tensor:
    """Minimise ``objective(x')`` over ``||x' - x||_2 <= radius`` by normalised-gradient PGD.

    Each step moves ``x'`` by ``step_size`` along ``-grad / ||grad||``, projects onto the
    ball and, with ``clip``, clamps to the pixel box [0, 1] (``x`` must lie in it; the clamp
    only moves coordinates towards ``x``, so it keeps the ball).

    Args:
        objective: a scalar function of the (float32, gradient-tracking) point; it may
            draw noise from a generator (a stochastic objective).
        x: the clean input (any shape), units of the ball.
        radius: the ball's L2 radius, >= 0.
        steps: PGD steps, >= 1.
        step_size: L2 length of a step, > 0.
        clip: clamp to [0, 1] after each step.
        start_delta: the starting offset from ``x`` (in the ball); default 0.

    Returns:
        The attacked point (detached, float32, shape of ``x``), ``||x' - x||_2 <= radius``
        (checked).

    Raises:
        InvalidParameterError: if the objective's gradient is not finite.
    """
    with torch.inference_mode(False), torch.enable_grad():
        x0 = x.detach().clone().float()
        delta = torch.zeros_like(x0) if start_delta is None else start_delta.detach().float()
        for _ in range(steps):
            point = (x0 + delta).requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(point), point)
            norm = float(grad.norm())
            if not math.isfinite(norm):
                raise InvalidParameterError(
                    f"the attack's gradient has norm {norm}; valid: a model with finite "
                    "gradients at the noisy inputs"
                )
            if norm > 0:
                delta = delta.detach() - step_size * grad / norm
            length = float(delta.norm())
            if length > radius:
                delta = delta * (radius / length)
            if clip:
                delta = (x0 + delta).clamp(0.0, 1.0) - x0
        delta = delta.detach()
    moved = float(delta.norm())
    if moved > radius * (1 + 1e-5):
        raise AssertionError(f"PGD left the ball: ||delta|| = {moved} > radius = {radius}")
    return x0 + delta


def joint_objective(
    model: Callable[..., torch.Tensor],
    bound: JointSampler,
    x: torch.Tensor,
    target: int,
    *,
    noise_samples: int,
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``point -> log mean_j softmax(f(Z_j, point + e_j))_target`` with fresh joint draws.

    ``bound`` is the kernel bound to the attacked tokens and the clean ``x``; each call
    draws ``noise_samples`` (tokens, x) samples from it and keeps the continuous noise
    ``e_j = x_j - x`` (the kernel's Gaussian part is additive), so the gradient flows to
    ``point`` (SmoothAdv's objective, Salman et al. 2019, arXiv 1906.04584, Section 3.1).
    """

    def objective(point: torch.Tensor) -> torch.Tensor:
        toks, xs = bound.sample(noise_samples, generator=generator)
        noise = (xs.float() - x.float()).detach().clone()
        with autocast_context(x.device, autocast_dtype):
            logits = model(toks.clone(), (point.unsqueeze(0) + noise).to(x.dtype))
        probs = torch.softmax(logits.float(), dim=1)[:, target]
        return torch.log(probs.mean().clamp_min(1e-30))

    return objective


def smoothed_score(
    model: Callable[..., torch.Tensor],
    bound: JointSampler,
    target: int,
    *,
    num: int,
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Monte Carlo ``mean_j softmax(f(Z_j, X_j))_target`` over ``num`` joint draws."""
    toks, xs = bound.sample(num, generator=generator)
    with torch.inference_mode(), autocast_context(xs.device, autocast_dtype):
        logits = model(toks, xs)
    return float(torch.softmax(logits.float(), dim=1)[:, target].mean())


def greedy_edits(
    model: Callable[..., torch.Tensor],
    bind: Bind,
    tokens: torch.Tensor,
    x: torch.Tensor,
    *,
    d: int,
    propose: Callable[[torch.Tensor, Sequence[int]], Sequence[tuple[int, int]]],
    target: int,
    noise_samples: int,
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """At most ``d`` edits ``tokens[pos] = tok``, each the candidate of lowest smoothed score.

    ``d`` times: ``propose(current tokens, edited positions)`` returns the candidate
    (position, token) pairs (it may draw from ``generator``; an empty list stops the
    search); "no change" and every candidate are scored by :func:`smoothed_score` at
    ``x`` on the SAME ``noise_samples`` draws (the generator's state is restored before
    each), and the lowest-scoring candidate is applied if it beats "no change". A
    position is edited at most once.

    Returns:
        The edited tokens (a copy).
    """
    adv = tokens.clone()
    edited: list[int] = []
    for _ in range(d):
        candidates = propose(adv, edited)
        if not candidates:
            break
        state = generator.get_state()
        score: dict[str, Any] = {
            "num": noise_samples,
            "generator": generator,
            "autocast_dtype": autocast_dtype,
        }
        best_score, best = smoothed_score(model, bind(adv, x), target, **score), None
        for pos, tok in candidates:
            trial = adv.clone()
            trial[pos] = tok
            generator.set_state(state)  # the same noise for every candidate
            value = smoothed_score(model, bind(trial, x), target, **score)
            if value < best_score:
                best_score, best = value, (pos, tok)
        if best is not None:
            adv[best[0]] = best[1]
            edited.append(best[0])
    return adv


def attack_plan(
    sampler: Sampler,
    *,
    points: int,
    n: int,
    alpha: float,
    facts: Facts,
    start: float,
    attack: Callable[[int, Evidence], Any],
) -> Prepared:
    """The stage plan every attack shares, around the clean input's ``sampler``.

    A ``selection`` stage of ``n`` samples at the clean input, then (``next_stage``) for
    each attacked point ``i``: ``attack(i, evidence so far)`` returns the kernel bound to
    the attacked input, and an ``attack`` stage of ``n`` FRESH samples is drawn there
    (a sampler per point, sharing the clean sampler's generator and options).

    Args:
        sampler: the :class:`~smoothcert.methods.sampler.Sampler` at the clean input.
        points: number of attacked points.
        n: samples per stage.
        alpha: level spent by each attack stage's test (recorded in the plan).
        facts: the decision's facts.
        start: ``time.perf_counter()`` when preparing began.
        attack: runs the attack at point ``i`` and returns the bound kernel there.

    Returns:
        The :class:`~smoothcert.methods.sampler.Prepared` plan.
    """
    targets = tuple(
        Sampler(
            sampler.model,
            sampler.noise,
            seed=sampler.seed,
            batch_size=sampler.batch_size,
            num_classes=sampler.num_classes,
            device=sampler.device,
            autocast_dtype=sampler.autocast_dtype,
            probe=False,
            generator=sampler.generator,
        )
        for _ in range(points)
    )

    def rule(evidence: Evidence) -> PlannedStage | None:
        i = len(evidence.stages) - 1
        if i >= points:
            return None
        targets[i].noise = attack(i, evidence)
        return PlannedStage("attack", n, alpha, source=i + 1)

    return Prepared(
        sampler,
        (PlannedStage("selection", n, 0.0),),
        facts,
        start,
        next_stage=rule,
        sources=targets,
    )

"""L2 PGD attack on the Gaussian-smoothed classifier (torch half of ``attack-l2``).

Empirical robustness next to the certificate: at each radius ``r`` of a grid, an L2 PGD
(Madry et al. 2018, arXiv 1706.06083) on the SMOOTHED classifier's soft score, with the
expectation over noise estimated by ``noise_samples`` draws per step, as SmoothAdv (Salman
et al. 2019, arXiv 1906.04584, Section 3.1: PGD on ``-log E_e[softmax(f(x' + e))_c]``).
What the decision does with the counts, what the numbers mean and why they are an upper
bound on the robust accuracy: :mod:`smoothcert.decisions.attack`.

The stages (all noise from the input's ``torch.Generator``, never the global RNG):

1. ``selection``: ``eval_n`` noisy samples at ``x``; their majority class ``c`` is the
   clean prediction (label-free);
2. for each grid radius ``r``, in order: PGD from ``x`` (or a random point of the ball)
   that minimises the smoothed score of ``c`` within ``||x' - x||_2 <= r`` (and the pixel
   box [0, 1] when ``clip``), then an ``attack`` stage of ``eval_n`` FRESH noisy samples
   at ``x'(r)``.

The PGD runs inside the pure stopping rule's slot of :class:`~smoothcert.methods.sampler.Prepared`
(``next_stage``), so :func:`~smoothcert.methods.sampler.draw` and ``draw_many`` give the same
records and the runner, resume, Ray and reports work unchanged. The PGD is written here
(:func:`smoothed_pgd`), not taken from torchattacks: see docs/implementation.md.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 2).eval()
    >>> with torch.no_grad():  # class 0 iff x[0] > 0.5
    ...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    ...     _ = model.bias.copy_(torch.tensor([-0.5, 0.5]))
    >>> res = attack(model, torch.tensor([0.8, 0.5]), sigma=0.1, radii=(0.1, 0.6),
    ...              steps=10, noise_samples=4, eval_n=500, seed=0)
    >>> res.prediction, res.radius, res.details.flipped
    (0, 0.1, (False, True))
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from smoothcert.decisions.attack import AttackFacts, AttackParams, decide_attack
from smoothcert.errors import InvalidParameterError
from smoothcert.methods._attack_search import attack_plan, l2_pgd
from smoothcert.methods._common import check_image, model_device
from smoothcert.methods.sampler import Prepared, Sampler, draw
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.records import CertifyResult, Evidence
from smoothcert.sampling.device import check_device
from smoothcert.sampling.engine import autocast_context


def _objective(logits: torch.Tensor, target: int, score: str, temperature: float) -> torch.Tensor:
    """The quantity PGD minimises, averaged over the noise draws (see ATTACK_SCORES)."""
    logits = logits.float()
    if score == "softmax":
        probs = torch.softmax(temperature * logits, dim=1)[:, target]
        return torch.log(probs.mean().clamp_min(1e-30))
    others = logits.clone()
    others[:, target] = -math.inf
    return (logits[:, target] - others.max(dim=1).values).mean()


def smoothed_pgd(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    target: int,
    *,
    radius: float,
    sigma: float,
    steps: int,
    step_size: float,
    noise_samples: int,
    generator: torch.Generator,
    score: str = "softmax",
    temperature: float = 1.0,
    random_start: bool = True,
    clip: bool = True,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """L2 PGD against the Gaussian-smoothed score of class ``target`` (SmoothAdv's attack).

    Each step draws ``noise_samples`` noise vectors ``e_j ~ N(0, sigma^2 I)`` from
    ``generator``, takes the gradient of the objective (``score``, see
    :data:`smoothcert.decisions.attack.ATTACK_SCORES`) at ``x'`` through ``f(x' + e_j)``,
    moves ``x'`` by ``step_size`` along the normalised negative gradient, projects onto the
    L2 ball ``||x' - x||_2 <= radius`` and, with ``clip``, clamps to the pixel box [0, 1]
    (``x`` must then lie in it, so the clamp keeps the ball: it only moves coordinates
    towards ``x``). Salman et al. 2019 (arXiv 1906.04584), Section 3.1 and Appendix.

    Args:
        model: eval-mode model mapping ``(B, *x.shape)`` to logits ``(B, num_classes)``.
        x: the clean input, no batch axis, on the generator's device.
        target: the class whose smoothed score is minimised (the clean prediction).
        radius: the L2 ball's radius, > 0, units of ``x``.
        sigma: the smoothing noise, > 0, units of ``x``.
        steps: PGD steps, >= 1.
        step_size: L2 step length, > 0, units of ``x``.
        noise_samples: noise draws per step (one forward batch), >= 1.
        generator: the ``torch.Generator`` all noise (and the random start) comes from.
        score: ``"softmax"`` or ``"logits"``.
        temperature: the softmax is of ``temperature * logits``.
        random_start: start at a uniform random point of the ball (intersected with the
            box), else at ``x``.
        clip: project onto [0, 1] after each step.
        autocast_dtype: optional reduced-precision forward passes.

    Returns:
        The attacked input ``x'`` (detached, shape and dtype of ``x``), with
        ``||x' - x||_2 <= radius`` (checked).

    Example:
        >>> lin = torch.nn.Linear(2, 2).eval()
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        ...     _ = lin.bias.zero_()
        >>> x_adv = smoothed_pgd(lin, torch.tensor([0.3, 0.5]), 0, radius=0.2, sigma=0.1,
        ...                      steps=5, step_size=0.1, noise_samples=4, random_start=False,
        ...                      generator=torch.Generator().manual_seed(0))
        >>> [round(v, 3) for v in x_adv.tolist()]
        [0.1, 0.5]
    """
    device = x.device
    with torch.inference_mode(False):
        x0 = x.detach().clone().float()
        delta = torch.zeros_like(x0)
        if random_start:
            direction = torch.randn(x0.shape, generator=generator, device=device)
            u = torch.rand((), generator=generator, device=device)
            length = radius * float(u) ** (1.0 / x0.numel())
            delta = direction * (length / float(direction.norm().clamp_min(1e-12)))
            if clip:
                delta = (x0 + delta).clamp(0.0, 1.0) - x0

    def objective(point: torch.Tensor) -> torch.Tensor:
        noise = torch.randn((noise_samples, *x0.shape), generator=generator, device=device)
        batch = (point.unsqueeze(0) + sigma * noise).to(x.dtype)
        with autocast_context(torch.device(device), autocast_dtype):
            logits = model(batch)
        return _objective(logits, target, score, temperature)

    out = l2_pgd(
        objective,
        x,
        radius=radius,
        steps=steps,
        step_size=step_size,
        clip=clip,
        start_delta=delta,
    )
    return out.to(x.dtype)


def _attack_at(
    params: AttackParams,
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None,
) -> Callable[[int, Evidence], Any]:
    """The attack at radius ``i``: PGD from ``x``, then the kernel bound to ``x'(r_i)``."""

    def attack_at(i: int, evidence: Evidence) -> Any:
        clean = int(np.argmax(np.asarray(evidence.stages[0].counts, dtype=np.int64)))
        radius = params.radii[i]
        x_adv = smoothed_pgd(
            model,
            x,
            clean,
            radius=radius,
            sigma=params.sigma,
            steps=params.steps,
            step_size=params.step_length(radius),
            noise_samples=params.noise_samples,
            generator=generator,
            score=params.score,
            temperature=params.temperature,
            random_start=params.random_start,
            clip=params.clip,
            autocast_dtype=autocast_dtype,
        )
        return GaussianNoise(params.sigma).bind(x_adv)

    return attack_at


def prepare(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: AttackParams,
    *,
    seed: int,
    batch_size: int = 1000,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    input_shape: tuple[int, ...] | None = None,
    probe: bool = True,
) -> Prepared:
    """Validate everything and plan the attack at one input (stages: module docstring).

    Args:
        model: ``torch.nn.Module`` in eval mode (differentiable) mapping a batch
            ``(B, *x.shape)`` to logits ``(B, num_classes)``.
        inputs: ``(x,)``: one input, no batch axis, finite floating-point tensor; with
            ``params.clip`` its values must lie in [0, 1].
        params: the :class:`~smoothcert.decisions.attack.AttackParams`.
        seed: seed of the ``torch.Generator`` of every stage and of the PGD (recorded).
        batch_size: noisy samples per forward pass of the evaluations, >= 1.
        num_classes: expected output columns; inferred from the model if None.
        device: device to sample on; default the model's (else ``x``'s) device.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.
        input_shape: if given, ``x.shape`` must equal it.
        probe: check the model on the clean input first (see
            :class:`~smoothcert.methods.sampler.Sampler`).

    Returns:
        The :class:`~smoothcert.methods.sampler.Prepared` plan: a selection stage, then
        (``next_stage``) one PGD plus ``attack`` stage per radius.

    Raises:
        InvalidParameterError: on any bad argument (``x`` outside [0, 1] with ``clip``,
            parameters of another method), before sampling.
    """
    start = time.perf_counter()
    if not isinstance(params, AttackParams):
        raise InvalidParameterError(
            f"params of type {type(params).__name__} are invalid for method 'attack-l2'; "
            "valid: AttackParams"
        )
    (x,) = inputs
    check_image(x, input_shape=input_shape)
    if params.clip and not bool(((x >= 0) & (x <= 1)).all()):
        raise InvalidParameterError(
            f"x has values in [{float(x.min()):g}, {float(x.max()):g}] but clip = True "
            "projects onto the pixel box; valid: x in [0, 1], or clip = False"
        )
    dev = check_device(device) if device is not None else model_device(model, x.device)
    x = x.to(dev)
    kernel = GaussianNoise(params.sigma)
    sampler = Sampler(
        model,
        kernel.bind(x),
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=dev,
        autocast_dtype=autocast_dtype,
        probe=probe,
    )
    return attack_plan(
        sampler,
        points=len(params.radii),
        n=params.eval_n,
        alpha=params.alpha,
        facts=AttackFacts(num_classes=sampler.num_classes, radii=params.radii),
        start=start,
        attack=_attack_at(params, model, x, sampler.generator, autocast_dtype),
    )


def attack(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *,
    sigma: float,
    radii: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
    steps: int = 20,
    step_size: float | None = None,
    noise_samples: int = 8,
    eval_n: int = 1000,
    temperature: float = 1.0,
    score: str = "softmax",
    random_start: bool = True,
    clip: bool = True,
    alpha: float = 0.001,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Attack the smoothed classifier at ``x`` at each radius of a grid (see the module docstring).

    Args:
        model: eval-mode differentiable model mapping ``(B, *x.shape)`` to logits.
        x: one input, no batch axis (pixels in [0, 1] unless ``clip=False``).
        sigma: noise of the smoothed classifier, > 0, units of ``x``.
        radii: the attacked L2 radii, increasing, > 0, units of ``x``.
        steps: PGD steps per radius, >= 1.
        step_size: PGD step length (default ``2.5 r / steps``).
        noise_samples: noise draws per gradient step, >= 1.
        eval_n: noisy samples per evaluation (clean and each attacked input), >= 1.
        temperature: softmax temperature of the attacked score, > 0.
        score: ``"softmax"`` (SmoothAdv) or ``"logits"`` (mean logit margin).
        random_start: start PGD at a random point of the ball.
        clip: keep the attacked input in [0, 1].
        alpha: level of the flip test at each radius, in (0, 1).
        batch_size: noisy samples per forward pass of the evaluations, >= 1.
        seed: generator seed (recorded); same seed, same result.
        num_classes: expected output columns; inferred if None.
        device: device to sample on; default the model's.
        autocast_dtype: optional reduced-precision forward passes.

    The fields are those of :class:`~smoothcert.decisions.attack.AttackParams`.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"attack-l2"``, claim
        ``"empirical"`` (NOT a certificate) and
        :class:`~smoothcert.decisions.attack.AttackDetails`.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    params = AttackParams(
        sigma=sigma,
        radii=tuple(radii),
        steps=steps,
        step_size=step_size,
        noise_samples=noise_samples,
        eval_n=eval_n,
        temperature=temperature,
        score=score,
        random_start=random_start,
        clip=clip,
        alpha=alpha,
    )
    prepared = prepare(
        model,
        (x,),
        params,
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=device,
        autocast_dtype=autocast_dtype,
    )
    return decide_attack(draw(prepared), params)

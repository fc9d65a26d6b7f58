"""Joint attack on a smoothed tabular classifier (``attack-fields``): fields + continuous PGD.

The classifier is the majority vote ``hybrid-fields`` certifies
(:mod:`smoothcert.methods.fields`: each categorical field's own uniform kernel
``(V_f, beta_f)`` times ``N(0, sigma^2 I)`` on the continuous vector; Delattre et al.,
ICML 2026, arXiv 2605.12876, tabular experiment). At each grid point ``(d, r)`` the
attacker tries to change the smoothed prediction ``c`` (the clean majority class) with at
most ``d`` changed fields (any other level of the field's own alphabet) and a continuous
move ``||delta||_2 <= r``:

1. fields, greedy (:func:`~smoothcert.methods._attack_search.greedy_edits`): ``d`` times,
   score EVERY change of a not yet changed field to every other level of its alphabet
   (``sum_f (V_f - 1)`` candidates, 22 on ``fair``), plus "no change", by the Monte Carlo
   smoothed score ``mean_j P(c | Z_j, X' + e_j)`` over ``noise_samples`` joint draws (the
   same draws for every candidate), and keep the lowest;
2. continuous part: L2 PGD on ``log mean_j softmax(f(Z_j, X' + e_j))_c`` with those
   fields (:func:`~smoothcert.methods._attack_search.l2_pgd`). NO box clipping: the
   continuous columns are standardised values, not pixels, and the threat (like the
   certificate) is the whole L2 ball;
3. with ``d >= 1`` and ``r > 0``, steps 1-2 alternate ``rounds`` times: the fields are
   chosen again (from the clean row) at the moved continuous point, then PGD continues
   from that point.

Then ``eval_n`` FRESH noisy samples at the attacked row give the counts of one ``attack``
stage per point; :mod:`smoothcert.decisions.attack_fields` decides (a change is declared
only by PREDICT's test at ``alpha``). All randomness comes from the row's
``torch.Generator``.

Example:
    >>> import torch
    >>> class Additive(torch.nn.Module):  # class 1 iff [field 0 == 1] + sum(x) - 0.5 > 0
    ...     def forward(self, toks, cont):
    ...         z = 3 * ((toks[:, 0] == 1).float() + cont.sum(1) - 0.5)
    ...         return torch.stack([-z, z], dim=1)
    >>> res = attack_fields(Additive().eval(), torch.tensor([1, 0]), torch.zeros(2),
    ...                     vocab_sizes=(2, 3), betas=(0.1, 0.3), sigma=0.2,
    ...                     radii=(0.0, 0.1, 1.0), attack_d_max=1, eval_n=500, steps=10)
    >>> res.prediction, res.details.flipped
    (1, (False, True, True, True, True))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from smoothcert.decisions.attack_fields import (
    FieldsAttackFacts,
    FieldsAttackParams,
    decide_attack_fields,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.methods._attack_search import (
    attack_plan,
    greedy_edits,
    joint_objective,
    l2_pgd,
)
from smoothcert.methods.fields import bind_row, fields_noise
from smoothcert.methods.sampler import Prepared, Sampler, draw
from smoothcert.noise.fields import FieldsNoise
from smoothcert.records import CertifyResult, Evidence


def attack_row(
    model: Callable[..., torch.Tensor],
    noise: FieldsNoise,
    tokens: torch.Tensor,
    continuous: torch.Tensor,
    *,
    target: int,
    d: int,
    radius: float,
    params: FieldsAttackParams,
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacked row at one grid point (see the module docstring).

    Args:
        model: eval-mode model ``(tokens (B, F), continuous (B, C)) -> logits``.
        noise: the smoothed classifier's kernel.
        tokens: the clean category ids ``(F,)``.
        continuous: the clean continuous vector ``(C,)``.
        target: the class whose smoothed score is minimised (the clean prediction).
        d: changed fields, ``0 <= d <= F``.
        radius: continuous L2 radius, >= 0, continuous-vector units.
        params: the attack's parameters (steps, step_size, noise_samples, rounds).
        generator: the row's generator (all randomness).
        autocast_dtype: optional reduced-precision forward passes.

    Returns:
        ``(tokens', continuous')``: at most ``d`` fields differ from ``tokens`` (each a
        level of its field's alphabet) and ``||continuous' - continuous||_2 <= radius``.
    """
    clean = [int(t) for t in tokens.tolist()]
    vocab = noise.vocab_sizes

    def propose(current: torch.Tensor, edited: Sequence[int]) -> list[tuple[int, int]]:
        return [
            (f, v)
            for f in range(len(vocab))
            if f not in edited
            for v in range(vocab[f])
            if v != clean[f]
        ]

    adv_tokens = tokens
    delta: torch.Tensor | None = None
    for _ in range(params.rounds if d > 0 and radius > 0 else 1):
        point = continuous if delta is None else (continuous.float() + delta).to(continuous.dtype)
        if d > 0:
            adv_tokens = greedy_edits(
                model,
                noise.bind,
                tokens,
                point,
                d=d,
                propose=propose,
                target=target,
                noise_samples=params.noise_samples,
                generator=generator,
                autocast_dtype=autocast_dtype,
            )
        if radius > 0:
            objective = joint_objective(
                model,
                noise.bind(adv_tokens, continuous),
                continuous,
                target,
                noise_samples=params.noise_samples,
                generator=generator,
                autocast_dtype=autocast_dtype,
            )
            moved = l2_pgd(
                objective,
                continuous,
                radius=radius,
                steps=params.steps,
                step_size=params.step_length(radius),
                clip=False,
                start_delta=delta,
            )
            delta = moved - continuous.float()
    if delta is None:
        return adv_tokens, continuous
    return adv_tokens, (continuous.float() + delta).to(continuous.dtype)


def prepare(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: FieldsAttackParams,
    *,
    seed: int,
    batch_size: int = 1000,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    probe: bool = True,
) -> Prepared:
    """Validate one row and plan the attack (stages: module docstring).

    Args:
        model: ``torch.nn.Module`` in eval mode (differentiable in the continuous part)
            taking ``(tokens (B, F), continuous (B, C))``, returning ``(B, num_classes)``.
        inputs: ``(tokens, continuous)``: ``(F,)`` category ids and a ``(C,)`` float vector.
        params: the :class:`~smoothcert.decisions.attack_fields.FieldsAttackParams`.
        seed: seed of the ``torch.Generator`` of every stage and of the search (recorded).
        batch_size: noisy samples per forward pass of the evaluations, >= 1.
        num_classes: expected number of output columns; inferred if None.
        device: device to sample on; default the model's (else the inputs').
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.
        probe: check the model on the clean row first.

    Returns:
        The :class:`~smoothcert.methods.sampler.Prepared` plan: a selection stage at the
        clean row, then (``next_stage``) one attack and ``attack`` stage per grid point.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    start = time.perf_counter()
    if not isinstance(params, FieldsAttackParams):
        raise InvalidParameterError(
            f"params of type {type(params).__name__} are invalid for method 'attack-fields'; "
            "valid: FieldsAttackParams"
        )
    noise = fields_noise(params)
    tokens, continuous = bind_row(model, noise, inputs, device=device)
    sampler = Sampler(
        model,
        noise.bind(tokens, continuous),
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=continuous.device,
        autocast_dtype=autocast_dtype,
        probe=probe,
    )
    points = params.points()

    def attack(i: int, evidence: Evidence) -> Any:
        clean = int(np.argmax(np.asarray(evidence.stages[0].counts, dtype=np.int64)))
        d, radius = points[i]
        adv_tokens, adv_continuous = attack_row(
            model,
            noise,
            tokens,
            continuous,
            target=clean,
            d=d,
            radius=radius,
            params=params,
            generator=sampler.generator,
            autocast_dtype=autocast_dtype,
        )
        return noise.bind(adv_tokens, adv_continuous)

    return attack_plan(
        sampler,
        points=len(points),
        n=params.eval_n,
        alpha=params.alpha,
        facts=FieldsAttackFacts(num_classes=sampler.num_classes, num_fields=noise.num_fields),
        start=start,
        attack=attack,
    )


def attack_fields(
    model: Callable[..., torch.Tensor],
    tokens: torch.Tensor,
    continuous: torch.Tensor,
    *,
    vocab_sizes: Sequence[int],
    betas: Sequence[float],
    sigma: float,
    radii: Sequence[float] = (0.0, 0.25, 0.5),
    attack_d_max: int | None = None,
    steps: int = 20,
    step_size: float | None = None,
    noise_samples: int = 32,
    rounds: int = 2,
    eval_n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> CertifyResult:
    """Attack a smoothed tabular classifier at one row over a (d, r) grid.

    Args:
        model: see :func:`prepare`.
        tokens: ``(F,)`` category ids, field ``f`` in ``0..V_f-1``.
        continuous: ``(C,)`` finite float vector.
        vocab_sizes: ``V_f >= 2`` per field (the smoothed classifier's).
        betas: ``beta_f`` in (0, 1) per field (the smoothed classifier's).
        sigma: continuous noise, > 0, continuous-vector units.
        radii: continuous radii of the grid (>= 0, increasing).
        attack_d_max: largest number of changed fields attacked (None: all ``F``).
        steps: PGD steps per round.
        step_size: PGD step length (default ``2.5 r / steps``).
        noise_samples: joint noise draws per objective evaluation.
        rounds: alternations of field search and PGD.
        eval_n: noisy samples per evaluation.
        alpha: level of each change test.
        batch_size: samples per forward pass.
        seed: generator seed (recorded).
        device: device to sample on.

    Returns:
        A :class:`~smoothcert.records.CertifyResult`, method ``"attack-fields"``, claim
        ``"empirical"``, :class:`~smoothcert.decisions.attack_fields.FieldsAttackDetails`.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    params = FieldsAttackParams(
        field_vocab_sizes=tuple(vocab_sizes),
        field_betas=tuple(betas),
        sigma=sigma,
        radii=tuple(radii),
        attack_d_max=attack_d_max,
        steps=steps,
        step_size=step_size,
        noise_samples=noise_samples,
        rounds=rounds,
        eval_n=eval_n,
        alpha=alpha,
    )
    prepared = prepare(
        model, (tokens, continuous), params, seed=seed, batch_size=batch_size, device=device
    )
    return decide_attack_fields(draw(prepared), params)

"""Hybrid smoothing of tabular rows: categorical fields AND a continuous vector, jointly.

The tabular experiment of Delattre et al., ICML 2026 (arXiv 2605.12876): a row is ``F``
categorical fields (field ``f`` one id of its own alphabet ``0..V_f-1``) and a
continuous vector. The smoothed model sees the row after
:class:`~smoothcert.noise.fields.FieldsNoise`: each field's own uniform substitution
kernel (keep with probability ``1 - beta_f``, else one of the ``V_f - 1`` other ids
uniformly) and ``N(0, sigma^2 I)`` on the continuous vector, from one generator. The
certificate (:mod:`smoothcert.decisions.fields`) holds against every attack that
changes the category of at most ``d`` fields, whichever they are, AND moves the
continuous vector by less than ``r(d)`` in L2 (units of the continuous vector; for the
bundled ``"fair"`` table, train standard deviations).

Inputs: ``tokens`` int64 ``(F,)`` (one id per field) and ``continuous`` float ``(C,)``,
without a batch axis; the model takes ``(tokens (B, F), continuous (B, C))`` and returns
``(B, num_classes)`` scores.

What is approximate (soundness rule 4): as in :mod:`smoothcert.methods.hybrid`, the
token sampling's TV bound (summed over fields) is subtracted from ``p_lower``; the
Gaussian part (``torch.randn``) is treated as exact.

Example:
    >>> import torch
    >>> class Linear(torch.nn.Module):
    ...     def forward(self, toks, cont):
    ...         z = cont.sum(1) + (toks[:, 0] == 1).float()
    ...         return torch.stack([-z, z], dim=1)
    >>> res = certify(Linear().eval(), torch.tensor([1, 2]), torch.full((3,), 0.5),
    ...               vocab_sizes=(2, 3), betas=(0.2, 0.5), sigma=0.5, n0=50, n=2000,
    ...               alpha=0.001)
    >>> res.prediction, len(res.radius_curve), res.radius == res.radius_curve[0]
    (1, 3, True)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from smoothcert.decisions.attack_fields import FieldsAttackParams
from smoothcert.decisions.fields import FieldsParams, decide_fields
from smoothcert.decisions.tokens import TokenFacts
from smoothcert.errors import InvalidParameterError
from smoothcert.methods._common import model_device
from smoothcert.methods.sampler import PlannedStage, Prepared, Sampler, draw
from smoothcert.noise.fields import FieldsNoise
from smoothcert.noise.tokens import check_tokens
from smoothcert.records import CertifyResult, Evidence
from smoothcert.sampling.device import check_device


def fields_noise(params: FieldsParams | FieldsAttackParams) -> FieldsNoise:
    """The kernel the parameters describe (the kernel sampled is the kernel certified).

    ``attack-fields`` builds its kernel here too, so it attacks that of ``hybrid-fields``.
    """
    return FieldsNoise(
        vocab_sizes=params.field_vocab_sizes, betas=params.field_betas, sigma=params.sigma
    )


def bind_row(
    model: Callable[..., torch.Tensor],
    noise: FieldsNoise,
    inputs: Any,
    *,
    device: torch.device | str | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one row ``(tokens (F,), continuous (C,))`` and move it to the device.

    The device is ``device``, else the model's, else the continuous vector's.

    Raises:
        InvalidParameterError: on a wrong number of inputs or fields, an id outside its
            field's alphabet, or a continuous part that is not a tensor.
    """
    if not isinstance(inputs, tuple) or len(inputs) != 2:
        raise InvalidParameterError(
            f"inputs of length {len(inputs) if isinstance(inputs, tuple) else '?'} are "
            "invalid; valid: (tokens (F,), continuous (C,))"
        )
    tokens, continuous = inputs
    tokens = noise.check_tokens(check_tokens(tokens))
    if not isinstance(continuous, torch.Tensor):
        raise InvalidParameterError(
            f"continuous of type {type(continuous).__name__} is invalid; valid: a torch.Tensor"
        )
    dev = check_device(device) if device is not None else model_device(model, continuous.device)
    return tokens.to(dev), continuous.to(dev)


def prepare(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: FieldsParams,
    *,
    seed: int,
    batch_size: int = 1000,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    probe: bool = True,
) -> Prepared:
    """Validate one row and plan its stages (``n0`` selection, then ``n`` estimation samples).

    Args:
        model: ``torch.nn.Module`` in eval mode (or a callable) taking ``(tokens (B, F),
            continuous (B, C))``, returning ``(B, num_classes)``.
        inputs: ``(tokens, continuous)``: ``(F,)`` category ids and a ``(C,)`` float vector.
        params: the :class:`~smoothcert.decisions.fields.FieldsParams`.
        seed: seed of the ``torch.Generator`` on the sampling device (recorded).
        batch_size: samples per forward pass, >= 1.
        num_classes: expected number of output columns; inferred if None.
        device: device to sample on; default the model's (else the inputs').
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.
        probe: check the model on the clean row first.

    Returns:
        The :class:`~smoothcert.methods.sampler.Prepared` sampler, stage plan and
        :class:`~smoothcert.decisions.tokens.TokenFacts` (``length = num_eligible = F``).

    Raises:
        InvalidParameterError: on a wrong number of fields, an id outside its field's
            alphabet, a bad continuous vector or model, before sampling.
    """
    start = time.perf_counter()
    noise = fields_noise(params)
    tokens, continuous = bind_row(model, noise, inputs, device=device)
    bound = noise.bind(tokens, continuous)
    dev = continuous.device
    sampler = Sampler(
        model,
        bound,
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=dev,
        autocast_dtype=autocast_dtype,
        probe=probe,
    )
    f = noise.num_fields
    facts = TokenFacts(
        num_classes=sampler.num_classes,
        length=f,
        num_eligible=f,
        d_max=params.d_max,
        sampling_tv_bound=float(bound.tv_bound()),
        eligible_positions=tuple(range(f)),
    )
    plan = (
        PlannedStage("selection", params.n0, 0.0),
        PlannedStage("estimation", params.n, params.alpha),
    )
    return Prepared(sampler, plan, facts, start)


def sample(
    model: Callable[..., torch.Tensor], inputs: tuple[Any, ...], params: Any, **options: Any
) -> Evidence:
    """Draw the evidence at one row: :func:`prepare`, then draw the stages."""
    return draw(prepare(model, inputs, params, **options))


def certify(
    model: Callable[..., torch.Tensor],
    tokens: torch.Tensor,
    continuous: torch.Tensor,
    *,
    vocab_sizes: Sequence[int],
    betas: Sequence[float],
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    d_max: int | None = None,
    tau: float = 0.5,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Certify a tabular row against ``d`` changed fields AND an L2 move of its continuous part.

    With probability at least ``1 - alpha`` over the samples, for every ``d <= d_max``,
    every choice of at most ``d`` fields given other ids of their alphabets, and every
    continuous move of L2 norm below ``radius_curve[d]``, the smoothed model still
    returns the class.

    Args:
        model: see :func:`prepare`.
        tokens: ``(F,)`` category ids, field ``f`` in ``0..V_f-1``.
        continuous: ``(C,)`` finite float vector.
        vocab_sizes: ``V_f >= 2`` per field.
        betas: ``beta_f`` in (0, 1) per field.
        sigma: continuous noise standard deviation, > 0, in the vector's units.
        n0: selection samples, >= 1.
        n: estimation samples, >= 1.
        alpha: failure probability of the whole curve, in (0, 1).
        d_max: largest number of changed fields, ``0..F`` (None: ``F``).
        tau: majority threshold in [0.5, 1).
        batch_size: samples per forward pass.
        seed: generator seed (recorded).
        num_classes: expected number of outputs; inferred if None.
        device: device to sample on.
        autocast_dtype: optional reduced-precision forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult`, method ``"hybrid-fields"``:
        ``radius = r(0)``, ``radius_curve = (r(0), ..., r(d_max))``, ``details.d_certified``.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    params = FieldsParams(
        field_vocab_sizes=tuple(vocab_sizes),
        field_betas=tuple(betas),
        sigma=sigma,
        n0=n0,
        n=n,
        alpha=alpha,
        tau=tau,
        threat_d_max=d_max,
    )
    evidence = sample(
        model,
        (tokens, continuous),
        params,
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=device,
        autocast_dtype=autocast_dtype,
    )
    return decide_fields(evidence, params)

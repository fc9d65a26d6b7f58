"""Lipschitz-aware soft smoothing (torch half of method ``lipschitz``).

Samples exactly as ``soft`` with ``score_map="softmax"``
(:func:`smoothcert.methods.soft.prepare`: ``n0`` selection samples, then ``n`` fresh
estimation samples, per-class sums of ``softmax(temperature * logits)`` on the device);
the decision is :func:`smoothcert.decisions.lipschitz.decide_lipschitz`.

The model must carry a CERTIFIED constant: an attribute ``lipschitz`` (the L2 Lipschitz
constant of its logits in the units of ``x``), as the bundled ``digits_lipschitz`` has
(:func:`smoothcert.models.load_model`). :func:`prepare` refuses, before any sampling, a
model without it and a ``params.logit_lipschitz`` below it (the radius would then rest
on a constant the model does not have). A larger ``logit_lipschitz`` is sound (smaller
radii).

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 2).eval()
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    ...     _ = model.bias.zero_()
    >>> model.lipschitz = 2.0 ** 0.5 * (1 + 1e-6)  # |W|_2 = sqrt(2), rounded up
    >>> res = certify(model, torch.tensor([2.0, 0.0]), sigma=0.5, n0=100, n=2_000,
    ...               alpha=0.001, temperature=4.0, batch_size=1000, seed=0)
    >>> res.method, res.prediction, res.radius > 0.5
    ('lipschitz', 0, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from smoothcert.decisions.lipschitz import LipschitzParams, decide_lipschitz
from smoothcert.errors import InvalidParameterError
from smoothcert.methods import soft
from smoothcert.methods.sampler import Prepared, draw
from smoothcert.records import CertifyResult, Evidence

__all__ = ["certify", "model_lipschitz", "prepare", "sample"]


def model_lipschitz(model: Any) -> float:
    """The model's certified ``lipschitz`` attribute, validated.

    Looks through a wrapper exposing the inner model as ``inner`` or ``module`` (e.g.
    a compiled or data-parallel model) if the wrapper itself has none.

    Raises:
        InvalidParameterError: if the model has no certified constant, or it is not a
            positive finite number.
    """
    value = getattr(model, "lipschitz", None)
    for name in ("_orig_mod", "module", "inner"):
        if value is not None:
            break
        value = getattr(getattr(model, name, None), "lipschitz", None)
    if value is None:
        raise InvalidParameterError(
            f"model of type {type(model).__name__} has no certified Lipschitz constant; valid: "
            "a model with a `lipschitz` attribute (the certified L2 constant of its logits), "
            "e.g. the bundled digits_lipschitz or fmnist_lipschitz, or one set from "
            "smoothcert.models.lipschitz_upper_bound(model)"
        )
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (math.isfinite(value) and value > 0)
    ):
        raise InvalidParameterError(
            f"model.lipschitz = {value!r} is invalid; valid: a finite number > 0"
        )
    return float(value)


def prepare(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: LipschitzParams,
    **options: Any,
) -> Prepared:
    """Check the certified constant, then plan the two softmax score stages.

    Args:
        model: a model mapping ``(B, *x.shape)`` to logits with a certified
            ``lipschitz`` attribute (:func:`model_lipschitz`).
        inputs: ``(x,)``.
        params: the :class:`~smoothcert.decisions.lipschitz.LipschitzParams`.
        **options: as :func:`smoothcert.methods.soft.prepare` (``seed``,
            ``batch_size``, ``num_classes``, ``device``, ``autocast_dtype``, ...).

    Returns:
        The :class:`~smoothcert.methods.sampler.Prepared` stages of soft smoothing.

    Raises:
        InvalidParameterError: for a model without a certified constant, a
            ``params.logit_lipschitz`` below the model's, reduced-precision autocast, or
            any bad argument; all before sampling.
    """
    if not isinstance(params, LipschitzParams):
        raise InvalidParameterError(
            f"parameters of type {type(params).__name__} are invalid for method 'lipschitz'; "
            "valid: LipschitzParams"
        )
    if options.get("autocast_dtype") is not None:
        raise InvalidParameterError(
            f"autocast_dtype = {options['autocast_dtype']!r} is invalid for method 'lipschitz'; "
            "valid: None (fp32): the certified constant is for the model's own arithmetic, and "
            "reduced-precision rounding is not covered by it"
        )
    certified = model_lipschitz(model)
    if params.logit_lipschitz < certified:
        raise InvalidParameterError(
            f"logit_lipschitz = {params.logit_lipschitz!r} is invalid for this model; valid: "
            f"logit_lipschitz >= {certified!r}, the model's certified Lipschitz constant (a "
            "smaller constant would give radii the model does not have)"
        )
    return soft.prepare(model, inputs, params.soft_params(), **options)


def sample(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: LipschitzParams,
    **options: Any,
) -> Evidence:
    """Draw the evidence of Lipschitz-aware soft smoothing at one input."""
    return draw(prepare(model, inputs, params, **options))


def certify(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    temperature: float,
    logit_lipschitz: float | None = None,
    score_bound: str = "bernstein",
    batch_size: int = 1000,
    seed: int = 0,
    **options: Any,
) -> CertifyResult:
    """Certify the soft smoothed prediction at ``x`` with the Lipschitz-aware radius.

    Args:
        model: logits model with a certified ``lipschitz`` attribute.
        x: one input, no batch axis, finite floating-point tensor.
        sigma: noise standard deviation, > 0, in the units of ``x``.
        n0: selection samples, >= 1.
        n: estimation samples, >= 1 (>= 2 for ``bernstein``).
        alpha: one-sided failure probability, in (0, 1).
        temperature: ``t > 0``; the score is ``softmax(t * logits)``.
        logit_lipschitz: the certified constant of the logits; None takes
            ``model.lipschitz``.
        score_bound: ``"hoeffding"``, ``"bernstein"`` or ``"betting"`` (keeps score histograms).
        batch_size: samples per forward pass.
        seed: seed of the sampling generator (recorded).
        **options: ``num_classes``, ``device``, ``input_shape``, ``autocast_dtype``.

    Returns:
        The :class:`~smoothcert.records.CertifyResult` (method ``"lipschitz"``).

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    lip = model_lipschitz(model) if logit_lipschitz is None else logit_lipschitz
    params = LipschitzParams(
        sigma=sigma,
        n0=n0,
        n=n,
        alpha=alpha,
        temperature=temperature,
        logit_lipschitz=lip,
        score_bound=score_bound,
    )
    evidence = sample(model, (x,), params, seed=seed, batch_size=batch_size, **options)
    return decide_lipschitz(evidence, params)

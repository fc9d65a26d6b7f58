"""Soft-score Gaussian smoothing (torch half of method ``soft``).

Certifies the mean of a [0, 1] score of the logits (``hardmax`` votes, ``softmax`` or
``sparsemax`` of ``temperature * logits``) under ``N(0, sigma^2 I)`` noise instead of
hard votes; the decision and its guarantee are in :mod:`smoothcert.decisions.soft`.
``sigma`` and the radius are in the units of the tensor ``x``.

:func:`prepare` plans two stages that record per-class score sums and sums of squares
(summed on the device by :mod:`smoothcert.sampling.scores`): ``n0`` selection samples
(they choose the class), then ``n`` FRESH estimation samples from the same generator
(they bound its mean score).

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 2).eval()
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[4.0, 0.0], [-4.0, 0.0]]))
    ...     _ = model.bias.zero_()
    >>> res = certify(model, torch.tensor([1.0, 0.0]), sigma=0.5, n0=100, n=2_000,
    ...               alpha=0.001, batch_size=1000, seed=0)
    >>> res.prediction, 0.5 < res.radius < 1.0, res.details.score_bound
    (0, True, 'bernstein')
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from smoothcert.decisions.cohen import GaussianFacts
from smoothcert.decisions.combined import SoftCombinedParams
from smoothcert.decisions.soft import (
    SoftParams,
    decide_soft,
    decide_soft_top2,
    histogram_bins_for,
)
from smoothcert.methods.cohen import _sampler
from smoothcert.methods.sampler import PlannedStage, Prepared, draw
from smoothcert.records import CertifyResult, Evidence


def prepare(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: SoftParams | SoftCombinedParams,
    **options: Any,
) -> Prepared:
    """Validate everything and plan the two score stages of soft smoothing at one input.

    Args:
        model: ``torch.nn.Module`` in eval mode (or any callable) mapping a batch
            ``(B, *x.shape)`` to logits ``(B, num_classes)``.
        inputs: ``(x,)``: one input, no batch axis, finite floating-point tensor.
        params: the :class:`~smoothcert.decisions.soft.SoftParams` (validated when built),
            or :class:`~smoothcert.decisions.combined.SoftCombinedParams` (same stages).
        **options: the sampling options of :func:`smoothcert.methods.cohen.prepare`
            (``seed`` required; ``batch_size``, ``num_classes``, ``device``,
            ``autocast_dtype`` (the score maps stay in float64), ``input_shape``,
            ``probe``).

    Returns:
        The :class:`~smoothcert.methods.sampler.Prepared` sampler and the stages
        ``selection`` (``n0``) and ``estimation`` (``n``), both with
        ``scores=(score_map, temperature)``; the estimation stage keeps per-class score
        histograms for the betting bound
        (:func:`~smoothcert.decisions.soft.histogram_bins_for`).

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    start = time.perf_counter()
    if not isinstance(params, (SoftParams, SoftCombinedParams)):
        from smoothcert.errors import InvalidParameterError

        raise InvalidParameterError(
            f"parameters of type {type(params).__name__} are invalid for method 'soft'; "
            "valid: SoftParams or SoftCombinedParams"
        )
    (x,) = inputs
    sampler = _sampler(model, x, params.sigma, **options)
    scores = (params.score_map, params.temperature)
    bound = params.score_bound if isinstance(params, SoftParams) else params.bound
    bins = histogram_bins_for(params.score_map, bound)  # betting: per-class histograms
    plan = (
        PlannedStage("selection", params.n0, 0.0, scores=scores),
        PlannedStage("estimation", params.n, params.alpha, scores=scores, histogram_bins=bins),
    )
    return Prepared(sampler, plan, GaussianFacts(num_classes=sampler.num_classes), start)


def sample(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: SoftParams,
    **options: Any,
) -> Evidence:
    """Draw the evidence of soft smoothing at one input (:func:`prepare`, then draw)."""
    return draw(prepare(model, inputs, params, **options))


def certify(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    score_map: str = "softmax",
    temperature: float = 1.0,
    score_bound: str = "bernstein",
    top2: bool = False,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    input_shape: tuple[int, ...] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Certify the soft smoothed prediction at ``x`` within an L2 ball.

    Samples with :func:`sample`, then decides with
    :func:`~smoothcert.decisions.soft.decide_soft` (or ``decide_soft_top2`` with
    ``top2``), where the certificate and its guarantee are stated.

    Args:
        model: ``torch.nn.Module`` in eval mode (or any callable) mapping a batch
            ``(B, *x.shape)`` to logits ``(B, num_classes)``.
        x: one input, no batch axis, finite floating-point tensor.
        sigma: noise standard deviation, > 0, in the units of ``x``.
        n0: number of selection samples, >= 1.
        n: number of estimation samples, >= 1 (>= 2 for ``bernstein``).
        alpha: one-sided failure probability of the certificate, in (0, 1).
        score_map: ``"hardmax"``, ``"softmax"`` or ``"sparsemax"``.
        temperature: ``t > 0``, the map is applied to ``t * logits``.
        score_bound: ``"hoeffding"``, ``"bernstein"`` (empirical Bernstein) or
            ``"betting"`` (order-invariant betting on per-class score histograms).
        top2: use the top-two certificate
            (:func:`~smoothcert.decisions.soft.decide_soft_top2`, method ``"soft-top2"``).
        batch_size: samples per forward pass, >= 1.
        seed: seed of the ``torch.Generator`` on the model's device (recorded).
        num_classes: expected output columns; inferred from the model if None.
        device: device to sample on; default the model's (else ``x``'s) device.
        input_shape: if given, ``x.shape`` must equal it.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"soft"`` (or
        ``"soft-top2"``), its evidence (score sums), ``radius`` in units of ``x`` and
        :class:`~smoothcert.decisions.soft.SoftDetails`.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    params = SoftParams(
        sigma=sigma,
        n0=n0,
        n=n,
        alpha=alpha,
        score_map=score_map,
        temperature=temperature,
        score_bound=score_bound,
    )
    evidence = sample(
        model,
        (x,),
        params,
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=device,
        autocast_dtype=autocast_dtype,
        input_shape=input_shape,
    )
    return decide_soft_top2(evidence, params) if top2 else decide_soft(evidence, params)

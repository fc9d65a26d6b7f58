"""Gaussian randomized smoothing: CERTIFY and PREDICT of Cohen et al. 2019 (torch half).

Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized Smoothing"
(arXiv 1902.02918), Algorithms CERTIFY and PREDICT. The smoothed classifier is
``g(x) = argmax_c P(f(x + e) = c)``, ``e ~ N(0, sigma^2 I)``. ``sigma`` and the radius
are in the units of the tensor ``x`` (pixels in [0, 1] for the bundled models; if the
model normalises inside, the radius is still in the units of ``x``).

:func:`sample` draws the evidence (n0 selection samples, then n FRESH samples from the
same generator, continued: independent draws); the decisions in
:mod:`smoothcert.decisions.cohen` turn it into a certificate. :func:`certify` and
:func:`predict` do both.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 2).eval()
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    ...     _ = model.bias.zero_()
    >>> res = certify(model, torch.tensor([1.0, 0.0]), sigma=0.5, n0=100, n=10_000,
    ...               alpha=0.001, batch_size=1000, seed=0)
    >>> res.prediction, 0.8 < res.radius < 1.0
    (0, True)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from smoothcert.decisions.cohen import (
    GaussianFacts,
    GaussianParams,
    GaussianPredictParams,
    decide_cohen,
    decide_cohen_top2,
    decide_predict,
)
from smoothcert.decisions.combined import CombinedParams
from smoothcert.decisions.sequential import SequentialParams, decide_sequential, next_round_size
from smoothcert.methods._common import check_image, model_device
from smoothcert.methods.sampler import PlannedStage, Prepared, Sampler, draw, round_rule
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.records import CertifyResult, Evidence
from smoothcert.sampling.device import check_device


def _sampler(
    model: Callable[..., torch.Tensor],
    x: Any,
    sigma: float,
    *,
    seed: int,
    batch_size: int = 1000,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    input_shape: tuple[int, ...] | None = None,
    autocast_dtype: torch.dtype | None = None,
    probe: bool = True,
) -> Sampler:
    """The Gaussian sampler at ``x`` of every Gaussian method (arguments: :func:`prepare`)."""
    check_image(x, input_shape=input_shape)
    dev = check_device(device) if device is not None else model_device(model, x.device)
    return Sampler(
        model,
        GaussianNoise(sigma).bind(x.to(dev)),
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=dev,
        autocast_dtype=autocast_dtype,
        probe=probe,
    )


def prepare(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: GaussianParams | GaussianPredictParams | SequentialParams | CombinedParams,
    *,
    seed: int,
    batch_size: int = 1000,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    input_shape: tuple[int, ...] | None = None,
    probe: bool = True,
) -> Prepared:
    """Validate everything and plan the stages of Gaussian smoothing at one input.

    Every argument is validated before any sampling; the stages are listed in
    :func:`sample`.

    Args:
        model: ``torch.nn.Module`` in eval mode (or any callable) mapping a batch
            ``(B, *x.shape)`` to scores ``(B, num_classes)``.
        inputs: ``(x,)``: one input, no batch axis, finite floating-point tensor.
        params: the method's parameters (sigma in the units of ``x``).
        seed: seed of the ``torch.Generator`` on the sampling device (recorded).
        batch_size: samples per forward pass, >= 1.
        num_classes: expected output columns; inferred from the model if None.
        device: device to sample on; default the model's (else ``x``'s) device.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.
        probe: check the model on the clean input first (see
            :class:`~smoothcert.methods.sampler.Sampler`).
        input_shape: if given, ``x.shape`` must equal it.

    Returns:
        The :class:`~smoothcert.methods.sampler.Prepared` sampler and stage plan;
        :func:`~smoothcert.methods.sampler.draw` draws it (see :func:`sample`).

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    start = time.perf_counter()
    (x,) = inputs
    sampler = _sampler(
        model,
        x,
        params.sigma,
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=device,
        input_shape=input_shape,
        autocast_dtype=autocast_dtype,
        probe=probe,
    )
    facts = GaussianFacts(num_classes=sampler.num_classes)
    if isinstance(params, SequentialParams):
        return Prepared(
            sampler,
            (PlannedStage("selection", params.n0, 0.0),),
            facts,
            start,
            next_stage=round_rule(functools.partial(next_round_size, params)),
        )
    if isinstance(params, GaussianPredictParams):
        plan = (PlannedStage("prediction", params.n, params.alpha),)
    else:
        plan = (
            PlannedStage("selection", params.n0, 0.0),
            PlannedStage("estimation", params.n, params.alpha),
        )
    return Prepared(sampler, plan, facts, start)


def sample(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: GaussianParams | GaussianPredictParams | SequentialParams,
    **options: Any,
) -> Evidence:
    """Draw the evidence of Gaussian smoothing at one input (:func:`prepare`, then draw).

    With :class:`~smoothcert.decisions.cohen.GaussianParams`: a ``selection`` stage of
    ``n0`` samples, then an ``estimation`` stage of ``n`` fresh samples. With
    :class:`~smoothcert.decisions.cohen.GaussianPredictParams`: one ``prediction`` stage
    of ``n`` samples. With :class:`~smoothcert.decisions.sequential.SequentialParams`: a
    ``selection`` stage of ``n0`` samples, then ``round`` stages of fresh samples until
    :func:`~smoothcert.decisions.sequential.next_round_size` says stop.
    """
    return draw(prepare(model, inputs, params, **options))


def certify(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *,
    sigma: float,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    top2: bool = False,
    device: torch.device | str | None = None,
    input_shape: tuple[int, ...] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Certify the smoothed prediction at ``x`` within an L2 ball (Cohen et al. CERTIFY).

    Samples with :func:`sample`, then decides with
    :func:`~smoothcert.decisions.cohen.decide_cohen` (or
    :func:`~smoothcert.decisions.cohen.decide_cohen_top2` with ``top2``), where the
    certificate and its guarantee are stated.

    Args:
        model: ``torch.nn.Module`` in eval mode (or any callable) mapping a batch
            ``(B, *x.shape)`` to logits/scores ``(B, num_classes)``.
        x: one input, no batch axis, finite floating-point tensor.
        sigma: noise standard deviation, > 0, in the units of ``x``.
        n0: number of selection samples, >= 1.
        n: number of estimation samples, >= 1.
        alpha: one-sided failure probability of the certificate, in (0, 1).
        batch_size: samples per forward pass, >= 1.
        seed: seed of the ``torch.Generator`` on the model's device (recorded).
        num_classes: expected output columns; inferred from the model if None.
        top2: use the top-two certificate.
        device: device to sample on; default the model's (else ``x``'s) device.
        input_shape: if given, ``x.shape`` must equal it.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"cohen"`` (or
        ``"cohen-top2"``), its evidence, and ``radius`` in units of x.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    params = GaussianParams(sigma=sigma, n0=n0, n=n, alpha=alpha)
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
    return decide_cohen_top2(evidence, params) if top2 else decide_cohen(evidence, params)


def predict(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *,
    sigma: float,
    n: int,
    alpha: float,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    input_shape: tuple[int, ...] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Predict the smoothed class with Cohen et al.'s abstaining PREDICT.

    Counts the classes of n noisy samples and decides with
    :func:`~smoothcert.decisions.cohen.decide_predict`: the probability of returning a
    class other than g(x) is at most alpha (Cohen et al. 2019, Proposition 1). No
    radius is certified (``radius = 0``).

    Args:
        model: as in :func:`certify`.
        x: one input, no batch axis.
        sigma: noise standard deviation, > 0, in units of ``x``.
        n: number of samples, >= 1.
        alpha: failure probability, in (0, 1).
        batch_size: samples per forward pass, >= 1.
        seed: generator seed (recorded).
        num_classes: expected output columns; inferred if None.
        device: device to sample on; default the model's device.
        input_shape: if given, ``x.shape`` must equal it.
        autocast_dtype: optional reduced-precision forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"cohen-predict"``,
        claim ``"prediction"``, ``p_lower = 0`` and the p-value in ``details``.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    params = GaussianPredictParams(sigma=sigma, n=n, alpha=alpha)
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
    return decide_predict(evidence, params)


def certify_sequential(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    *,
    sigma: float,
    alpha: float,
    max_samples: int,
    target_radius: float | Sequence[float] | None = None,
    tolerance: float | None = None,
    n0: int = 100,
    first_round: int = 100,
    growth: float = 2.0,
    bound: str = "union",
    final_share: float = 0.5,
    futility_z: float | None = None,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    input_shape: tuple[int, ...] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Certify at ``x`` with as few samples as the answer needs (anytime-valid, sequential).

    Draws ``n0`` selection samples, then rounds of fresh samples until the stopping rule
    of :mod:`smoothcert.decisions.sequential` is met (every target radius decided, or
    the radius known to ``tolerance``, or nothing certifiable, or ``max_samples`` spent),
    and decides with :func:`~smoothcert.decisions.sequential.decide_sequential`, whose
    docstring states the guarantee (level alpha whatever the stopping time).

    Args:
        model: as in :func:`certify`.
        x: one input, no batch axis, finite floating-point tensor.
        sigma: noise standard deviation, > 0, in the units of ``x``.
        alpha: failure probability of the certificate, in (0, 1).
        max_samples: most forward samples, selection included, > n0.
        target_radius: target mode: a radius (or several) to decide, >= 0, input units.
        tolerance: precision mode: stop when the radius cannot grow by more than this.
        n0: selection samples, >= 1.
        first_round: estimation samples of the first round, >= 1.
        growth: checkpoint growth factor, > 1 (rounds end at ``first_round``,
            ``2 first_round``, ... with the default 2).
        bound: confidence sequence, ``"union"`` or ``"mixture"``
            (:data:`~smoothcert.stats.sequential.SEQUENCE_BOUNDS`).
        final_share: ``"union"``: share of alpha spent at the last checkpoint, in (0, 1).
        futility_z: None, or give up on targets out of reach at the current rate plus
            this many standard errors (saves samples, may lose certificates; sound).
        batch_size: samples per forward pass, >= 1.
        seed: generator seed (recorded); same seed, same rounds and decision.
        num_classes: expected output columns; inferred from the model if None.
        device: device to sample on; default the model's (else ``x``'s) device.
        input_shape: if given, ``x.shape`` must equal it.
        autocast_dtype: optional reduced-precision forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"cohen-sequential"``:
        ``radius >= r`` for every target ``r`` it certifies (abstained when it certifies
        nothing), ``samples_used`` the forward samples spent, and
        :class:`~smoothcert.decisions.sequential.SequentialDetails`.

    Raises:
        InvalidParameterError: on any bad argument (``max_samples < 1``,
            ``target_radius < 0``, ``tolerance <= 0``, neither or both of them, ...),
            before sampling.

    Example:
        >>> model = torch.nn.Linear(2, 2).eval()
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        ...     _ = model.bias.zero_()
        >>> res = certify_sequential(model, torch.tensor([1.0, 0.0]), sigma=0.25,
        ...                          alpha=0.001, max_samples=100_100, target_radius=0.5)
        >>> res.radius >= 0.5, res.samples_used < 1000
        (True, True)
    """
    radii: tuple[float, ...] = ()
    if target_radius is not None:
        radii = (
            (target_radius,) if isinstance(target_radius, (int, float)) else tuple(target_radius)
        )
    params = SequentialParams(
        sigma=sigma,
        n0=n0,
        alpha=alpha,
        max_samples=max_samples,
        target_radii=radii,
        tolerance=tolerance,
        first_round=first_round,
        growth=growth,
        bound=bound,
        final_share=final_share,
        futility_z=futility_z,
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
    return decide_sequential(evidence, params)

"""Hybrid text+image smoothing: certify a (tokens, image) pair jointly (Delattre et al. 2026).

Delattre et al., ICML 2026 (arXiv 2605.12876). The smoothed model sees the pair
``(Z, X + e)`` where ``Z`` is the token sequence after a token substitution kernel at
the eligible positions of a :mod:`~smoothcert.methods.threats` model
(:mod:`smoothcert.noise.tokens`; Lee et al. 2019, arXiv 1906.04948) and
``e ~ N(0, sigma^2 I)`` is Gaussian noise on the image, both drawn from one generator
(:class:`~smoothcert.noise.product.TokenImageNoise`). The attacker substitutes at most
``d`` eligible tokens (writing alphabet tokens, or any vocabulary id with
``attacker="any"``) AND moves the image by ``delta`` with
``||delta||_2 <= r``; ``r`` is in the units of the image tensor (pixels in [0, 1] unless
the model normalises inside), ``d`` in tokens.

:func:`smoothcert.certificates.hybrid_lower_bound` gives ``L(d, r)``, the smallest
probability of the certified outcome over all such attacks given ``p_lower``, and
:func:`smoothcert.certificates.hybrid_radius_curve` the curve
``r(d) = sup{r : L(d, r) >= tau}``, ``d = 0..d_max`` (0 where nothing is certified). The
certified region is the staircase under ``r(d)``: every attack with at most ``d`` edits
and ``||delta||_2 < r(d)``.

Modes (as in :mod:`smoothcert.methods.tokens`):

- majority (``target=None``, ``tau = 1/2``): n0 selection samples choose the class,
  ``n`` fresh samples bound it; at ``d = 0`` the radius is Cohen's
  ``sigma * Phi^-1(p_lower)``.
- safety filter (``target`` given): the smoothed filter flags iff
  ``P(target) >= tau``; the pair is certified to stay flagged on the region where
  ``L(d, r) >= tau``. At ``d = 0``, ``r = sigma (Phi^-1(p_lower) - Phi^-1(tau))``.
  ``n0`` is ignored (no selection sample is drawn; ``result.n0 == 0``). The robust
  certificate (the whole curve) fails with probability at most alpha;
  ``certified_not_flagged`` is a separate one-sided claim
  at level alpha; the flagged / not-flagged decision at the clean input errs with
  probability at most alpha; the curve and the not-flagged flag read jointly fail with
  probability at most 2 alpha (see :mod:`smoothcert.methods.tokens`).

Noise is drawn at all ``D`` eligible positions (shared sampling), so one ``p_lower``
holds for every ``d <= D`` at once; the whole curve fails with probability at most
alpha.

:func:`sample` draws the evidence; :func:`smoothcert.decisions.hybrid.decide_hybrid`
decides; :func:`certify` does both.

What is approximate (soundness rule 4): ``p_lower`` is the Clopper-Pearson bound minus
the token sampler's TV bound (``params["sampling_tv_bound"]``, see
:meth:`~smoothcert.noise.tokens.BoundTokenNoise.tv_bound`). The Gaussian image noise is
floating-point ``torch.randn`` (float32 for a float32 image) and is treated as exact
``N(0, sigma^2 I)``: it is NOT part of that TV correction.

Example:
    >>> import torch
    >>> class ImageOnly(torch.nn.Module):
    ...     def forward(self, toks, img):
    ...         z = img.flatten(1).sum(1)
    ...         return torch.stack([-z, z], dim=1)
    >>> res = certify(ImageOnly().eval(), torch.tensor([1, 2, 3]), torch.full((4,), 0.5),
    ...               sigma=0.5, beta=0.5, alphabet=5, n0=100, n=5000, alpha=0.001)
    >>> res.prediction, res.radius == res.radius_curve[0], len(res.radius_curve)
    (1, True, 4)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from smoothcert.decisions.hybrid import HybridParams, decide_hybrid
from smoothcert.decisions.hybrid_sequential import (
    HybridSequentialParams,
    decide_hybrid_sequential,
    next_round_size,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.methods._common import check_image, model_device
from smoothcert.methods._tokens_common import (
    check_outside,
    check_placeholder,
    check_threat,
    kernel_for,
    params_from_arguments,
    plan_stages,
    threat_of,
    token_noise,
)
from smoothcert.methods.sampler import Prepared, Sampler, draw, round_rule
from smoothcert.methods.threats import ThreatModel
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.noise.product import TokenImageNoise
from smoothcert.noise.tokens import check_tokens
from smoothcert.records import CertifyResult, Evidence
from smoothcert.sampling.device import check_device


def prepare(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: HybridParams,
    *,
    seed: int,
    batch_size: int = 1000,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    image_shape: tuple[int, ...] | None = None,
    eligible: Any = None,
    probe: bool = True,
) -> Prepared:
    """Validate everything and plan the stages of hybrid smoothing at one (tokens, image) pair.

    Applies the parameters' threat, binds the product kernel (the parameters' token
    kernel on the eligible positions x ``N(0, sigma^2 I)`` on the image, one generator)
    and draws the stages. Every argument is validated before any sampling.

    Args:
        model: ``torch.nn.Module`` in eval mode (or a callable) taking token ids
            ``(B, L)`` and images ``(B, *image.shape)``, returning ``(B, num_classes)``.
        inputs: ``(tokens, image)``: a 1-D integer sequence and one finite
            floating-point image, both without a batch axis.
        params: the :class:`~smoothcert.decisions.hybrid.HybridParams`.
        seed: seed of the ``torch.Generator`` on the sampling device (recorded).
        batch_size: samples per forward pass, >= 1.
        num_classes: expected number of output columns; inferred if None.
        device: device to sample on; default the model's (else the image's) device.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.
        probe: check the model on the clean input first (see
            :class:`~smoothcert.methods.sampler.Sampler`).
        image_shape: if given, ``image.shape`` must equal it.
        eligible: this input's eligible positions (a boolean mask over the sequence),
            for ``params.threat == "given"`` only.

    Returns:
        The :class:`~smoothcert.methods.sampler.Prepared` sampler, stage plan and
        :class:`~smoothcert.decisions.tokens.TokenFacts`.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    start = time.perf_counter()
    tokens, image = inputs
    noise = token_noise(params)
    threat = threat_of(params, eligible)
    if isinstance(tokens, torch.Tensor) and tokens.ndim != 1:
        raise InvalidParameterError(
            f"tokens.shape = {tuple(tokens.shape)} is invalid with image.shape = "
            f"{tuple(getattr(image, 'shape', ()))}; valid: tokens (L,) and one image, "
            "both without a batch axis"
        )
    tokens = check_tokens(tokens)
    check_image(image, name="image", input_shape=image_shape)
    dev = check_device(device) if device is not None else model_device(model, image.device)
    image = image.to(dev)
    applied = threat.apply(tokens.to(dev))
    check_placeholder(applied, noise)
    bound = TokenImageNoise(noise, GaussianNoise(params.sigma)).bind(
        applied.tokens, image, applied.eligible
    )
    outside = check_outside(params, bound.tokens)
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
    plan, facts = plan_stages(sampler, params, applied, clean_outside=outside)
    if isinstance(params, HybridSequentialParams):
        # the estimation samples are drawn in rounds, as the stopping rule asks
        plan = tuple(s for s in plan if s.role == "selection")
        return Prepared(
            sampler,
            plan,
            facts,
            start,
            next_stage=round_rule(functools.partial(next_round_size, params)),
        )
    return Prepared(sampler, plan, facts, start)


def sample(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: Any,
    **options: Any,
) -> Evidence:
    """Draw the evidence at one input: :func:`prepare`, then draw the stages."""
    return draw(prepare(model, inputs, params, **options))


def certify(
    model: Callable[..., torch.Tensor],
    tokens: torch.Tensor,
    image: torch.Tensor,
    *,
    sigma: float,
    beta: float,
    alphabet: Any = None,
    n0: int,
    n: int,
    alpha: float,
    threat: ThreatModel | None = None,
    kernel: str = "uniform",
    mask_id: int | None = None,
    attacker: str | None = None,
    model_vocab_size: int | None = None,
    tau: float = 0.5,
    target: int | None = None,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    image_shape: tuple[int, ...] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Certify a (tokens, image) pair against d substituted tokens and an L2 image ball.

    The certificate: with probability at least ``1 - alpha`` over the samples, for every
    ``d <= d_max`` and every attack with at most ``d`` substituted eligible tokens
    (alphabet tokens, or any ids with ``attacker="any"``) and an image perturbation of
    L2 norm below ``radius_curve[d]``, the smoothed model still returns the class
    (majority mode) or still flags the pair (safety-filter mode, ``P(target) >= tau``).

    Args:
        model: ``torch.nn.Module`` in eval mode (or a callable) taking token ids
            ``(B, L)`` (LongTensor) and images ``(B, *image.shape)`` and returning
            scores ``(B, num_classes)``.
        tokens: one sequence, 1-D integer tensor ``(L,)`` (no batch axis).
        image: one finite floating-point image (no batch axis).
        sigma: image noise standard deviation, > 0, in the units of ``image``.
        beta: token substitution probability per eligible position, in (0, 1).
        alphabet: the token kernel's alphabet (``V``, ids, or a boolean mask), V >= 2;
            optional for ``"mask"``.
        n0: selection samples, >= 1 in majority mode. Ignored in safety-filter mode
            (any value >= 0; no selection sample is drawn).
        n: estimation samples, >= 1.
        alpha: one-sided failure probability of the whole certificate, in (0, 1).
        threat: eligible positions and ``d_max``
            (:mod:`~smoothcert.methods.threats`); default every position, ``d_max = L``.
        kernel: ``"uniform"`` or ``"mask"``.
        mask_id: mask token id (``"mask"`` kernel only).
        attacker: ``"alphabet"`` (the attacker writes alphabet tokens; every clean
            eligible token must lie in the alphabet) or ``"any"`` (any vocabulary id;
            the uniform kernel then samples out-of-alphabet tokens too). Default None:
            ``"any"`` when ``model_vocab_size`` is given and larger than the alphabet,
            else ``"alphabet"``.
        model_vocab_size: the model's vocabulary size, used only for that default.
        tau: threshold in (0, 1): 1/2 for majority vote, the flagging threshold of the
            safety filter otherwise.
        target: the fixed class of the safety filter, or None for majority vote.
        batch_size: samples per forward pass, >= 1.
        seed: seed of the ``torch.Generator`` on the sampling device (recorded).
        num_classes: expected number of output columns; inferred if None.
        device: device to sample on; default the model's (else the image's) device.
        image_shape: if given, ``image.shape`` must equal it.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"hybrid"``,
        ``radius = r(0)`` (L2, image units), ``radius_curve`` the tuple
        ``r(0), ..., r(d_max)``, the typed ``HybridParams``, the evidence with
        ``TokenFacts`` and ``TokenDetails`` (``d_certified``: the largest d certified
        with an unperturbed image, None if none; in safety-filter mode ``flag_rate``,
        ``target_p_upper`` and ``certified_not_flagged``, with the failure
        probabilities stated in :mod:`smoothcert.methods.tokens`). The Gaussian image
        noise is treated as exact and is not part of ``sampling_tv_bound``.

    Raises:
        InvalidParameterError: on any bad argument, before sampling: sigma <= 0, beta
            outside (0, 1), V < 2, tau outside (0, 1), d_max outside [0, D], tokens
            that are not a 1-D integer tensor or lie outside the alphabet at eligible
            positions, a NaN/Inf or non-float image, a batch axis on the tokens, a
            target outside the classes.
    """
    noise = kernel_for(
        beta=beta,
        alphabet=alphabet,
        kernel=kernel,
        mask_id=mask_id,
        attacker=attacker,
        model_vocab_size=model_vocab_size,
    )
    fields = params_from_arguments(
        noise, check_threat(threat), n0=n0, n=n, alpha=alpha, tau=tau, target=target
    )
    params = HybridParams(sigma=sigma, **fields)
    evidence = sample(
        model,
        (tokens, image),
        params,
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=device,
        autocast_dtype=autocast_dtype,
        image_shape=image_shape,
    )
    return decide_hybrid(evidence, params)


def certify_sequential(
    model: Callable[..., torch.Tensor],
    tokens: torch.Tensor,
    image: torch.Tensor,
    *,
    sigma: float,
    beta: float,
    alpha: float,
    max_samples: int,
    target_points: Sequence[tuple[int, float]],
    alphabet: Any = None,
    n0: int = 100,
    threat: ThreatModel | None = None,
    kernel: str = "uniform",
    mask_id: int | None = None,
    attacker: str | None = None,
    model_vocab_size: int | None = None,
    tau: float = 0.5,
    target: int | None = None,
    first_round: int = 100,
    growth: float = 2.0,
    bound: str = "union",
    final_share: float = 0.5,
    futility_z: float | None = None,
    batch_size: int = 1000,
    seed: int = 0,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    image_shape: tuple[int, ...] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Decide target points (d, r) of the hybrid certificate with as few samples as needed.

    For a safety filter (``target`` and its ``tau``): certify that ``P(flag) >= tau``
    under every edit of at most ``d`` tokens AND image move of at most ``r``, for each
    target point, stopping as soon as every point is certified or out of reach. The
    rule, its guarantee (level alpha whatever the stopping time) and the result are
    those of :mod:`smoothcert.decisions.hybrid_sequential`.

    Args:
        model: as in :func:`certify`.
        tokens: one sequence, 1-D integer tensor ``(L,)``.
        image: one finite floating-point image.
        sigma: image noise standard deviation, > 0, image units.
        beta: token substitution probability, in (0, 1).
        alpha: failure probability, in (0, 1).
        max_samples: most forward samples, selection included (majority mode draws
            ``n0`` of them first).
        target_points: the ``(d, r)`` points to decide, ``d >= 0``, ``r >= 0``.
        n0: selection samples in majority mode (ignored for a safety filter).
        first_round: estimation samples of the first round, >= 1.
        growth: checkpoint growth factor, > 1.
        bound: ``"union"`` or ``"mixture"``.
        final_share: ``"union"``: share of alpha spent at the last checkpoint, in (0, 1).
        futility_z: None, or give up on targets out of reach at the current rate plus
            this many standard errors (saves samples, may lose certificates; sound).
        alphabet: the token kernel's alphabet, as in :func:`certify`.
        threat: eligible positions and ``d_max``, as in :func:`certify`.
        kernel: ``"uniform"`` or ``"mask"``.
        mask_id: mask token id (``"mask"`` only).
        attacker: ``"alphabet"`` or ``"any"`` (default: see :func:`certify`).
        model_vocab_size: the model's vocabulary size (for the default threat).
        tau: the threshold: 1/2 for majority vote, the flag threshold of a filter.
        target: the safety filter's class, or None for majority vote.
        batch_size: samples per forward pass, >= 1.
        seed: generator seed (recorded); same seed, same rounds and decision.
        num_classes: expected output columns; inferred if None.
        device: device to sample on.
        image_shape: if given, ``image.shape`` must equal it.
        autocast_dtype: optional reduced-precision forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"hybrid-sequential"``,
        ``samples_used`` and
        :class:`~smoothcert.decisions.hybrid_sequential.HybridSequentialDetails`.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    noise = kernel_for(
        beta=beta,
        alphabet=alphabet,
        kernel=kernel,
        mask_id=mask_id,
        attacker=attacker,
        model_vocab_size=model_vocab_size,
    )
    fields = params_from_arguments(
        noise, check_threat(threat), n0=n0, alpha=alpha, tau=tau, target=target
    )
    params = HybridSequentialParams(
        sigma=sigma,
        max_samples=max_samples,
        targets=tuple(tuple(p) for p in target_points),  # type: ignore[misc]
        first_round=first_round,
        growth=growth,
        bound=bound,
        final_share=final_share,
        futility_z=futility_z,
        **fields,
    )
    evidence = sample(
        model,
        (tokens, image),
        params,
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=device,
        autocast_dtype=autocast_dtype,
        image_shape=image_shape,
    )
    return decide_hybrid_sequential(evidence, params)

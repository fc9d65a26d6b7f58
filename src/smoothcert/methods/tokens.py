"""Token substitution smoothing: certify a token sequence against d substituted tokens.

The smoothed classifier is ``g(u) = argmax_c P(f(Z) = c)`` where ``Z`` is the token
sequence ``u`` after a token substitution kernel (:mod:`smoothcert.noise.tokens`) at
the eligible positions of a :mod:`~smoothcert.methods.threats` model: ``"uniform"``
(keep with probability ``1 - beta``, else one of the ``V - 1`` other alphabet tokens)
or ``"mask"`` (replace by a mask id with probability ``beta``). Lee et al. 2019
(arXiv 1906.04948) give the discrete Neyman-Pearson certificate; DESIGN.md "Token
substitution kernels" states it; :func:`smoothcert.certificates.token_lower_bound`
computes ``L(d)``, the smallest probability of the certified class over every input
with at most ``d`` substituted eligible tokens (attacker tokens inside the alphabet,
or any vocabulary id with ``attacker="any"``, see :func:`certify`).

Two modes:

- majority (``target=None``): n0 selection samples pick the class A (top count);
  ``n`` FRESH samples (the generator continued) give ``n_A``; ``p_lower`` is the
  one-sided Clopper-Pearson bound at level alpha; certified for ``d`` edits iff
  ``L(d) > 1/2`` (and ``>= tau`` when ``tau > 1/2``).
- safety filter (``target`` given, Delattre et al. 2026, arXiv 2605.12876): the
  smoothed filter flags the input iff ``P(f(Z) = target) >= tau`` (``tau`` may be
  tiny, e.g. 4.6e-5). The class is fixed by the user, so there is no selection stage:
  ``n0`` is ignored (any ``n0 >= 0`` is accepted and kept in the parameters; no
  selection sample is drawn, so ``result.n0 == 0``). ``p_lower`` bounds ``P(target)``;
  the input is certified to STAY FLAGGED under ``d`` edits iff ``L(d) >= tau``
  (claim ``"flagged"``).

What each safety-filter claim guarantees (all bounds one-sided at level alpha):

- the robust certificate "flagged, and stays flagged for every ``d <= radius``" (from
  ``p_lower``) fails with probability at most alpha;
- ``certified_not_flagged`` ("the smoothed filter does not flag the clean input",
  ``target_p_upper + sampling_tv_bound < tau``) is a separate one-sided claim, wrong
  with probability at most alpha;
- at the clean input, the decision flagged / not flagged errs with probability at most
  alpha (whatever the true ``P(target)``, only one of the two can be wrong);
- a user who reads the robust radius AND the not-flagged flag jointly has failure
  probability at most 2 alpha (union bound: the two claims fail only inside the
  disjoint events ``p_lower > P(target)`` and ``p_upper < P(target)``, each of
  probability at most alpha, and both are possible when ``P(target)`` is close to
  ``tau``).

The certified radius is the largest ``d <= d_max`` such that every ``d' <= d`` is
certified, in tokens (``radius_unit="tokens"``). Noise is drawn at all ``D`` eligible
positions at once (shared sampling), so the single ``p_lower`` holds for every
``d <= D`` simultaneously (positions the attacker leaves alone have likelihood ratio
1); the failure probability of the whole certificate is alpha.

``p_lower`` is the Clopper-Pearson bound minus the kernel's sampling TV bound
(:meth:`~smoothcert.noise.tokens.BoundTokenNoise.tv_bound`, below 1e-11 in practice),
and ``certified_not_flagged`` compares the upper bound PLUS it with ``tau``: the
certificate then holds for the ideal kernel the math assumes.

:func:`sample` draws the evidence; :func:`smoothcert.decisions.tokens.decide_tokens`
decides; :func:`certify` does both.

Example:
    >>> import torch
    >>> class Constant(torch.nn.Module):
    ...     def forward(self, toks):
    ...         return torch.tensor([[0.0, 1.0]]).expand(toks.shape[0], 2)
    >>> tokens = torch.tensor([3, 1, 4, 1, 5])
    >>> res = certify(Constant().eval(), tokens, beta=0.9, alphabet=1000, n0=50, n=2000,
    ...               alpha=0.001)
    >>> res.prediction, res.radius, res.radius_unit
    (1, 5.0, 'tokens')
    >>> certify(Constant().eval(), tokens, beta=0.8, alphabet=1000, n0=50, n=2000,
    ...         alpha=0.001).radius
    3.0

Even a constant model certifies few tokens unless ``beta`` is large: an attacker's
token shows through at an edited position with probability ``1 - beta``, so roughly
``beta^d`` must stay above ``tau``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from smoothcert.decisions.tokens import TokenParams, decide_tokens
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
from smoothcert.methods.sampler import Prepared, Sampler, draw
from smoothcert.methods.threats import ThreatModel
from smoothcert.noise.product import BoundWithFixedInputs
from smoothcert.noise.tokens import check_tokens
from smoothcert.records import CertifyResult, Evidence
from smoothcert.sampling.device import check_device


def prepare(
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    params: TokenParams,
    *,
    seed: int,
    batch_size: int = 1000,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    eligible: Any = None,
    probe: bool = True,
) -> Prepared:
    """Validate everything and plan the stages of token substitution smoothing at one input.

    Applies the parameters' threat, binds the parameters' kernel to the eligible
    positions and draws the stages (:func:`~smoothcert.methods._tokens_common.draw_stages`).
    Every argument is validated before any sampling.

    Args:
        model: ``torch.nn.Module`` in eval mode (or a callable) taking token ids
            ``(B, L)`` (then each fixed input with a batch axis) and returning scores
            ``(B, num_classes)``.
        inputs: ``(tokens,)`` or ``(tokens, *fixed)``: one 1-D integer sequence (no batch
            axis), then inputs the model takes unchanged (e.g. the image of a
            (tokens, image) model, which token smoothing does not noise).
        params: the :class:`~smoothcert.decisions.tokens.TokenParams`.
        seed: seed of the ``torch.Generator`` on the sampling device (recorded).
        batch_size: samples per forward pass, >= 1.
        num_classes: expected number of output columns; inferred if None.
        device: device to sample on; default the model's (else the tokens') device.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.
        probe: check the model on the clean input first (see
            :class:`~smoothcert.methods.sampler.Sampler`).
        eligible: this input's eligible positions (a boolean mask over the sequence),
            for ``params.threat == "given"`` only.

    Returns:
        The :class:`~smoothcert.methods.sampler.Prepared` sampler, stage plan and
        :class:`~smoothcert.decisions.tokens.TokenFacts`.

    Raises:
        InvalidParameterError: on any bad argument, before sampling.
    """
    start = time.perf_counter()
    noise = token_noise(params)
    threat = threat_of(params, eligible)
    tokens, *fixed = inputs
    tokens = check_tokens(tokens)
    for i, extra in enumerate(fixed, start=1):
        check_image(extra, name=f"inputs[{i}]")
    dev = check_device(device) if device is not None else model_device(model, tokens.device)
    applied = threat.apply(tokens.to(dev))
    check_placeholder(applied, noise)
    bound = noise.bind(applied.tokens, applied.eligible)
    outside = check_outside(params, bound)
    sampler = Sampler(
        model,
        BoundWithFixedInputs(bound, tuple(t.to(dev) for t in fixed)) if fixed else bound,
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=dev,
        autocast_dtype=autocast_dtype,
        probe=probe,
    )
    plan, facts = plan_stages(sampler, params, applied, clean_outside=outside)
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
    *,
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
    autocast_dtype: torch.dtype | None = None,
) -> CertifyResult:
    """Certify a token sequence against up to ``d`` substituted tokens.

    See the module docstring for the two modes. The certificate: with probability at
    least ``1 - alpha`` over the samples, for every ``d <= radius`` and every sequence
    ``u'`` that differs from the (threat-applied) sequence in at most ``d`` eligible
    positions, with alphabet tokens (any ids with ``attacker="any"``), the smoothed
    classifier at ``u'`` still returns the class (majority mode: ``P(A) > 1/2``), or
    still flags (safety mode: ``P(target) >= tau``).

    Args:
        model: ``torch.nn.Module`` in eval mode (or a callable) mapping a LongTensor of
            token ids ``(B, L)`` to scores ``(B, num_classes)``.
        tokens: one sequence, 1-D integer tensor ``(L,)`` (no batch axis).
        beta: substitution probability per eligible position, in (0, 1).
        alphabet: the kernel's alphabet: ``V`` (ids ``0..V-1``), a tensor/list of ids,
            or a boolean mask over the vocabulary; ``V >= 2``. Optional for ``"mask"``.
        n0: selection samples, >= 1 in majority mode. Ignored in safety-filter mode
            (any value >= 0; no selection sample is drawn).
        n: estimation samples, >= 1.
        alpha: one-sided failure probability of the whole certificate, in (0, 1).
        threat: a :class:`~smoothcert.methods.threats.ThreatModel` (eligible positions
            and ``d_max``); default :func:`~smoothcert.methods.threats.anywhere`.
        kernel: ``"uniform"`` or ``"mask"``.
        mask_id: mask token id (``"mask"`` kernel only).
        attacker: ``"alphabet"`` (the attacker writes alphabet tokens; every clean
            eligible token must lie in the alphabet) or ``"any"`` (any vocabulary id;
            the uniform kernel then samples out-of-alphabet tokens too). Default None:
            ``"any"`` when ``model_vocab_size`` is given and larger than the alphabet,
            else ``"alphabet"``.
        model_vocab_size: the model's vocabulary size, used only for that default.
        tau: decision threshold in (0, 1): 1/2 for majority vote (``>= 1/2`` there),
            the flagging threshold in safety-filter mode.
        target: the fixed class of the safety filter (e.g. 1 = "unsafe"), or None for
            majority vote.
        batch_size: samples per forward pass, >= 1.
        seed: seed of the ``torch.Generator`` on the sampling device (recorded).
        num_classes: expected number of output columns; inferred if None.
        device: device to sample on; default the model's (else the tokens') device.
        autocast_dtype: optional ``torch.bfloat16``/``torch.float16`` forward passes.

    Returns:
        A :class:`~smoothcert.records.CertifyResult` with method ``"tokens"``,
        ``radius_unit="tokens"``, ``radius`` the certified number of substituted tokens
        (0 when abstaining), the typed parameters (``TokenParams``), the evidence with
        ``TokenFacts`` (``d_max``, ``num_eligible`` D, ``sampling_tv_bound``) and
        ``TokenDetails``. Safety-filter mode fills ``flag_rate`` (empirical P(target)),
        ``target_p_upper`` (one-sided Clopper-Pearson upper bound at alpha) and
        ``certified_not_flagged`` (``target_p_upper + sampling_tv_bound < tau``: the
        smoothed filter does NOT flag the clean input). Failure probabilities: the
        robust certificate (flagged, and stays flagged for every ``d <= radius``) fails
        w.p. <= alpha; ``certified_not_flagged`` is a separate one-sided claim, wrong
        w.p. <= alpha; the decision flagged / not flagged at the clean input errs w.p.
        <= alpha; reading the robust radius and the not-flagged flag jointly fails
        w.p. <= 2 alpha. ``details.p_lower_cp`` and ``facts.sampling_tv_bound`` record the
        raw Clopper-Pearson bound and the kernel correction: ``p_lower = max(0, p_lower_cp
        - sampling_tv_bound)``.

    Raises:
        InvalidParameterError: on any bad argument, before sampling: beta outside
            (0, 1), V < 2, tau outside (0, 1), d_max outside [0, D], non-integer or
            out-of-alphabet tokens at eligible positions, a target outside the classes.
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
    params = TokenParams(**fields)
    evidence = sample(
        model,
        (tokens,),
        params,
        seed=seed,
        batch_size=batch_size,
        num_classes=num_classes,
        device=device,
        autocast_dtype=autocast_dtype,
    )
    return decide_tokens(evidence, params)

"""Token substitution smoothing: certify a token sequence against d substituted tokens.

The smoothed classifier is ``g(u) = argmax_c P(f(Z) = c)`` where ``Z`` is the token
sequence ``u`` after a token substitution kernel (:mod:`smoothcert.noise.tokens`) at
the eligible positions of a :mod:`~smoothcert.methods.threats` model: ``"uniform"``
(keep with probability ``1 - beta``, else one of the ``V - 1`` other alphabet tokens)
or ``"mask"`` (replace by a mask id with probability ``beta``). Lee et al. 2019
(arXiv 1906.04948) give the discrete Neyman-Pearson certificate; DESIGN.md "Token
substitution kernels" states it; :func:`smoothcert.certificates.token_lower_bound`
computes ``L(d)``, the smallest probability of the certified class over every input
with at most ``d`` substituted eligible tokens (attacker tokens inside the alphabet).

Two modes:

- majority (``target=None``): n0 selection samples pick the class A (top count);
  ``n`` FRESH samples (the generator continued) give ``n_A``; ``p_lower`` is the
  one-sided Clopper-Pearson bound at level alpha; certified for ``d`` edits iff
  ``L(d) > 1/2`` (and ``>= tau`` when ``tau > 1/2``).
- safety filter (``target`` given, Delattre et al. 2026, arXiv 2605.12876): the
  smoothed filter flags the input iff ``P(f(Z) = target) >= tau`` (``tau`` may be
  tiny, e.g. 4.6e-5). The class is fixed by the user, so there is no selection stage:
  ``n0`` is ignored (any ``n0 >= 0`` is accepted, no selection sample is drawn, the
  result records ``n0 = 0`` with empty ``counts_selection`` and the requested value
  as ``params["n0_requested"]``). ``p_lower`` bounds ``P(target)``; the input is
  certified to STAY FLAGGED under ``d`` edits iff ``L(d) >= tau``.

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

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from smoothcert._validation import check_int, check_open_unit, check_probability_level
from smoothcert.certificates import max_certifiable_tokens, token_lower_bound
from smoothcert.errors import InvalidParameterError
from smoothcert.methods._common import (
    check_eval_mode,
    model_device,
    model_rejected_input,
    probe_num_classes,
)
from smoothcert.methods.threats import AppliedThreat, ThreatModel, anywhere
from smoothcert.noise.tokens import TokenSubstitutionNoise, check_tokens
from smoothcert.records import CertifyResult
from smoothcert.sampling.device import check_device
from smoothcert.sampling.engine import count_classes, make_generator
from smoothcert.stats.binomial import clopper_pearson_lower, clopper_pearson_upper

Counts = np.ndarray[Any, np.dtype[np.int64]]


@dataclass(frozen=True)
class _Mode:
    """Validated decision rule: majority vote or safety filter.

    ``n0`` is the number of selection samples actually drawn (0 in safety-filter mode);
    ``n0_requested`` the value the caller passed (recorded in safety-filter mode).
    """

    tau: float
    target: int | None
    n0: int
    n: int
    alpha: float
    batch_size: int
    seed: int
    num_classes: int | None
    n0_requested: int | None = None

    @property
    def majority(self) -> bool:
        return self.target is None

    def certified(self, bound: float) -> bool:
        """Whether a worst-case probability ``bound`` certifies the decision."""
        if self.majority:
            # P(A) > 1/2 makes A the unique argmax; tau > 1/2 asks for more.
            return bool(bound > 0.5 and bound >= self.tau)
        return bool(bound >= self.tau)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": "majority" if self.majority else "safety_filter",
            "tau": self.tau,
            "target": self.target,
        }
        if not self.majority:
            out["n0_requested"] = self.n0 if self.n0_requested is None else self.n0_requested
        return out


def check_mode(
    *,
    tau: Any,
    target: Any,
    n0: Any,
    n: Any,
    alpha: Any,
    batch_size: Any,
    seed: Any,
    num_classes: Any,
) -> _Mode:
    """Validate the arguments shared by the token and hybrid methods (before sampling).

    In safety-filter mode (``target`` given) ``n0`` is checked (``>= 0``) and then
    ignored: the mode draws no selection samples (``_Mode.n0 == 0``) and keeps the
    requested value in ``n0_requested``.

    Raises:
        InvalidParameterError: on tau outside (0, 1) (or below 1/2 in majority mode),
            a negative target, n0 < 1 in majority mode (< 0 in safety mode), n < 1,
            alpha outside (0, 1), batch_size < 1, a bad seed or num_classes < 2.
    """
    tau = check_open_unit(tau, name="tau")
    n0_requested = None
    if target is not None:
        target = check_int(target, name="target", minimum=0)
        n0_requested = check_int(n0, name="n0", minimum=0)
        n0 = 0  # the class is fixed: no selection stage, whatever n0 was passed
    else:
        if tau < 0.5:
            raise InvalidParameterError(
                f"tau = {tau!r} is invalid in majority mode (target=None); valid range: "
                "0.5 <= tau < 1 (for a threshold below 1/2 pass the fixed class as target=, "
                "safety-filter mode)"
            )
        n0 = check_int(n0, name="n0", minimum=1)
    return _Mode(
        tau=tau,
        target=target,
        n0=n0,
        n=check_int(n, name="n", minimum=1),
        alpha=check_probability_level(alpha),
        batch_size=check_int(batch_size, name="batch_size", minimum=1),
        seed=check_int(seed, name="seed", minimum=0, maximum=2**63 - 1),
        num_classes=None
        if num_classes is None
        else check_int(num_classes, name="num_classes", minimum=2),
        n0_requested=n0_requested,
    )


def check_threat(threat: Any) -> ThreatModel:
    """Return ``threat`` (default :func:`~smoothcert.methods.threats.anywhere`), or raise."""
    if threat is None:
        return anywhere()
    # Duck-typed (not isinstance): doctest collection may import this package twice.
    if not (callable(getattr(threat, "apply", None)) and callable(getattr(threat, "params", None))):
        raise InvalidParameterError(
            f"threat of type {type(threat).__name__} is invalid; valid: a ThreatModel from "
            "smoothcert.methods.threats (append_suffix, last_d, anywhere, positions)"
        )
    return threat


def check_placeholder(applied: AppliedThreat, noise: TokenSubstitutionNoise) -> None:
    """Reject an ``append_suffix`` placeholder the kernel's certificate cannot cover."""
    placeholder = applied.threat.placeholder_id
    if placeholder is None:
        return
    if noise.mask_id is not None and placeholder == noise.mask_id:
        raise InvalidParameterError(
            f"placeholder_id = {placeholder} equals mask_id; valid: a placeholder that differs "
            "from the mask id"
        )
    alphabet = noise.alphabet
    if alphabet is not None and not bool((alphabet == placeholder).any()):
        raise InvalidParameterError(
            f"placeholder_id = {placeholder} is not in the kernel's alphabet; valid: "
            f"{noise.valid_range()} (the certificate assumes the clean token at every "
            "eligible position lies in the alphabet)"
        )


def check_target(mode: _Mode, classes: int) -> None:
    """Check ``target < num_classes`` once the number of classes is known."""
    if mode.target is not None and mode.target >= classes:
        raise InvalidParameterError(
            f"target = {mode.target} is invalid; valid range: 0 <= target <= {classes - 1}"
        )


def run_stages(
    model: Callable[..., torch.Tensor],
    sampler: Callable[[int], tuple[torch.Tensor, ...]],
    mode: _Mode,
    *,
    classes: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    clean_inputs: tuple[torch.Tensor, ...],
) -> tuple[Counts, Counts]:
    """Draw the n0 selection samples, then the n estimation samples (same generator).

    No selection sample is drawn when ``mode.n0 == 0`` (safety-filter mode).

    Raises:
        InvalidParameterError: if the model raises ``IndexError`` on a noisy sample
            (typically an alphabet larger than the model's embedding table); the
            message repeats the model's error.
    """

    def counts(num: int) -> Counts:
        return count_classes(
            model,
            sampler,
            num,
            num_classes=classes,
            batch_size=mode.batch_size,
            device=device,
            autocast_dtype=autocast_dtype,
        )

    try:
        counts_sel = counts(mode.n0) if mode.n0 > 0 else np.zeros(0, dtype=np.int64)
        counts_est = counts(mode.n)
    except IndexError as err:
        raise model_rejected_input(err, clean_inputs, when="on a noisy sample") from err
    return counts_sel, counts_est


def bound_class(
    mode: _Mode, counts_sel: Counts, counts_est: Counts, *, tv_bound: float
) -> tuple[int, float, dict[str, Any]]:
    """Pick the class and bound its probability at level alpha.

    The class comes from the selection counts only (majority mode) or is the fixed
    target; the estimation counts only bound it (soundness rule 1).

    Returns:
        ``(cls, p_lower, extra_params)``: the selected (majority) or target class, the
        Clopper-Pearson lower bound minus ``tv_bound`` (floored at 0), and parameters to
        record.
    """
    cls = int(np.argmax(counts_sel)) if mode.target is None else mode.target
    k = int(counts_est[cls])
    p_cp = float(clopper_pearson_lower(k, mode.n, alpha=mode.alpha))
    p_lower = max(0.0, p_cp - tv_bound)
    extra: dict[str, Any] = {"p_lower_cp": p_cp, "sampling_tv_bound": tv_bound}
    if mode.target is not None:
        p_upper = float(clopper_pearson_upper(k, mode.n, alpha=mode.alpha))
        extra.update(
            flag_rate=k / mode.n,
            target_p_upper=p_upper,
            # One-sided claim at level alpha: P(target) < tau at the clean input. At the
            # clean input the flagged / not-flagged decision errs w.p. <= alpha (only
            # one of the two can be wrong), but the robust radius (from p_lower) and
            # this flag read jointly fail w.p. <= 2 alpha (union bound).
            certified_not_flagged=p_upper + tv_bound < mode.tau,
        )
    return cls, p_lower, extra


def certified_tokens(
    p_lower: float,
    mode: _Mode,
    *,
    d_max: int,
    beta: float,
    vocab_size: int | None,
    kernel: str,
) -> int:
    """Largest ``d <= d_max`` with every ``d' <= d`` certified; -1 if ``d = 0`` is not.

    Uses :func:`~smoothcert.certificates.max_certifiable_tokens` (one walk over ``d``,
    the largest ``d`` with ``L(d') >= tau`` for all ``d' <= d``), then re-checks the
    result with :func:`~smoothcert.certificates.token_lower_bound` under the mode's
    rule (strict ``L > 1/2`` for a majority vote), stepping down if needed.
    """
    kw: dict[str, Any] = {"beta": beta, "vocab_size": vocab_size, "kernel": kernel}

    def ok(d: int) -> bool:
        bound = float(token_lower_bound(p_lower, d=d, **kw))
        return math.isfinite(bound) and mode.certified(bound)

    if not ok(0):
        return -1
    best = int(max_certifiable_tokens(p_lower, tau=mode.tau, d_limit=d_max, **kw))
    while best > 0 and not ok(best):
        best -= 1
    return best


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
    positions, with alphabet tokens, the smoothed classifier at ``u'`` still returns
    the class (majority mode: ``P(A) > 1/2``), or still flags (safety mode:
    ``P(target) >= tau``).

    Args:
        model: ``torch.nn.Module`` in eval mode (or a callable) mapping a LongTensor of
            token ids ``(B, L)`` to scores ``(B, num_classes)``.
        tokens: one sequence, 1-D integer tensor ``(L,)`` (no batch axis).
        beta: substitution probability per eligible position, in (0, 1).
        alphabet: the kernel's alphabet: ``V`` (ids ``0..V-1``), a tensor/list of ids,
            or a boolean mask over the vocabulary; ``V >= 2``. Optional for ``"mask"``.
        n0: selection samples, >= 1 in majority mode. Ignored in safety-filter mode
            (any value >= 0; no selection sample is drawn, the result records
            ``n0 = 0`` and ``params["n0_requested"]``).
        n: estimation samples, >= 1.
        alpha: one-sided failure probability of the whole certificate, in (0, 1).
        threat: a :class:`~smoothcert.methods.threats.ThreatModel` (eligible positions
            and ``d_max``); default :func:`~smoothcert.methods.threats.anywhere`.
        kernel: ``"uniform"`` or ``"mask"``.
        mask_id: mask token id (``"mask"`` kernel only).
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
        (0 when abstaining), and params ``beta``, ``vocab_size``, ``kernel``, ``tau``,
        ``target``, ``mode``, ``d_max``, ``num_eligible`` (D) and the threat.
        Safety-filter mode adds ``flag_rate`` (empirical P(target)), ``target_p_upper``
        (one-sided Clopper-Pearson upper bound at alpha), ``n0_requested`` and
        ``certified_not_flagged`` (``target_p_upper + sampling_tv_bound < tau``: the
        smoothed filter does NOT flag the clean input). Failure probabilities: the
        robust certificate (flagged, and stays flagged for every ``d <= radius``) fails
        w.p. <= alpha; ``certified_not_flagged`` is a separate one-sided claim, wrong
        w.p. <= alpha; the decision flagged / not flagged at the clean input errs w.p.
        <= alpha; reading the robust radius and the not-flagged flag jointly fails
        w.p. <= 2 alpha. ``p_lower_cp`` and ``sampling_tv_bound`` record the raw
        Clopper-Pearson bound and the kernel correction: ``p_lower = max(0, p_lower_cp
        - sampling_tv_bound)``.

    Raises:
        InvalidParameterError: on any bad argument, before sampling: beta outside
            (0, 1), V < 2, tau outside (0, 1), d_max outside [0, D], non-integer or
            out-of-alphabet tokens at eligible positions, a target outside the classes.
    """
    start = time.perf_counter()
    noise = TokenSubstitutionNoise(beta=beta, alphabet=alphabet, kernel=kernel, mask_id=mask_id)
    mode = check_mode(
        tau=tau,
        target=target,
        n0=n0,
        n=n,
        alpha=alpha,
        batch_size=batch_size,
        seed=seed,
        num_classes=num_classes,
    )
    threat = check_threat(threat)
    tokens = check_tokens(tokens)
    check_eval_mode(model)
    dev = check_device(device) if device is not None else model_device(model, tokens.device)
    applied = threat.apply(tokens.to(dev))
    check_placeholder(applied, noise)
    bound = noise.bind(applied.tokens, applied.eligible)
    classes = probe_num_classes(model, (bound.tokens.unsqueeze(0),), mode.num_classes)
    check_target(mode, classes)

    generator = make_generator(mode.seed, dev)

    def sampler(b: int) -> tuple[torch.Tensor]:
        return (bound.sample(b, generator=generator),)

    counts_sel, counts_est = run_stages(
        model,
        sampler,
        mode,
        classes=classes,
        device=dev,
        autocast_dtype=autocast_dtype,
        clean_inputs=(bound.tokens.unsqueeze(0),),
    )
    cls, p_lower, extra = bound_class(mode, counts_sel, counts_est, tv_bound=bound.tv_bound())
    d_cert = certified_tokens(
        p_lower,
        mode,
        d_max=applied.d_max,
        beta=noise.beta,
        vocab_size=noise.vocab_size,
        kernel=noise.kernel,
    )
    certified = d_cert >= 0
    return CertifyResult(
        method="tokens",
        prediction=cls if certified else None,
        abstained=not certified,
        radius=float(d_cert) if certified else 0.0,
        p_lower=p_lower,
        n0=mode.n0,
        n=mode.n,
        alpha=mode.alpha,
        seed=mode.seed,
        seconds=time.perf_counter() - start,
        counts_selection=tuple(counts_sel.tolist()),
        counts_estimation=tuple(counts_est.tolist()),
        radius_unit="tokens",
        params={
            **noise.params(),
            **mode.params(),
            **applied.threat.params(),
            "d_max": applied.d_max,
            "num_eligible": applied.num_eligible,
            "length": int(applied.tokens.numel()),
            "sampling": "shared",
            "selected_class": cls,
            "num_classes": classes,
            "batch_size": mode.batch_size,
            **extra,
        },
    )

"""Token substitution decisions: evidence + :class:`TokenParams` -> certified number of edits.

Pure half of :mod:`smoothcert.methods.tokens` (the kernels, threat and modes are
described there; the math in DESIGN.md, "Token substitution kernels"). Two modes:

* majority (``target is None``): the selection counts choose the class A, the
  estimation counts bound it: ``p_lower = CP_lower(n_A, n; alpha) - tv`` where ``tv`` is
  the sampler's total-variation bound (:class:`TokenFacts`); claim ``"majority"``;
  ``d`` edits are certified iff ``L(d) > 1/2`` (and ``>= tau``).
* safety filter (``target`` given): no selection stage; ``p_lower`` bounds
  ``P(target)``; claim ``"flagged"``: certified to stay flagged under ``d`` edits iff
  ``L(d) >= tau``. :class:`TokenDetails` adds the one-sided ``certified_not_flagged``
  claim (``p_upper + tv < tau``, its own level alpha; read jointly with the radius the
  failure probability is at most 2 alpha, see :mod:`smoothcert.methods.tokens`).

The radius is the largest ``d <= d_max`` with every ``d' <= d`` certified, in tokens.

Example:
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> ev = Evidence((StageEvidence("selection", n=50, alpha=0.0, counts=(0, 50)),
    ...                StageEvidence("estimation", n=2000, alpha=0.001, counts=(0, 2000))),
    ...               TokenFacts(num_classes=2, length=5, num_eligible=5, d_max=5,
    ...                          sampling_tv_bound=0.0))
    >>> params = TokenParams(beta=0.9, alphabet=1000, n0=50, n=2000, alpha=0.001)
    >>> decide_tokens(ev, params).radius
    5.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from smoothcert._validation import (
    check_int,
    check_open_unit,
    check_probability_level,
)
from smoothcert.certificates import max_certifiable_tokens, token_lower_bound
from smoothcert.certificates._levels import outside_dominates
from smoothcert.certificates.tokens import Kernel
from smoothcert.decisions._common import (
    check_class,
    check_num_classes,
    estimation_result,
    require_facts,
    require_no_stage,
    require_stage,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.records import CertifyResult, Details, Evidence, Facts, Payload, register_payload
from smoothcert.stats.binomial import clopper_pearson_lower, clopper_pearson_upper

TOKEN_KERNELS = ("uniform", "mask")
"""Token substitution kernels (see :mod:`smoothcert.noise.tokens`)."""

ATTACKERS = ("alphabet", "any")
"""What the attacker may write at an edited position: alphabet tokens only, or any
vocabulary id (see :func:`smoothcert.certificates.token_lower_bound`)."""

THREAT_KINDS = ("append_suffix", "last_d", "anywhere", "positions", "given")
"""Text threat models (see :mod:`smoothcert.methods.threats`). ``"given"``: the eligible
positions come with each input (a dataset's per-example mask, e.g. the tokens of a
listing's description), so they may differ between the examples of one run."""


def _optional_int(value: Any, *, name: str, minimum: int) -> int | None:
    return None if value is None else check_int(value, name=name, minimum=minimum)


@register_payload
@dataclass(frozen=True, kw_only=True)
class TokenParams(Payload):
    """Parameters of token substitution smoothing (method ``tokens``).

    Attributes:
        beta: substitution (``uniform``) or masking (``mask``) probability, in (0, 1).
        alphabet: ``V`` (ids ``0..V-1``) or the sorted distinct alphabet ids (V >= 2);
            optional for ``mask``.
        kernel: ``"uniform"`` or ``"mask"``.
        mask_id: the mask token id (``mask`` only).
        n0: selection samples, >= 1 in majority mode; ignored by the safety filter
            (which draws none; any value >= 0).
        n: estimation samples, >= 1.
        alpha: one-sided failure probability of the whole certificate, in (0, 1).
        tau: threshold in (0, 1): >= 1/2 in majority mode; the flagging threshold of
            a safety filter.
        target: the safety filter's fixed class, or None for majority vote.
        threat: one of :data:`THREAT_KINDS`.
        num_positions: ``D`` for ``append_suffix`` and ``last_d``.
        placeholder_id: the appended token for ``append_suffix``.
        eligible_positions: explicit positions for ``positions``.
        mask_length: sequence length a boolean position mask was given for, or None.
        threat_d_max: largest ``d`` to certify (None: all ``D`` eligible positions).
        attacker: ``"alphabet"`` (default: the attacker writes alphabet tokens, and
            every clean eligible token must lie in the alphabet) or ``"any"`` (any
            vocabulary id; the uniform kernel keeps an out-of-alphabet token w.p.
            ``1 - beta``, else draws one of the ``V`` alphabet tokens). Left out of
            :meth:`to_dict` when ``"alphabet"``, so run hashes and files written before
            the field existed keep their meaning (every record states the threat in its
            details).

    Raises:
        InvalidParameterError: on any value out of range (message names value and range).
    """

    kind = "tokens"
    beta: float
    alphabet: int | tuple[int, ...] | None = None
    kernel: str = "uniform"
    mask_id: int | None = None
    n0: int
    n: int
    alpha: float
    tau: float = 0.5
    target: int | None = None
    threat: str = "anywhere"
    num_positions: int | None = None
    placeholder_id: int | None = None
    eligible_positions: tuple[int, ...] | None = None
    mask_length: int | None = None
    threat_d_max: int | None = None
    attacker: str = "alphabet"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "beta", check_open_unit(self.beta, name="beta"))
        if self.attacker not in ATTACKERS:
            raise InvalidParameterError(
                f"attacker = {self.attacker!r} is invalid; valid values: {ATTACKERS}"
            )
        if self.kernel not in TOKEN_KERNELS:
            raise InvalidParameterError(
                f"kernel = {self.kernel!r} is invalid; valid values: {TOKEN_KERNELS}"
            )
        if isinstance(self.alphabet, (tuple, list)):
            ids = tuple(check_int(i, name="alphabet id", minimum=0) for i in self.alphabet)
            if len(set(ids)) != len(ids) or list(ids) != sorted(ids) or len(ids) < 2:
                raise InvalidParameterError(
                    f"alphabet of {len(ids)} ids is invalid; valid: >= 2 sorted distinct ids"
                )
            set_(self, "alphabet", ids)
        elif self.alphabet is not None:
            set_(self, "alphabet", check_int(self.alphabet, name="vocab_size", minimum=2))
        if self.kernel == "uniform":
            if self.alphabet is None:
                raise InvalidParameterError(
                    "alphabet = None is invalid for kernel 'uniform'; valid: the vocabulary "
                    "size V >= 2 or the alphabet's token ids"
                )
            if self.mask_id is not None:
                raise InvalidParameterError(
                    f"mask_id = {self.mask_id!r} is invalid for kernel 'uniform'; valid: None "
                    "(mask_id is used by kernel 'mask' only)"
                )
        elif self.mask_id is None:
            raise InvalidParameterError(
                "mask_id = None is invalid for kernel 'mask'; valid: a token id >= 0"
            )
        else:
            set_(self, "mask_id", check_int(self.mask_id, name="mask_id", minimum=0))
        set_(self, "n", check_int(self.n, name="n", minimum=1))
        set_(self, "alpha", check_probability_level(self.alpha))
        set_(self, "tau", check_open_unit(self.tau, name="tau"))
        if self.target is None:
            if self.tau < 0.5:
                raise InvalidParameterError(
                    f"tau = {self.tau!r} is invalid in majority mode (target=None); valid "
                    "range: 0.5 <= tau < 1 (for a threshold below 1/2 pass the fixed class as "
                    "target=, safety-filter mode)"
                )
            set_(self, "n0", check_int(self.n0, name="n0", minimum=1))
        else:
            set_(self, "target", check_int(self.target, name="target", minimum=0))
            set_(self, "n0", check_int(self.n0, name="n0", minimum=0))
        if self.threat not in THREAT_KINDS:
            raise InvalidParameterError(
                f"threat = {self.threat!r} is invalid; valid values: {THREAT_KINDS}"
            )
        set_(
            self,
            "num_positions",
            _optional_int(self.num_positions, name="num_positions", minimum=1),
        )
        set_(
            self,
            "placeholder_id",
            _optional_int(self.placeholder_id, name="placeholder_id", minimum=0),
        )
        set_(self, "threat_d_max", _optional_int(self.threat_d_max, name="d_max", minimum=0))
        set_(self, "mask_length", _optional_int(self.mask_length, name="mask_length", minimum=1))
        if self.eligible_positions is not None:
            set_(
                self,
                "eligible_positions",
                tuple(
                    check_int(p, name="eligible position", minimum=0)
                    for p in self.eligible_positions
                ),
            )

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Payload.to_dict`, without ``attacker`` when it is the default."""
        out = super().to_dict()
        if out.get("attacker") == "alphabet":
            del out["attacker"]
        return out

    def certificate_kwargs(self, facts: TokenFacts | None = None) -> dict[str, Any]:
        """Keyword arguments of the certificate functions for these parameters.

        ``facts`` supplies the number of clean eligible tokens outside the alphabet.
        """
        kw: dict[str, Any] = {
            "beta": self.beta,
            "vocab_size": self.vocab_size,
            "kernel": self.kernel_name,
        }
        if self.attacker == "any":
            kw["attacker"] = "any"
            kw["clean_outside"] = 0 if facts is None else facts.clean_outside
        return kw

    @property
    def vocab_size(self) -> int | None:
        """Alphabet size ``V`` (None for a mask kernel without an alphabet)."""
        if self.alphabet is None:
            return None
        return self.alphabet if isinstance(self.alphabet, int) else len(self.alphabet)

    @property
    def kernel_name(self) -> Kernel:
        """The kernel, typed for the certificate functions."""
        return "mask" if self.kernel == "mask" else "uniform"

    def forward_samples(self) -> int:
        """Noisy samples (forward passes) per input: ``n``, plus ``n0`` in majority mode."""
        return (self.n0 if self.majority else 0) + self.n

    @property
    def majority(self) -> bool:
        """True in majority-vote mode, False for a safety filter."""
        return self.target is None

    def certified(self, bound: float) -> bool:
        """Whether a worst-case probability ``bound`` certifies the decision."""
        if self.majority:
            # P(A) > 1/2 makes A the unique argmax; tau > 1/2 asks for more.
            return bool(bound > 0.5 and bound >= self.tau)
        return bool(bound >= self.tau)


@register_payload
@dataclass(frozen=True, kw_only=True)
class TokenFacts(Facts):
    """Facts about one token (or token+image) input that the certificate needs.

    Attributes:
        num_classes: number of model outputs.
        length: length of the certified sequence (after an appended suffix).
        num_eligible: ``D``, the number of eligible positions the kernel randomised.
        d_max: the largest number of edits to certify, ``<= D``.
        sampling_tv_bound: bound on the total-variation distance between the sampled and
            the ideal token kernel (subtracted from ``p_lower``).
        eligible_positions: the ``D`` positions of the certified sequence that were noised
            and that the certificate lets the attacker edit (None: not recorded).
        clean_outside: eligible positions whose clean token lies outside the alphabet
            (``attacker="any"`` only; 0 otherwise).
    """

    kind = "token_facts"
    num_classes: int
    length: int
    num_eligible: int
    d_max: int
    sampling_tv_bound: float
    eligible_positions: tuple[int, ...] | None = None
    clean_outside: int = 0

    def __post_init__(self) -> None:
        check_int(self.num_classes, name="num_classes", minimum=2)
        check_int(self.num_eligible, name="num_eligible", minimum=0)
        check_int(self.d_max, name="d_max", minimum=0, maximum=self.num_eligible)
        check_int(self.clean_outside, name="clean_outside", minimum=0, maximum=self.num_eligible)
        if self.eligible_positions is not None:
            positions = tuple(int(p) for p in self.eligible_positions)
            if (
                len(positions) != self.num_eligible
                or len(set(positions)) != len(positions)
                or (positions and not 0 <= min(positions) <= max(positions) < self.length)
            ):
                raise InvalidParameterError(
                    f"eligible_positions = {positions!r} are invalid; valid: num_eligible = "
                    f"{self.num_eligible} distinct positions in [0, length = {self.length})"
                )
            object.__setattr__(self, "eligible_positions", positions)
        if not (math.isfinite(self.sampling_tv_bound) and 0 <= self.sampling_tv_bound < 1):
            raise InvalidParameterError(
                f"sampling_tv_bound = {self.sampling_tv_bound!r} is invalid; valid range: [0, 1)"
            )

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Payload.to_dict`, without ``clean_outside`` when it is 0.

        Records written before the field existed then validate and re-certify unchanged.
        """
        out = super().to_dict()
        if out.get("clean_outside") == 0:
            del out["clean_outside"]
        return out


@register_payload
@dataclass(frozen=True, kw_only=True)
class TokenDetails(Details):
    """Outputs of a token or hybrid decision.

    Attributes:
        d_certified: largest ``d`` certified with an unperturbed image (None: none).
        p_lower_cp: the Clopper-Pearson bound before the TV correction.
        flag_rate: safety filter: the empirical ``P(target)``; else None.
        target_p_upper: safety filter: one-sided CP upper bound on ``P(target)``.
        certified_not_flagged: safety filter: ``target_p_upper + tv < tau`` (the smoothed
            filter does not flag the clean input; a separate claim at level alpha).
        attacker: the threat certified, ``"alphabet"`` or ``"any"``. Serialised only
            when it is ``"any"``: a record without it certifies ``"alphabet"`` (as do
            records written before the field existed, which therefore still validate and
            read back as ``"alphabet"``).
    """

    kind = "token_details"
    d_certified: int | None
    p_lower_cp: float
    flag_rate: float | None = None
    target_p_upper: float | None = None
    certified_not_flagged: bool | None = None
    attacker: str = "alphabet"

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Payload.to_dict`, without ``attacker`` unless it is ``"any"``."""
        out = super().to_dict()
        if out.get("attacker") == "alphabet":
            del out["attacker"]
        return out


def bound_class(
    evidence: Evidence, params: TokenParams, method: str
) -> tuple[int, float, TokenFacts, TokenDetails]:
    """Pick the class (selection stage, or the fixed target) and bound it at level alpha.

    Soundness rule 1: the estimation counts only bound the class.

    Returns:
        ``(cls, p_lower, facts, details)``: ``p_lower`` is the CP lower bound minus the
        facts' TV bound (floored at 0); ``details.d_certified`` is not yet set.
    """
    facts = require_facts(evidence, TokenFacts, method=method)
    estimation = require_stage(evidence, "estimation", n=params.n, method=method)
    if params.majority:
        selection = require_stage(evidence, "selection", n=params.n0, method=method)
        check_num_classes((selection, estimation), facts.num_classes)
        cls = int(np.argmax(selection.counts))
    else:
        require_no_stage(evidence, "selection", method=method)
        check_num_classes((estimation,), facts.num_classes)
        assert params.target is not None
        cls = params.target
    check_class(cls, facts.num_classes, name="target" if params.target is not None else "class")
    tv = facts.sampling_tv_bound
    k = estimation.counts[cls]
    p_cp = float(clopper_pearson_lower(k, params.n, alpha=params.alpha))
    p_lower = max(0.0, p_cp - tv)
    check_facts_fit(facts, params)
    details = TokenDetails(d_certified=None, p_lower_cp=p_cp, attacker=params.attacker)
    if not params.majority:
        p_upper = float(clopper_pearson_upper(k, params.n, alpha=params.alpha))
        details = TokenDetails(
            d_certified=None,
            p_lower_cp=p_cp,
            flag_rate=k / params.n,
            target_p_upper=p_upper,
            certified_not_flagged=p_upper + tv < params.tau,
            attacker=params.attacker,
        )
    return cls, p_lower, facts, details


def check_facts_fit(facts: TokenFacts, params: TokenParams) -> None:
    """Reject clean out-of-alphabet tokens the parameters' certificate cannot cover.

    Called by the methods before sampling and by the decisions on saved evidence.

    Raises:
        InvalidParameterError: ``clean_outside > 0`` with ``attacker="alphabet"``, the
            mask kernel, or ``beta > V / (V + 1)``.
    """
    if facts.clean_outside == 0:
        return
    if params.attacker != "any" or params.kernel != "uniform":
        raise InvalidParameterError(
            f"clean_outside = {facts.clean_outside} is invalid for attacker = "
            f"{params.attacker!r}, kernel = {params.kernel!r}; valid: 0 (every clean "
            "eligible token in the alphabet), or attacker='any' with kernel 'uniform'"
        )
    vocab = params.vocab_size
    assert vocab is not None
    if beta_limit_exceeded(params.beta, vocab):
        raise InvalidParameterError(
            f"beta = {params.beta!r} is invalid with {facts.clean_outside} clean eligible "
            f"token(s) outside the alphabet of V = {vocab}; valid range: beta <= V / (V + 1) "
            f"= {vocab / (vocab + 1):.6g} (or keep every clean eligible token in the alphabet)"
        )


def beta_limit_exceeded(beta: float, vocab_size: int) -> bool:
    """Whether ``beta > V / (V + 1)`` exactly (clean out-of-alphabet tokens uncertified)."""
    return not outside_dominates(beta, vocab_size)


def certified_tokens(
    p_lower: float, params: TokenParams, *, d_max: int, facts: TokenFacts | None = None
) -> int | None:
    """Largest ``d <= d_max`` with every ``d' <= d`` certified; None if ``d = 0`` is not.

    Uses :func:`~smoothcert.certificates.max_certifiable_tokens` (one walk over ``d``),
    then re-checks the result with :func:`~smoothcert.certificates.token_lower_bound`
    under the mode's rule (strict ``L > 1/2`` for a majority vote), stepping down if
    needed. ``facts`` gives the clean out-of-alphabet count (``attacker="any"``).
    """
    kw = params.certificate_kwargs(facts)

    def ok(d: int) -> bool:
        bound = float(token_lower_bound(p_lower, d=d, **kw))
        return math.isfinite(bound) and params.certified(bound)

    if not ok(0):
        return None
    best = int(max_certifiable_tokens(p_lower, tau=params.tau, d_limit=d_max, **kw))
    while best > 0 and not ok(best):
        best -= 1
    return best


def decide_tokens(evidence: Evidence, params: TokenParams) -> CertifyResult:
    """Certify a number of token edits from saved counts (see the module docstring).

    Returns:
        The result, method ``"tokens"``, ``radius_unit = "tokens"``.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    cls, p_lower, facts, details = bound_class(evidence, params, "tokens")
    d_cert = certified_tokens(p_lower, params, d_max=facts.d_max, facts=facts)
    certified = d_cert is not None
    return estimation_result(
        evidence,
        params,
        method="tokens",
        claim="majority" if params.majority else "flagged",
        top=cls,
        certified=certified,
        radius=float(d_cert) if d_cert is not None else 0.0,
        p_lower=p_lower,
        radius_unit="tokens",
        details=dataclasses.replace(details, d_certified=d_cert),
    )

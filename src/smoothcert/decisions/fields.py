"""Hybrid smoothing of tabular rows (method ``hybrid-fields``): evidence -> curve ``r(d)``.

Pure half of :mod:`smoothcert.methods.fields`. The tabular case of Delattre et al. 2026
(arXiv 2605.12876, hybrid certificate, eq. for ``L(d, r)``; DESIGN.md, "Fields with
different alphabet sizes"): a row is ``F`` categorical fields, field ``f`` with its own
alphabet ``0..V_f-1`` and uniform substitution probability ``beta_f``, and a continuous
vector with ``N(0, sigma^2 I)`` noise. The attacker changes the category of at most ``d``
fields -- ANY ``d`` of them, chosen after seeing the row -- AND moves the continuous
vector by at most ``r`` in L2 (units of the continuous vector; for the bundled
``"fair"`` table, train standard deviations).

The certificate: ``n0`` selection samples pick the class, ``n`` fresh samples give
``p_lower`` (Clopper-Pearson at ``alpha`` minus the sampler's TV bound). Each field is a
:class:`~smoothcert.certificates.tokens.TokenField` with one position; the certificates
take the minimum over every allocation of the ``d`` changes to fields, i.e. the worst
case over WHICH fields are attacked (fields with the same ``(V_f, beta_f)`` are merged
first, which changes nothing: any ``e`` of them are the same attack). ``d`` changes are
certified with an untouched continuous part iff
``L(d, 0) = token_lower_bound(p_lower, d=d, fields=...) > 1/2`` (and ``>= tau``), and
``r(d) = hybrid_radius_curve(p_lower, ..., fields=...)[d]`` for those ``d``; the curve is
zero past the first ``d`` that fails. ``radius = r(0) = sigma * Phi^-1(p_lower)`` at
``tau = 1/2`` (Cohen et al. 2019). One ``p_lower`` covers every ``d`` and ``r`` at once (all
fields are noised in every sample), so the whole curve fails with probability at most
``alpha``.

Example:
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> from smoothcert.decisions.tokens import TokenFacts
    >>> ev = Evidence((StageEvidence("selection", n=100, alpha=0.0, counts=(0, 100)),
    ...                StageEvidence("estimation", n=5000, alpha=0.001, counts=(0, 5000))),
    ...               TokenFacts(num_classes=2, length=2, num_eligible=2, d_max=2,
    ...                          sampling_tv_bound=0.0))
    >>> params = FieldsParams(field_vocab_sizes=(2, 3), field_betas=(0.3, 0.5), sigma=0.5,
    ...                       n0=100, n=5000, alpha=0.001)
    >>> res = decide_fields(ev, params)
    >>> res.prediction, len(res.radius_curve), res.details.d_certified
    (1, 3, 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from smoothcert._validation import check_int, check_open_unit
from smoothcert.certificates import hybrid_radius_curve, token_lower_bound
from smoothcert.certificates.tokens import TokenField
from smoothcert.decisions._common import (
    check_class,
    check_gaussian_sampling,
    check_num_classes,
    require_facts,
    require_stage,
    with_alpha,
)
from smoothcert.decisions.tokens import TokenDetails, TokenFacts
from smoothcert.errors import InvalidParameterError
from smoothcert.records import CertifyResult, Evidence, Payload, register_payload
from smoothcert.stats.binomial import clopper_pearson_lower

METHOD = "hybrid-fields"


@register_payload
@dataclass(frozen=True, kw_only=True)
class FieldsParams(Payload):
    """Parameters of hybrid smoothing over categorical fields + a continuous vector.

    Attributes:
        field_vocab_sizes: alphabet size ``V_f >= 2`` of each categorical field (ids
            ``0..V_f-1``), in column order.
        field_betas: substitution probability ``beta_f`` in (0, 1) of each field.
        sigma: standard deviation of the Gaussian noise on the continuous vector, > 0,
            in its units.
        n0: selection samples, >= 1.
        n: estimation samples, >= 1.
        alpha: one-sided failure probability of the whole certificate, in (0, 1).
        tau: majority threshold, ``0.5 <= tau < 1``.
        threat_d_max: largest number ``d`` of changed fields to certify, ``0..F``
            (None: all ``F`` fields; the CLI's ``--d-max``).

    Raises:
        InvalidParameterError: on any value out of range (message names it and the range).
    """

    kind = "hybrid_fields"
    field_vocab_sizes: tuple[int, ...]
    field_betas: tuple[float, ...]
    sigma: float
    n0: int
    n: int
    alpha: float
    tau: float = 0.5
    threat_d_max: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        vocab = tuple(
            check_int(v, name="field vocab size", minimum=2) for v in self.field_vocab_sizes
        )
        betas = tuple(check_open_unit(b, name="field beta") for b in self.field_betas)
        if not vocab or len(vocab) != len(betas):
            raise InvalidParameterError(
                f"{len(vocab)} field vocab sizes and {len(betas)} field betas are invalid; "
                "valid: one (V_f, beta_f) pair per categorical field, at least one field"
            )
        set_(self, "field_vocab_sizes", vocab)
        set_(self, "field_betas", betas)
        check_gaussian_sampling(self)
        tau = check_open_unit(self.tau, name="tau")
        if tau < 0.5:
            raise InvalidParameterError(
                f"tau = {tau!r} is invalid; valid range: 0.5 <= tau < 1 (majority vote)"
            )
        set_(self, "tau", tau)
        if self.threat_d_max is not None:
            set_(
                self,
                "threat_d_max",
                check_int(self.threat_d_max, name="d_max", minimum=0, maximum=len(vocab)),
            )

    @property
    def num_fields(self) -> int:
        """Number ``F`` of categorical fields."""
        return len(self.field_vocab_sizes)

    @property
    def d_max(self) -> int:
        """Largest number of changed fields certified (``threat_d_max`` or ``F``)."""
        return self.num_fields if self.threat_d_max is None else self.threat_d_max

    def token_fields(self) -> tuple[TokenField, ...]:
        """The fields as the certificates take them: one position each."""
        return tuple(
            TokenField(b, v, positions=1)
            for v, b in zip(self.field_vocab_sizes, self.field_betas, strict=True)
        )

    def forward_samples(self) -> int:
        """Noisy samples (forward passes) per input: ``n0 + n``."""
        return self.n0 + self.n

    def certified(self, bound: float) -> bool:
        """Whether a worst-case probability certifies the majority class (``> 1/2``, ``>= tau``)."""
        return bool(math.isfinite(bound) and bound > 0.5 and bound >= self.tau)


def certified_fields(p_lower: float, params: FieldsParams, *, d_max: int) -> int | None:
    """Largest ``d <= d_max`` with ``L(d', 0)`` certified for every ``d' <= d``; None if none.

    ``L(d, 0)`` is :func:`~smoothcert.certificates.token_lower_bound` with the fields,
    the minimum over which fields are changed.

    Example:
        >>> p = FieldsParams(field_vocab_sizes=(5, 4), field_betas=(0.6, 0.5), sigma=1.0,
        ...                  n0=1, n=1, alpha=0.1)
        >>> certified_fields(0.99, p, d_max=2), certified_fields(0.4, p, d_max=2)
        (2, None)
    """
    fields = params.token_fields()
    best: int | None = None
    for d in range(d_max + 1):
        if not params.certified(float(token_lower_bound(p_lower, d=d, fields=fields))):
            break
        best = d
    return best


def fields_curve(
    p_lower: float, params: FieldsParams, *, d_max: int
) -> tuple[np.ndarray, int | None]:
    """The certified staircase at ``p_lower``: ``(r(0..d_max), d_certified)``.

    ``r(d)`` (continuous-vector units) is :func:`~smoothcert.certificates.hybrid_radius_curve`
    with the fields, zero past the first ``d`` not certified at ``r = 0`` and everywhere
    when ``d = 0`` is not (``d_certified`` None).
    """
    d_cert = certified_fields(p_lower, params, d_max=d_max)
    curve = np.zeros(d_max + 1, dtype=np.float64)
    if d_cert is not None:
        raw = hybrid_radius_curve(
            p_lower,
            d_max=d_max,
            sigma=params.sigma,
            tau=params.tau,
            fields=params.token_fields(),
        )
        curve = np.asarray(raw, dtype=np.float64).reshape(-1)
        curve[d_cert + 1 :] = 0.0
        curve = np.where(np.isfinite(curve) & (curve > 0), curve, 0.0)
    return curve, d_cert


def decide_fields(evidence: Evidence, params: FieldsParams) -> CertifyResult:
    """Certify the curve ``r(d)`` of a tabular row from saved counts (see the module docstring).

    Returns:
        The result, method ``"hybrid-fields"``, ``radius = r(0)`` and ``radius_curve``
        ``r(0..d_max)`` (zeros when abstaining), details
        :class:`~smoothcert.decisions.tokens.TokenDetails` (``d_certified``).

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters (sample
            sizes, stages, a number of fields other than ``F``).
    """
    facts = require_facts(evidence, TokenFacts, method=METHOD)
    if facts.num_eligible != params.num_fields:
        raise InvalidParameterError(
            f"evidence for {facts.num_eligible} fields is invalid; valid: the parameters' "
            f"{params.num_fields} fields"
        )
    selection = require_stage(evidence, "selection", n=params.n0, method=METHOD)
    estimation = require_stage(evidence, "estimation", n=params.n, method=METHOD)
    check_num_classes((selection, estimation), facts.num_classes)
    cls = int(np.argmax(selection.counts))
    check_class(cls, facts.num_classes, name="class")
    p_cp = float(clopper_pearson_lower(estimation.counts[cls], params.n, alpha=params.alpha))
    p_lower = max(0.0, p_cp - facts.sampling_tv_bound)
    # every field was noised in every sample, so p_lower holds for any d <= F
    curve, d_cert = fields_curve(p_lower, params, d_max=params.d_max)
    certified = d_cert is not None
    return CertifyResult(
        method=METHOD,
        claim="majority",
        prediction=cls if certified else None,
        abstained=not certified,
        radius=float(curve[0]) if certified else 0.0,
        radius_curve=tuple(curve.tolist()),
        p_lower=p_lower,
        alpha=params.alpha,
        seed=evidence.seed,
        seconds=evidence.seconds,
        params=params,
        evidence=with_alpha(evidence, {"estimation": params.alpha}),
        details=TokenDetails(d_certified=d_cert, p_lower_cp=p_cp),
    )

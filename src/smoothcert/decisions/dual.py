"""Dual randomized smoothing decisions (Sun, Mao & Vechev, arXiv 2512.01782): sigma per input.

Pure: the evidence of both stages and :class:`DualParams` ->
:class:`~smoothcert.records.CertifyResult`. The certificate and its proof are in
:mod:`smoothcert.certificates.dual`; here is how the evidence is read and the failure
probability spent:

* Stage 1, the sigma estimator smoothed at ``sigma_estimator``: a ``sigma_selection``
  stage of ``n0`` samples picks the index ``j`` (top count; it spends no alpha), a
  ``sigma_estimation`` stage of ``n`` fresh samples bounds ``P(h(x + e) = j)`` at
  ``alpha_1 = alpha * alpha_split`` and gives ``R_sigma`` (Cohen's CERTIFY,
  :func:`~smoothcert.decisions.cohen.decide_cohen`). If it abstains, so does the result,
  and no classifier samples are drawn.
* Stage 2, the classifier (or expert ``j``) smoothed at ``sigmas[j]``, with noise drawn
  after and independently of stage 1: ``selection`` (``n0``) picks the class,
  ``estimation`` (``n``) bounds it at ``alpha_2 = alpha - alpha_1`` and gives ``R_c``.
* Result: the class with radius ``min(R_sigma, R_c)``; abstain if either stage abstains;
  failure probability ``alpha_1 + alpha_2 = alpha``.

Soundness (DESIGN.md, "Input-dependent sigma"): the sigma is the estimator's choice, read
from the stage-1 selection counts, never from the label or from which sigma certifies
best. :func:`dual_next_stage` is the only rule that tells the sampler which sigma stage 2
uses, and :func:`decide_dual` re-derives the same index from the same counts, so a record
cannot claim a certificate at another sigma.

Example:
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> params = DualParams(sigmas=(0.25, 0.5), sigma_estimator=0.5, n0=10, n=1000,
    ...                     alpha=0.002)
    >>> ev = Evidence((StageEvidence("sigma_selection", n=10, alpha=0.0, counts=(1, 9)),
    ...                StageEvidence("sigma_estimation", n=1000, alpha=0.0, counts=(20, 980)),
    ...                StageEvidence("selection", n=10, alpha=0.0, counts=(0, 10, 0)),
    ...                StageEvidence("estimation", n=1000, alpha=0.0, counts=(5, 990, 5))),
    ...               DualFacts(num_classes=3, num_sigmas=2), seed=0)
    >>> res = decide_dual(ev, params)
    >>> res.prediction, res.details.sigma, res.details.limited_by
    (1, 0.5, 'sigma')
    >>> round(res.radius, 4), round(res.details.radius_classifier, 4)
    (0.889, 0.989)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from smoothcert._validation import check_int, check_open_unit, check_positive
from smoothcert.certificates.dual import LIMITS, dual_radius
from smoothcert.decisions._common import require_facts, with_alpha
from smoothcert.decisions.cohen import (
    GaussianFacts,
    GaussianParams,
    GaussianPredictParams,
    decide_cohen,
    decide_predict,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.records import (
    CertifyResult,
    Details,
    Evidence,
    Facts,
    Payload,
    StageEvidence,
    register_payload,
)

SIGMA_STAGES = ("sigma_selection", "sigma_estimation")
"""Roles of stage 1 (the sigma estimator)."""

CLASS_STAGES = ("selection", "estimation")
"""Roles of stage 2 (the classifier at the chosen sigma)."""


def check_sigmas(sigmas: Any) -> tuple[float, ...]:
    """Return ``sigmas`` as a tuple of floats, requiring >= 2 strictly increasing levels > 0.

    Raises:
        InvalidParameterError: naming the bad value and the valid range.
    """
    if isinstance(sigmas, (str, bytes)) or not hasattr(sigmas, "__iter__"):
        raise InvalidParameterError(
            f"sigmas = {sigmas!r} is invalid; valid: a sequence of >= 2 strictly increasing "
            "noise levels > 0"
        )
    values = tuple(check_positive(s, name=f"sigmas[{i}]") for i, s in enumerate(sigmas))
    if len(values) < 2 or any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise InvalidParameterError(
            f"sigmas = {values!r} is invalid; valid: >= 2 strictly increasing noise levels > 0"
        )
    return values


class _AlphaSplit:
    """The split of ``alpha`` between the two stages (both parameter classes)."""

    alpha: float
    alpha_split: float

    @property
    def alpha_sigma(self) -> float:
        """``alpha_1 = alpha * alpha_split``: the failure probability of the estimator's stage."""
        return self.alpha * self.alpha_split

    @property
    def alpha_classifier(self) -> float:
        """``alpha_2 = alpha - alpha_1``: the classifier's (the two sum to ``alpha``)."""
        return self.alpha - self.alpha_sigma


@register_payload
@dataclass(frozen=True, kw_only=True)
class DualParams(Payload, _AlphaSplit):
    """Parameters of dual randomized smoothing (``dual``).

    Attributes:
        sigmas: the noise levels the estimator chooses from, >= 2, strictly increasing,
            > 0, in the units of the input tensor; output ``j`` of the estimator means
            ``sigmas[j]``.
        sigma_estimator: the one global level the estimator is smoothed at,
            ``>= max(sigmas)`` (the paper's condition; its default is ``max(sigmas)``).
        n0: selection samples of each stage, >= 1.
        n: estimation samples of each stage, >= 1.
        alpha: one-sided failure probability of the whole certificate, in (0, 1).
        alpha_split: share of alpha spent on the estimator's certificate, in (0, 1);
            ``alpha_1 = alpha * alpha_split``, ``alpha_2 = alpha - alpha_1``.
    """

    kind = "dual"
    sigmas: tuple[float, ...]
    sigma_estimator: float
    n0: int
    n: int
    alpha: float
    alpha_split: float = 0.5

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "sigmas", check_sigmas(self.sigmas))
        estimator = check_positive(self.sigma_estimator, name="sigma_estimator")
        if estimator < self.sigmas[-1]:
            raise InvalidParameterError(
                f"sigma_estimator = {estimator!r} is invalid; valid range: sigma_estimator >= "
                f"max(sigmas) = {self.sigmas[-1]!r}"
            )
        set_(self, "sigma_estimator", estimator)
        set_(self, "n0", check_int(self.n0, name="n0", minimum=1))
        set_(self, "n", check_int(self.n, name="n", minimum=1))
        set_(self, "alpha", check_open_unit(self.alpha, name="alpha"))
        set_(self, "alpha_split", check_open_unit(self.alpha_split, name="alpha_split"))

    def estimator_params(self) -> GaussianParams:
        """Stage 1 as Cohen's CERTIFY of the estimator at ``sigma_estimator`` and ``alpha_1``."""
        return GaussianParams(
            sigma=self.sigma_estimator, n0=self.n0, n=self.n, alpha=self.alpha_sigma
        )

    def classifier_params(self, index: int) -> GaussianParams:
        """Stage 2 as Cohen's CERTIFY at ``sigmas[index]`` and ``alpha_2``."""
        return GaussianParams(
            sigma=self.sigmas[index], n0=self.n0, n=self.n, alpha=self.alpha_classifier
        )

    def forward_samples(self) -> int:
        """Noisy samples (forward passes) per input, at most: ``2 (n0 + n)``."""
        return 2 * (self.n0 + self.n)


@register_payload
@dataclass(frozen=True, kw_only=True)
class DualPredictParams(Payload, _AlphaSplit):
    """Parameters of dual smoothing's abstaining prediction (``dual-predict``), no radius.

    Cohen et al.'s PREDICT twice: ``n`` samples of the estimator at ``sigma_estimator``
    return ``j`` unless the binomial test at ``alpha_1`` abstains; then ``n`` fresh samples
    of the classifier at ``sigmas[j]`` return the class unless the test at ``alpha_2``
    abstains. The class differs from the dual classifier's ``G(x)`` with probability at
    most ``alpha_1 + alpha_2 = alpha``.

    Attributes:
        sigmas, sigma_estimator, alpha, alpha_split: as in :class:`DualParams`.
        n: samples of each stage, >= 1.
    """

    kind = "dual_predict"
    sigmas: tuple[float, ...]
    sigma_estimator: float
    n: int
    alpha: float
    alpha_split: float = 0.5

    def __post_init__(self) -> None:
        checked = DualParams(
            sigmas=self.sigmas,
            sigma_estimator=self.sigma_estimator,
            n0=1,
            n=self.n,
            alpha=self.alpha,
            alpha_split=self.alpha_split,
        )
        for name in ("sigmas", "sigma_estimator", "n", "alpha", "alpha_split"):
            object.__setattr__(self, name, getattr(checked, name))

    def estimator_params(self) -> GaussianPredictParams:
        """Stage 1 as Cohen's PREDICT of the estimator at ``sigma_estimator``, ``alpha_1``."""
        return GaussianPredictParams(sigma=self.sigma_estimator, n=self.n, alpha=self.alpha_sigma)

    def classifier_params(self, index: int) -> GaussianPredictParams:
        """Stage 2 as Cohen's PREDICT at ``sigmas[index]`` and ``alpha_2``."""
        return GaussianPredictParams(
            sigma=self.sigmas[index], n=self.n, alpha=self.alpha_classifier
        )

    def forward_samples(self) -> int:
        """Noisy samples (forward passes) per input, at most: ``2 n``."""
        return 2 * self.n


@register_payload
@dataclass(frozen=True, kw_only=True)
class DualFacts(Facts):
    """What the dual decision needs to know about the input.

    Attributes:
        num_classes: classifier outputs, >= 2.
        num_sigmas: estimator outputs (``len(sigmas)``), >= 2.
    """

    kind = "dual_facts"
    num_classes: int
    num_sigmas: int

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "num_classes", check_int(self.num_classes, name="num_classes", minimum=2))
        set_(self, "num_sigmas", check_int(self.num_sigmas, name="num_sigmas", minimum=2))


@register_payload
@dataclass(frozen=True, kw_only=True)
class DualDetails(Details):
    """The two certificates behind a dual result.

    Attributes:
        sigma_index: the estimator's choice ``j`` (from the stage-1 selection counts).
        sigma: ``sigmas[j]``, the level the classifier was smoothed at.
        p_lower_sigma: lower bound on ``P(h(x + e) = j)`` at ``alpha_1``.
        radius_sigma: ``R_sigma`` (0 when stage 1 abstained).
        radius_classifier: ``R_c`` (0 when stage 2 abstained or was not drawn).
        limited_by: ``"sigma"`` or ``"classifier"`` (:data:`~smoothcert.certificates.dual.LIMITS`)
            for a certified result; None when it abstained.
        abstained_at: ``"sigma"`` (the estimator's certificate failed; no classifier
            samples were drawn), ``"classifier"`` (its certificate failed, or it was
            not drawn), or None when certified.
    """

    kind = "dual_details"
    sigma_index: int
    sigma: float
    p_lower_sigma: float
    radius_sigma: float
    radius_classifier: float
    limited_by: str | None
    abstained_at: str | None

    def __post_init__(self) -> None:
        for name, value in (("limited_by", self.limited_by), ("abstained_at", self.abstained_at)):
            if value is not None and value not in LIMITS:
                raise InvalidParameterError(
                    f"{name} = {value!r} is invalid; valid values: {LIMITS} or None"
                )


AnyDualParams = DualParams | DualPredictParams

_LAYOUTS: dict[type, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    DualParams: (SIGMA_STAGES, CLASS_STAGES, CLASS_STAGES),
    DualPredictParams: (("sigma_estimation",), ("prediction",), ("prediction",)),
}
"""Per parameter class: stage-1 roles, stage-2 roles, and the roles of the Cohen
decision each stage is read as (selection/estimation, or PREDICT's one stage)."""


def _stage_sizes(params: AnyDualParams) -> tuple[int, ...]:
    return (params.n0, params.n) if isinstance(params, DualParams) else (params.n,)


def _renamed(
    evidence: Evidence, roles: tuple[str, ...], params: AnyDualParams, facts: Facts
) -> Evidence:
    """The stages ``roles`` of ``evidence`` under the roles of the Cohen decision they are."""
    cohen_roles = _LAYOUTS[type(params)][2]
    stages: list[StageEvidence] = []
    for role, cohen_role in zip(roles, cohen_roles, strict=True):
        stage = evidence.stage(role)
        if stage is not None:
            stages.append(dataclasses.replace(stage, role=cohen_role))
    return Evidence(tuple(stages), facts, seed=evidence.seed)


def _decide_cohen(
    evidence: Evidence, params: GaussianParams | GaussianPredictParams
) -> CertifyResult:
    if isinstance(params, GaussianParams):
        return decide_cohen(evidence, params)
    return decide_predict(evidence, params)


def _stage_one(evidence: Evidence, params: AnyDualParams) -> tuple[CertifyResult, int]:
    """Stage 1's Cohen decision on the estimator, and the estimator's choice ``j``.

    ``j`` is the top count of the first stage-1 stage (the selection, or PREDICT's
    samples), as the Cohen decision picks its class, also when it then abstains.
    """
    facts = require_facts(evidence, DualFacts, method="dual")
    if facts.num_sigmas != len(params.sigmas):
        raise InvalidParameterError(
            f"the evidence's estimator has {facts.num_sigmas} outputs but len(sigmas) = "
            f"{len(params.sigmas)}; valid: one estimator output per sigma"
        )
    roles = _LAYOUTS[type(params)][0]
    sub = _renamed(evidence, roles, params, GaussianFacts(num_classes=facts.num_sigmas))
    decision = _decide_cohen(sub, params.estimator_params())
    return decision, int(np.argmax(sub.stages[0].counts))


def _check_order(
    evidence: Evidence, params: AnyDualParams
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Check the evidence's stages are drawn in order (a prefix of stage 1 then stage 2).

    Returns:
        The stage-1 roles and all the roles, in order.
    """
    one, two, _ = _LAYOUTS[type(params)]
    order = (*one, *two)
    drawn = [s.role for s in evidence.stages]
    if drawn != list(order[: len(drawn)]):
        raise InvalidParameterError(
            f"evidence stages {drawn} are invalid for dual smoothing; valid: a prefix of "
            f"{list(order)}, in that order"
        )
    return one, order


def dual_next_stage(evidence: Evidence, params: AnyDualParams) -> tuple[str, int, int] | None:
    """The stage to draw after ``evidence``: ``(role, n, sigma_index)``, or None to stop.

    The sampler's only source of the classifier's sigma. Stage 1 (``sigma_selection``,
    ``sigma_estimation``) is drawn first; ``sigma_index`` is -1 for it (the estimator at
    ``sigma_estimator``). If the estimator's certificate abstains, stop; else draw the
    classifier's ``selection`` and ``estimation`` at the estimator's choice ``j``. With
    :class:`DualPredictParams`: ``sigma_estimation``, then ``prediction`` at ``j``.

    Example:
        >>> from smoothcert.records import Evidence, StageEvidence
        >>> p = DualParams(sigmas=(0.25, 0.5), sigma_estimator=0.5, n0=10, n=100, alpha=0.01)
        >>> facts = DualFacts(num_classes=2, num_sigmas=2)
        >>> dual_next_stage(Evidence((), facts), p)
        ('sigma_selection', 10, -1)
        >>> ev = Evidence((StageEvidence("sigma_selection", n=10, alpha=0.0, counts=(10, 0)),
        ...                StageEvidence("sigma_estimation", n=100, alpha=0.0, counts=(99, 1))),
        ...               facts)
        >>> dual_next_stage(ev, p)
        ('selection', 10, 0)
    """
    one, order = _check_order(evidence, params)
    sizes = _stage_sizes(params) * 2
    drawn = evidence.stages
    if len(drawn) < len(one):
        return order[len(drawn)], sizes[len(drawn)], -1
    if len(drawn) == len(order):
        return None
    stage_one, j = _stage_one(evidence, params)
    if stage_one.abstained:
        return None
    return order[len(drawn)], sizes[len(drawn)], j


def decide_dual(evidence: Evidence, params: DualParams) -> CertifyResult:
    """Dual smoothing's certificate from saved counts (see the module docstring).

    Args:
        evidence: the stage-1 stages (``sigma_selection`` of ``n0`` samples,
            ``sigma_estimation`` of ``n``) and, unless stage 1 abstained, the stage-2
            stages (``selection``, ``estimation``) drawn at the estimator's choice.
        params: the :class:`DualParams`.

    Returns:
        The result, method ``"dual"``, claim ``"majority"``, ``p_lower`` of the class,
        ``radius = min(R_sigma, R_c)`` and :class:`DualDetails`; each stage's evidence
        records the alpha it spent (``alpha_1`` on ``sigma_estimation``, ``alpha_2`` on
        ``estimation``).

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters (missing
            stage-1 stages, other sample sizes or numbers of classes).

    Re-deciding at another alpha (``smoothcert recertify``) stays sound: classifier
    stages after an estimator that now abstains are ignored, and an estimator that now
    certifies without classifier stages (they were not drawn) gives an abstention at
    the classifier.
    """
    return _decide(evidence, params, method="dual", claim="majority")


def decide_dual_predict(evidence: Evidence, params: DualPredictParams) -> CertifyResult:
    """Dual smoothing's abstaining prediction from saved counts (:class:`DualPredictParams`).

    Returns:
        The result, method ``"dual-predict"``, claim ``"prediction"``, radius 0, with
        :class:`DualDetails` (radii 0).
    """
    return _decide(evidence, params, method="dual-predict", claim="prediction")


def _decide(evidence: Evidence, params: AnyDualParams, *, method: str, claim: str) -> CertifyResult:
    facts = require_facts(evidence, DualFacts, method=method)
    _check_order(evidence, params)
    stage_one, j = _stage_one(evidence, params)
    bounded = _LAYOUTS[type(params)]
    spent = with_alpha(
        evidence,
        {bounded[0][-1]: params.alpha_sigma, bounded[1][-1]: params.alpha_classifier},
    )
    common: dict[str, Any] = {
        "method": method,
        "claim": claim,
        "alpha": params.alpha,
        "seed": evidence.seed,
        "seconds": evidence.seconds,
        "params": params,
        "evidence": spent,
    }
    details: dict[str, Any] = {
        "sigma_index": j,
        "sigma": params.sigmas[j],
        "p_lower_sigma": stage_one.p_lower,
        "radius_sigma": stage_one.radius,
    }
    if stage_one.abstained:
        # classifier stages are only there when the evidence is re-decided at a smaller
        # alpha (recertify) than it was drawn at: they are not needed to abstain
        return CertifyResult(
            prediction=None,
            abstained=True,
            radius=0.0,
            p_lower=0.0,
            details=DualDetails(
                **details, radius_classifier=0.0, limited_by=None, abstained_at="sigma"
            ),
            **common,
        )
    sub = _renamed(evidence, bounded[1], params, GaussianFacts(num_classes=facts.num_classes))
    if not sub.stages:
        # drawn at a smaller alpha_1, where the estimator abstained, and re-decided at a
        # larger one (recertify): no classifier samples, no certificate
        stage_two = None
    else:
        stage_two = _decide_cohen(sub, params.classifier_params(j))
    if stage_two is None or stage_two.abstained:
        return CertifyResult(
            prediction=None,
            abstained=True,
            radius=0.0,
            p_lower=0.0 if stage_two is None else stage_two.p_lower,
            details=DualDetails(
                **details, radius_classifier=0.0, limited_by=None, abstained_at="classifier"
            ),
            **common,
        )
    radius, limited = dual_radius(stage_one.radius, stage_two.radius)
    assert math.isfinite(float(radius))
    return CertifyResult(
        prediction=stage_two.prediction,
        abstained=False,
        radius=float(radius),
        p_lower=stage_two.p_lower,
        details=DualDetails(
            **details,
            radius_classifier=stage_two.radius,
            limited_by=str(limited) if claim == "majority" else None,  # PREDICT: no radius
            abstained_at=None,
        ),
        **common,
    )

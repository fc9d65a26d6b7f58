"""Gaussian certificates with a chosen confidence bound and multi-class combiner (pure).

Methods ``cohen-combined`` (hard votes: the evidence of a ``cohen`` run) and
``soft-combined`` (mean [0, 1] scores: the evidence of a ``soft`` run). They sample
exactly what ``cohen`` and ``soft`` sample (a selection stage of ``n0`` samples and an
estimation stage of ``n`` fresh samples), so ``smoothcert recertify --bound ...
--combiner ...`` can re-decide saved evidence with every (bound, combiner) pair and
every certificate compares on the SAME samples.

Decision (DESIGN.md, "Soft scores, Lipschitz-aware radius, tighter bounds"):

* Selection (soundness rule 1): the class A is the top count (``cohen-combined``) or
  the top score sum (``soft-combined``) of the SELECTION stage, ties to the lowest
  index; CPM's buckets are chosen from the selection stage's class counts
  (:func:`~smoothcert.stats.combiners.cpm_buckets`). The estimation stage only bounds.
* Bounds: :func:`~smoothcert.stats.combiners.combine` on the estimation stage with
  ``bound`` (:data:`COMBINED_BOUNDS`) and ``combiner`` (:data:`COMBINERS`) at the whole
  certificate's alpha. Votes are [0, 1] scores too (score sum = count, sum of squares
  = count), so ``hoeffding`` and ``bernstein`` apply to hard votes; ``cp``
  (Clopper-Pearson) needs Bernoulli samples, so only to votes.
* Radius: ``mono`` gives ``p_lower`` on A and ``p_upper = 1 - p_lower``; the radius is
  ``sigma Phi^-1(p_lower)`` (Cohen et al. 2019, arXiv 1902.02918, Theorem 1), abstain if
  ``p_lower <= 1/2``. ``top2``, ``cpm`` and ``bonferroni`` bound the runner-up too; the
  radius is ``sigma/2 (Phi^-1(p_lower) - Phi^-1(p_upper))`` (Theorem 1, general form),
  abstain if ``p_lower <= p_upper``. For soft scores both hold because
  ``Phi^-1(E[s_c(f(x + e))])`` is ``1/sigma``-Lipschitz for any [0, 1] score (Salman et
  al. 2019, arXiv 1906.04584, Lemma 2) and the scores of all classes sum to at most 1.

* ``betting`` (Waudby-Smith & Ramdas, arXiv 2010.09686; the order-invariant mixture of
  constant bets, :func:`~smoothcert.stats.bounded.betting_mixture_lower`) with the
  combiners ``mono`` and ``top2`` only: on hard votes from the counts (exact), on soft
  scores from the per-class score histograms a ``soft`` run keeps with
  ``score_bound="betting"`` (:func:`~smoothcert.decisions.soft.histogram_source`:
  lower bounds at the bins' lower edges, upper bounds at their upper edges; ``hardmax``
  from its exact sums). ``top2`` splits alpha in two halves (the lower half rounded
  down), the runner-up bound is the maximum of the other classes' betting upper bounds
  (as ``combine_top2``), capped at ``1 - p_lower``; ``mono`` gives ``p_upper = 1 -
  p_lower``. ``cpm`` needs the per-sample SUM of a bucket's scores and ``bonferroni``
  is not offered (:data:`BETTING_COMBINERS`).

With ``bound="cp", combiner="mono"`` the decision equals ``cohen``'s on the same counts
(same p_lower, same radius); only the method name and the recorded ``p_upper`` differ.

Example:
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> from smoothcert.decisions.cohen import GaussianFacts
    >>> ev = Evidence((StageEvidence("selection", n=10, alpha=0.0, counts=(0, 10, 0)),
    ...                StageEvidence("estimation", n=1000, alpha=0.0, counts=(10, 980, 10))),
    ...               GaussianFacts(num_classes=3), seed=0)
    >>> p = CombinedParams(sigma=0.5, n0=10, n=1000, alpha=0.001, bound="cp", combiner="top2")
    >>> res = decide_cohen_combined(ev, p)
    >>> res.prediction, round(res.p_lower, 4), round(res.p_upper, 4), round(res.radius, 4)
    (1, 0.961, 0.0251, 0.9302)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from smoothcert._validation import (
    check_choice,
    check_positive,
)
from smoothcert.certificates.gaussian import gaussian_radius, gaussian_radius_top2
from smoothcert.decisions._common import (
    check_class,
    check_gaussian_sampling,
    check_num_classes,
    check_variance_samples,
    require_facts,
    require_stage,
    with_alpha,
)
from smoothcert.decisions.cohen import GaussianFacts
from smoothcert.decisions.soft import SCORE_MAPS, histogram_source
from smoothcert.errors import InvalidParameterError
from smoothcert.records import (
    CertifyResult,
    Details,
    Evidence,
    Payload,
    StageEvidence,
    register_payload,
)
from smoothcert.stats.bounded import betting_mixture_lower, betting_mixture_upper
from smoothcert.stats.combiners import COMBINERS, combine, cpm_buckets

COMBINED_BOUNDS: tuple[str, ...] = ("cp", "hoeffding", "bernstein", "betting")
"""Bounds of ``cohen-combined``: Clopper-Pearson on votes, or the [0, 1] mean bounds."""

SOFT_COMBINED_BOUNDS: tuple[str, ...] = ("hoeffding", "bernstein", "betting")
"""Bounds of ``soft-combined``: bounds on a mean [0, 1] score (no CP); ``betting`` needs
the per-class score histograms of a ``soft`` run with ``score_bound="betting"``."""

BETTING_COMBINERS: tuple[str, ...] = ("mono", "top2")
"""Combiners offered with ``bound="betting"``."""

BETTING_NOTE = (
    "betting bounds each class's mean from its own histogram (mono, top2); cpm needs the "
    "per-sample sum of a bucket's scores, which per-class histograms do not give, and "
    "bonferroni is not offered with betting"
)
"""Why ``bound="betting"`` takes the combiners :data:`BETTING_COMBINERS` only."""


def _check_bound(value: Any, choices: tuple[str, ...]) -> str:
    return check_choice(value, name="bound", choices=choices)


def _check_common(params: Any) -> None:
    check_gaussian_sampling(params)
    check_choice(params.combiner, name="combiner", choices=COMBINERS)
    check_variance_samples(params.n, params.bound, name="bound")
    if params.bound == "betting" and params.combiner not in BETTING_COMBINERS:
        raise InvalidParameterError(
            f"combiner = {params.combiner!r} is invalid with bound = 'betting': {BETTING_NOTE}; "
            f"valid values: {', '.join(BETTING_COMBINERS)}"
        )


@register_payload
@dataclass(frozen=True, kw_only=True)
class CombinedParams(Payload):
    """Parameters of ``cohen-combined`` (hard votes, any bound and combiner).

    Attributes:
        sigma: noise standard deviation, > 0, in the units of the input tensor.
        n0: selection samples, >= 1.
        n: estimation samples, >= 1 (>= 2 with ``bound="bernstein"``).
        alpha: one-sided failure probability of the whole certificate, in (0, 1).
        bound: one of :data:`COMBINED_BOUNDS`.
        combiner: one of :data:`~smoothcert.stats.combiners.COMBINERS`.

    Raises:
        InvalidParameterError: on a value out of range or an unknown name, or a combiner
            ``betting`` does not take (:data:`BETTING_COMBINERS`), naming the value and
            the valid ones.
    """

    kind = "gaussian_combined"
    sigma: float
    n0: int
    n: int
    alpha: float
    bound: str = "cp"
    combiner: str = "top2"

    def __post_init__(self) -> None:
        _check_bound(self.bound, COMBINED_BOUNDS)
        _check_common(self)

    def forward_samples(self) -> int:
        """Noisy samples (forward passes) per input: ``n0 + n``."""
        return self.n0 + self.n


@register_payload
@dataclass(frozen=True, kw_only=True)
class SoftCombinedParams(Payload):
    """Parameters of ``soft-combined`` (mean scores, any bound and combiner).

    Attributes:
        sigma: noise standard deviation, > 0, in the units of the input tensor.
        n0: selection samples, >= 1.
        n: estimation samples, >= 1 (>= 2 with ``bound="bernstein"``).
        alpha: one-sided failure probability of the whole certificate, in (0, 1).
        score_map: one of :data:`~smoothcert.decisions.soft.SCORE_MAPS`.
        temperature: ``t > 0``, the map is applied to ``t * logits``.
        bound: one of :data:`SOFT_COMBINED_BOUNDS`.
        combiner: one of :data:`~smoothcert.stats.combiners.COMBINERS`.

    Raises:
        InvalidParameterError: as :class:`CombinedParams`.
    """

    kind = "soft_combined"
    sigma: float
    n0: int
    n: int
    alpha: float
    score_map: str = "softmax"
    temperature: float = 1.0
    bound: str = "bernstein"
    combiner: str = "top2"

    def __post_init__(self) -> None:
        _check_bound(self.bound, SOFT_COMBINED_BOUNDS)
        _check_common(self)
        check_choice(self.score_map, name="score_map", choices=SCORE_MAPS)
        object.__setattr__(
            self, "temperature", check_positive(self.temperature, name="temperature")
        )

    def forward_samples(self) -> int:
        """Noisy samples (forward passes) per input: ``n0 + n``."""
        return self.n0 + self.n


@register_payload
@dataclass(frozen=True, kw_only=True)
class CombinedDetails(Details):
    """What the combined decision used.

    Attributes:
        bound: the confidence bound (:data:`COMBINED_BOUNDS`).
        combiner: the combiner (:data:`~smoothcert.stats.combiners.COMBINERS`).
        buckets: CPM: the number of buckets of the other classes (chosen on the selection
            stage); 0 for the other combiners.
    """

    kind = "combined_details"
    bound: str
    combiner: str
    buckets: int = 0


def _scores(stage: StageEvidence, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if stage.score_sums is None or stage.score_sq_sums is None:
        raise InvalidParameterError(
            f"the {stage.role} stage has no score sums; valid: the evidence of a 'soft' run "
            "(score_sums and score_sq_sums per class)"
        )
    sums = np.asarray(stage.score_sums, dtype=np.float64)
    sq = np.asarray(stage.score_sq_sums, dtype=np.float64)
    if sums.shape != (num_classes,) or sq.shape != (num_classes,):
        raise InvalidParameterError(
            f"the {stage.role} stage has {sums.size} score sums and {sq.size} sums of squares; "
            f"valid: num_classes = {num_classes} of each"
        )
    return sums, sq


def _betting_pair(
    stage: StageEvidence,
    top: int,
    params: CombinedParams | SoftCombinedParams,
    num_classes: int,
    *,
    soft: bool,
) -> tuple[float, float]:
    """``(p_lower, p_upper)`` of the ``mono`` or ``top2`` combiner with betting bounds."""
    if soft:
        assert isinstance(params, SoftCombinedParams)
        low_values, up_values, counts = histogram_source(stage, num_classes, params.score_map)
    else:
        k = np.asarray(stage.counts, dtype=np.int64)
        low_values = up_values = np.array([0.0, 1.0])  # votes: exact
        counts = np.stack([stage.n - k, k], axis=1)
    if params.combiner == "mono":
        lower = float(betting_mixture_lower(low_values, counts=counts[top], alpha=params.alpha))
        return lower, _one_minus_up(lower)
    half = float(np.nextafter(params.alpha / 2, 0.0))
    lower = float(betting_mixture_lower(low_values, counts=counts[top], alpha=half))
    rest = [c for c in range(num_classes) if c != top]
    ups = np.atleast_1d(betting_mixture_upper(up_values, counts=counts[rest], alpha=half))
    return lower, min(float(ups.max()), _one_minus_up(lower))


def _one_minus_up(x: float) -> float:
    """``1 - x`` rounded up (a float ``>= 1 - x`` exactly), ``x`` in [0, 1]."""
    y = 1.0 - x
    return float(np.nextafter(y, 1.0)) if 1.0 - y > x else y


def _decide(
    evidence: Evidence,
    params: CombinedParams | SoftCombinedParams,
    *,
    method: str,
    soft: bool,
) -> CertifyResult:
    facts = require_facts(evidence, GaussianFacts, method=method)
    selection = require_stage(evidence, "selection", n=params.n0, method=method)
    estimation = require_stage(evidence, "estimation", n=params.n, method=method)
    check_num_classes((selection, estimation), facts.num_classes)
    sel_counts = np.asarray(selection.counts, dtype=np.int64)
    if soft:
        sel_sums, _ = _scores(selection, facts.num_classes)
        top = int(np.argmax(sel_sums))
        sums, sq = _scores(estimation, facts.num_classes)
    else:
        top = int(np.argmax(sel_counts))
        counts = np.asarray(estimation.counts, dtype=np.int64)
        sums = sq = counts.astype(np.float64)  # votes: x^2 = x
    check_class(top, facts.num_classes, name="selected class")
    if params.bound == "betting":
        lo, up = _betting_pair(estimation, top, params, facts.num_classes, soft=soft)
    elif params.bound == "cp":
        lo, up = combine(
            counts,
            top=top,
            alpha=params.alpha,
            combiner=params.combiner,
            selection_counts=sel_counts,
            n=params.n,
        )
    else:
        lo, up = combine(
            sums,
            top=top,
            alpha=params.alpha,
            combiner=params.combiner,
            selection_counts=sel_counts,
            bound=params.bound,
            n=params.n,
            sums_of_squares=sq if params.bound == "bernstein" else None,
        )
    p_lower, p_upper = float(lo), float(up)
    if params.combiner == "mono":
        radius = float(gaussian_radius(p_lower, sigma=params.sigma))
        certified = p_lower > 0.5
    else:
        radius = float(gaussian_radius_top2(p_lower, p_upper, sigma=params.sigma))
        certified = p_lower > p_upper
    certified = certified and radius > 0 and math.isfinite(radius)
    buckets = 0
    if params.combiner == "cpm":
        buckets = int(cpm_buckets(sel_counts, top=top).max()) + 1
    return CertifyResult(
        method=method,
        claim="majority",
        prediction=top if certified else None,
        abstained=not certified,
        radius=radius if certified else 0.0,
        p_lower=p_lower,
        p_upper=p_upper,
        alpha=params.alpha,
        seed=evidence.seed,
        seconds=evidence.seconds,
        params=params,
        evidence=with_alpha(evidence, {"estimation": params.alpha}),
        details=CombinedDetails(bound=params.bound, combiner=params.combiner, buckets=buckets),
    )


def decide_cohen_combined(evidence: Evidence, params: CombinedParams) -> CertifyResult:
    """The Gaussian certificate of hard votes with the named bound and combiner.

    Args:
        evidence: a selection stage of ``params.n0`` samples and an estimation stage of
            ``params.n`` samples, with class counts (a ``cohen`` run's evidence).
        params: the :class:`CombinedParams`.

    Returns:
        The result, method ``"cohen-combined"``, claim ``"majority"``, with ``p_upper``
        and :class:`CombinedDetails`.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    return _decide(evidence, params, method="cohen-combined", soft=False)


def decide_soft_combined(evidence: Evidence, params: SoftCombinedParams) -> CertifyResult:
    """The soft-score Gaussian certificate with the named bound and combiner.

    Args:
        evidence: a selection and an estimation stage with class counts, score sums and
            sums of squares (a ``soft`` run's evidence).
        params: the :class:`SoftCombinedParams`.

    Returns:
        The result, method ``"soft-combined"``, as :func:`decide_cohen_combined`.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    return _decide(evidence, params, method="soft-combined", soft=True)

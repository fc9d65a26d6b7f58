"""Soft-score Gaussian smoothing: certify the mean of a [0, 1] score (method ``soft``).

Pure: evidence (per-class score sums and sums of squares of a selection and an
estimation stage) and :class:`SoftParams` -> :class:`~smoothcert.records.CertifyResult`.

The smoothed soft classifier is ``G(x) = argmax_c E[s_c(f(x + e))]``,
``e ~ N(0, sigma^2 I)``, where ``s`` maps the model's logits to the simplex
(:data:`SCORE_MAPS`: ``hardmax`` = one-hot of the argmax, i.e. votes; ``softmax`` or
``sparsemax`` of ``temperature * logits``). For ANY function ``h`` with values in
[0, 1], ``x -> Phi^-1(E[h(x + e)])`` is ``1/sigma``-Lipschitz (Salman et al. 2019,
arXiv 1906.04584, Lemma 2; Levine, Singla & Feizi 2020, arXiv 1910.09651): so if
``p_lower <= E[s_A(f(x + e))]`` and ``p_lower > 1/2``, then ``E[s_A] > 1/2`` on the ball
of radius ``sigma Phi^-1(p_lower)``, and since the scores of all classes sum to 1, no
other class can reach 1/2 there: ``G`` returns A on that ball. This is Cohen's
certificate with a bound on a mean score in place of the binomial bound.

* Selection (soundness rule 1): A is the class with the largest score sum of the
  SELECTION stage (for ``hardmax`` that is the top count; ties: the lowest index). The
  estimation stage is never used to choose.
* Estimation: the ``n`` fresh samples give ``mean = sum_A / n`` and the UNBIASED sample
  variance ``V = (sq_sum_A - sum_A * mean) / (n - 1)``; ``p_lower`` is a one-sided lower
  confidence bound on ``E[s_A]`` at ``alpha`` (:data:`SOFT_SCORE_BOUNDS`):
  ``hoeffding`` (:func:`~smoothcert.stats.bounded.hoeffding_lower`) or ``bernstein``
  (Maurer-Pontil empirical Bernstein,
  :func:`~smoothcert.stats.bounded.empirical_bernstein_lower`).
* Abstain if ``p_lower <= 1/2``; else ``radius = sigma Phi^-1(p_lower)``, in the units
  of the tensor the noise is added to.
* Top-two (``soft-top2``, :func:`decide_soft_top2`): ``p_lower`` at alpha/2 and
  ``p_upper = min(max_{c != A} upper_c, 1 - p_lower)`` with each ``upper_c`` a one-sided
  upper bound on ``E[s_c]`` at alpha/2; ``radius = sigma/2 (Phi^-1(p_lower) -
  Phi^-1(p_upper))``, abstain if ``p_lower <= p_upper``. Valid: by the same lemma every
  ``Phi^-1(E[s_c])`` moves by at most ``r / sigma`` at distance ``r``; given A (chosen on
  independent samples) the true runner-up R is one fixed class, and the maximum over
  ``c != A`` dominates R's own bound, so no multiplicity correction is needed (as
  Cohen's top-two, DESIGN.md); the cap holds because the scores sum to 1.

* ``betting`` (Waudby-Smith & Ramdas, arXiv 2010.09686): the order-invariant mixture
  of constant bets (:func:`~smoothcert.stats.bounded.betting_mixture_lower`), which
  depends on the multiset of scores only, so it is computed from the per-class score
  HISTOGRAMS that the sampler keeps when ``score_bound="betting"``
  (:class:`~smoothcert.records.ScoreHistograms`): lower bounds at each bin's lower
  edge, upper bounds at its upper edge (:func:`stage_betting_lower`,
  :func:`stage_betting_upper`; sound because rounded-down scores are i.i.d. and never
  above the true ones). ``hardmax`` scores are exact 0/1 votes, read from the score
  sums (no histogram needed). The predictable plug-in bets of
  :func:`~smoothcert.stats.bounded.betting_lower` would need the ordered sequence,
  which no record keeps.

Numerics (DESIGN.md rule 4, all conservative): the mean is lowered by 4 ulp before it
is bounded (the float64 sums and the division round), the variance is raised by a
bound on its rounding error (``4 eps (sq_sum + sum * mean) / (n - 1)``), and the
engine records each score rounded down to a multiple of ``2^-31``
(:mod:`smoothcert.sampling.scores`): the bound is then on the mean of the rounded
score, which is at most the true smoothed score.

Example:
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> from smoothcert.decisions.cohen import GaussianFacts
    >>> sel = StageEvidence("selection", n=10, alpha=0.0, counts=(1, 9),
    ...                     score_sums=(1.5, 8.5), score_sq_sums=(0.5, 7.5))
    >>> est = StageEvidence("estimation", n=1000, alpha=0.001, counts=(5, 995),
    ...                     score_sums=(100.0, 900.0), score_sq_sums=(12.0, 812.0))
    >>> ev = Evidence((sel, est), GaussianFacts(num_classes=2), seed=0)
    >>> res = decide_soft(ev, SoftParams(sigma=0.5, n0=10, n=1000, alpha=0.001))
    >>> res.prediction, round(res.p_lower, 4), round(res.radius, 4)
    (1, 0.8767, 0.5794)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    estimation_result,
    require_facts,
    require_stage,
)
from smoothcert.decisions.cohen import GaussianFacts
from smoothcert.errors import InvalidParameterError
from smoothcert.records import (
    CertifyResult,
    Details,
    Evidence,
    Payload,
    StageEvidence,
    register_payload,
)
from smoothcert.stats.bounded import (
    HISTOGRAM_BINS,
    betting_mixture_lower,
    betting_mixture_upper,
    empirical_bernstein_lower,
    empirical_bernstein_upper,
    histogram_edges,
    hoeffding_lower,
    hoeffding_upper,
)

SCORE_MAPS = ("hardmax", "softmax", "sparsemax")
"""Score maps from logits to the simplex: votes, ``softmax(t z)``, ``sparsemax(t z)``."""

SOFT_BOUNDS = ("hoeffding", "bernstein")
"""Lower bounds on a mean score that need only sums (``hoeffding``) and sums of squares
(``bernstein``); :func:`soft_lower` and :func:`soft_upper` (also used by ``lipschitz``)."""

SOFT_SCORE_BOUNDS = (*SOFT_BOUNDS, "betting")
"""``score_bound`` values of ``soft``: :data:`SOFT_BOUNDS`, or ``betting`` on per-class score
histograms (``hardmax``: on the exact votes of the sums)."""

_EPS = float(np.finfo(np.float64).eps)


def histogram_bins_for(score_map: str, bound: str) -> int | None:
    """Bins of the score histograms an estimation stage must keep, or None.

    ``betting`` needs per-class histograms (:data:`~smoothcert.stats.bounded.HISTOGRAM_BINS`
    bins), except for ``hardmax`` whose exact 0/1 votes are the score sums; the other
    bounds need none. The selection stage never needs them (it only picks the class).

    Example:
        >>> histogram_bins_for("softmax", "betting"), histogram_bins_for("hardmax", "betting")
        (4096, None)
    """
    return HISTOGRAM_BINS if bound == "betting" and score_map != "hardmax" else None


@register_payload
@dataclass(frozen=True, kw_only=True)
class SoftParams(Payload):
    """Parameters of soft-score Gaussian smoothing (``soft``).

    Attributes:
        sigma: noise standard deviation, > 0, in the units of the input tensor.
        n0: selection samples, >= 1.
        n: estimation samples, >= 1 (>= 2 with ``score_bound="bernstein"``).
        alpha: one-sided failure probability of the certificate, in (0, 1).
        score_map: one of :data:`SCORE_MAPS`.
        temperature: ``t > 0``: the map is applied to ``t * logits`` (unused by
            ``hardmax``). Fixed before sampling: choosing it per input on the
            estimation samples would break soundness rule 1.
        score_bound: one of :data:`SOFT_SCORE_BOUNDS` (the name differs from the sequential
            methods' ``bound``, a confidence sequence, so the CLI flags do not clash:
            ``--score-bound``). ``betting`` makes the sampler keep per-class score
            histograms (:data:`~smoothcert.stats.bounded.HISTOGRAM_BINS` bins; not for
            ``hardmax``, whose sums are exact votes); no new field, so the config hash of
            runs with the other bounds is unchanged.

    Raises:
        InvalidParameterError: on a value out of range or an unknown name, naming the
            value and the valid ones.
    """

    kind = "soft"
    sigma: float
    n0: int
    n: int
    alpha: float
    score_map: str = "softmax"
    temperature: float = 1.0
    score_bound: str = "bernstein"

    def __post_init__(self) -> None:
        check_gaussian_sampling(self)
        check_choice(self.score_map, name="score_map", choices=SCORE_MAPS)
        object.__setattr__(
            self, "temperature", check_positive(self.temperature, name="temperature")
        )
        check_choice(self.score_bound, name="score_bound", choices=SOFT_SCORE_BOUNDS)
        check_variance_samples(self.n, self.score_bound, name="score_bound")

    def forward_samples(self) -> int:
        """Noisy samples (forward passes) per input: ``n0 + n``."""
        return self.n0 + self.n


@register_payload
@dataclass(frozen=True, kw_only=True)
class SoftDetails(Details):
    """What the soft decision measured on the estimation stage for the selected class.

    Attributes:
        mean: the sample mean of the selected class's score.
        variance: the unbiased sample variance (used by ``bernstein``; recorded for both).
        score_bound: the bound used (:data:`SOFT_SCORE_BOUNDS`).
    """

    kind = "soft_details"
    mean: float
    variance: float
    score_bound: str


def _score_sums(stage: StageEvidence, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
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


def select_class(evidence: Evidence, params: SoftParams) -> int:
    """The class A: the top score sum of the SELECTION stage (ties: the lowest index).

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    facts = require_facts(evidence, GaussianFacts, method="soft")
    selection = require_stage(evidence, "selection", n=params.n0, method="soft")
    check_num_classes((selection,), facts.num_classes)
    sums, _ = _score_sums(selection, facts.num_classes)
    top = int(np.argmax(sums))
    check_class(top, facts.num_classes, name="selected class")
    return top


def mean_and_variance(score_sum: float, sq_sum: float, n: int) -> tuple[float, float]:
    """The (rounded-down) sample mean and the (rounded-up) unbiased sample variance.

    ``mean = score_sum / n`` lowered by 4 ulp; ``V = (sq_sum - score_sum * mean) /
    (n - 1)`` raised by ``4 eps (sq_sum + score_sum * mean) / (n - 1)`` (a bound on its
    float64 rounding error) and clipped at 0; ``V = 0`` when ``n = 1``.

    Example:
        >>> m, v = mean_and_variance(3.0, 5.0, 4)
        >>> round(m, 12), round(v, 12)
        (0.75, 0.916666666667)
    """
    raw = score_sum / n
    mean = min(max(raw * (1.0 - 4 * _EPS), 0.0), 1.0)
    if n < 2:
        return mean, 0.0
    cross = score_sum * raw
    variance = (sq_sum - cross) / (n - 1)
    slack = 4 * _EPS * (sq_sum + cross) / (n - 1)
    return mean, max(variance, 0.0) + slack


def histogram_source(
    stage: StageEvidence, num_classes: int, score_map: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the betting bounds read: values for lower bounds, values for upper bounds, counts.

    For ``hardmax`` the scores are exact 0/1 votes: values ``[0, 1]`` (both bounds) and
    counts ``(num_classes, 2)`` from the score sums (each an exact integer). Otherwise the
    stage's :class:`~smoothcert.records.ScoreHistograms`: lower and upper bin edges
    (:func:`~smoothcert.stats.bounded.histogram_edges`) and the dense counts.

    Raises:
        InvalidParameterError: if the stage has no histograms (naming what is missing),
            or they do not fit ``num_classes``.
    """
    if score_map == "hardmax":
        sums, _ = _score_sums(stage, num_classes)
        votes = np.rint(sums)
        if np.any(np.abs(sums - votes) > 1e-6) or votes.sum() != stage.n:
            raise InvalidParameterError(
                f"the {stage.role} stage's hardmax score sums {tuple(sums)} are invalid; "
                f"valid: integer vote counts summing to n = {stage.n}"
            )
        k = votes.astype(np.int64)
        values = np.array([0.0, 1.0])
        return values, values, np.stack([stage.n - k, k], axis=1)
    hist = stage.score_histograms
    if hist is None:
        raise InvalidParameterError(
            f"the {stage.role} stage has no score histograms, which the betting bound needs; "
            "valid: the evidence of a soft run certified with score_bound = 'betting' "
            "(--score-bound betting), or a hardmax run; or use bound hoeffding or bernstein"
        )
    counts = hist.dense()
    if counts.shape[0] != num_classes:
        raise InvalidParameterError(
            f"the {stage.role} stage has {counts.shape[0]} score histograms; valid: "
            f"num_classes = {num_classes}"
        )
    return histogram_edges(hist.bins), histogram_edges(hist.bins, upper=True), counts


def stage_betting_lower(
    stage: StageEvidence, cls: int, *, num_classes: int, score_map: str, alpha: float
) -> float:
    """Betting lower bound on class ``cls``'s mean score from a stage's histograms.

    :func:`~smoothcert.stats.bounded.betting_mixture_lower` at the lower bin edges
    (:func:`histogram_source`).

    Raises:
        InvalidParameterError: as :func:`histogram_source`.
    """
    lower_values, _, counts = histogram_source(stage, num_classes, score_map)
    return float(betting_mixture_lower(lower_values, counts=counts[cls], alpha=alpha))


def stage_betting_upper(
    stage: StageEvidence, classes: list[int], *, num_classes: int, score_map: str, alpha: float
) -> np.ndarray:
    """Betting upper bounds on the mean scores of ``classes`` (one call, vectorised).

    :func:`~smoothcert.stats.bounded.betting_mixture_upper` at the upper bin edges.

    Raises:
        InvalidParameterError: as :func:`histogram_source`.
    """
    _, upper_values, counts = histogram_source(stage, num_classes, score_map)
    out = betting_mixture_upper(upper_values, counts=counts[classes], alpha=alpha)
    return np.atleast_1d(np.asarray(out, dtype=np.float64))


def soft_upper(score_sum: float, sq_sum: float, *, n: int, alpha: float, score_bound: str) -> float:
    """One-sided upper bound on a class's mean score from its sums (mean raised by 4 ulp).

    Raises:
        InvalidParameterError: on an unknown bound name (``betting`` needs histograms:
            :func:`stage_betting_upper`) or bad arguments.
    """
    check_choice(score_bound, name="score_bound", choices=SOFT_BOUNDS)
    raw = score_sum / n
    mean = min(max(raw * (1.0 + 4 * _EPS), 0.0), 1.0)
    if score_bound == "hoeffding":
        return float(hoeffding_upper(mean, n=n, alpha=alpha))
    _, variance = mean_and_variance(score_sum, sq_sum, n)
    return float(empirical_bernstein_upper(mean, variance, n=n, alpha=alpha))


def soft_lower(mean: float, variance: float, *, n: int, alpha: float, score_bound: str) -> float:
    """The one-sided lower bound on a mean score with the named bound (from sums).

    Raises:
        InvalidParameterError: on an unknown bound name (``betting`` needs histograms:
            :func:`stage_betting_lower`) or bad arguments.
    """
    check_choice(score_bound, name="score_bound", choices=SOFT_BOUNDS)
    if score_bound == "hoeffding":
        return float(hoeffding_lower(mean, n=n, alpha=alpha))
    return float(empirical_bernstein_lower(mean, variance, n=n, alpha=alpha))


def decide_soft(evidence: Evidence, params: SoftParams) -> CertifyResult:
    """Soft-score CERTIFY from saved score sums (see the module docstring).

    Args:
        evidence: a selection stage of ``params.n0`` samples and an estimation stage of
            ``params.n`` samples, with class counts, score sums and sums of squares.
        params: the :class:`SoftParams`.

    Returns:
        The result, method ``"soft"``, claim ``"majority"``, with :class:`SoftDetails`.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    top = select_class(evidence, params)
    facts = require_facts(evidence, GaussianFacts, method="soft")
    estimation = require_stage(evidence, "estimation", n=params.n, method="soft")
    check_num_classes((estimation,), facts.num_classes)
    sums, sq = _score_sums(estimation, facts.num_classes)
    mean, variance = mean_and_variance(float(sums[top]), float(sq[top]), params.n)
    if params.score_bound == "betting":
        p_lower = stage_betting_lower(
            estimation,
            top,
            num_classes=facts.num_classes,
            score_map=params.score_map,
            alpha=params.alpha,
        )
    else:
        p_lower = soft_lower(
            mean, variance, n=params.n, alpha=params.alpha, score_bound=params.score_bound
        )
    radius = float(gaussian_radius(p_lower, sigma=params.sigma))
    certified = p_lower > 0.5 and radius > 0 and math.isfinite(radius)
    return estimation_result(
        evidence,
        params,
        method="soft",
        top=top,
        certified=certified,
        radius=radius,
        p_lower=p_lower,
        details=SoftDetails(mean=mean, variance=variance, score_bound=params.score_bound),
    )


def decide_soft_top2(evidence: Evidence, params: SoftParams) -> CertifyResult:
    """The soft top-two certificate from saved score sums (see the module docstring).

    Returns:
        The result, method ``"soft-top2"``, claim ``"majority"``, with ``p_upper`` (the
        runner-up's bound) and :class:`SoftDetails` of the selected class.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    top = select_class(evidence, params)
    facts = require_facts(evidence, GaussianFacts, method="soft-top2")
    estimation = require_stage(evidence, "estimation", n=params.n, method="soft-top2")
    check_num_classes((estimation,), facts.num_classes)
    sums, sq = _score_sums(estimation, facts.num_classes)
    half = params.alpha / 2
    mean, variance = mean_and_variance(float(sums[top]), float(sq[top]), params.n)
    rest = [c for c in range(facts.num_classes) if c != top]
    if params.score_bound == "betting":
        nc, score_map = facts.num_classes, params.score_map
        p_lower = stage_betting_lower(
            estimation, top, num_classes=nc, score_map=score_map, alpha=half
        )
        ups = stage_betting_upper(estimation, rest, num_classes=nc, score_map=score_map, alpha=half)
        others = float(ups.max())
    else:
        p_lower = soft_lower(mean, variance, n=params.n, alpha=half, score_bound=params.score_bound)
        others = max(
            soft_upper(
                float(sums[c]), float(sq[c]), n=params.n, alpha=half, score_bound=params.score_bound
            )
            for c in rest
        )
    p_upper = min(others, 1.0 - p_lower)
    radius = float(gaussian_radius_top2(p_lower, p_upper, sigma=params.sigma))
    certified = p_lower > p_upper and radius > 0 and math.isfinite(radius)
    return estimation_result(
        evidence,
        params,
        method="soft-top2",
        top=top,
        certified=certified,
        radius=radius,
        p_lower=p_lower,
        p_upper=p_upper,
        details=SoftDetails(mean=mean, variance=variance, score_bound=params.score_bound),
    )

"""Lipschitz-aware soft smoothing (method ``lipschitz``): a larger radius from a certified L.

Pure: evidence (per-class score sums of a selection and an estimation stage, as for
``soft``) and :class:`LipschitzParams` -> :class:`~smoothcert.records.CertifyResult`.

The score is ``s(x) = softmax(t z(x))`` where the logits ``z`` are ``L_z``-Lipschitz in
L2 with a CERTIFIED ``L_z = logit_lipschitz`` (a 1-Lipschitz network such as the bundled
``digits_lipschitz``, or :func:`smoothcert.models.lipschitz_upper_bound`; never an
estimate). Then each class score is ``L_s``-Lipschitz with
``L_s = (sqrt(2)/4) t L_z`` (:func:`~smoothcert.certificates.softmax_score_lipschitz`,
proof there), and the smoothed score ``S_A(x) = E s_A(x + e)``, ``e ~ N(0, sigma^2 I)``,
moves at most at the rate ``gamma(S_A)`` of a smoothed ramp of slope ``L_s``
(:mod:`smoothcert.certificates.lipschitz`). So with ``p_lower <= S_A(x)``:

* Selection (soundness rule 1): A is the class with the largest score sum of the
  SELECTION stage (:func:`smoothcert.decisions.soft.select_class`); the estimation
  stage is never used to choose.
* Estimation: ``p_lower`` is the Hoeffding, empirical-Bernstein or betting lower bound
  at ``alpha`` on A's mean score from the ``n`` fresh samples (the code of
  :func:`~smoothcert.decisions.soft.decide_soft`, with its rounding allowances; betting
  reads the score histograms the run keeps for it).
* Abstain if ``p_lower <= 1/2``; else ``radius = lipschitz_radius(p_lower, sigma=sigma,
  lipschitz=L_s)`` (form ``"integral"``, the proven default): ``S_A`` stays above 1/2
  on that ball and, as the scores sum to 1, A stays the top class. The radius is never
  below Cohen's ``sigma Phi^-1(p_lower)`` for the same ``p_lower`` (up to a few ulps of
  rounding allowance): ``gamma(q)`` is at most ``phi(Phi^-1(q)) / sigma``, the rate of any
  [0, 1] function, and tends to Cohen's as ``L_s -> inf``.

The certified ``logit_lipschitz`` is a PARAMETER, so it is hashed with the run's config
and recorded in every result; the torch half (:mod:`smoothcert.methods.lipschitz`)
refuses a value below the model's own certified constant.

Example:
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> from smoothcert.decisions.cohen import GaussianFacts
    >>> sel = StageEvidence("selection", n=10, alpha=0.0, counts=(1, 9),
    ...                     score_sums=(1.5, 8.5), score_sq_sums=(0.5, 7.5))
    >>> est = StageEvidence("estimation", n=1000, alpha=0.001, counts=(5, 995),
    ...                     score_sums=(100.0, 900.0), score_sq_sums=(12.0, 812.0))
    >>> ev = Evidence((sel, est), GaussianFacts(num_classes=2), seed=0)
    >>> params = LipschitzParams(sigma=0.5, n0=10, n=1000, alpha=0.001, temperature=1.0,
    ...                          logit_lipschitz=1.0)
    >>> res = decide_lipschitz(ev, params)
    >>> res.prediction, round(res.p_lower, 4), round(res.radius, 4)
    (1, 0.8767, 1.1646)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from smoothcert._validation import check_choice, check_positive
from smoothcert.certificates.lipschitz import lipschitz_radius, softmax_score_lipschitz
from smoothcert.decisions._common import (
    check_gaussian_sampling,
    check_num_classes,
    check_variance_samples,
    estimation_result,
    require_facts,
    require_stage,
)
from smoothcert.decisions.cohen import GaussianFacts
from smoothcert.decisions.soft import (
    SOFT_SCORE_BOUNDS,
    SoftParams,
    _score_sums,
    mean_and_variance,
    select_class,
    soft_lower,
    stage_betting_lower,
)
from smoothcert.records import CertifyResult, Details, Evidence, Payload, register_payload

__all__ = ["LipschitzDetails", "LipschitzParams", "decide_lipschitz"]


@register_payload
@dataclass(frozen=True, kw_only=True)
class LipschitzParams(Payload):
    """Parameters of Lipschitz-aware soft smoothing (``lipschitz``).

    Attributes:
        sigma: noise standard deviation, > 0, in the units of the input tensor.
        n0: selection samples, >= 1.
        n: estimation samples, >= 1 (>= 2 with ``score_bound="bernstein"``).
        alpha: one-sided failure probability of the certificate, in (0, 1).
        temperature: ``t > 0``; the score is ``softmax(t * logits)``. Fixed before
            sampling (soundness rule 1).
        score_bound: one of :data:`~smoothcert.decisions.soft.SOFT_SCORE_BOUNDS`.
        logit_lipschitz: the CERTIFIED L2 Lipschitz constant of the logits in input
            units, > 0 finite (e.g. ``model.lipschitz`` of ``digits_lipschitz``).

    Raises:
        InvalidParameterError: on a value out of range or an unknown name.
    """

    kind = "lipschitz"
    sigma: float
    n0: int
    n: int
    alpha: float
    temperature: float
    logit_lipschitz: float
    score_bound: str = "bernstein"

    def __post_init__(self) -> None:
        check_gaussian_sampling(self)
        object.__setattr__(
            self, "temperature", check_positive(self.temperature, name="temperature")
        )
        object.__setattr__(
            self, "logit_lipschitz", check_positive(self.logit_lipschitz, name="logit_lipschitz")
        )
        check_choice(self.score_bound, name="score_bound", choices=SOFT_SCORE_BOUNDS)
        check_variance_samples(self.n, self.score_bound, name="score_bound")

    def forward_samples(self) -> int:
        """Noisy samples (forward passes) per input: ``n0 + n``."""
        return self.n0 + self.n

    def score_lipschitz(self) -> float:
        """The certified L2 constant of each class score: ``(sqrt(2)/4) t L_z``."""
        return softmax_score_lipschitz(self.logit_lipschitz, temperature=self.temperature)

    def soft_params(self) -> SoftParams:
        """The equivalent :class:`~smoothcert.decisions.soft.SoftParams` (softmax map)."""
        return SoftParams(
            sigma=self.sigma,
            n0=self.n0,
            n=self.n,
            alpha=self.alpha,
            score_map="softmax",
            temperature=self.temperature,
            score_bound=self.score_bound,
        )


@register_payload
@dataclass(frozen=True, kw_only=True)
class LipschitzDetails(Details):
    """What the decision measured for the selected class, and the score's constant.

    Attributes:
        mean: the (rounded-down) sample mean of the selected class's score.
        variance: the (rounded-up) unbiased sample variance.
        score_bound: the bound used.
        score_lipschitz: ``L_s``, the certified L2 constant of the score used by the radius.
    """

    kind = "lipschitz_details"
    mean: float
    variance: float
    score_bound: str
    score_lipschitz: float


def decide_lipschitz(evidence: Evidence, params: LipschitzParams) -> CertifyResult:
    """Lipschitz-aware soft CERTIFY from saved score sums (see the module docstring).

    Args:
        evidence: a selection stage of ``params.n0`` samples and an estimation stage of
            ``params.n`` samples with per-class score sums and sums of squares of
            ``softmax(temperature * logits)``.
        params: the :class:`LipschitzParams`.

    Returns:
        The result, method ``"lipschitz"``, claim ``"majority"``, with
        :class:`LipschitzDetails`.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    soft = params.soft_params()
    top = select_class(evidence, soft)
    facts = require_facts(evidence, GaussianFacts, method="lipschitz")
    estimation = require_stage(evidence, "estimation", n=params.n, method="lipschitz")
    check_num_classes((estimation,), facts.num_classes)
    sums, sq = _score_sums(estimation, facts.num_classes)
    mean, variance = mean_and_variance(float(sums[top]), float(sq[top]), params.n)
    if params.score_bound == "betting":
        p_lower = stage_betting_lower(
            estimation, top, num_classes=facts.num_classes, score_map="softmax", alpha=params.alpha
        )
    else:
        p_lower = soft_lower(
            mean, variance, n=params.n, alpha=params.alpha, score_bound=params.score_bound
        )
    score_lip = params.score_lipschitz()
    radius = float(
        lipschitz_radius(min(p_lower, 1.0 - 1e-16), sigma=params.sigma, lipschitz=score_lip)
    )
    certified = p_lower > 0.5 and radius > 0 and math.isfinite(radius)
    return estimation_result(
        evidence,
        params,
        method="lipschitz",
        top=top,
        certified=certified,
        radius=radius,
        p_lower=p_lower,
        details=LipschitzDetails(
            mean=mean,
            variance=variance,
            score_bound=params.score_bound,
            score_lipschitz=score_lip,
        ),
    )

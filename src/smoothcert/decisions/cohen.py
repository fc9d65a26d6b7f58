"""Gaussian smoothing decisions (Cohen et al. 2019, arXiv 1902.02918): CERTIFY, top-two, PREDICT.

Pure: evidence (class counts of the selection and estimation stages) and
:class:`GaussianParams` -> :class:`~smoothcert.records.CertifyResult`.

* ``cohen``: the selection counts choose A (top count); the estimation counts give
  ``p_lower = CP_lower(n_A, n; alpha)``; abstain if ``p_lower <= 1/2``, else
  ``radius = sigma Phi^-1(p_lower)`` (Theorem 1).
* ``cohen-top2``: ``p_lower`` at alpha/2 and the runner-up's CP upper bound at alpha/2
  (capped by ``1 - p_lower``); ``radius = sigma/2 (Phi^-1(p_lower) - Phi^-1(p_upper))``;
  abstain if ``p_lower <= p_upper``. Valid for any number of classes (DESIGN.md).
* ``cohen-predict``: two-sided binomial test of ``n_A`` out of ``n_A + n_B`` at 1/2
  (Proposition 1); abstain if the p-value exceeds alpha; no radius.

Soundness rule 1: the class comes from the selection stage only; the estimation stage
only bounds it. The radius is in the units of the tensor the noise was added to.

Example:
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> ev = Evidence((StageEvidence("selection", n=10, alpha=0.0, counts=(0, 10)),
    ...                StageEvidence("estimation", n=1000, alpha=0.001, counts=(10, 990))),
    ...               GaussianFacts(num_classes=2), seed=0)
    >>> res = decide_cohen(ev, GaussianParams(sigma=0.5, n0=10, n=1000, alpha=0.001))
    >>> res.prediction, round(res.radius, 4)
    (1, 0.989)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from smoothcert._validation import check_int, check_positive, check_probability_level
from smoothcert.certificates.gaussian import gaussian_radius, gaussian_radius_top2
from smoothcert.decisions._common import (
    check_class,
    check_gaussian_sampling,
    check_num_classes,
    estimation_result,
    require_facts,
    require_no_stage,
    require_stage,
    with_alpha,
)
from smoothcert.records import CertifyResult, Details, Evidence, Facts, Payload, register_payload
from smoothcert.stats.binomial import clopper_pearson_lower, runner_up_upper


@register_payload
@dataclass(frozen=True, kw_only=True)
class GaussianParams(Payload):
    """Parameters of Gaussian CERTIFY (``cohen``, ``cohen-top2``).

    Attributes:
        sigma: noise standard deviation, > 0, in the units of the input tensor.
        n0: selection samples, >= 1.
        n: estimation samples, >= 1.
        alpha: one-sided failure probability of the certificate, in (0, 1).
    """

    kind = "gaussian"
    sigma: float
    n0: int
    n: int
    alpha: float

    def __post_init__(self) -> None:
        check_gaussian_sampling(self)

    def forward_samples(self) -> int:
        """Noisy samples (forward passes) per input: ``n0 + n``."""
        return self.n0 + self.n


@register_payload
@dataclass(frozen=True, kw_only=True)
class GaussianPredictParams(Payload):
    """Parameters of Cohen et al.'s PREDICT (``cohen-predict``).

    Attributes:
        sigma: noise standard deviation, > 0, in input units.
        n: samples, >= 1.
        alpha: probability of returning a class other than g(x), in (0, 1).
    """

    kind = "gaussian_predict"
    sigma: float
    n: int
    alpha: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", check_positive(self.sigma, name="sigma"))
        object.__setattr__(self, "n", check_int(self.n, name="n", minimum=1))
        object.__setattr__(self, "alpha", check_probability_level(self.alpha))

    def forward_samples(self) -> int:
        """Noisy samples (forward passes) per input: ``n``."""
        return self.n


@register_payload
@dataclass(frozen=True, kw_only=True)
class GaussianFacts(Facts):
    """What the Gaussian decisions need to know about the input.

    Attributes:
        num_classes: number of model outputs, >= 2.
    """

    kind = "gaussian_facts"
    num_classes: int

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "num_classes", check_int(self.num_classes, name="num_classes", minimum=2)
        )


@register_payload
@dataclass(frozen=True, kw_only=True)
class PredictDetails(Details):
    """PREDICT's test outcome.

    Attributes:
        p_value: two-sided binomial test p-value of ``n_A`` vs ``n_A + n_B`` at 1/2.
    """

    kind = "predict_details"
    p_value: float


def _select(evidence: Evidence, params: GaussianParams, method: str) -> tuple[int, np.ndarray]:
    facts = require_facts(evidence, GaussianFacts, method=method)
    selection = require_stage(evidence, "selection", n=params.n0, method=method)
    estimation = require_stage(evidence, "estimation", n=params.n, method=method)
    check_num_classes((selection, estimation), facts.num_classes)
    top = int(np.argmax(selection.counts))
    check_class(top, facts.num_classes, name="selected class")
    return top, np.asarray(estimation.counts, dtype=np.int64)


def decide_cohen(evidence: Evidence, params: GaussianParams) -> CertifyResult:
    """Cohen et al.'s CERTIFY from saved counts (see the module docstring).

    Args:
        evidence: a selection stage of ``params.n0`` samples and an estimation stage of
            ``params.n`` samples, with class counts.
        params: the :class:`GaussianParams`.

    Returns:
        The result, method ``"cohen"``, claim ``"majority"``.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    top, counts = _select(evidence, params, "cohen")
    p_lower = float(clopper_pearson_lower(int(counts[top]), params.n, alpha=params.alpha))
    radius = float(gaussian_radius(p_lower, sigma=params.sigma))
    certified = p_lower > 0.5 and radius > 0
    return estimation_result(
        evidence,
        params,
        method="cohen",
        top=top,
        certified=certified,
        radius=radius,
        p_lower=p_lower,
    )


def decide_cohen_top2(evidence: Evidence, params: GaussianParams) -> CertifyResult:
    """The top-two certificate from saved counts (see the module docstring).

    Returns:
        The result, method ``"cohen-top2"``, claim ``"majority"``, with ``p_upper``.
    """
    top, counts = _select(evidence, params, "cohen-top2")
    half = params.alpha / 2
    p_lower = float(clopper_pearson_lower(int(counts[top]), params.n, alpha=half))
    p_upper = min(runner_up_upper(counts, top, alpha=half), 1.0 - p_lower)
    radius = float(gaussian_radius_top2(p_lower, p_upper, sigma=params.sigma))
    certified = p_lower > p_upper and radius > 0
    return estimation_result(
        evidence,
        params,
        method="cohen-top2",
        top=top,
        certified=certified,
        radius=radius,
        p_lower=p_lower,
        p_upper=p_upper,
    )


def decide_predict(evidence: Evidence, params: GaussianPredictParams) -> CertifyResult:
    """Cohen et al.'s PREDICT from saved counts (see the module docstring).

    Returns:
        The result, method ``"cohen-predict"``, claim ``"prediction"``, radius 0 and the
        p-value in :class:`PredictDetails`.
    """
    require_no_stage(evidence, "selection", method="cohen-predict")
    facts = require_facts(evidence, GaussianFacts, method="cohen-predict")
    stage = require_stage(evidence, "prediction", n=params.n, method="cohen-predict")
    check_num_classes((stage,), facts.num_classes)
    counts = np.asarray(stage.counts, dtype=np.int64)
    order = np.argsort(-counts, kind="stable")
    top, second = int(order[0]), int(order[1])
    n_a, n_b = int(counts[top]), int(counts[second])
    p_value = float(binomtest(n_a, n_a + n_b, 0.5).pvalue) if n_a + n_b > 0 else 1.0
    certified = p_value <= params.alpha
    return CertifyResult(
        method="cohen-predict",
        claim="prediction",
        prediction=top if certified else None,
        abstained=not certified,
        radius=0.0,
        p_lower=0.0,
        alpha=params.alpha,
        seed=evidence.seed,
        seconds=evidence.seconds,
        params=params,
        evidence=with_alpha(evidence, {"prediction": params.alpha}),
        details=PredictDetails(p_value=p_value),
    )

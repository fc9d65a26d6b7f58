"""Hybrid text+image decisions (Delattre et al. 2026, arXiv 2605.12876): evidence -> curve r(d).

Pure half of :mod:`smoothcert.methods.hybrid`. The class and ``p_lower`` come from
:func:`smoothcert.decisions.tokens.bound_class` (same modes and claims as tokens);
the certified region is the staircase under ``r(d) = sup{r : L(d, r) >= tau}``,
``d = 0..d_max`` (:func:`smoothcert.certificates.hybrid_radius_curve`), cut at the first
``d`` that is not certified with an unperturbed image. ``radius = r(0)``, in the units of
the image tensor.

Example:
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> from smoothcert.decisions.tokens import TokenFacts
    >>> ev = Evidence((StageEvidence("selection", n=100, alpha=0.0, counts=(0, 100)),
    ...                StageEvidence("estimation", n=5000, alpha=0.001, counts=(0, 5000))),
    ...               TokenFacts(num_classes=2, length=3, num_eligible=3, d_max=3,
    ...                          sampling_tv_bound=0.0))
    >>> params = HybridParams(sigma=0.5, beta=0.5, alphabet=5, n0=100, n=5000, alpha=0.001)
    >>> res = decide_hybrid(ev, params)
    >>> res.prediction, len(res.radius_curve), res.radius == res.radius_curve[0]
    (1, 4, True)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from smoothcert._validation import check_positive
from smoothcert.certificates import hybrid_radius_curve
from smoothcert.decisions._common import with_alpha
from smoothcert.decisions.tokens import TokenFacts, TokenParams, bound_class, certified_tokens
from smoothcert.records import CertifyResult, Evidence, register_payload


@register_payload
@dataclass(frozen=True, kw_only=True)
class HybridParams(TokenParams):
    """Parameters of hybrid smoothing: :class:`~smoothcert.decisions.tokens.TokenParams` + sigma.

    Attributes:
        sigma: image noise standard deviation, > 0, in the units of the image tensor.
    """

    kind = "hybrid"
    sigma: float

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "sigma", check_positive(self.sigma, name="sigma"))


def hybrid_curve(
    p_lower: float, params: HybridParams, *, d_max: int, facts: TokenFacts | None = None
) -> tuple[np.ndarray, int | None]:
    """The certified staircase at ``p_lower``: ``(r(0..d_max), d_certified)``.

    ``r(d)`` is zero past the first ``d`` not certified with an unperturbed image, and
    everywhere when ``d = 0`` is not (``d_certified`` None). Radii in image units.
    ``facts`` gives the clean out-of-alphabet count (``attacker="any"``).
    """
    d_cert = certified_tokens(p_lower, params, d_max=d_max, facts=facts)
    curve = np.zeros(d_max + 1, dtype=np.float64)
    if d_cert is not None:
        curve = np.asarray(
            hybrid_radius_curve(
                p_lower,
                d_max=d_max,
                sigma=params.sigma,
                tau=params.tau,
                **params.certificate_kwargs(facts),
            ),
            dtype=np.float64,
        ).reshape(-1)
        # Staircase: nothing is certified past the first d that fails at r = 0.
        curve[d_cert + 1 :] = 0.0
        curve = np.where(np.isfinite(curve) & (curve > 0), curve, 0.0)
    return curve, d_cert


def decide_hybrid(evidence: Evidence, params: HybridParams) -> CertifyResult:
    """Certify the curve ``r(d)`` from saved counts (see the module docstring).

    Returns:
        The result, method ``"hybrid"``, ``radius = r(0)`` and ``radius_curve``
        ``r(0..d_max)`` (zeros when abstaining).

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    cls, p_lower, facts, details = bound_class(evidence, params, "hybrid")
    curve, d_cert = hybrid_curve(p_lower, params, d_max=facts.d_max, facts=facts)
    certified = d_cert is not None
    return CertifyResult(
        method="hybrid",
        claim="majority" if params.majority else "flagged",
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
        details=dataclasses.replace(details, d_certified=d_cert),
    )

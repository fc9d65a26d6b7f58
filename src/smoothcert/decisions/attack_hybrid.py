"""Empirical robustness of a smoothed text+image safety filter: the hybrid attack's decision.

Pure: evidence (class counts at the clean pair and at each attacked pair) and
:class:`HybridAttackParams` -> :class:`~smoothcert.records.CertifyResult` with claim
``"empirical"``. NOT a certificate: the outcome of an attack, reported next to the certified
(d, r) region of ``hybrid`` (Delattre et al., ICML 2026, arXiv 2605.12876).

The smoothed filter is the one ``hybrid`` certifies (same token kernel, threat, ``sigma``,
``target`` and ``tau``): it flags the pair iff ``P(f(Z, X + e) = target) >= tau``. The
attacker (:mod:`smoothcert.methods.attack_hybrid`) substitutes at most ``d`` eligible tokens
(alphabet tokens) and moves the image by ``||delta||_2 <= r``, trying to UN-flag a flagged
pair. The evidence:

* a ``selection`` stage of ``n`` samples at the clean pair: the pair is flagged when the
  observed rate ``n_target / n >= tau`` (a point estimate: the attack's starting point);
* one ``attack`` stage of ``n`` FRESH samples per grid point ``(d, r)``, ``d = 0..attack_d_max``,
  ``r`` in ``radii``, without ``(0, 0)`` (the clean pair), in that order.

The attack succeeds at ``(d, r)`` (the pair is declared un-flagged) only when the one-sided
Clopper-Pearson upper bound of ``P(target)`` at the attacked pair, at level ``alpha``, is
below ``tau``: a declared success is real with probability >= 1 - alpha. The share of
flagged pairs the attack leaves flagged at ``(d, r)`` is therefore, up to Monte Carlo error,
an UPPER bound on the share that is truly robust there, which is >= the share ``hybrid``
certifies to stay flagged (a lower bound).

Example:
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> p = HybridAttackParams(sigma=0.5, beta=0.1, alphabet=7, n0=0, n=200, alpha=0.001,
    ...                        target=1, tau=0.5, radii=(0.0, 0.5), attack_d_max=1)
    >>> p.points()
    ((0, 0.5), (1, 0.0), (1, 0.5))
    >>> ev = Evidence((StageEvidence("selection", n=200, alpha=0.0, counts=(20, 180)),
    ...                StageEvidence("attack", n=200, alpha=0.0, counts=(30, 170)),
    ...                StageEvidence("attack", n=200, alpha=0.0, counts=(60, 140)),
    ...                StageEvidence("attack", n=200, alpha=0.0, counts=(190, 10))),
    ...               HybridAttackFacts(num_classes=2, num_eligible=3), seed=0)
    >>> res = decide_attack_hybrid(ev, p)
    >>> res.prediction, res.details.unflagged
    (1, (False, False, True))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smoothcert._validation import check_choice, check_int, check_positive
from smoothcert.decisions._common import check_num_classes, require_facts
from smoothcert.decisions.attack import (
    check_attack_stages,
    check_radius_grid,
    dr_points,
    empirical_result,
)
from smoothcert.decisions.hybrid import HybridParams
from smoothcert.errors import InvalidParameterError
from smoothcert.records import CertifyResult, Details, Evidence, Facts, register_payload
from smoothcert.stats.binomial import clopper_pearson_upper

CANDIDATE_RANKINGS = ("random", "gradient")
"""Where the hybrid attack's token candidates come from (:class:`HybridAttackParams`)."""


@register_payload
@dataclass(frozen=True, kw_only=True)
class HybridAttackParams(HybridParams):
    """The smoothed filter's :class:`~smoothcert.decisions.hybrid.HybridParams` + the attack.

    ``target`` is required (a safety filter); ``n`` is the number of noisy samples of each
    evaluation (clean pair and each attacked pair); ``n0`` is ignored; ``alpha`` is the
    level of each un-flagging test.

    Attributes:
        radii: image radii of the grid, strictly increasing, >= 0, image units.
        attack_d_max: largest number of substituted tokens attacked, >= 0 (the grid has
            ``d = 0..attack_d_max``; at most the eligible positions, checked per input).
        steps: image PGD steps per grid point, >= 1.
        step_size: image PGD step length, > 0; None: ``2.5 r / steps``.
        noise_samples: joint noise draws per objective evaluation (PGD step or token
            candidate), >= 1.
        candidates: token substitutions scored per edit, >= 1.
        candidate_ranking: where the candidates come from, one of
            :data:`CANDIDATE_RANKINGS`: ``"random"`` (uniform (position, alphabet token)
            pairs) or ``"gradient"`` (the top ``candidates`` pairs by the first-order
            change of the smoothed score, GCG-style; needs the model's embedding hook,
            :mod:`smoothcert.methods.token_gradient`). Hashed; left out of the records
            when ``"random"`` (older files keep their hash).
    """

    kind = "attack_hybrid"
    radii: tuple[float, ...] = (0.0, 0.25, 0.5)
    attack_d_max: int = 2
    steps: int = 20
    step_size: float | None = None
    noise_samples: int = 16
    candidates: int = 32
    candidate_ranking: str = "random"

    def __post_init__(self) -> None:
        if self.target is None:
            raise InvalidParameterError(
                "target = None is invalid for the hybrid attack; valid: the safety filter's "
                "flagged class (target=, with its threshold tau)"
            )
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "radii", check_radius_grid(self.radii, allow_zero=True))
        set_(self, "attack_d_max", check_int(self.attack_d_max, name="attack_d_max", minimum=0))
        if len(self.points()) == 0:
            raise InvalidParameterError(
                "radii = (0.0,) with attack_d_max = 0 is invalid: nothing to attack; valid: a "
                "radius > 0 or attack_d_max >= 1"
            )
        set_(self, "steps", check_int(self.steps, name="steps", minimum=1))
        if self.step_size is not None:
            set_(self, "step_size", check_positive(self.step_size, name="step_size"))
        set_(self, "noise_samples", check_int(self.noise_samples, name="noise_samples", minimum=1))
        set_(self, "candidates", check_int(self.candidates, name="candidates", minimum=1))
        check_choice(self.candidate_ranking, name="candidate_ranking", choices=CANDIDATE_RANKINGS)

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`HybridParams.to_dict`, without ``candidate_ranking`` when ``"random"``."""
        out = super().to_dict()
        if out.get("candidate_ranking") == "random":
            del out["candidate_ranking"]
        return out

    def points(self) -> tuple[tuple[int, float], ...]:
        """The attacked grid points ``(d, r)``, d-major, without the clean ``(0, 0)``."""
        return dr_points(self.radii, self.attack_d_max)

    def step_length(self, radius: float) -> float:
        """The image PGD step length at ``radius``: ``step_size`` or ``2.5 r / steps``."""
        return self.step_size if self.step_size is not None else 2.5 * radius / self.steps

    def forward_samples(self) -> int:
        """Noisy forward passes per input (evaluations, token candidates, PGD steps)."""
        points = self.points()
        per_edit = self.candidates + 1 + (self.candidate_ranking == "gradient")
        search = sum(
            d * per_edit * self.noise_samples + (self.steps * self.noise_samples if r > 0 else 0)
            for d, r in points
        )
        return self.n * (1 + len(points)) + search


@register_payload
@dataclass(frozen=True, kw_only=True)
class HybridAttackFacts(Facts):
    """What the hybrid attack's decision needs to know about the input.

    Attributes:
        num_classes: number of model outputs, >= 2.
        num_eligible: eligible token positions of the input (the attack's d <= this).
    """

    kind = "attack_hybrid_facts"
    num_classes: int
    num_eligible: int

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "num_classes", check_int(self.num_classes, name="num_classes", minimum=2)
        )
        object.__setattr__(
            self, "num_eligible", check_int(self.num_eligible, name="num_eligible", minimum=0)
        )


@register_payload
@dataclass(frozen=True, kw_only=True)
class HybridAttackDetails(Details):
    """Per grid point outcome of the hybrid attack.

    Attributes:
        d_values: the points' numbers of substituted tokens.
        r_values: the points' image radii (image units).
        unflagged: per point, whether the attack was declared to un-flag the pair.
        p_upper: per point, the Clopper-Pearson upper bound of ``P(target)`` (level alpha).
        flag_rate: ``n_target / n`` at the clean pair.
    """

    kind = "attack_hybrid_details"
    d_values: tuple[int, ...]
    r_values: tuple[float, ...]
    unflagged: tuple[bool, ...]
    p_upper: tuple[float, ...]
    flag_rate: float


def decide_attack_hybrid(evidence: Evidence, params: HybridAttackParams) -> CertifyResult:
    """The hybrid attack's empirical outcome from saved counts (see the module docstring).

    Args:
        evidence: a ``selection`` stage and one ``attack`` stage per grid point
            (:meth:`HybridAttackParams.points`), each of ``params.n`` samples.
        params: the :class:`HybridAttackParams`.

    Returns:
        The result, method ``"attack-hybrid"``, claim ``"empirical"``: abstained when the
        clean pair is not flagged (nothing to attack); else ``prediction = target`` and
        ``radius`` the largest grid radius at ``d = 0`` up to which the attack un-flagged
        nothing (0 if it succeeded at the first one); :class:`HybridAttackDetails`.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    facts = require_facts(evidence, HybridAttackFacts, method="attack-hybrid")
    points = params.points()
    check_attack_stages(
        evidence,
        points=len(points),
        n=params.n,
        n_name="n",
        method="attack-hybrid",
        unit="(d, r) point",
    )
    check_num_classes(evidence.stages, facts.num_classes)
    target = int(params.target)  # type: ignore[arg-type]
    if target >= facts.num_classes:
        raise InvalidParameterError(
            f"target = {target} is invalid; valid range: 0 <= target <= {facts.num_classes - 1}"
        )
    clean = evidence.stages[0]
    flag_rate = clean.counts[target] / clean.n
    flagged = flag_rate >= params.tau
    uppers = [
        float(clopper_pearson_upper(s.counts[target], s.n, alpha=params.alpha))
        for s in evidence.stages[1:]
    ]
    unflagged = tuple(flagged and u < params.tau for u in uppers)
    radius = 0.0
    if flagged:
        row = [(r, u) for (d, r), u in zip(points, unflagged, strict=True) if d == 0]
        radius = params.radii[-1]
        for r, u in row:
            if u:
                below = [rr for rr in params.radii if rr < r]
                radius = below[-1] if below else 0.0
                break
    return empirical_result(
        "attack-hybrid",
        evidence,
        params,
        prediction=target if flagged else None,
        radius=radius,
        details=HybridAttackDetails(
            d_values=tuple(d for d, _ in points),
            r_values=tuple(r for _, r in points),
            unflagged=unflagged,
            p_upper=tuple(uppers),
            flag_rate=float(flag_rate),
        ),
    )

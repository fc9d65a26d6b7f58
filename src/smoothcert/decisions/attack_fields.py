"""Empirical robustness of a smoothed tabular classifier: the fields attack's decision.

Pure: evidence (class counts at the clean row and at each attacked row) and
:class:`FieldsAttackParams` -> :class:`~smoothcert.records.CertifyResult` with claim
``"empirical"`` (method ``attack-fields``). NOT a certificate: the outcome of an attack,
reported next to the certified (d, r) grid of ``hybrid-fields`` (Delattre et al., ICML
2026, arXiv 2605.12876, tabular experiment; :mod:`smoothcert.decisions.fields`).

The smoothed classifier is the majority vote ``hybrid-fields`` certifies (same per-field
kernels ``(V_f, beta_f)`` and ``sigma``). The attacker
(:mod:`smoothcert.methods.attack_fields`) changes at most ``d`` categorical fields (any
level of each field's own alphabet) and moves the continuous vector by ``||delta||_2 <= r``
(continuous-vector units), trying to change the smoothed prediction. The evidence:

* a ``selection`` stage of ``eval_n`` samples at the clean row: its majority class ``c``
  is the clean prediction (label-free);
* one ``attack`` stage of ``eval_n`` FRESH samples per grid point ``(d, r)``,
  ``d = 0..attack_d_max``, ``r`` in ``radii``, without ``(0, 0)``, d-major
  (:func:`~smoothcert.decisions.attack.dr_points`).

A change at ``(d, r)`` is declared only when Cohen et al.'s PREDICT (arXiv 1902.02918,
Proposition 1; :func:`~smoothcert.decisions.attack.predict_test`) returns a class other
than ``c`` at level ``alpha``: a declared change is real with probability >= 1 - alpha.
The share of rows that are correct and unchanged at every grid point ``(d', r') <= (d, r)``
is, up to Monte Carlo error, an UPPER bound on the robust accuracy at ``(d, r)``, which is
>= the certified accuracy of ``hybrid-fields`` there (a lower bound).

Example:
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> p = FieldsAttackParams(field_vocab_sizes=(2, 3), field_betas=(0.2, 0.3), sigma=0.5,
    ...                        radii=(0.0, 0.5), attack_d_max=1, eval_n=200)
    >>> p.points()
    ((0, 0.5), (1, 0.0), (1, 0.5))
    >>> ev = Evidence((StageEvidence("selection", n=200, alpha=0.0, counts=(20, 180)),
    ...                StageEvidence("attack", n=200, alpha=0.0, counts=(30, 170)),
    ...                StageEvidence("attack", n=200, alpha=0.0, counts=(95, 105)),
    ...                StageEvidence("attack", n=200, alpha=0.0, counts=(190, 10))),
    ...               FieldsAttackFacts(num_classes=2, num_fields=2), seed=0)
    >>> res = decide_attack_fields(ev, p)
    >>> res.prediction, res.details.flipped, res.radius
    (1, (False, False, True), 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smoothcert._validation import check_int, check_positive, check_probability_level
from smoothcert.decisions._common import check_class, check_num_classes, require_facts
from smoothcert.decisions.attack import (
    check_attack_stages,
    check_radius_grid,
    dr_points,
    empirical_result,
    predict_test,
)
from smoothcert.decisions.fields import FieldsParams
from smoothcert.errors import InvalidParameterError
from smoothcert.records import CertifyResult, Details, Evidence, Facts, Payload, register_payload

METHOD = "attack-fields"


@register_payload
@dataclass(frozen=True, kw_only=True)
class FieldsAttackParams(Payload):
    """The smoothed tabular classifier (as ``hybrid-fields``) + the attack's parameters.

    Every field changes the records, so every field is hashed with the run's config.

    Attributes:
        field_vocab_sizes: alphabet size ``V_f >= 2`` of each categorical field.
        field_betas: substitution probability ``beta_f`` in (0, 1) of each field.
        sigma: Gaussian noise on the continuous vector, > 0, its units (for ``"fair"``:
            train standard deviations).
        radii: continuous L2 radii of the grid, strictly increasing, >= 0, same units.
        attack_d_max: largest number of changed fields attacked, >= 0 (None: every field;
            the grid has ``d = 0..attack_d_max``).
        steps: PGD steps on the continuous vector per round, >= 1.
        step_size: PGD step length, > 0; None: ``2.5 r / steps``.
        noise_samples: joint noise draws per objective evaluation (a PGD step or the
            score of one field change), >= 1.
        rounds: alternations of greedy field changes and PGD at a point with ``d >= 1``
            and ``r > 0``, >= 1.
        eval_n: fresh noisy samples at the clean row and at each attacked row, >= 1.
        alpha: level of each change test (PREDICT), in (0, 1).

    Raises:
        InvalidParameterError: on any value out of range (message names it and the range).
    """

    kind = "attack_fields"
    field_vocab_sizes: tuple[int, ...]
    field_betas: tuple[float, ...]
    sigma: float
    radii: tuple[float, ...] = (0.0, 0.25, 0.5)
    attack_d_max: int | None = None
    steps: int = 20
    step_size: float | None = None
    noise_samples: int = 32
    rounds: int = 2
    eval_n: int = 1000
    alpha: float = 0.001

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        # the smoothed classifier's own checks (alphabets, betas, sigma)
        model = FieldsParams(
            field_vocab_sizes=tuple(self.field_vocab_sizes),
            field_betas=tuple(self.field_betas),
            sigma=self.sigma,
            n0=1,
            n=1,
            alpha=0.5,
        )
        set_(self, "field_vocab_sizes", model.field_vocab_sizes)
        set_(self, "field_betas", model.field_betas)
        set_(self, "sigma", model.sigma)
        set_(self, "radii", check_radius_grid(self.radii, allow_zero=True))
        if self.attack_d_max is not None:
            set_(
                self,
                "attack_d_max",
                check_int(
                    self.attack_d_max, name="attack_d_max", minimum=0, maximum=model.num_fields
                ),
            )
        if not self.points():
            raise InvalidParameterError(
                "radii = (0.0,) with attack_d_max = 0 is invalid: nothing to attack; valid: a "
                "radius > 0 or attack_d_max >= 1"
            )
        set_(self, "steps", check_int(self.steps, name="steps", minimum=1))
        if self.step_size is not None:
            set_(self, "step_size", check_positive(self.step_size, name="step_size"))
        set_(self, "noise_samples", check_int(self.noise_samples, name="noise_samples", minimum=1))
        set_(self, "rounds", check_int(self.rounds, name="rounds", minimum=1))
        set_(self, "eval_n", check_int(self.eval_n, name="eval_n", minimum=1))
        set_(self, "alpha", check_probability_level(self.alpha))

    @property
    def num_fields(self) -> int:
        """Number ``F`` of categorical fields."""
        return len(self.field_vocab_sizes)

    @property
    def d_max(self) -> int:
        """Largest number of changed fields attacked (``attack_d_max`` or ``F``)."""
        return self.num_fields if self.attack_d_max is None else self.attack_d_max

    def points(self) -> tuple[tuple[int, float], ...]:
        """The attacked grid points ``(d, r)``, d-major, without the clean ``(0, 0)``."""
        return dr_points(self.radii, self.d_max)

    def step_length(self, radius: float) -> float:
        """The PGD step length at ``radius``: ``step_size`` or ``2.5 r / steps``."""
        return self.step_size if self.step_size is not None else 2.5 * radius / self.steps

    def forward_samples(self) -> int:
        """Noisy forward passes per row (evaluations, field-change scores, PGD steps).

        An upper bound: the greedy search stops early when no change lowers the score.
        """
        changes = sum(v - 1 for v in self.field_vocab_sizes) + 1
        search = 0
        for d, r in self.points():
            rounds = self.rounds if d > 0 and r > 0 else 1
            greedy = d * changes * self.noise_samples
            pgd = self.steps * self.noise_samples if r > 0 else 0
            search += rounds * (greedy + pgd)
        return self.eval_n * (1 + len(self.points())) + search


@register_payload
@dataclass(frozen=True, kw_only=True)
class FieldsAttackFacts(Facts):
    """What the fields attack's decision needs to know about the row.

    Attributes:
        num_classes: number of model outputs, >= 2.
        num_fields: number of categorical fields of the row, >= 1.
    """

    kind = "attack_fields_facts"
    num_classes: int
    num_fields: int

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "num_classes", check_int(self.num_classes, name="num_classes", minimum=2)
        )
        object.__setattr__(
            self, "num_fields", check_int(self.num_fields, name="num_fields", minimum=1)
        )


@register_payload
@dataclass(frozen=True, kw_only=True)
class FieldsAttackDetails(Details):
    """Per grid point outcome of the fields attack.

    Attributes:
        d_values: the points' numbers of changed fields.
        r_values: the points' continuous radii (continuous-vector units).
        flipped: per point, whether a change of the smoothed prediction was declared.
        attacked_class: per point, the top class of the counts at the attacked row.
        p_values: per point, PREDICT's two-sided binomial p-value (top two counts).
    """

    kind = "attack_fields_details"
    d_values: tuple[int, ...]
    r_values: tuple[float, ...]
    flipped: tuple[bool, ...]
    attacked_class: tuple[int, ...]
    p_values: tuple[float, ...]


def decide_attack_fields(evidence: Evidence, params: FieldsAttackParams) -> CertifyResult:
    """The fields attack's empirical outcome from saved counts (see the module docstring).

    Args:
        evidence: a ``selection`` stage and one ``attack`` stage per grid point
            (:meth:`FieldsAttackParams.points`), each of ``params.eval_n`` samples.
        params: the :class:`FieldsAttackParams`.

    Returns:
        The result, method ``"attack-fields"``, claim ``"empirical"`` (never abstains;
        ``p_lower = 0``): ``prediction`` the clean majority class, ``radius`` the largest
        grid radius at ``d = 0`` up to which no change was declared (0 if the first one
        changed), :class:`FieldsAttackDetails` per point.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    facts = require_facts(evidence, FieldsAttackFacts, method=METHOD)
    if facts.num_fields != params.num_fields:
        raise InvalidParameterError(
            f"evidence for {facts.num_fields} fields is invalid; valid: the parameters' "
            f"{params.num_fields} fields"
        )
    points = params.points()
    stages = check_attack_stages(
        evidence,
        points=len(points),
        n=params.eval_n,
        n_name="eval_n",
        method=METHOD,
        unit="(d, r) point",
    )
    check_num_classes(evidence.stages, facts.num_classes)
    clean = int(np.argmax(np.asarray(evidence.stages[0].counts, dtype=np.int64)))
    check_class(clean, facts.num_classes, name="clean prediction")
    tests = [predict_test(s.counts) for s in stages]
    flipped = tuple(top != clean and p <= params.alpha for top, p in tests)
    radius = params.radii[-1]
    for (d, r), flip in zip(points, flipped, strict=True):
        if d == 0 and flip:
            below = [rr for rr in params.radii if rr < r]
            radius = below[-1] if below else 0.0
            break
    return empirical_result(
        METHOD,
        evidence,
        params,
        prediction=clean,
        radius=radius,
        details=FieldsAttackDetails(
            d_values=tuple(d for d, _ in points),
            r_values=tuple(r for _, r in points),
            flipped=flipped,
            attacked_class=tuple(top for top, _ in tests),
            p_values=tuple(p for _, p in tests),
        ),
    )

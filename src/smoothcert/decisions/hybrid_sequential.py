"""Sequential hybrid certification: decide target points (d, r) with as few samples as needed.

The hybrid certificate (:mod:`smoothcert.decisions.hybrid`; arXiv 2605.12876) with its
estimation samples drawn in rounds, as in :mod:`smoothcert.decisions.sequential`: the
class is the fixed target of a safety filter (no selection samples) or the top class of
``n0`` selection samples; after each round an anytime-valid confidence sequence bounds
its probability, and ``p_lower`` is that bound minus the kernel's sampling TV bound
(floored at 0), exactly as the fixed-n decision does with Clopper-Pearson. A target point
``(d, r)`` is certified when ``L(d, r) >= tau`` at ``p_lower`` (strictly above 1/2 in
majority mode); ``L`` is non-increasing in ``d`` and ``r``, so the whole staircase under
the point is certified too. For a safety filter that says "P(flag) >= tau against every
edit of at most d tokens AND image move of at most r". The stopping rule is
:func:`~smoothcert.decisions.sequential.stopping_rule` in target mode. A result is
certified only when some target point is; its ``radius_curve`` is the whole staircase at
the final ``p_lower``.

Example:
    >>> from smoothcert.decisions.tokens import TokenFacts
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> params = HybridSequentialParams(sigma=0.5, beta=0.3, alphabet=5, n0=0, alpha=0.001,
    ...                                 tau=0.01, target=1, max_samples=10_000,
    ...                                 targets=((1, 0.25),))
    >>> ev = Evidence((StageEvidence("round", n=100, alpha=0.0, counts=(0, 100)),),
    ...               TokenFacts(num_classes=2, length=4, num_eligible=4, d_max=4,
    ...                          sampling_tv_bound=0.0), seed=0)
    >>> res = decide_hybrid_sequential(ev, params)
    >>> res.claim, res.details.stop, res.details.targets_certified, res.samples_used
    ('flagged', 'decided', ((1, 0.25),), 100)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smoothcert._validation import check_int, check_nonnegative
from smoothcert.certificates import hybrid_lower_bound
from smoothcert.decisions._common import (
    check_class,
    check_num_classes,
    require_facts,
    require_no_stage,
    require_stage,
)
from smoothcert.decisions.hybrid import HybridParams, hybrid_curve
from smoothcert.decisions.sequential import (
    RoundFields,
    next_round,
    require_rounds,
    round_stages,
    sequence_bounds,
    stopping_rule,
    with_sequence_alpha,
)
from smoothcert.decisions.tokens import TokenFacts, check_facts_fit
from smoothcert.errors import InvalidParameterError
from smoothcert.records import (
    CertifyResult,
    Details,
    Evidence,
    StageEvidence,
    register_payload,
)
from smoothcert.stats.sequential import checkpoint_schedule

Point = tuple[int, float]


@register_payload
@dataclass(frozen=True, kw_only=True)
class HybridSequentialParams(HybridParams, RoundFields):
    """Parameters of sequential hybrid certification (``hybrid-sequential``).

    :class:`~smoothcert.decisions.hybrid.HybridParams` plus the sequential fields: the
    round fields of :class:`~smoothcert.decisions.sequential.RoundFields` and those below.
    ``n`` is not given: it is the estimation budget, ``max_samples - n0`` in majority
    mode and ``max_samples`` for a safety filter (which draws no selection samples).

    Attributes:
        max_samples: most forward samples per input, selection included.
        targets: the target points ``(d, r)`` to decide: ``d >= 0`` edited tokens and an
            image move ``r >= 0`` in image units (sorted, no duplicates, at least one).
    """

    kind = "hybrid_sequential"
    n: int = 0
    max_samples: int
    targets: tuple[Point, ...]

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        max_samples = check_int(self.max_samples, name="max_samples", minimum=1)
        selection = check_int(self.n0, name="n0", minimum=0) if self.target is None else 0
        budget = max_samples - selection
        if budget < 1:
            raise InvalidParameterError(
                f"max_samples = {max_samples} is invalid; valid range: max_samples > "
                f"n0 = {selection} (the selection samples count towards it)"
            )
        if self.n not in (0, budget):
            raise InvalidParameterError(
                f"n = {self.n!r} is invalid for a sequential run; valid: leave it out (the "
                f"budget is max_samples - selection samples = {budget})"
            )
        set_(self, "max_samples", max_samples)
        set_(self, "n", budget)
        super().__post_init__()
        points = []
        for point in self.targets:
            if not isinstance(point, (tuple, list)) or len(point) != 2:
                raise InvalidParameterError(
                    f"target point {point!r} is invalid; valid: a pair (d, r) with d >= 0 "
                    "edited tokens and r >= 0"
                )
            d = check_int(point[0], name="target d", minimum=0)
            points.append((d, check_nonnegative(point[1], name="target r")))
        if not points:
            raise InvalidParameterError(
                "targets = () is invalid; valid: at least one target point (d, r)"
            )
        set_(self, "targets", tuple(sorted(set(points))))
        self.check_round_fields()


@register_payload
@dataclass(frozen=True, kw_only=True)
class HybridSequentialDetails(Details):
    """What a sequential hybrid run spent, why it stopped and what it certified.

    Attributes:
        samples_used: forward samples drawn, selection included.
        rounds: estimation rounds drawn.
        stop: one of :data:`~smoothcert.decisions.sequential.STOP_REASONS`.
        sequence_lower: the confidence sequence's lower bound before the TV correction.
        sequence_upper: its upper bound on the class probability.
        d_certified: largest ``d`` certified with an unperturbed image (None: none).
        targets_certified: the target points certified.
        attacker: the threat certified, ``"alphabet"`` or ``"any"`` (None in records
            written before it was recorded: those certify ``"alphabet"``).
    """

    kind = "hybrid_sequential_details"
    samples_used: int
    rounds: int
    stop: str
    sequence_lower: float
    sequence_upper: float
    d_certified: int | None
    targets_certified: tuple[Point, ...] = ()
    attacker: str | None = None


def schedule(params: HybridSequentialParams) -> tuple[int, ...]:
    """Cumulative estimation samples at the checkpoints (fixed by the parameters alone)."""
    return checkpoint_schedule(params.n, first=params.first_round, growth=params.growth)


def _certified_points(
    p_lower: float, params: HybridSequentialParams, facts: TokenFacts
) -> tuple[Point, ...]:
    """The target points with ``L(d, r) >= tau`` at ``p_lower`` (the mode's rule).

    ``L`` is non-increasing in ``d``, so the point's whole staircase is certified too.
    """
    return tuple(
        (d, r)
        for d, r in params.targets
        if d <= facts.d_max
        and params.certified(
            float(
                hybrid_lower_bound(
                    p_lower,
                    d=d,
                    r=r,
                    sigma=params.sigma,
                    **params.certificate_kwargs(facts),
                )
            )
        )
    )


def _class_and_rounds(
    evidence: Evidence, params: HybridSequentialParams
) -> tuple[int, TokenFacts, tuple[StageEvidence, ...]]:
    method = "hybrid-sequential"
    facts = require_facts(evidence, TokenFacts, method=method)
    rounds = round_stages(evidence, schedule(params))
    if params.majority:
        selection = require_stage(evidence, "selection", n=params.n0, method=method)
        check_num_classes((selection, *rounds), facts.num_classes)
        cls = int(np.argmax(selection.counts))
    else:
        require_no_stage(evidence, "selection", method=method)
        check_num_classes(rounds, facts.num_classes)
        assert params.target is not None
        cls = params.target
    check_class(cls, facts.num_classes, name="target" if params.target is not None else "class")
    check_facts_fit(facts, params)
    return cls, facts, rounds


def _state(
    params: HybridSequentialParams, facts: TokenFacts, successes: int, samples: int
) -> tuple[str, float, float, float, tuple[Point, ...]]:
    checkpoints = schedule(params)
    p_cs, p_upper, potential = sequence_bounds(
        successes,
        samples,
        alpha=params.alpha,
        bound=params.bound,
        checkpoints=checkpoints,
        final_share=params.final_share,
        futility_z=params.futility_z,
    )
    tv = facts.sampling_tv_bound
    p_lower = max(0.0, p_cs - tv)
    stop, certified = stopping_rule(
        p_lower=p_lower,
        potential=max(0.0, potential - tv),
        at_budget=samples == checkpoints[-1],
        certified_at=lambda p: _certified_points(p, params, facts),
        radius_at=lambda p: 0.0,
        tolerance=None,
        num_targets=len(params.targets),
    )
    return stop, p_cs, p_upper, p_lower, certified


def next_round_size(params: HybridSequentialParams, evidence: Evidence) -> int | None:
    """Size of the next round the stopping rule asks for, or None to stop."""
    cls, facts, rounds = _class_and_rounds(evidence, params)
    successes = sum(s.counts[cls] for s in rounds)
    return next_round(
        schedule(params), len(rounds), lambda done: _state(params, facts, successes, done)[0]
    )


def decide_hybrid_sequential(evidence: Evidence, params: HybridSequentialParams) -> CertifyResult:
    """Certify the target points from the rounds drawn (see the module docstring).

    Returns:
        The result, method ``"hybrid-sequential"``, claim ``"flagged"`` (safety filter)
        or ``"majority"``, the staircase ``radius_curve`` at the final ``p_lower``
        (zeros when abstaining) and :class:`HybridSequentialDetails`.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    cls, facts, rounds = _class_and_rounds(evidence, params)
    require_rounds(len(rounds))
    samples = schedule(params)[len(rounds) - 1]
    successes = sum(s.counts[cls] for s in rounds)
    stop, p_cs, p_upper, p_lower, certified = _state(params, facts, successes, samples)
    ok = bool(certified)
    curve, d_cert = hybrid_curve(p_lower, params, d_max=facts.d_max, facts=facts)
    if not ok:
        curve = np.zeros_like(curve)
    return CertifyResult(
        method="hybrid-sequential",
        claim="majority" if params.majority else "flagged",
        prediction=cls if ok else None,
        abstained=not ok,
        radius=float(curve[0]) if ok else 0.0,
        radius_curve=tuple(curve.tolist()),
        p_lower=p_lower,
        alpha=params.alpha,
        seed=evidence.seed,
        seconds=evidence.seconds,
        params=params,
        evidence=with_sequence_alpha(evidence, params.alpha),
        details=HybridSequentialDetails(
            samples_used=(params.n0 if params.majority else 0) + samples,
            rounds=len(rounds),
            stop=stop,
            sequence_lower=p_cs,
            sequence_upper=p_upper,
            d_certified=d_cert,
            targets_certified=certified,
            attacker=params.attacker,
        ),
    )

"""Sequential Gaussian certification: stop sampling as soon as the answer is known (pure half).

Anytime-valid certification (Voráček, NeurIPS 2024, arXiv 2406.17830; Horváth et al.,
ICLR 2022): after ``n0`` selection samples choose the class A (soundness rule 1), FRESH
samples are drawn in rounds that end at the checkpoints of
:func:`~smoothcert.stats.sequential.checkpoint_schedule` (``max_samples - n0`` estimation
samples at most, fixed in advance). After each round the loop bounds ``p_A`` with an
anytime-valid confidence sequence (:func:`~smoothcert.stats.sequential.sequence_lower`;
``"union"``: Clopper-Pearson at each of the ``K`` checkpoints at levels that sum to alpha,
by default half of alpha at the last checkpoint and the rest split evenly, so that a run
that spends its budget is nearly as strong as fixed n; ``"mixture"``: Robbins'
beta-binomial mixture). Its guarantee holds simultaneously at every
checkpoint, so the certificate stays valid at level alpha whatever rule decides when to
stop, including one that stops the first time the bound crosses. The certificate at the
stop is Cohen et al.'s: ``radius = sigma Phi^-1(p_lower)``
(:func:`~smoothcert.certificates.gaussian.gaussian_radius`), abstaining if ``p_lower <=
1/2`` or, in target mode, if no target radius is certified (so a certified result has
``radius >= r`` for some target ``r``).

Stopping rules (:func:`sequential_state`), with ``potential`` the largest ``p_lower`` the
run may still reach (:func:`sequence_bounds`: ``p_upper``, the best case at the budget,
and optionally a futility guess):

* target mode (``target_radii``): stop when every target ``r`` is decided: certified
  (``radius >= r``) or out of reach (``sigma Phi^-1(potential) < r``); "refuted" when no
  target is within reach;
* precision mode (``tolerance``): stop when the radius cannot grow by more than
  ``tolerance`` (``sigma Phi^-1(potential) - radius <= tolerance``); "refuted" when
  ``potential <= 1/2``;
* both: stop when the budget is spent (reason ``"budget"`` unless every target is
  certified); a run that spends it abstains unless its bound certifies.

:func:`stopping_rule` is the same for every method that certifies a lower bound on one
class probability (:mod:`smoothcert.decisions.hybrid_sequential` uses it with (d, r)
targets).

The stopping rule only decides how many samples to spend; soundness rests on the
confidence sequence alone, so re-deciding saved evidence with another alpha or bound
(``recertify``) is valid too. The record keeps every round's class counts.

Example:
    >>> from smoothcert.decisions.cohen import GaussianFacts
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> params = SequentialParams(sigma=0.5, n0=100, alpha=0.001, max_samples=100_100,
    ...                           target_radii=(0.5,))
    >>> schedule(params)[:3]
    (100, 200, 400)
    >>> ev = Evidence((StageEvidence("selection", n=100, alpha=0.0, counts=(0, 100)),
    ...                StageEvidence("round", n=100, alpha=0.0, counts=(0, 100))),
    ...               GaussianFacts(num_classes=2), seed=0)
    >>> res = decide_sequential(ev, params)
    >>> res.prediction, res.radius >= 0.5, res.details.stop, res.samples_used
    (1, True, 'decided', 200)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from smoothcert._validation import (
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability_level,
)
from smoothcert.certificates.gaussian import gaussian_radius
from smoothcert.decisions._common import (
    check_class,
    check_num_classes,
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
from smoothcert.stats.sequential import (
    SEQUENCE_BOUNDS,
    checkpoint_schedule,
    sequence_lower,
    sequence_upper,
)

T = TypeVar("T")

STOP_REASONS = ("decided", "converged", "refuted", "budget", "open")
"""Why a sequential run stopped: every target decided; the radius cannot grow by more than
the tolerance; nothing can be certified; the budget is spent; or ``"open"`` when the rule
would draw another round (seen only when saved evidence is re-decided with other settings)."""


@dataclass(frozen=True, kw_only=True)
class RoundFields:
    """The round schedule and confidence sequence of a sequential method's parameters.

    Attributes:
        first_round: estimation samples of the first round, >= 1.
        growth: each checkpoint is ``ceil(growth x)`` the previous one, > 1.
        bound: the confidence sequence, one of
            :data:`~smoothcert.stats.sequential.SEQUENCE_BOUNDS`.
        final_share: ``"union"``: the share of alpha spent at the last checkpoint, the
            rest split evenly over the others
            (:func:`~smoothcert.stats.sequential.union_levels`), in (0, 1).
        futility_z: None, or give up on a target (or on growing the radius) when even
            the current success rate plus this many standard errors would not reach it
            at the budget (:func:`sequence_bounds`); >= 0. Saves samples on inputs near
            a target, at the price of some certificates fixed n would give; never
            affects soundness.
    """

    first_round: int = 100
    growth: float = 2.0
    bound: str = "union"
    final_share: float = 0.5
    futility_z: float | None = None

    def check_round_fields(self) -> None:
        """Validate and normalise the round fields in place (the class is frozen).

        Raises:
            InvalidParameterError: naming the bad value and the valid range.
        """
        set_ = object.__setattr__
        set_(self, "first_round", check_int(self.first_round, name="first_round", minimum=1))
        growth = float(self.growth)
        if not (math.isfinite(growth) and growth > 1.0):
            raise InvalidParameterError(
                f"growth = {self.growth!r} is invalid; valid range: finite growth > 1"
            )
        set_(self, "growth", growth)
        set_(self, "bound", check_choice(self.bound, name="bound", choices=SEQUENCE_BOUNDS))
        share = float(self.final_share)
        if not (math.isfinite(share) and 0.0 < share < 1.0):
            raise InvalidParameterError(
                f"final_share = {self.final_share!r} is invalid; valid range: 0 < final_share < 1"
            )
        set_(self, "final_share", share)
        if self.futility_z is not None:
            set_(self, "futility_z", check_nonnegative(self.futility_z, name="futility_z"))


def round_stages(evidence: Evidence, checkpoints: tuple[int, ...]) -> tuple[StageEvidence, ...]:
    """The evidence's ``round`` stages, checked against the schedule (possibly none yet).

    Raises:
        InvalidParameterError: if a round's size is not the schedule's.
    """
    rounds = tuple(s for s in evidence.stages if s.role == "round")
    previous = 0
    for k, stage in enumerate(rounds):
        size = checkpoints[k] - previous if k < len(checkpoints) else None
        if stage.n != size:
            raise InvalidParameterError(
                f"round {k + 1} drew n = {stage.n} samples but the schedule says {size}; "
                "valid: parameters with the schedule of the evidence"
            )
        previous = checkpoints[k]
    return rounds


def require_rounds(rounds_done: int) -> None:
    """Raise unless at least one round was drawn (a decision needs one)."""
    if not rounds_done:
        raise InvalidParameterError(
            "evidence has no 'round' stage; valid: the evidence of a sequential run"
        )


def next_round(
    checkpoints: tuple[int, ...], rounds_done: int, stop_after: Callable[[int], str]
) -> int | None:
    """Size of the next round a stopping rule asks for, or None to stop.

    Args:
        checkpoints: the schedule.
        rounds_done: rounds drawn so far (0 before the first).
        stop_after: the stop reason (:data:`STOP_REASONS`) after a number of estimation
            samples; called with the last checkpoint reached.
    """
    if rounds_done == 0:
        return checkpoints[0]
    done = checkpoints[rounds_done - 1]
    if stop_after(done) != "open":
        return None
    return checkpoints[rounds_done] - done


def with_sequence_alpha(evidence: Evidence, alpha: float) -> Evidence:
    """The evidence with the sequence's alpha on its last stage and 0 on the others."""
    last = len(evidence.stages) - 1
    stages = tuple(
        dataclasses.replace(s, alpha=alpha if i == last else 0.0)
        for i, s in enumerate(evidence.stages)
    )
    return dataclasses.replace(evidence, stages=stages)


@register_payload
@dataclass(frozen=True, kw_only=True)
class SequentialParams(Payload, RoundFields):
    """Parameters of sequential Gaussian certification (``cohen-sequential``).

    Give ``target_radii`` (target mode) or ``tolerance`` (precision mode), not both. The
    round fields (``first_round``, ``growth``, ``bound``, ``final_share``, ``futility_z``)
    are those of :class:`RoundFields`.

    Attributes:
        sigma: noise standard deviation, > 0, in the units of the input tensor.
        n0: selection samples, >= 1 (they count towards ``max_samples``).
        alpha: failure probability of the certificate at any stopping time, in (0, 1).
        max_samples: most forward samples per input, selection included, > n0.
        target_radii: radii to decide, each >= 0, in input units (sorted, no duplicates).
        tolerance: precision mode: stop when the radius cannot grow by more than this
            (input units, > 0).
    """

    kind = "gaussian_sequential"
    sigma: float
    n0: int
    alpha: float
    max_samples: int
    target_radii: tuple[float, ...] = ()
    tolerance: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "sigma", check_positive(self.sigma, name="sigma"))
        set_(self, "n0", check_int(self.n0, name="n0", minimum=1))
        set_(self, "alpha", check_probability_level(self.alpha))
        set_(self, "max_samples", check_int(self.max_samples, name="max_samples", minimum=1))
        if self.max_samples <= self.n0:
            raise InvalidParameterError(
                f"max_samples = {self.max_samples} is invalid; valid range: max_samples > "
                f"n0 = {self.n0} (the selection samples count towards it)"
            )
        radii = self.target_radii
        if isinstance(radii, (int, float)):
            radii = (radii,)
        radii = tuple(check_nonnegative(r, name="target_radius") for r in radii)
        set_(self, "target_radii", tuple(sorted(set(radii))))
        if self.tolerance is not None:
            set_(self, "tolerance", check_positive(self.tolerance, name="tolerance"))
        if bool(self.target_radii) == (self.tolerance is not None):
            raise InvalidParameterError(
                f"target_radii = {self.target_radii!r} with tolerance = {self.tolerance!r} is "
                "invalid; valid: target radii (target mode) or a tolerance (precision mode), "
                "exactly one of them"
            )
        self.check_round_fields()

    def forward_samples(self) -> int:
        """Most noisy samples (forward passes) one input can use."""
        return self.max_samples


@register_payload
@dataclass(frozen=True, kw_only=True)
class SequentialDetails(Details):
    """What a sequential run spent and why it stopped.

    Attributes:
        samples_used: forward samples drawn, selection included.
        rounds: estimation rounds drawn.
        stop: one of :data:`STOP_REASONS`.
        sequence_upper: the confidence sequence's upper bound on ``p_A`` at the stop.
        targets_certified: the target radii certified (target mode), else ``()``.
    """

    kind = "sequential_details"
    samples_used: int
    rounds: int
    stop: str
    sequence_upper: float
    targets_certified: tuple[float, ...] = ()


@dataclass(frozen=True)
class SequentialState:
    """The loop's view after some rounds (see :func:`sequential_state`).

    Attributes:
        successes: estimation samples of class A so far.
        samples: estimation samples so far (a checkpoint of the schedule).
        p_lower: the confidence sequence's lower bound on ``p_A``.
        p_upper: its upper bound.
        radius: ``sigma Phi^-1(p_lower)``, 0 when ``p_lower <= 1/2``.
        stop: one of :data:`STOP_REASONS`.
        targets_certified: the target radii with ``radius >= r`` (and ``radius > 0``).
    """

    successes: int
    samples: int
    p_lower: float
    p_upper: float
    radius: float
    stop: str
    targets_certified: tuple[float, ...]


def schedule(params: SequentialParams) -> tuple[int, ...]:
    """Cumulative estimation samples at the checkpoints (fixed by the parameters alone)."""
    return checkpoint_schedule(
        params.max_samples - params.n0, first=params.first_round, growth=params.growth
    )


def _radius(p: float, sigma: float) -> float:
    return float(gaussian_radius(p, sigma=sigma)) if p > 0.5 else 0.0


def sequence_bounds(
    successes: int,
    samples: int,
    *,
    alpha: float,
    bound: str,
    checkpoints: tuple[int, ...],
    final_share: float,
    futility_z: float | None = None,
) -> tuple[float, float, float]:
    """The confidence sequence's ``(p_lower, p_upper)`` after ``samples``, and the potential.

    The potential is the largest ``p_lower`` the run may still reach, the smallest of:
    ``p_upper``; the lower bound at the budget (the last checkpoint) if every remaining
    sample were a success; and, with ``futility_z``, the lower bound at the budget if
    the success rate there were the current rate plus ``futility_z`` standard errors.
    The last is a guess, not a bound: a stopping rule that uses it gives up on inputs
    that might still have been certified (never on soundness).

    Raises:
        InvalidParameterError: if ``samples`` is not a checkpoint or ``successes`` is out
            of range.
    """
    if samples not in checkpoints:
        raise InvalidParameterError(
            f"samples = {samples} is invalid; valid: a checkpoint of the schedule "
            f"{checkpoints[:4]}... (evidence of another configuration?)"
        )
    budget = checkpoints[-1]
    kw: dict[str, Any] = {
        "alpha": alpha,
        "bound": bound,
        "checkpoints": checkpoints,
        "final_share": final_share,
    }

    def lower(k: int, n: int) -> float:
        return float(sequence_lower(k, n, **kw))

    upper = float(sequence_upper(successes, samples, **kw))
    potential = min(upper, lower(successes + budget - samples, budget))
    if futility_z is not None:
        rate = successes / samples
        optimistic = min(1.0, rate + futility_z * math.sqrt(rate * (1.0 - rate) / samples))
        potential = min(potential, lower(min(budget, math.ceil(optimistic * budget)), budget))
    return lower(successes, samples), upper, potential


def stopping_rule(
    *,
    p_lower: float,
    potential: float,
    at_budget: bool,
    certified_at: Callable[[float], tuple[T, ...]],
    radius_at: Callable[[float], float],
    tolerance: float | None,
    num_targets: int,
) -> tuple[str, tuple[T, ...]]:
    """The stop reason (:data:`STOP_REASONS`) and the targets certified at ``p_lower``.

    At the budget the reason is ``"budget"``, unless every target is certified.

    Args:
        p_lower: the lower bound now.
        potential: the largest ``p_lower`` the run could still reach.
        at_budget: whether the budget is spent.
        certified_at: the targets a lower bound certifies (monotone in it; empty in
            precision mode).
        radius_at: the radius a lower bound certifies (precision mode).
        tolerance: precision mode's tolerance, or None in target mode.
        num_targets: the number of targets (0 in precision mode).
    """
    certified = certified_at(p_lower)
    if at_budget:
        all_certified = tolerance is None and len(certified) == num_targets
        return ("decided" if all_certified else "budget"), certified
    if tolerance is None:
        reachable = certified_at(potential)
        if not reachable:
            stop = "refuted"
        else:
            stop = "decided" if set(reachable) <= set(certified) else "open"
    elif potential <= 0.5:
        stop = "refuted"
    else:
        stop = "converged" if radius_at(potential) - radius_at(p_lower) <= tolerance else "open"
    return stop, certified


def sequential_state(params: SequentialParams, successes: int, samples: int) -> SequentialState:
    """Bound ``p_A`` after ``samples`` estimation samples and apply the stopping rule.

    Args:
        params: the :class:`SequentialParams`.
        successes: estimation samples of the selected class so far, 0..samples.
        samples: estimation samples so far, a checkpoint of :func:`schedule`.

    Returns:
        The :class:`SequentialState` (the rules are in the module docstring).

    Raises:
        InvalidParameterError: if ``samples`` is not a checkpoint or ``successes`` is out
            of range.
    """
    checkpoints = schedule(params)
    p_lower, p_upper, potential = sequence_bounds(
        successes,
        samples,
        alpha=params.alpha,
        bound=params.bound,
        checkpoints=checkpoints,
        final_share=params.final_share,
        futility_z=params.futility_z,
    )

    def radius_at(p: float) -> float:
        return _radius(p, params.sigma)

    def certified_at(p: float) -> tuple[float, ...]:
        radius = radius_at(p)
        return tuple(r for r in params.target_radii if radius > 0 and radius >= r)

    stop, certified = stopping_rule(
        p_lower=p_lower,
        potential=potential,
        at_budget=samples == checkpoints[-1],
        certified_at=certified_at,
        radius_at=radius_at,
        tolerance=params.tolerance,
        num_targets=len(params.target_radii),
    )
    return SequentialState(
        successes, samples, p_lower, p_upper, radius_at(p_lower), stop, certified
    )


def _selected(evidence: Evidence, params: SequentialParams) -> tuple[int, np.ndarray, int]:
    facts = require_facts(evidence, GaussianFacts, method="cohen-sequential")
    selection = require_stage(evidence, "selection", n=params.n0, method="cohen-sequential")
    rounds = round_stages(evidence, schedule(params))
    check_num_classes((selection, *rounds), facts.num_classes)
    top = int(np.argmax(selection.counts))
    check_class(top, facts.num_classes, name="selected class")
    totals = np.zeros(facts.num_classes, dtype=np.int64)
    for stage in rounds:
        totals += np.asarray(stage.counts, dtype=np.int64)
    return top, totals, len(rounds)


def next_round_size(params: SequentialParams, evidence: Evidence) -> int | None:
    """Size of the next round the stopping rule asks for, or None to stop.

    ``evidence`` holds the selection stage and the rounds drawn so far (none yet before
    the first round).
    """
    top, totals, rounds = _selected(evidence, params)
    return next_round(
        schedule(params),
        rounds,
        lambda done: sequential_state(params, int(totals[top]), done).stop,
    )


def decide_sequential(evidence: Evidence, params: SequentialParams) -> CertifyResult:
    """Certify from the selection stage and the rounds drawn (see the module docstring).

    Args:
        evidence: a selection stage of ``params.n0`` samples, then rounds (role
            ``"round"``) with the sizes of :func:`schedule`.
        params: the :class:`SequentialParams`.

    Returns:
        The result, method ``"cohen-sequential"``, claim ``"majority"``, radius
        ``sigma Phi^-1(p_lower)`` in input units, and :class:`SequentialDetails`.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    top, totals, rounds = _selected(evidence, params)
    require_rounds(rounds)
    samples = schedule(params)[rounds - 1]
    state = sequential_state(params, int(totals[top]), samples)
    # target mode certifies only at a target (radius >= r); precision mode any radius > 0
    certified = state.radius > 0 and (bool(state.targets_certified) or not params.target_radii)
    return CertifyResult(
        method="cohen-sequential",
        claim="majority",
        prediction=top if certified else None,
        abstained=not certified,
        radius=state.radius if certified else 0.0,
        p_lower=state.p_lower,
        alpha=params.alpha,
        seed=evidence.seed,
        seconds=evidence.seconds,
        params=params,
        evidence=with_sequence_alpha(evidence, params.alpha),
        details=SequentialDetails(
            samples_used=params.n0 + samples,
            rounds=rounds,
            stop=state.stop,
            sequence_upper=state.p_upper,
            targets_certified=state.targets_certified,
        ),
    )

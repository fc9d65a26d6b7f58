"""Checks shared by the decision modules (pure)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from smoothcert._validation import check_int, check_positive, check_probability_level
from smoothcert.errors import InvalidParameterError
from smoothcert.records import CertifyResult, Evidence, Facts, StageEvidence


def require_stage(evidence: Evidence, role: str, *, n: int, method: str) -> StageEvidence:
    """Return the ``role`` stage of ``evidence`` with counts, checking it drew ``n`` samples.

    Raises:
        InvalidParameterError: if the stage is missing, has no class counts, or its
            sample size differs from the parameters' (evidence of another configuration).
    """
    stage = evidence.stage(role)
    if stage is None or not stage.counts:
        roles = [s.role for s in evidence.stages]
        raise InvalidParameterError(
            f"evidence stages {roles} have no {role!r} stage with class counts; valid: "
            f"the evidence of a {method!r} run"
        )
    if stage.n != n:
        raise InvalidParameterError(
            f"the {role} stage drew n = {stage.n} samples but the parameters say {n}; valid: "
            "parameters with the sample sizes of the evidence"
        )
    return stage


def require_no_stage(evidence: Evidence, role: str, *, method: str) -> None:
    """Reject evidence that has a ``role`` stage the method does not use."""
    if evidence.stage(role) is not None:
        raise InvalidParameterError(
            f"evidence has a {role!r} stage, which method {method!r} does not use; valid: "
            f"the evidence of a {method!r} run"
        )


def check_class(cls: int, num_classes: int, *, name: str) -> None:
    """Check ``0 <= cls < num_classes``."""
    if not 0 <= cls < num_classes:
        raise InvalidParameterError(
            f"{name} = {cls} is invalid; valid range: 0 <= {name} <= {num_classes - 1}"
        )


F = TypeVar("F", bound=Facts)


def require_facts(evidence: Evidence, cls: type[F], *, method: str) -> F:
    """Return the evidence's facts, checking they are of type ``cls``."""
    if not isinstance(evidence.facts, cls):
        raise InvalidParameterError(
            f"evidence facts of kind {evidence.facts.kind!r} are invalid for method "
            f"{method!r}; valid: {cls.kind!r} facts"
        )
    return evidence.facts


def check_num_classes(stages: Sequence[StageEvidence], num_classes: int) -> None:
    """Check every stage counts ``num_classes`` classes."""
    for stage in stages:
        if len(stage.counts) != num_classes:
            raise InvalidParameterError(
                f"the {stage.role} stage counts {len(stage.counts)} classes; valid: "
                f"num_classes = {num_classes} counts"
            )


def with_alpha(evidence: Evidence, spent: Mapping[str, float]) -> Evidence:
    """The evidence with each stage's alpha set to what the decision spent on it (0 if none)."""
    stages = tuple(dataclasses.replace(s, alpha=spent.get(s.role, 0.0)) for s in evidence.stages)
    return dataclasses.replace(evidence, stages=stages)


def estimation_result(
    evidence: Evidence,
    params: Any,
    *,
    method: str,
    top: int,
    certified: bool,
    radius: float,
    p_lower: float,
    claim: str = "majority",
    **fields: Any,
) -> CertifyResult:
    """The result of a decision that spends all of ``params.alpha`` on its estimation stage.

    Certified: ``top`` with ``radius``; else an abstention (prediction None, radius 0).

    Args:
        evidence: the evidence decided on (its estimation stage is marked with
            ``params.alpha``).
        params: the method's parameters (with ``alpha``).
        method: the registered method name.
        top: the class bounded (the majority or the flagged class).
        certified: whether the certificate holds.
        radius: the certified radius (used only when ``certified``).
        p_lower: the lower confidence bound on the probability of ``top``.
        claim: the record's claim.
        **fields: further :class:`~smoothcert.records.CertifyResult` fields
            (``p_upper``, ``radius_unit``, ``details``).

    Returns:
        The :class:`~smoothcert.records.CertifyResult`.
    """
    return CertifyResult(
        method=method,
        claim=claim,
        prediction=top if certified else None,
        abstained=not certified,
        radius=radius if certified else 0.0,
        p_lower=p_lower,
        alpha=params.alpha,
        seed=evidence.seed,
        seconds=evidence.seconds,
        params=params,
        evidence=with_alpha(evidence, {"estimation": params.alpha}),
        **fields,
    )


def check_gaussian_sampling(params: Any) -> None:
    """Validate (and normalise) ``sigma``, ``n0``, ``n`` and ``alpha`` of a frozen params class.

    The sampling fields every Gaussian parameter class shares: ``sigma > 0`` in input
    units, ``n0 >= 1`` selection and ``n >= 1`` estimation samples, ``0 < alpha < 1``.

    Raises:
        InvalidParameterError: naming the bad value and the valid range.
    """
    set_ = object.__setattr__
    set_(params, "sigma", check_positive(params.sigma, name="sigma"))
    set_(params, "n0", check_int(params.n0, name="n0", minimum=1))
    set_(params, "n", check_int(params.n, name="n", minimum=1))
    set_(params, "alpha", check_probability_level(params.alpha))


def check_variance_samples(n: int, bound: str, *, name: str) -> None:
    """Reject the empirical Bernstein bound (``bound == "bernstein"``) with fewer than 2 samples.

    Raises:
        InvalidParameterError: naming ``n``, the bound option ``name`` and the valid range.
    """
    if bound == "bernstein" and n < 2:
        raise InvalidParameterError(
            f"n = {n} is invalid with {name} = 'bernstein'; valid range: n >= 2 (the sample "
            f"variance needs two samples), or another {name}"
        )

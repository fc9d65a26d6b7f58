"""Validated records of a result file, and the reader of version-1 records.

A record line is ``{"type": "record", "index", "label", "correct", **CertifyResult}``.
Readers never trust it: :func:`validate_record` rebuilds the
:class:`~smoothcert.records.CertifyResult` (types and ranges), re-decides it from its
own evidence with the method's pure decision and checks that the stored prediction,
abstention and radius are what the evidence certifies, and recomputes ``correct`` from
the label and the prediction (a stored ``correct`` that disagrees is an error). A
record that fails raises a one-line
:class:`~smoothcert.errors.ResultStoreError` naming the file, the line and the field.

Version-1 records (smoothcert 0.1: Gaussian runs only, counts in ``counts_selection`` /
``counts_estimation`` and an untyped ``params``) are upgraded to version 2 by
:func:`upgrade_v1_record` first.

Example:
    >>> from smoothcert.decisions.cohen import GaussianFacts, GaussianParams, decide_cohen
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> ev = Evidence((StageEvidence("selection", n=10, alpha=0.0, counts=(0, 10)),
    ...                StageEvidence("estimation", n=100, alpha=0.0, counts=(1, 99))),
    ...               GaussianFacts(num_classes=2), seed=0)
    >>> res = decide_cohen(ev, GaussianParams(sigma=0.5, n0=10, n=100, alpha=0.01))
    >>> line = {"type": "record", "index": 3, "label": 1, "correct": True, **res.to_dict()}
    >>> validate_record(line, where="f.jsonl: line 2")["correct"]
    True
    >>> validate_record({**line, "radius": 1e9}, where="f.jsonl: line 2")
    Traceback (most recent call last):
    ...
    smoothcert.errors.ResultStoreError: f.jsonl: line 2: field radius = 1000000000.0 is not what its evidence certifies (0.758...); the record was altered or written by a faulty worker
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from smoothcert.errors import InvalidParameterError, ResultStoreError
from smoothcert.records import CertifyResult

RECORD_KEYS = ("type", "index", "label", "correct")
"""Keys of a record line besides the fields of :class:`~smoothcert.records.CertifyResult`."""

_V1_METHODS = {"cohen": "cohen", "cohen_top2": "cohen-top2"}


def _fail(where: str, message: str) -> ResultStoreError:
    return ResultStoreError(f"{where}: {message}")


def record_line(result: CertifyResult, *, index: int, label: int) -> dict[str, Any]:
    """The record line of one example: index, label, ``correct`` and the result's fields.

    ``correct`` is True iff the record certifies (did not abstain) and its prediction is
    the label: for a safety filter (claim ``"flagged"``) a certified flag on a pair whose
    label is the target.
    """
    correct = (not result.abstained) and result.prediction == int(label)
    return {
        "type": "record",
        "index": int(index),
        "label": int(label),
        "correct": bool(correct),
        **result.to_dict(),
    }


def result_of(record: Mapping[str, Any], *, where: str) -> CertifyResult:
    """Rebuild the :class:`CertifyResult` of a (version-2) record line.

    Raises:
        ResultStoreError: naming ``where`` and the invalid field.
    """
    fields = {k: v for k, v in record.items() if k not in RECORD_KEYS}
    try:
        return CertifyResult.from_dict(fields)
    except (InvalidParameterError, KeyError, TypeError, ValueError) as err:
        raise _fail(where, f"invalid record ({err})") from None


REL_TOLERANCE = 1e-6
"""Relative tolerance when a stored float is compared with its re-decided value: the
bounds of earlier versions differ in the last digits (e.g. the Clopper-Pearson margin
added in version 2 moves radii by a relative ~1e-9); any real alteration is far larger."""


def _same(stored: Any, fresh: Any) -> bool:
    if isinstance(fresh, float) and isinstance(stored, (int, float)) and not isinstance(stored, bool):
        return math.isclose(float(stored), fresh, rel_tol=REL_TOLERANCE, abs_tol=1e-12)
    return bool(stored == fresh)


def validate_record(record: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Check one version-2 record line; return it as a new dict.

    Args:
        record: the parsed line.
        where: ``"<file>: line <n>"`` for messages.

    Returns:
        The record as a new dict.

    Raises:
        ResultStoreError: on a wrong type or range (index, label, correct, any
            CertifyResult field), an unknown method, a prediction, abstention or radius
            that its own evidence does not certify, or a ``correct`` that is not
            ``not abstained and prediction == label``.
    """
    from smoothcert.methods.registry import get_method

    for key in ("index", "label"):
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(where, f"field {key} = {value!r} is invalid; valid: an integer >= 0")
    if not isinstance(record.get("correct"), bool):
        raise _fail(
            where, f"field correct = {record.get('correct')!r} is invalid; valid: true or false"
        )
    result = result_of(record, where=where)
    try:
        spec = get_method(result.method)
        spec.check_params(result.params)
        fresh = spec.decide(result.evidence, result.params)
    except InvalidParameterError as err:
        raise _fail(where, f"record cannot be re-decided from its evidence ({err})") from None
    for name in ("prediction", "abstained", "radius", "claim", "p_lower"):
        stored, again = getattr(result, name), getattr(fresh, name)
        if not _same(stored, again):
            raise _fail(
                where,
                f"field {name} = {stored!r} is not what its evidence certifies ({again!r}); "
                "the record was altered or written by a faulty worker",
            )
    if (result.radius_curve is None) != (fresh.radius_curve is None) or (
        fresh.radius_curve is not None
        and result.radius_curve is not None
        and not all(_same(a, b) for a, b in zip(result.radius_curve, fresh.radius_curve, strict=False))
    ):
        raise _fail(where, "field radius_curve is not what its evidence certifies")
    correct = (not result.abstained) and result.prediction == record["label"]
    if record["correct"] is not correct:
        raise _fail(
            where,
            f"field correct = {record['correct']!r} contradicts label = {record['label']} and "
            f"prediction = {result.prediction!r} (abstained = {result.abstained}); valid: "
            f"correct = {str(correct).lower()}",
        )
    return dict(record)


def upgrade_v1_record(record: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Turn a version-1 record (smoothcert 0.1, Gaussian runs) into a version-2 line.

    Raises:
        ResultStoreError: if the record is not a version-1 Gaussian record.
    """
    from smoothcert.decisions.cohen import GaussianFacts, GaussianParams
    from smoothcert.records import Evidence, StageEvidence

    method = _V1_METHODS.get(record.get("method"))  # type: ignore[arg-type]
    if method is None:
        raise _fail(
            where,
            f"field method = {record.get('method')!r} is invalid in a version-1 file; valid: "
            f"{sorted(_V1_METHODS)}",
        )
    try:
        params = record["params"]
        counts_sel = tuple(record["counts_selection"])
        counts_est = tuple(record["counts_estimation"])
        gp = GaussianParams(
            sigma=params["sigma"], n0=record["n0"], n=record["n"], alpha=record["alpha"]
        )
        evidence = Evidence(
            stages=(
                StageEvidence("selection", n=gp.n0, alpha=0.0, counts=counts_sel),
                StageEvidence("estimation", n=gp.n, alpha=gp.alpha, counts=counts_est),
            ),
            facts=GaussianFacts(num_classes=len(counts_est)),
            seed=record.get("seed"),
            seconds=float(record.get("seconds", 0.0)),
        )
    except (InvalidParameterError, KeyError, TypeError, ValueError) as err:
        raise _fail(where, f"invalid version-1 record ({err})") from None
    out: dict[str, Any] = {key: record.get(key) for key in RECORD_KEYS}
    out.update(
        method=method,
        claim="majority",
        prediction=record.get("prediction"),
        abstained=record.get("abstained"),
        radius=record.get("radius"),
        radius_unit="l2",
        p_lower=record.get("p_lower"),
        p_upper=record.get("p_upper"),
        alpha=gp.alpha,
        seed=record.get("seed"),
        seconds=record.get("seconds"),
        params=gp.to_dict(),
        evidence=evidence.to_dict(),
        details=None,
    )
    return out

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
    smoothcert.errors.ResultStoreError: f.jsonl: line 2: field radius = 1000000000.0 is not ...
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


def _first_difference(stored: Any, fresh: Any, path: str) -> str | None:
    """The first field where a stored record differs from its re-decided one, or None.

    Floats are compared with :data:`REL_TOLERANCE`; wall-clock ``seconds`` are skipped.
    """
    if isinstance(fresh, dict) and isinstance(stored, dict):
        for key in sorted(set(fresh) | set(stored)):
            if key == "seconds":
                continue
            found = _first_difference(stored.get(key), fresh.get(key), f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(fresh, list) and isinstance(stored, list):
        if len(stored) != len(fresh):
            return path
        for i, (a, b) in enumerate(zip(stored, fresh, strict=True)):
            found = _first_difference(a, b, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    numeric = (int, float)
    if (
        isinstance(fresh, float)
        and isinstance(stored, numeric)
        and not isinstance(stored, bool)
        and math.isclose(float(stored), fresh, rel_tol=REL_TOLERANCE, abs_tol=1e-12)
    ):
        return None
    return None if type(stored) is type(fresh) and stored == fresh else path


def _check_fields(record: Mapping[str, Any], where: str) -> None:
    for key in ("index", "label"):
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(where, f"field {key} = {value!r} is invalid; valid: an integer >= 0")
    if not isinstance(record.get("correct"), bool):
        raise _fail(
            where, f"field correct = {record.get('correct')!r} is invalid; valid: true or false"
        )


def _redecide(result: CertifyResult, where: str) -> CertifyResult:
    from smoothcert.methods.registry import get_method

    try:
        spec = get_method(result.method)
        spec.check_params(result.params)
        return spec.decide(result.evidence, result.params)
    except InvalidParameterError as err:
        raise _fail(where, f"record cannot be re-decided from its evidence ({err})") from None


def validate_record(
    record: Mapping[str, Any], *, where: str, expected: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Check one version-2 record line; return it as a new dict.

    The record is rebuilt, re-decided from its own evidence, and every field of the
    re-decided result (prediction, claim, radius, the curve r(d), the bounds, alpha, the
    details, the stages' alphas) must equal the stored one (floats within
    :data:`REL_TOLERANCE`; ``seconds`` is not compared). With ``expected`` (the file's
    ``{"method", "params"}``) the record must also be of the file's method with the
    file's parameters, so a record spliced in from another run is refused.

    Args:
        record: the parsed line.
        where: ``"<file>: line <n>"`` for messages.
        expected: the method name and parameter dict (with ``"kind"``) of the file.

    Returns:
        The record as a new dict.

    Raises:
        ResultStoreError: on a wrong type or range (index, label, correct, any
            CertifyResult field), an unknown method, another method or parameters than
            the file's, a field that its own evidence does not certify, or a ``correct``
            that is not ``not abstained and prediction == label``.
    """
    _check_fields(record, where)
    result = result_of(record, where=where)
    if expected is not None:
        if result.method != expected["method"]:
            raise _fail(
                where,
                f"field method = {result.method!r} differs from the file's method "
                f"{expected['method']!r}; valid: records of the run the header describes",
            )
        field = _first_difference(result.params.to_dict(), dict(expected["params"]), "params")
        if field is not None:
            raise _fail(
                where,
                f"field {field} differs from the file's configuration; valid: records of "
                "the run the header describes",
            )
    fresh = _redecide(result, where)
    stored = {k: v for k, v in record.items() if k not in RECORD_KEYS}
    again = fresh.to_dict()
    field = _first_difference(stored, again, "record")
    if field is not None:
        name = field.removeprefix("record.")
        top = "." not in name and "[" not in name
        shown = f" = {stored.get(name)!r}" if top else ""
        certified = f" ({again.get(name)!r})" if top else ""
        raise _fail(
            where,
            f"field {name}{shown} is not what its evidence certifies{certified}; the record "
            "was altered or written by a faulty worker",
        )
    correct = (not result.abstained) and result.prediction == record["label"]
    if record["correct"] is not correct:
        raise _fail(
            where,
            f"field correct = {record['correct']!r} contradicts label = {record['label']} and "
            f"prediction = {result.prediction!r} (abstained = {result.abstained}); valid: "
            f"correct = {str(correct).lower()}",
        )
    return dict(record)


V1_P_LOWER_TOLERANCE = 1e-8
"""Absolute difference allowed between a version-1 record's p_lower and the current,
more conservative Clopper-Pearson bound of the same counts (the margin is ~1e-9)."""


def upgrade_v1_record(record: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Turn a version-1 record (smoothcert 0.1, Gaussian runs) into a version-2 line.

    The counts are re-decided with the current decision (whose Clopper-Pearson bound is
    conservative in floating point; it differs from version 1 by about 1e-9, which may
    move a radius very close to the abstention threshold): the stored ``p_lower`` must
    match within :data:`V1_P_LOWER_TOLERANCE`, and the returned line holds the fresh
    certificate, with ``correct`` recomputed.

    Raises:
        ResultStoreError: if the record is not a version-1 Gaussian record, or its
            ``p_lower`` is not what its counts give.
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
    from smoothcert.methods.registry import get_method

    _check_fields(record, where)
    fresh = get_method(method).decide(evidence, gp)
    stored_p = record.get("p_lower")
    if (
        isinstance(stored_p, bool)
        or not isinstance(stored_p, (int, float))
        or abs(float(stored_p) - fresh.p_lower) > V1_P_LOWER_TOLERANCE
    ):
        raise _fail(
            where,
            f"field p_lower = {stored_p!r} is not what its counts give ({fresh.p_lower!r}); "
            "the record was altered",
        )
    # The current decision of the same counts (its bound is conservative in floating
    # point; the version-1 one could exceed alpha by ~1e-12 relative).
    return record_line(fresh, index=record["index"], label=record["label"])

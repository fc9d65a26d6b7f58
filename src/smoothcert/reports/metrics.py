"""Certified accuracy, average certified radius (ACR) and abstention rate.

Definitions (Cohen et al. 2019, arXiv 1902.02918, Section 4; ACR as in Zhai et al.
2020, arXiv 2001.02378): over the N examples of a run,

* certified accuracy at radius r = #{correct, not abstained, radius >= r} / N;
  at r = 0 it is the accuracy of the smoothed classifier;
* ACR = sum of the radii of correct, non-abstained examples / N (incorrect and
  abstained examples count 0);
* abstention rate = #{abstained} / N.

Radii are in the L2 units of the certified inputs (pixels in [0, 1] for the bundled
datasets).

Example:
    >>> records = [
    ...     {"index": 0, "label": 1, "correct": True, "abstained": False, "radius": 0.5},
    ...     {"index": 1, "label": 2, "correct": True, "abstained": False, "radius": 0.2},
    ...     {"index": 2, "label": 0, "correct": False, "abstained": False, "radius": 0.9},
    ...     {"index": 3, "label": 0, "correct": False, "abstained": True, "radius": 0.0},
    ... ]
    >>> certified_accuracy(records, [0.0, 0.25, 0.5, 0.75]).tolist()
    [0.5, 0.25, 0.25, 0.0]
    >>> round(average_certified_radius(records), 6), abstain_rate(records)
    (0.175, 0.25)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert._validation import check_nonnegative
from smoothcert.errors import InvalidParameterError
from smoothcert.reports.results import ResultFile

__all__ = [
    "Summary",
    "abstain_rate",
    "average_certified_radius",
    "certified_accuracy",
    "default_radii",
    "parse_radii",
    "summarize",
]

Records = ResultFile | Sequence[Mapping[str, Any]]


def _columns(records: Records) -> tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_]]:
    """Return (radius, certified-and-correct, abstained) arrays; reject empty input."""
    if not isinstance(records, ResultFile):
        records = ResultFile(path=Path("<records>"), header={}, records=[dict(r) for r in records])
    if len(records) == 0:
        raise InvalidParameterError(
            f"{records.label or 'records'} has 0 records; valid: at least 1 record"
        )
    return records.radii, records.certified, records.abstained


def _check_radii(radii: Any) -> NDArray[np.float64]:
    try:
        arr = np.asarray(radii, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"radii = {radii!r} is invalid; valid: finite numbers >= 0"
        ) from None
    if arr.ndim > 1 or arr.size == 0:
        raise InvalidParameterError(
            f"radii = {radii!r} is invalid; valid: a non-empty list of finite numbers >= 0"
        )
    for value in arr.reshape(-1):
        check_nonnegative(float(value), name="radius")
    return arr


def certified_accuracy(records: Records, radii: Any) -> Any:
    """Fraction of examples that are correct, not abstained and certified at radius r.

    Args:
        records: a :class:`ResultFile` or a sequence of record dicts (each with
            ``correct``, ``abstained`` and ``radius``).
        radii: a radius or a 1-D list of radii, finite and >= 0 (L2, input units).

    Returns:
        A float for a scalar radius, else a float64 array with one entry per radius.

    Raises:
        InvalidParameterError: on empty records or invalid radii.

    Example:
        >>> certified_accuracy([{"correct": True, "abstained": False, "radius": 1.0,
        ...                      "index": 0, "label": 0}], 1.0)
        1.0
    """
    radius, certified, _ = _columns(records)
    grid = _check_radii(radii)
    hits = certified[None, :] & (radius[None, :] >= grid.reshape(-1)[:, None])
    out = hits.mean(axis=1)
    return float(out[0]) if grid.ndim == 0 else out


def average_certified_radius(records: Records) -> float:
    """Average certified radius: mean of ``radius`` over all examples, 0 if wrong/abstained.

    Args:
        records: a :class:`ResultFile` or a sequence of record dicts.

    Returns:
        The ACR in L2 input units.

    Raises:
        InvalidParameterError: on empty records.
    """
    radius, certified, _ = _columns(records)
    return float(np.where(certified, radius, 0.0).mean())


def abstain_rate(records: Records) -> float:
    """Fraction of examples on which the smoothed classifier abstained.

    Raises:
        InvalidParameterError: on empty records.
    """
    _, _, abstained = _columns(records)
    return float(abstained.mean())


def default_radii(max_radius: float, *, max_rows: int = 10) -> NDArray[np.float64]:
    """A round radius grid from 0 that reaches ``max_radius`` in at most ``max_rows`` steps.

    The step is the smallest of 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, ... that fits.

    Example:
        >>> default_radii(1.6).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
        >>> default_radii(0.0).tolist()
        [0.0]
    """
    max_radius = check_nonnegative(max_radius, name="max_radius")
    if max_radius == 0:
        return np.zeros(1)
    candidates = [0.05] + [m * 10.0**e for e in range(-1, 16) for m in (1.0, 2.5, 5.0)]
    fits = (c for c in candidates if math.ceil(max_radius / c - 1e-9) <= max_rows)
    step = next(fits, max_radius / max_rows)
    steps = max(1, math.ceil(max_radius / step - 1e-9))
    return np.round(step * np.arange(steps + 1), 10)


def parse_radii(text: str) -> NDArray[np.float64]:
    """Parse a comma-separated radius list such as ``"0,0.25,0.5"``.

    Raises:
        InvalidParameterError: naming the bad entry.

    Example:
        >>> parse_radii("0, 0.25,0.5").tolist()
        [0.0, 0.25, 0.5]
    """
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            raise InvalidParameterError(
                f"radius = {item!r} is invalid; valid: comma-separated numbers >= 0, "
                "e.g. 0,0.25,0.5"
            ) from None
        values.append(check_nonnegative(value, name="radius"))
    return np.asarray(values, dtype=np.float64)


@dataclass(frozen=True)
class Summary:
    """Headline numbers of one result file.

    Attributes:
        label: the file's label.
        num_records: number of examples.
        radii: the radius grid.
        certified_accuracy: certified accuracy at each radius (NaN-free; empty
            files have an empty array).
        acr: average certified radius (None for an empty file).
        abstain_rate: fraction abstained (None for an empty file).
    """

    label: str
    num_records: int
    radii: NDArray[np.float64]
    certified_accuracy: NDArray[np.float64]
    acr: float | None
    abstain_rate: float | None


def summarize(result: ResultFile, radii: Any) -> Summary:
    """Certified accuracy at ``radii``, ACR and abstention rate of one file.

    An empty file (header only) gives empty/None entries instead of an error.

    Args:
        result: the loaded file.
        radii: radius grid (finite, >= 0).

    Returns:
        A :class:`Summary`.
    """
    grid = _check_radii(radii).reshape(-1)
    if len(result) == 0:
        return Summary(result.label, 0, grid, np.zeros(0), None, None)
    return Summary(
        label=result.label,
        num_records=len(result),
        radii=grid,
        certified_accuracy=np.asarray(certified_accuracy(result, grid), dtype=np.float64),
        acr=average_certified_radius(result),
        abstain_rate=abstain_rate(result),
    )

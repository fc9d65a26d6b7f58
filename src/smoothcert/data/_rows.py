"""Row selection shared by the multi-part datasets: check positions, select per-row fields.

Used by :mod:`~smoothcert.data.listings` and :mod:`~smoothcert.data.tabular`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from smoothcert.data._assets import readonly
from smoothcert.errors import InvalidParameterError

D = TypeVar("D")


def check_rows(rows: Any, n: int) -> NDArray[np.int64]:
    """Row positions ``rows`` (ints, an integer array or a slice) of ``n`` rows, as int64.

    Raises:
        InvalidParameterError: if a row position is out of range or not an integer.

    Example:
        >>> from smoothcert.data._rows import check_rows
        >>> check_rows(slice(1, None, 2), 5).tolist()
        [1, 3]
    """
    if isinstance(rows, slice):
        return np.arange(n, dtype=np.int64)[rows]
    arr = np.asarray(rows)
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidParameterError(
            f"rows = {rows!r} is invalid; valid: a 1-D sequence of integer row positions "
            f"in [0, {n})"
        )
    bad = (arr < 0) | (arr >= n)
    if np.any(bad):
        raise InvalidParameterError(
            f"rows contains {int(arr[bad][0])}, which is invalid; valid range: 0 <= row < {n}"
        )
    return arr.astype(np.int64)


def subset_rows(dataset: D, rows: Any, per_row: tuple[str, ...]) -> D:
    """A copy of the frozen dataclass ``dataset`` with its ``per_row`` fields at ``rows``.

    Array fields become read-only arrays of the selected rows, tuple fields tuples of
    them, None stays None; every other field is kept (``dataclasses.replace``, so the
    dataset's own checks run again).

    Args:
        dataset: a frozen dataclass instance with ``len(dataset)`` rows.
        rows: row positions as in :func:`check_rows`.
        per_row: the names of the fields with one entry per row.

    Returns:
        The new dataset.

    Raises:
        InvalidParameterError: if a row position is out of range or not an integer.
    """
    sel = check_rows(rows, len(dataset))  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for name in per_row:
        value = getattr(dataset, name)
        if value is None:
            changes[name] = None
        elif isinstance(value, tuple):
            changes[name] = tuple(value[i] for i in sel)
        else:
            changes[name] = readonly(value[sel])
    return dataclasses.replace(dataset, **changes)  # type: ignore[type-var]

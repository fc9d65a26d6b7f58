"""Argument checks shared by every layer (pure Python/numpy, no torch).

Each check raises :class:`~smoothcert.errors.InvalidParameterError` whose message
names the parameter, repeats the bad value and states the valid range.

Example:
    >>> check_probability_level(0.001, name="alpha")
    0.001
    >>> check_positive(0.0, name="sigma")
    Traceback (most recent call last):
    ...
    smoothcert.errors.InvalidParameterError: sigma = 0.0 is invalid; valid range: sigma > 0 (finite)
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert.errors import InvalidParameterError


def _fail(name: str, value: Any, valid: str) -> InvalidParameterError:
    return InvalidParameterError(f"{name} = {value!r} is invalid; valid range: {valid}")


def check_real(value: Any, *, name: str) -> float:
    """Return ``value`` as a finite float, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(name, value, "a finite real number")
    out = float(value)
    if not math.isfinite(out):
        raise _fail(name, value, "a finite real number")
    return out


def check_positive(value: Any, *, name: str) -> float:
    """Return ``value`` as a float, requiring a finite ``value > 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(name, value, f"{name} > 0 (finite)")
    out = float(value)
    if not (math.isfinite(out) and out > 0):
        raise _fail(name, value, f"{name} > 0 (finite)")
    return out


def check_nonnegative(value: Any, *, name: str) -> float:
    """Return ``value`` as a float, requiring a finite ``value >= 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(name, value, f"{name} >= 0 (finite)")
    out = float(value)
    if not (math.isfinite(out) and out >= 0):
        raise _fail(name, value, f"{name} >= 0 (finite)")
    return out


def check_open_unit(value: Any, *, name: str) -> float:
    """Return ``value`` as a float, requiring ``0 < value < 1``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(name, value, f"0 < {name} < 1")
    out = float(value)
    if not (math.isfinite(out) and 0.0 < out < 1.0):
        raise _fail(name, value, f"0 < {name} < 1")
    return out


def check_probability_level(value: Any, *, name: str = "alpha") -> float:
    """Return a failure probability ``alpha`` in the open interval (0, 1)."""
    return check_open_unit(value, name=name)


def check_int(
    value: Any, *, name: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as an int within ``[minimum, maximum]`` (bounds optional)."""
    if minimum is not None and maximum is not None:
        valid = f"integer {minimum} <= {name} <= {maximum}"
    elif minimum is not None:
        valid = f"integer {name} >= {minimum}"
    elif maximum is not None:
        valid = f"integer {name} <= {maximum}"
    else:
        valid = "an integer"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(name, value, valid)
    out = int(value)
    if (minimum is not None and out < minimum) or (maximum is not None and out > maximum):
        raise _fail(name, value, valid)
    return out


def check_probability_array(
    value: Any,
    *,
    name: str,
    closed: bool = True,
    lower_open: bool = False,
    upper_open: bool = False,
) -> NDArray[np.float64]:
    """Return ``value`` as a float64 array of probabilities.

    Args:
        value: scalar or array-like.
        name: parameter name used in the error message.
        closed: if False the valid range is (0, 1) (both ends excluded).
        lower_open: exclude 0 from the valid range.
        upper_open: exclude 1 from the valid range.

    Raises:
        InvalidParameterError: on NaN, Inf, non-numeric input or values out of range.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(name, value, "an array of real numbers in [0, 1]") from None
    lower_open = lower_open or not closed
    upper_open = upper_open or not closed
    valid = f"0 {'<' if lower_open else '<='} {name} {'<' if upper_open else '<='} 1"
    if not np.all(np.isfinite(arr)):
        raise _fail(name, value, valid + " (NaN/Inf found)")
    bad = ((arr <= 0) if lower_open else (arr < 0)) | ((arr >= 1) if upper_open else (arr > 1))
    if np.any(bad):
        first = arr[bad].flat[0]
        raise _fail(name, float(first), valid)
    return arr


def check_count_arrays(
    k: Any, n: Any, *, k_name: str = "k", n_name: str = "n"
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Validate and broadcast binomial counts ``0 <= k <= n``, ``n >= 1``, as int64 arrays."""
    arrays = []
    for value, name in ((k, k_name), (n, n_name)):
        arr = np.asarray(value)
        if arr.dtype == np.bool_ or not (
            np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
        ):
            raise _fail(name, value, "integer counts")
        if np.issubdtype(arr.dtype, np.floating):
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise _fail(name, value, "integer counts")
        arrays.append(arr.astype(np.int64))
    k_arr, n_arr = np.broadcast_arrays(*arrays)
    if np.any(n_arr < 1):
        raise _fail(n_name, int(n_arr[n_arr < 1].flat[0]), f"integer {n_name} >= 1")
    bad = (k_arr < 0) | (k_arr > n_arr)
    if np.any(bad):
        raise _fail(
            k_name,
            int(k_arr[bad].flat[0]),
            f"integer 0 <= {k_name} <= {n_name} (here {n_name} = {int(n_arr[bad].flat[0])})",
        )
    return k_arr, n_arr


def check_choice(value: Any, *, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of the strings in ``choices``, or raise naming ``name``."""
    if not isinstance(value, str) or value not in choices:
        raise _fail(name, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


def check_nonnegative_array(value: Any, *, name: str) -> NDArray[np.float64]:
    """Return ``value`` as a float64 array of finite numbers ``>= 0``.

    Raises:
        InvalidParameterError: on NaN, Inf, non-numeric input or negative values.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(name, value, f"{name} >= 0 (finite)") from None
    if not np.all(np.isfinite(arr)):
        raise _fail(name, value, f"{name} >= 0 (finite; NaN/Inf found)")
    if np.any(arr < 0):
        raise _fail(name, float(arr[arr < 0].flat[0]), f"{name} >= 0 (finite)")
    return arr

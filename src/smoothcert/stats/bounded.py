"""One-sided confidence bounds for the mean of i.i.d. scores in [0, 1].

For soft-score smoothing (DESIGN.md, "Soft scores, Lipschitz-aware radius, tighter
bounds"): the smoothed score is the mean of a [0, 1] score over the noise, and any of
these bounds replaces Clopper-Pearson. Every bound is ONE-sided at level alpha, e.g.
``P(mu < hoeffding_lower(mean, n=n, alpha=alpha)) <= alpha``.

* Hoeffding (1963): ``mean -/+ sqrt(log(1/alpha) / (2 n))``. Needs only the mean.
* Empirical Bernstein, Maurer & Pontil (2009, arXiv 0907.3740, Theorem 4): adapts to a
  small variance; needs the UNBIASED sample variance.
* Betting, Waudby-Smith & Ramdas (2023, JRSS-B; arXiv 2010.09686): the hedged capital
  process with predictable plug-in bets; needs the whole sequence of scores, and is
  anytime-valid (Ville's inequality).

Numerics (DESIGN.md soundness rule 4): the closed-form widths are inflated by a
relative :data:`WIDTH_MARGIN` and the result moved one ulp outward, which covers the
rounding of the few float operations. The betting bound is located to within
:data:`BETTING_TOLERANCE` and the conservative end of the final bracket is returned.

Example:
    >>> round(float(hoeffding_lower(0.9, n=10_000, alpha=0.001)), 4)
    0.8814
    >>> round(float(empirical_bernstein_lower(0.9, 0.017**2, n=10_000, alpha=0.001)), 4)
    0.8976
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert._validation import (
    check_int,
    check_nonnegative_array,
    check_probability_array,
    check_probability_level,
)
from smoothcert.errors import InvalidParameterError

FloatArray = NDArray[np.float64]

WIDTH_MARGIN = 1e-12
"""Relative inflation of the closed-form widths (covers rounding of log, sqrt, division)."""

BETTING_TOLERANCE = 1e-9
"""Width of the final bracket of the betting bound; its conservative end is returned."""

_GRID = 65


def _as_output(arr: FloatArray) -> Any:
    return arr[()] if arr.ndim == 0 else arr


def _check_n(n: Any, *, minimum: int) -> NDArray[np.int64]:
    """``n`` as an int64 array of integers ``>= minimum`` (integer-valued floats allowed)."""
    arr = np.asarray(n)
    valid = f"integer n >= {minimum}"
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InvalidParameterError(f"n = {n!r} is invalid; valid range: {valid}")
    if np.issubdtype(arr.dtype, np.floating) and (
        not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))
    ):
        raise InvalidParameterError(f"n = {n!r} is invalid; valid range: {valid}")
    out = arr.astype(np.int64)
    if np.any(out < minimum):
        raise InvalidParameterError(
            f"n = {int(out[out < minimum].flat[0])} is invalid; valid range: {valid}"
        )
    return out


def _hoeffding_width(n: NDArray[np.int64], alpha: float) -> FloatArray:
    w: FloatArray = np.sqrt(math.log(1.0 / alpha) / (2.0 * n.astype(np.float64)))
    return w * (1.0 + WIDTH_MARGIN)


def _lower_from(mean: FloatArray, width: FloatArray) -> Any:
    out = np.clip(np.nextafter(mean - width, -1.0), 0.0, 1.0)
    return _as_output(np.asarray(out, dtype=np.float64))


def _upper_from(mean: FloatArray, width: FloatArray) -> Any:
    out = np.clip(np.nextafter(mean + width, 2.0), 0.0, 1.0)
    return _as_output(np.asarray(out, dtype=np.float64))


def hoeffding_lower(mean: Any, *, n: Any, alpha: float) -> Any:
    """One-sided Hoeffding lower bound on the mean of n i.i.d. [0, 1] variables.

    Hoeffding (1963), Theorem 1 (one-sided form): ``P(mean - mu >= t) <= exp(-2 n t^2)``,
    so with probability at least ``1 - alpha``::

        mu >= mean - sqrt(log(1 / alpha) / (2 n))

    clipped to [0, 1].

    Args:
        mean: sample mean(s), float or array in [0, 1].
        n: number of samples, int or integer array (broadcast with ``mean``), ``n >= 1``.
        alpha: one-sided failure probability, ``0 < alpha < 1``.

    Returns:
        A numpy float64 scalar or array (broadcast shape of ``mean`` and ``n``) in [0, 1].

    Raises:
        InvalidParameterError: if ``mean`` is NaN/Inf or outside [0, 1], ``n`` is not an
            integer ``>= 1`` or ``alpha`` is outside (0, 1).

    Example:
        >>> hoeffding_lower([0.5, 0.9], n=100, alpha=0.05).round(4).tolist()
        [0.3776, 0.7776]
    """
    alpha = check_probability_level(alpha)
    m = check_probability_array(mean, name="mean")
    n_arr = _check_n(n, minimum=1)
    m, n_arr = np.broadcast_arrays(m, n_arr)
    return _lower_from(m, _hoeffding_width(n_arr, alpha))


def hoeffding_upper(mean: Any, *, n: Any, alpha: float) -> Any:
    """One-sided Hoeffding upper bound: ``mean + sqrt(log(1 / alpha) / (2 n))``, clipped.

    Args:
        mean: sample mean(s), float or array in [0, 1].
        n: number of samples, int or integer array (broadcast with ``mean``), ``n >= 1``.
        alpha: one-sided failure probability, ``0 < alpha < 1``.

    Returns:
        A numpy float64 scalar or array in [0, 1].

    Raises:
        InvalidParameterError: as :func:`hoeffding_lower`.

    Example:
        >>> round(float(hoeffding_upper(0.1, n=100, alpha=0.05)), 4)
        0.2224
    """
    alpha = check_probability_level(alpha)
    m = check_probability_array(mean, name="mean")
    n_arr = _check_n(n, minimum=1)
    m, n_arr = np.broadcast_arrays(m, n_arr)
    return _upper_from(m, _hoeffding_width(n_arr, alpha))


def _bernstein_width(var: FloatArray, n: NDArray[np.int64], alpha: float) -> FloatArray:
    nf = n.astype(np.float64)
    log_term = math.log(2.0 / alpha)
    w: FloatArray = np.sqrt(2.0 * var * log_term / nf) + 7.0 * log_term / (3.0 * (nf - 1.0))
    return w * (1.0 + WIDTH_MARGIN)


def _bernstein_args(
    mean: Any, variance: Any, n: Any
) -> tuple[FloatArray, FloatArray, NDArray[np.int64]]:
    m = check_probability_array(mean, name="mean")
    v = check_nonnegative_array(variance, name="variance")
    n_arr = _check_n(n, minimum=2)
    m, v, n_arr = np.broadcast_arrays(m, v, n_arr)
    return m, v, n_arr


def empirical_bernstein_lower(mean: Any, variance: Any, *, n: Any, alpha: float) -> Any:
    """One-sided empirical Bernstein lower bound (Maurer & Pontil 2009).

    Maurer & Pontil, "Empirical Bernstein Bounds and Sample Variance Penalization"
    (COLT 2009, arXiv 0907.3740), Theorem 4: for ``n >= 2`` i.i.d. variables in [0, 1]
    with mean ``mu``, sample mean ``mean`` and UNBIASED sample variance
    ``V = sum (x_i - mean)^2 / (n - 1)``, with probability at least ``1 - delta``::

        mu >= mean - sqrt(2 V log(2 / delta) / n) - 7 log(2 / delta) / (3 (n - 1))

    The theorem is stated one-sided; the ``log(2 / delta)`` (not ``log(1 / delta)``) is
    there because it combines Bennett's inequality at ``delta / 2`` with a bound on the
    sample standard deviation at ``delta / 2``. Clipped to [0, 1].

    Args:
        mean: sample mean(s), float or array in [0, 1].
        variance: unbiased sample variance(s), float or array ``>= 0`` (broadcast).
        n: number of samples, int or integer array (broadcast), ``n >= 2``.
        alpha: one-sided failure probability ``delta``, ``0 < alpha < 1``.

    Returns:
        A numpy float64 scalar or array (broadcast shape) in [0, 1].

    Raises:
        InvalidParameterError: if ``mean`` is NaN/Inf or outside [0, 1], ``variance`` is
            negative or not finite, ``n`` is not an integer ``>= 2`` or ``alpha`` is
            outside (0, 1).

    Example:
        >>> round(float(empirical_bernstein_lower(0.9, 0.0004, n=10_000, alpha=0.001)), 4)
        0.8974
    """
    alpha = check_probability_level(alpha)
    m, v, n_arr = _bernstein_args(mean, variance, n)
    return _lower_from(m, _bernstein_width(v, n_arr, alpha))


def empirical_bernstein_upper(mean: Any, variance: Any, *, n: Any, alpha: float) -> Any:
    """One-sided empirical Bernstein upper bound (Maurer & Pontil 2009, Theorem 4).

    Theorem 4 applied to ``1 - x``::

        mu <= mean + sqrt(2 V log(2 / delta) / n) + 7 log(2 / delta) / (3 (n - 1))

    Args:
        mean: sample mean(s), float or array in [0, 1].
        variance: unbiased sample variance(s), float or array ``>= 0`` (broadcast).
        n: number of samples, int or integer array (broadcast), ``n >= 2``.
        alpha: one-sided failure probability, ``0 < alpha < 1``.

    Returns:
        A numpy float64 scalar or array in [0, 1].

    Raises:
        InvalidParameterError: as :func:`empirical_bernstein_lower`.

    Example:
        >>> round(float(empirical_bernstein_upper(0.1, 0.0004, n=10_000, alpha=0.001)), 4)
        0.1026
    """
    alpha = check_probability_level(alpha)
    m, v, n_arr = _bernstein_args(mean, variance, n)
    return _upper_from(m, _bernstein_width(v, n_arr, alpha))


def _check_scores(scores: Any) -> FloatArray:
    arr = check_probability_array(scores, name="scores")
    if arr.ndim != 1 or arr.size < 1:
        raise InvalidParameterError(
            f"scores of shape {arr.shape} is invalid; valid: a 1-D sequence of at least "
            "1 score in [0, 1]"
        )
    return arr


def _plugin_bets(x: FloatArray, alpha: float, max_bet: float, n: int) -> FloatArray:
    """Predictable plug-in bets ``lambda_i`` (WSR eq. (26) with horizon n, one-sided)."""
    t = np.arange(1, x.size + 1, dtype=np.float64)
    mu_hat = (0.5 + np.cumsum(x)) / (t + 1.0)
    sigma2 = (0.25 + np.cumsum((x - mu_hat) ** 2)) / (t + 1.0)
    # sigma_hat_{i-1}^2: the estimate BEFORE observing x_i (sigma_0^2 = 1/4).
    prev = np.concatenate(([0.25], sigma2[:-1]))
    bets: FloatArray = np.minimum(np.sqrt(2.0 * math.log(1.0 / alpha) / (n * prev)), max_bet)
    return bets


def _rejected(x: FloatArray, bets: FloatArray, m: FloatArray, log_thr: float, c: float) -> Any:
    """Whether ``max_t log K_t(m) >= log(1 / alpha)``, for each candidate ``m``."""
    # Hedged bets lambda_i^+(m) = min(lambda_i, c / m): 1 + lambda (x - m) >= 1 - c > 0.
    with np.errstate(divide="ignore"):
        cap = np.where(m > 0.0, c / np.where(m > 0.0, m, 1.0), np.inf)
    lam = np.minimum(bets[None, :], cap[:, None])
    logk = np.cumsum(np.log1p(lam * (x[None, :] - m[:, None])), axis=1)
    return np.max(logk, axis=1) >= log_thr


def betting_lower(
    scores: Any, *, alpha: float, max_bet: float = 0.5, horizon: int | None = None
) -> float:
    """One-sided betting lower bound on the mean of i.i.d. [0, 1] scores.

    Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting"
    (JRSS-B 2023, arXiv 2010.09686), Theorem 3 (hedged capital process), one-sided
    (the ``K^+`` half, ``theta = 1``), with predictable plug-in bets at the horizon
    ``n = len(scores)`` (their eq. (26) with ``log(1/alpha)`` for one side)::

        mu_hat_t  = (1/2 + sum_{i<=t} x_i) / (t + 1)
        sigma_t^2 = (1/4 + sum_{i<=t} (x_i - mu_hat_i)^2) / (t + 1)
        lambda_i  = min(c, sqrt(2 log(1/alpha) / (n sigma_{i-1}^2)))
        K_t(m)    = prod_{i<=t} (1 + min(lambda_i, c/m) (x_i - m))

    with ``c = max_bet``. The bound is the smallest ``m`` in [0, 1] not rejected,
    ``inf {m : max_{t<=n} K_t(m) < 1/alpha}``. Validity: at the true mean ``mu``,
    ``K_t(mu)`` is a nonnegative martingale with ``K_0 = 1`` (the bets depend only on
    earlier scores and on n; every factor is ``>= 1 - c > 0``), so by Ville's inequality
    ``P(exists t <= n: K_t(mu) >= 1/alpha) <= alpha``. The bound is anytime-valid over
    the prefixes of this sequence: ``max_t`` may be replaced by any stopping time
    ``t <= n``. The scores must be passed in the order they were drawn: a sorted
    sequence is not an i.i.d. draw and can give a bound above its own mean. The bets use
    n, so for sequential certification fix ``horizon`` (the largest sample budget) in
    advance: then the bounds of all prefixes hold simultaneously at level alpha.

    Every factor is nonincreasing in ``m`` (nonnegative bets, ``min(lambda, c/m)``
    nonincreasing in ``m``), so the rejected set is an interval ``[0, m*)``; ``m*`` is
    found by repeated vectorised grids over the current bracket down to
    :data:`BETTING_TOLERANCE`, and the bracket's lower (rejected or 0) end is returned,
    which is ``<= m*``: conservative. Cost ``O(n)`` per grid point; about 10 ms at
    ``n = 10^4``.

    Args:
        scores: 1-D sequence of scores in [0, 1], in the order they were drawn.
        alpha: one-sided failure probability, ``0 < alpha < 1``.
        max_bet: truncation ``c`` of the bets, ``0 < c < 1`` (WSR suggest 1/2 or 3/4).
        horizon: the n of the bets, fixed before sampling, ``>= len(scores)``; default
            ``len(scores)``.

    Returns:
        The lower bound, a float in [0, 1].

    Raises:
        InvalidParameterError: if ``scores`` is not a non-empty 1-D sequence of finite
            values in [0, 1], ``alpha`` or ``max_bet`` is outside (0, 1), or
            ``horizon`` is not an integer ``>= len(scores)``.

    Example:
        >>> x = ([1.0] * 9 + [0.0]) * 10  # 100 votes, mean 0.9, in drawing order
        >>> round(betting_lower(x, alpha=0.05), 3)
        0.82
    """
    alpha = check_probability_level(alpha)
    c = check_probability_level(max_bet, name="max_bet")
    x = _check_scores(scores)
    n = x.size if horizon is None else check_int(horizon, name="horizon", minimum=x.size)
    bets = _plugin_bets(x, alpha, c, n)
    log_thr = math.log(1.0 / alpha)
    lo, hi = 0.0, 1.0
    # m = 0 rejected or not; m = 1 is never rejected (every factor <= 1).
    if not bool(_rejected(x, bets, np.array([0.0]), log_thr, c)[0]):
        return 0.0
    while hi - lo > BETTING_TOLERANCE:
        grid = np.linspace(lo, hi, _GRID)
        rej = _rejected(x, bets, grid[1:-1], log_thr, c)
        k = int(np.count_nonzero(rej))  # rejected set is a prefix of the grid
        lo, hi = float(grid[k]), float(grid[k + 1])
    return lo


def betting_upper(
    scores: Any, *, alpha: float, max_bet: float = 0.5, horizon: int | None = None
) -> float:
    """One-sided betting upper bound: ``1 - betting_lower(1 - scores)``.

    See :func:`betting_lower` (Waudby-Smith & Ramdas, arXiv 2010.09686); the result is
    rounded up by one ulp.

    Args:
        scores: 1-D sequence of scores in [0, 1], in the order they were drawn.
        alpha: one-sided failure probability, ``0 < alpha < 1``.
        max_bet: truncation ``c`` of the bets, ``0 < c < 1``.
        horizon: as :func:`betting_lower`.

    Returns:
        The upper bound, a float in [0, 1].

    Raises:
        InvalidParameterError: as :func:`betting_lower`.

    Example:
        >>> x = ([0.0] * 9 + [1.0]) * 10
        >>> round(betting_upper(x, alpha=0.05), 3)
        0.18
    """
    x = _check_scores(scores)
    low = betting_lower(1.0 - x, alpha=alpha, max_bet=max_bet, horizon=horizon)
    return float(min(1.0, np.nextafter(1.0 - low, 2.0)))

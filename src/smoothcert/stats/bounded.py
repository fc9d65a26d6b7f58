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
* Betting, order-invariant (:func:`betting_mixture_lower`, :func:`betting_histogram_lower`):
  a mixture of constant bets on a grid fixed before sampling (WSR's "diversified Kelly"),
  fixed horizon; needs only how often each value occurs, so it runs on the per-class score
  HISTOGRAMS that records keep (lower bin edges for lower bounds, upper edges for upper
  bounds; :data:`HISTOGRAM_BINS`). docs/soft.md compares the bounds.

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


# --- order-invariant betting: a mixture of constant bets, from a multiset or histogram ---

HISTOGRAM_BINS = 2**12
"""Default ``B`` of a score histogram: ``B + 1`` bins, bin ``b < B`` holds ``[b/B, (b+1)/B)``,
bin ``B`` holds exactly 1.

Why ``2^12``: the lower bound uses each bin's lower edge, which lowers every score by less
than ``1/B``, so the bound loses at most ``1/B = 2.4e-4`` (about ``1.2e-4`` on average)
against the bound on the exact scores, a fifth of the gain of betting over empirical
Bernstein in the reference case (mean 0.9, s.d. 0.017, n = 10,000: about 1e-3). A finer
grid loses less but records grow: a record keeps one ``[bin, count]`` pair per occupied
bin and class, at most ``min(n, B + 1)``, and a sharply peaked softmax score spreads over
about ``6 s.d. * B`` bins (a few hundred here; 16 times more at ``2^16``)."""

MAX_HISTOGRAM_BITS = 16
"""Histograms of ``2^k + 1`` bins are accepted for ``0 <= k <= MAX_HISTOGRAM_BITS``."""

MIXTURE_MAX_BET = 0.75
"""Hedging ``c`` of the mixture: a bet at candidate mean ``m`` is ``min(lambda_g, c / m)``."""

MIXTURE_GRID = 16
"""Number ``G`` of constant bets in the mixture."""

MIXTURE_TOP_BET = 4.0
"""Largest bet of the grid (before hedging; ``c / m`` caps it for ``m > c / 4``)."""

MIXTURE_LOG_MARGIN = 1e-9
"""A candidate mean is rejected only when ``log K(m) >= log(1/alpha) + margin``: the float
error of the log-sum over ``n`` factors is far below it (conservative, rule 4)."""

_MAX_ROUNDS = 60  # each round at least halves the bracket: 2^-60 < BETTING_TOLERANCE
_FIRST_PROBES = np.geomspace(1e-5, 0.5, 5)


def mixture_bets(n: Any, *, alpha: float) -> FloatArray:
    """The fixed grid of constant bets of the mixture, for ``n`` samples at level ``alpha``.

    Geometric, ``G = MIXTURE_GRID`` bets from ``lambda_1 = sqrt(2 log(1/alpha) / n) / (1/2)``
    (the near-optimal constant bet for a variance of ``1/4``, the largest a [0, 1] variable
    can have; Waudby-Smith & Ramdas, arXiv 2010.09686, eq. (26) with ``sigma = 1/2``) up
    to ``MIXTURE_TOP_BET``, the bet for a standard deviation of about ``0.02`` at n = 10,000.
    A score with standard deviation ``s`` is best served by ``lambda ~ lambda_1 / (2 s)``;
    the grid covers every ``s`` from 1/2 down to where the hedging cap ``c / m`` binds.
    Depends on ``n`` and ``alpha`` only (fixed before sampling).

    Args:
        n: number of samples, int or integer array (``>= 1``).
        alpha: one-sided failure probability, ``0 < alpha < 1``.

    Returns:
        ``(..., G)`` float64 array of bets (shape of ``n`` plus the grid axis).

    Raises:
        InvalidParameterError: on ``n < 1`` or ``alpha`` outside (0, 1).

    Example:
        >>> mixture_bets(10_000, alpha=0.001)[[0, -1]].round(4).tolist()
        [0.0743, 4.0]
    """
    alpha = check_probability_level(alpha)
    n_arr = _check_n(n, minimum=1).astype(np.float64)
    low = np.sqrt(2.0 * math.log(1.0 / alpha) / n_arr) / 0.5
    high = np.maximum(low, MIXTURE_TOP_BET)
    steps = np.linspace(0.0, 1.0, MIXTURE_GRID)
    out: FloatArray = low[..., None] * (high / low)[..., None] ** steps
    return out


def _log_capital(
    values: FloatArray, counts: FloatArray, bets: FloatArray, m: FloatArray
) -> FloatArray:
    """``log K(m)``, ``(R, P)``: values ``(V,)``, counts ``(R, V)``, bets ``(R, G)``, m (R, P)."""
    from scipy.special import logsumexp

    with np.errstate(divide="ignore"):
        cap = np.where(m > 0.0, MIXTURE_MAX_BET / np.where(m > 0.0, m, 1.0), np.inf)
    lam = np.minimum(bets[:, None, :], cap[:, :, None])  # (R, P, G); 1 + lam (x - m) >= 1 - c
    factors = np.log1p(lam[..., None] * (values - m[:, :, None, None]))
    logs = np.einsum("rpgv,rv->rpg", factors, counts)
    out: FloatArray = logsumexp(logs, axis=2) - math.log(bets.shape[1])
    return out


def _check_alpha_first(alpha: Any) -> float:
    return check_probability_level(alpha)


def _check_weights(counts: Any, *, size: int, name: str) -> NDArray[np.int64]:
    """``counts`` as an int64 array ``(..., size)`` of nonnegative integers, n >= 1 per row."""
    arr = np.asarray(counts)
    valid = f"nonnegative integer {name} with last axis of length {size} and n >= 1 per row"
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise InvalidParameterError(f"{name} of dtype {arr.dtype} is invalid; valid: {valid}")
    if arr.ndim < 1 or arr.shape[-1] != size:
        raise InvalidParameterError(f"{name} of shape {arr.shape} is invalid; valid: {valid}")
    if np.issubdtype(arr.dtype, np.floating) and (
        not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))
    ):
        raise InvalidParameterError(f"{name} = {counts!r} is invalid; valid: {valid}")
    out = arr.astype(np.int64)
    if np.any(out < 0):
        raise InvalidParameterError(
            f"{name} has a negative entry {int(out[out < 0].flat[0])}; valid: {valid}"
        )
    if np.any(out.sum(axis=-1) < 1):
        raise InvalidParameterError(f"{name} has a row with n = 0 samples; valid: {valid}")
    return out


def _mixture_lower(values: FloatArray, counts: NDArray[np.int64], alpha: float) -> Any:
    """The vectorised bracketing root search behind :func:`betting_mixture_lower`.

    ``f(m) = log K(m) - log(1/alpha) - margin`` is nonincreasing; the bracket ``[lo, hi]``
    keeps ``f(lo) >= 0`` (rejected, verified) and ``f(hi) < 0``. Each round probes three
    points per row in one vectorised call: the secant (regula falsi) estimate of the root
    minus and plus a small step, and the midpoint; the bracket moves to the closest
    probes on each side, so it at least halves per round and usually shrinks to the
    step within a few rounds. Stops when the width is below :data:`BETTING_TOLERANCE`
    and returns ``lo`` (or 0 when ``m = 0`` is not rejected): conservative.
    """
    lead = counts.shape[:-1]
    c2 = counts.reshape(-1, counts.shape[-1])
    keep = np.flatnonzero(c2.any(axis=0))  # occupied values only (log1p is the cost)
    vals, w = values[keep], c2[:, keep].astype(np.float64)
    n = c2.sum(axis=1)
    rows = len(n)
    bets = mixture_bets(n, alpha=alpha).reshape(rows, -1)
    thr = math.log(1.0 / alpha) + MIXTURE_LOG_MARGIN
    # K(mean) <= 1 (Jensen: sum log(1 + lam (x - mean)) <= n log 1), so m* <= mean.
    lo = np.zeros(rows)
    hi = np.minimum(w @ vals / n * (1.0 + 4 * np.finfo(np.float64).eps), 1.0)
    ends = _log_capital(vals, w, bets, np.stack([lo, hi], axis=1)) - thr
    flo, fhi = ends[:, 0], np.minimum(ends[:, 1], -1e-300)
    rejected0 = flo >= 0
    active = rejected0 & (hi - lo > BETTING_TOLERANCE)
    for round_ in range(_MAX_ROUNDS):
        if not active.any():
            break
        i = np.flatnonzero(active)
        a, b, fa, fb = lo[i], hi[i], flo[i], fhi[i]
        width = b - a
        if round_ == 0:  # a first bracket: the root is mean - d, d from 1e-5 to mean / 2
            probes = b[:, None] - width[:, None] * _FIRST_PROBES[None, :]
        else:
            t = np.clip(fa / (fa - fb), 0.0, 1.0)
            step = np.maximum(width * 1e-4, BETTING_TOLERANCE / 4)
            guess = a + width * t
            probes = np.stack([guess - step, guess + step, a + width / 2], axis=1)
        probes = np.clip(probes, a[:, None], b[:, None])
        f = _log_capital(vals, w[i], bets[i], probes) - thr
        rej = f >= 0
        # the largest rejected probe, the smallest accepted one (and their f values)
        j_lo = np.where(rej, probes, -np.inf).argmax(axis=1)[:, None]
        j_hi = np.where(rej, np.inf, probes).argmin(axis=1)[:, None]
        up = np.take_along_axis(rej, j_lo, 1)[:, 0]
        down = ~np.take_along_axis(rej, j_hi, 1)[:, 0]
        p_lo, p_hi = (
            np.take_along_axis(probes, j_lo, 1)[:, 0],
            np.take_along_axis(probes, j_hi, 1)[:, 0],
        )
        f_lo, f_hi = np.take_along_axis(f, j_lo, 1)[:, 0], np.take_along_axis(f, j_hi, 1)[:, 0]
        up &= p_lo > a
        down &= p_hi < b
        lo[i] = np.where(up, p_lo, a)
        flo[i] = np.where(up, f_lo, fa)
        hi[i] = np.where(down, p_hi, b)
        fhi[i] = np.where(down, np.minimum(f_hi, -1e-300), fb)
        active[i] = hi[i] - lo[i] > BETTING_TOLERANCE
    if active.any():
        from smoothcert.errors import ConvergenceError

        raise ConvergenceError(
            f"the betting bound did not converge in {_MAX_ROUNDS} rounds; bracket width "
            f"{float((hi - lo)[active].max())}"
        )
    # lo is 0 or a verified rejected candidate mean: <= inf{m : K(m) < 1/alpha}.
    out = np.where(rejected0, lo, 0.0).reshape(lead)
    return _as_output(np.asarray(out, dtype=np.float64))


def betting_mixture_lower(scores: Any, *, alpha: float, counts: Any = None) -> Any:
    """Order-invariant betting lower bound on a mean, from a multiset of [0, 1] scores.

    Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting"
    (JRSS-B 2023, arXiv 2010.09686): the "diversified Kelly" capital process (their
    "dKelly" strategy: an average of capital processes with constant bets), one-sided and
    hedged, at a FIXED horizon n::

        K(m) = (1/G) sum_g prod_i (1 + lambda_g(m) (x_i - m)),
        lambda_g(m) = min(lambda_g, c / m)

    with the grid ``lambda_g`` of :func:`mixture_bets` (fixed by ``n`` and ``alpha`` before
    sampling) and ``c = MIXTURE_MAX_BET``. The bound is ``inf {m : K(m) < 1/alpha}``.

    Validity: at the true mean ``mu`` each product has i.i.d. factors with mean
    ``1 + lambda_g(mu) (E x - mu) = 1``, all ``>= 1 - c > 0``, so ``E K(mu) = 1`` and by
    Markov's inequality ``P(K(mu) >= 1/alpha) <= alpha``. Every factor is nonincreasing in
    ``m`` (``lambda_g(m)`` is nonnegative and nonincreasing, ``x - m`` decreasing, and
    ``lambda_g(m) (m - x)`` is increasing in both regimes), so ``{m : K(m) >= 1/alpha}`` is
    an interval ``[0, m*)``; ``mu < m*`` implies ``K(mu) >= 1/alpha``, hence
    ``P(mu < m*) <= alpha``. ``K`` depends on the multiset of scores only (a product of
    constant bets does not care about the order), unlike the predictable plug-in bets of
    :func:`betting_lower`, so it can be computed from counts of values, e.g. a histogram
    (:func:`betting_histogram_lower`). The price of the mixture is at most ``log G`` in
    the exponent (about ``alpha / 8`` in practice); the price of constant bets is that
    it is a Chernoff bound: on Bernoulli votes it is at most about 1.45 times as wide as
    Clopper-Pearson (tests/stats/test_betting_mixture.py).

    Numerics: ``log K`` is a ``logsumexp`` over the grid of ``sum count * log1p(...)``;
    ``m`` is rejected only with a margin :data:`MIXTURE_LOG_MARGIN`; a vectorised
    bracketing search on ``[0, mean]`` (``K(mean) <= 1`` by Jensen; secant and midpoint
    probes) keeps a verified rejected lower end, returned once the bracket is below
    :data:`BETTING_TOLERANCE`: conservative. Cost ``O(G * occupied values)`` per probe.

    Args:
        scores: 1-D array ``(V,)`` of distinct or repeated values in [0, 1].
        alpha: one-sided failure probability, ``0 < alpha < 1``.
        counts: None (each score once), or nonnegative integer multiplicities ``(..., V)``
            (a leading batch axis gives one bound per row; ``n`` = the row sum ``>= 1``).

    Returns:
        A float64 scalar (or an array of the batch shape) in [0, 1].

    Raises:
        InvalidParameterError: on scores that are not a non-empty 1-D array in [0, 1],
            counts of the wrong length, negative, non-integer or with an empty row, or
            ``alpha`` outside (0, 1).

    Example:
        >>> round(float(betting_mixture_lower([0.0, 1.0], counts=[10, 90], alpha=0.05)), 3)
        0.794
    """
    alpha = _check_alpha_first(alpha)
    x, w = _scores_and_counts(scores, counts)
    return _mixture_lower(x, w, alpha)


def _scores_and_counts(scores: Any, counts: Any) -> tuple[FloatArray, NDArray[np.int64]]:
    """Checked scores and their multiplicities (each score once when ``counts`` is None)."""
    x = _check_scores(scores)
    if counts is None:
        return x, np.ones(x.size, dtype=np.int64)
    return x, _check_weights(counts, size=x.size, name="counts")


def betting_mixture_upper(scores: Any, *, alpha: float, counts: Any = None) -> Any:
    """Order-invariant betting upper bound: ``1 - betting_mixture_lower(1 - scores)``.

    See :func:`betting_mixture_lower` (arXiv 2010.09686); rounded up by one ulp.

    Args:
        scores: 1-D array ``(V,)`` of values in [0, 1].
        alpha: one-sided failure probability, ``0 < alpha < 1``.
        counts: None or multiplicities ``(..., V)`` as in :func:`betting_mixture_lower`.

    Returns:
        A float64 scalar (or batch array) in [0, 1].

    Raises:
        InvalidParameterError: as :func:`betting_mixture_lower`.

    Example:
        >>> round(float(betting_mixture_upper([0.0, 1.0], counts=[90, 10], alpha=0.05)), 3)
        0.206
    """
    alpha = _check_alpha_first(alpha)
    x, w = _scores_and_counts(scores, counts)
    low = np.asarray(_mixture_lower(1.0 - x, w, alpha), dtype=np.float64)
    return _as_output(np.minimum(1.0, np.nextafter(1.0 - low, 2.0)))


def _histogram_bins(counts: Any) -> tuple[int, NDArray[np.int64]]:
    arr = np.asarray(counts)
    size = arr.shape[-1] if arr.ndim >= 1 else 0
    bins = size - 1
    valid = (
        f"a histogram of B + 1 bins with B = 2^k, 0 <= k <= {MAX_HISTOGRAM_BITS} "
        f"(e.g. {HISTOGRAM_BINS + 1})"
    )
    if bins < 1 or bins & (bins - 1) or bins > 2**MAX_HISTOGRAM_BITS:
        raise InvalidParameterError(f"counts of shape {arr.shape} is invalid; valid: {valid}")
    return bins, _check_weights(arr, size=size, name="counts")


def histogram_edges(bins: int, *, upper: bool = False) -> FloatArray:
    """The value each bin stands for: lower edges ``b / B``, or upper edges ``min((b+1)/B, 1)``.

    Bin ``b < B`` holds ``[b/B, (b+1)/B)``, bin ``B`` holds exactly 1 (both edges 1).

    Args:
        bins: ``B``, a power of two.
        upper: upper edges (for upper bounds) instead of lower edges.

    Returns:
        ``(B + 1,)`` float64 array (exact: ``B`` is a power of two).

    Example:
        >>> histogram_edges(4).tolist(), histogram_edges(4, upper=True).tolist()
        ([0.0, 0.25, 0.5, 0.75, 1.0], [0.25, 0.5, 0.75, 1.0, 1.0])
    """
    b = np.arange(bins + 1, dtype=np.float64)
    out: FloatArray = np.minimum(b + 1.0, bins) / bins if upper else b / bins
    return out


def score_histogram(scores: Any, *, bins: int = HISTOGRAM_BINS) -> NDArray[np.int64]:
    """Counts of scores per bin: ``min(floor(s * B), B)`` (the sampler's rule, in numpy).

    Args:
        scores: array of scores in [0, 1]; the last axis is histogrammed (any leading axes
            are kept).
        bins: ``B``, a power of two ``<= 2^MAX_HISTOGRAM_BITS``.

    Returns:
        int64 counts ``(..., B + 1)``.

    Raises:
        InvalidParameterError: on scores outside [0, 1] or a bad ``bins``.

    Example:
        >>> score_histogram([0.0, 0.3, 0.5, 1.0], bins=2).tolist()
        [2, 1, 1]
    """
    x = check_probability_array(scores, name="scores")
    bins = check_int(bins, name="bins", minimum=1, maximum=2**MAX_HISTOGRAM_BITS)
    if bins & (bins - 1):
        raise InvalidParameterError(f"bins = {bins} is invalid; valid: a power of two")
    idx = np.minimum(np.floor(x * bins), bins).astype(np.int64)
    flat = idx.reshape(-1, idx.shape[-1]) if idx.ndim else idx.reshape(1, 1)
    rows = np.arange(flat.shape[0])[:, None] * (bins + 1)
    out = np.bincount((flat + rows).ravel(), minlength=flat.shape[0] * (bins + 1))
    return out.reshape(idx.shape[:-1] + (bins + 1,)).astype(np.int64)


def betting_histogram_lower(counts: Any, *, alpha: float) -> Any:
    """Betting lower bound on a mean score from its histogram (each bin at its LOWER edge).

    Sound quantisation: the score ``s`` of a sample in bin ``b`` is at least the lower edge
    ``b / B`` (exactly 1 in bin ``B``); the rounded-down scores are i.i.d. [0, 1] variables
    that are ``<= s``, so :func:`betting_mixture_lower` on them (a valid lower bound on
    THEIR mean) is a lower bound on ``E s``. The loss is below ``1/B`` (see
    :data:`HISTOGRAM_BINS`); 0/1 votes are exact (bins 0 and ``B``).

    Args:
        counts: nonnegative integer counts ``(..., B + 1)``, ``B = 2^k`` (a leading batch
            axis gives one bound per row); ``n`` = the row sum ``>= 1``.
        alpha: one-sided failure probability, ``0 < alpha < 1``.

    Returns:
        A float64 scalar (or batch array) in [0, 1].

    Raises:
        InvalidParameterError: on a length that is not ``2^k + 1``, negative or
            non-integer counts, an empty row, or ``alpha`` outside (0, 1).

    Example:
        >>> round(float(betting_histogram_lower([10, 0, 90], alpha=0.05)), 3)
        0.794
    """
    alpha = _check_alpha_first(alpha)
    bins, w = _histogram_bins(counts)
    return _mixture_lower(histogram_edges(bins), w, alpha)


def betting_histogram_upper(counts: Any, *, alpha: float) -> Any:
    """Betting upper bound on a mean score from its histogram (each bin at its UPPER edge).

    The score of a sample in bin ``b`` is at most ``min((b + 1) / B, 1)``; an upper bound on
    the mean of those rounded-up scores is an upper bound on ``E s``
    (:func:`betting_mixture_upper`). Scores of exactly 0 count as ``1/B``: for exact 0/1
    votes use :func:`betting_mixture_upper` on the values ``[0, 1]``.

    Args:
        counts: nonnegative integer counts ``(..., B + 1)``, ``B = 2^k``.
        alpha: one-sided failure probability, ``0 < alpha < 1``.

    Returns:
        A float64 scalar (or batch array) in [0, 1].

    Raises:
        InvalidParameterError: as :func:`betting_histogram_lower`.

    Example:
        >>> round(float(betting_histogram_upper([90, 0, 0, 0, 10], alpha=0.05)), 3)
        0.403
    """
    alpha = _check_alpha_first(alpha)
    bins, w = _histogram_bins(counts)
    low = np.asarray(_mixture_lower(1.0 - histogram_edges(bins, upper=True), w, alpha))
    return _as_output(np.minimum(1.0, np.nextafter(1.0 - low, 2.0)))

"""One-sided Clopper-Pearson confidence bounds for binomial proportions.

Clopper & Pearson (1934); used for the class probability bound of Cohen et al. 2019
(arXiv 1902.02918, CERTIFY, LowerConfBound). Every bound is ONE-sided at level alpha:
``P(p < clopper_pearson_lower(K, n, alpha=alpha)) <= alpha`` for K ~ Binomial(n, p).

Numerics (DESIGN.md soundness rule 4: conservative in floating point). The quantile is
computed on the side where it is small, ``betaincinv`` for a bound below 1/2 and
``betainccinv`` of the mirrored problem for ``1 - bound`` otherwise, so that no digits
are lost to ``1 - x``; ``k = n`` (lower) and ``k = 0`` (upper) use the closed form
``alpha^(1/n)`` as ``-expm1(log(alpha) / n)``, valid for any ``n`` (also ``10^18``). Three
safety steps then make the bound conservative as a floating-point number:

* the quantile is taken at the level ``alpha (1 - m)``, ``m = 1e-7 max(1, n / 1e8)``
  (:data:`LEVEL_MARGIN`, capped at 1e-2; ``m = 1e-12`` for the closed forms), which
  covers the relative error of scipy's inverse incomplete beta in the tail probability.
  Measured with mpmath: at most ``2.4e-8`` for ``n <= 1e7``, ``5e-9`` at ``1e8``,
  ``5.4e-7`` at ``1e9``; it grows with ``n``. Beyond ``n = 1e9`` the margin is not
  verified (APPROXIMATE there, except the closed forms; at ``n = 1e18`` scipy is
  visibly off for ``k`` near ``n / 2``);
* the quantile is moved one ulp in the conservative direction (``np.nextafter``
  toward 0 for a lower bound, toward 1 for an upper bound);
* ``1 - x`` is rounded in the conservative direction (exactly, by Sterbenz's lemma).

The result: ``P(Binomial(n, L) >= k) <= alpha`` holds exactly (checked with mpmath on a
grid of ``k``, ``n <= 1e9`` and ``alpha`` from 1e-9 to 0.9) for the returned float
``L``, and the symmetric statement for the upper bound. The bound moves by a relative
``m alpha`` in tail probability from the exact quantile: invisible in any radius. A
lower bound is 0 exactly when ``k = 0`` and below 1 for every ``k <= n`` (also ``k = n =
10^18``); an upper bound is 1 exactly when ``k = n`` or when the exact bound lies within
an ulp of 1.

Example:
    >>> round(float(clopper_pearson_lower(990, 1000, alpha=0.001)), 4)
    0.976
    >>> float(clopper_pearson_lower(0, 10, alpha=0.05))
    0.0
    >>> float(clopper_pearson_upper(10, 10, alpha=0.05))
    1.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import betainccinv, betaincinv

from smoothcert._validation import check_count_arrays, check_int, check_probability_level
from smoothcert.errors import InvalidParameterError

LEVEL_MARGIN = 1e-7
"""Relative shrink of alpha (for n <= 1e8) before inverting the incomplete beta.

It grows in proportion to n beyond 1e8 (capped at 1e-2); see the module docstring.
"""

CLOSED_FORM_MARGIN = 1e-12
"""Relative shrink of alpha in the closed forms ``alpha^(1/n)`` (k = n lower, k = 0 upper)."""

FloatArray = NDArray[np.float64]


def _as_output(arr: NDArray[np.float64]) -> Any:
    return arr[()] if arr.ndim == 0 else arr


def _one_minus_down(x: FloatArray) -> FloatArray:
    """``1 - x`` rounded down (the largest float ``y <= 1 - x`` exactly), ``x`` in [0, 1]."""
    y = 1.0 - x
    # For y >= 1/2, 1 - y is exact (Sterbenz); for y < 1/2, y itself is exact.
    out: FloatArray = np.where(1.0 - y < x, np.nextafter(y, 0.0), y)
    return out


def _one_minus_up(x: FloatArray) -> FloatArray:
    """``1 - x`` rounded up (the smallest float ``y >= 1 - x`` exactly), ``x`` in [0, 1]."""
    y = 1.0 - x
    out: FloatArray = np.where(1.0 - y > x, np.nextafter(y, 1.0), y)
    return out


def _level(alpha: float, n: FloatArray) -> FloatArray:
    margin = np.minimum(LEVEL_MARGIN * np.maximum(1.0, n / 1e8), 1e-2)
    out: FloatArray = alpha * (1.0 - margin)
    return out


def _lower_split(
    k: NDArray[np.int64], n: NDArray[np.int64], alpha: float
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Conservative ``L = B(alpha; k, n - k + 1)`` for ``1 <= k <= n``, on its small side.

    Returns ``(x, mirrored)``: where ``mirrored`` is False, ``x <= L`` (rounded down, at
    most 1/2); where it is True, ``x >= 1 - L`` (rounded up, below 1/2). Keeping the
    small side avoids the rounding of ``1 - x`` until the caller knows which way to round.
    """
    kf = k.astype(np.float64)
    nf = n.astype(np.float64)
    a = _level(alpha, nf)
    x = np.empty(k.shape, dtype=np.float64)
    mirrored = np.zeros(k.shape, dtype=bool)
    full = k == n
    # k = n: L = alpha^(1/n); 1 - L = -expm1(log(alpha) / n) is accurate for any n.
    # Its rounding (log, division: 2 ulps of t) moves the tail L^n = alpha by a relative
    # 2 ulps * |log alpha| <= 2.3e-13 for alpha >= 1e-300: CLOSED_FORM_MARGIN covers it.
    with np.errstate(under="ignore"):
        t = math.log(alpha * (1.0 - CLOSED_FORM_MARGIN)) / nf[full]
        w_full = -np.expm1(t)
        direct = np.nextafter(np.exp(t), 0.0)
    m_full = w_full < 0.5
    x[full] = np.where(m_full, np.nextafter(w_full, 1.0), direct)
    mirrored[full] = m_full
    part = ~full
    kp, np_, ap = kf[part], nf[part], a[part]
    xp = betaincinv(kp, np_ - kp + 1.0, ap)
    high = xp > 0.5
    # Above 1/2, 1 - L is the upper a-quantile of Beta(n - k + 1, k): invert that directly.
    xp[high] = np.nextafter(betainccinv(np_[high] - kp[high] + 1.0, kp[high], ap[high]), 1.0)
    xp[~high] = np.nextafter(xp[~high], 0.0)
    x[part] = np.clip(xp, 0.0, 1.0)
    mirrored[part] = high
    return x, mirrored


def clopper_pearson_lower(k: Any, n: Any, *, alpha: float) -> Any:
    """One-sided Clopper-Pearson lower bound on a binomial proportion.

    Returns ``B(alpha; k, n - k + 1)``, the alpha-quantile of a Beta(k, n - k + 1)
    distribution, and 0 when ``k = 0``.

    Args:
        k: number of successes, int or integer array, ``0 <= k <= n``.
        n: number of trials, int or integer array (broadcast with ``k``), ``n >= 1``.
        alpha: one-sided failure probability, ``0 < alpha < 1``.

    Returns:
        A numpy float64 scalar or array (broadcast shape of ``k`` and ``n``) in [0, 1].

    Raises:
        InvalidParameterError: if counts are not integers, ``n < 1``, ``k`` outside
            ``[0, n]`` or ``alpha`` outside (0, 1).

    Example:
        >>> clopper_pearson_lower([0, 5, 10], 10, alpha=0.05).round(4).tolist()
        [0.0, 0.2224, 0.7411]
    """
    alpha = check_probability_level(alpha)
    k_arr, n_arr = check_count_arrays(k, n)
    out = np.zeros(k_arr.shape, dtype=np.float64)
    pos = k_arr > 0
    x, mirrored = _lower_split(k_arr[pos], n_arr[pos], alpha)
    out[pos] = np.clip(np.where(mirrored, _one_minus_down(x), x), 0.0, 1.0)
    return _as_output(out)


def clopper_pearson_upper(k: Any, n: Any, *, alpha: float) -> Any:
    """One-sided Clopper-Pearson upper bound on a binomial proportion.

    Returns ``B(1 - alpha; k + 1, n - k)``, and 1 when ``k = n``.

    Args:
        k: number of successes, int or integer array, ``0 <= k <= n``.
        n: number of trials, int or integer array (broadcast with ``k``), ``n >= 1``.
        alpha: one-sided failure probability, ``0 < alpha < 1``.

    Returns:
        A numpy float64 scalar or array in [0, 1].

    Raises:
        InvalidParameterError: as :func:`clopper_pearson_lower`.

    Example:
        >>> clopper_pearson_upper([0, 5, 10], 10, alpha=0.05).round(4).tolist()
        [0.2589, 0.7776, 1.0]
    """
    alpha = check_probability_level(alpha)
    k_arr, n_arr = check_count_arrays(k, n)
    out = np.ones(k_arr.shape, dtype=np.float64)
    below = k_arr < n_arr
    # Upper bound at k is 1 - (lower bound of the failures at n - k): exact symmetry.
    # The lower bound is rounded down, so 1 - it rounded up stays conservative.
    n_b = n_arr[below]
    x, mirrored = _lower_split(n_b - k_arr[below], n_b, alpha)
    # mirrored: x >= 1 - (failure lower bound) already is the upper bound, rounded up.
    out[below] = np.clip(np.where(mirrored, x, _one_minus_up(x)), 0.0, 1.0)
    return _as_output(out)


def runner_up_upper(counts: Any, top: int, *, alpha: float) -> float:
    """Upper bound on the probability of the strongest class other than ``top``.

    For the top-two certificate (Cohen et al. 2019, Theorem 1 with p_B bounded): given
    the class ``top`` chosen on independent samples, the true runner-up is one fixed
    class, so bounding it needs no multiplicity correction. We return the maximum
    over c != top of the one-sided Clopper-Pearson upper bound of p_c at level alpha,
    which dominates the runner-up's own bound.

    Args:
        counts: per-class counts of the estimation samples (length >= 2).
        top: index of the selected class.
        alpha: one-sided failure probability of this bound.

    Returns:
        The bound, a float in [0, 1].

    Raises:
        InvalidParameterError: if ``counts`` is not a 1-D integer array of at least two
            non-negative counts, ``top`` is not an index into it, or alpha is outside
            (0, 1).

    Example:
        >>> round(runner_up_upper([5, 990, 5], 1, alpha=0.0005), 4)
        0.0173
    """
    arr = np.asarray(counts)
    if arr.ndim != 1 or arr.size < 2 or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidParameterError(
            f"counts = {counts!r} is invalid; valid: a 1-D integer array of per-class counts "
            "with at least 2 classes"
        )
    if np.any(arr < 0):
        raise InvalidParameterError(f"counts = {counts!r} is invalid; valid: counts >= 0")
    top = check_int(top, name="top", minimum=0, maximum=arr.size - 1)
    n = int(arr.sum())
    others = np.delete(arr.astype(np.int64), top)
    return float(np.max(clopper_pearson_upper(others, n, alpha=alpha)))

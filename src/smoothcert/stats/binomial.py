"""One-sided Clopper-Pearson confidence bounds for binomial proportions.

Clopper & Pearson (1934); used for the class probability bound of Cohen et al. 2019
(arXiv 1902.02918, CERTIFY, LowerConfBound). Every bound is ONE-sided at level alpha:
``P(p < clopper_pearson_lower(K, n, alpha=alpha)) <= alpha`` for K ~ Binomial(n, p).

The quantile comes from ``scipy.special.betaincinv`` in double precision. Checked
against exact binomial tails with mpmath, the tail probability at the returned bound
exceeds alpha by a relative 4e-12 for n <= 1e5 and 7e-8 at n = 1e9: negligible at any
sample size a Monte Carlo certificate uses, but not exact (DESIGN.md soundness rule 4).

Example:
    >>> round(float(clopper_pearson_lower(990, 1000, alpha=0.001)), 4)
    0.976
    >>> float(clopper_pearson_lower(0, 10, alpha=0.05))
    0.0
    >>> float(clopper_pearson_upper(10, 10, alpha=0.05))
    1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import betaincinv

from smoothcert._validation import check_count_arrays, check_int, check_probability_level
from smoothcert.errors import InvalidParameterError


def _as_output(arr: NDArray[np.float64]) -> Any:
    return arr[()] if arr.ndim == 0 else arr


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
    out[pos] = betaincinv(k_arr[pos], n_arr[pos] - k_arr[pos] + 1, alpha)
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
    # Upper bound at k is 1 - lower bound of the failures at n - k (exact symmetry).
    out[below] = 1.0 - betaincinv(n_arr[below] - k_arr[below], k_arr[below] + 1, alpha)
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

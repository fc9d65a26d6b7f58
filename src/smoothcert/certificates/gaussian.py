"""Gaussian (L2) certificates of randomized smoothing.

Cohen, Rosenfeld & Kolter 2019, "Certified Adversarial Robustness via Randomized
Smoothing" (arXiv 1902.02918), Theorem 1: if the smoothed classifier's top class has
probability at least ``p_lower`` and every other class at most ``p_upper`` under
N(0, sigma^2 I) noise, the prediction is constant within L2 radius

    R = sigma / 2 * (Phi^-1(p_lower) - Phi^-1(p_upper)),

which is ``sigma * Phi^-1(p_lower)`` when ``p_upper = 1 - p_lower``. Radii are in the
units of the tensor the noise is added to (pixels in [0, 1] for the bundled models).

Example:
    >>> round(float(gaussian_radius(0.99, sigma=0.5)), 4)
    1.1632
    >>> float(gaussian_radius(0.4, sigma=0.5))
    0.0
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri

from smoothcert._validation import (
    check_int,
    check_positive,
    check_probability_array,
    check_probability_level,
)


def _as_output(arr: NDArray[np.float64]) -> Any:
    return arr[()] if arr.ndim == 0 else arr


def gaussian_radius(p_lower: Any, *, sigma: float) -> Any:
    """Certified L2 radius ``sigma * Phi^-1(p_lower)`` (Cohen et al. 2019, Theorem 1).

    Args:
        p_lower: lower confidence bound on the top class probability, scalar or array
            in [0, 1].
        sigma: standard deviation of the Gaussian noise, > 0, in input units.

    Returns:
        The radius (float64 scalar or array), 0 where ``p_lower <= 1/2`` (nothing is
        certified; the caller abstains). ``p_lower = 1`` would give an infinite
        radius and is rejected; a Clopper-Pearson bound is always below 1 (it is
        rounded down: at most ``1 - 2^-53``, radius ``8.21 sigma``, also for ``k = n =
        10^18``). Computed as ``-sigma * Phi^-1(1 - p_lower)``, where ``1 - p_lower`` is
        exact, so ``p_lower`` within ``1e-16`` of 1 keeps its precision.

    Raises:
        InvalidParameterError: if ``p_lower`` is outside [0, 1) or NaN, or
            ``sigma <= 0``.

    Example:
        >>> gaussian_radius([0.5, 0.8413447460685429], sigma=1.0).round(6).tolist()
        [0.0, 1.0]
    """
    sigma = check_positive(sigma, name="sigma")
    p = check_probability_array(p_lower, name="p_lower", upper_open=True)
    # Phi^-1(p) = -Phi^-1(1 - p); 1 - p is exact for p >= 1/2 (Sterbenz's lemma).
    out = np.where(p > 0.5, -sigma * ndtri(1.0 - np.clip(p, 0.5, None)), 0.0)
    return _as_output(np.maximum(out, 0.0))


def gaussian_radius_top2(p_lower: Any, p_upper: Any, *, sigma: float) -> Any:
    """Top-two certified radius ``sigma/2 * (Phi^-1(p_lower) - Phi^-1(p_upper))``.

    Cohen et al. 2019, Theorem 1, with ``p_upper`` a bound on the runner-up class.

    Args:
        p_lower: lower bound on the top class probability, in [0, 1).
        p_upper: upper bound on the runner-up probability, in (0, 1].
        sigma: noise standard deviation, > 0, input units.

    Returns:
        The radius, 0 where ``p_lower <= p_upper`` (not certified).

    Raises:
        InvalidParameterError: on probabilities outside the ranges above, NaN, or
            ``sigma <= 0``.

    Example:
        >>> round(float(gaussian_radius_top2(0.9, 0.05, sigma=0.5)), 4)
        0.7316
    """
    sigma = check_positive(sigma, name="sigma")
    pa = check_probability_array(p_lower, name="p_lower", upper_open=True)
    pb = check_probability_array(p_upper, name="p_upper", lower_open=True)
    pa, pb = np.broadcast_arrays(pa, pb)
    ok = pa > pb
    out = np.zeros(pa.shape, dtype=np.float64)
    out[ok] = 0.5 * sigma * (ndtri(pa[ok]) - ndtri(pb[ok]))
    return _as_output(np.maximum(out, 0.0))


def max_certifiable_radius(*, n: int, alpha: float, sigma: float) -> float:
    """Largest radius any outcome of ``n`` samples can certify at level ``alpha``.

    The best outcome is ``n_A = n``, whose Clopper-Pearson lower bound is
    ``alpha^(1/n)``; the radius is ``sigma * Phi^-1(alpha^(1/n))`` (0 when that bound
    does not exceed 1/2). Use it before spending compute: with ``n = 9`` and
    ``alpha = 0.001`` nothing can ever be certified, and ``n = 10`` certifies at most
    0.003 sigma.

    Numerics: with ``t = 1 - alpha^(1/n) = -expm1(log(alpha) / n)`` (no cancellation)
    the radius is ``-sigma * Phi^-1(t)``, finite and accurate for every ``n`` up to
    ``2^63 - 1`` (``n = 10^18``, ``alpha = 0.001``: 8.54 sigma). This is the exact
    supremum; the radius actually certified from ``n_A = n`` uses the float
    Clopper-Pearson bound, rounded down to at most ``1 - 2^-53``, and can be smaller
    (8.21 sigma at most) once ``t < 1e-16``.

    Args:
        n: number of estimation samples, >= 1.
        alpha: one-sided failure probability, in (0, 1).
        sigma: noise standard deviation, > 0, input units.

    Returns:
        The radius in input units.

    Raises:
        InvalidParameterError: on n < 1, alpha outside (0, 1), sigma <= 0.

    Example:
        >>> round(max_certifiable_radius(n=100_000, alpha=0.001, sigma=1.0), 2)
        3.81
        >>> max_certifiable_radius(n=9, alpha=0.001, sigma=1.0)
        0.0
        >>> round(max_certifiable_radius(n=10, alpha=0.001, sigma=1.0), 4)
        0.003
    """
    n = check_int(n, name="n", minimum=1)
    alpha = check_probability_level(alpha)
    sigma = check_positive(sigma, name="sigma")
    # t = 1 - alpha**(1/n), accurate for any n (alpha**(1/n) itself rounds to 1.0 near
    # n = 1e17); Phi^-1(1 - t) = -Phi^-1(t).
    t = -math.expm1(math.log(alpha) / n)
    if t >= 0.5:
        return 0.0
    return float(-sigma * ndtri(t))

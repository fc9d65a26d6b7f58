"""Anytime-valid one-sided confidence bounds for a binomial proportion.

For sequential certification (DESIGN.md, "Soft scores, Lipschitz-aware radius, tighter
bounds", last bullet; Horvath et al. ICLR 2022; Voracek, NeurIPS 2024, arXiv 2406.17830):
a loop draws Bernoulli(p) samples in rounds and, after the round that brings the total
to ``n_k`` samples with ``S_k`` successes, may stop at a round chosen by looking at the
data, also adversarially ("stop the first time the bound crosses"). Every bound here
keeps ``P(exists k: p < lower(S_k, n_k)) <= alpha`` (and the mirror for ``upper``)
whatever the stopping rule.

* ``"union"``: Clopper-Pearson at level ``alpha / K`` at each of the ``K`` checkpoints of
  a schedule fixed before sampling (:func:`checkpoint_schedule`); valid at every
  checkpoint simultaneously by the union bound, and only there.
* ``"mixture"``: the beta-binomial mixture confidence sequence of Robbins (1970),
  "Statistical methods related to the law of the iterated logarithm" (Ann. Math. Stat.);
  see Howard, Ramdas, McAuliffe & Sekhon (2021, Ann. Stat., arXiv 1810.08240), Sec. 3
  and Prop. 2 (conjugate mixtures). Valid at every ``n``, no schedule needed.

Example:
    >>> cps = checkpoint_schedule(1000, first=100)
    >>> cps
    (100, 200, 400, 800, 1000)
    >>> round(float(union_lower(390, 400, alpha=0.001, checkpoints=cps)), 4)
    0.9346
    >>> round(float(mixture_lower(390, 400, alpha=0.001)), 4)
    0.923
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import betaln

from smoothcert._validation import (
    check_choice,
    check_count_arrays,
    check_int,
    check_probability_level,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.stats.binomial import clopper_pearson_lower, clopper_pearson_upper

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

SEQUENCE_BOUNDS: tuple[str, ...] = ("union", "mixture")
"""Valid ``bound`` names of :func:`sequence_lower` and :func:`sequence_upper`."""

MIXTURE_LOG_MARGIN = 5e-14
"""Relative safety margin on ``log M_n(p)`` of the mixture bound (see :func:`mixture_lower`).

A point ``p`` counts as rejected only if the computed ``log M_n(p)`` exceeds
``log(1 / alpha)`` by ``MIXTURE_LOG_MARGIN * (N log(N + e) + |S log p| +
|F log(1 - p)| + |log B(a, b)| + log(1 / alpha))``, ``N = n + a + b``, ``F = n - S``.
"""


_NEWTON_STEPS = 60
_LOG_TINY = math.log(float(np.finfo(np.float64).tiny))
_VERIFY_STEPS = 30


def _as_output(arr: FloatArray) -> Any:
    return arr[()] if arr.ndim == 0 else arr


def _one_minus_up(x: FloatArray) -> FloatArray:
    """``1 - x`` rounded up (the smallest float ``y >= 1 - x`` exactly), ``x`` in [0, 1]."""
    y = 1.0 - x
    out: FloatArray = np.where(1.0 - y > x, np.nextafter(y, 1.0), y)
    return out


# --- checkpoint schedule -------------------------------------------------------------------


def checkpoint_schedule(budget: int, *, first: int, growth: float = 2.0) -> tuple[int, ...]:
    """Cumulative sample counts at which a sequential loop may look, fixed in advance.

    ``first``, then each next count ``max(prev + 1, ceil(prev * growth))``, capped at
    ``budget``; the last count is exactly ``budget``. A geometric schedule keeps the
    number of looks ``K ~ log(budget / first) / log(growth)`` small, which is what the
    union bound (:func:`union_lower`) pays for: ``alpha / K`` per look.

    Args:
        budget: the largest total number of samples, integer ``>= 1``.
        first: the first look, integer ``>= 1``; if ``first >= budget`` the schedule is
            ``(budget,)``.
        growth: ratio between consecutive looks, finite real ``> 1``.

    Returns:
        A strictly increasing tuple of Python ints ending with ``budget``.

    Raises:
        InvalidParameterError: if ``budget`` or ``first`` is not an integer ``>= 1`` or
            ``growth`` is not a finite real ``> 1``.

    Example:
        >>> checkpoint_schedule(5000, first=20)
        (20, 40, 80, 160, 320, 640, 1280, 2560, 5000)
        >>> checkpoint_schedule(10, first=3, growth=1.5)
        (3, 5, 8, 10)
    """
    budget = check_int(budget, name="budget", minimum=1)
    first = check_int(first, name="first", minimum=1)
    if (
        isinstance(growth, bool)
        or not isinstance(growth, numbers.Real)
        or not (math.isfinite(float(growth)) and float(growth) > 1.0)
    ):
        raise InvalidParameterError(
            f"growth = {growth!r} is invalid; valid range: growth > 1 (finite)"
        )
    g = float(growth)
    out = [min(first, budget)]
    while out[-1] < budget:
        prev = out[-1]
        out.append(min(budget, max(prev + 1, math.ceil(prev * g))))
    return tuple(out)


def _check_checkpoints(checkpoints: Any) -> IntArray:
    arr = np.asarray(checkpoints)
    valid = "a non-empty, strictly increasing 1-D sequence of integers >= 1"
    if (
        arr.ndim != 1
        or arr.size < 1
        or arr.dtype == np.bool_
        or not np.issubdtype(arr.dtype, np.integer)
    ):
        raise InvalidParameterError(f"checkpoints = {checkpoints!r} is invalid; valid: {valid}")
    out = arr.astype(np.int64)
    if np.any(out < 1) or np.any(np.diff(out) <= 0):
        raise InvalidParameterError(f"checkpoints = {checkpoints!r} is invalid; valid: {valid}")
    return out


def _short(cps: IntArray) -> str:
    items = [str(int(c)) for c in cps]
    if len(items) > 12:
        items = items[:5] + ["..."] + items[-5:]
    return "(" + ", ".join(items) + ")"


# --- union bound over a fixed schedule ---------------------------------------------------------


def union_levels(
    alpha: float, *, checkpoints: Sequence[int], final_share: float | None = None
) -> FloatArray:
    """The level spent at each checkpoint by :func:`union_lower` (they sum to ``alpha``).

    ``final_share=None`` spends ``alpha / K`` at each of the ``K`` checkpoints. With a
    share ``w`` in (0, 1), the last checkpoint gets ``w alpha`` and the others
    ``(1 - w) alpha / (K - 1)`` each (all of ``alpha`` when ``K = 1``): a run that goes
    to the budget keeps nearly the power of one fixed-n test, while early looks pay a
    little more. Any spending fixed before sampling is valid by the union bound.

    Example:
        >>> union_levels(0.01, checkpoints=(10, 20, 40), final_share=0.5).tolist()
        [0.0025, 0.0025, 0.005]
    """
    alpha = check_probability_level(alpha)
    k = _check_checkpoints(checkpoints).size
    if final_share is None or k == 1:
        return np.full(k, alpha / k)
    w = float(final_share)
    if not (math.isfinite(w) and 0.0 < w < 1.0):
        raise InvalidParameterError(
            f"final_share = {final_share!r} is invalid; valid range: 0 < final_share < 1, "
            "or None for an even split"
        )
    levels = np.full(k, (1.0 - w) * alpha / (k - 1))
    levels[-1] = w * alpha
    return levels


def _union_args(
    successes: Any, n: Any, alpha: float, checkpoints: Any, final_share: float | None
) -> tuple[IntArray, IntArray, FloatArray]:
    alpha = check_probability_level(alpha)
    s_arr, n_arr = check_count_arrays(successes, n, k_name="successes")
    cps = _check_checkpoints(checkpoints)
    off = ~np.isin(n_arr, cps)
    if np.any(off):
        raise InvalidParameterError(
            f"n = {int(n_arr[off].flat[0])} is invalid; valid: n must be a checkpoint of the "
            f"schedule {_short(cps)}"
        )
    levels = union_levels(alpha, checkpoints=checkpoints, final_share=final_share)
    return s_arr, n_arr, levels[np.searchsorted(cps, n_arr)]


def _cp_per_level(fn: Any, s_arr: IntArray, n_arr: IntArray, level: FloatArray) -> Any:
    s_arr, n_arr = np.broadcast_arrays(s_arr, n_arr)
    level = np.broadcast_to(level, s_arr.shape)
    out = np.empty(s_arr.shape, dtype=np.float64)
    for value in np.unique(level):
        mask = level == value
        out[mask] = fn(s_arr[mask], n_arr[mask], alpha=float(value))
    return _as_output(out)


def union_lower(
    successes: Any,
    n: Any,
    *,
    alpha: float,
    checkpoints: Sequence[int],
    final_share: float | None = None,
) -> Any:
    """Lower bound valid at every checkpoint at once: Clopper-Pearson at ``alpha / K``.

    Bonferroni over the ``K = len(checkpoints)`` looks of a schedule fixed before
    sampling: with ``L_k`` the one-sided Clopper-Pearson bound (Clopper & Pearson 1934;
    :func:`~smoothcert.stats.binomial.clopper_pearson_lower`) of ``S_k`` successes in
    ``n_k`` trials at level ``alpha / K``::

        P(exists k: p < L_k) <= sum_k P(p < L_k) <= K * alpha / K = alpha

    whatever the (data-dependent) round at which the loop stops, also if it stops before
    the last checkpoint. Only valid at the checkpoints: looking at other sample counts
    is not covered, hence ``n`` must be one of them. Conservative in floating point as
    the Clopper-Pearson bound.

    Args:
        successes: successes ``S`` among the first ``n`` samples, int or integer array,
            ``0 <= S <= n``.
        n: cumulative number of samples, int or integer array (broadcast), each a member
            of ``checkpoints``.
        alpha: one-sided failure probability over all looks, ``0 < alpha < 1``.
        checkpoints: the schedule, e.g. from :func:`checkpoint_schedule`, fixed before
            sampling; its length ``K`` sets the level ``alpha / K``.
        final_share: None for ``alpha / K`` everywhere, or the share of ``alpha`` spent
            at the last checkpoint (:func:`union_levels`; the display above holds with
            those levels in place of ``alpha / K``).

    Returns:
        A numpy float64 scalar or array (broadcast shape of ``successes`` and ``n``) in
        [0, 1].

    Raises:
        InvalidParameterError: if counts are not integers, ``n < 1``, ``successes``
            outside ``[0, n]``, ``alpha`` outside (0, 1), ``checkpoints`` not a strictly
            increasing sequence of positive integers, or ``n`` not a checkpoint.

    Example:
        >>> cps = (100, 200, 400)
        >>> union_lower([0, 190], 200, alpha=0.03, checkpoints=cps).round(4).tolist()
        [0.0, 0.9018]
    """
    s_arr, n_arr, level = _union_args(successes, n, alpha, checkpoints, final_share)
    return _cp_per_level(clopper_pearson_lower, s_arr, n_arr, level)


def union_upper(
    successes: Any,
    n: Any,
    *,
    alpha: float,
    checkpoints: Sequence[int],
    final_share: float | None = None,
) -> Any:
    """Upper bound valid at every checkpoint at once: Clopper-Pearson at ``alpha / K``.

    The mirror of :func:`union_lower` (one-sided Clopper-Pearson upper bound,
    :func:`~smoothcert.stats.binomial.clopper_pearson_upper`, at level ``alpha / K``).

    Args:
        successes: successes ``S``, int or integer array, ``0 <= S <= n``.
        n: cumulative number of samples (broadcast), each a member of ``checkpoints``.
        alpha: one-sided failure probability over all looks, ``0 < alpha < 1``.
        checkpoints: the schedule fixed before sampling.
        final_share: as in :func:`union_lower`.

    Returns:
        A numpy float64 scalar or array in [0, 1].

    Raises:
        InvalidParameterError: as :func:`union_lower`.

    Example:
        >>> round(float(union_upper(10, 200, alpha=0.03, checkpoints=(100, 200, 400))), 4)
        0.0982
    """
    s_arr, n_arr, level = _union_args(successes, n, alpha, checkpoints, final_share)
    return _cp_per_level(clopper_pearson_upper, s_arr, n_arr, level)


# --- beta-binomial mixture confidence sequence -----------------------------------------------


def _check_prior(prior: Any) -> tuple[float, float]:
    valid = "a pair (a, b) of finite reals > 0"
    try:
        a, b = prior
    except (TypeError, ValueError):
        raise InvalidParameterError(f"prior = {prior!r} is invalid; valid: {valid}") from None
    for v in (a, b):
        if (
            isinstance(v, bool)
            or not isinstance(v, numbers.Real)
            or not (math.isfinite(float(v)) and float(v) > 0.0)
        ):
            raise InvalidParameterError(f"prior = {prior!r} is invalid; valid: {valid}")
    return float(a), float(b)


def _mixture_lower_end(s: IntArray, f: IntArray, a: float, b: float, alpha: float) -> FloatArray:
    """Conservative lower end of ``{p : log M(p) < log(1/alpha)}`` for ``s >= 1``.

    Newton's method in ``u = log p`` on ``h(u) = log M(e^u) - log(1/alpha)``, which is
    convex and decreasing left of ``log(S / n)``, started left of the root (where the
    iterates increase monotonically to it), gives an estimate ``u``. The returned float
    is then the first of ``exp(u - 4^j du)``, ``du`` twice the margin over the slope,
    ``j = 0, 1, ...`` (else 0), whose computed ``log M`` exceeds the threshold by the
    safety margin, hence which is truly outside the confidence sequence: the estimate
    is never trusted on its own.
    """
    sf = s.astype(np.float64)
    ff = f.astype(np.float64)
    nf = sf + ff
    log_thr = -math.log(alpha)
    lb_prior = float(betaln(a, b))
    big_n = nf + a + b
    # log M(p) = c - S log p - F log(1 - p); |error| <= MIXTURE_LOG_MARGIN * (scale + ...).
    c = betaln(a + sf, b + ff) - lb_prior
    scale = big_n * np.log(big_n + math.e) + abs(lb_prior) + log_thr
    # Keep p = e^u below 1 (S = n): exp(-1.2e-16) is the largest float below 1.
    u_max = np.minimum(np.log(sf / nf), -1.2e-16)
    # h(u) >= c - S u - log_thr, so h(u0) >= S > 0: u0 lies left of the root.
    u = np.clip((c - log_thr) / sf - 1.0, _LOG_TINY, u_max)
    for _ in range(_NEWTON_STEPS):
        p = np.exp(u)
        h = c - sf * u - ff * np.log1p(-p) - log_thr
        slope = ff * p / (1.0 - p) - sf  # h'(u) < 0 left of log(S / n)
        step = np.where(slope < 0.0, h / np.where(slope < 0.0, slope, -1.0), 0.0)
        u = np.minimum(u - step, u_max)
        # Quadratic convergence: after a step this small the error is far below the
        # rounding noise of h (``~1e-16 N log N``), which the shrink ladder absorbs.
        if np.all(np.abs(step) <= 1e-8 * np.maximum(1.0, np.abs(u))):
            break
    # Step left of the estimate by twice the margin over the slope (in u), verify, and
    # quadruple the step until the computed log M clears the margin (at most 30 times).
    estimate = np.exp(u)
    slope = np.abs(ff * estimate / (1.0 - estimate) - sf)
    margin = MIXTURE_LOG_MARGIN * (scale + np.abs(sf * u) + np.abs(ff * np.log1p(-estimate)))
    du = np.minimum(2.0 * margin / np.maximum(slope, 1e-300), 1.0) + 1e-15 * np.abs(u)
    out = np.zeros(s.shape, dtype=np.float64)
    todo = np.arange(s.size)
    for _ in range(_VERIFY_STEPS):
        cand = np.exp(u[todo] - du[todo])
        with np.errstate(divide="ignore"):
            t_s = sf[todo] * np.log(cand)
        t_f = ff[todo] * np.log1p(-cand)
        need = MIXTURE_LOG_MARGIN * (scale[todo] + np.abs(t_s) + np.abs(t_f))
        ok = (cand > 0.0) & (c[todo] - t_s - t_f >= log_thr + need)
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
        if todo.size == 0:
            break
        du[todo] *= 4.0
    # Entries still in ``todo`` keep 0: always a valid lower bound.
    return out


def _mixture_args(
    successes: Any, n: Any, alpha: float, prior: Any
) -> tuple[IntArray, IntArray, float, float, float]:
    alpha = check_probability_level(alpha)
    s_arr, n_arr = check_count_arrays(successes, n, k_name="successes")
    a, b = _check_prior(prior)
    return s_arr, n_arr, alpha, a, b


def mixture_lower(
    successes: Any, n: Any, *, alpha: float, prior: tuple[float, float] = (0.5, 0.5)
) -> Any:
    """Anytime-valid lower bound: the beta-binomial mixture confidence sequence.

    Robbins (1970); Howard et al. (2021, arXiv 1810.08240), Sec. 3 / Prop. 2. With a
    Beta(a, b) mixing prior, ``S`` successes and ``F = n - S`` failures, the mixture
    likelihood ratio::

        M_n(p) = B(a + S, b + F) / (B(a, b) p^S (1 - p)^F)

    is, for Bernoulli(p) samples, a nonnegative martingale with ``M_0 = 1``, so by
    Ville's inequality ``P(exists n >= 1: M_n(p) >= 1 / alpha) <= alpha``. The
    confidence sequence ``{p : M_n(p) < 1 / alpha}`` is an interval containing ``S / n``
    (``log M_n`` is convex in ``p`` and ``M_n(S / n) <= 1``); its lower end is returned.
    It is valid at EVERY ``n`` simultaneously, with any data-dependent stopping time,
    and needs no schedule.

    The set is TWO-sided at total level alpha: the lower and upper ends
    (:func:`mixture_upper`) hold JOINTLY with failure probability alpha. Using one end
    only is conservative (its own failure probability is at most alpha, usually well
    below). It is also conservative at a fixed ``n``: a Clopper-Pearson bound at the
    same alpha is tighter, the price of the anytime guarantee.

    Numerics (DESIGN.md soundness rule 4): ``log M_n`` is evaluated in log space with
    ``scipy.special.betaln``, ``log`` and ``log1p``. Newton's method in ``log p``
    (convex, started left of the root) gives an estimate of the lower end; the returned
    float is a point at or just left of it that is VERIFIED to be rejected:
    ``p`` counts as rejected only if the computed ``log M_n(p)`` exceeds
    ``log(1/alpha)`` by :data:`MIXTURE_LOG_MARGIN` times
    ``N log(N + e) + |S log p| + |F log(1 - p)| + |log B(a, b)| + log(1/alpha)``,
    ``N = n + a + b``. Measured with mpmath, scipy's ``betaln`` errs by at most about
    one ulp of ``N log N`` (up to ``N = 1e15``), 225 times inside the margin, so the
    returned float is truly outside the confidence sequence: a sound lower bound
    (checked with mpmath for ``n <= 1e9``; APPROXIMATE beyond). The margin shrinks
    alpha by a relative ``~5e-14 N log N`` (``7e-7`` at ``n = 1e6``, ``1e-3`` at
    ``n = 1e9``). Cost: about 5-15 vectorised Newton steps, roughly 10 ms for 1000
    entries on a slow core.

    Args:
        successes: successes ``S`` among the first ``n`` samples, int or integer array,
            ``0 <= S <= n``.
        n: cumulative number of samples, int or integer array (broadcast), ``n >= 1``.
        alpha: failure probability, ``0 < alpha < 1`` (of the two-sided sequence, hence
            also of this one side).
        prior: ``(a, b)`` of the Beta mixing distribution, both finite and ``> 0``; fixed
            before sampling. The default Beta(1/2, 1/2) (Jeffreys) is Robbins' choice.

    Returns:
        A numpy float64 scalar or array (broadcast shape of ``successes`` and ``n``) in
        [0, 1]; 0 exactly when ``S = 0``.

    Raises:
        InvalidParameterError: if counts are not integers, ``n < 1``, ``successes``
            outside ``[0, n]``, ``alpha`` outside (0, 1) or ``prior`` is not a pair of
            finite positive reals.

    Example:
        >>> mixture_lower([0, 50, 100], 100, alpha=0.05).round(4).tolist()
        [0.0, 0.3383, 0.943]
    """
    s_arr, n_arr, alpha, a, b = _mixture_args(successes, n, alpha, prior)
    out = np.zeros(s_arr.shape, dtype=np.float64)
    pos = s_arr > 0
    out[pos] = _mixture_lower_end(s_arr[pos], n_arr[pos] - s_arr[pos], a, b, alpha)
    return _as_output(out)


def mixture_upper(
    successes: Any, n: Any, *, alpha: float, prior: tuple[float, float] = (0.5, 0.5)
) -> Any:
    """Anytime-valid upper bound: the upper end of the beta-binomial mixture sequence.

    See :func:`mixture_lower` (Robbins 1970; Howard et al. 2021, arXiv 1810.08240).
    Computed by exact symmetry as ``1 - L``, with ``L`` the lower end for the failures
    ``n - S`` under the mirrored prior ``(b, a)``, and ``1 - L`` rounded up. Near 0 the
    result is therefore resolved to ``ulp(1) = 2.2e-16`` (conservative, never smaller
    than the exact end).

    Args:
        successes: successes ``S``, int or integer array, ``0 <= S <= n``.
        n: cumulative number of samples, int or integer array (broadcast), ``n >= 1``.
        alpha: failure probability, ``0 < alpha < 1``.
        prior: ``(a, b)`` of the Beta mixing distribution (the same prior as the lower
            bound; it is mirrored internally).

    Returns:
        A numpy float64 scalar or array in [0, 1]; 1 exactly when ``S = n``.

    Raises:
        InvalidParameterError: as :func:`mixture_lower`.

    Example:
        >>> mixture_upper([0, 50, 100], 100, alpha=0.05).round(4).tolist()
        [0.057, 0.6617, 1.0]
    """
    s_arr, n_arr, alpha, a, b = _mixture_args(successes, n, alpha, prior)
    out = np.ones(s_arr.shape, dtype=np.float64)
    below = s_arr < n_arr
    f = n_arr[below] - s_arr[below]
    low_f = _mixture_lower_end(f, s_arr[below], b, a, alpha)
    out[below] = np.clip(_one_minus_up(low_f), 0.0, 1.0)
    return _as_output(out)


# --- dispatch --------------------------------------------------------------------------------


def _by_name(
    union_fn: Any,
    mixture_fn: Any,
    successes: Any,
    n: Any,
    alpha: float,
    bound: str,
    checkpoints: Sequence[int] | None,
    final_share: float | None,
) -> Any:
    """Call the ``union`` or ``mixture`` function of one side, as ``bound`` names."""
    bound = check_choice(bound, name="bound", choices=SEQUENCE_BOUNDS)
    if bound == "mixture":
        return mixture_fn(successes, n, alpha=alpha)
    if checkpoints is None:
        raise InvalidParameterError(
            f"checkpoints = None is invalid for bound = {bound!r}; valid: the schedule "
            "fixed before sampling, e.g. from checkpoint_schedule()"
        )
    return union_fn(successes, n, alpha=alpha, checkpoints=checkpoints, final_share=final_share)


def sequence_lower(
    successes: Any,
    n: Any,
    *,
    alpha: float,
    bound: str,
    checkpoints: Sequence[int] | None = None,
    final_share: float | None = None,
) -> Any:
    """Anytime-valid lower bound by name: ``"union"`` or ``"mixture"``.

    Dispatches to :func:`union_lower` (needs ``checkpoints``; ``n`` must be one of
    them) or :func:`mixture_lower` (default prior; ``checkpoints`` is accepted and
    ignored).

    Args:
        successes: successes ``S``, int or integer array, ``0 <= S <= n``.
        n: cumulative number of samples, int or integer array (broadcast), ``n >= 1``.
        alpha: one-sided failure probability over all looks, ``0 < alpha < 1``.
        bound: one of :data:`SEQUENCE_BOUNDS`.
        checkpoints: the schedule fixed before sampling (required for ``"union"``).
        final_share: ``"union"`` only: the share of alpha spent at the last checkpoint
            (:func:`union_levels`); None splits evenly. Ignored by ``"mixture"``.

    Returns:
        A numpy float64 scalar or array in [0, 1].

    Raises:
        InvalidParameterError: if ``bound`` is not one of :data:`SEQUENCE_BOUNDS`,
            ``checkpoints`` is missing for ``"union"``, or as the chosen bound.

    Example:
        >>> cps = checkpoint_schedule(400, first=100)
        >>> [round(float(sequence_lower(190, 200, alpha=0.03, bound=b, checkpoints=cps)), 4)
        ...  for b in SEQUENCE_BOUNDS]
        [0.9018, 0.8756]
    """
    return _by_name(
        union_lower, mixture_lower, successes, n, alpha, bound, checkpoints, final_share
    )


def sequence_upper(
    successes: Any,
    n: Any,
    *,
    alpha: float,
    bound: str,
    checkpoints: Sequence[int] | None = None,
    final_share: float | None = None,
) -> Any:
    """Anytime-valid upper bound by name: ``"union"`` or ``"mixture"``.

    Dispatches to :func:`union_upper` or :func:`mixture_upper`, as
    :func:`sequence_lower`.

    Args:
        successes: successes ``S``, int or integer array, ``0 <= S <= n``.
        n: cumulative number of samples, int or integer array (broadcast), ``n >= 1``.
        alpha: one-sided failure probability over all looks, ``0 < alpha < 1``.
        bound: one of :data:`SEQUENCE_BOUNDS`.
        checkpoints: the schedule fixed before sampling (required for ``"union"``).
        final_share: ``"union"`` only: the share of alpha spent at the last checkpoint
            (:func:`union_levels`); None splits evenly. Ignored by ``"mixture"``.

    Returns:
        A numpy float64 scalar or array in [0, 1].

    Raises:
        InvalidParameterError: as :func:`sequence_lower`.

    Example:
        >>> round(float(sequence_upper(10, 200, alpha=0.03, bound="mixture")), 4)
        0.1244
    """
    return _by_name(
        union_upper, mixture_upper, successes, n, alpha, bound, checkpoints, final_share
    )

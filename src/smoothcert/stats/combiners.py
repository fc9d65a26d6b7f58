"""Multi-class combiners: a lower bound on p_A and an upper bound on the runner-up p_B.

The Gaussian top-two radius ``sigma/2 (Phi^-1(pA_lower) - Phi^-1(pB_upper))`` (Cohen et
al. 2019, arXiv 1902.02918, Theorem 1) and the one-class radius ``sigma Phi^-1(pA_lower)``
need, from the ESTIMATION sample, a lower bound on the probability ``p_A`` of a class A
and an upper bound on ``p_B = max_{c != A} p_c``, both holding TOGETHER with probability
at least ``1 - alpha``. The class A (and, for CPM, the partition of the other classes)
must be chosen on an independent SELECTION sample (DESIGN.md soundness rule 1). Given the
selection, ``A``, the true runner-up ``B = argmax_{c != A} p_c`` and every CPM bucket are
fixed, so each combiner is a union bound over a few fixed one-sided events:

* ``mono`` (one-class): ``p_A`` lower at alpha; ``p_B <= 1 - p_A``, so the upper bound
  is ``1 - pA_lower`` at no extra cost.
* ``top2``: ``p_A`` lower at alpha/2; ``max_{c != A}`` of the one-sided upper bound of
  ``p_c`` at alpha/2 (DESIGN.md, Gaussian top-two variant). Only the true runner-up's own
  bound has to hold, and the maximum dominates it.
* ``bonferroni``: every class at alpha/K (K classes), ``p_B`` upper the maximum over
  ``c != A``. Looser than ``top2``; kept for parity with older work.
* ``cpm``: the Class Partitioning Method of Delattre et al., "Bridging the Theoretical
  Gap in Randomized Smoothing" (AISTATS 2025, arXiv 2504.02412), as in the authors'
  released code (``certify_from_log_cpm`` in ``code/core_cpm.py`` of
  github.com/blaisedelattre/bridging_the_gap_rs); see :func:`cpm_buckets` for the rule.
  The other classes are split into buckets chosen from the selection counts; ``p_A``
  lower and each bucket's total probability upper, all at alpha / (1 + buckets); ``p_B``
  upper the maximum over buckets (a class's probability is at most its bucket's).

Every upper bound is finally capped at ``1 - pA_lower`` (rounded up): on the event that
the lower bound holds, ``p_B <= 1 - p_A <= 1 - pA_lower``, so the cap costs no alpha.

Evidence (``bound``): ``"cp"`` takes per-class hard-vote counts (Clopper-Pearson,
:mod:`smoothcert.stats.binomial`); ``"hoeffding"`` and ``"bernstein"`` take per-class
SUMS of [0, 1] scores over the n samples, and ``"bernstein"`` also their sums of squares
(:mod:`smoothcert.stats.bounded`). Scores must lie on the simplex (per sample, the class
scores sum to at most 1, as softmax, sparsemax and hardmax do): ``mono``, the cap and CPM's
merged buckets rely on it. A merged CPM bucket's sample variance is not computable from
per-class sums of squares (cross terms are missing); for ``"bernstein"`` it is replaced by
its upper bound ``n/(n-1) m (1 - m)`` (``x^2 <= x`` on [0, 1]), which is conservative.

Example:
    >>> lo, up = combine([10, 980, 10], top=1, alpha=0.001, combiner="top2")
    >>> round(float(lo), 4), round(float(up), 4)
    (0.961, 0.0251)
    >>> lo, up = combine([10, 980, 10], top=1, alpha=0.001, combiner="mono")
    >>> round(float(lo), 4), round(float(up), 4)
    (0.9623, 0.0377)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert._validation import check_choice, check_probability_level
from smoothcert.errors import InvalidParameterError
from smoothcert.stats.binomial import clopper_pearson_lower, clopper_pearson_upper
from smoothcert.stats.bounded import (
    empirical_bernstein_lower,
    empirical_bernstein_upper,
    hoeffding_lower,
    hoeffding_upper,
)

COMBINERS: tuple[str, ...] = ("mono", "top2", "cpm", "bonferroni")
"""Names accepted by :func:`combine` (``combiner=``)."""

COMBINER_BOUNDS: tuple[str, ...] = ("cp", "hoeffding", "bernstein")
"""Names accepted by the combiners' ``bound=``: counts (``cp``) or score sums."""

SCORE_TOLERANCE = 1e-9
"""Relative float tolerance of the score-sum checks (sums <= n, simplex, sums of squares)."""

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
# Per-class (or per-bucket) statistics: (k,) for cp, (mean,) for hoeffding, (mean, var)
# for bernstein; every array has shape (rows, columns).
_Stats = tuple[NDArray[Any], ...]


# --- evidence ------------------------------------------------------------------------------


class _Evidence:
    """Validated evidence, flattened to ``rows x classes``, with ``n`` per row."""

    def __init__(self, bound: str, stats: _Stats, n: IntArray, lead: tuple[int, ...]) -> None:
        self.bound = bound
        self.stats = stats
        self.n = n
        self.lead = lead

    @property
    def num_classes(self) -> int:
        return int(self.stats[0].shape[1])


def _fail(name: str, value: Any, valid: str) -> InvalidParameterError:
    return InvalidParameterError(f"{name} = {value!r} is invalid; valid range: {valid}")


def _count_matrix(value: Any, *, name: str) -> NDArray[np.int64]:
    """Integer counts of shape ``(..., K)``, ``K >= 2``, all ``>= 0``, as int64."""
    arr = np.asarray(value)
    valid = "integer counts >= 0 of shape (..., K) with K >= 2 classes"
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise _fail(name, value, valid)
    if np.issubdtype(arr.dtype, np.floating) and (
        not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))
    ):
        raise _fail(name, value, valid)
    if arr.ndim < 1 or arr.shape[-1] < 2:
        raise InvalidParameterError(f"{name} of shape {arr.shape} is invalid; valid: {valid}")
    out = arr.astype(np.int64)
    if np.any(out < 0):
        raise _fail(name, int(out[out < 0].flat[0]), valid)
    return out


def _score_matrix(value: Any, *, name: str) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(name, value, "finite real numbers >= 0 of shape (..., K)") from None
    if arr.ndim < 1 or arr.shape[-1] < 2:
        raise InvalidParameterError(
            f"{name} of shape {arr.shape} is invalid; valid: shape (..., K) with K >= 2 classes"
        )
    if not np.all(np.isfinite(arr)):
        raise _fail(name, value, f"finite {name} >= 0 (NaN/Inf found)")
    if np.any(arr < 0):
        raise _fail(name, float(arr[arr < 0].flat[0]), f"{name} >= 0")
    return arr


def _evidence(evidence: Any, *, bound: str, n: Any, sums_of_squares: Any) -> _Evidence:
    bound = check_choice(bound, name="bound", choices=COMBINER_BOUNDS)
    if bound == "cp":
        if sums_of_squares is not None:
            raise InvalidParameterError(
                "sums_of_squares was given with bound = 'cp'; valid: None (counts need none)"
            )
        k = _count_matrix(evidence, name="counts")
        lead = k.shape[:-1]
        k2 = k.reshape(-1, k.shape[-1])
        total = k2.sum(axis=1)
        if n is not None:
            n_arr = np.broadcast_to(_n_array(n, lead, minimum=1), lead).reshape(-1)
            bad = total != n_arr
            if np.any(bad):
                i = int(np.flatnonzero(bad)[0])
                raise InvalidParameterError(
                    f"counts sum to {int(total[i])} but n = {int(n_arr[i])}; valid: the "
                    "per-class counts of one sample sum to its size n"
                )
        if np.any(total < 1):
            raise InvalidParameterError(
                "counts sum to 0; valid: at least 1 sample (n >= 1) in every row"
            )
        return _Evidence(bound, (k2,), total.astype(np.int64), lead)
    sums = _score_matrix(evidence, name="sums")
    lead = sums.shape[:-1]
    if n is None:
        raise InvalidParameterError(
            f"n = None is invalid for bound = {bound!r}; valid: the number of samples, "
            f"integer n >= {2 if bound == 'bernstein' else 1}"
        )
    n_arr = np.broadcast_to(_n_array(n, lead, minimum=2 if bound == "bernstein" else 1), lead)
    s2 = sums.reshape(-1, sums.shape[-1])
    nf = n_arr.reshape(-1).astype(np.float64)
    tol = SCORE_TOLERANCE * nf
    if np.any(s2 > (nf + tol)[:, None]):
        raise _fail("sums", float(s2[s2 > (nf + tol)[:, None]][0]), "0 <= sums <= n")
    total = s2.sum(axis=1)
    if np.any(total > nf + tol):
        i = int(np.flatnonzero(total > nf + tol)[0])
        raise InvalidParameterError(
            f"sums add up to {float(total[i])!r} over the classes but n = {int(nf[i])}; "
            "valid: scores on the simplex (per sample, class scores sum to at most 1)"
        )
    mean = np.clip(s2 / nf[:, None], 0.0, 1.0)
    if bound == "hoeffding":
        if sums_of_squares is not None:
            raise InvalidParameterError(
                "sums_of_squares was given with bound = 'hoeffding'; valid: None"
            )
        return _Evidence(bound, (mean,), n_arr.reshape(-1).astype(np.int64), lead)
    if sums_of_squares is None:
        raise InvalidParameterError(
            "sums_of_squares = None is invalid for bound = 'bernstein'; valid: per-class "
            "sums of squared scores, same shape as sums"
        )
    sq = _score_matrix(sums_of_squares, name="sums_of_squares")
    if sq.shape != sums.shape:
        raise InvalidParameterError(
            f"sums_of_squares of shape {sq.shape} is invalid; valid: the shape of sums, "
            f"{sums.shape}"
        )
    q2 = sq.reshape(s2.shape)
    slack = SCORE_TOLERANCE * (1.0 + s2)
    # For x in [0, 1]: sum x^2 <= sum x, and sum x^2 >= (sum x)^2 / n (Cauchy-Schwarz).
    if np.any(q2 > s2 + slack) or np.any(q2 < s2 * s2 / nf[:, None] - slack):
        raise InvalidParameterError(
            "sums_of_squares is inconsistent with sums; valid: sums^2 / n <= sums_of_squares "
            "<= sums for scores in [0, 1]"
        )
    # Unbiased sample variance; the cancellation error (a few ulps of q2) is added back.
    var = np.maximum(q2 - s2 * s2 / nf[:, None], 0.0) + 8.0 * np.finfo(np.float64).eps * q2
    var = var / (nf[:, None] - 1.0)
    return _Evidence(bound, (mean, var), n_arr.reshape(-1).astype(np.int64), lead)


def _n_array(n: Any, lead: tuple[int, ...], *, minimum: int) -> IntArray:
    arr = np.asarray(n)
    valid = f"integer n >= {minimum} (broadcast to the rows {lead})"
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise _fail("n", n, valid)
    if np.issubdtype(arr.dtype, np.floating) and (
        not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))
    ):
        raise _fail("n", n, valid)
    out = arr.astype(np.int64)
    if np.any(out < minimum):
        raise _fail("n", int(out[out < minimum].flat[0]), valid)
    try:
        np.broadcast_to(out, lead)
    except ValueError:
        raise _fail("n", n, valid) from None
    return out


def _top(top: Any, ev: _Evidence) -> IntArray:
    arr = np.asarray(top)
    k = ev.num_classes
    valid = f"integer class index 0 <= top <= {k - 1} (broadcast to the rows {ev.lead})"
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise _fail("top", top, valid)
    if np.any((arr < 0) | (arr >= k)):
        raise _fail("top", int(arr[(arr < 0) | (arr >= k)].flat[0]), valid)
    try:
        out = np.broadcast_to(arr.astype(np.int64), ev.lead)
    except ValueError:
        raise _fail("top", top, valid) from None
    return out.reshape(-1)


# --- bounds on statistics ------------------------------------------------------------------


def _split(alpha: float, parts: int) -> float:
    """``alpha / parts`` rounded down, so that ``parts`` shares never exceed alpha."""
    return float(np.nextafter(alpha / parts, 0.0)) if parts > 1 else alpha


def _lower(bound: str, stats: _Stats, n: IntArray, alpha: float) -> FloatArray:
    """Elementwise lower bound; ``stats`` arrays and ``n`` share one shape."""
    if bound == "cp":
        out = clopper_pearson_lower(stats[0], n, alpha=alpha)
    elif bound == "hoeffding":
        out = hoeffding_lower(stats[0], n=n, alpha=alpha)
    else:
        out = empirical_bernstein_lower(stats[0], stats[1], n=n, alpha=alpha)
    return np.asarray(out, dtype=np.float64)


def _upper(bound: str, stats: _Stats, n: IntArray, alpha: float) -> FloatArray:
    if bound == "cp":
        out = clopper_pearson_upper(stats[0], n, alpha=alpha)
    elif bound == "hoeffding":
        out = hoeffding_upper(stats[0], n=n, alpha=alpha)
    else:
        out = empirical_bernstein_upper(stats[0], stats[1], n=n, alpha=alpha)
    return np.asarray(out, dtype=np.float64)


def _take(stats: _Stats, col: IntArray) -> _Stats:
    return tuple(s[np.arange(s.shape[0]), col] for s in stats)


def _max_upper(
    bound: str, stats: _Stats, valid: NDArray[np.bool_], n: IntArray, alpha: float
) -> FloatArray:
    """``max`` over the valid columns of each row of the upper bound at level alpha."""
    if bound in ("cp", "hoeffding"):
        # Both are nondecreasing in the statistic at fixed n: bound the largest one.
        s = np.where(valid, stats[0], 0)
        return _upper(bound, (s.max(axis=1),), n, alpha)
    nn = np.broadcast_to(n[:, None], stats[0].shape)
    ups = _upper(bound, stats, nn, alpha)
    out: FloatArray = np.where(valid, ups, 0.0).max(axis=1)
    return out


def _one_minus_up(x: FloatArray) -> FloatArray:
    """``1 - x`` rounded up (the smallest float ``>= 1 - x`` exactly), ``x`` in [0, 1]."""
    y = 1.0 - x
    out: FloatArray = np.where(1.0 - y > x, np.nextafter(y, 1.0), y)
    return out


def _finish(lower: FloatArray, upper: FloatArray, lead: tuple[int, ...]) -> tuple[Any, Any]:
    upper = np.minimum(upper, _one_minus_up(lower))
    lo, up = lower.reshape(lead), upper.reshape(lead)
    if not lead:
        return lo[()], up[()]
    return lo, up


# --- combiners -----------------------------------------------------------------------------


def combine_mono(
    evidence: Any,
    *,
    top: Any,
    alpha: float,
    bound: str = "cp",
    n: Any = None,
    sums_of_squares: Any = None,
) -> tuple[Any, Any]:
    """One-class combiner: ``p_A`` lower at alpha, ``p_B`` upper ``= 1 - p_A`` lower.

    Cohen et al. 2019 (arXiv 1902.02918), CERTIFY: with ``p_B <= 1 - p_A`` the top-two
    radius reduces to ``sigma Phi^-1(pA_lower)``. All of alpha goes to ``p_A``.

    Args:
        evidence: per-class statistics of the ESTIMATION sample, shape ``(..., K)``,
            ``K >= 2``: integer counts for ``bound="cp"``, score sums otherwise.
        top: the class A (int, or integer array broadcast to ``evidence.shape[:-1]``),
            chosen on an independent selection sample.
        alpha: one-sided failure probability of the pair of bounds, ``0 < alpha < 1``.
        bound: one of :data:`COMBINER_BOUNDS`.
        n: the estimation sample size(s); optional for counts (then checked against
            their sum), required for score sums.
        sums_of_squares: per-class sums of squared scores, only for ``"bernstein"``.

    Returns:
        ``(p_lower, p_upper)``: numpy float64 scalars (1-D ``evidence``) or arrays of
        shape ``evidence.shape[:-1]``, in [0, 1], with ``p_lower + p_upper >= 1``.

    Raises:
        InvalidParameterError: on bad evidence, ``top``, ``alpha``, ``bound`` or ``n``.

    Example:
        >>> lo, up = combine_mono([2, 95, 3], top=1, alpha=0.05)
        >>> round(float(lo), 4), round(float(up), 4)
        (0.8977, 0.1023)
    """
    alpha = check_probability_level(alpha)
    ev = _evidence(evidence, bound=bound, n=n, sums_of_squares=sums_of_squares)
    col = _top(top, ev)
    lower = _lower(ev.bound, _take(ev.stats, col), ev.n, alpha)
    return _finish(lower, _one_minus_up(lower), ev.lead)


def _others_mask(ev: _Evidence, col: IntArray) -> NDArray[np.bool_]:
    rows = col.shape[0]
    mask = np.ones((rows, ev.num_classes), dtype=bool)
    mask[np.arange(rows), col] = False
    return mask


def _split_combiner(
    evidence: Any, top: Any, alpha: float, bound: str, n: Any, sums_of_squares: Any, *, top2: bool
) -> tuple[Any, Any]:
    alpha = check_probability_level(alpha)
    ev = _evidence(evidence, bound=bound, n=n, sums_of_squares=sums_of_squares)
    col = _top(top, ev)
    level = _split(alpha, 2 if top2 else ev.num_classes)
    lower = _lower(ev.bound, _take(ev.stats, col), ev.n, level)
    upper = _max_upper(ev.bound, ev.stats, _others_mask(ev, col), ev.n, level)
    return _finish(lower, upper, ev.lead)


def combine_top2(
    evidence: Any,
    *,
    top: Any,
    alpha: float,
    bound: str = "cp",
    n: Any = None,
    sums_of_squares: Any = None,
) -> tuple[Any, Any]:
    """Top-two combiner: ``p_A`` lower at alpha/2, ``max_{c != A}`` upper at alpha/2.

    DESIGN.md, "Gaussian (Cohen)" top-two variant; the radius is Cohen et al. 2019
    (arXiv 1902.02918) Theorem 1, ``sigma/2 (Phi^-1(pA_lower) - Phi^-1(pB_upper))``.
    Validity for any K: given the selection sample, the true runner-up
    ``B = argmax_{c != A} p_c`` is one fixed class and the returned upper bound
    dominates B's own bound at alpha/2, so the union bound gives alpha. For counts this
    is :func:`smoothcert.stats.binomial.runner_up_upper` at alpha/2 (vectorised over
    rows), capped at ``1 - p_lower``.

    Args:
        evidence: per-class statistics of the ESTIMATION sample, as :func:`combine_mono`.
        top: the class A, chosen on an independent selection sample.
        alpha: one-sided failure probability of the pair of bounds, ``0 < alpha < 1``.
        bound: one of :data:`COMBINER_BOUNDS`.
        n: the estimation sample size(s), as :func:`combine_mono`.
        sums_of_squares: only for ``"bernstein"``.

    Returns:
        ``(p_lower, p_upper)`` as :func:`combine_mono`, with ``p_lower + p_upper <= 1``.

    Raises:
        InvalidParameterError: as :func:`combine_mono`.

    Example:
        >>> lo, up = combine_top2([2, 95, 3], top=1, alpha=0.05)
        >>> round(float(lo), 4), round(float(up), 4)
        (0.8872, 0.0852)
    """
    return _split_combiner(evidence, top, alpha, bound, n, sums_of_squares, top2=True)


def combine_bonferroni(
    evidence: Any,
    *,
    top: Any,
    alpha: float,
    bound: str = "cp",
    n: Any = None,
    sums_of_squares: Any = None,
) -> tuple[Any, Any]:
    """Bonferroni combiner: every class bounded at alpha/K; ``p_B`` upper the max over c != A.

    A union bound over all K classes, as in older multi-class certificates (and the
    ``certify_from_log_bonferroni`` baseline of Delattre et al., arXiv 2504.02412). Sound
    but looser than :func:`combine_top2`; for parity with published numbers.

    Args:
        evidence: per-class statistics of the ESTIMATION sample, as :func:`combine_mono`.
        top: the class A, chosen on an independent selection sample.
        alpha: one-sided failure probability of all the bounds, ``0 < alpha < 1``.
        bound: one of :data:`COMBINER_BOUNDS`.
        n: the estimation sample size(s), as :func:`combine_mono`.
        sums_of_squares: only for ``"bernstein"``.

    Returns:
        ``(p_lower, p_upper)`` as :func:`combine_top2`.

    Raises:
        InvalidParameterError: as :func:`combine_mono`.

    Example:
        >>> lo, up = combine_bonferroni([2, 95, 3], top=1, alpha=0.05)
        >>> round(float(lo), 4), round(float(up), 4)
        (0.8813, 0.0905)
    """
    return _split_combiner(evidence, top, alpha, bound, n, sums_of_squares, top2=False)


def cpm_buckets(selection_counts: Any, *, top: Any) -> IntArray:
    """CPM partition of the classes other than ``top``, from SELECTION counts only.

    The rule of Delattre et al. (arXiv 2504.02412; ``certify_from_log_cpm`` in the
    authors' code): sort the classes ``c != top`` by decreasing selection count (ties
    by increasing class index), ``s_1 >= s_2 >= ...``. The selection runner-up (``s_1``)
    is bucket 0. The remaining classes form a pool M; while the pool's total count
    exceeds ``s_1``, its largest class leaves the pool as a bucket of its own (buckets
    1, 2, ...). What is left of the pool, if anything, is the last bucket. So every
    singleton bucket holds a class at least as strong, on the selection sample, as the
    merged rest. The class ``top`` gets label -1.

    Args:
        selection_counts: per-class counts of the SELECTION sample, integer array of
            shape ``(..., K)``, ``K >= 2``, all ``>= 0``.
        top: the class A (int or integer array broadcast to the rows).

    Returns:
        int64 array of shape ``(..., K)``: the bucket index of every class, -1 for
        ``top``. Buckets are numbered 0..B-1 per row, ``1 <= B <= K - 1``.

    Raises:
        InvalidParameterError: on bad counts or ``top``.

    Example:
        >>> cpm_buckets([50, 20, 12, 10, 5, 3], top=0).tolist()
        [-1, 0, 1, 2, 2, 2]
    """
    sel = _count_matrix(selection_counts, name="selection_counts")
    lead = sel.shape[:-1]
    k = sel.shape[-1]
    ev = _Evidence("cp", (sel.reshape(-1, k),), np.ones(1, dtype=np.int64), lead)
    col = _top(top, ev)
    return _cpm_labels(ev.stats[0], col).reshape(sel.shape)


def _cpm_labels(sel: IntArray, col: IntArray) -> IntArray:
    rows, k = sel.shape
    r = np.arange(rows)
    key = -sel.copy()
    key[r, col] = 1  # top sorts after every other class (keys of others are <= 0)
    order = np.argsort(key, axis=1, kind="stable")[:, : k - 1]  # others, strongest first
    s = np.take_along_axis(sel, order, axis=1)
    tail = np.cumsum(s[:, ::-1], axis=1)[:, ::-1]  # tail[j] = s[j] + s[j+1] + ...
    # Pool M starts at position 1; position j >= 1 leaves it as a singleton while the
    # pool's total tail[j] exceeds s[0]. tail is nonincreasing, so those j are a prefix.
    m = np.count_nonzero(tail[:, 1:] > s[:, :1], axis=1)
    pos = np.arange(k - 1)[None, :]
    labels_sorted = np.minimum(pos, (m + 1)[:, None])
    labels = np.full((rows, k), -1, dtype=np.int64)
    np.put_along_axis(labels, order, labels_sorted.astype(np.int64), axis=1)
    return labels


def _bucket_stats(ev: _Evidence, labels: IntArray, nb: int) -> _Stats:
    """Per-bucket statistics, shape ``(rows, nb)``; merged buckets' variance is bounded."""
    rows = labels.shape[0]
    flat = (np.arange(rows)[:, None] * nb + labels).reshape(-1)
    keep = labels.reshape(-1) >= 0
    idx = flat[keep]
    first = ev.stats[0].reshape(-1)[keep]
    if ev.bound == "cp":
        total = np.zeros(rows * nb, dtype=np.int64)
        np.add.at(total, idx, first)
        return (total.reshape(rows, nb),)
    mean = np.minimum(np.bincount(idx, weights=first, minlength=rows * nb), 1.0)
    mean = mean.reshape(rows, nb)
    if ev.bound == "hoeffding":
        return (mean,)
    size = np.bincount(idx, minlength=rows * nb).reshape(rows, nb)
    single_var = np.bincount(idx, weights=ev.stats[1].reshape(-1)[keep], minlength=rows * nb)
    nf = ev.n.astype(np.float64)[:, None]
    # Sample variance of a [0, 1] variable with sample mean m: at most n/(n-1) m (1 - m).
    merged_var = nf / (nf - 1.0) * mean * (1.0 - mean) * (1.0 + 1e-12)
    var = np.where(size == 1, single_var.reshape(rows, nb), merged_var)
    return (mean, var)


def combine_cpm(
    evidence: Any,
    *,
    top: Any,
    alpha: float,
    selection_counts: Any = None,
    bound: str = "cp",
    n: Any = None,
    sums_of_squares: Any = None,
) -> tuple[Any, Any]:
    """CPM combiner (class partitioning, Delattre et al. 2025, arXiv 2504.02412).

    The classes other than A are partitioned by :func:`cpm_buckets` on the SELECTION
    counts (never the estimation ones: soundness rule 1). With B buckets, on the
    estimation sample ``p_A`` is bounded below and each bucket's total probability
    above, all at ``alpha / (1 + B)`` (Bonferroni over the 1 + B fixed events, as the
    paper and its code do); ``p_B`` upper is the maximum over the buckets (the runner-up's
    probability is at most its bucket's), capped at ``1 - p_lower``. Every bucket is a
    fixed set given the selection sample, so the bound holds at level alpha.

    Note: a union over A and the ONE bucket holding the true runner-up would already
    suffice (alpha/2 each, the argument of :func:`combine_top2`); the paper's alpha/(1+B)
    is kept for fidelity, so for counts this combiner is never tighter than ``top2``.

    Args:
        evidence: per-class statistics of the ESTIMATION sample, as :func:`combine_mono`.
        top: the class A, chosen on the selection sample.
        alpha: one-sided failure probability of all the bounds, ``0 < alpha < 1``.
        selection_counts: per-class counts of the independent SELECTION sample, same
            shape as ``evidence``. Required.
        bound: one of :data:`COMBINER_BOUNDS`.
        n: the estimation sample size(s), as :func:`combine_mono`.
        sums_of_squares: only for ``"bernstein"``.

    Returns:
        ``(p_lower, p_upper)`` as :func:`combine_top2`.

    Raises:
        InvalidParameterError: as :func:`combine_mono`, and when ``selection_counts`` is
            missing or its shape differs from ``evidence``'s.

    Example:
        >>> lo, up = combine_cpm([2, 95, 3], top=1, alpha=0.05, selection_counts=[1, 8, 1])
        >>> round(float(lo), 4), round(float(up), 4)
        (0.8813, 0.0905)
    """
    alpha = check_probability_level(alpha)
    if selection_counts is None:
        raise InvalidParameterError(
            "selection_counts = None is invalid for combiner 'cpm'; valid: the per-class "
            "counts of the independent selection sample (buckets are chosen on them only)"
        )
    ev = _evidence(evidence, bound=bound, n=n, sums_of_squares=sums_of_squares)
    sel = _count_matrix(selection_counts, name="selection_counts")
    k = ev.num_classes
    if sel.shape != (*ev.lead, k):
        raise InvalidParameterError(
            f"selection_counts of shape {sel.shape} is invalid; valid: the shape of the "
            f"estimation evidence, {(*ev.lead, k)}"
        )
    col = _top(top, ev)
    labels = _cpm_labels(sel.reshape(-1, k), col)
    nb = labels.max(axis=1) + 1  # buckets per row
    stats = _bucket_stats(ev, labels, k - 1)
    valid = np.arange(k - 1)[None, :] < nb[:, None]
    a_stats = _take(ev.stats, col)
    lower = np.empty(col.shape, dtype=np.float64)
    upper = np.empty(col.shape, dtype=np.float64)
    for b in np.unique(nb):
        rows = nb == b
        level = _split(alpha, int(b) + 1)
        lower[rows] = _lower(ev.bound, tuple(s[rows] for s in a_stats), ev.n[rows], level)
        upper[rows] = _max_upper(
            ev.bound, tuple(s[rows] for s in stats), valid[rows], ev.n[rows], level
        )
    return _finish(lower, upper, ev.lead)


def combine(
    evidence: Any,
    *,
    top: Any,
    alpha: float,
    combiner: str,
    selection_counts: Any = None,
    bound: str = "cp",
    n: Any = None,
    sums_of_squares: Any = None,
) -> tuple[Any, Any]:
    """Lower bound on ``p_A`` and upper bound on the runner-up ``p_B``, by name.

    Dispatches to :func:`combine_mono`, :func:`combine_top2`, :func:`combine_cpm` or
    :func:`combine_bonferroni` (see the module docstring for each). The pair holds
    jointly with probability at least ``1 - alpha`` when ``top`` (and, for ``"cpm"``,
    ``selection_counts``) come from a sample independent of ``evidence``.

    Args:
        evidence: per-class statistics of the ESTIMATION sample, shape ``(..., K)``:
            integer counts (``bound="cp"``) or score sums.
        top: the class A, chosen on the selection sample.
        alpha: one-sided failure probability of the pair, ``0 < alpha < 1``.
        combiner: one of :data:`COMBINERS`.
        selection_counts: the selection sample's per-class counts; required for
            ``"cpm"``, checked for shape and ignored by the others.
        bound: one of :data:`COMBINER_BOUNDS`.
        n: the estimation sample size(s); required for score sums.
        sums_of_squares: per-class sums of squared scores, for ``"bernstein"``.

    Returns:
        ``(p_lower, p_upper)``: float64 scalars or arrays of shape
        ``evidence.shape[:-1]``, in [0, 1], ``p_lower + p_upper <= 1`` except for
        ``"mono"`` where it is about 1.

    Raises:
        InvalidParameterError: on an unknown combiner or bound, and as the combiners.

    Example:
        >>> lo, up = combine([[2, 95, 3], [40, 50, 10]], top=1, alpha=0.05, combiner="top2")
        >>> lo.round(4).tolist(), up.round(4).tolist()
        ([0.8872, 0.3983], [0.0852, 0.5028])
    """
    combiner = check_choice(combiner, name="combiner", choices=COMBINERS)
    if combiner == "cpm":
        return combine_cpm(
            evidence,
            top=top,
            alpha=alpha,
            selection_counts=selection_counts,
            bound=bound,
            n=n,
            sums_of_squares=sums_of_squares,
        )
    if selection_counts is not None:
        sel = _count_matrix(selection_counts, name="selection_counts")
        shape = np.shape(evidence)
        if sel.shape != shape:
            raise InvalidParameterError(
                f"selection_counts of shape {sel.shape} is invalid; valid: the shape of "
                f"the estimation evidence, {shape}"
            )
    fn = {"mono": combine_mono, "top2": combine_top2, "bonferroni": combine_bonferroni}[combiner]
    return fn(evidence, top=top, alpha=alpha, bound=bound, n=n, sums_of_squares=sums_of_squares)

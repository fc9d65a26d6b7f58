"""Hybrid text+image certificate: joint bound L(d, r) and radius curve r(d).

Delattre, Wu, Caillon, Lim & Cao, "Certified Robustness under Heterogeneous
Perturbations via Hybrid Randomized Smoothing", ICML 2026 (arXiv 2605.12876).

Noise is the product of a token kernel (see :mod:`smoothcert.certificates.tokens`) and
``N(0, sigma^2 I)`` on the image. The attacker substitutes at most ``d`` tokens AND moves
the image by ``delta`` with ``||delta||_2 <= r``. With ``mu = r / sigma`` and token
levels ``gamma_k`` (clean masses ``p_k``, adversarial masses ``q_k = gamma_k p_k``), the
joint likelihood ratio has the clean and adversarial CDFs

    F(t) = sum_k p_k Phi(log(t / gamma_k) / mu + mu / 2),
    G(t) = sum_k q_k Phi(log(t / gamma_k) / mu - mu / 2),

(atoms with ``gamma = 0`` count fully in ``F`` and not in ``G``). ``F`` is continuous and
increasing for ``r > 0``, so the Neyman-Pearson worst case over every set of clean mass
``p_lower`` is ``L(d, r) = G(t*)`` with ``F(t*) = p_lower``, found by one-dimensional
root finding in ``log t``. The outcome is certified at ``(d, r)`` iff ``L(d, r) >= tau``.

Units: ``r`` and ``sigma`` are in the units of the image tensor the noise is added to
(pixels in [0, 1] unless the model normalises internally); only ``r / sigma`` matters.

Special cases: ``d = 0`` gives ``Phi(Phi^-1(p_lower) - r / sigma)`` (Cohen et al. 2019);
``r -> 0`` gives the discrete bound :func:`~smoothcert.certificates.token_lower_bound`.

Example:
    >>> round(float(hybrid_lower_bound(0.9, d=0, r=0.5, sigma=0.5, beta=0.3, vocab_size=5)), 6)
    0.610856
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import ndtri

from smoothcert._validation import (
    check_int,
    check_nonnegative_array,
    check_open_unit,
    check_positive,
    check_probability_array,
)
from smoothcert.certificates._levels import AttackLevels, FloatArray, Levels, attack_levels
from smoothcert.certificates._mixture import hybrid_point, radius_step
from smoothcert.certificates.tokens import (
    Attacker,
    Kernel,
    TokenField,
    as_output,
    check_allocations,
    negligible_entries,
    resolve_groups,
)
from smoothcert.errors import InvalidParameterError

_SHRINK_STEPS = 60


def hybrid_lower_bound(
    p_lower: Any,
    *,
    d: int,
    r: Any,
    sigma: float,
    beta: float | None = None,
    vocab_size: int | None = None,
    kernel: Kernel = "uniform",
    fields: Sequence[TokenField] | None = None,
    attacker: Attacker = "alphabet",
    clean_outside: int = 0,
) -> Any:
    """Worst-case probability ``L(d, r)`` of the certified outcome under a joint attack.

    arXiv 2605.12876 (hybrid Neyman-Pearson certificate): solve ``F(t*) = p_lower``
    for the clean CDF ``F`` of the joint likelihood ratio (a mixture of Gaussian CDFs in
    ``log t``, one per token level), and return the adversarial CDF ``G(t*)``; see the
    module docstring. ``r = 0`` returns the discrete bound (fractional fill).

    Conservative numerics: ``t*`` is bracketed in ``log t`` by Newton's method with
    bisection safeguards, and ``G`` is evaluated at the bracket end where the evaluated
    ``F`` is at most ``p_lower (1 - s)`` (``s ~ 1e-12`` times the number of levels); the
    result is then shrunk by ``1 - s``. Everything is in log space (``log_ndtr``), so
    ``p_lower`` up to ``1 - 1e-12`` and ``L`` down to ``1e-300`` keep their precision.
    A positive ``r / sigma`` below ``1e-6 (1 + max_k |log gamma_k|)`` is evaluated at that
    floor (valid as ``L`` is non-increasing in ``r``; off by ``O(1e-6)`` at most). Where
    ``r / sigma >= Phi^-1(p_lower) + 39`` (also where it overflows to ``inf``) the result is
    0: the exact value is below ``Phi(-39) < 1e-330``. ``p_lower = 1`` gives the
    adversarial mass of the clean support at every ``r`` (1 for ``uniform``, ``beta^d``
    for ``mask``, minus the safety margin). Values near 1 are computed as ``1 - x`` with
    the subtraction rounded down, so they never exceed the exact bound by rounding.
    Where the discrete bound ``L(d, 0)`` is provably below ``1e-300`` (a Chernoff bound,
    see :func:`~smoothcert.certificates.tokens.negligible_entries`; large ``d``) the
    result is exactly 0 without computing the ``O(d^2)`` token levels.

    Args:
        p_lower: lower confidence bound(s) on the probability of the certified outcome
            at the clean input, in [0, 1].
        d: number of substituted tokens, ``>= 0`` (with ``fields``: total budget).
        r: L2 norm of the image perturbation, ``>= 0``, in the units of ``sigma``;
            scalar or array broadcast against ``p_lower``.
        sigma: standard deviation of the image noise, ``> 0`` (image tensor units).
        beta: token kernel parameter, in (0, 1).
        vocab_size: alphabet size ``V >= 2`` (``uniform``; optional for ``mask``).
        kernel: ``"uniform"`` or ``"mask"``.
        fields: heterogeneous alternative to ``beta``/``vocab_size``/``kernel``; the
            result is the minimum over every allocation of the ``d`` edits to fields.
        attacker: ``"alphabet"`` or ``"any"`` (any vocabulary id; see
            :func:`~smoothcert.certificates.token_lower_bound`). The any-token levels
            carry a ratio-infinity atom (the written token itself, clean mass 0): it never
            enters the worst-case set, and its adversarial mass is lost for the outcome.
        clean_outside: clean eligible tokens outside the alphabet (``attacker="any"``).

    Returns:
        ``L(d, r)`` in [0, 1], float64 scalar or array (broadcast shape of ``p_lower``
        and ``r``). Never NaN.

    Raises:
        InvalidParameterError: ``p_lower`` outside [0, 1] or NaN, ``d < 0``, ``r < 0``
            or not finite, ``sigma <= 0``, ``beta`` outside (0, 1), ``vocab_size < 2``,
            unknown ``kernel``.
        ConvergenceError: if the threshold search fails (not expected).

    Example:
        >>> round(float(hybrid_lower_bound(0.9, d=1, r=0.0, sigma=1.0, beta=0.3, vocab_size=5)), 6)
        0.275
        >>> round(float(hybrid_lower_bound(0.9, d=1, r=0.1, sigma=1.0, beta=0.3, vocab_size=5)), 4)
        0.2705
        >>> round(float(hybrid_lower_bound(0.9, d=1, r=0.0, sigma=1.0, beta=0.3, vocab_size=5,
        ...                                attacker="any")), 6)
        0.22
    """
    p = check_probability_array(p_lower, name="p_lower")
    d = check_int(d, name="d", minimum=0)
    r_arr = check_nonnegative_array(r, name="r")
    sigma = check_positive(sigma, name="sigma")
    groups = resolve_groups(
        beta=beta,
        vocab_size=vocab_size,
        kernel=kernel,
        fields=fields,
        attacker=attacker,
        clean_outside=clean_outside,
    )
    check_allocations(groups, d)
    p_b, r_b = np.broadcast_arrays(p, r_arr)
    shape = p_b.shape
    flat_p = np.ascontiguousarray(p_b, dtype=np.float64).reshape(-1)
    flat_r = np.ascontiguousarray(r_b, dtype=np.float64).reshape(-1)
    with np.errstate(over="ignore", under="ignore"):
        mu = flat_r / sigma  # may overflow to inf: then L = 0 (see hybrid_point)
    # A positive r whose r / sigma underflows to 0 must not get the r = 0 (discrete)
    # bound, which is larger: evaluate it at a positive mu (raised to the floor).
    mu = np.where((flat_r > 0.0) & (mu <= 0.0), np.finfo(np.float64).tiny, mu)
    out = np.ones(flat_p.shape[0])
    # L(d, r) <= L(d, 0): where the discrete bound is provably negligible (large d), 0
    # without computing the O(d^2) levels (see tokens.negligible_entries).
    rest = ~negligible_entries(groups, d, flat_p)
    out[~rest] = 0.0
    if np.any(rest):
        sub = out[rest]
        for _, lev in attack_levels(groups, d):
            sub = np.minimum(sub, hybrid_point(lev, flat_p[rest], mu[rest])[0])
        out[rest] = sub
    return as_output(out.reshape(shape))


def _phi_inv(p: FloatArray) -> FloatArray:
    """``Phi^-1(p)`` accurate near 1 (uses the exact complement ``1 - p``)."""
    out: FloatArray = np.where(p > 0.5, -ndtri(np.minimum(1.0 - p, 0.5)), ndtri(np.minimum(p, 0.5)))
    return out


def _verify(
    levels_list: Sequence[Levels],
    p: FloatArray,
    r: FloatArray,
    sigma: float,
    tau: float,
) -> FloatArray:
    """Shrink each radius until ``L(d, r) >= tau`` holds as evaluated (0 if never)."""
    r = r.copy()
    idx = np.flatnonzero(r > 0.0)
    for step in range(_SHRINK_STEPS):
        if idx.shape[0] == 0:
            break
        lower = np.ones(idx.shape[0])
        for lev in levels_list:
            # Exactly the evaluation of hybrid_lower_bound (no warm start), so that the
            # public function confirms every returned radius.
            lower = np.minimum(lower, hybrid_point(lev, p[idx], r[idx] / sigma)[0])
        bad = lower < tau
        idx = idx[bad]
        if idx.shape[0] == 0:
            break
        factor = 1.0 - min(1e-12 * 4.0**step, 1.0)
        r[idx] = r[idx] * factor
    r[idx] = 0.0
    return r


def hybrid_radius_curve(
    p_lower: Any,
    *,
    d_max: int,
    sigma: float,
    beta: float | None = None,
    vocab_size: int | None = None,
    tau: float = 0.5,
    kernel: Kernel = "uniform",
    fields: Sequence[TokenField] | None = None,
    attacker: Attacker = "alphabet",
    clean_outside: int = 0,
) -> Any:
    """Certified image radius ``r(d)`` for ``d = 0..d_max`` substituted tokens.

    ``r(d) = sup{r : L(d, r) >= tau}`` (arXiv 2605.12876): the prediction is certified
    against every attack that substitutes at most ``d`` tokens AND moves the image by at
    most ``r(d)`` in L2. The certified region is the staircase under the curve. ``r(d)``
    is 0 where nothing is certified (``L(d, 0) < tau``), and non-increasing in ``d``.

    Algorithm, vectorised over examples: for each ``d`` in turn the root in
    ``mu = r / sigma`` lies in ``[0, r(d - 1) / sigma]`` (``[0, Phi^-1(p_lower) -
    Phi^-1(tau)]`` at ``d = 0``). It is found by a joint Newton iteration on
    ``(log t*, mu)`` with the closed-form Jacobian (``dL/dmu = -t* sum_k p_k phi(z_k)``
    along ``F(t*) = p_lower``), aimed slightly inside the certified side; examples where it
    does not converge fall back to a certified-end Chandrupatla search in ``mu`` over
    nested safeguarded-Newton threshold solves. Every returned radius is then re-verified
    with exactly :func:`hybrid_lower_bound`'s evaluation (``L(d, r(d)) >= tau``) and shrunk
    until it passes. With ``fields``, ``r(d)`` is the minimum over every allocation of the
    ``d`` edits. The loop stops at the first ``d`` where no example is certified.

    Args:
        p_lower: lower confidence bound(s) on the probability of the certified outcome
            at the clean input, in [0, 1) (``p_lower = 1`` would give infinite radii).
        d_max: largest number of substituted tokens, ``>= 0``.
        sigma: standard deviation of the image noise, ``> 0``; radii are in its units
            (image tensor units, e.g. pixels in [0, 1]).
        beta: token kernel parameter, in (0, 1).
        vocab_size: alphabet size ``V >= 2`` (``uniform``; optional for ``mask``).
        tau: decision threshold, in (0, 1): 1/2 for a majority vote, or the flagging
            threshold of a safety filter (may be tiny, e.g. ``4.6e-5``).
        kernel: ``"uniform"`` or ``"mask"``.
        fields: heterogeneous alternative to ``beta``/``vocab_size``/``kernel``.
        attacker: ``"alphabet"`` or ``"any"`` (see :func:`hybrid_lower_bound`).
        clean_outside: clean eligible tokens outside the alphabet (``attacker="any"``).

    Returns:
        float64 array of shape ``p_lower.shape + (d_max + 1,)``: ``r(d)`` in the units of
        ``sigma``, 0 where not certified.

    Raises:
        InvalidParameterError: on parameters outside the ranges above.
        ConvergenceError: if a root search does not converge (not expected).

    Example:
        >>> hybrid_radius_curve(0.99, d_max=3, sigma=0.5, beta=0.3, vocab_size=5).round(4)
        array([1.1632, 0.7995, 0.    , 0.    ])
    """
    p = check_probability_array(p_lower, name="p_lower")
    if np.any(p >= 1.0):
        raise InvalidParameterError(
            "p_lower = 1.0 is invalid; valid range: 0 <= p_lower < 1 (the radius would be "
            "infinite; a confidence bound from finitely many samples is always below 1)"
        )
    d_max = check_int(d_max, name="d_max", minimum=0)
    sigma = check_positive(sigma, name="sigma")
    tau = check_open_unit(tau, name="tau")
    groups = resolve_groups(
        beta=beta,
        vocab_size=vocab_size,
        kernel=kernel,
        fields=fields,
        attacker=attacker,
        clean_outside=clean_outside,
    )
    for d in range(d_max + 1):
        check_allocations(groups, d)
    flat = np.ascontiguousarray(p, dtype=np.float64).reshape(-1)
    b = flat.shape[0]
    out = np.zeros((b, d_max + 1))
    # d = 0 upper bracket: the Gaussian root Phi^-1(p) - Phi^-1(tau), slightly inflated.
    mu0 = _phi_inv(flat) - float(_phi_inv(np.array([tau]))[0])
    cap = np.where(mu0 > 0.0, mu0 * (1.0 + 1e-9) + 1e-300, 0.0)
    source = AttackLevels(groups)
    for d in range(d_max + 1):
        live = np.flatnonzero(cap > 0.0)
        if live.shape[0] == 0:
            break
        attacks = [lev for _, lev in source.at(d)]
        mu = cap[live]
        for lev in attacks:
            mu, _ = radius_step(lev, flat[live], tau, mu)
        r_live = _verify(attacks, flat[live], sigma * mu, sigma, tau)
        out[live, d] = r_live
        cap = np.zeros(b)
        cap[live] = r_live / sigma
    return out.reshape(p.shape + (d_max + 1,))

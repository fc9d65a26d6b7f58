"""Lipschitz-aware certified radius for smoothed soft scores.

Delattre et al., "The Lipschitz-Variance-Margin Tradeoff for Enhanced Randomized
Smoothing" (LVM-RS, arXiv 2309.16883) and "Bridging the Theoretical Gap in Randomized
Smoothing" (arXiv 2504.02412). A score ``s: R^d -> [0, 1]`` that is ``L``-Lipschitz in
L2 (a certified ``L``, never an estimate) is smoothed as ``S(x) = E s(x + sigma Z)``,
``Z ~ N(0, I)``. Because ``s`` is smooth, ``S`` changes more slowly than for a hard vote,
and the certified radius is larger than Cohen's ``sigma * Phi^-1(p_lower)``.

Notation: ``kappa = 1 / (L sigma)`` is the width of a ramp of slope ``L`` in units of
sigma; ``Phi``/``phi`` are the standard normal CDF/density.

**Theorem (worst-case rate).** Let ``gamma(q)`` be the largest directional derivative
that such an ``S`` can have at a point where ``S = q``. Then

    sigma * gamma(q) = (1/kappa) * integral_{u - kappa}^{u} phi(t) dt
                     = (Phi(u) - Phi(u - kappa)) / kappa,
    where u = u(q) solves  q = (1/kappa) * integral_{u - kappa}^{u} Phi(t) dt,

i.e. the average of ``phi`` (resp. ``Phi``) over a window of width ``kappa``. This is the
derivative and value of the 1-D ramp ``r(t) = clip(L (t - c), 0, 1)`` smoothed by
``N(0, sigma^2)``: since ``r(y) = L int_c^{c + 1/L} 1{y > t} dt``,
``E r(x + sigma Z) = (1/kappa) int_{u-kappa}^{u} Phi`` with ``u = (x - c) / sigma``.

Proof sketch. (1) One dimension. With ``Z ~ N(0, 1)``, Stein's identity gives
``sigma S'(x) = E[s(x + sigma Z) Z]``. Fix ``x = 0``, a feasible ``s`` with
``E s(sigma Z) = q`` and the ramp ``r`` with the same mean. ``h = r - s`` has
``E h(sigma Z) = 0`` and crosses zero once, from below: ``h = -s <= 0`` left of the
ramp, ``h = 1 - s >= 0`` right of it, and on the ramp ``h`` is non-decreasing (slope of
``r`` is ``L`` >= slope of ``s``). So ``h(t) (t - t0) >= 0`` for some ``t0`` and
``E[h Z] = E[h (Z - t0/sigma)] >= 0``: no feasible ``s`` beats the ramp, which is
therefore the extremal profile (a single ramp of width ``1/L``, positioned so the
smoothed value is ``q``; the position is unique because the smoothed ramp is strictly
increasing in it). (2) ``gamma`` is concave in ``q``: ``S'`` of the smoothed ramp, as a
function of ``u``, is a uniform density convolved with a Gaussian, hence log-concave,
and ``d gamma / dq = (S''/S')(u)`` is non-increasing along increasing ``u`` (= increasing
``q``). (3) ``d`` dimensions. For a unit direction ``e`` write ``Z = Y e + W`` with
``W`` orthogonal to ``e``. Conditionally on ``W = w`` the line ``y -> s(x + sigma(w + y
e))`` is a 1-D ``L``-Lipschitz ``[0, 1]`` profile with smoothed value ``q_w``, so the
directional derivative is ``E_W[sigma^-1 E(s Y | W)] <= E_W gamma(q_W) <=
gamma(E_W q_W) = gamma(q)`` (Jensen, concavity). (4) Radius. Let
``G(q) = int_{1/2}^{q} dv / gamma(v)``. Along any unit-speed path ``f(t) = S(x(t))``
satisfies ``|f'| <= gamma(f)``, so ``d/dt G(f(t)) >= -1`` and ``f`` stays above 1/2 for
``t < G(p_lower)``. (5) Closed form. Along the ramp family ``dq/du = sigma gamma``
(the derivative of the window average of ``Phi`` is the window average of ``phi``), so
``dq / gamma(q) = sigma du`` and exactly

    G(p) = sigma * (u(p) - u(1/2)) = sigma * (u(p) - kappa / 2),

the distance the ramp moves between smoothed values 1/2 and p. No quadrature is needed,
only one monotone root find for ``u(p)``. By the symmetry ``1 - S(u) = S(kappa - u)``,
``G(1 - q) = -G(q)``. As ``L -> inf`` (``kappa -> 0``) ``u(p) -> Phi^-1(p)`` and ``G`` is
Cohen's ``sigma Phi^-1(p)``; ``L = inf`` returns Cohen's radius exactly.

Normalisation of the papers' figure: ``ell(q) = gamma(q) / phi(Phi^-1(q))`` is the local
Lipschitz constant of ``Phi^-1(S)`` (``1 / sigma`` for a hard vote), and
``sigma * ell(1/2) = sqrt(2 pi) (2 Phi(kappa/2) - 1) / kappa`` = 0.5981, 0.8556, 0.9599 at
``L sigma`` = 0.25, 0.5, 1.0.

Numerics (soundness rule 4): ``u(p)`` comes from a vectorised bisection; the returned end
is the conservative one and is re-verified against a target moved by a relative margin
``1e-9`` (which covers the ~1e-13 relative error of the window averages, evaluated by
32-point Gauss-Legendre when ``kappa <= 2`` and by the closed form
``int_{-inf}^v Phi = v Phi(v) + phi(v)``, via ``erfcx`` in the lower tail, otherwise;
checked against mpmath to 5.5e-13 relative for values >= 1e-18; score levels below
``1e-17`` are floored in the conservative direction, where that accuracy is lost);
radii are then reduced by an absolute allowance of a few ulps of ``sigma * (kappa + |u|)``
and clipped at 0. The radii are thus slightly smaller than the exact ``G``, never larger.
Radii are in the units of the tensor the noise is added to.

Example:
    >>> round(float(lipschitz_radius(0.9, sigma=0.5, lipschitz=0.5)), 3)
    0.999
    >>> round(float(lipschitz_radius(0.9, sigma=0.5, lipschitz=float("inf"))), 4)
    0.6408
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import erfcx, ndtr, ndtri

from smoothcert._validation import check_choice, check_positive, check_probability_array
from smoothcert.certificates.gaussian import gaussian_radius, gaussian_radius_top2
from smoothcert.errors import ConvergenceError, InvalidParameterError

__all__ = ["lipschitz_radius", "lipschitz_radius_top2", "softmax_score_lipschitz"]

_GL_X, _GL_W = np.polynomial.legendre.leggauss(32)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_MARGIN = 1e-9  # relative margin on the target value of the window average
_EPS = float(np.finfo(np.float64).eps)
_P_FLOOR = 1e-17  # smallest score level solved for; below it, bounds are taken conservatively


def _as_output(arr: NDArray[np.float64]) -> Any:
    return arr[()] if arr.ndim == 0 else arr


def _check_lipschitz(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise InvalidParameterError(
            f"lipschitz = {value!r} is invalid; valid range: lipschitz > 0 (inf allowed)"
        )
    out = float(value)
    if math.isnan(out) or out <= 0:
        raise InvalidParameterError(
            f"lipschitz = {value!r} is invalid; valid range: lipschitz > 0 (inf allowed)"
        )
    return out


def _psi(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """``int_{-inf}^{v} Phi(t) dt = v Phi(v) + phi(v)``, accurate in the lower tail."""
    a = np.abs(v)
    # v < 0: phi(a) - a Q(a) = exp(-a^2/2) (1/sqrt(2 pi) - a erfcx(a/sqrt 2) / 2).
    with np.errstate(under="ignore", over="ignore"):
        neg = np.exp(-0.5 * a * a) * (_INV_SQRT_2PI - 0.5 * a * erfcx(a / math.sqrt(2.0)))
        pos = v * ndtr(v) + _INV_SQRT_2PI * np.exp(-0.5 * v * v)
    return np.asarray(np.where(v < 0, np.maximum(neg, 0.0), pos), dtype=np.float64)


def _window_cdf(w: NDArray[np.float64], kappa: float) -> NDArray[np.float64]:
    """``(1/kappa) int_{w-kappa}^{w} Phi``: the smoothed ramp's value at position ``w``."""
    if kappa <= 2.0:
        t = (w - 0.5 * kappa)[..., None] + (0.5 * kappa) * _GL_X
        out: NDArray[np.float64] = 0.5 * (ndtr(t) * _GL_W).sum(axis=-1)
        return out
    return np.asarray((_psi(w) - _psi(w - kappa)) / kappa, dtype=np.float64)


def _window_pdf(w: NDArray[np.float64], kappa: float) -> NDArray[np.float64]:
    """``(1/kappa) int_{w-kappa}^{w} phi = sigma * gamma``: the smoothed ramp's slope."""
    if kappa <= 2.0:
        t = (w - 0.5 * kappa)[..., None] + (0.5 * kappa) * _GL_X
        dens = _INV_SQRT_2PI * np.exp(-0.5 * t * t)
        out: NDArray[np.float64] = 0.5 * (dens * _GL_W).sum(axis=-1)
        return out
    # Mirror to the side where Phi(w) - Phi(w - kappa) has no cancellation.
    m = np.minimum(w, kappa - w)
    return np.asarray((ndtr(m) - ndtr(m - kappa)) / kappa, dtype=np.float64)


def _solve(t: NDArray[np.float64], kappa: float, *, upper: bool) -> NDArray[np.float64]:
    """Position ``w`` with ``_window_cdf(w) = t`` for ``t`` in (0, 1/2], bracket-conservative.

    ``upper=True`` returns ``w_hi`` with true ``window_cdf(w_hi) >= t`` (so the exact root is
    ``<= w_hi``); ``upper=False`` returns ``w_lo`` with true ``window_cdf(w_lo) <= t``. The
    target is moved by the relative margin ``_MARGIN`` and the returned end re-verified.
    """
    # Raising the target only moves an upper end up (conservative); the floor keeps the
    # root where the window average is accurate (checked to ~5e-13 relative against
    # mpmath for values >= 1e-18; deep in the tail, e.g. 1e-90, it is not).
    target = np.maximum(t, _P_FLOOR) * (1.0 + _MARGIN) if upper else t * (1.0 - _MARGIN)
    # Phi(w - kappa) <= window_cdf(w) <= Phi(w) brackets the root.
    base = ndtri(target)
    slack = 1e-6 * (1.0 + np.abs(base))
    lo = base - slack
    hi = base + kappa + slack
    for _ in range(400):
        mid = 0.5 * (lo + hi)
        active = (mid > lo) & (mid < hi)
        if not np.any(active):
            break
        below = _window_cdf(mid, kappa) < target
        lo = np.where(active & below, mid, lo)
        hi = np.where(active & ~below, mid, hi)
    end = hi if upper else lo
    val = _window_cdf(end, kappa)
    ok = val >= target if upper else val <= target
    if not np.all(ok):
        raise ConvergenceError(
            f"ramp position root find failed to verify at kappa = {kappa!r} "
            f"(target {np.asarray(target)[~ok].flat[0]!r})"
        )
    return np.asarray(end, dtype=np.float64)


def _position(p: NDArray[np.float64], kappa: float, *, upper: bool) -> NDArray[np.float64]:
    """Ramp position ``u(p)`` (``window_cdf(u) = p``) rounded up or down, for p in (0, 1)."""
    out = np.empty(p.shape, dtype=np.float64)
    high = p > 0.5
    if np.any(high):
        # 1 - window_cdf(u) = window_cdf(kappa - u); 1 - p is exact for p >= 1/2.
        out[high] = kappa - _solve(1.0 - p[high], kappa, upper=not upper)
    if np.any(~high):
        out[~high] = _solve(p[~high], kappa, upper=upper)
    return out


def _scaled_rate(q: Any, *, sigma: float, lipschitz: float) -> Any:
    """``sigma * gamma(q)``: the largest rate of change of S at value q, times sigma.

    Not a certificate (no rounding direction); used for the ``local`` form and tests.
    """
    kappa = 1.0 / (lipschitz * sigma)
    qa = check_probability_array(q, name="q", closed=False)
    u = _position(qa, kappa, upper=False)
    return _as_output(_window_pdf(u, kappa))


def lipschitz_radius(
    p_lower: Any, *, sigma: float, lipschitz: float, form: str = "integral"
) -> Any:
    """Certified L2 radius of a smoothed ``L``-Lipschitz ``[0, 1]`` score.

    ``form="integral"`` (default, proved in the module docstring):
    ``G(p) = int_{1/2}^{p} dq / gamma(q) = sigma * (u(p) - kappa/2)``, with
    ``kappa = 1 / (L sigma)`` and ``u(p)`` the root of
    ``(1/kappa) int_{u-kappa}^{u} Phi(t) dt = p``. The smoothed score of class A stays
    above 1/2 within this radius, so A stays the top class when the class scores sum to
    at most 1 (softmax, sparsemax, hard votes).

    ``form="local"``: the papers' form, which evaluates the local Lipschitz constant
    ``ell(p) = gamma(p) / phi(Phi^-1(p))`` of ``Phi^-1(S)`` at ``p_lower`` only:
    ``Phi^-1(p_lower) / ell(p_lower)``. Offered for comparison; it is NOT the default
    because its proof is not established here (``ell`` varies along the path, and the
    bound uses only its value at the start).

    Args:
        p_lower: lower confidence bound on the smoothed score of the top class, scalar or
            array in [0, 1).
        sigma: noise standard deviation, > 0, in input units.
        lipschitz: certified L2 Lipschitz constant of the score in input units, > 0;
            ``inf`` gives Cohen's radius ``sigma * Phi^-1(p_lower)`` exactly.
        form: ``"integral"`` or ``"local"``.

    Returns:
        The radius (float64 scalar or array, input units), 0 where ``p_lower <= 1/2``
        (abstain). Rounded down (see the module docstring); never NaN.

    Raises:
        InvalidParameterError: ``p_lower`` outside [0, 1) or NaN, ``sigma <= 0``,
            ``lipschitz <= 0`` or NaN, unknown ``form``.
        ConvergenceError: if a root find cannot be re-verified (not expected).

    Example:
        >>> lipschitz_radius([0.5, 0.9, 0.999], sigma=0.5, lipschitz=0.5).round(3).tolist()
        [0.0, 0.999, 2.135]
    """
    sigma = check_positive(sigma, name="sigma")
    lip = _check_lipschitz(lipschitz)
    form = check_choice(form, name="form", choices=("integral", "local"))
    p = check_probability_array(p_lower, name="p_lower", upper_open=True)
    if math.isinf(lip):
        return gaussian_radius(p, sigma=sigma)
    kappa = 1.0 / (lip * sigma)
    out = np.zeros(p.shape, dtype=np.float64)
    ok = p > 0.5
    if np.any(ok):
        pk = p[ok]
        if form == "integral":
            w = _solve(1.0 - pk, kappa, upper=True)  # u = kappa - w, rounded down
            r = sigma * (0.5 * kappa - w) - 8.0 * _EPS * sigma * (kappa + np.abs(w) + 1.0)
        else:
            w = _solve(1.0 - pk, kappa, upper=False)
            z = -ndtri(1.0 - pk)
            rate = _window_pdf(w, kappa)  # sigma * gamma(p)
            dens = _INV_SQRT_2PI * np.exp(-0.5 * z * z)
            r = sigma * z * dens / rate * (1.0 - 1e-9)
        out[ok] = r
    return _as_output(np.maximum(out, 0.0))


def lipschitz_radius_top2(p_lower: Any, p_upper: Any, *, sigma: float, lipschitz: float) -> Any:
    """Top-two Lipschitz-aware radius ``(G(p_lower) - G(p_upper)) / 2``.

    Every class score is ``L``-Lipschitz. Along a unit-speed path the smoothed score of A
    falls at rate at most ``gamma(S_A)`` and that of any other class rises at rate at most
    ``gamma(S_B)``, so ``G(S_A) >= G(p_lower) - t`` and ``G(S_B) <= G(p_upper) + t``
    (``G`` as in :func:`lipschitz_radius`, extended to (0, 1), increasing); A stays above
    B while ``t < (G(p_lower) - G(p_upper)) / 2 = sigma/2 * (u(p_lower) - u(p_upper))``.
    ``u(p_lower)`` is rounded down and ``u(p_upper)`` up by verified bisection. Since
    ``G(1 - q) = -G(q)``, this equals :func:`lipschitz_radius` when
    ``p_upper = 1 - p_lower`` and is at least as large when ``p_upper <= 1 - p_lower``
    (up to the rounding allowances). ``L = inf`` gives Cohen's top-two radius.

    Args:
        p_lower: lower bound on the top class's smoothed score, in [0, 1).
        p_upper: upper bound on every other class's smoothed score, in (0, 1].
        sigma: noise standard deviation, > 0, input units.
        lipschitz: certified L2 Lipschitz constant of every class score, > 0 (inf allowed).

    Returns:
        The radius (input units), 0 where ``p_lower <= p_upper`` (or ``p_lower < 1e-17``);
        rounded down, never NaN. ``p_upper`` below ``1e-17`` is treated as ``1e-17``
        (conservative: the window averages lose accuracy deeper in the tail).

    Raises:
        InvalidParameterError: on probabilities outside the ranges above or NaN,
            ``sigma <= 0``, ``lipschitz <= 0`` or NaN.
        ConvergenceError: if a root find cannot be re-verified (not expected).

    Example:
        >>> round(float(lipschitz_radius_top2(0.9, 0.1, sigma=0.5, lipschitz=0.5)), 3)
        0.999
    """
    sigma = check_positive(sigma, name="sigma")
    lip = _check_lipschitz(lipschitz)
    pa = check_probability_array(p_lower, name="p_lower", upper_open=True)
    pb = check_probability_array(p_upper, name="p_upper", lower_open=True)
    if math.isinf(lip):
        return gaussian_radius_top2(pa, pb, sigma=sigma)
    pa, pb = np.broadcast_arrays(pa, pb)
    kappa = 1.0 / (lip * sigma)
    out = np.zeros(pa.shape, dtype=np.float64)
    # p_lower below _P_FLOOR (a certificate from that is meaningless anyway) gives 0.
    ok = (pa > pb) & (pa >= _P_FLOOR)
    if np.any(ok):
        ua = _position(pa[ok], kappa, upper=False)
        ub = _position(pb[ok], kappa, upper=True)
        allowance = 8.0 * _EPS * sigma * (kappa + np.abs(ua) + np.abs(ub) + 1.0)
        out[ok] = 0.5 * sigma * (ua - ub) - allowance
    return _as_output(np.maximum(out, 0.0))


SOFTMAX_GRADIENT_BOUND = math.sqrt(2.0) / 4.0
"""Largest L2 norm of the gradient of one softmax component with respect to its input."""


def softmax_score_lipschitz(logit_lipschitz: float, *, temperature: float) -> float:
    """Certified L2 Lipschitz constant of the score ``x -> softmax(t z(x))_A``.

    **Claim.** If the logits ``z`` are ``L_z``-Lipschitz in L2, every component
    ``softmax(t z(x))_A`` is ``(sqrt(2)/4) t L_z``-Lipschitz in L2 (Delattre et al.,
    arXiv 2309.16883, LVM-RS; issue 8 item 4).

    **Proof.** Let ``p = softmax(v)``. Its ``A``-th component has gradient
    ``grad_v p_A = p_A (e_A - p)``, so ``|grad p_A|^2 = p_A^2 ((1 - p_A)^2 +
    sum_{c != A} p_c^2) <= p_A^2 ((1 - p_A)^2 + (sum_{c != A} p_c)^2) = 2 p_A^2
    (1 - p_A)^2 <= 2/16`` since ``p_A (1 - p_A) <= 1/4``. Hence ``|grad p_A| <=
    sqrt(2)/4`` everywhere and ``v -> p_A(v)`` is ``sqrt(2)/4``-Lipschitz (mean value
    theorem on the segment). ``x -> t z(x)`` is ``t L_z``-Lipschitz; a composition's
    constant is at most the product. The bound is attained with two classes at
    ``p_A = 1/2``. The result is rounded up by a relative ``1e-12``.

    Args:
        logit_lipschitz: certified L2 Lipschitz constant ``L_z`` of the logits, > 0
            (input units; ``inf`` allowed and returned).
        temperature: ``t > 0``, the score is ``softmax(t * logits)``.

    Returns:
        ``(sqrt(2)/4) * t * L_z``, rounded up.

    Raises:
        InvalidParameterError: on ``logit_lipschitz <= 0`` or NaN, or a temperature
            that is not a positive finite number.

    Example:
        >>> round(softmax_score_lipschitz(1.0, temperature=2.0), 6)
        0.707107
    """
    lip = _check_lipschitz(logit_lipschitz)
    t = check_positive(temperature, name="temperature")
    return SOFTMAX_GRADIENT_BOUND * t * lip * (1.0 + 1e-12)

"""Gaussian-mixture numerics of the hybrid text+image bound (internal; numpy/scipy only).

With ``mu = r / sigma`` and token levels ``gamma_k`` (clean masses ``p_k``, adversarial
``q_k = gamma_k p_k``), the log likelihood ratio of the joint noise is ``log gamma_k +
Lambda`` with ``Lambda ~ N(-mu^2/2, mu^2)`` under the clean law and ``N(mu^2/2, mu^2)``
under the adversarial one. In ``s = log t``:

    F(s) = p_0 + sum_k p_k Phi((s - log gamma_k) / mu + mu / 2)     (clean CDF)
    G(s) =       sum_k q_k Phi((s - log gamma_k) / mu - mu / 2)     (adversarial CDF)

where ``p_0`` is the clean mass of the ratio-0 atom (the ratio-infinity atom has no clean
mass and never enters the worst-case set). ``F`` is continuous and increasing, so the
worst case over every set of clean mass ``p`` is ``L = G(s*)`` with ``F(s*) = p``
(arXiv 2605.12876, the hybrid certificate; DESIGN.md "Hybrid text+image certificate").

Conservative evaluation: ``s*`` is bracketed, and the returned ``L`` is ``G`` at a point
``s_lo`` where the *evaluated* ``F(s_lo)`` is at most ``p (1 - slack)`` (or, for ``p``
close to 1, the evaluated ``1 - F(s_lo)`` is at least ``(1 - p)(1 + slack)``); since ``G`` is
increasing, ``G(s_lo) <= G(s*)``. ``G`` is then shrunk by ``1 - slack`` (and ``1 - G``
inflated by ``1 + slack``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.special import log_ndtr, ndtri

from smoothcert.certificates._levels import (
    FloatArray,
    Levels,
    discrete_lower,
    one_minus_down,
    one_minus_up,
)
from smoothcert.errors import ConvergenceError

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_INNER_TOL = 1e-13
_INNER_MAXITER = 200
_OUTER_MAXITER = 100
_OUTER_RTOL = 1e-10
_OUTER_ATOL = 1e-13
_RES_CLIP = 1e4
_NEWTON_MAXITER = 40
_MARGIN = 2e-12
_FAR = 1e-4
_FAR_TAIL = 39.0  # Phi(-39) < 1e-330: below the smallest float64

BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.intp]


# Floating-point events (log 0, exp underflow, overflow to +-inf, inf - inf in a
# rejected Newton step) are expected and handled; the entry points below silence them.
_quiet = np.errstate(divide="ignore", over="ignore", under="ignore", invalid="ignore")


def _lse(x: FloatArray) -> FloatArray:
    """Row-wise log-sum-exp of a 2-d array (``-inf`` rows stay ``-inf``)."""
    m = np.maximum(x.max(axis=1), -1e300)
    out: FloatArray = np.log(np.exp(x - m[:, None]).sum(axis=1)) + m
    return out


def _z(levels: Levels, s: FloatArray, mu: FloatArray) -> FloatArray:
    z: FloatArray = (s[:, None] - levels.log_ratio[None, :]) / mu[:, None] + 0.5 * mu[:, None]
    return z


def _clean_eval(
    levels: Levels,
    s: FloatArray,
    mu: FloatArray,
    comp: BoolArray,
    log_target: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Return ``(h, h')`` of the clean side, increasing in ``s``.

    ``h = log F - log p``, or ``log(1 - p) - log(1 - F)`` where ``comp``.
    """
    z = _z(levels, s, mu)
    w = np.where(comp[:, None], -z, z)
    a = _lse(levels.log_clean[None, :] + log_ndtr(w))
    logv = np.where(comp, a, np.logaddexp(levels.log_clean_zero, a))
    logdens = _lse(levels.log_clean[None, :] - 0.5 * z * z) - _LOG_SQRT_2PI - np.log(mu)
    h = np.where(comp, log_target - logv, logv - log_target)
    dh = np.exp(logdens - logv)
    return h, dh


def _adv_eval(levels: Levels, s: FloatArray, mu: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return ``(log G(s), log(1 - G(s)))`` (the latter includes the ratio-inf atom)."""
    z = _z(levels, s, mu) - mu[:, None]
    log_g = _lse(levels.log_adv[None, :] + log_ndtr(z))
    log_y = np.logaddexp(levels.log_adv_inf, _lse(levels.log_adv[None, :] + log_ndtr(-z)))
    return log_g, log_y


def _initial_guess(levels: Levels, pp: FloatArray, mu: FloatArray) -> FloatArray:
    """Start of Newton's iteration: the boundary level of the discrete fill."""
    pc = np.exp(levels.log_clean)
    c_cum = levels.clean_zero + np.cumsum(pc)
    j = np.minimum(np.searchsorted(c_cum, pp, side="left"), levels.size - 1)
    c_prev = c_cum[j] - pc[j]
    frac = np.clip((pp - c_prev) / np.maximum(pc[j], 1e-300), 1e-300, 1.0 - 1e-16)
    out: FloatArray = levels.log_ratio[j] + mu * (ndtri(frac) - 0.5 * mu)
    return out


@_quiet
def solve_threshold(
    levels: Levels, p: FloatArray, mu: FloatArray, s0: FloatArray | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Conservative ``(log L, log(1 - L), s_lo)`` of the hybrid bound at ``mu > 0``.

    ``p`` and ``mu`` are 1-d arrays of equal length. ``s_lo`` is ``-inf`` where ``L = 0``
    (the worst-case set fits in the ratio-0 atom). ``mu`` below :attr:`Levels.mu_floor`
    is raised to it (a smaller, valid bound).
    """
    b = p.shape[0]
    mu = np.maximum(mu, levels.mu_floor)
    slack = levels.slack
    log_l = np.full(b, -np.inf)
    log_x = np.zeros(b)
    s_out = np.full(b, -np.inf)
    if levels.size == 0 or b == 0:
        return log_l, log_x, s_out
    p0 = levels.clean_zero
    pp = p * (1.0 - slack)
    cc = (1.0 - p) * (1.0 + slack)
    # A root exists iff the target lies strictly inside the range of the side solved:
    # p0 < pp < 1 for F (always pp < 1), 0 < cc < 1 - p0 for 1 - F. The complement side
    # is used only where cc < 1/2, so cc < 1 - p0 is required only there (tiny p_lower
    # has cc >= 1 after the inflation and is solved on the F side).
    act = np.flatnonzero((pp > p0) & ((cc < 1.0 - p0) | (cc >= 0.5)))
    if act.shape[0] == 0:
        return log_l, log_x, s_out
    pa, mua, ppa, cca = p[act], mu[act], pp[act], cc[act]
    comp = cca < 0.5
    log_target = np.where(comp, np.log(cca), np.log(ppa))
    fin = math.exp(levels.log_clean_finite)
    # Per-component bracket: at s = g_k + mu (zq - mu/2) component k equals the target.
    qq = np.clip(cca / fin, 1e-300, 1.0)
    pn = np.clip((ppa - p0) / fin, 1e-300, 1.0)
    zq = np.clip(np.where(comp, -ndtri(qq), ndtri(pn)), -38.0, 38.0)
    shift = mua * (zq - 0.5 * mua)
    widen = 1e-3 * mua + 1e-9 * (1.0 + np.abs(shift) + abs(float(levels.log_ratio[0])))
    lo = levels.log_ratio[0] + shift - widen
    widen_hi = 1e-3 * mua + 1e-9 * (1.0 + np.abs(shift) + abs(float(levels.log_ratio[-1])))
    hi = levels.log_ratio[-1] + shift + widen_hi
    lo_ok = np.zeros(act.shape[0], dtype=bool)
    if s0 is not None:
        x = np.clip(s0[act], lo, hi)
        x = np.where(np.isfinite(x), x, 0.5 * (lo + hi))
    else:
        x = np.clip(_initial_guess(levels, ppa, mua), lo, hi)
    dx_old = hi - lo
    result = np.full(act.shape[0], np.nan)
    run = np.arange(act.shape[0])
    for _ in range(_INNER_MAXITER):
        h, dh = _clean_eval(levels, x, mua[run], comp[run], log_target[run])
        below = h <= 0.0
        lo[run] = np.where(below, x, lo[run])
        lo_ok[run] |= below
        hi[run] = np.where(below, hi[run], x)
        accept = below & (h >= -_INNER_TOL)
        width = hi[run] - lo[run]
        scale = np.maximum(np.abs(lo[run]), np.abs(hi[run]))
        collapsed = width <= 4.0 * np.spacing(scale) + 1e-300
        collapsed_ok = collapsed & lo_ok[run]
        done = accept | collapsed_ok
        result[run[accept]] = x[accept]
        result[run[collapsed_ok & ~accept]] = lo[run[collapsed_ok & ~accept]]
        # A collapsed bracket whose lower end was never evaluated: push it down.
        stuck = collapsed & ~lo_ok[run]
        if np.any(stuck):
            idx = run[stuck]
            lo[idx] = lo[idx] - (1.0 + np.abs(lo[idx])) * 1e-6 - mua[idx]
        step = (h + 0.5 * _INNER_TOL) / dh
        xn = x - step
        lo_r, hi_r = lo[run], hi[run]
        bis = (
            ~np.isfinite(xn)
            | (xn <= lo_r)
            | (xn >= hi_r)
            | (np.abs(step) > 0.5 * np.abs(dx_old[run]))
        )
        xn = np.where(bis, 0.5 * (lo_r + hi_r), xn)
        dx_old[run] = np.where(bis, hi_r - lo_r, step)
        keep = ~done
        run = run[keep]
        x = xn[keep]
        if run.shape[0] == 0:
            break
    else:
        raise ConvergenceError(
            f"hybrid threshold search did not converge for {run.shape[0]} example(s) "
            f"(e.g. p_lower = {float(pa[run[0]])!r}, mu = {float(mua[run[0]])!r})"
        )
    log_g, log_y = _adv_eval(levels, result, mua)
    log_l[act] = log_g + math.log1p(-slack)
    log_x[act] = np.minimum(log_y + math.log1p(slack), 0.0)
    s_out[act] = result
    return log_l, log_x, s_out


@_quiet
def hybrid_point(levels: Levels, p: FloatArray, mu: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Conservative ``(L, 1 - L)`` at ``mu >= 0`` (``mu = 0``: discrete bound).

    This is the evaluation behind :func:`~smoothcert.certificates.hybrid_lower_bound`
    and the re-verification of every returned radius. ``mu`` may be ``+inf`` (an
    overflowed ``r / sigma``). Special cases, exact up to rounding down:

    * ``p = 1``: the worst-case set is the whole clean support at every ``mu``, so
      ``L`` is the adversarial mass of the finite levels (1 for ``uniform``).
    * ``mu >= Phi^-1(p) + 39`` (including ``mu = inf``): ``L`` is 0, since ``L(d, r)
      <= L(0, r) = Phi(Phi^-1(p) - mu) <= Phi(-39) < 1e-330`` (the token part only
      makes the experiment more informative); float64 rounds that to 0 anyway.

    Near 1, ``L`` is computed as ``1 - x``; that subtraction is rounded down (and
    ``1 - L`` up), see :func:`~smoothcert.certificates._levels.one_minus_down`. The other
    roundings are covered by the relative safety margin :attr:`Levels.slack`.
    """
    n = p.shape[0]
    lower = np.zeros(n)
    upper_c = np.ones(n)
    zero = mu <= 0.0
    if np.any(zero):
        lower[zero], upper_c[zero] = discrete_lower(levels, p[zero])
    one = ~zero & (p >= 1.0)
    if np.any(one):
        # Adversarial mass of the finite levels, from both sides (as in discrete_lower).
        slack = levels.slack
        mass = np.array([math.exp(levels.log_adv_finite) * (1.0 - slack)])
        rest = np.array([-math.expm1(levels.log_adv_finite) * (1.0 + slack)])
        lower[one] = np.clip(np.maximum(mass, one_minus_down(rest)), 0.0, 1.0)[0]
        upper_c[one] = np.clip(np.minimum(rest, one_minus_up(mass)), 0.0, 1.0)[0]
    z_p = np.where(p > 0.5, -ndtri(np.minimum(1.0 - p, 0.5)), ndtri(np.minimum(p, 0.5)))
    pos = ~zero & ~one & (mu - z_p < _FAR_TAIL)  # the rest (mu = inf too) keeps L = 0
    if np.any(pos):
        log_l, log_x, _ = solve_threshold(levels, p[pos], mu[pos])
        lval = np.exp(log_l)
        xval = np.exp(log_x)
        # Two conservative evaluations of the same G(s_lo): keep the tighter one.
        lower[pos] = np.clip(np.maximum(lval, one_minus_down(xval)), 0.0, 1.0)
        upper_c[pos] = np.clip(np.minimum(xval, one_minus_up(lval)), 0.0, 1.0)
    return lower, upper_c


def residual(log_l: FloatArray, log_x: FloatArray, tau: float) -> FloatArray:
    """Certification margin, ``>= 0`` iff certified; decreasing in ``mu`` and ``d``.

    ``log L - log tau`` (tau <= 1/2) or ``log(1 - tau) - log(1 - L)`` (tau > 1/2).
    """
    if tau <= 0.5:
        res = log_l - math.log(tau)
    else:
        res = math.log1p(-tau) - log_x
    out: FloatArray = np.clip(res, -_RES_CLIP, _RES_CLIP)
    return out


def _discrete_residual(levels: Levels, p: FloatArray, tau: float) -> FloatArray:
    lower, upper_c = discrete_lower(levels, p)
    return residual(np.log(lower), np.log(upper_c), tau)


@_quiet
def chandrupatla(
    f: Callable[[IntArray, FloatArray], FloatArray],
    a: FloatArray,
    b: FloatArray,
    fa: FloatArray,
    fb: FloatArray,
) -> FloatArray:
    """Vectorised Chandrupatla bracketing root finder for a decreasing ``f``.

    Requires ``fa >= 0 > fb``. ``f(idx, x)`` evaluates the functions of the entries
    ``idx`` at ``x``. Returns the *certified* end of the final bracket (where ``f >= 0``
    was evaluated), within ``_OUTER_RTOL`` relative (plus ``_OUTER_ATOL``) of the root.

    Raises:
        ConvergenceError: if the bracket does not shrink to tolerance in time.
    """
    a, b, fa, fb = a.copy(), b.copy(), fa.copy(), fb.copy()
    c, fc = b.copy(), fb.copy()
    t = np.full(a.shape[0], 0.5)
    run = np.arange(a.shape[0])
    eps = np.finfo(np.float64).eps
    for _ in range(_OUTER_MAXITER):
        ar, br = a[run], b[run]
        xt = ar + t[run] * (br - ar)
        ft = f(run, xt)
        same = (ft >= 0.0) == (fa[run] >= 0.0)
        # same sign as a: c <- a, a <- xt;  else: c <- b, b <- a, a <- xt.
        c[run] = np.where(same, ar, br)
        fc[run] = np.where(same, fa[run], fb[run])
        b[run] = np.where(same, br, ar)
        fb[run] = np.where(same, fb[run], fa[run])
        a[run] = xt
        fa[run] = ft
        ar, br, cr = a[run], b[run], c[run]
        far, fbr, fcr = fa[run], fb[run], fc[run]
        xm = np.where(np.abs(far) < np.abs(fbr), ar, br)
        tol = 2.0 * eps * np.abs(xm) + 0.5 * (_OUTER_ATOL + _OUTER_RTOL * np.abs(xm))
        tl = tol / np.abs(br - ar)
        done = (tl > 0.5) | ~np.isfinite(tl)
        xi = (ar - br) / (cr - br)
        ph = (far - fbr) / (fcr - fbr)
        iqi = (ph * ph < xi) & ((1.0 - ph) ** 2 < 1.0 - xi)
        tn = far / (fbr - far) * fcr / (fbr - fcr) + (cr - ar) / (br - ar) * far / (
            fcr - far
        ) * fbr / (fcr - fbr)
        tn = np.where(iqi & np.isfinite(tn), tn, 0.5)
        tl_c = np.minimum(np.where(np.isfinite(tl), tl, 0.5), 0.5)
        t[run] = np.clip(tn, tl_c, 1.0 - tl_c)
        run = run[~done]
        if run.shape[0] == 0:
            break
    else:
        raise ConvergenceError(
            f"radius search did not converge for {run.shape[0]} example(s) "
            f"(bracket [{float(a[run[0]])!r}, {float(b[run[0]])!r}])"
        )
    out: FloatArray = np.where(fa >= 0.0, a, b)
    return out


@_quiet
def _newton_radius(
    levels: Levels, p: FloatArray, tau: float, cap: FloatArray
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Joint Newton iteration on ``(s, mu)`` for ``F(s; mu) = p`` and ``G(s; mu) = tau``.

    Targets are shifted inside the acceptance windows of :func:`solve_threshold` and of
    the certification test (``h_F = -tol/2``, ``h_G = +margin``), so that a converged
    point normally passes the re-verification unchanged. With ``A = sum_k p_k phi(z_k)``
    the Jacobian is explicit: ``dF/ds = A / mu``, ``dG/ds = e^s dF/ds`` and, along ``F = p``,
    ``dL/dmu = -e^{s*} A``. While ``F`` is far from its target, only ``s`` moves (a
    Newton step kept inside the per-component bracket of ``s``). ``mu`` stays in
    ``(0, cap]``; a point with ``mu = cap`` that is certified is accepted as is.

    Returns:
        ``(mu, s, converged)``; entries that did not converge are left to the
        bracketing fallback.
    """
    b = p.shape[0]
    slack = levels.slack
    mu = cap.copy()
    pp = p * (1.0 - slack)
    cc = (1.0 - p) * (1.0 + slack)
    comp_f = cc < 0.5
    p0 = levels.clean_zero
    fin = math.exp(levels.log_clean_finite)
    log_tf = np.where(comp_f, np.log(cc), np.log(pp))
    zq = np.clip(
        np.where(
            comp_f,
            -ndtri(np.clip(cc / fin, 1e-300, 1.0)),
            ndtri(np.clip((pp - p0) / fin, 1e-300, 1.0)),
        ),
        -38.0,
        38.0,
    )
    s = _initial_guess(levels, pp, mu)
    ok = np.zeros(b, dtype=bool)
    g = levels.log_ratio
    g_lo, g_hi = float(g[0]), float(g[-1])
    lp, lq = levels.log_clean, levels.log_adv
    lp0, lqinf = levels.log_clean_zero, levels.log_adv_inf
    comp_g = tau > 0.5
    log_tg = math.log1p(-tau) - math.log1p(slack) if comp_g else math.log(tau) - math.log1p(-slack)
    run = np.arange(b)
    for _ in range(_NEWTON_MAXITER):
        m, x, cf = mu[run], s[run], comp_f[run]
        z = (x[:, None] - g[None, :]) / m[:, None] + 0.5 * m[:, None]
        a1 = _lse(lp[None, :] + log_ndtr(np.where(cf[:, None], -z, z)))
        log_vf = np.where(cf, a1, np.logaddexp(lp0, a1))
        h_f = np.where(cf, log_tf[run] - log_vf, log_vf - log_tf[run])
        dens = lp[None, :] - 0.5 * z * z
        log_a = _lse(dens)
        mom = np.sum(np.exp(dens - log_a[:, None]) * (x[:, None] - g[None, :]), axis=1)
        log_a = log_a - _LOG_SQRT_2PI
        w = z - m[:, None]
        if comp_g:
            log_vg = np.logaddexp(lqinf, _lse(lq[None, :] + log_ndtr(-w)))
            h_g = log_tg - log_vg
        else:
            log_vg = _lse(lq[None, :] + log_ndtr(w))
            h_g = log_vg - log_tg
        e1 = h_f + 0.5 * _INNER_TOL
        e2 = h_g - _MARGIN
        at_cap = m >= cap[run]
        conv = (np.abs(e1) <= 0.4 * _INNER_TOL) & (
            (np.abs(e2) <= 0.5 * _MARGIN) | (at_cap & (e2 >= 0.0))
        )
        ok[run[conv]] = True
        inv_a = m * np.exp(log_vf - log_a)  # 1 / (d h_F / d s)
        # Joint step (closed-form 2x2 solve), mu kept in [m / 4, min(2 m, cap)].
        dmu = e2 * np.exp(log_vg - x - log_a) - e1 * np.exp(log_vf - log_a)
        dmu = np.clip(dmu, -0.75 * m, m)
        m_new = np.minimum(m + dmu, cap[run])
        dmu = m_new - m
        ds = -e1 * inv_a - (0.5 * m - mom / m) * dmu
        # Far from F = p: move s alone, inside the bracket of s at this mu.
        far = np.abs(e1) > _FAR
        m_new = np.where(far, m, m_new)
        ds = np.where(far, -e1 * inv_a, ds)
        shift = m_new * (zq[run] - 0.5 * m_new)
        lo_b, hi_b = g_lo + shift - 1e-3 * m_new, g_hi + shift + 1e-3 * m_new
        s_new = x + ds
        s_new = np.where(s_new < lo_b, 0.5 * (np.maximum(x, lo_b) + lo_b), s_new)
        s_new = np.where(s_new > hi_b, 0.5 * (np.minimum(x, hi_b) + hi_b), s_new)
        good = np.isfinite(m_new) & np.isfinite(s_new) & (m_new > 0.0)
        keep = ~conv & good
        idx = run[keep]
        mu[idx] = m_new[keep]
        s[idx] = s_new[keep]
        run = idx
        if run.shape[0] == 0:
            break
    return mu, s, ok


@_quiet
def radius_step(
    levels: Levels, p: FloatArray, tau: float, cap: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Largest ``mu <= cap`` with ``L(mu) >= tau`` (0 if not certified at 0+).

    ``cap`` must be an upper bound on the true root, or a value at which certification
    is checked (then ``cap`` itself is returned when it is certified). Returns ``(mu,
    s)`` with ``s`` the threshold ``log t*`` found at ``mu`` (a warm start for the
    verification; NaN where unknown). Fast path: :func:`_newton_radius`; fallback:
    certified-end Chandrupatla search in ``mu`` over nested threshold solves.
    """
    b = p.shape[0]
    out = np.zeros(b)
    s_out = np.full(b, np.nan)
    live = np.flatnonzero(cap > 0.0)
    if live.shape[0] == 0:
        return out, s_out
    f0 = _discrete_residual(levels, p[live], tau)
    live = live[f0 >= 0.0]
    if live.shape[0] == 0:
        return out, s_out
    mu_n, s_n, ok = _newton_radius(levels, p[live], tau, cap[live])
    out[live[ok]] = mu_n[ok]
    s_out[live[ok]] = s_n[ok]
    live = live[~ok]
    if live.shape[0] == 0:
        return out, s_out
    # Robust fallback.
    pl, capl = p[live], cap[live]
    log_l, log_x, s_cap = solve_threshold(levels, pl, capl)
    f_cap = residual(log_l, log_x, tau)
    ok_cap = f_cap >= 0.0
    out[live[ok_cap]] = capl[ok_cap]
    s_out[live[ok_cap]] = s_cap[ok_cap]
    rest = np.flatnonzero(~ok_cap)
    if rest.shape[0] == 0:
        return out, s_out
    pr, capr = pl[rest], capl[rest]
    f0r = _discrete_residual(levels, pr, tau)
    warm = s_cap[rest].copy()

    def f(idx: IntArray, x: FloatArray) -> FloatArray:
        # L is non-increasing in mu: certifying at max(x, 1e-300) also certifies at x.
        ll, lx, s_new = solve_threshold(levels, pr[idx], np.maximum(x, 1e-300), warm[idx])
        warm[idx] = np.where(np.isfinite(s_new), s_new, warm[idx])
        return residual(ll, lx, tau)

    mu = chandrupatla(f, np.zeros(rest.shape[0]), capr, f0r, f_cap[rest])
    out[live[rest]] = mu
    return out, s_out

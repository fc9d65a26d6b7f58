"""Likelihood-ratio level distributions of the token kernels (internal; numpy only).

The attacker substitutes tokens at some positions. For a token kernel, the likelihood
ratio ``adversarial / clean`` of a noisy token sequence depends only on the noisy tokens
at the attacked positions, and takes finitely many values ("levels"). A
:class:`Levels` object stores, in log space:

* the finite positive levels ``gamma_k`` (``log_ratio``, strictly increasing),
* their clean masses ``p_k`` (``log_clean``) and adversarial masses ``q_k = gamma_k p_k``
  (``log_adv``, stored separately because it is computed more accurately by symmetry),
* an atom at ratio 0 (clean mass ``1 - exp(log_clean_finite)``, adversarial mass 0), and
* an atom at ratio infinity (clean mass 0, adversarial mass ``1 - exp(log_adv_finite)``).

Uniform kernel (DESIGN.md, "Token substitution kernels"): per attacked position the noisy
token is the original ``u`` (clean ``1 - beta``, adversarial ``a = beta / (V - 1)``), the
attacker's ``u'`` (clean ``a``, adversarial ``1 - beta``) or another token (``beta - a``
under both). With ``k = #(z = u) - #(z = u')`` the ratio is ``rho^k``, ``rho = a / (1 -
beta)``. The clean law of ``k`` over ``e`` positions is the ``e``-fold convolution of
``{+1: 1 - beta, -1: a, 0: beta - a}``, computed here by a log-space recursion (no
overflow or underflow for ``e`` in the thousands); the adversarial law is its mirror
image ``q_k = p_{-k}``.

Any-token attacker (``attacker="any"``, uniform kernel extended to tokens outside the
alphabet: such a token is kept with probability ``1 - beta``, otherwise replaced by one of
the ``V`` alphabet tokens uniformly). Per position where the attacker writes an
out-of-alphabet token ``o`` over an alphabet token ``u``, the noisy token is ``o`` (clean
0, adversarial ``1 - beta``: the ratio-infinity atom), ``u`` (clean ``1 - beta``,
adversarial ``beta / V``) or another alphabet token (clean ``beta / (V - 1)``, adversarial
``beta / V`` each); see :func:`outside_levels`. A clean out-of-alphabet token that the
attacker overwrites gives at most the mask experiment with the same ``beta`` (ratio 0,
1, infinity; see :func:`any_levels`).

Mask kernel: the ``e`` attacked positions are all masked with probability ``v = beta^e``
(ratio 1); otherwise the clean sample shows ``u`` somewhere (ratio 0) and the adversarial
one shows ``u'`` somewhere (ratio infinity).

Several fields (alphabets) attacked at once: the noise is independent across fields, so
the levels multiply (log-levels add, masses multiply: a convolution), see :func:`product`.

Pruning. Finite levels whose clean AND adversarial masses are both below ``1e-80`` are
moved into the two atoms (clean mass to ratio 0, adversarial mass to ratio infinity).
The pruned pair of distributions is more informative than the exact one (the exact pair
is obtained from it by merging the atoms back into the level), so every Neyman-Pearson
bound computed from pruned levels is a valid, slightly smaller, lower bound.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln

FloatArray = NDArray[np.float64]

LOG_PRUNE = math.log(1e-80)
ALLOCATION_OVERHEAD = 1000  # fixed cost of one product or bound, in levels (~0.1 ms)
_NEG_INF = -math.inf


@dataclass(frozen=True, eq=False)
class Levels:
    """Likelihood-ratio levels of one attack (see the module docstring)."""

    log_ratio: FloatArray
    log_clean: FloatArray
    log_adv: FloatArray
    log_clean_finite: float
    log_adv_finite: float

    @property
    def size(self) -> int:
        """Number of finite positive levels."""
        return int(self.log_ratio.shape[0])

    @property
    def clean_zero(self) -> float:
        """Clean mass of the ratio-0 atom."""
        return max(0.0, -math.expm1(self.log_clean_finite))

    @property
    def adv_inf(self) -> float:
        """Adversarial mass of the ratio-infinity atom."""
        return max(0.0, -math.expm1(self.log_adv_finite))

    @property
    def log_clean_zero(self) -> float:
        """Log of :attr:`clean_zero` (``-inf`` when there is no such atom)."""
        m = self.clean_zero
        return math.log(m) if m > 0 else _NEG_INF

    @property
    def log_adv_inf(self) -> float:
        """Log of :attr:`adv_inf` (``-inf`` when there is no such atom)."""
        m = self.adv_inf
        return math.log(m) if m > 0 else _NEG_INF

    @property
    def mu_floor(self) -> float:
        """Smallest ``mu = r / sigma`` at which the hybrid bound is evaluated.

        Below it, ``log t`` cannot resolve the Gaussian spread in float64; the bound is
        then evaluated at the floor, which is valid because it is non-increasing in
        ``mu`` (and within ``O(mu_floor)`` of the exact value).
        """
        if self.size == 0:
            return 1e-6
        return 1e-6 * (1.0 + max(abs(float(self.log_ratio[0])), abs(float(self.log_ratio[-1]))))

    @property
    def slack(self) -> float:
        """Relative safety margin covering the rounding of sums over the levels.

        The masses are computed with relative error far below ``1e-13`` per level;
        bounds aim at the clean mass ``p (1 - slack)`` (or at the clean complement
        ``(1 - p)(1 + slack)`` when ``p`` is close to 1) and shrink the result by the
        same factor, so rounding can only make them more conservative.
        """
        return 2.0**-40 * (self.size + 1)


def _segment_logsumexp(x: FloatArray, starts: NDArray[np.intp]) -> FloatArray:
    m = np.maximum.reduceat(x, starts)
    lengths = np.diff(np.append(starts, x.shape[0]))
    m_safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore", under="ignore"):
        s = np.add.reduceat(np.exp(x - np.repeat(m_safe, lengths)), starts)
        out: FloatArray = np.log(s) + m_safe
    return out


def logsumexp(x: FloatArray) -> float:
    """Log of the sum of ``exp(x)`` for a 1-d array (``-inf`` for empty or all ``-inf``)."""
    if x.shape[0] == 0:
        return _NEG_INF
    m = float(np.max(x))
    if not math.isfinite(m):
        return m
    with np.errstate(under="ignore"):
        return m + math.log(float(np.sum(np.exp(x - m))))


def make_levels(
    log_ratio: FloatArray,
    log_clean: FloatArray,
    log_adv: FloatArray,
    log_clean_finite: float,
    log_adv_finite: float,
) -> Levels:
    """Sort, merge exactly equal ratios, drop empty levels and prune negligible ones."""
    keep = log_clean > _NEG_INF
    log_ratio, log_clean, log_adv = log_ratio[keep], log_clean[keep], log_adv[keep]
    order = np.argsort(log_ratio, kind="stable")
    log_ratio, log_clean, log_adv = log_ratio[order], log_clean[order], log_adv[order]
    if log_ratio.shape[0] > 1:
        new = np.empty(log_ratio.shape[0], dtype=bool)
        new[0] = True
        np.not_equal(log_ratio[1:], log_ratio[:-1], out=new[1:])
        if not np.all(new):
            starts = np.flatnonzero(new)
            log_clean = _segment_logsumexp(log_clean, starts)
            log_adv = _segment_logsumexp(log_adv, starts)
            log_ratio = log_ratio[starts]
    drop = (log_clean < LOG_PRUNE) & (log_adv < LOG_PRUNE)
    if np.any(drop):
        log_clean_finite = _remove_mass(log_clean_finite, logsumexp(log_clean[drop]))
        log_adv_finite = _remove_mass(log_adv_finite, logsumexp(log_adv[drop]))
        log_ratio, log_clean, log_adv = log_ratio[~drop], log_clean[~drop], log_adv[~drop]
    return Levels(
        np.ascontiguousarray(log_ratio),
        np.ascontiguousarray(log_clean),
        np.ascontiguousarray(log_adv),
        float(log_clean_finite),
        float(log_adv_finite),
    )


def _remove_mass(log_total: float, log_removed: float) -> float:
    """``log(exp(log_total) - exp(log_removed))``, ``-inf`` if nothing is left."""
    if log_removed == _NEG_INF:
        return log_total
    frac = math.exp(log_removed - log_total)
    if frac >= 1.0:
        return _NEG_INF
    return log_total + math.log1p(-frac)


def point_levels() -> Levels:
    """Levels of the empty attack (``d = 0``): a single level of ratio 1."""
    z = np.zeros(1)
    return Levels(z, z.copy(), z.copy(), 0.0, 0.0)


def _uniform_params(beta: float, vocab_size: int) -> tuple[float, float, float, float]:
    """``(log(1 - beta), log a, log(beta - a), log rho)`` of the uniform kernel.

    ``log rho = log a - log(1 - beta)`` carries a rounding error of a few ulp of the
    logs involved. At ``beta = (V - 1) / V`` (``rho = 1``) it is exactly 0 only when the
    logs cancel exactly (e.g. ``V = 2``, ``beta = 0.5``); otherwise it comes out as a
    few ``1e-16`` of either sign (often ``beta`` itself is not exactly ``(V - 1) / V``:
    for ``V = 3`` the float ``2/3`` gives a true ``log rho`` of ``-1.7e-16``). The
    levels ``rho^k`` then stay ``2d + 1`` separate levels within ``d * 1e-15`` of ratio
    1 instead of one merged level: the bound differs from the ``rho = 1`` value by
    ``O(d * 1e-16)`` relative, far inside the safety margin :attr:`Levels.slack`
    (``2^-40`` times the number of levels). It is deliberately not snapped to 0:
    merging the ``2d + 1`` levels into one would shrink that margin to ``2^-39``,
    below the ``O(d * 1e-16)`` change for ``d`` in the tens of thousands.
    """
    log_plus = math.log1p(-beta)
    log_minus = math.log(beta) - math.log(vocab_size - 1)
    log_zero = math.log(beta) + math.log1p(-1.0 / (vocab_size - 1)) if vocab_size > 2 else _NEG_INF
    return log_plus, log_minus, log_zero, log_minus - log_plus


def iter_uniform_log_pmf(beta: float, vocab_size: int) -> Iterator[FloatArray]:
    """Yield the clean log-pmf of ``k`` (index ``i`` is ``k = i - e``) for e = 0, 1, 2, ...

    Log-space recursion ``P_{e+1}(k) = P_e(k - 1)(1 - beta) + P_e(k + 1) a + P_e(k)(beta - a)``.
    """
    log_plus, log_minus, log_zero, _ = _uniform_params(beta, vocab_size)
    cur = np.zeros(1)
    while True:
        yield cur
        n = cur.shape[0]
        new = np.full(n + 2, _NEG_INF)
        new[2:] = cur + log_plus
        np.logaddexp(new[:-2], cur + log_minus, out=new[:-2])
        if log_zero > _NEG_INF:
            np.logaddexp(new[1:-1], cur + log_zero, out=new[1:-1])
        cur = new


def uniform_levels_from_pmf(log_pmf: FloatArray, log_rho: float) -> Levels:
    """Build :class:`Levels` from the clean log-pmf of ``k`` (adversarial = mirror)."""
    e = (log_pmf.shape[0] - 1) // 2
    k = np.arange(-e, e + 1, dtype=np.float64)
    return make_levels(k * log_rho, log_pmf.copy(), log_pmf[::-1].copy(), 0.0, 0.0)


def mask_levels(beta: float, e: int) -> Levels:
    """Levels of the mask kernel with ``e`` attacked positions."""
    lv = e * math.log(beta)
    z = np.zeros(1)
    return make_levels(z, np.array([lv]), np.array([lv]), lv, lv)


def outside_dominates(beta: float, vocab_size: int) -> bool:
    """Whether ``beta <= V / (V + 1)``, exactly (``beta`` is compared as a rational).

    In that regime one out-of-alphabet write is more informative than any other
    single-position edit of the uniform kernel, so the all-out-of-alphabet attack is the
    worst case of the any-token attacker (proof in :func:`any_levels`).
    """
    return Fraction(beta) * (vocab_size + 1) <= vocab_size


def outside_levels(beta: float, vocab_size: int, e: int) -> Levels:
    """Levels of ``e`` out-of-alphabet writes over alphabet tokens (uniform kernel).

    Per position: noisy ``u`` has ratio ``rho_o = beta / (V (1 - beta))`` (clean
    ``1 - beta``, adversarial ``beta / V``), another alphabet token ratio ``(V - 1) / V``
    (clean ``beta``, adversarial ``beta (V - 1) / V`` in all), and the written token
    itself the ratio-infinity atom (adversarial ``1 - beta``). Over ``e`` positions the
    number ``m`` of noisy ``u`` is binomial: level ``rho_o^m ((V - 1) / V)^(e - m)``; the
    finite adversarial mass is ``beta^e``.
    """
    if e == 0:
        return point_levels()
    m = np.arange(e + 1, dtype=np.float64)
    log_binom = gammaln(e + 1.0) - gammaln(m + 1.0) - gammaln(e - m + 1.0)
    log_keep = math.log1p(-beta)
    log_b = math.log(beta)
    log_bv = log_b - math.log(vocab_size)
    log_vm = math.log1p(-1.0 / vocab_size)
    log_ratio = m * (log_bv - log_keep) + (e - m) * log_vm
    log_clean = log_binom + m * log_keep + (e - m) * log_b
    log_adv = log_binom + m * log_bv + (e - m) * (log_b + log_vm)
    return make_levels(log_ratio, log_clean, log_adv, 0.0, e * log_b)


def any_levels(beta: float, vocab_size: int, e: int, outside: int) -> Levels:
    """Worst-case levels of ``e`` any-token edits, ``outside`` clean tokens outside the alphabet.

    Valid when :func:`outside_dominates` holds: the worst attack overwrites
    ``m = min(e, outside)`` clean out-of-alphabet tokens (mask experiment with ``beta``:
    ratio 0 with clean mass ``1 - beta``, 1 with ``beta``, infinity with adversarial
    ``1 - beta`` per position) and writes out-of-alphabet tokens over ``e - m`` alphabet
    tokens (:func:`outside_levels`).

    Proof (Blackwell garblings; a garbling of an experiment has a pointwise larger
    Neyman-Pearson bound, and garblings tensorise over independent positions). Write a
    single-position experiment as (clean, adversarial) masses per noisy outcome.

    * Alphabet write ``u -> u'`` (outcomes ``u``, ``u'``, other) is a garbling of the
      out-of-alphabet write ``u -> o`` (outcomes ``U``, ``W`` = another alphabet token,
      ``O`` = ``o``): send ``U`` to ``u``; ``W`` to ``u'`` w.p. ``1 / (V - 1)``, else to
      other; ``O`` to ``u`` w.p. ``beta / (V (V - 1)(1 - beta))``, to ``u'`` w.p.
      ``1 - beta / (V (1 - beta))``, else to other. All are probabilities iff
      ``beta <= V / (V + 1)``, and the images are exactly ``(1 - beta, a)``, ``(a,
      1 - beta)``, ``(beta - a, beta - a)`` with ``a = beta / (V - 1)``.
    * The mask experiment with ``beta`` is the most informative of all experiments
      whose total variation is at most ``1 - beta`` (split both laws into their common
      part, of mass ``>= beta``, and the rest). Every edit here has total variation at
      most ``1 - beta`` in this regime: ``u -> u'`` (``|1 - beta - a|``), ``u -> o`` and
      ``o -> u`` (``1 - beta``), ``o -> o'`` (exactly the mask experiment).

    So any allocation of edits is a garbling of the one returned (replace each edit by a
    more informative one), and the bound is monotone in the number of edits.
    """
    m = min(e, outside)
    out = outside_levels(beta, vocab_size, e - m)
    if m == 0:
        return out
    return product(mask_levels(beta, m), out)


ATTACKERS: tuple[str, ...] = ("alphabet", "any")


@dataclass(frozen=True)
class Group:
    """Fields sharing one kernel (same kernel, beta, alphabet), merged.

    ``cap`` is the total number of eligible positions of the group (``None``: unbounded).
    ``attacker`` is ``"alphabet"`` or ``"any"`` (uniform kernel only; a mask group is
    always ``"alphabet"``, its levels are the same); ``outside`` the number of eligible
    positions whose clean token lies outside the alphabet (``"any"`` only).
    """

    kernel: str
    beta: float
    vocab_size: int
    cap: int | None
    attacker: str = "alphabet"
    outside: int = 0

    @property
    def mixed(self) -> bool:
        """Any-token attacker where the all-out-of-alphabet attack is not proven worst.

        Then every split of the edits into alphabet and out-of-alphabet writes is an
        attack of its own (:meth:`AttackLevels.at`).
        """
        return (
            self.attacker == "any"
            and self.kernel == "uniform"
            and not outside_dominates(self.beta, self.vocab_size)
        )


def mixed_attacks(group: Group, alphabet_writes: Sequence[Levels], e: int) -> list[Levels]:
    """Levels of every split of ``e`` edits of a :attr:`Group.mixed` group.

    ``alphabet_writes[k]`` are the levels of ``k`` alphabet writes; split ``j`` writes
    ``j`` out-of-alphabet tokens and ``e - j`` alphabet ones (``j = 0..e``). The clean
    tokens all lie in the alphabet (``group.outside == 0``, enforced by the callers).
    """
    out: list[Levels] = []
    for j in range(e + 1):
        lev = outside_levels(group.beta, group.vocab_size, j)
        out.append(
            lev
            if j == e
            else alphabet_writes[e - j]
            if j == 0
            else product(alphabet_writes[e - j], lev)
        )
    return out


def iter_group_levels(group: Group) -> Iterator[Levels]:
    """Yield the levels of ``e`` edits inside ``group`` for e = 0, 1, 2, ...

    For a :attr:`Group.mixed` group: the levels of ``e`` ALPHABET writes (the
    out-of-alphabet splits are added by :class:`AttackLevels`).
    """
    if group.attacker == "any" and group.kernel == "uniform" and not group.mixed:
        e = 0
        while True:
            yield any_levels(group.beta, group.vocab_size, e, group.outside)
            e += 1
    elif group.kernel == "mask":
        e = 0
        while True:
            yield mask_levels(group.beta, e)
            e += 1
    else:
        log_rho = _uniform_params(group.beta, group.vocab_size)[3]
        for pmf in iter_uniform_log_pmf(group.beta, group.vocab_size):
            yield uniform_levels_from_pmf(pmf, log_rho)


@functools.lru_cache(maxsize=256)
def _group_levels_cached(
    kernel: str, beta: float, vocab_size: int, e: int, attacker: str, outside: int
) -> Levels:
    if kernel == "mask":
        return mask_levels(beta, e)
    if attacker == "any" and outside_dominates(beta, vocab_size):
        return any_levels(beta, vocab_size, e, outside)
    log_rho = _uniform_params(beta, vocab_size)[3]
    it = iter_uniform_log_pmf(beta, vocab_size)
    pmf = next(it)
    for _ in range(e):
        pmf = next(it)
    return uniform_levels_from_pmf(pmf, log_rho)


def group_levels(group: Group, e: int) -> Levels:
    """Levels of ``e`` edits inside ``group`` (cached; alphabet writes for a mixed group)."""
    vocab = group.vocab_size if group.kernel == "uniform" else 0
    return _group_levels_cached(group.kernel, group.beta, vocab, e, group.attacker, group.outside)


def product(a: Levels, b: Levels) -> Levels:
    """Levels of two independent attacks at once (ratios multiply, masses multiply)."""
    fc = a.log_clean_finite + b.log_clean_finite
    fa = a.log_adv_finite + b.log_adv_finite
    if a.size == 0 or b.size == 0:
        e = np.zeros(0)
        return Levels(e, e.copy(), e.copy(), _NEG_INF, _NEG_INF)
    return make_levels(
        (a.log_ratio[:, None] + b.log_ratio[None, :]).ravel(),
        (a.log_clean[:, None] + b.log_clean[None, :]).ravel(),
        (a.log_adv[:, None] + b.log_adv[None, :]).ravel(),
        fc,
        fa,
    )


def allocations(caps: Sequence[int], total: int) -> Iterator[tuple[int, ...]]:
    """All ``e`` with ``sum(e) == total`` and ``0 <= e_i <= caps_i`` (lexicographic)."""
    if not caps:
        if total == 0:
            yield ()
        return
    rest = sum(caps[1:])
    for first in range(max(0, total - rest), min(caps[0], total) + 1):
        for tail in allocations(caps[1:], total - first):
            yield (first, *tail)


def count_allocations(caps: Sequence[int], total: int) -> int:
    """Number of elements :func:`allocations` yields (dynamic programming)."""
    ways = [1] + [0] * total
    for c in caps:
        prefix = [0]
        for w in ways:
            prefix.append(prefix[-1] + w)
        ways = [prefix[t + 1] - prefix[max(0, t - c)] for t in range(total + 1)]
    return ways[total]


class AttackLevels:
    """Level distributions of every worst-case attack with a total budget of ``d`` edits.

    For one group the attack is unique (``min(d, cap)`` edits). For several groups it is
    every allocation of ``min(d, total capacity)`` edits to groups: the bound is monotone
    in each group's edit count, so allocations that leave budget unused are dominated.
    Meant to be walked with increasing ``d`` (the recursion is shared).
    """

    def __init__(self, groups: Sequence[Group]) -> None:
        self.groups = list(groups)
        self._iters = [iter_group_levels(g) for g in self.groups]
        self._tables: list[list[Levels]] = [[] for _ in self.groups]
        self._sizes: list[list[int]] = [[] for _ in self.groups]
        self._last: Levels | None = None
        self._last_e = -1

    def _caps(self, d: int) -> list[int]:
        return [d if g.cap is None else min(d, g.cap) for g in self.groups]

    def _group(self, i: int, e: int) -> Levels:
        if len(self.groups) == 1:
            # A single group is walked in increasing order: keep only the latest levels.
            while self._last_e < e:
                self._last = next(self._iters[0])
                self._last_e += 1
            if self._last_e != e or self._last is None:
                raise RuntimeError("AttackLevels must be walked with non-decreasing d")
            return self._last
        table = self._tables[i]
        while len(table) <= e:
            table.append(next(self._iters[i]))
            self._sizes[i].append(table[-1].size)
        return table[e]

    @property
    def capacity(self) -> int | None:
        """Total number of eligible positions (``None`` if a group is unbounded).

        Every budget ``d >= capacity`` gives the same attacks.
        """
        caps = [g.cap for g in self.groups]
        return None if any(c is None for c in caps) else sum(c for c in caps if c is not None)

    def work(self, d: int, limit: int) -> int:
        """Cost of :meth:`at` and of one bound per attack at budget ``d``, in levels.

        The sum over allocations of the product of the per-group level counts (an upper
        bound on the levels of each attack) plus ``ALLOCATION_OVERHEAD`` per product.
        Stops counting (and returns a value above ``limit``) once ``limit`` is exceeded,
        so that a huge number of allocations is never enumerated.
        """
        caps = self._caps(d)
        total = min(d, sum(caps))
        if len(self.groups) == 1 and self.groups[0].mixed:
            return (total + 1) * (2 * total + 1) * (total + 1) + ALLOCATION_OVERHEAD
        if len(self.groups) == 1:
            return self._group(0, total).size + ALLOCATION_OVERHEAD
        for i, c in enumerate(caps):
            self._group(i, c)  # fills the tables (and sizes) up to c edits
        sizes = self._sizes
        cost = 0
        for alloc in allocations(caps, total):
            prod, edited = 1, 1
            for i, e in enumerate(alloc):
                if e:
                    prod *= sizes[i][e]
                    edited += 1
            cost += prod + ALLOCATION_OVERHEAD * edited
            if cost > limit:
                break
        return cost

    def at(self, d: int) -> list[tuple[tuple[int, ...], Levels]]:
        """Return ``[(allocation, levels), ...]`` of every worst-case attack at budget ``d``."""
        caps = self._caps(d)
        total = min(d, sum(caps))
        if len(self.groups) == 1 and self.groups[0].mixed:
            table = self._tables[0]
            while len(table) <= total:
                table.append(next(self._iters[0]))
            return [((total,), lev) for lev in mixed_attacks(self.groups[0], table, total)]
        out: list[tuple[tuple[int, ...], Levels]] = []
        for alloc in allocations(caps, total):
            lev: Levels | None = None
            for i, e in enumerate(alloc):
                if e == 0:
                    continue  # no edit in this group: its levels are the identity
                gl = self._group(i, e)
                lev = gl if lev is None else product(lev, gl)
            out.append((alloc, point_levels() if lev is None else lev))
        return out


def attack_levels(groups: Sequence[Group], d: int) -> list[tuple[tuple[int, ...], Levels]]:
    """Like :meth:`AttackLevels.at` for one ``d``, from the cached per-group levels."""
    caps = [d if g.cap is None else min(d, g.cap) for g in groups]
    total = min(d, sum(caps))
    if len(groups) == 1 and groups[0].mixed:
        table = [group_levels(groups[0], k) for k in range(total + 1)]
        return [((total,), lev) for lev in mixed_attacks(groups[0], table, total)]
    out: list[tuple[tuple[int, ...], Levels]] = []
    for alloc in allocations(caps, total):
        lev: Levels | None = None
        for g, e in zip(groups, alloc, strict=True):
            if e == 0:
                continue  # no edit in this group: its levels are the identity
            gl = group_levels(g, e)
            lev = gl if lev is None else product(lev, gl)
        out.append((alloc, point_levels() if lev is None else lev))
    return out


def one_minus_down(x: FloatArray) -> FloatArray:
    """``1 - x`` rounded down: the largest float ``y`` with ``y <= 1 - x`` exactly.

    Round-to-nearest ``1 - x`` can exceed the exact value by half an ulp (e.g. ``x =
    3e-17`` gives 1.0). The check is exact: for ``y >= 1/2``, ``1 - y`` is computed
    without rounding (Sterbenz), and for ``y < 1/2`` (``x > 1/2``) ``y`` itself is exact.
    """
    with np.errstate(invalid="ignore"):
        y = 1.0 - x
        out: FloatArray = np.where(1.0 - y < x, np.nextafter(y, -np.inf), y)
    return out


def one_minus_up(x: FloatArray) -> FloatArray:
    """``1 - x`` rounded up: the smallest float ``y`` with ``y >= 1 - x`` exactly."""
    with np.errstate(invalid="ignore"):
        y = 1.0 - x
        out: FloatArray = np.where(1.0 - y > x, np.nextafter(y, np.inf), y)
    return out


def discrete_lower(levels: Levels, p: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Neyman-Pearson worst case with fractional fill: ``(L, 1 - L)`` for each ``p``.

    Fills clean mass ``p`` with the levels of smallest ratio first (the ratio-0 atom, then
    ``gamma_1 < gamma_2 < ...``), the boundary level fractionally, and returns the
    adversarial mass of the filled set. Computed from the bottom (clean target
    ``p (1 - slack)``, accurate for small ``p``), from the top (clean complement
    ``(1 - p)(1 + slack)``, accurate for ``L`` near 1) and mixed (boundary from the top,
    adversarial mass summed from the bottom: accurate for tiny ``L`` at ``p`` near 1), see
    :attr:`Levels.slack`; each is a lower bound on its own and the largest is kept.
    ``1 - L`` is returned separately so that values of ``L`` within ``1e-16`` of 1 keep
    their precision. ``L = 1 - x`` and ``1 - L`` are rounded in the conservative
    direction (:func:`one_minus_down`, :func:`one_minus_up`).
    """
    slack = levels.slack
    p = np.asarray(p, dtype=np.float64)
    if levels.size == 0:
        # All clean mass sits in the ratio-0 atom (pruning only removes mass below
        # 1e-80 per level): the worst-case set fits inside it and L = 0.
        return np.zeros_like(p), np.ones_like(p)
    p0 = levels.clean_zero
    qinf = levels.adv_inf
    with np.errstate(divide="ignore", under="ignore", over="ignore"):
        pc = np.exp(levels.log_clean)
        qa = np.exp(levels.log_adv)
        c_cum = p0 + np.cumsum(pc)
        c_prev = np.concatenate(([p0], c_cum[:-1]))
        q_prev = np.concatenate(([0.0], np.cumsum(qa)[:-1]))
        t_cum = np.cumsum(pc[::-1])[::-1]
        t_next = np.concatenate((t_cum[1:], [0.0]))
        qt_next = qinf + np.concatenate((np.cumsum(qa[::-1])[::-1][1:], [0.0]))
        k = levels.size

        # Bottom-up.
        pp = p * (1.0 - slack)
        j = np.minimum(np.searchsorted(c_cum, pp, side="left"), k - 1)
        fill = np.clip(pp - c_prev[j], 0.0, pc[j])
        l_bu = (q_prev[j] + np.exp(levels.log_ratio[j] + np.log(fill))) * (1.0 - slack)
        l_bu = np.where(pp <= p0, 0.0, l_bu)

        # Top-down.
        cc = (1.0 - p) * (1.0 + slack)
        idx = np.searchsorted(t_cum[::-1], cc, side="left")
        jt = k - 1 - idx
        none = jt < 0
        jt = np.maximum(jt, 0)
        unfill = np.clip(cc - t_next[jt], 0.0, pc[jt])
        x_td = (qt_next[jt] + np.exp(levels.log_ratio[jt] + np.log(unfill))) * (1.0 + slack)
        x_td = np.where(none, 1.0, x_td)

        # Mixed: boundary from the top (p close to 1), adversarial mass summed from the
        # bottom (accurate when L is tiny although p is close to 1).
        fill_td = np.clip(pc[jt] - unfill, 0.0, pc[jt])
        l_mx = (q_prev[jt] + np.exp(levels.log_ratio[jt] + np.log(fill_td))) * (1.0 - slack)
        l_mx = np.where(none, 0.0, l_mx)

    # Each computation is conservative on its own; keep the tightest.
    l_best = np.maximum(l_bu, l_mx)
    lower = np.clip(np.maximum(l_best, one_minus_down(x_td)), 0.0, 1.0)
    upper_c = np.clip(np.minimum(x_td, one_minus_up(l_best)), 0.0, 1.0)
    zero = p <= 0.0
    lower = np.where(zero, 0.0, lower)
    upper_c = np.where(zero, 1.0, upper_c)
    return lower, upper_c


# Grid of Chernoff exponents for :func:`log_bound_upper` (any values in [0, 1] are valid;
# a finer grid only tightens the bound).
_CHERNOFF_S = np.linspace(0.0, 1.0, 65)


def _log_mgf_edits(group: Group, e: int, s: FloatArray) -> FloatArray:
    """``log E_clean[ratio^s]`` of ONE valid attack with ``e`` edits in ``group``.

    The alphabet attack of :func:`_log_mgf`; for the any-token attacker, the attack of
    :func:`any_levels` (``min(e, outside)`` mask-like edits, the rest out-of-alphabet
    writes: ``(1 - beta) rho_o^s + beta ((V - 1) / V)^s`` per position, the written token
    itself being singular to the clean law). Any valid attack bounds the worst case.
    """
    if group.attacker != "any" or group.kernel != "uniform":
        return e * _log_mgf(group, s)
    m = min(e, group.outside)
    log_mask = np.where(s > 0.0, math.log(group.beta), 0.0)
    log_keep = math.log1p(-group.beta)
    log_rho_o = math.log(group.beta) - math.log(group.vocab_size) - log_keep
    per = np.logaddexp(
        log_keep + s * log_rho_o,
        math.log(group.beta) + s * math.log1p(-1.0 / group.vocab_size),
    )
    out: FloatArray = m * log_mask + (e - m) * per
    return out


def _log_mgf(group: Group, s: FloatArray) -> FloatArray:
    """``log E_clean[ratio^s]`` for ONE attacked position of ``group``, ``s`` in [0, 1].

    Uniform: ``(1 - beta) rho^s + a rho^-s + (beta - a)``; mask: ``beta`` for ``s > 0``
    (the unmasked clean token has ratio 0) and 1 at ``s = 0``.
    """
    if group.kernel == "mask":
        out: FloatArray = np.where(s > 0.0, math.log(group.beta), 0.0)
        return out
    log_plus, log_minus, log_zero, log_rho = _uniform_params(group.beta, group.vocab_size)
    out = np.logaddexp(log_plus + s * log_rho, log_minus - s * log_rho)
    if log_zero > _NEG_INF:
        out = np.logaddexp(out, log_zero)
    return out


def log_bound_upper(groups: Sequence[Group], d: int, log_eps: float) -> float:
    """Rigorous upper bound on ``log L(d)`` for every ``p_lower <= 1 - exp(log_eps)``.

    Used to skip the ``O(d^2)`` level recursion where the Neyman-Pearson bound ``L(d)``
    is negligible (large ``d``). Chernoff argument, with ``P`` clean and ``Q``
    adversarial, ``R = dQ/dP`` the likelihood ratio of the attack (``Q``'s part singular
    to ``P``, the ratio-infinity atom, lies outside every set below) and
    ``M(s) = E_P[R^s]``, a product over attacked positions (``M(s) <= 1`` on [0, 1] by
    Jensen). For ``A = {R < t}``, ``t = e^tau``:

    * ``P(A^c) = P(R >= t) <= t^-s M(s)`` for ``s > 0`` (Markov on ``R^s``): choosing
      ``tau = (log M(s) - log eps) / s`` makes ``P(A) >= 1 - eps >= p_lower``;
    * ``Q(A) = E_P[R; R < t] <= t^(1 - s') M(s')`` for ``s'`` in [0, 1].

    The worst-case set of clean mass ``p_lower`` fits inside ``A``, so ``L(d) <= Q(A)``;
    the bound is minimised over a grid of ``s, s'``. With several groups it uses one
    group at a time with all the edits it can take (``min(d, cap)``): that is part of a
    valid allocation, and edits elsewhere only lower ``M(s)`` on [0, 1], hence the bound,
    so the minimum over allocations is also below it.

    Args:
        groups: the token groups of the attack.
        d: the edit budget, ``>= 0``.
        log_eps: ``log(1 - p_lower)`` rounded down (``p_lower < 1``).

    Returns:
        A float ``>= log L(d)`` (``0.0`` when nothing useful can be said).
    """
    s = _CHERNOFF_S
    best = 0.0
    for g in groups:
        e = d if g.cap is None else min(d, g.cap)
        if e == 0:
            continue
        lam = _log_mgf_edits(g, e, s)  # log M(s) of e positions, non-positive
        pos = s > 0.0
        tau = (lam[pos] - log_eps) / s[pos]  # one threshold per s > 0
        # log Q(A) <= (1 - s') tau + lam(s'), minimised over s' for each tau.
        cand = (1.0 - s)[None, :] * tau[:, None] + lam[None, :]
        val = float(np.min(cand))
        # Rounding of the sums: a relative 1e-9 plus an absolute 1e-9 is far above it.
        val += 1e-9 * (abs(val) + float(np.max(np.abs(lam))) + abs(log_eps)) + 1e-9
        best = min(best, val)
    return best

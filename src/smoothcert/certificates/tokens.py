"""Token-substitution certificates: discrete Neyman-Pearson bound for ``d`` edited tokens.

Noise (DESIGN.md, "Token substitution kernels"): at each eligible position,
independently, the ``uniform`` kernel keeps the token with probability ``1 - beta`` and
otherwise draws one of the ``V - 1`` *other* tokens of the alphabet uniformly; the
``mask`` kernel replaces the token by a mask id with probability ``beta``. The attacker
substitutes at most ``d`` eligible tokens (substitutions only: no insertions or
deletions), writing tokens of the same alphabet (``attacker="alphabet"``) or any
vocabulary id (``attacker="any"``: the uniform kernel then keeps an out-of-alphabet token
w.p. ``1 - beta`` and otherwise draws one of the ``V`` alphabet tokens; see
:func:`token_lower_bound`).

If the smoothed model outputs the certified outcome with probability at least
``p_lower`` at the clean input, then at any input with ``d`` substituted tokens it does
so with probability at least ``L(d) = token_lower_bound(p_lower, d=d, ...)``: the
Neyman-Pearson worst case (Lee et al. 2019, arXiv 1906.04948, Theorem 1 style; restated
as the discrete case ``r = 0`` of the hybrid certificate of arXiv 2605.12876). The
likelihood ratio adversarial/clean takes the values ``rho^k``, ``rho = a / (1 - beta)``,
``a = beta / (V - 1)``, ``k = #(z = u) - #(z = u')`` in ``[-d, d]``; the worst case fills
clean mass ``p_lower`` with the smallest ratios first, the boundary level fractionally,
and returns the adversarial mass of that set. Every computation is in log space (``d``
in the thousands, ``V`` up to ``10^6`` and more).

The prediction is certified against ``d`` edits when ``L(d) >= tau`` (``tau = 1/2`` for a
majority vote; a safety filter that flags when ``P(unsafe) >= tau`` uses its own
``tau``).

Example:
    >>> round(float(token_lower_bound(0.9, d=1, beta=0.3, vocab_size=5)), 6)
    0.275
    >>> round(float(token_lower_bound(0.9, d=2, beta=0.3, kernel="mask")), 6)
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from smoothcert._validation import (
    check_choice,
    check_int,
    check_open_unit,
    check_probability_array,
)
from smoothcert.certificates._levels import (
    ATTACKERS,
    AttackLevels,
    FloatArray,
    Group,
    attack_levels,
    count_allocations,
    discrete_lower,
    log_bound_upper,
    one_minus_down,
    outside_dominates,
)
from smoothcert.errors import InvalidParameterError

Kernel = Literal["uniform", "mask"]
KERNELS: tuple[str, ...] = ("uniform", "mask")
Attacker = Literal["alphabet", "any"]
"""Threat: ``"alphabet"`` (the attacker writes alphabet tokens only) or ``"any"`` (any
vocabulary id; the uniform kernel keeps an out-of-alphabet token w.p. ``1 - beta``, else
draws one of the ``V`` alphabet tokens uniformly)."""
MAX_ALLOCATIONS = 100_000
# Budget of max_certifiable_tokens over several fields (sum of AttackLevels.work over the
# scanned d; about a second or two of CPU).
MAX_SCAN_WORK = 40_000_000
# Bounds provably below this are returned as exactly 0 without computing the levels
# (see negligible_entries); far below any decision threshold tau in use.
NEGLIGIBLE = 1e-300


@dataclass(frozen=True)
class TokenField:
    """One field of a heterogeneous input (a text field, a table column, ...).

    Each field has its own token kernel. Fields are noised independently, and the
    attacker spends a total budget of ``d`` substitutions across fields however it
    likes; certificates take the worst case over every allocation.

    Attributes:
        beta: substitution (``uniform``) or masking (``mask``) probability, in (0, 1).
        vocab_size: alphabet size ``V >= 2`` of the field (``uniform`` only; ignored and
            may be omitted for ``mask``).
        kernel: ``"uniform"`` or ``"mask"``.
        positions: number of eligible positions in the field, i.e. the most edits the
            attacker can place in it (``None``: unbounded). Also expresses a per-field
            edit budget.

    Example:
        >>> TokenField(0.2, 30522, positions=16)
        TokenField(beta=0.2, vocab_size=30522, kernel='uniform', positions=16)
    """

    beta: float
    vocab_size: int | None = None
    kernel: Kernel = "uniform"
    positions: int | None = None

    def __post_init__(self) -> None:
        check_open_unit(self.beta, name="beta")
        check_choice(self.kernel, name="kernel", choices=KERNELS)
        if self.kernel == "uniform" or self.vocab_size is not None:
            check_int(self.vocab_size, name="vocab_size", minimum=2)
        if self.positions is not None:
            check_int(self.positions, name="positions", minimum=1)


def resolve_groups(
    *,
    beta: Any,
    vocab_size: Any,
    kernel: Any,
    fields: Sequence[TokenField] | None,
    attacker: Any = "alphabet",
    clean_outside: Any = 0,
) -> list[Group]:
    """Validate the kernel and threat arguments and merge identical fields into groups."""
    attacker = check_choice(attacker, name="attacker", choices=ATTACKERS)
    clean_outside = check_int(clean_outside, name="clean_outside", minimum=0)
    if clean_outside and attacker != "any":
        raise InvalidParameterError(
            f"clean_outside = {clean_outside} is invalid with attacker = {attacker!r}; valid: "
            "0 (the alphabet certificate needs every clean eligible token in the alphabet), "
            "or attacker='any'"
        )
    groups = _resolve_kernels(beta=beta, vocab_size=vocab_size, kernel=kernel, fields=fields)
    if attacker == "alphabet":
        return groups
    if clean_outside and (fields is not None or groups[0].kernel != "uniform"):
        raise InvalidParameterError(
            f"clean_outside = {clean_outside} is invalid here; valid: 0 with fields= or the "
            "mask kernel (clean out-of-alphabet tokens are certified for one uniform "
            "alphabet only)"
        )
    out = [
        Group(g.kernel, g.beta, g.vocab_size, g.cap, "any", clean_outside)
        if g.kernel == "uniform"
        else g
        for g in groups
    ]
    for g in out:
        if g.kernel == "uniform" and not outside_dominates(g.beta, g.vocab_size):
            if len(out) > 1 or clean_outside:
                where = "with fields" if len(out) > 1 else "with clean_outside > 0"
                raise InvalidParameterError(
                    f"beta = {g.beta!r} with vocab_size = {g.vocab_size} and "
                    f"attacker='any' is invalid {where}; valid range: beta <= V / (V + 1) "
                    f"= {g.vocab_size / (g.vocab_size + 1):.6g} "
                    "there (above it the worst mix of alphabet and out-of-alphabet writes is "
                    "computed for one alphabet with every clean token inside it only)"
                )
    return out


def _resolve_kernels(
    *,
    beta: Any,
    vocab_size: Any,
    kernel: Any,
    fields: Sequence[TokenField] | None,
) -> list[Group]:
    """Validate the kernel arguments and merge identical fields into groups."""
    if fields is None:
        kernel = check_choice(kernel, name="kernel", choices=KERNELS)
        if beta is None:
            raise InvalidParameterError(
                "beta = None is invalid; valid range: 0 < beta < 1 (or pass fields=...)"
            )
        beta = check_open_unit(beta, name="beta")
        if kernel == "uniform" or vocab_size is not None:
            vocab_size = check_int(vocab_size, name="vocab_size", minimum=2)
        return [Group(kernel, beta, vocab_size if kernel == "uniform" else 0, None)]
    if beta is not None or vocab_size is not None:
        raise InvalidParameterError(
            f"beta = {beta!r}, vocab_size = {vocab_size!r} together with fields is invalid; "
            "valid range: give either beta/vocab_size/kernel or fields=[TokenField, ...]"
        )
    if kernel != "uniform":
        raise InvalidParameterError(
            f"kernel = {kernel!r} together with fields is invalid; valid range: set the "
            "kernel of each TokenField instead (leave kernel at its default)"
        )
    fields = list(fields)
    if not fields or not all(isinstance(f, TokenField) for f in fields):
        raise InvalidParameterError(
            f"fields = {fields!r} is invalid; valid range: a non-empty sequence of TokenField"
        )
    merged: dict[tuple[str, float, int], int | None] = {}
    for f in fields:
        key = (f.kernel, float(f.beta), int(f.vocab_size or 0) if f.kernel == "uniform" else 0)
        if key in merged:
            prev = merged[key]
            merged[key] = None if prev is None or f.positions is None else prev + f.positions
        else:
            merged[key] = f.positions
    return [Group(k, b, v, cap) for (k, b, v), cap in merged.items()]


def check_allocations(groups: Sequence[Group], d: int) -> None:
    """Refuse budgets whose number of worst-case allocations is impractically large."""
    if len(groups) <= 1:
        return
    caps = [d if g.cap is None else min(d, g.cap) for g in groups]
    n = count_allocations(caps, min(d, sum(caps)))
    if n > MAX_ALLOCATIONS:
        raise InvalidParameterError(
            f"d = {d} over {len(groups)} distinct fields gives {n} allocations of edits to "
            f"fields; valid range: at most {MAX_ALLOCATIONS} (lower d or set positions)"
        )


def negligible_entries(groups: Sequence[Group], d: int, p: FloatArray) -> NDArray[np.bool_]:
    """Entries of ``p`` (flat) whose bound ``L(d)`` is provably at most :data:`NEGLIGIBLE`.

    The level recursion costs ``O(d^2)`` (minutes at ``d = 10^5``); for large ``d`` the
    bound is astronomically small and returning exactly 0 for it is conservative (0 is
    below the true ``L(d)``) and changes no decision at any ``tau >= 1e-300``. The test is
    the Chernoff bound :func:`~smoothcert.certificates._levels.log_bound_upper` at the
    largest ``p_lower < 1`` of the array (``L`` is non-decreasing in ``p_lower``), with
    ``1 - p_lower`` rounded down. Entries with ``p_lower = 1`` are never marked.
    """
    out = np.zeros(p.shape, dtype=bool)
    below = p < 1.0
    if d == 0 or not np.any(below):
        return out
    eps = float(one_minus_down(np.array([np.max(p[below])]))[0])
    if eps > 0.0 and log_bound_upper(groups, d, math.log(eps)) <= math.log(NEGLIGIBLE):
        out[below] = True
    return out


def as_output(arr: NDArray[Any]) -> Any:
    """Scalar for 0-d arrays, the array otherwise."""
    return arr[()] if arr.ndim == 0 else arr


def token_lower_bound(
    p_lower: Any,
    *,
    d: int,
    beta: float | None = None,
    vocab_size: int | None = None,
    kernel: Kernel = "uniform",
    fields: Sequence[TokenField] | None = None,
    attacker: Attacker = "alphabet",
    clean_outside: int = 0,
) -> Any:
    """Worst-case probability of the certified outcome after ``d`` substituted tokens.

    Discrete Neyman-Pearson bound with fractional fill (Lee et al. 2019, arXiv
    1906.04948; the ``r = 0`` case of the hybrid certificate of arXiv 2605.12876): sort
    the likelihood-ratio levels ``rho^k`` by increasing ratio, fill clean mass
    ``p_lower``, the boundary level fractionally, and return the adversarial mass
    ``L(d) = sum_{filled} q_k``. It is a valid lower bound for any (even deterministic)
    base model, and tight over randomised ones.

    With ``fields``, ``d`` is the total budget spread over the fields and the result
    is the minimum over every allocation of ``min(d, capacity)`` edits to fields (the
    bound is monotone in each field's count, so spending less is never worse for the
    defender). The levels of a multi-field attack multiply across fields.

    With ``attacker="any"`` the attacker may write any vocabulary id, and the kernel
    treats an out-of-alphabet token by keeping it w.p. ``1 - beta``, else drawing one of
    the ``V`` alphabet tokens uniformly (so a noisy out-of-alphabet token has clean
    probability 0: a ratio-infinity atom, never in the worst-case set). The bound is the
    minimum over every mix of alphabet and out-of-alphabet writes: for
    ``beta <= V / (V + 1)`` the all-out-of-alphabet attack is proven worst
    (:func:`~smoothcert.certificates._levels.any_levels`); above it every split is
    evaluated. ``clean_outside`` clean eligible tokens outside the alphabet are attacked
    first (each at worst the mask experiment with the same ``beta``). The mask kernel
    gives the same bound for both attackers (writing any other token, even the mask id,
    is a garbling of the mask experiment).

    Numerics: log-space masses; the fill uses clean target ``p_lower * (1 - s)`` and
    shrinks the result by ``1 - s`` with ``s ~ 1e-12 * (number of levels)``, so
    rounding can only lower it. Levels whose clean and adversarial masses are both below
    ``1e-80`` are merged into the ratio-0/ratio-infinity atoms (also only lowers it).
    Where a Chernoff bound proves ``L(d) <= 1e-300`` (:func:`negligible_entries`) the
    result is exactly 0 and the levels are not computed: the recursion costs
    ``O(d^2)``, so ``d = 10^5`` returns at once instead of running for an hour.
    ``p_lower = 1`` and kernels with ratio exactly 1 (``uniform`` with
    ``beta = (V - 1) / V``, e.g. ``V = 2``, ``beta = 1/2``) never take that shortcut.

    Args:
        p_lower: lower confidence bound on the probability of the certified outcome
            at the clean input, scalar or array in [0, 1].
        d: number of substituted tokens, ``>= 0`` (the bound is non-increasing in
            ``d``, so it also covers every smaller number).
        beta: kernel parameter, in (0, 1): substitution probability (``uniform``) or
            masking probability (``mask``).
        vocab_size: alphabet size ``V >= 2`` (``uniform``; optional for ``mask``).
        kernel: ``"uniform"`` or ``"mask"``.
        fields: heterogeneous alternative to ``beta``/``vocab_size``/``kernel``: a
            sequence of :class:`TokenField`.
        attacker: ``"alphabet"`` (writes alphabet tokens only) or ``"any"`` (any id).
        clean_outside: number of eligible positions whose CLEAN token lies outside the
            alphabet, ``>= 0`` (``attacker="any"``, one uniform alphabet,
            ``beta <= V / (V + 1)`` only).

    Returns:
        ``L(d)`` in [0, 1], a float64 scalar or an array shaped like ``p_lower``.
        ``p_lower = 1`` gives the adversarial mass of the clean support (1 for
        ``uniform`` with ``attacker="alphabet"``, ``beta^d`` for ``mask`` and for
        ``uniform`` with ``attacker="any"``).

    Raises:
        InvalidParameterError: ``p_lower`` outside [0, 1] or NaN, ``d < 0``, ``beta``
            outside (0, 1), ``vocab_size < 2``, unknown ``kernel`` or ``attacker``,
            ``fields`` combined with ``beta``/``vocab_size``, ``clean_outside > 0`` with
            ``attacker="alphabet"``, fields or ``beta > V / (V + 1)``.

    Example:
        >>> token_lower_bound([0.5, 0.9, 0.99], d=2, beta=0.5, vocab_size=2).round(9).tolist()
        [0.5, 0.9, 0.99]
        >>> round(float(token_lower_bound(0.99, d=1, beta=0.2, kernel="mask")), 6)
        0.19
        >>> round(float(token_lower_bound(0.9, d=1, beta=0.3, vocab_size=5, attacker="any")), 6)
        0.22
    """
    p = check_probability_array(p_lower, name="p_lower")
    d = check_int(d, name="d", minimum=0)
    groups = resolve_groups(
        beta=beta,
        vocab_size=vocab_size,
        kernel=kernel,
        fields=fields,
        attacker=attacker,
        clean_outside=clean_outside,
    )
    check_allocations(groups, d)
    flat = p.reshape(-1)
    out = np.ones(flat.shape[0])
    # Provably negligible entries (large d): exactly 0, without the O(d^2) levels.
    rest = ~negligible_entries(groups, d, flat)
    out[~rest] = 0.0
    if np.any(rest):
        sub = out[rest]
        for _, lev in attack_levels(groups, d):
            sub = np.minimum(sub, discrete_lower(lev, flat[rest])[0])
        out[rest] = sub
    return as_output(out.reshape(p.shape))


def _scan_max_tokens(
    p: FloatArray, tau: float, groups: Sequence[Group], d_limit: int
) -> NDArray[np.int64]:
    out = np.zeros(p.shape[0], dtype=np.int64)
    source = AttackLevels(groups)
    capacity = source.capacity
    active = np.arange(p.shape[0])
    if all(g.kernel == "uniform" and g.attacker == "alphabet" for g in groups):
        # p_lower = 1, uniform kernels, alphabet attacker: L(d) = 1 (the clean support
        # is every sequence) >= tau at every d; no need to scan d_limit levels (O(d_limit^2)).
        sure = p[active] >= 1.0
        out[active[sure]] = d_limit
        active = active[~sure]
    spent = 0
    for d in range(d_limit + 1):
        if active.shape[0] == 0:
            break
        if capacity is not None and d > capacity:
            # Every budget beyond the total number of positions is the same attack.
            out[active] = d_limit
            break
        if len(groups) > 1:
            # Also bounds the number of allocations (far below MAX_ALLOCATIONS).
            spent += source.work(d, MAX_SCAN_WORK - spent)
            if spent > MAX_SCAN_WORK:
                unbounded = sum(g.cap is None for g in groups)
                raise InvalidParameterError(
                    f"d_limit = {d_limit} is too large for {len(groups)} distinct fields "
                    f"({unbounded} without positions): a p_lower is still certified at "
                    f"d = {d - 1}, and going on costs more than {MAX_SCAN_WORK:.0e} level "
                    f"evaluations; valid range: d_limit <= {d - 1} here (a result equal to "
                    "d_limit means at least d_limit), or set positions on every field"
                )
        lower = np.ones(active.shape[0])
        for _, lev in source.at(d):
            lower = np.minimum(lower, discrete_lower(lev, p[active])[0])
        ok = lower >= tau
        active = active[ok]
        out[active] = d
    return out


def max_certifiable_tokens(
    p_lower: Any,
    *,
    beta: float | None = None,
    vocab_size: int | None = None,
    tau: float = 0.5,
    kernel: Kernel = "uniform",
    fields: Sequence[TokenField] | None = None,
    d_limit: int = 10_000,
    attacker: Attacker = "alphabet",
    clean_outside: int = 0,
) -> Any:
    """Largest number of substituted tokens certified at ``p_lower``.

    Returns the largest ``d`` with ``token_lower_bound(p_lower, d=d, ...) >= tau``,
    computed with the same bound. For the mask kernel this is the closed form
    ``p_lower >= 1 - beta^d + tau``, i.e. ``d = floor(log(1 - p_lower + tau) /
    log(beta))``. The hybrid certificate ``r(d)`` is 0 beyond this ``d``, whatever the
    image radius.

    Uniform against mask at the same ``beta``: with ``rho = beta / ((V - 1)(1 - beta))
    <= 2``, i.e. ``beta <= 2 (V - 1) / (2V - 1)``, the uniform kernel never certifies
    fewer tokens (its noisy token can be simulated from the masked one, so its
    experiment is less informative), and it can certify many more (``V = 2``,
    ``beta = 0.05``, ``p_lower = 0.9``, ``tau = 1e-6``: 6 against 0). For large ``V``
    the two agree until ``1 - p_lower`` drops below the clean mass of ``{k < 0}``
    (about ``d a beta^(d - 1)``, ``a = beta / (V - 1)``). Above ``rho = 2`` the mask
    kernel can certify far more (``V = 2``, ``beta = 0.9``, ``tau = 1e-6``,
    ``p_lower = 0.99``: 12 against 43).

    Cost: one bound per ``d`` up to the answer. With several distinct fields each ``d``
    costs a bound per allocation of the edits to fields, which grows fast when fields
    have no ``positions``; the scan refuses to go on past a fixed budget (about a
    second or two of CPU) instead of running for minutes. With every field bounded,
    budgets beyond the total number of positions are not scanned (they are the same
    attack).

    Use it before spending compute: the best outcome of ``n`` samples at level
    ``alpha`` is ``p_lower = alpha^(1/n)`` (see
    :func:`max_certifiable_tokens_for_samples`).

    Args:
        p_lower: lower confidence bound(s) in [0, 1].
        beta: kernel parameter in (0, 1).
        vocab_size: alphabet size ``V >= 2`` (``uniform``).
        tau: decision threshold in (0, 1) (1/2 for a majority vote).
        kernel: ``"uniform"`` or ``"mask"``.
        fields: heterogeneous fields instead of ``beta``/``vocab_size``/``kernel``.
        d_limit: search limit, ``>= 0``; a result equal to ``d_limit`` means "at least
            ``d_limit``" (``p_lower = 1`` certifies every ``d`` for ``uniform`` with
            ``attacker="alphabet"``).
        attacker: ``"alphabet"`` or ``"any"`` (see :func:`token_lower_bound`).
        clean_outside: clean eligible tokens outside the alphabet (see
            :func:`token_lower_bound`).

    Returns:
        int64 scalar or array. 0 also when nothing is certified (``p_lower < tau``):
        check ``p_lower >= tau`` to tell the two apart.

    Raises:
        InvalidParameterError: on parameters outside the ranges above, or when, with
            several distinct fields, some ``p_lower`` is still certified at a ``d`` whose
            allocations exceed the cost budget (the message gives the largest
            ``d_limit`` that fits; or set ``positions`` on the fields).

    Example:
        >>> int(max_certifiable_tokens(0.999, beta=0.9, tau=0.5, kernel="mask"))
        6
        >>> max_certifiable_tokens([0.9, 0.999], beta=0.5, vocab_size=50).tolist()
        [0, 2]
    """
    p = check_probability_array(p_lower, name="p_lower")
    tau = check_open_unit(tau, name="tau")
    d_limit = check_int(d_limit, name="d_limit", minimum=0)
    groups = resolve_groups(
        beta=beta,
        vocab_size=vocab_size,
        kernel=kernel,
        fields=fields,
        attacker=attacker,
        clean_outside=clean_outside,
    )
    flat = p.reshape(-1)
    if len(groups) == 1 and groups[0].kernel == "mask":
        out = _mask_max_tokens(flat, tau, groups[0].beta, d_limit)
    else:
        out = _scan_max_tokens(flat, tau, groups, d_limit)
    return as_output(out.reshape(p.shape))


def _mask_max_tokens(p: FloatArray, tau: float, beta: float, d_limit: int) -> NDArray[np.int64]:
    """Closed form for one mask alphabet, then checked and corrected with the bound."""
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.floor(np.log(np.maximum(1.0 - p + tau, 1e-300)) / math.log(beta))
    guess: NDArray[np.int64] = np.clip(np.nan_to_num(raw, nan=0.0), 0, d_limit).astype(np.int64)
    group = [Group("mask", beta, 0, None)]

    def certified(dd: NDArray[np.int64], idx: NDArray[np.intp]) -> NDArray[np.bool_]:
        ok = np.zeros(idx.shape[0], dtype=bool)
        for val in np.unique(dd):
            sel = dd == val
            lev = attack_levels(group, int(val))[0][1]
            ok[sel] = discrete_lower(lev, p[idx[sel]])[0] >= tau
        return ok

    idx = np.arange(p.shape[0])
    for _ in range(64):  # step down while not certified
        bad = ~certified(guess, idx) & (guess > 0)
        if not np.any(bad):
            break
        guess[bad] -= 1
    for _ in range(64):  # step up while the next one is certified
        can = guess < d_limit
        nxt = np.zeros(p.shape[0], dtype=bool)
        if np.any(can):
            nxt[can] = certified(guess[can] + 1, idx[can])
        if not np.any(nxt):
            break
        guess[nxt] += 1
    return guess


def max_certifiable_tokens_for_samples(
    n: int,
    *,
    alpha: float,
    beta: float | None = None,
    vocab_size: int | None = None,
    tau: float = 0.5,
    kernel: Kernel = "uniform",
    fields: Sequence[TokenField] | None = None,
    d_limit: int = 10_000,
    attacker: Attacker = "alphabet",
) -> int:
    """Largest ``d`` that ANY outcome of ``n`` samples can certify at level ``alpha``.

    The best outcome (all ``n`` samples give the certified outcome) has the
    Clopper-Pearson lower bound ``alpha^(1/n)``; this returns
    :func:`max_certifiable_tokens` at that ``p_lower``. For the mask kernel, ``d`` is
    certifiable exactly when ``1 - alpha^(1/n) <= beta^d - tau`` (up to the rounding
    margin). The uniform kernel has no such closed form and can certify more or fewer
    tokens than the mask kernel with the same ``beta`` (see
    :func:`max_certifiable_tokens`).

    Args:
        n: number of estimation samples, ``>= 1``.
        alpha: one-sided failure probability, in (0, 1).
        beta: kernel parameter in (0, 1).
        vocab_size: alphabet size ``V >= 2`` (``uniform``).
        tau: decision threshold in (0, 1).
        kernel: ``"uniform"`` or ``"mask"``.
        fields: heterogeneous fields instead of ``beta``/``vocab_size``/``kernel``.
        d_limit: search limit (see :func:`max_certifiable_tokens`).
        attacker: ``"alphabet"`` or ``"any"`` (see :func:`token_lower_bound`).

    Returns:
        The largest certifiable number of substituted tokens (0 if none).

    Raises:
        InvalidParameterError: on parameters outside the ranges above.

    Example:
        >>> max_certifiable_tokens_for_samples(1000, alpha=0.001, beta=0.9, kernel="mask")
        6
    """
    n = check_int(n, name="n", minimum=1)
    alpha = check_open_unit(alpha, name="alpha")
    best = math.exp(math.log(alpha) / n)
    return int(
        max_certifiable_tokens(
            best,
            beta=beta,
            vocab_size=vocab_size,
            tau=tau,
            kernel=kernel,
            fields=fields,
            d_limit=d_limit,
            attacker=attacker,
        )
    )

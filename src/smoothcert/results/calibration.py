r"""Choose a safety filter's threshold tau on benign calibration pairs (pure, no torch).

A safety filter (``tokens`` / ``hybrid`` with ``target``; Delattre et al. 2026,
arXiv 2605.12876, Sec. 3: "flag unsafe if P(unsafe) >= tau") saves, per pair, the count
of the flag class among ``n`` noisy samples. That evidence does not depend on tau, so tau
can be chosen after the run, here, and every certificate re-decided at it
(``smoothcert recertify --tau``).

**What "the smoothed filter flags" means.** The smoothed filter is the ideal one whose
detections the certificates are about: it flags ``x`` iff ``p(x) >= tau``, with ``p(x)``
the probability that the model outputs the flag class under the smoothing noise (the
sampled token kernel; its total-variation distance ``tv`` to the ideal kernel is added
to every upper bound). Certification at ``(d, r) = (0, 0)`` says "flagged" iff
``p_lower(x) >= tau``, and ``p_lower <= p`` except with probability alpha, so a deployed
filter that flags on its lower bound (as certification does) flags a subset of what the
ideal filter flags, up to alpha per input. A filter that flags on the point estimate
``k / n >= tau`` is not covered exactly (it can flag pairs with ``p`` slightly below tau).

**The rule.** Over the ``m`` benign (label != target) calibration pairs, take the
one-sided Clopper-Pearson upper bounds ``u_i = CP_upper(k_i, n; alpha) + tv`` of their
``p``. ``tau`` is the smallest 3-significant-digit number (more digits only when needed
to stay below 1) strictly above ``u_(k)``, the ``k``-th largest ``u``, for the largest
``k >= 1`` with ``g(k) = E[min(1, (k + B) / (m + 1))] <= fp_rate``, ``B ~ Binomial(m,
alpha)``.

**The guarantee (marginal, split conformal).** If the calibration pairs and a new benign
pair are exchangeable (drawn from the same distribution), then, over the draw of the
calibration pairs, their Monte Carlo noise and the new pair,
``P(p(x_new) >= tau) <= g(k) <= fp_rate``. Proof: ``B`` dominates the number ``V`` of
calibration pairs whose bound fails (``u_i < p_i``; each has probability at most alpha,
independently given the pairs). If ``p_0 = p(x_new) >= tau > u_(k)``, every calibration
pair with ``p_i >= p_0`` either violates its bound or has ``u_i >= p_i > u_(k)``; at most
``k - 1`` do the latter, so ``R = #{i : p_i >= p_0} <= k - 1 + V``. By exchangeability
``P(R <= j) <= (j + 1) / (m + 1)`` (ties only help), and conditioning on the pairs gives
``P(R <= k - 1 + V) <= E[min(1, (k + B) / (m + 1))]``. This is the usual split-conformal
statement (Vovk et al. 2005; Angelopoulos & Bates 2021, arXiv 2107.07511, Sec. 1 and
Appendix D) with the Monte Carlo error of each score added. It is an average over
calibration sets, NOT a promise for this particular calibration set (that would need the
larger, training-conditional "PAC" correction), and it says nothing under a shift of the
benign distribution between calibration and deployment. The calibration and test splits
of a bundled dataset are disjoint by their stable indices.

Example:
    >>> import numpy as np
    >>> upper = np.linspace(0.01, 0.5, 99)  # 99 benign calibration pairs' upper bounds
    >>> choice = tau_from_upper_bounds(upper, fp_rate=0.05, alpha=0.001)
    >>> choice.rank, choice.tau, round(choice.guarantee, 4)
    (4, 0.486, 0.041)
    >>> int((upper >= choice.tau).sum())  # calibration pairs the filter may flag: k - 1
    3
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import binom

from smoothcert._validation import check_open_unit, check_probability_level
from smoothcert.errors import InvalidParameterError

__all__ = [
    "CALIBRATION_SPLIT",
    "FILTER_METHODS",
    "TauCalibration",
    "TauChoice",
    "benign_bounds",
    "calibrate_file",
    "calibrate_tau",
    "fp_guarantee",
    "tau_from_upper_bounds",
]

CALIBRATION_SPLIT = "calibration"
"""The only split tau may be fitted on."""

FILTER_METHODS = ("tokens", "hybrid")
"""Methods whose safety-filter files (``target`` given) calibrate: one fixed-n estimation
stage per pair, so the evidence does not depend on tau."""


def fp_guarantee(rank: int, *, num_benign: int, alpha: float) -> float:
    """``E[min(1, (rank + B) / (m + 1))]``, ``B ~ Binomial(m, alpha)``: the FP-rate bound.

    The marginal false-positive rate of tau just above the ``rank``-th largest of ``m``
    upper bounds at level alpha (module docstring). Exact (a finite sum).

    Args:
        rank: ``k >= 0``.
        num_benign: ``m >= 1`` benign calibration pairs.
        alpha: each upper bound's failure probability, in (0, 1).

    Returns:
        The bound, in [0, 1].

    Example:
        >>> round(fp_guarantee(5, num_benign=99, alpha=0.0001), 4)
        0.0501
    """
    m = int(num_benign)
    b = np.arange(m + 1)
    terms = np.minimum(1.0, (rank + b) / (m + 1))
    return float(min(1.0, np.sum(binom.pmf(b, m, alpha) * terms)))


def _round_up(u: float) -> float:
    """The shortest decimal (3 significant digits or more) strictly above ``u``, below 1."""
    exact = Decimal(u)
    for digits in range(3, 16):
        step = Decimal(1).scaleb(exact.adjusted() - digits + 1)
        tau = float(((exact / step).to_integral_value(rounding=ROUND_FLOOR) + 1) * step)
        if u < tau < 1.0:
            return tau
    tau = float(np.nextafter(u, 1.0))
    if not u < tau < 1.0:  # pragma: no cover - u is below 1 (checked by the caller)
        raise InvalidParameterError(f"no tau in (0, 1) lies above {u!r}")
    return tau


@dataclass(frozen=True)
class TauChoice:
    """Tau from upper bounds (:func:`tau_from_upper_bounds`).

    Attributes:
        tau: the threshold, strictly above ``threshold_upper``.
        rank: ``k``, the rank (1 = largest) of the upper bound tau is placed above.
        threshold_upper: ``u_(k)``.
        guarantee: :func:`fp_guarantee` at ``k``, at most the target rate.
    """

    tau: float
    rank: int
    threshold_upper: float
    guarantee: float


def tau_from_upper_bounds(upper: Any, *, fp_rate: float, alpha: float) -> TauChoice:
    """Tau for a target false-positive rate from benign pairs' upper bounds on ``P(flag)``.

    The rule and its guarantee are in the module docstring.

    Args:
        upper: ``(m,)`` upper confidence bounds ``u_i`` in [0, 1], each failing
            (``u_i < p_i``) with probability at most alpha.
        fp_rate: target false-positive rate, in (0, 1).
        alpha: the bounds' failure probability, in (0, 1) (the largest, if they differ).

    Returns:
        A :class:`TauChoice`.

    Raises:
        InvalidParameterError: on an empty or invalid ``upper``, ``fp_rate`` or alpha
            outside (0, 1), a target out of reach with ``m`` pairs (the message gives the
            smallest reachable rate), or ``u_(k)`` so close to 1 that no tau below 1 is
            above it.
    """
    fp_rate = check_open_unit(fp_rate, name="fp_rate")
    alpha = check_probability_level(alpha)
    u = np.asarray(upper, dtype=np.float64).reshape(-1)
    if u.size == 0 or not np.all(np.isfinite(u)) or u.min() < 0 or u.max() > 1:
        raise InvalidParameterError(
            f"upper bounds ({u.size} values) are invalid; valid: at least one benign pair, "
            "every bound finite in [0, 1]"
        )
    m = int(u.size)
    rank = 0
    guarantee = 0.0
    for k in range(1, m + 1):
        g = fp_guarantee(k, num_benign=m, alpha=alpha)
        if g > fp_rate:
            break
        rank, guarantee = k, g
    if rank == 0:
        best = fp_guarantee(1, num_benign=m, alpha=alpha)
        raise InvalidParameterError(
            f"fp_rate = {fp_rate!r} is out of reach with {m} benign calibration pairs (the "
            f"smallest guaranteed rate is {best:.4g}); valid: fp_rate >= {best:.4g}, or about "
            f"{math.ceil(1 / fp_rate)} or more benign calibration pairs"
        )
    threshold = float(np.sort(u)[::-1][rank - 1])
    if threshold >= 1.0 - 1e-15:
        raise InvalidParameterError(
            f"fp_rate = {fp_rate!r} cannot be met: the {rank}-th largest upper bound is "
            f"{threshold!r}, so no tau in (0, 1) lies above it; valid: a larger fp_rate or "
            "a filter that flags fewer benign pairs"
        )
    return TauChoice(
        tau=_round_up(max(threshold, 1e-300)),
        rank=rank,
        threshold_upper=threshold,
        guarantee=guarantee,
    )


@dataclass(frozen=True)
class TauCalibration:
    """A calibrated tau and what it was fitted on (:func:`calibrate_tau`).

    Attributes:
        tau: the threshold to certify and deploy with.
        fp_rate: the target false-positive rate.
        guarantee: the marginal FP-rate bound actually met (<= ``fp_rate``).
        rank: ``k`` (module docstring).
        threshold_upper: ``u_(k)``, the upper bound tau lies above.
        num_benign: ``m``, the benign calibration pairs used.
        alpha: the level of their upper bounds.
        target: the flag class.
        calibration_fp_upper: share of the calibration pairs with ``u_i >= tau``
            (``<= (k - 1) / m``).
        calibration_fp_point: share with ``k_i / n >= tau``.
        method: the file's method.
        split: the split fitted on (always ``"calibration"``).
        indices: the stable dataset indices of the benign pairs used.
        source: the file's run configuration and hash (empty for bare records).
    """

    tau: float
    fp_rate: float
    guarantee: float
    rank: int
    threshold_upper: float
    num_benign: int
    alpha: float
    target: int
    calibration_fp_upper: float
    calibration_fp_point: float
    method: str
    split: str
    indices: tuple[int, ...]
    source: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``smoothcert calibrate --output``)."""
        out = asdict(self)
        out["indices"] = list(self.indices)
        return out


def benign_bounds(
    records: Sequence[Mapping[str, Any]],
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], float, int, str]:
    """Upper bounds and point estimates of ``P(flag)`` of a filter file's benign records.

    Each record is rebuilt and its bound recomputed from its evidence
    (:func:`smoothcert.decisions.tokens.bound_class`): ``u = CP_upper + tv``, capped at 1.

    Args:
        records: validated record dicts of one ``tokens`` or ``hybrid`` safety-filter run.

    Returns:
        ``(indices, upper, point, alpha, target, method)`` over the benign records
        (label != target).

    Raises:
        InvalidParameterError: on no records, a record of another method or of majority
            mode, or records with different targets.
    """
    from smoothcert.decisions.tokens import TokenParams, bound_class
    from smoothcert.results.records import result_of

    if not records:
        raise InvalidParameterError("records = [] is invalid; valid: a filter run's records")
    indices: list[int] = []
    upper: list[float] = []
    point: list[float] = []
    alphas: set[float] = set()
    targets: set[int] = set()
    methods: set[str] = set()
    for record in records:
        result = result_of(record, where=f"record {record.get('index')}")
        params = result.params
        if result.method not in FILTER_METHODS or not isinstance(params, TokenParams):
            raise InvalidParameterError(
                f"method = {result.method!r} is invalid for calibration; valid: "
                f"{', '.join(FILTER_METHODS)} safety-filter files (fixed n, --target)"
            )
        if params.target is None:
            raise InvalidParameterError(
                "target = None (majority mode) is invalid for calibration; valid: a "
                "safety-filter run (--target CLASS)"
            )
        targets.add(params.target)
        methods.add(result.method)
        if int(record["label"]) == params.target:
            continue
        _, _, facts, details = bound_class(result.evidence, params, result.method)
        assert details.target_p_upper is not None and details.flag_rate is not None
        indices.append(int(record["index"]))
        upper.append(min(1.0, details.target_p_upper + facts.sampling_tv_bound))
        point.append(details.flag_rate)
        alphas.add(params.alpha)
    if len(targets) > 1 or len(methods) > 1:
        raise InvalidParameterError(
            f"records of targets {sorted(targets)} and methods {sorted(methods)} are mixed; "
            "valid: the records of one run"
        )
    return (
        np.asarray(indices, dtype=np.int64),
        np.asarray(upper, dtype=np.float64),
        np.asarray(point, dtype=np.float64),
        max(alphas) if alphas else 0.5,
        targets.pop(),
        methods.pop(),
    )


def calibrate_tau(
    records: Sequence[Mapping[str, Any]],
    *,
    fp_rate: float,
    split: str,
    source: Mapping[str, Any] | None = None,
) -> TauCalibration:
    """Calibrate tau on the benign records of a safety-filter run on the calibration split.

    The rule, and the guarantee it gives, are in the module docstring.

    Args:
        records: the run's validated record dicts (all labels; the benign ones are used).
        fp_rate: target false-positive rate of the smoothed filter, in (0, 1).
        split: the split the records come from; must be ``"calibration"`` (tau fitted on
            the split it is evaluated on would make the reported rate optimistic).
        source: the run configuration to record with the result (optional).

    Returns:
        A :class:`TauCalibration`.

    Raises:
        InvalidParameterError: on another split, ``fp_rate`` outside (0, 1), records of
            another method or mode, no benign records, or a target out of reach.

    Example:
        >>> calibrate_tau([], fp_rate=0.05, split="test")
        Traceback (most recent call last):
        ...
        smoothcert.errors.InvalidParameterError: split = 'test' is invalid for calibration: ...
    """
    if split != CALIBRATION_SPLIT:
        raise InvalidParameterError(
            f"split = {split!r} is invalid for calibration: tau is never fitted on the split "
            f"it is evaluated on; valid: {CALIBRATION_SPLIT!r} (run certify with --split "
            f"{CALIBRATION_SPLIT})"
        )
    fp_rate = check_open_unit(fp_rate, name="fp_rate")
    indices, upper, point, alpha, target, method = benign_bounds(records)
    if upper.size == 0:
        raise InvalidParameterError(
            "benign records = 0 is invalid; valid: at least one calibration pair whose label "
            f"is not the target {target}"
        )
    choice = tau_from_upper_bounds(upper, fp_rate=fp_rate, alpha=alpha)
    return TauCalibration(
        tau=choice.tau,
        fp_rate=fp_rate,
        guarantee=choice.guarantee,
        rank=choice.rank,
        threshold_upper=choice.threshold_upper,
        num_benign=int(upper.size),
        alpha=alpha,
        target=target,
        calibration_fp_upper=float(np.mean(upper >= choice.tau)),
        calibration_fp_point=float(np.mean(point >= choice.tau)),
        method=method,
        split=split,
        indices=tuple(int(i) for i in indices),
        source=dict(source or {}),
    )


def calibrate_file(path: str | os.PathLike[str], *, fp_rate: float) -> TauCalibration:
    """:func:`calibrate_tau` on a result file (``smoothcert calibrate``).

    Args:
        path: a ``tokens`` or ``hybrid`` safety-filter result file of the calibration split.
        fp_rate: target false-positive rate, in (0, 1).

    Returns:
        A :class:`TauCalibration` whose ``source`` holds the file, its config and hash.

    Raises:
        InvalidParameterError: as :func:`calibrate_tau` (the split is the header's), or on
            a file of another method.
        ResultStoreError: on an unreadable file or an invalid record.
    """
    from smoothcert.results.recertify import load_records

    fp_rate = check_open_unit(fp_rate, name="fp_rate")
    header, records = load_records(path)
    config = dict(header.get("config") or {})
    method = config.get("method")
    if method not in FILTER_METHODS:
        raise InvalidParameterError(
            f"method = {method!r} ({path}) is invalid for calibration; valid: "
            f"{', '.join(FILTER_METHODS)} safety-filter files"
        )
    source = {
        "path": str(path),
        "config_hash": header.get("config_hash"),
        "config": config,
    }
    return calibrate_tau(records, fp_rate=fp_rate, split=str(config.get("split")), source=source)

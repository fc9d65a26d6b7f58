r"""Safety-filter reports: detection on unsafe pairs against false positives on benign ones.

For each result file of a ``tokens`` / ``hybrid`` safety-filter run (``--target``), one
setting (tau, beta, sigma, threat), the price of tau side by side (Delattre et al. 2026,
arXiv 2605.12876: certified detection of a filter that flags iff ``P(flag) >= tau``):

* **clean detection**: share of the unsafe pairs (label = target) whose Monte Carlo
  estimate of ``P(flag)`` is ``>= tau`` (what a filter flagging on the estimate does);
* **certified detection** at ``(d, r)``: share of the unsafe pairs certified to stay
  flagged against ``d`` edited tokens and an image move of L2 norm ``r`` (image units):
  ``p_lower >= tau`` and ``r(d) >= r``; at ``(0, 0)`` this is ``p_lower >= tau``;
* **false positives** on the benign pairs (label != target), for the smoothed filter
  that flags iff ``P(flag) >= tau`` (:mod:`smoothcert.results.calibration`): ``fp point``
  (estimate ``>= tau``), and the two one-sided bounds of the saved decisions: ``fp
  certified`` (``p_lower >= tau``: flagged for sure, each at level alpha) and ``fp
  upper`` (not ``certified_not_flagged``: ``p_upper + tv >= tau``, the pairs it may
  flag). Each pair's side holds with probability ``1 - alpha``; the shares are
  estimates over the file's benign pairs, not bounds on a population rate;
* **seconds per pair**: the mean of the records' ``seconds`` (sampling and decision).

Example:
    >>> from pathlib import Path
    >>> def rec(i, label, flagged, rate, upper):
    ...     return {"index": i, "label": label, "correct": flagged == (label == 1),
    ...             "prediction": 1 if flagged else None, "abstained": not flagged,
    ...             "radius": 0.2 if flagged else 0.0, "seconds": 0.5,
    ...             "radius_curve": [0.2, 0.1] if flagged else [0.0, 0.0],
    ...             "details": {"flag_rate": rate, "target_p_upper": upper,
    ...                         "certified_not_flagged": upper < 0.5}}
    >>> header = {"config": {"method": "hybrid", "params": {
    ...     "tau": 0.5, "target": 1, "sigma": 0.5, "beta": 0.7, "threat": "anywhere",
    ...     "n": 1000, "alpha": 0.001}}}
    >>> f = ResultFile(Path("toy.jsonl"), header, [rec(0, 1, True, 0.9, 0.95),
    ...     rec(1, 1, False, 0.55, 0.6), rec(2, 0, False, 0.1, 0.2), rec(3, 0, False, 0.45, 0.52)])
    >>> s = filter_summary(f, d_values=[0, 1], radii=[0.0, 0.15])
    >>> s.detection_point, s.grid.tolist(), s.fp_point, s.fp_upper
    (1.0, [[0.5, 0.5], [0.5, 0.0]], 0.0, 0.5)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert.errors import InvalidParameterError
from smoothcert.reports.results import ResultFile
from smoothcert.reports.tables import dr_grid

__all__ = [
    "FILTER_D_VALUES",
    "FILTER_RADII",
    "FilterSummary",
    "check_calibration",
    "filter_summary",
    "filter_tables",
    "is_filter",
    "plot_filter_heatmaps",
    "split_by_label",
]

FILTER_D_VALUES = (0, 1, 2, 4, 8)
"""Edited tokens d shown by default."""

FILTER_RADII = (0.0, 0.1, 0.25, 0.5)
"""Image radii (L2, image units) shown by default."""


def is_filter(result: ResultFile) -> bool:
    """True for a ``tokens`` / ``hybrid`` safety-filter file (claim ``flagged``)."""
    return result.method in ("tokens", "hybrid") and result.params.get("target") is not None


def _check_filter(result: ResultFile) -> int:
    if not is_filter(result):
        raise InvalidParameterError(
            f"{result.path} (method {result.method!r}, target "
            f"{result.params.get('target')!r}) is invalid for a filter report; valid: a "
            "tokens or hybrid safety-filter file (certify --target CLASS)"
        )
    return int(result.params["target"])


def split_by_label(result: ResultFile) -> tuple[ResultFile, ResultFile]:
    """``(unsafe, benign)``: the file's records with label = target, and the others.

    Raises:
        InvalidParameterError: if the file is not a safety-filter file.
    """
    target = _check_filter(result)
    parts = []
    for unsafe in (True, False):
        records = [r for r in result.records if (int(r["label"]) == target) == unsafe]
        parts.append(
            ResultFile(
                path=result.path,
                header=result.header,
                records=records,
                label=f"{result.label} ({'unsafe' if unsafe else 'benign'})",
            )
        )
    return parts[0], parts[1]


@dataclass(frozen=True)
class FilterSummary:
    """One setting's numbers (module docstring); shares are fractions in [0, 1].

    Attributes:
        label: the file's label.
        setting: ``{"tau", "beta", "sigma", "threat", "num_positions", "n", "alpha",
            "target", "method"}`` from the header.
        num_unsafe: unsafe pairs (label = target).
        num_benign: benign pairs.
        detection_point: unsafe pairs with estimate ``>= tau`` (NaN without unsafe pairs).
        d_values: the rows of ``grid``.
        radii: the columns of ``grid`` (L2, image units).
        grid: certified detection over the unsafe pairs at each ``(d, r)``.
        fp_point: benign pairs with estimate ``>= tau`` (NaN without benign pairs).
        fp_certified: benign pairs certified flagged (``p_lower >= tau``).
        fp_upper: benign pairs not certified unflagged (``p_upper + tv >= tau``).
        seconds_per_pair: mean seconds per record.
        fp_target: the target FP rate of the calibration tau came from
            (:func:`check_calibration`), or None.
    """

    label: str
    setting: dict[str, Any]
    num_unsafe: int
    num_benign: int
    detection_point: float
    d_values: tuple[int, ...]
    radii: tuple[float, ...]
    grid: NDArray[np.float64]
    fp_point: float
    fp_certified: float
    fp_upper: float
    seconds_per_pair: float
    fp_target: float | None = None


def _share(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if len(flags) else float("nan")


def _details(record: dict[str, Any]) -> dict[str, Any]:
    details = record.get("details")
    if not isinstance(details, dict) or details.get("flag_rate") is None:
        raise InvalidParameterError(
            f"record {record.get('index')} has no safety-filter details (flag_rate); valid: "
            "records of a safety-filter run"
        )
    return details


def filter_summary(
    result: ResultFile,
    *,
    d_values: Any = FILTER_D_VALUES,
    radii: Any = FILTER_RADII,
    calibration: Mapping[str, Any] | None = None,
) -> FilterSummary:
    """The filter numbers of one result file (module docstring).

    Args:
        result: a safety-filter file (records validated by
            :func:`~smoothcert.reports.load_results`).
        d_values: edited tokens d (ints >= 0; beyond a record's curve: not certified).
        radii: image radii r >= 0 (L2, image units).
        calibration: the dict ``smoothcert calibrate --output`` wrote, if tau came from
            it (checked with :func:`check_calibration`).

    Returns:
        A :class:`FilterSummary`.

    Raises:
        InvalidParameterError: on a file that is not a safety filter's, one without
            records, bad ``d_values`` / ``radii``, or a calibration that does not apply.
    """
    unsafe, benign = split_by_label(result)
    if calibration is not None:
        check_calibration(result, calibration)
    if len(result) == 0:
        raise InvalidParameterError(f"{result.path} has 0 records; valid: at least 1 record")
    params = result.params
    tau = float(params["tau"])
    ds = tuple(int(d) for d in np.asarray(d_values).reshape(-1))
    rs = tuple(float(r) for r in np.asarray(radii, dtype=np.float64).reshape(-1))
    if len(unsafe):
        grid = dr_grid(unsafe, ds, rs)
    else:
        dr_grid(result, ds, rs)  # validates d_values and radii
        grid = np.full((len(ds), len(rs)), np.nan)
    benign_details = [_details(r) for r in benign.records]
    seconds = [float(r.get("seconds") or 0.0) for r in result.records]
    return FilterSummary(
        label=result.label,
        setting={
            key: params.get(key)
            for key in ("tau", "beta", "sigma", "threat", "num_positions", "n", "alpha", "target")
        }
        | {"method": result.method},
        num_unsafe=len(unsafe),
        num_benign=len(benign),
        detection_point=_share([_details(r)["flag_rate"] >= tau for r in unsafe.records]),
        d_values=ds,
        radii=rs,
        grid=grid,
        fp_point=_share([d["flag_rate"] >= tau for d in benign_details]),
        fp_certified=_share([not r["abstained"] for r in benign.records]),
        fp_upper=_share([not d["certified_not_flagged"] for d in benign_details]),
        seconds_per_pair=float(np.mean(seconds)),
        fp_target=None if calibration is None else float(calibration["fp_rate"]),
    )


_NOT_NOISE = ("tau", "alpha", "n", "n0", "threat_d_max")
"""Method parameters that do not change the smoothed filter's ``P(flag)``."""


def check_calibration(result: ResultFile, calibration: Mapping[str, Any]) -> None:
    """Refuse a file that a tau calibration (``smoothcert calibrate --output``) does not fit.

    The file must be certified at the calibration's tau, of another split, with no
    dataset index in common with the calibration pairs, and of the same smoothed filter:
    same model, weights' sigma, dataset and method parameters, except those that do not
    change ``P(flag)`` (tau, alpha, n, n0, d_max).

    Raises:
        InvalidParameterError: naming the first mismatch.
    """
    source = calibration.get("source") or {}
    config = source.get("config") or {}
    where = f"{result.path} against calibration {source.get('path')!r}"
    if calibration.get("split") != "calibration" or config.get("split") != "calibration":
        raise InvalidParameterError(
            f"{where}: calibration split = {calibration.get('split')!r} is invalid; valid: "
            "'calibration'"
        )
    if result.config.get("split") == "calibration":
        raise InvalidParameterError(
            f"{where}: split = 'calibration' is invalid for the report; valid: another split"
        )
    if float(result.params.get("tau", float("nan"))) != float(calibration["tau"]):
        raise InvalidParameterError(
            f"{where}: tau = {result.params.get('tau')!r} is not the calibrated "
            f"{calibration['tau']!r}; valid: recertify --tau {calibration['tau']!r}"
        )
    common = set(calibration.get("indices", ())) & {int(i) for i in result.indices}
    if common:
        raise InvalidParameterError(
            f"{where}: {len(common)} pairs (e.g. index {min(common)}) were used to fit tau; "
            "valid: pairs disjoint from the calibration pairs"
        )
    for key in ("model", "model_sigma", "dataset", "method"):
        if result.config.get(key) != config.get(key):
            raise InvalidParameterError(
                f"{where}: {key} = {result.config.get(key)!r} differs from the calibration's "
                f"{config.get(key)!r}; valid: the same smoothed filter"
            )
    ours = {k: v for k, v in result.params.items() if k not in _NOT_NOISE}
    theirs = {k: v for k, v in (config.get("params") or {}).items() if k not in _NOT_NOISE}
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) != theirs.get(key):
            raise InvalidParameterError(
                f"{where}: {key} = {ours.get(key)!r} differs from the calibration's "
                f"{theirs.get(key)!r}; valid: the same smoothed filter"
            )


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.1f}%"


def _threat(setting: dict[str, Any]) -> str:
    threat = str(setting.get("threat"))
    if setting.get("num_positions") is not None:
        threat += f" D={setting['num_positions']}"
    return threat


def filter_tables(summaries: Sequence[FilterSummary]) -> str:
    """Markdown: one summary row per setting, then certified detection per (setting, d).

    Example:
        >>> s = FilterSummary("a", {"tau": 0.5, "beta": 0.7, "sigma": 0.25,
        ...     "threat": "anywhere"}, 2, 2, 1.0, (0,), (0.0,), np.array([[0.5]]),
        ...     0.0, 0.0, 0.5, 0.1)
        >>> print(filter_tables([s]).splitlines()[2])
        | a | anywhere | 0.25 | 0.7 | 0.5 | - | 2 / 2 | 100.0% | 0.0% | 0.0% | 50.0% | 0.100 |
        >>> print(filter_tables([s]).splitlines()[-1])
        | a | 0.5 | 0 | 50.0% |
    """
    head = (
        "| setting | threat | sigma | beta | tau | fp target | unsafe / benign | "
        "clean detection | fp point | fp certified | fp upper | s / pair |"
    )
    lines = [head, "|---|---|" + "---:|" * 10]
    for s in summaries:
        g = s.setting
        lines.append(
            f"| {s.label} | {_threat(g)} | {g.get('sigma', 'n/a')} | {g.get('beta')} | "
            f"{g.get('tau')} | {'-' if s.fp_target is None else _pct(s.fp_target)} | "
            f"{s.num_unsafe} / {s.num_benign} | {_pct(s.detection_point)} | "
            f"{_pct(s.fp_point)} | {_pct(s.fp_certified)} | {_pct(s.fp_upper)} | "
            f"{s.seconds_per_pair:.3f} |"
        )
    lines += [
        "",
        "certified detection (% of unsafe pairs) at (d edited tokens, L2 image radius r):",
    ]
    radii = summaries[0].radii if summaries else ()
    lines += [
        "",
        "| setting | tau | d | " + " | ".join(f"r={r:g}" for r in radii) + " |",
        "|---|---:|---:|" + "---:|" * len(radii),
    ]
    for s in summaries:
        for i, d in enumerate(s.d_values):
            cells = " | ".join(_pct(x) for x in s.grid[i])
            lines.append(f"| {s.label} | {s.setting.get('tau')} | {d} | {cells} |")
    return "\n".join(lines)


def plot_filter_heatmaps(
    files: Sequence[ResultFile], output_path: str | os.PathLike[str]
) -> list[Path]:
    """One certified-detection heatmap over (d, r) of the unsafe pairs per file.

    Written as ``<output stem>_<file label>_dr.png`` next to ``output_path``
    (:func:`~smoothcert.reports.plot.plot_dr_heatmap` on the unsafe records).

    Returns:
        The paths written (files without unsafe pairs are skipped).

    Raises:
        InvalidParameterError: on a file that is not a safety filter's.
    """
    from smoothcert.reports.plot import plot_dr_heatmap

    out = Path(output_path)
    paths = []
    for f in files:
        unsafe, _ = split_by_label(f)
        if not len(unsafe):
            continue
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in f.label)
        p = f.params
        bits = [f"{k}={p[k]:g}" for k in ("sigma", "beta", "tau", "n") if p.get(k) is not None]
        title = f"{', '.join(bits)}, {_threat(p)}; {len(unsafe)} unsafe pairs"
        paths.append(
            plot_dr_heatmap(unsafe, out.with_name(f"{out.stem}_{name}_dr.png"), title=title)
        )
    return paths

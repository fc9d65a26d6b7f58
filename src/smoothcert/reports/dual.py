"""Dual smoothing runs in a report: where the estimator routed, what limited the radius, the gap.

A dual record (:mod:`smoothcert.decisions.dual`) keeps the estimator's choice and both
radii in its ``details``. :func:`dual_table` summarises them per file: the share of
inputs routed to each sigma, where abstentions happened, and the share of certified
radii limited by the estimator's ``R_sigma`` rather than the classifier's ``R_c``.
:func:`gap_table` compares each dual file with the best of the other (single-sigma)
files at each radius: how far below it is, and where it beats every one of them.

Example:
    >>> from pathlib import Path
    >>> def rec(j, radius, limited, at=None):
    ...     return {"index": 0, "label": 0, "correct": True, "abstained": at is not None,
    ...             "radius": radius, "method": "dual",
    ...             "details": {"kind": "dual_details", "sigma_index": j,
    ...                         "sigma": (0.25, 0.5)[j], "limited_by": limited,
    ...                         "abstained_at": at}}
    >>> dual = ResultFile(Path("dual.jsonl"), {"config": {"method": "dual"}},
    ...                   [rec(0, 0.3, "classifier"), rec(1, 0.9, "sigma"),
    ...                    rec(1, 0.0, None, "sigma")])
    >>> print(dual_table([dual]))
    | dual smoothing | dual |
    |---:|---:|
    | routed to sigma = 0.25 | 33.3% |
    | routed to sigma = 0.5 | 66.7% |
    | abstained: sigma estimator | 33.3% |
    | abstained: classifier | 0.0% |
    | certified radius limited by R_sigma | 50.0% |
    | examples | 3 |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from smoothcert.reports.metrics import certified_accuracy
from smoothcert.reports.results import ResultFile

__all__ = ["dual_table", "gap_table", "is_dual"]


def is_dual(result: ResultFile) -> bool:
    """True if the file holds dual smoothing records (with their details)."""
    return any(_details(r) is not None for r in result.records)


def _details(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    details = record.get("details")
    if isinstance(details, Mapping) and details.get("kind") == "dual_details":
        return details
    return None


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def dual_table(files: Sequence[ResultFile]) -> str:
    """Markdown table of the estimator's routing and the radius limits, one column per dual file.

    Rows: the share of inputs routed to each sigma (the estimator's choice, also when
    its certificate then abstained), the share that abstained at the estimator and at
    the classifier, and among certified inputs the share whose radius is ``R_sigma``
    (the estimator's ball, not the classifier's).
    """
    duals = [f for f in files if is_dual(f)]
    sigmas = sorted(
        {float(d["sigma"]) for f in duals for r in f.records if (d := _details(r)) is not None}
    )
    rows: list[tuple[str, list[str]]] = [(f"routed to sigma = {s:g}", []) for s in sigmas]
    rows += [
        ("abstained: sigma estimator", []),
        ("abstained: classifier", []),
        ("certified radius limited by R_sigma", []),
        ("examples", []),
    ]
    for f in duals:
        details = [d for r in f.records if (d := _details(r)) is not None]
        total = len(details)
        for i, s in enumerate(sigmas):
            rows[i][1].append(_pct(sum(float(d["sigma"]) == s for d in details), total))
        at = [d.get("abstained_at") for d in details]
        limited = [d.get("limited_by") for d in details if d.get("limited_by") is not None]
        k = len(sigmas)
        rows[k][1].append(_pct(at.count("sigma"), total))
        rows[k + 1][1].append(_pct(at.count("classifier"), total))
        rows[k + 2][1].append(_pct(limited.count("sigma"), len(limited)))
        rows[k + 3][1].append(str(total))
    lines = [
        "| dual smoothing | " + " | ".join(f.label for f in duals) + " |",
        "|---:|" + "---:|" * len(duals),
    ]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines)


def gap_table(files: Sequence[ResultFile], radii: Any) -> str:
    """Markdown table: each dual file against the best other file at each radius.

    Columns per radius: the best single (non-dual) file's certified accuracy and its
    label, each dual file's accuracy, its difference to the best (percentage points),
    and whether it beats every other file there. Compare files of the same examples.
    """
    duals = [f for f in files if is_dual(f)]
    others = [f for f in files if not is_dual(f)]
    grid = np.asarray(radii, dtype=np.float64)
    header = "| radius | best single | "
    header += " | ".join(f"{d.label} | {d.label} - best | beats all" for d in duals) + " |"
    lines = [header, "|---:|---:|" + "---:|---:|---:|" * len(duals)]
    acc = {id(f): np.atleast_1d(certified_accuracy(f, grid)) for f in files}
    for i, r in enumerate(grid):
        if others:
            best_file = max(others, key=lambda f: acc[id(f)][i])
            best = float(acc[id(best_file)][i])
            cells = [f"{r:g}", f"{100 * best:.1f}% ({best_file.label})"]
        else:
            best, cells = float("nan"), [f"{r:g}", "n/a"]
        for d in duals:
            mine = float(acc[id(d)][i])
            beats = all(mine > float(acc[id(f)][i]) for f in others) if others else False
            gap = f"{100 * (mine - best):+.1f} pp" if others else "n/a"
            cells += [f"{100 * mine:.1f}%", gap, "yes" if beats else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

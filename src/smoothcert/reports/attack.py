r"""Certified vs empirical robustness: attack files (``attack-l2``) next to certificates.

An attack file's records (claim ``"empirical"``, :mod:`smoothcert.decisions.attack`)
hold, per example, the largest radius of the attack's grid up to which no flip of the
smoothed prediction was found. Its empirical robust accuracy at a radius ``r`` is the
fraction of examples that are correct and unflipped at every grid radius ``<= r``
(:func:`empirical_accuracy`): an UPPER bound on the smoothed classifier's true robust
accuracy at ``r`` (robust at ``r`` implies robust at every smaller grid radius), which is
itself >= the certified accuracy (a lower bound), both up to Monte Carlo error. The gap
``empirical - certified`` bounds how much a certificate may leave on the table.

Reads result files only (no torch).

Example:
    >>> from pathlib import Path
    >>> def rec(i, radius, method):
    ...     return {"index": i, "label": 0, "correct": True, "abstained": False,
    ...             "radius": radius, "method": method,
    ...             "claim": "empirical" if method == "attack-l2" else "majority"}
    >>> cert = ResultFile(Path("cohen.jsonl"), {"config": {"params": {"sigma": 0.25}}},
    ...                   [rec(0, 0.3, "cohen"), rec(1, 0.1, "cohen")])
    >>> att = ResultFile(Path("pgd.jsonl"),
    ...                  {"config": {"params": {"sigma": 0.25, "radii": [0.25, 0.5]}}},
    ...                  [rec(0, 0.5, "attack-l2"), rec(1, 0.25, "attack-l2")])
    >>> empirical_accuracy(att, [0.0, 0.25, 0.4, 0.5]).tolist()
    [1.0, 1.0, 1.0, 0.5]
    >>> print(attack_table([cert, att]))
    | radius | cohen certified | pgd empirical | gap pgd - cohen |
    |---:|---:|---:|---:|
    | 0 | 100.0% | 100.0% | +0.0 pp |
    | 0.25 | 50.0% | 100.0% | +50.0 pp |
    | 0.5 | 0.0% | 50.0% | +50.0 pp |
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray

from smoothcert.errors import InvalidParameterError
from smoothcert.reports.metrics import certified_accuracy
from smoothcert.reports.plot import certified_accuracy_curve
from smoothcert.reports.results import ResultFile

__all__ = [
    "HYBRID_ATTACK_HEADING",
    "attack_grid",
    "attack_pairs",
    "attack_table",
    "empirical_accuracy",
    "FIELDS_ATTACK_HEADING",
    "fields_attack_table",
    "hybrid_attack_table",
    "is_attack",
    "is_fields_attack",
    "is_grid_attack",
    "is_hybrid_attack",
    "plot_certified_vs_empirical",
]

ATTACK_HEADING = (
    "certified vs empirical robust accuracy: certified = correct and certified at r (a "
    "lower bound); empirical = correct and no flip found by the attack up to r (an upper "
    "bound on the true robust accuracy); both up to Monte Carlo error"
)


def is_attack(result: ResultFile) -> bool:
    """True for a file of attack records (claim ``"empirical"``)."""
    return result.claim == "empirical"


def is_hybrid_attack(result: ResultFile) -> bool:
    """True for a file of ``attack-hybrid`` records (a (d, r) grid per example)."""
    return is_attack(result) and result.method == "attack-hybrid"


def is_fields_attack(result: ResultFile) -> bool:
    """True for a file of ``attack-fields`` records (a (d, r) grid per tabular row)."""
    return is_attack(result) and result.method == "attack-fields"


def is_grid_attack(result: ResultFile) -> bool:
    """True for an attack file with a (d, r) grid per example (hybrid or fields)."""
    return is_hybrid_attack(result) or is_fields_attack(result)


def _l2_attacks(files: Sequence[ResultFile]) -> list[ResultFile]:
    return [f for f in files if is_attack(f) and not is_grid_attack(f) and len(f)]


def attack_grid(result: ResultFile) -> NDArray[np.float64]:
    """The radius grid an attack file ran at (its parameters' ``radii``), sorted.

    Raises:
        InvalidParameterError: if the file is not an attack file with a radius grid.
    """
    radii = result.params.get("radii")
    if not is_attack(result) or not radii:
        raise InvalidParameterError(
            f"{result.label}: no attack radius grid; valid: a result file of smoothcert attack"
        )
    return np.sort(np.asarray(radii, dtype=np.float64))


def empirical_accuracy(result: ResultFile, radii: Any) -> NDArray[np.float64]:
    """Empirical robust accuracy of an attack file at each radius (module docstring).

    At ``r`` it is the fraction of examples that are correct and whose recorded radius is
    at least the largest grid radius ``<= r`` (the clean accuracy below the first grid
    radius): the upper bound the attack gives at ``r``.

    Args:
        result: an attack file.
        radii: radii >= 0 (input units).

    Returns:
        One value per radius.

    Raises:
        InvalidParameterError: on a file that is not an attack file, or no records.
    """
    grid = attack_grid(result)
    if len(result) == 0:
        raise InvalidParameterError(f"{result.label}: no records; valid: at least 1 record")
    rs = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    below = np.searchsorted(grid, rs, side="right")  # grid radii <= r
    needed = np.where(below > 0, grid[np.maximum(below - 1, 0)], 0.0)
    hits = result.certified[None, :] & (result.radii[None, :] >= needed[:, None])
    return np.asarray(hits.mean(axis=1), dtype=np.float64)


def attack_pairs(files: Sequence[ResultFile]) -> list[tuple[ResultFile, ResultFile]]:
    """(attack, certified) pairs to compare: same sigma, else every certified L2 file."""
    attacks = _l2_attacks(files)
    certs = [f for f in files if _is_certified_l2(f)]
    pairs = []
    for a in attacks:
        same = [c for c in certs if c.params.get("sigma") == a.params.get("sigma")]
        pairs += [(a, c) for c in (same or certs)]
    return pairs


def _is_certified_l2(f: ResultFile) -> bool:
    return not is_attack(f) and f.claim == "majority" and f.radius_unit == "l2" and len(f) > 0


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def attack_table(files: Sequence[ResultFile], radii: Any = None) -> str:
    """Markdown table per radius: certified accuracy, empirical accuracy and their gap.

    Args:
        files: certified (majority, L2) and attack files; other files are left out.
        radii: radii to show; default 0 and the attack grids' radii.

    Returns:
        Columns: each certified file's accuracy, each attack file's empirical accuracy,
        and ``empirical - certified`` (percentage points) for each pair of
        :func:`attack_pairs`.
    """
    attacks = _l2_attacks(files)
    certs = [f for f in files if _is_certified_l2(f)]
    if radii is None:
        grid = np.unique(np.concatenate([[0.0], *[attack_grid(a) for a in attacks]]))
    else:
        grid = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    cert_acc = {id(c): np.atleast_1d(certified_accuracy(c, grid)) for c in certs}
    emp_acc = {id(a): empirical_accuracy(a, grid) for a in attacks}
    pairs = attack_pairs([*attacks, *certs])
    header = ["radius"]
    header += [f"{c.label} certified" for c in certs]
    header += [f"{a.label} empirical" for a in attacks]
    header += [f"gap {a.label} - {c.label}" for a, c in pairs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for i, r in enumerate(grid):
        cells = [f"{r:g}"]
        cells += [_pct(cert_acc[id(c)][i]) for c in certs]
        cells += [_pct(emp_acc[id(a)][i]) for a in attacks]
        cells += [f"{100 * (emp_acc[id(a)][i] - cert_acc[id(c)][i]):+.1f} pp" for a, c in pairs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_certified_vs_empirical(
    files: Sequence[ResultFile],
    output_path: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    r"""Write a PNG: certified accuracy curves solid, empirical (attack) curves dashed.

    A certified curve is the exact step function of
    :func:`~smoothcert.reports.plot.certified_accuracy_curve`; an empirical curve is
    :func:`empirical_accuracy`, drawn as steps that drop at the grid radii, with markers
    at the grid radii (where the attack ran). Files of the same sigma share a colour.

    Args:
        files: certified (majority, L2) and attack files.
        output_path: the PNG file (parent directories are created).
        title: figure title (default: a description of the two kinds of curves).
        dpi: resolution.

    Returns:
        The path written.

    Raises:
        InvalidParameterError: if there is no attack file with records.

    Example:
        >>> import tempfile
        >>> rec = {"index": 0, "label": 0, "correct": True, "abstained": False,
        ...        "radius": 0.5, "claim": "empirical"}
        >>> att = ResultFile(Path("pgd.jsonl"), {"config": {"params": {"radii": [0.5]}}},
        ...                  [rec])
        >>> out = plot_certified_vs_empirical([att], Path(tempfile.mkdtemp()) / "a.png")
        >>> out.read_bytes()[:4] == b"\x89PNG"
        True
    """
    attacks = _l2_attacks(files)
    if not attacks:
        raise InvalidParameterError(
            "files without attack records are invalid here; valid: at least 1 attack file"
        )
    certs = [f for f in files if _is_certified_l2(f)]
    sigmas = list(dict.fromkeys(f.params.get("sigma") for f in [*certs, *attacks]))
    right = max(float(attack_grid(a)[-1]) for a in attacks) * 1.1
    fig = Figure(figsize=(6.0, 4.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    def colour(f: ResultFile) -> str:
        return f"C{sigmas.index(f.params.get('sigma')) % 10}"

    for c in certs:
        xs, acc = certified_accuracy_curve(c)
        x_plot = np.append(xs, max(right, float(xs[-1])))
        y_plot = 100.0 * np.append(acc[1:], [0.0, 0.0])
        ax.step(x_plot, y_plot, where="post", color=colour(c), label=f"{c.label} (certified)")
    for a in attacks:
        grid = attack_grid(a)
        xs = np.concatenate([[0.0], grid, [right]])
        ys = 100.0 * empirical_accuracy(a, xs)
        ax.step(xs, ys, where="post", linestyle="--", color=colour(a), label=f"{a.label} (attack)")
        ax.plot(grid, 100.0 * empirical_accuracy(a, grid), "o", color=colour(a), markersize=4)
    ax.set_xlim(0.0, right)
    ax.set_ylim(0.0, 102.0)
    ax.set_xlabel("radius (L2, input units)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.set_title(
        title if title is not None else "certified (solid) vs empirical under attack (dashed)",
        fontsize=9,
    )
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


HYBRID_ATTACK_HEADING = (
    "text+image filter under attack, per (d substituted tokens, image radius r): certified = "
    "flagged and certified to stay flagged (a lower bound); still flagged = flagged and not "
    "un-flagged by the attack at any (d', r') <= (d, r) (an upper bound); success = share of "
    "the flagged pairs the attack un-flagged at (d, r); up to Monte Carlo error"
)


FIELDS_ATTACK_HEADING = (
    "tabular rows under attack, per (d changed fields, continuous radius r): certified = "
    "correct and certified at (d, r) (a lower bound); attacked = correct and no change of the "
    "smoothed prediction found at any (d', r') <= (d, r) (an upper bound on the robust "
    "accuracy; at (0, 0): the smoothed model's clean accuracy); success = share of the rows "
    "whose prediction the attack changed at (d, r); up to Monte Carlo error"
)


def _grid_points(result: ResultFile) -> list[tuple[int, float]]:
    for record in result.records:
        details = record.get("details") or {}
        if details.get("d_values") is not None:
            return list(zip(details["d_values"], details["r_values"], strict=True))
    return []


def _grid_cells(attack: ResultFile, d: int, r: float, *, key: str) -> list[str]:
    """``[kept, success]`` of a grid attack at ``(d, r)`` (``key``: the per-point flags).

    kept: share of all records that are correct and not attacked successfully at any
    grid point ``(d', r') <= (d, r)``; success: share of the non-abstaining records
    attacked successfully at ``(d, r)`` ("n/a" at the clean point or with none).
    """
    own = _grid_points(attack)
    kept, successes, attacked = 0, 0, 0
    for record in attack.records:
        details = record.get("details") or {}
        flags = dict(zip(own, details.get(key) or [False] * len(own), strict=True))
        if record.get("abstained"):
            continue
        attacked += 1
        successes += bool(flags.get((d, r), False))
        dominated = any(u for (dd, rr), u in flags.items() if dd <= d and rr <= r)
        kept += bool(record.get("correct")) and not dominated
    success = _pct(successes / attacked) if attacked and (d, r) in own else "n/a"
    return [_pct(kept / len(attack)), success]


def _grid_table(
    files: Sequence[ResultFile], attacks: list[ResultFile], *, key: str, kept: str, clean: bool
) -> str:
    from smoothcert.reports.tables import dr_grid

    certs = [
        f
        for f in files
        if not is_attack(f) and len(f) and any(r.get("radius_curve") for r in f.records)
    ]
    points = {p for a in attacks for p in _grid_points(a)}
    if clean and any(r == 0.0 for _, r in points):
        points.add((0, 0.0))
    header = ["d", "r"] + [f"{c.label} certified" for c in certs]
    for a in attacks:
        header += [f"{a.label} {kept}", f"{a.label} success"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    for d, r in sorted(points):
        cells = [str(d), f"{r:g}"]
        cells += [_pct(float(dr_grid(c, [d], [r])[0, 0])) for c in certs]
        for a in attacks:
            cells += _grid_cells(a, d, r, key=key)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def hybrid_attack_table(files: Sequence[ResultFile]) -> str:
    """Markdown table per (d, r) point of each ``attack-hybrid`` file, next to certificates.

    Columns: for each certified hybrid file (records with a ``radius_curve``), its
    certified share at ``(d, r)`` (:func:`~smoothcert.reports.tables.dr_grid`); for each
    attack file, the share of examples correct (flagged, label = target) and not un-flagged
    at any grid point ``(d', r') <= (d, r)``, and the attack's success rate among the
    flagged examples at ``(d, r)``.

    Example:
        >>> from pathlib import Path
        >>> def rec(i, flags):
        ...     return {"index": i, "label": 1, "correct": True, "abstained": False,
        ...             "radius": 0.0, "claim": "empirical", "method": "attack-hybrid",
        ...             "details": {"d_values": [0, 1], "r_values": [0.5, 0.0],
        ...                         "unflagged": flags}}
        >>> att = ResultFile(Path("h.jsonl"), {}, [rec(0, [False, True]), rec(1, [True, True])])
        >>> print(hybrid_attack_table([att]))
        | d | r | h still flagged | h success |
        |---:|---:|---:|---:|
        | 0 | 0.5 | 50.0% | 50.0% |
        | 1 | 0 | 0.0% | 100.0% |
    """
    attacks = [f for f in files if is_hybrid_attack(f) and len(f)]
    return _grid_table(files, attacks, key="unflagged", kept="still flagged", clean=False)


def fields_attack_table(files: Sequence[ResultFile]) -> str:
    """Markdown table per (d, r) point of each ``attack-fields`` file, next to certificates.

    The tabular task's certified accuracy over its (d, r) grid (``hybrid-fields`` files,
    :func:`~smoothcert.reports.tables.dr_grid`) next to its clean and attacked accuracy
    (:data:`FIELDS_ATTACK_HEADING`); the row ``(0, 0)`` (when the grid has ``r = 0``)
    holds the certified and the clean accuracy of the smoothed model.

    Example:
        >>> from pathlib import Path
        >>> def rec(i, correct, flips):
        ...     return {"index": i, "label": 1, "correct": correct, "abstained": False,
        ...             "radius": 0.0, "claim": "empirical", "method": "attack-fields",
        ...             "details": {"d_values": [0, 1], "r_values": [0.5, 0.0],
        ...                         "flipped": flips}}
        >>> att = ResultFile(Path("f.jsonl"), {}, [rec(0, True, [False, True]),
        ...                                         rec(1, True, [False, False])])
        >>> print(fields_attack_table([att]))
        | d | r | f attacked | f success |
        |---:|---:|---:|---:|
        | 0 | 0 | 100.0% | n/a |
        | 0 | 0.5 | 100.0% | 0.0% |
        | 1 | 0 | 50.0% | 50.0% |
    """
    attacks = [f for f in files if is_fields_attack(f) and len(f)]
    return _grid_table(files, attacks, key="flipped", kept="attacked", clean=True)

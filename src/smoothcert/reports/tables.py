"""Certified-accuracy tables (Markdown and LaTeX), one column per result file.

Rows: certified accuracy (%) at each radius of the grid, then the average certified
radius (ACR, L2 input units), the abstention rate (%) and the number of examples.

Example:
    >>> from pathlib import Path
    >>> rec = {"index": 0, "label": 0, "correct": True, "abstained": False, "radius": 0.4}
    >>> toy = ResultFile(path=Path("toy.jsonl"), header={}, records=[rec])
    >>> print(markdown_table([toy], [0.0, 0.5]))
    | radius | toy |
    |---:|---:|
    | 0 | 100.0% |
    | 0.5 | 0.0% |
    | ACR | 0.400 |
    | abstained | 0.0% |
    | examples | 1 |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert.errors import InvalidParameterError
from smoothcert.reports.metrics import Summary, default_radii, summarize
from smoothcert.reports.results import ResultFile

__all__ = [
    "claim_heading",
    "default_d_values",
    "dr_grid",
    "dr_table",
    "group_by_claim",
    "latex_table",
    "markdown_table",
    "radius_grid",
    "summaries",
]

_NA = "n/a"


def radius_grid(files: Sequence[ResultFile], radii: Any = None) -> NDArray[np.float64]:
    """The given radii, or :func:`~smoothcert.reports.metrics.default_radii` of the files.

    The default grid reaches the largest certified radius over all files.
    """
    if radii is not None:
        return np.asarray(radii, dtype=np.float64).reshape(-1)
    largest = max((float(f.radii.max()) for f in files if len(f)), default=0.0)
    return default_radii(largest)


_HEADINGS = {
    "majority": "certified accuracy (majority vote): correct and certified at radius r",
    "flagged": (
        "certified detection (safety filter): the pair's label is the target and it is "
        "flagged and certified to stay flagged at radius r"
    ),
    "prediction": "PREDICT: correct, non-abstaining predictions (no radius)",
    "empirical": (
        "empirical robust accuracy (attack, NOT certified): correct and no flip found by "
        "the attack at the grid radii up to r (an upper bound, up to Monte Carlo error)"
    ),
}


def claim_heading(claim: str) -> str:
    """One line saying what the numbers of a table of ``claim`` files mean."""
    return _HEADINGS.get(claim, claim)


def group_by_claim(files: Sequence[ResultFile]) -> list[list[ResultFile]]:
    """Split files into groups of one claim and one radius unit, in first-seen order.

    Reports never mix them: a majority-vote accuracy and a safety filter's detection
    rate are different quantities, and L2 radii and token counts different units.
    """
    groups: dict[tuple[str, str], list[ResultFile]] = {}
    for f in files:
        groups.setdefault((f.claim, f.radius_unit), []).append(f)
    return list(groups.values())


def _check_one_kind(files: Sequence[ResultFile]) -> None:
    kinds = {(f.claim, f.radius_unit) for f in files}
    if len(kinds) > 1:
        raise InvalidParameterError(
            f"files make different claims or use different radius units {sorted(kinds)}; "
            "valid: files of one claim and unit per table (group_by_claim splits them)"
        )


def summaries(files: Sequence[ResultFile], radii: Any = None) -> list[Summary]:
    """Summaries of several files on a common radius grid.

    Raises:
        InvalidParameterError: if ``files`` is empty, mixes claims or radius units, or
            the radii are invalid.
    """
    if not files:
        raise InvalidParameterError("files = [] is invalid; valid: at least 1 result file")
    _check_one_kind(files)
    grid = radius_grid(files, radii)
    return [summarize(f, grid) for f in files]


def _rows(
    files: Sequence[ResultFile], radii: Any, percent: str
) -> tuple[list[str], list[list[str]]]:
    sums = summaries(files, radii)
    grid = sums[0].radii
    rows: list[list[str]] = []
    for i, r in enumerate(grid):
        rows.append(
            [f"{r:g}"]
            + [
                f"{100 * s.certified_accuracy[i]:.1f}{percent}" if s.num_records else _NA
                for s in sums
            ]
        )
    rows.append(["ACR"] + [f"{s.acr:.3f}" if s.acr is not None else _NA for s in sums])
    rows.append(
        ["abstained"]
        + [
            f"{100 * s.abstain_rate:.1f}{percent}" if s.abstain_rate is not None else _NA
            for s in sums
        ]
    )
    rows.append(["examples"] + [str(s.num_records) for s in sums])
    return [s.label for s in sums], rows


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(files: Sequence[ResultFile], radii: Any = None) -> str:
    """Markdown table of certified accuracy (%) per radius, ACR, abstentions, size.

    Args:
        files: loaded result files, one column each (headed by their labels).
        radii: radius grid (L2, input units); default: a round grid up to the largest
            certified radius.

    Returns:
        The table, without a trailing newline. Files without records show ``n/a``.

    Raises:
        InvalidParameterError: if ``files`` is empty or the radii are invalid.
    """
    labels, rows = _rows(files, radii, "%")
    first = "d (tokens)" if files[0].radius_unit == "tokens" else "radius"
    lines = [
        f"| {first} | " + " | ".join(_md_escape(label) for label in labels) + " |",
        "|---:|" + "---:|" * len(labels),
    ]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def latex_table(files: Sequence[ResultFile], radii: Any = None) -> str:
    r"""LaTeX ``tabular`` (booktabs rules) with the rows of :func:`markdown_table`.

    Certified accuracies and the abstention rate are percentages (the ``%`` sign is in
    the row label). Needs ``\usepackage{booktabs}``.

    Args:
        files: loaded result files, one column each.
        radii: radius grid; default as :func:`markdown_table`.

    Returns:
        The ``tabular`` environment as a string.

    Raises:
        InvalidParameterError: if ``files`` is empty or the radii are invalid.

    Example:
        >>> from pathlib import Path
        >>> rec = {"index": 0, "label": 0, "correct": True, "abstained": False,
        ...        "radius": 0.4}
        >>> toy = ResultFile(path=Path("my_run.jsonl"), header={}, records=[rec])
        >>> print(latex_table([toy], [0.0]))
        \begin{tabular}{lr}
        \toprule
        radius & my\_run \\
        \midrule
        0 & 100.0 \\
        \midrule
        ACR & 0.400 \\
        abstained (\%) & 0.0 \\
        examples & 1 \\
        \bottomrule
        \end{tabular}
    """
    labels, rows = _rows(files, radii, "")
    num_radii = len(rows) - 3
    body = [" & ".join(_latex_escape(c) for c in row) + r" \\" for row in rows]
    body[num_radii + 1] = body[num_radii + 1].replace("abstained", r"abstained (\%)", 1)
    lines = [
        r"\begin{tabular}{l" + "r" * len(labels) + "}",
        r"\toprule",
        "radius & " + " & ".join(_latex_escape(label) for label in labels) + r" \\",
        r"\midrule",
        *body[:num_radii],
        r"\midrule",
        *body[num_radii:],
        r"\bottomrule",
        r"\end{tabular}",
    ]
    return "\n".join(lines)


def dr_grid(result: ResultFile, d_values: Any, radii: Any) -> NDArray[np.float64]:
    """Hybrid files: certified accuracy at each (d, r): correct, certified, ``r(d) >= r``.

    Args:
        result: a file whose records carry ``radius_curve``.
        d_values: numbers of edited tokens (ints >= 0); a d beyond a record's curve is
            not certified for it.
        radii: L2 radii (image units), >= 0.

    Returns:
        Array ``(len(d_values), len(radii))`` of fractions of all examples.

    Example:
        >>> from pathlib import Path
        >>> recs = [{"index": 0, "label": 1, "correct": True, "abstained": False,
        ...          "radius": 0.5, "radius_curve": [0.5, 0.2]}]
        >>> dr_grid(ResultFile(Path("h"), {}, recs), [0, 1, 2], [0.0, 0.3]).tolist()
        [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    """
    if len(result) == 0:
        raise InvalidParameterError(f"{result.label} has 0 records; valid: at least 1 record")
    curves = result.curves()
    ds = np.asarray(d_values, dtype=np.int64).reshape(-1)
    rs = np.asarray(radii, dtype=np.float64).reshape(-1)
    if ds.size == 0 or ds.min() < 0 or rs.size == 0 or not np.all(np.isfinite(rs)) or rs.min() < 0:
        raise InvalidParameterError(
            f"d_values = {ds.tolist()}, radii = {rs.tolist()} are invalid; valid: non-empty "
            "lists of d >= 0 and finite radii >= 0"
        )
    padded = np.zeros((curves.shape[0], int(ds.max()) + 1))
    width = min(curves.shape[1], padded.shape[1])
    padded[:, :width] = curves[:, :width]
    per_d = padded[:, ds]  # (examples, len(ds))
    # r(d) = 0: d edits are not certified even with an unperturbed image.
    certified = (
        result.certified[:, None, None]
        & (per_d[:, :, None] > 0)
        & (per_d[:, :, None] >= rs[None, None, :])
    )
    return np.asarray(certified.mean(axis=0), dtype=np.float64)


def default_d_values(result: ResultFile) -> NDArray[np.int64]:
    """The d values to show: 0 to one past the largest d any record certifies."""
    curves = result.curves()
    certified_d = np.nonzero((curves > 0).any(axis=0))[0]
    top = int(certified_d.max()) + 1 if certified_d.size else 0
    return np.arange(min(top, curves.shape[1] - 1) + 1)


def dr_table(result: ResultFile, d_values: Any = None, radii: Any = None) -> str:
    """Markdown table of :func:`dr_grid`: rows d (tokens), columns r (L2, image units).

    Defaults: d from 0 to one past the largest d any record certifies (every row below
    is 0%), and a round radius grid up to the largest ``r(0)``.
    """
    curves = result.curves()
    if d_values is None:
        d_values = default_d_values(result)
    if radii is None:
        radii = default_radii(float(curves.max()) if curves.size else 0.0, max_rows=6)
    grid = dr_grid(result, d_values, radii)
    ds = np.asarray(d_values).reshape(-1)
    rs = np.asarray(radii, dtype=np.float64).reshape(-1)
    lines = [
        "| d \\ r | " + " | ".join(f"{r:g}" for r in rs) + " |",
        "|---:|" + "---:|" * len(rs),
    ]
    for i, d in enumerate(ds):
        lines.append(f"| {int(d)} | " + " | ".join(f"{100 * v:.1f}%" for v in grid[i]) + " |")
    return "\n".join(lines)

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

__all__ = ["latex_table", "markdown_table", "radius_grid", "summaries"]

_NA = "n/a"


def radius_grid(files: Sequence[ResultFile], radii: Any = None) -> NDArray[np.float64]:
    """The given radii, or :func:`~smoothcert.reports.metrics.default_radii` of the files.

    The default grid reaches the largest certified radius over all files.
    """
    if radii is not None:
        return np.asarray(radii, dtype=np.float64).reshape(-1)
    largest = max((float(f.radii.max()) for f in files if len(f)), default=0.0)
    return default_radii(largest)


def summaries(files: Sequence[ResultFile], radii: Any = None) -> list[Summary]:
    """Summaries of several files on a common radius grid.

    Raises:
        InvalidParameterError: if ``files`` is empty or the radii are invalid.
    """
    if not files:
        raise InvalidParameterError("files = [] is invalid; valid: at least 1 result file")
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
    lines = [
        "| radius | " + " | ".join(_md_escape(label) for label in labels) + " |",
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

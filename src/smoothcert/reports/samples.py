"""Forward passes spent per input: a table and a histogram, for sequential and fixed-n runs.

A record's forward samples are the sum of its evidence stages' ``n`` (selection
included), the same for every method, so a sequential run (DESIGN.md, "Sequential
certification") and a fixed-n run of the same model compare side by side.

Example:
    >>> from pathlib import Path
    >>> def rec(*ns):
    ...     return {"index": 0, "label": 0, "correct": True, "abstained": False,
    ...             "radius": 0.1, "evidence": {"stages": [{"n": n} for n in ns]}}
    >>> fixed = ResultFile(Path("fixed.jsonl"), {}, [rec(100, 10_000), rec(100, 10_000)])
    >>> seq = ResultFile(Path("seq.jsonl"), {}, [rec(100, 100), rec(100, 100, 200, 400)])
    >>> print(samples_table([fixed, seq]))
    | forward samples | fixed | seq |
    |---:|---:|---:|
    | total | 20,200 | 1,000 |
    | share of the largest total | 100.0% | 5.0% |
    | per input: mean | 10,100 | 500 |
    | per input: median | 10,100 | 500 |
    | per input: 90th percentile | 10,100 | 740 |
    | per input: max | 10,100 | 800 |
    | examples | 2 | 2 |
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert.reports.results import ResultFile

__all__ = ["is_sequential", "plot_samples_histogram", "samples_per_input", "samples_table"]


def samples_per_input(records: Sequence[Mapping[str, Any]]) -> NDArray[np.int64]:
    """Forward samples of each record: the sum of its evidence stages' ``n``."""
    return np.array(
        [sum(int(s["n"]) for s in r["evidence"]["stages"]) for r in records], dtype=np.int64
    )


def is_sequential(result: ResultFile) -> bool:
    """True if the file's records drew their estimation samples in rounds."""
    return any(s.get("role") == "round" for r in result.records for s in r["evidence"]["stages"])


def _fmt(value: float) -> str:
    return f"{value:,.0f}"


def samples_table(files: Sequence[ResultFile]) -> str:
    """Markdown table: total forward samples and their distribution per input, per file."""
    used = [samples_per_input(f.records) for f in files]
    totals = [int(u.sum()) for u in used]
    largest = max(totals, default=0)
    rows: list[tuple[str, list[str]]] = [
        ("total", [f"{t:,}" for t in totals]),
        (
            "share of the largest total",
            [f"{100 * t / largest:.1f}%" if largest else "n/a" for t in totals],
        ),
    ]
    stats = (
        ("per input: mean", np.mean),
        ("per input: median", np.median),
        ("per input: 90th percentile", lambda u: np.percentile(u, 90)),
        ("per input: max", np.max),
    )
    for name, fn in stats:
        rows.append((name, [_fmt(float(fn(u))) if len(u) else "n/a" for u in used]))
    rows.append(("examples", [str(len(u)) for u in used]))
    lines = [
        "| forward samples | " + " | ".join(f.label for f in files) + " |",
        "|---:|" + "---:|" * len(files),
    ]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(lines)


def plot_samples_histogram(
    files: Sequence[ResultFile], output_path: str | os.PathLike[str]
) -> Path:
    """Histogram of forward samples per input (log scale), one series per file.

    A fixed-n file (every input the same count) is drawn as a vertical line.

    Returns:
        The written PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    used = [samples_per_input(f.records) for f in files]
    nonempty = [u for u in used if len(u)]
    low = max(1, int(min(u.min() for u in nonempty))) if nonempty else 1
    high = max(low + 1, int(max(u.max() for u in nonempty))) if nonempty else 10
    bins = np.geomspace(low, high * 1.0001, 30).tolist()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for f, u in zip(files, used, strict=True):
        if not len(u):
            continue
        if np.all(u == u[0]):
            ax.axvline(float(u[0]), linestyle="--", label=f"{f.label} ({_fmt(float(u[0]))} each)")
        else:
            ax.hist(u, bins=bins, alpha=0.6, label=f"{f.label} (total {_fmt(float(u.sum()))})")
    ax.set_xscale("log")
    ax.set_xlabel("forward samples per input (selection included)")
    ax.set_ylabel("inputs")
    ax.set_title("Samples spent per input")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

r"""Certified accuracy vs radius plots (PNG, matplotlib's Agg canvas; no display needed).

The curve of a file is the step function r -> certified accuracy at r (see
:mod:`smoothcert.reports.metrics`), drawn exactly: it only drops at the certified
radii of the file.

Example:
    >>> import pathlib, tempfile
    >>> rec = {"index": 0, "label": 0, "correct": True, "abstained": False, "radius": 0.4}
    >>> toy = ResultFile(path=pathlib.Path("toy.jsonl"), header={}, records=[rec])
    >>> out = plot_certified_accuracy([toy], pathlib.Path(tempfile.mkdtemp()) / "toy.png")
    >>> out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    True
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

from smoothcert._validation import check_positive
from smoothcert.errors import InvalidParameterError
from smoothcert.reports.results import ResultFile

__all__ = [
    "certified_accuracy_curve",
    "default_title",
    "plot_certified_accuracy",
    "plot_dr_heatmap",
]


def default_title(files: Sequence[ResultFile]) -> str:
    """A title naming the method, sigma, n, alpha and the number of examples of the files.

    Example:
        >>> from pathlib import Path
        >>> header = {"config": {"method": "cohen",
        ...                      "params": {"sigma": 0.25, "n0": 100, "n": 10000, "alpha": 0.001}}}
        >>> rec = {"index": 0, "label": 0, "correct": True, "abstained": False, "radius": 0.4}
        >>> default_title([ResultFile(Path("x.jsonl"), header, [rec])])
        'cohen, sigma=0.25, n=10000, alpha=0.001, 1 examples'
    """
    parts = []
    for f in files:
        p = f.params
        bits = [f.method or "?"]
        for key in ("sigma", "beta", "tau", "n", "alpha"):
            if p.get(key) is not None and not (key == "tau" and p.get("target") is None):
                bits.append(f"{key}={p[key]:g}")
        bits.append(f"{len(f)} examples")
        parts.append(", ".join(bits))
    unique = list(dict.fromkeys(parts))
    return unique[0] if len(unique) == 1 else "; ".join(unique)


def certified_accuracy_curve(
    result: ResultFile,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Breakpoints of the certified-accuracy step curve of one file.

    Returns:
        ``(radii, accuracy)``: ``accuracy[i]`` is the certified accuracy for radii
        in ``(radii[i-1], radii[i]]``; ``radii[0] = 0``. Empty for a file without
        records.

    Example:
        >>> from pathlib import Path
        >>> recs = [{"index": i, "label": 0, "correct": True, "abstained": False,
        ...          "radius": r} for i, r in enumerate([0.2, 0.5])]
        >>> r, a = certified_accuracy_curve(ResultFile(Path("x"), {}, recs))
        >>> r.tolist(), a.tolist()
        ([0.0, 0.2, 0.5], [1.0, 1.0, 0.5])
    """
    if len(result) == 0:
        return np.zeros(0), np.zeros(0)
    certified = np.sort(result.radii[result.certified])
    total = len(result)
    xs = np.unique(np.concatenate([[0.0], certified]))
    # accuracy at r counts radius >= r
    counts = len(certified) - np.searchsorted(certified, xs, side="left")
    return xs, counts / total


def plot_certified_accuracy(
    files: Sequence[ResultFile],
    output_path: str | os.PathLike[str],
    *,
    max_radius: float | None = None,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Write a PNG of certified accuracy vs L2 radius, one curve per file.

    Args:
        files: loaded result files (their labels name the curves).
        output_path: the PNG file (parent directories are created).
        max_radius: right end of the x axis; default 5% past the largest certified
            radius.
        title: figure title; default :func:`default_title` (method, sigma, n, alpha,
            number of examples).
        dpi: resolution.

    Returns:
        The path written.

    Raises:
        InvalidParameterError: if ``files`` is empty or ``max_radius <= 0``.
    """
    if not files:
        raise InvalidParameterError("files = [] is invalid; valid: at least 1 result file")
    curves = [certified_accuracy_curve(f) for f in files]
    largest = max((float(r[-1]) for r, _ in curves if len(r)), default=0.0)
    if max_radius is None:
        right = largest * 1.05 if largest > 0 else 1.0
    else:
        right = check_positive(max_radius, name="max_radius")

    fig = Figure(figsize=(6.0, 4.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for result, (xs, acc) in zip(files, curves, strict=True):
        if len(xs) == 0:
            continue
        # acc[i] holds on (xs[i-1], xs[i]]; drawn "post": value acc[i+1] from xs[i] on
        x_plot = np.append(xs, max(right, float(xs[-1])))
        y_plot = 100.0 * np.append(acc[1:], [0.0, 0.0])
        ax.step(x_plot, y_plot, where="post", label=result.label)
    ax.set_xlim(0.0, right)
    ax.set_ylim(0.0, 102.0)
    tokens = files[0].radius_unit == "tokens"
    ax.set_xlabel("edited tokens d" if tokens else "radius (L2, input units)")
    ax.set_ylabel(
        "certified detection (%)" if files[0].claim == "flagged" else "certified accuracy (%)"
    )
    ax.grid(True, alpha=0.3)
    ax.set_title(title if title is not None else default_title(files), fontsize=9)
    ax.legend(loc="upper right")
    fig.tight_layout()
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def plot_dr_heatmap(
    result: ResultFile,
    output_path: str | os.PathLike[str],
    *,
    radii: Any = None,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Write a PNG heatmap of certified accuracy (%) over (d edited tokens, L2 radius r).

    Cells are :func:`~smoothcert.reports.tables.dr_grid` values; d runs over
    :func:`~smoothcert.reports.tables.default_d_values`, r over ``radii`` (default: 40
    steps up to the largest r(0)).

    Returns:
        The path written.

    Raises:
        InvalidParameterError: if the file has no records.
    """
    from smoothcert.reports.tables import default_d_values, dr_grid

    curves = result.curves()
    ds = default_d_values(result)
    if radii is None:
        top = float(curves.max()) if curves.size and curves.max() > 0 else 1.0
        radii = np.linspace(0.0, top, 41)
    rs = np.asarray(radii, dtype=np.float64).reshape(-1)
    grid = 100.0 * dr_grid(result, ds, rs)
    fig = Figure(figsize=(6.0, 4.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(
        grid,
        origin="lower",
        aspect="auto",
        extent=(float(rs[0]), float(rs[-1]), -0.5, len(ds) - 0.5),
        vmin=0.0,
        vmax=100.0,
        cmap="viridis",
    )
    fig.colorbar(
        image,
        ax=ax,
        label=(
            "certified detection (%)" if result.claim == "flagged" else "certified accuracy (%)"
        ),
    )
    ax.set_xlabel("image radius r (L2, image units)")
    ax.set_ylabel("edited tokens d")
    ax.set_yticks(ds)
    ax.set_title(title if title is not None else default_title([result]), fontsize=9)
    fig.tight_layout()
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path

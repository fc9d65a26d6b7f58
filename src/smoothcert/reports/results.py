r"""Load result files written by a dataset run (reads files only; no torch).

Example:
    >>> import json, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "toy.jsonl"
    >>> path.write_text(json.dumps(make_header({"sigma": 0.5}, "h")) + "\n" + json.dumps(
    ...     {"type": "record", "index": 0, "label": 1, "correct": True, "prediction": 1,
    ...      "abstained": False, "radius": 0.3, "seconds": 0.1}) + "\n") > 0
    True
    >>> result = load_results(path)
    >>> result.label, len(result.records), result.radii.tolist()
    ('toy', 1, [0.3])
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert.errors import ResultStoreError
from smoothcert.runner.store import make_header, read_results

__all__ = ["ResultFile", "default_labels", "load_many", "load_results", "make_header"]

_REQUIRED = ("index", "label", "correct", "abstained", "radius")


@dataclass(frozen=True)
class ResultFile:
    """The contents of one result file, with the columns reports need as arrays.

    Attributes:
        path: the file.
        header: its header (``config``, ``config_hash``, ``versions``, ...).
        records: the record dicts in file order.
        label: name shown in tables and plots (default: the file stem).
        torn_tail: True if an incomplete last line (a run writing now, or a crash)
            was ignored.
    """

    path: Path
    header: dict[str, Any]
    records: list[dict[str, Any]]
    label: str = ""
    torn_tail: bool = False
    indices: NDArray[np.int64] = field(init=False, repr=False, compare=False)
    radii: NDArray[np.float64] = field(init=False, repr=False, compare=False)
    certified: NDArray[np.bool_] = field(init=False, repr=False, compare=False)
    abstained: NDArray[np.bool_] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.path.stem)
        for number, record in enumerate(self.records, start=2):
            missing = [key for key in _REQUIRED if key not in record]
            if missing:
                raise ResultStoreError(
                    f"{self.path}: line {number} lacks the fields {missing}; a record needs "
                    f"{list(_REQUIRED)}"
                )
            radius = record["radius"]
            if not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius < 0:
                raise ResultStoreError(
                    f"{self.path}: line {number} has radius = {radius!r}; valid: finite >= 0"
                )
        radii = np.array([float(r["radius"]) for r in self.records], dtype=np.float64)
        abstained = np.array([bool(r["abstained"]) for r in self.records], dtype=np.bool_)
        correct = np.array([bool(r["correct"]) for r in self.records], dtype=np.bool_)
        indices = np.array([int(r["index"]) for r in self.records], dtype=np.int64)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "radii", radii)
        object.__setattr__(self, "abstained", abstained)
        object.__setattr__(self, "certified", correct & ~abstained)

    @property
    def config(self) -> dict[str, Any]:
        """The run configuration stored in the header."""
        config = self.header.get("config", {})
        return dict(config) if isinstance(config, Mapping) else {}

    def __len__(self) -> int:
        return len(self.records)


def load_results(path: str | os.PathLike[str], *, label: str | None = None) -> ResultFile:
    """Load one result file.

    Args:
        path: a JSON-lines file written by ``smoothcert certify`` /
            :func:`smoothcert.runner.run_certification`.
        label: name for tables and plots (default: the file stem).

    Returns:
        A :class:`ResultFile`.

    Raises:
        ResultStoreError: if the file is missing, not a result file, corrupt before
            its last line, or has records without the fields reports need.
    """
    contents = read_results(path)
    return ResultFile(
        path=contents.path,
        header=contents.header,
        records=contents.records,
        label=label or "",
        torn_tail=contents.torn_tail,
    )


def default_labels(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Short distinct labels for files: their stems, or their paths where stems repeat.

    Example:
        >>> default_labels(["a/x.jsonl", "b/y.jsonl"])
        ['x', 'y']
        >>> default_labels(["a/x.jsonl", "b/x.jsonl"])
        ['a/x', 'b/x']
    """
    stems = [Path(p).stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    return [str(Path(p).with_suffix("")) for p in paths]


def load_many(
    paths: Iterable[str | os.PathLike[str]], *, labels: Sequence[str] | None = None
) -> list[ResultFile]:
    """Load several result files with distinct labels.

    Args:
        paths: result files.
        labels: one label per file (default :func:`default_labels`).

    Returns:
        The loaded files, in order.

    Raises:
        ResultStoreError: as :func:`load_results`, or if the number of labels
            differs from the number of files.
    """
    path_list = list(paths)
    if labels is None:
        labels = default_labels(path_list)
    elif len(labels) != len(path_list):
        raise ResultStoreError(
            f"{len(labels)} labels for {len(path_list)} result files; valid: one per file"
        )
    return [load_results(p, label=lab) for p, lab in zip(path_list, labels, strict=True)]

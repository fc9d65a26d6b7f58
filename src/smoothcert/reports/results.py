r"""Load result files written by a dataset run (reads files only; no torch).

Example:
    >>> from pathlib import Path
    >>> rec = {"index": 0, "label": 1, "correct": True, "prediction": 1, "abstained": False,
    ...        "radius": 0.3, "seconds": 0.1}
    >>> result = ResultFile(Path("toy.jsonl"), header={}, records=[rec])
    >>> result.label, len(result.records), result.radii.tolist(), result.claim
    ('toy', 1, [0.3], 'majority')
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
from smoothcert.results.recertify import validated_records
from smoothcert.results.store import read_results

__all__ = ["ResultFile", "default_labels", "load_many", "load_results"]

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
        for key, default in (("claim", "majority"), ("radius_unit", "l2")):
            values = {r.get(key, default) for r in self.records}
            if len(values) > 1:
                raise ResultStoreError(
                    f"{self.path}: records mix {key} values {sorted(values)}; valid: one "
                    f"{key} per file (one run)"
                )

    @property
    def claim(self) -> str:
        """What the records claim: majority, flagged, prediction or empirical (an attack)."""
        return str(self.records[0].get("claim", "majority")) if self.records else "majority"

    @property
    def radius_unit(self) -> str:
        """``"l2"`` (input units) or ``"tokens"``."""
        return str(self.records[0].get("radius_unit", "l2")) if self.records else "l2"

    @property
    def method(self) -> str:
        """The method of the run (the header's, else the records')."""
        method = str(
            self.config.get("method") or (self.records[0].get("method", "") if self.records else "")
        )
        return {"cohen_top2": "cohen-top2"}.get(method, method)

    @property
    def params(self) -> dict[str, Any]:
        """The method parameters of the run (version-1 files: sigma, n0, n, alpha)."""
        params = self.config.get("params")
        if isinstance(params, Mapping):
            return dict(params)
        return {k: self.config[k] for k in ("sigma", "n0", "n", "alpha") if k in self.config}

    def curves(self) -> NDArray[np.float64]:
        """The ``(examples, d_max + 1)`` array of certified radii ``r(d)`` (hybrid files).

        0 for records that are wrong or abstained; ragged curves are padded with 0, and
        a record without a curve has its radius at d = 0.
        """
        rows = [r.get("radius_curve") or [r["radius"]] for r in self.records]
        width = max((len(c) for c in rows), default=1)
        out = np.zeros((len(rows), width))
        for i, (curve, ok) in enumerate(zip(rows, self.certified, strict=True)):
            if ok:
                out[i, : len(curve)] = curve
        return out

    @property
    def config(self) -> dict[str, Any]:
        """The run configuration stored in the header."""
        config = self.header.get("config", {})
        return dict(config) if isinstance(config, Mapping) else {}

    def __len__(self) -> int:
        return len(self.records)


def load_results(path: str | os.PathLike[str], *, label: str | None = None) -> ResultFile:
    """Load one result file (format version 1 or 2), validating every record.

    Records are never trusted: each is rebuilt, re-decided from its own evidence and
    checked against the header's method and parameters, and ``correct`` must match its
    label and prediction (:func:`smoothcert.results.records.validate_record`), so a
    string ``"false"``, a wrong ``correct`` or a radius its evidence does not certify is a
    one-line error naming the file, the line and the field.

    Args:
        path: a JSON-lines file written by ``smoothcert certify`` /
            :func:`smoothcert.runner.run_certification` (or ``recertify``).
        label: name for tables and plots (default: the file stem).

    Returns:
        A :class:`ResultFile`.

    Raises:
        ResultStoreError: if the file is missing, not a result file, corrupt before
            its last line, or has an invalid record.
    """
    contents = read_results(path)
    return ResultFile(
        path=contents.path,
        header=contents.header,
        records=validated_records(contents),
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

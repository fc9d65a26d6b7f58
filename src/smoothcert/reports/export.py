r"""Export result files to the classic tab-separated format of Cohen et al.'s scripts.

Columns (header line first, tab separated)::

    idx  label  predict  radius  correct  time

* ``idx``: the example's stable index;
* ``predict``: the predicted class, or **-1 for an abstention**. This sentinel
  exists ONLY in this legacy export, for compatibility with tools written for the
  2019 reference scripts; result files and the Python API mark abstentions with an
  explicit ``abstained`` flag;
* ``radius``: certified L2 radius (0 when abstained), full precision;
* ``correct``: 1 if not abstained and ``predict == label``, else 0;
* ``time``: wall-clock time of the example as ``H:MM:SS.ffffff`` (Python's
  ``datetime.timedelta`` string, as the reference scripts write it).

Rows are sorted by ``idx``, so a resumed run exports exactly like an uninterrupted one.
Files of attacks (claim ``"empirical"``, ``smoothcert attack``) are refused: their radius
is where an attack failed, not a certificate, and this format has no column to say so.

Example:
    >>> from pathlib import Path
    >>> from smoothcert.reports.results import ResultFile
    >>> recs = [{"index": 3, "label": 1, "correct": False, "abstained": True,
    ...          "prediction": None, "radius": 0.0, "seconds": 0.5},
    ...         {"index": 1, "label": 2, "correct": True, "abstained": False,
    ...          "prediction": 2, "radius": 0.25, "seconds": 1.25}]
    >>> for line in tsv_text(ResultFile(Path("x.jsonl"), {}, recs)).splitlines():
    ...     print(line.split("\t"))
    ['idx', 'label', 'predict', 'radius', 'correct', 'time']
    ['1', '2', '2', '0.25', '1', '0:00:01.250000']
    ['3', '1', '-1', '0.0', '0', '0:00:00.500000']
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from smoothcert.errors import InvalidParameterError
from smoothcert.reports.results import ResultFile

__all__ = ["TSV_COLUMNS", "export_tsv", "tsv_text"]

TSV_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time")
"""Column names of the legacy export."""


def tsv_text(result: ResultFile) -> str:
    """The legacy TSV export of one result file, as a string ending in a newline.

    Args:
        result: a loaded result file.

    Returns:
        Header line plus one line per record, sorted by index (see the module
        docstring for the columns; ``predict = -1`` marks an abstention here only).

    Raises:
        InvalidParameterError: for a file of an attack (claim ``"empirical"``).
    """
    if result.claim == "empirical":
        raise InvalidParameterError(
            f"{result.path}: claim = 'empirical' (an attack's outcome) is invalid for the "
            "legacy export, whose radius column means a certified radius; valid: files of "
            "certificates (read attack files with `smoothcert report`)"
        )
    lines = ["\t".join(TSV_COLUMNS)]
    for record in sorted(result.records, key=lambda r: int(r["index"])):
        abstained = bool(record["abstained"])
        prediction = record.get("prediction")
        predict = -1 if abstained or prediction is None else int(prediction)
        correct = int(bool(record["correct"]) and not abstained)
        radius = 0.0 if abstained else float(record["radius"])
        seconds = float(record.get("seconds") or 0.0)
        elapsed = str(datetime.timedelta(seconds=seconds))
        if "." not in elapsed:
            elapsed += ".000000"
        lines.append(
            f"{int(record['index'])}\t{int(record['label'])}\t{predict}\t{radius!r}\t"
            f"{correct}\t{elapsed}"
        )
    return "\n".join(lines) + "\n"


def export_tsv(result: ResultFile, output_path: str | os.PathLike[str]) -> Path:
    """Write :func:`tsv_text` of ``result`` to ``output_path`` (parents created).

    Returns:
        The path written.
    """
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tsv_text(result), encoding="utf-8")
    return path

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from smoothcert.errors import InvalidParameterError, ResultStoreError
from smoothcert.reports import (
    TSV_COLUMNS,
    abstain_rate,
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_curve,
    default_labels,
    default_radii,
    export_tsv,
    latex_table,
    load_many,
    load_results,
    markdown_table,
    parse_radii,
    plot_certified_accuracy,
    summarize,
    tsv_text,
)
from smoothcert.runner.store import make_header

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (index, label, prediction or None, radius, seconds)
ROWS = [
    (10, 1, 1, 0.5, 1.5),
    (11, 2, 2, 0.2, 0.25),
    (12, 2, 3, 0.9, 0.1),  # wrong prediction with a large radius: counts 0
    (13, 0, None, 0.0, 2.0),  # abstained
    (14, 4, 4, 1.0, 61.0),
]
RADII = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
EXPECTED_ACC = [3 / 5, 2 / 5, 2 / 5, 1 / 5, 1 / 5, 0.0]
EXPECTED_ACR = (0.5 + 0.2 + 1.0) / 5


def rec(index: int, label: int, prediction: int | None, radius: float, seconds: float) -> dict:
    abstained = prediction is None
    return {
        "type": "record",
        "index": index,
        "label": label,
        "correct": (not abstained) and prediction == label,
        "method": "cohen",
        "prediction": prediction,
        "abstained": abstained,
        "radius": radius,
        "p_lower": 0.9,
        "seconds": seconds,
    }


def write_file(path: Path, rows=ROWS, *, tail: bytes = b"") -> Path:
    lines = [json.dumps(make_header({"sigma": 0.25}, "h" * 64))]
    lines += [json.dumps(rec(*row)) for row in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode() + tail)
    return path


@pytest.fixture
def result_path(tmp_path: Path) -> Path:
    return write_file(tmp_path / "run_a.jsonl")


def test_metrics_match_hand_computed_values(result_path: Path) -> None:
    result = load_results(result_path)
    assert result.label == "run_a" and len(result) == 5
    np.testing.assert_allclose(certified_accuracy(result, RADII), EXPECTED_ACC)
    assert certified_accuracy(result, 0.5) == pytest.approx(0.4)
    assert average_certified_radius(result) == pytest.approx(EXPECTED_ACR)
    assert abstain_rate(result) == pytest.approx(0.2)
    # the same from plain record dicts
    assert average_certified_radius(result.records) == pytest.approx(EXPECTED_ACR)
    summary = summarize(result, RADII)
    assert summary.num_records == 5 and summary.acr == pytest.approx(EXPECTED_ACR)


def test_metrics_reject_empty_records_and_bad_radii(result_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="0 records"):
        average_certified_radius([])
    result = load_results(result_path)
    for bad in ([-0.5], [float("nan")], [], [[0.1, 0.2]], "abc"):
        with pytest.raises(InvalidParameterError, match="valid"):
            certified_accuracy(result, bad)


def test_curve_breakpoints(result_path: Path) -> None:
    radii, acc = certified_accuracy_curve(load_results(result_path))
    assert radii.tolist() == [0.0, 0.2, 0.5, 1.0]
    np.testing.assert_allclose(acc, [0.6, 0.6, 0.4, 0.2])


def test_markdown_table_shape_and_values(tmp_path: Path, result_path: Path) -> None:
    other = write_file(tmp_path / "run_b.jsonl", ROWS[:2])
    table = markdown_table(load_many([result_path, other]), RADII)
    lines = table.splitlines()
    assert len(lines) == 2 + len(RADII) + 3
    assert lines[0] == "| radius | run_a | run_b |"
    assert lines[1] == "|---:|---:|---:|"
    assert all(line.count("|") == 4 for line in lines)
    assert lines[2] == "| 0 | 60.0% | 100.0% |"
    assert lines[3] == "| 0.25 | 40.0% | 50.0% |"
    assert lines[-3] == "| ACR | 0.340 | 0.350 |"
    assert lines[-2] == "| abstained | 20.0% | 0.0% |"
    assert lines[-1] == "| examples | 5 | 2 |"


def test_default_grid_reaches_the_largest_radius(result_path: Path) -> None:
    lines = markdown_table([load_results(result_path)]).splitlines()
    assert lines[2].startswith("| 0 |") and "| 1 |" in lines[-4]
    assert default_radii(1.0).tolist() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert default_radii(3.7).tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]


def test_latex_table_shape(tmp_path: Path, result_path: Path) -> None:
    other = write_file(tmp_path / "b_50%.jsonl", ROWS[:2])
    tex = latex_table(load_many([result_path, other]), [0.0, 0.5])
    lines = tex.splitlines()
    assert lines[0] == r"\begin{tabular}{lrr}" and lines[-1] == r"\end{tabular}"
    assert lines[2] == r"radius & run\_a & b\_50\% \\"
    assert lines.count(r"\midrule") == 2 and r"\toprule" in lines and r"\bottomrule" in lines
    body = [line for line in lines if line.endswith(r"\\")]
    assert len(body) == 1 + 2 + 3 and all(line.count("&") == 2 for line in body)
    assert r"0.5 & 40.0 & 50.0 \\" in lines
    assert r"abstained (\%) & 20.0 & 0.0 \\" in lines


def test_empty_file_shows_na(tmp_path: Path, result_path: Path) -> None:
    empty = write_file(tmp_path / "empty.jsonl", [])
    lines = markdown_table(load_many([result_path, empty]), [0.0]).splitlines()
    assert lines[2] == "| 0 | 60.0% | n/a |"
    assert lines[-1] == "| examples | 5 | 0 |"


def test_png_is_written(tmp_path: Path, result_path: Path) -> None:
    other = write_file(tmp_path / "run_b.jsonl", ROWS[:2])
    out = plot_certified_accuracy(
        load_many([result_path, other]), tmp_path / "plots" / "curve.png", title="toy"
    )
    data = out.read_bytes()
    assert out == tmp_path / "plots" / "curve.png"
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    with pytest.raises(InvalidParameterError):
        plot_certified_accuracy([], tmp_path / "x.png")


def test_tsv_export_columns(tmp_path: Path, result_path: Path) -> None:
    result = load_results(result_path)
    text = tsv_text(result)
    rows = [line.split("\t") for line in text.splitlines()]
    assert tuple(rows[0]) == TSV_COLUMNS == ("idx", "label", "predict", "radius", "correct", "time")
    assert len(rows) == 6 and all(len(r) == 6 for r in rows)
    assert rows[1] == ["10", "1", "1", "0.5", "1", "0:00:01.500000"]
    assert rows[3] == ["12", "2", "3", "0.9", "0", "0:00:00.100000"]
    assert rows[4] == ["13", "0", "-1", "0.0", "0", "0:00:02.000000"]  # abstain -> -1
    assert rows[5][5] == "0:01:01.000000"
    out = export_tsv(result, tmp_path / "out" / "run.tsv")
    assert out.read_text() == text


def test_tsv_rows_are_sorted_by_index(tmp_path: Path) -> None:
    path = write_file(tmp_path / "shuffled.jsonl", [ROWS[3], ROWS[0], ROWS[4]])
    idx = [line.split("\t")[0] for line in tsv_text(load_results(path)).splitlines()[1:]]
    assert idx == ["10", "13", "14"]


def test_torn_tail_is_ignored_when_reading(tmp_path: Path) -> None:
    path = write_file(tmp_path / "running.jsonl", tail=b'{"type": "record", "ind')
    result = load_results(path)
    assert result.torn_tail and len(result) == 5
    assert path.read_bytes().endswith(b'"ind')  # reading never modifies the file


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ResultStoreError, match="does not exist"):
        load_results(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps(make_header({}, "h")), json.dumps({"type": "record", "index": 0})]
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ResultStoreError, match="lacks the fields"):
        load_results(bad)
    with pytest.raises(ResultStoreError, match="labels"):
        load_many([bad], labels=["a", "b"])


def test_labels_and_radii_parsing() -> None:
    assert default_labels(["x/a.jsonl", "y/b.jsonl"]) == ["a", "b"]
    assert default_labels(["x/a.jsonl", "y/a.jsonl"]) == ["x/a", "y/a"]
    assert parse_radii("0,0.5, 1").tolist() == [0.0, 0.5, 1.0]
    for bad, needle in (("0,abc", "'abc'"), ("0,-1", "-1.0"), ("", "''"), ("nan", "nan")):
        with pytest.raises(InvalidParameterError, match="valid") as info:
            parse_radii(bad)
        assert needle in str(info.value)

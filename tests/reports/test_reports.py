from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from result_records import cohen_record, write_result_file
from smoothcert.errors import InvalidParameterError, ResultStoreError
from smoothcert.reports import (
    TSV_COLUMNS,
    abstain_rate,
    average_certified_radius,
    certified_accuracy,
    certified_accuracy_curve,
    claim_heading,
    default_labels,
    default_radii,
    default_title,
    dr_grid,
    dr_table,
    export_tsv,
    group_by_claim,
    latex_table,
    load_many,
    load_results,
    markdown_table,
    parse_radii,
    plot_certified_accuracy,
    plot_dr_heatmap,
    summarize,
    tsv_text,
)
from smoothcert.reports.results import ResultFile
from smoothcert.results import make_header

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
    # a real record: its evidence certifies exactly this prediction and radius
    return cohen_record(index, label, prediction, radius, seconds)


def write_file(path: Path, rows=ROWS, *, tail: bytes = b"") -> Path:
    return write_result_file(path, [rec(*row) for row in rows], tail=tail)


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


def test_tsv_export_refuses_an_attack_file(result_path: Path) -> None:
    # an attack's radius is where the attack failed, not a certificate: the legacy radius
    # column cannot say so, so the export refuses (the same records as certificates pass)
    records = load_results(result_path).records
    attack = [{**r, "claim": "empirical"} for r in records]
    with pytest.raises(InvalidParameterError, match="claim = 'empirical'"):
        tsv_text(ResultFile(Path("attack.jsonl"), {}, attack))
    assert tsv_text(ResultFile(Path("cert.jsonl"), {}, records)).count("\n") == 6


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
    # records in files are validated on load (one line naming file, line and field)
    with pytest.raises(ResultStoreError, match=r"bad.jsonl: line 2: field label = None"):
        load_results(bad)
    with pytest.raises(ResultStoreError, match="labels"):
        load_many([bad], labels=["a", "b"])
    # a ResultFile built in memory still names the fields a record lacks
    with pytest.raises(ResultStoreError, match="lacks the fields"):
        ResultFile(bad, {}, [{"type": "record", "index": 0}])


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"correct": "false"}, "field correct = 'false' is invalid"),
        ({"label": 2}, "field correct = True contradicts label = 2"),
        ({"radius": 1e9}, "field radius = 1000000000.0 is not what its evidence certifies"),
        ({"prediction": 2}, "field prediction = 2 is not what its evidence certifies"),
    ],
)
def test_untrusted_record_fields_are_refused(tmp_path: Path, change: dict, needle: str) -> None:
    record = {**rec(10, 1, 1, 0.5, 1.5), **change}
    path = write_result_file(tmp_path / "altered.jsonl", [rec(*ROWS[1]), record])
    with pytest.raises(ResultStoreError) as info:
        load_results(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line 3: ") and needle in message
    assert "\n" not in message


def test_labels_and_radii_parsing() -> None:
    assert default_labels(["x/a.jsonl", "y/b.jsonl"]) == ["a", "b"]
    assert default_labels(["x/a.jsonl", "y/a.jsonl"]) == ["x/a", "y/a"]
    assert parse_radii("0,0.5, 1").tolist() == [0.0, 0.5, 1.0]
    for bad, needle in (("0,abc", "'abc'"), ("0,-1", "-1.0"), ("", "''"), ("nan", "nan")):
        with pytest.raises(InvalidParameterError, match="valid") as info:
            parse_radii(bad)
        assert needle in str(info.value)


def memory_file(name: str, records: list[dict], **fields) -> ResultFile:
    return ResultFile(Path(f"{name}.jsonl"), {}, [{**r, **fields} for r in records])


def test_tables_never_mix_claims_or_radius_units(result_path: Path) -> None:
    majority = load_results(result_path)
    minimal = [{"index": 0, "label": 1, "correct": True, "abstained": False, "radius": 0.5}]
    flagged = memory_file("filter", minimal, claim="flagged")
    tokens = memory_file("tokens", minimal, radius_unit="tokens")
    assert group_by_claim([majority, flagged, tokens]) == [[majority], [flagged], [tokens]]
    assert group_by_claim([majority, majority]) == [[majority, majority]]
    for other in (flagged, tokens):
        with pytest.raises(InvalidParameterError, match="different claims or .* radius units"):
            markdown_table([majority, other], [0.0])
    assert markdown_table([tokens], [0.0]).startswith("| d (tokens) | tokens |")
    assert "stay flagged" in claim_heading("flagged")
    with pytest.raises(ResultStoreError, match="records mix claim values"):
        ResultFile(Path("mixed.jsonl"), {}, [*minimal, {**minimal[0], "claim": "flagged"}])


def test_hybrid_files_get_a_dr_grid_table_and_heatmap(tmp_path: Path) -> None:
    records = [
        {"index": 0, "label": 1, "correct": True, "abstained": False, "radius": 0.5,
         "radius_curve": [0.5, 0.2]},
        {"index": 1, "label": 1, "correct": True, "abstained": False, "radius": 0.3,
         "radius_curve": [0.3, 0.3, 0.1]},
        {"index": 2, "label": 0, "correct": False, "abstained": False, "radius": 0.9,
         "radius_curve": [0.9, 0.9, 0.9]},  # wrong: never counts
        {"index": 3, "label": 0, "correct": False, "abstained": True, "radius": 0.0,
         "radius_curve": [0.0, 0.0, 0.0]},
    ]  # fmt: skip
    hybrid = memory_file("hybrid", records)
    grid = dr_grid(hybrid, [0, 1, 2, 3], [0.0, 0.25, 0.4])
    np.testing.assert_allclose(
        grid, [[0.5, 0.5, 0.25], [0.5, 0.25, 0.0], [0.25, 0.0, 0.0], [0.0, 0.0, 0.0]]
    )
    lines = dr_table(hybrid, [0, 2], [0.0, 0.4]).splitlines()
    assert lines == ["| d \\ r | 0 | 0.4 |", "|---:|---:|---:|", "| 0 | 50.0% | 25.0% |",
                     "| 2 | 25.0% | 0.0% |"]  # fmt: skip
    out = plot_dr_heatmap(hybrid, tmp_path / "dr.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(InvalidParameterError, match="valid"):
        dr_grid(hybrid, [-1], [0.0])


def test_default_title_names_method_parameters_and_size(result_path: Path) -> None:
    assert default_title([load_results(result_path)]) == (
        "cohen, sigma=0.25, n=1000, alpha=0.001, 5 examples"
    )

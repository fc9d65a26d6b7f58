from __future__ import annotations

import json
from pathlib import Path

import pytest

from result_records import cohen_record
from smoothcert.errors import ResultStoreError
from smoothcert.records import CertifyResult
from smoothcert.results import (
    FORMAT,
    FORMAT_VERSION,
    READABLE_VERSIONS,
    ResultStore,
    read_header,
    read_results,
)

CONFIG = {"model": "m", "sigma": 0.25, "n": 100}
HASH_A = "a" * 64
HASH_B = "b" * 64


def record(index: int, *, label: int = 1) -> dict[str, object]:
    # a real version-2 record (evidence with selection and estimation counts)
    return cohen_record(index, label, label, 0.1 * (index + 1), 0.01)


def write(path: Path, indices: list[int]) -> list[dict[str, object]]:
    recs = [record(i) for i in indices]
    with ResultStore.open(path, config=CONFIG, config_hash=HASH_A) as store:
        for rec in recs:
            store.append(rec)
    return recs


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "run.jsonl"
    recs = write(path, [3, 1, 4])
    contents = read_results(path)
    assert contents.records == recs
    assert not contents.torn_tail
    header = contents.header
    assert header["type"] == "header" and header["format"] == FORMAT
    assert header["format_version"] == FORMAT_VERSION == 2 and READABLE_VERSIONS == (1, 2)
    assert header["config"] == CONFIG and header["config_hash"] == HASH_A
    assert set(header["versions"]) == {"smoothcert", "torch", "numpy", "scipy", "python"}
    assert header["created"].endswith("+00:00")
    assert read_header(path) == header
    # every line is one JSON object terminated by a newline
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5
    fields = {k: v for k, v in recs[0].items() if k not in ("type", "index", "label", "correct")}
    back = CertifyResult.from_dict(fields)
    assert back.to_dict() == fields
    assert back.counts_estimation == tuple(fields["evidence"]["stages"][1]["counts"])
    assert back.n0 == 10 and back.n == 1000 and sum(back.counts_estimation) == 1000


def test_reopen_resumes(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write(path, [0, 1])
    with ResultStore.open(path, config=CONFIG, config_hash=HASH_A) as store:
        assert store.done_indices == {0, 1}
        assert not store.repaired
        store.append(record(2))
        with pytest.raises(ResultStoreError, match="repeats index 1"):
            store.append(record(1))
    assert [r["index"] for r in read_results(path).records] == [0, 1, 2]


def test_config_hash_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write(path, [0])
    before = path.read_bytes()
    with pytest.raises(ResultStoreError) as info:
        ResultStore.open(path, config={**CONFIG, "sigma": 0.5}, config_hash=HASH_B)
    message = str(info.value)
    assert str(path) in message and HASH_A in message and HASH_B in message
    assert "sigma: 0.25 in the file, 0.5 now" in message
    assert path.read_bytes() == before


def test_nested_parameter_differences_are_named(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    config = {"method": "cohen", "params": {"sigma": 0.25, "n": 100}}
    with ResultStore.open(path, config=config, config_hash=HASH_A):
        pass
    other = {"method": "cohen", "params": {"sigma": 0.25, "n": 200}}
    with pytest.raises(ResultStoreError) as info:
        ResultStore.open(path, config=other, config_hash=HASH_B)
    assert "(params.n: 100 in the file, 200 now)" in str(info.value)


def test_truncated_last_line_is_dropped_on_open(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write(path, [0, 1, 2])
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    cut = last_start + (len(data) - last_start) // 2
    path.write_bytes(data[:cut])  # crash mid-write of record 2

    contents = read_results(path)  # read-only: ignores the torn line, changes nothing
    assert contents.torn_tail and [r["index"] for r in contents.records] == [0, 1]
    assert path.read_bytes() == data[:cut]

    with ResultStore.open(path, config=CONFIG, config_hash=HASH_A) as store:
        assert store.repaired
        assert store.done_indices == {0, 1}
        assert path.read_bytes() == data[:last_start]
        store.append(record(2))
    assert path.read_bytes() == data


def test_corrupt_last_line_with_newline_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write(path, [0, 1])
    good = path.read_bytes()
    path.write_bytes(good + b"\x00\x00\x00garbage\n")
    with ResultStore.open(path, config=CONFIG, config_hash=HASH_A) as store:
        assert store.repaired and store.done_indices == {0, 1}
    assert path.read_bytes() == good


def test_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write(path, [0, 1])
    good = path.read_bytes()
    path.write_bytes(good[:-1])
    with ResultStore.open(path, config=CONFIG, config_hash=HASH_A) as store:
        assert store.done_indices == {0, 1} and not store.repaired
    assert path.read_bytes() == good


def test_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write(path, [0, 1, 2])
    lines = path.read_bytes().split(b"\n")
    lines[2] = lines[2][:20]  # record 1 damaged, record 2 intact after it
    path.write_bytes(b"\n".join(lines))
    damaged = path.read_bytes()
    for action in (
        lambda: read_results(path),
        lambda: ResultStore.open(path, config=CONFIG, config_hash=HASH_A),
    ):
        with pytest.raises(ResultStoreError, match=r"line 3 of 4 is corrupt"):
            action()
    assert path.read_bytes() == damaged


def test_duplicate_index_in_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write(path, [0, 1])
    with path.open("ab") as fh:
        fh.write((json.dumps(record(1)) + "\n").encode())
    with pytest.raises(ResultStoreError, match="line 4 repeats index 1"):
        read_results(path)


def test_torn_header_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(b'{"type": "header", "form')
    with ResultStore.open(path, config=CONFIG, config_hash=HASH_A) as store:
        assert store.repaired and store.done_indices == frozenset()
    assert read_header(path)["config_hash"] == HASH_A


def test_foreign_files_are_refused_untouched(tmp_path: Path) -> None:
    for name, content in [
        ("notes.txt", b"hello world"),
        ("data.jsonl", b'{"a": 1}\n'),
        ("multi.txt", b"a\nb\n"),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ResultStoreError):
            ResultStore.open(path, config=CONFIG, config_hash=HASH_A)
        assert path.read_bytes() == content


def test_empty_or_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ResultStoreError, match="does not exist"):
        read_results(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    with pytest.raises(ResultStoreError, match="empty"):
        read_results(empty)
    with ResultStore.open(empty, config=CONFIG, config_hash=HASH_A):
        pass
    assert read_results(empty).records == []
    with pytest.raises(ResultStoreError, match="directory"):
        ResultStore.open(tmp_path, config=CONFIG, config_hash=HASH_A)


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    write(path, [0])
    header, rest = path.read_text().split("\n", 1)
    obj = json.loads(header)
    obj["format_version"] = 99
    path.write_text(json.dumps(obj) + "\n" + rest)
    with pytest.raises(ResultStoreError, match="format_version = 99"):
        read_results(path)


def test_second_writer_is_locked_out(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with ResultStore.open(path, config=CONFIG, config_hash=HASH_A) as store:
        with pytest.raises(ResultStoreError, match="locked"):
            ResultStore.open(path, config=CONFIG, config_hash=HASH_A)
        store.append(record(0))
    with ResultStore.open(path, config=CONFIG, config_hash=HASH_A) as store:
        assert store.done_indices == {0}


def test_bad_records_are_rejected_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    with ResultStore.open(path, config=CONFIG, config_hash=HASH_A) as store:
        size = path.stat().st_size
        with pytest.raises(ResultStoreError, match="not JSON-serialisable"):
            store.append({**record(0), "radius": float("nan")})
        with pytest.raises(ResultStoreError, match="index"):
            store.append({**record(0), "index": -1})
        with pytest.raises(ResultStoreError, match="type"):
            store.append({**record(0), "type": "header"})
        assert path.stat().st_size == size
    with pytest.raises(ResultStoreError, match="closed"):
        store.append(record(0))


def test_selections_are_recorded_once_per_run(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    first = {"num_examples": 2, "skip": 1, "start": 0}
    second = {"num_examples": 2, "skip": 1, "start": 5}
    with ResultStore.open(path, config=CONFIG, config_hash=HASH_A) as store:
        store.record_selection(first)
        store.append(record(0))
        store.record_selection(first)  # the same selection again: no new line
        store.append(record(1))
    with ResultStore.open(path, config=CONFIG, config_hash=HASH_A) as store:
        assert store.selections == [first] and store.done_indices == {0, 1}
        store.record_selection(second)
        store.append(record(5))
    contents = read_results(path)
    assert contents.selections == (first, second)
    assert [r["index"] for r in contents.records] == [0, 1, 5]
    types = [json.loads(line)["type"] for line in path.read_text().splitlines()]
    assert types == ["header", "selection", "record", "record", "selection", "record"]


def test_version_1_files_are_read_but_never_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "v1.jsonl"
    write(path, [0])
    header, rest = path.read_text().split("\n", 1)
    obj = json.loads(header)
    obj["format_version"] = 1
    path.write_text(json.dumps(obj) + "\n" + rest)
    before = path.read_bytes()
    assert read_header(path)["format_version"] == 1
    with pytest.raises(ResultStoreError, match="format_version 1 result file"):
        ResultStore.open(path, config=CONFIG, config_hash=HASH_A)
    assert path.read_bytes() == before

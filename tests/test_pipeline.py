"""The one pipeline every method plugs into: registry, runs, recertify, v1 files, validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline_toys import METHOD_RUNS, toy_for
from smoothcert.cli import app
from smoothcert.errors import InvalidParameterError, ResultStoreError
from smoothcert.methods.registry import get_method, method_names
from smoothcert.reports import load_results, tsv_text
from smoothcert.results import read_results
from smoothcert.results.recertify import recertify
from smoothcert.runner import RunConfig, run_certification

V1_DATA = Path(__file__).parent / "results" / "data"


def run_method(tmp_path: Path, method: str, *, name: str = "run", **kw: Any) -> Path:
    kind, params = METHOD_RUNS[method]
    model, data = toy_for(kind)
    config = RunConfig(
        method=method,
        params=params,
        model="toy",
        dataset=data.name,
        split="test",
        batch_size=64,
        seed=3,
    )
    return run_certification(config, tmp_path / f"{name}.jsonl", model=model, dataset=data, **kw)


def test_every_registered_method_has_a_pipeline_run() -> None:
    # A method added to the registry without a run here fails this test.
    assert set(METHOD_RUNS) == set(method_names())


@pytest.mark.parametrize("method", sorted(METHOD_RUNS))
def test_recertify_with_the_original_settings_reproduces_every_record(tmp_path, method) -> None:
    path = run_method(tmp_path, method)
    original = read_results(path)
    assert len(original.records) == 6
    assert {r["method"] for r in original.records} == {method}
    out = recertify(path, tmp_path / "again.jsonl")
    again = read_results(out)
    assert again.records == original.records  # every field, seconds included
    assert again.header["config"] == original.header["config"]
    assert again.header["config_hash"] == original.header["config_hash"]
    assert again.header["recertified_from"]["config_hash"] == original.header["config_hash"]


@pytest.mark.parametrize("method", sorted(METHOD_RUNS))
def test_shared_forward_batches_give_the_same_records(tmp_path, method) -> None:
    one = read_results(run_method(tmp_path, method, name="one")).records
    many = read_results(run_method(tmp_path, method, name="many", examples_per_batch=4)).records

    def strip(records):
        out = []
        for r in records:
            r = {k: v for k, v in r.items() if k != "seconds"}
            r["evidence"] = {k: v for k, v in r["evidence"].items() if k != "seconds"}
            out.append(r)
        return out

    assert strip(one) == strip(many)


def test_recertify_top2_equals_a_top2_run_on_the_same_counts(tmp_path) -> None:
    cohen = run_method(tmp_path, "cohen", name="cohen")
    top2_run = read_results(run_method(tmp_path, "cohen-top2", name="top2")).records
    top2_re = read_results(recertify(cohen, tmp_path / "re.jsonl", method="cohen-top2")).records
    for a, b in zip(top2_run, top2_re, strict=True):
        assert a["evidence"]["stages"] == b["evidence"]["stages"]
        for key in ("prediction", "abstained", "radius", "p_lower", "p_upper", "method"):
            assert a[key] == b[key]


def test_recertify_at_another_alpha_keeps_counts_and_moves_bounds(tmp_path) -> None:
    path = run_method(tmp_path, "hybrid")
    before = read_results(path).records
    after = read_results(recertify(path, tmp_path / "a.jsonl", alpha=1e-6)).records
    for old, new in zip(before, after, strict=True):
        old_stages, new_stages = old["evidence"]["stages"], new["evidence"]["stages"]
        assert [s["counts"] for s in old_stages] == [s["counts"] for s in new_stages]
        assert new["alpha"] == 1e-6 and new_stages[-1]["alpha"] == 1e-6
        assert new["p_lower"] < old["p_lower"]
        assert all(a <= b for a, b in zip(new["radius_curve"], old["radius_curve"], strict=True))


def test_recertify_rejects_bad_requests_before_writing(tmp_path) -> None:
    path = run_method(tmp_path, "tokens")
    out = tmp_path / "out.jsonl"
    with pytest.raises(InvalidParameterError, match="cannot re-certify 'tokens'"):
        recertify(path, out, method="cohen")
    with pytest.raises(InvalidParameterError, match="bound = 'hoeffding' is invalid"):
        recertify(path, out, bound="hoeffding")
    with pytest.raises(InvalidParameterError, match="alpha = 1.5 is invalid"):
        recertify(path, out, alpha=1.5)
    with pytest.raises(InvalidParameterError, match="is the input file"):
        recertify(path, path)
    assert not out.exists()


@pytest.mark.parametrize("name", ["v1_digits_cohen.jsonl", "v1_digits_top2.jsonl"])
def test_version_1_files_load_export_and_recertify(tmp_path, name) -> None:
    v1 = V1_DATA / name
    raw = read_results(v1)
    assert raw.header["format_version"] == 1
    loaded = load_results(v1)
    assert len(loaded) == 6 and loaded.claim == "majority"
    tsv = tsv_text(loaded).splitlines()
    assert tsv[0].split("\t")[:4] == ["idx", "label", "predict", "radius"] and len(tsv) == 7
    out = recertify(v1, tmp_path / "v2.jsonl")
    v2 = read_results(out)
    assert v2.header["format_version"] == 2
    assert v2.header["config"]["method"] == raw.header["config"]["method"].replace("_", "-")
    for old, new in zip(raw.records, v2.records, strict=True):
        assert new["index"] == old["index"] and new["prediction"] == old["prediction"]
        assert new["radius"] == pytest.approx(old["radius"], rel=1e-6, abs=1e-12)
        stages = new["evidence"]["stages"]
        assert stages[0]["counts"] == old["counts_selection"]
        assert stages[1]["counts"] == old["counts_estimation"]


def tamper(tmp_path: Path, source: Path, line: int, **changes: Any) -> Path:
    lines = source.read_text().splitlines()
    record = json.loads(lines[line - 1])
    record.update(changes)
    lines[line - 1] = json.dumps(record)
    path = tmp_path / "tampered.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"correct": "false"}, "field correct = 'false'"),
        ({"label": 0, "correct": True}, "field correct = True contradicts label = 0"),
        ({"radius": 1e9}, "field radius = 1000000000.0 is not what its evidence certifies"),
        ({"prediction": 0}, "field prediction = 0 is not what its evidence certifies"),
        ({"index": -1}, "index = -1"),
    ],
)
def test_tampered_records_are_one_line_errors_naming_file_line_and_field(
    tmp_path, changes, field
) -> None:
    source = run_method(tmp_path, "cohen")
    # line 1 header, line 2 the selection, line 3 the first record (label 2, prediction 2)
    assert json.loads(source.read_text().splitlines()[2])["prediction"] == 2
    path = tamper(tmp_path, source, 3, **changes)
    with pytest.raises(ResultStoreError) as info:
        load_results(path)
    message = str(info.value)
    assert field in message and "\n" not in message
    assert str(path) in message and "line 3" in message


def test_each_appended_selection_is_recorded_in_the_file(tmp_path) -> None:
    kind, params = METHOD_RUNS["cohen"]
    model, data = toy_for(kind)

    def run(**selection: Any) -> None:
        config = RunConfig(
            params=params, model="toy", dataset=data.name, batch_size=64, **selection
        )
        run_certification(config, tmp_path / "r.jsonl", model=model, dataset=data)

    run(num_examples=2)
    run(num_examples=2, skip=2)  # appends position 2 only (0 is done)
    run(num_examples=2, skip=2)  # nothing to do: no new selection line
    contents = read_results(tmp_path / "r.jsonl")
    assert list(contents.selections) == [
        {"num_examples": 2, "skip": 1, "start": 0},
        {"num_examples": 2, "skip": 2, "start": 0},
    ]
    assert [r["index"] for r in contents.records] == [int(i) for i in data.indices[[0, 1, 2]]]


runner = CliRunner()


def cli_error(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_method_choices_are_exactly_the_registry() -> None:
    import typer

    certify = typer.main.get_command(app).commands["certify"]  # type: ignore[attr-defined]
    (option,) = [p for p in certify.params if p.name == "method"]
    assert option.help == f"Certification method: {', '.join(method_names())}."
    err = cli_error("certify", "--method", "gauss")
    assert f"valid values: {', '.join(method_names())}" in err


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["--method", "tokens", "--dataset", "listings", "--sigma", "0.5"],
            ["--sigma is not an option of method 'tokens'"],
        ),
        (["--method", "cohen", "--beta", "0.3"], ["--beta is not an option of method 'cohen'"]),
        (["--method", "cohen-predict", "--n0", "5"], ["--n0 is not an option", "--n, --alpha"]),
        (
            ["--method", "hybrid", "--beta", "0.3", "--alphabet", "9"],
            ["does not fit method 'hybrid'"],
        ),
        (["--method", "cohen", "--dataset", "listings"], ["does not fit method 'cohen'"]),
        (
            ["--method", "tokens", "--dataset", "listings", "--beta", "1.5"],
            ["beta = 1.5 is invalid"],
        ),
        (["--method", "tokens"], ["does not fit method 'tokens'", "valid: a text or text_image"]),
        (["--method", "cohen", "-n", "2000000000"], ["above the limit", "--allow-large"]),
        (["--backend", "spark"], ["backend = 'spark' is invalid; valid values: local, ray"]),
    ],
)
def test_cli_bad_input_for_every_method_is_one_line_before_sampling(
    tmp_path, args, needles
) -> None:
    out = tmp_path / "x.jsonl"
    err = cli_error("certify", *args, "--output", str(out), "--no-progress")
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.exists()


def test_cli_unwritable_output_fails_first_and_names_the_output(tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    err = cli_error("certify", "--output", str(blocker / "sub" / "r.jsonl"))
    assert "output = " in err and "cannot be created" in err and "a_file" in err


def test_cli_output_that_is_a_directory_fails_first(tmp_path) -> None:
    err = cli_error("certify", "--output", str(tmp_path))
    assert f"output = {str(tmp_path)!r} is invalid" in err and "directory" in err


def test_cli_recertify_and_report_a_hybrid_file(tmp_path) -> None:
    path = run_method(tmp_path, "hybrid")
    out = tmp_path / "re.jsonl"
    result = runner.invoke(app, ["recertify", str(path), "--output", str(out), "--alpha", "0.05"])
    assert result.exit_code == 0, result.output
    assert read_results(out).records[0]["alpha"] == 0.05
    png = tmp_path / "plot.png"
    result = runner.invoke(app, ["report", str(path), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "| d \\ r |" in result.output  # the (d, r) table
    assert png.exists() and (tmp_path / "run_dr.png").exists()


def test_registry_specs_are_complete() -> None:
    for name in method_names():
        spec = get_method(name)
        assert spec.name == name and callable(spec.decide)
        assert callable(spec.load_preparer())
        assert spec.input_kind in ("image", "tokens", "tokens+image")

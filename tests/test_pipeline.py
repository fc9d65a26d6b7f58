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


@pytest.mark.parametrize(
    ("method", "kind", "needle"),
    [
        ("hybrid", "tabular", "(tabular examples) does not fit method 'hybrid'"),
        ("hybrid-sequential", "tabular", "does not fit method 'hybrid-sequential'"),
        ("hybrid-fields", "text_image", "(text_image examples) does not fit method"),
        ("attack-fields", "text_image", "does not fit method 'attack-fields'"),
    ],
)
def test_table_rows_fit_only_the_fields_methods(tmp_path, method, kind, needle) -> None:
    # the "fields" input kind: a tabular dataset is refused by the (tokens, image) methods,
    # and the fields methods refuse (tokens, image) data, before any sampling
    model, data = toy_for(kind)
    config = RunConfig(method=method, params=METHOD_RUNS[method][1], model="toy", dataset=data.name)
    with pytest.raises(InvalidParameterError, match="valid: a") as err:
        run_certification(config, tmp_path / "r.jsonl", model=model, dataset=data)
    assert needle in str(err.value)
    assert not (tmp_path / "r.jsonl").exists()


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
    with pytest.raises(InvalidParameterError, match="bound = 'gauss' is invalid"):
        recertify(path, out, bound="gauss")
    with pytest.raises(InvalidParameterError, match="bound/combiner cannot re-certify 'tokens'"):
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
        (["--method", "cohen-sequential"], ["target radii (target mode) or a tolerance"]),
        (
            ["--method", "cohen-sequential", "--target-radius", "-0.5"],
            ["target_radius = -0.5 is invalid"],
        ),
        (
            ["--method", "cohen-sequential", "--tolerance", "0.1", "--max-samples", "0"],
            ["max_samples = 0 is invalid"],
        ),
        (["--method", "cohen", "--tolerance", "0.1"], ["--tolerance is not an option"]),
        (
            ["--method", "hybrid-sequential", "--dataset", "listings", "--target-point", "2"],
            ["--target-point '2' is invalid; valid: D,R"],
        ),
        (
            [
                "--method",
                "hybrid-sequential",
                "--dataset",
                "listings",
                "--beta",
                "0.7",
                "--target-point",
                "1,-1",
            ],
            ["target r = -1.0 is invalid"],
        ),
        (
            ["--method", "hybrid-sequential", "--dataset", "listings", "--sigma", "0.5"],
            ["targets"],
        ),
        (
            ["--method", "cohen-sequential", "--tolerance", "0.1", "-n", "5"],
            ["--n is not an option of method 'cohen-sequential'", "--max-samples"],
        ),
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
        assert spec.input_kind in ("image", "tokens", "tokens+image", "fields")


def test_given_threat_noises_and_certifies_exactly_each_examples_positions(tmp_path) -> None:
    import numpy as np
    import torch

    from pipeline_toys import TextImageModel, text_image_dataset
    from smoothcert.methods.sampler import draw
    from smoothcert.methods.tokens import prepare

    data = text_image_dataset(6, with_eligible=True)
    params = {"beta": 0.5, "alphabet": 7, "n0": 20, "n": 300, "alpha": 0.01}
    config = RunConfig(
        method="tokens",
        params={**params, "threat": "given", "threat_d_max": 3},
        model="toy",
        dataset=data.name,
        batch_size=64,
    )
    path = run_certification(
        config, tmp_path / "given.jsonl", model=TextImageModel().eval(), dataset=data
    )
    for record, mask in zip(read_results(path).records, data.eligible, strict=True):
        facts = record["evidence"]["facts"]
        positions = np.flatnonzero(mask).tolist()
        assert facts["eligible_positions"] == positions
        assert facts["num_eligible"] == len(positions)
        assert facts["d_max"] == min(3, len(positions))  # clamped to this example's D
        assert record["radius"] <= facts["d_max"]

    # The kernel noises the given positions and nothing else.
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, tokens, images):
            seen.append(tokens.clone())
            return TextImageModel()(tokens, images)

    tokens = torch.as_tensor(data.tokens[3])
    image = torch.as_tensor(data.images[3])
    typed = config.method_params()
    prepared = prepare(Recorder().eval(), (tokens, image), typed, seed=0, eligible=data.eligible[3])
    draw(prepared)
    noisy = torch.cat(seen[1:])  # seen[0] is the clean probe
    changed = (noisy != tokens).any(dim=0).numpy()
    assert changed[data.eligible[3]].all() and not changed[~data.eligible[3]].any()


def test_given_threat_without_positions_and_positions_with_another_threat_fail() -> None:
    from pipeline_toys import TextImageModel, text_image_dataset

    with_mask = text_image_dataset(4, with_eligible=True)
    without = text_image_dataset(4)
    base = {"beta": 0.5, "alphabet": 7, "n0": 20, "n": 300, "alpha": 0.01}
    given = RunConfig(method="tokens", params={**base, "threat": "given"}, dataset=without.name)
    with pytest.raises(InvalidParameterError, match="example index 10: threat = 'given' needs"):
        run_certification(
            given, "/nonexistent-dir-ok/x.jsonl", model=TextImageModel().eval(), dataset=without
        )
    # another threat on a dataset with masks ignores the masks
    anywhere = RunConfig(method="tokens", params=base, dataset=with_mask.name)
    from smoothcert.runner.run import RunJob

    job = RunJob(anywhere, device="cpu", dataset=with_mask)
    job.load_dataset()
    ((_, _, _, options),) = job.examples([0])
    assert options == {}


def test_bad_per_example_input_fails_before_the_result_file_exists(tmp_path) -> None:
    from pipeline_toys import TextImageModel, text_image_dataset

    data = text_image_dataset(4)
    base = {"beta": 0.5, "alphabet": 7, "n0": 20, "n": 300, "alpha": 0.01}
    cases = [
        ({**base, "target": 5, "tau": 0.1}, "target = 5 is invalid"),
        ({**base, "alphabet": 4}, "is invalid; valid: 0 <= token id <= 3"),
        ({**base, "threat": "last_d", "num_positions": 9}, "num_positions = 9 is invalid"),
    ]
    for params, needle in cases:
        config = RunConfig(method="tokens", params=params, dataset=data.name)
        out = tmp_path / "never.jsonl"
        with pytest.raises(InvalidParameterError, match="example index 10") as info:
            run_certification(config, out, model=TextImageModel().eval(), dataset=data)
        assert needle in str(info.value)
        assert not out.exists()


def test_a_record_from_another_run_is_refused(tmp_path) -> None:
    path = run_method(tmp_path, "cohen")
    other = run_method(tmp_path, "cohen-top2", name="other")
    lines = path.read_text().splitlines()
    lines.append(other.read_text().splitlines()[-1].replace('"index": 85', '"index": 999'))
    spliced = tmp_path / "spliced.jsonl"
    spliced.write_text("\n".join(lines) + "\n")
    with pytest.raises(ResultStoreError, match="field method = 'cohen-top2' differs"):
        load_results(spliced)
    # same method, other parameters (alpha 0.5 makes larger radii)
    record = json.loads(lines[2])
    record["index"] = 998
    record["params"]["alpha"] = 0.5
    spliced.write_text("\n".join([*lines[:-1], json.dumps(record)]) + "\n")
    with pytest.raises(ResultStoreError, match="field params.alpha differs"):
        load_results(spliced)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(radius_curve=r["radius_curve"][:1]),
        lambda r: r.update(radius_curve=[*r["radius_curve"], 5.0]),
        lambda r: r["details"].update(d_certified=5),
        lambda r: r.update(alpha=0.5),
        lambda r: r["evidence"]["stages"][1].update(alpha=0.5),
    ],
)
def test_any_tampered_field_of_a_hybrid_record_is_refused(tmp_path, change) -> None:
    source = run_method(tmp_path, "hybrid")
    lines = source.read_text().splitlines()
    record = json.loads(lines[3])  # a certified record (prediction 0, d_certified 1)
    assert record["details"]["d_certified"] == 1
    change(record)
    lines[3] = json.dumps(record)
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ResultStoreError, match="line 4: field .* is not what its evidence"):
        load_results(path)


def test_safety_filter_runs_recertify_exactly_and_claim_flagged(tmp_path) -> None:
    from pipeline_toys import TextImageModel, text_image_dataset

    data = text_image_dataset(6)
    params = {"sigma": 0.5, "beta": 0.3, "alphabet": 7, "n0": 0, "n": 300, "alpha": 0.01}
    config = RunConfig(
        method="hybrid",
        params={**params, "target": 1, "tau": 0.05},
        dataset=data.name,
        batch_size=64,
    )
    path = run_certification(
        config, tmp_path / "f.jsonl", model=TextImageModel().eval(), dataset=data
    )
    records = read_results(path).records
    assert {r["claim"] for r in records} == {"flagged"}
    assert all(r["prediction"] in (None, 1) for r in records)
    assert [s["role"] for s in records[0]["evidence"]["stages"]] == ["estimation"]
    again = read_results(recertify(path, tmp_path / "again.jsonl")).records
    assert again == records
    assert load_results(path).claim == "flagged"


def test_worker_output_is_validated_before_it_is_stored(tmp_path) -> None:
    from smoothcert.runner.backends import LocalBackend

    class Tampering(LocalBackend):
        name = "tampering"
        in_process = False  # as if another process computed the records

        def run(self, job, shards, on_records):
            def altered(records):
                on_records([{**r, "radius": r["radius"] * 2 + 1} for r in records])

            super().run(job, shards, altered)

    with pytest.raises(ResultStoreError, match="tampering worker record for example index 50"):
        run_method(tmp_path, "cohen", backend=Tampering())
    assert read_results(tmp_path / "run.jsonl").records == []


def test_cohen_class_comes_from_the_selection_stage_only() -> None:
    from smoothcert.decisions.cohen import GaussianFacts, GaussianParams, decide_cohen
    from smoothcert.records import Evidence, StageEvidence

    evidence = Evidence(
        (
            StageEvidence("selection", n=10, alpha=0.0, counts=(10, 0)),
            StageEvidence("estimation", n=1000, alpha=0.001, counts=(100, 900)),
        ),
        GaussianFacts(num_classes=2),
    )
    result = decide_cohen(evidence, GaussianParams(sigma=0.5, n0=10, n=1000, alpha=0.001))
    # class 0 was selected; its bound (~0.08) abstains: never the estimation winner 1
    assert result.abstained and result.prediction is None and result.p_lower < 0.2


def test_version_1_record_at_the_abstention_threshold_upgrades_to_the_current_bound() -> None:
    from scipy.special import betaincinv

    from smoothcert.results.records import upgrade_v1_record

    n, alpha, sigma = 10_000, 0.001, 0.25
    for k in range(5140, 5180):  # p_lower within ~1e-3 of 1/2: tiny radii
        old_p = float(betaincinv(k, n - k + 1, alpha))  # the version-1 bound
        old = {
            "type": "record",
            "index": k,
            "label": 1,
            "correct": old_p > 0.5,
            "method": "cohen",
            "prediction": 1 if old_p > 0.5 else None,
            "abstained": old_p <= 0.5,
            "radius": 0.0,
            "p_lower": old_p,
            "n0": 10,
            "n": n,
            "alpha": alpha,
            "seed": 0,
            "seconds": 0.1,
            "counts_selection": [0, 10],
            "counts_estimation": [n - k, k],
            "params": {"sigma": sigma},
        }
        new = upgrade_v1_record(old, where="v1.jsonl: line 2")
        assert new["p_lower"] <= old_p and abs(new["p_lower"] - old_p) < 1e-8
        assert new["correct"] == (not new["abstained"] and new["prediction"] == 1)

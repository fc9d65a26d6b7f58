from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from record_toys import without_time
from smoothcert.errors import InvalidParameterError, ResultStoreError
from smoothcert.records import CertifyResult
from smoothcert.results import read_results, validate_record
from smoothcert.runner import RunConfig
from smoothcert.runner.config import example_seed
from smoothcert.runner.run import (
    RunProgress,
    certify_example,
    model_fingerprint,
    run_certification,
)
from smoothcert.sampling.device import check_device

TOY_PARAMS = {"sigma": 0.25, "n0": 10, "n": 100, "alpha": 0.01}


def by_index(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["index"]: r for r in without_time(records)}


def test_run_writes_one_record_per_example(tmp_path, toy_model, toy_dataset, toy_config) -> None:
    events: list[RunProgress] = []
    path = run_certification(
        toy_config,
        tmp_path / "run.jsonl",
        model=toy_model,
        dataset=toy_dataset,
        progress=events.append,
    )
    contents = read_results(path)
    header, records = contents.header, contents.records
    assert header["config"] == toy_config.to_dict()
    assert header["config_hash"] == toy_config.config_hash()
    assert header["device"] == "cpu"
    assert header["model_fingerprint"] == model_fingerprint(toy_model)
    # batch_size is a run setting (it changes the noise stream), stored in the hashed
    # header config; a record's params are the method's typed parameters only.
    assert header["config"]["batch_size"] == 32 and header["config"]["params"] == TOY_PARAMS
    assert contents.selections == (toy_config.selection(),)
    assert [r["index"] for r in records] == toy_dataset.indices.tolist()
    for number, (rec, label) in enumerate(zip(records, toy_dataset.labels, strict=True)):
        assert rec["type"] == "record" and rec["label"] == int(label)
        assert rec["seed"] == example_seed(0, rec["index"])
        assert rec["correct"] == (not rec["abstained"] and rec["prediction"] == rec["label"])
        assert rec["method"] == "cohen" and rec["claim"] == "majority"
        assert rec["params"] == {"kind": "gaussian", **TOY_PARAMS}
        assert rec["params"]["sigma"] == 0.25
        fields = {k: v for k, v in rec.items() if k not in ("type", "index", "label", "correct")}
        result = CertifyResult.from_dict(fields)  # the record embeds a valid CertifyResult
        assert sum(result.counts_selection) == 10 and sum(result.counts_estimation) == 100
        assert (result.n0, result.n) == (10, 100)
        assert [s.role for s in result.evidence.stages] == ["selection", "estimation"]
        assert result.evidence.seed == rec["seed"]
        # re-decided from its own evidence, the record is what the run wrote
        assert validate_record(rec, where=f"line {number + 3}") == rec
    assert any(r["correct"] for r in records) and not all(r["correct"] for r in records)
    assert [e.done for e in events] == list(range(9))
    assert events[0].record is None and all(e.total == 8 for e in events)


def test_rerun_is_a_no_op(tmp_path, toy_model, toy_dataset, toy_config) -> None:
    path = tmp_path / "run.jsonl"
    run_certification(toy_config, path, model=toy_model, dataset=toy_dataset)
    before = path.read_bytes()
    events: list[RunProgress] = []
    run_certification(
        toy_config, path, model=toy_model, dataset=toy_dataset, progress=events.append
    )
    assert path.read_bytes() == before
    assert [(e.done, e.total, e.resumed) for e in events] == [(8, 8, 8)]


def test_records_do_not_depend_on_order_or_sharding(
    tmp_path, toy_model, toy_dataset, toy_config
) -> None:
    full = read_results(
        run_certification(toy_config, tmp_path / "full.jsonl", model=toy_model, dataset=toy_dataset)
    ).records
    # two interleaved shards written into one file, in reverse order of shards
    merged = tmp_path / "sharded.jsonl"
    for start in (1, 0):
        shard = dataclasses.replace(toy_config, start=start, skip=2)
        run_certification(shard, merged, model=toy_model, dataset=toy_dataset)
    sharded = read_results(merged).records
    assert [r["index"] for r in sharded[:2]] == [103, 109]
    assert by_index(sharded) == by_index(full)


def test_extending_num_examples_appends(tmp_path, toy_model, toy_dataset, toy_config) -> None:
    path = tmp_path / "run.jsonl"
    first = dataclasses.replace(toy_config, num_examples=3)
    run_certification(first, path, model=toy_model, dataset=toy_dataset)
    assert len(read_results(path).records) == 3
    run_certification(toy_config, path, model=toy_model, dataset=toy_dataset)
    full = run_certification(
        toy_config, tmp_path / "full.jsonl", model=toy_model, dataset=toy_dataset
    )
    assert without_time(read_results(path).records) == without_time(read_results(full).records)
    # the file names both selections that were run into it
    assert read_results(path).selections == (first.selection(), toy_config.selection())


def test_another_selection_is_recorded_in_the_file(
    tmp_path, toy_model, toy_dataset, toy_config
) -> None:
    path = tmp_path / "run.jsonl"
    first = dataclasses.replace(toy_config, num_examples=2)
    later = dataclasses.replace(toy_config, num_examples=2, start=4)
    run_certification(first, path, model=toy_model, dataset=toy_dataset)
    run_certification(later, path, model=toy_model, dataset=toy_dataset)
    run_certification(later, path, model=toy_model, dataset=toy_dataset)  # nothing to do
    contents = read_results(path)
    assert contents.selections == (first.selection(), later.selection())
    assert [r["index"] for r in contents.records] == [100, 103, 112, 115]


def test_shared_forward_batches_give_the_same_records(
    tmp_path, toy_model, toy_dataset, toy_config
) -> None:
    single = run_certification(
        toy_config, tmp_path / "single.jsonl", model=toy_model, dataset=toy_dataset
    )
    shared = run_certification(
        toy_config,
        tmp_path / "shared.jsonl",
        model=toy_model,
        dataset=toy_dataset,
        examples_per_batch=3,
    )
    assert without_time(read_results(shared).records) == without_time(read_results(single).records)


def test_resume_after_truncating_the_last_line(
    tmp_path, toy_model, toy_dataset, toy_config
) -> None:
    reference = run_certification(
        toy_config, tmp_path / "ref.jsonl", model=toy_model, dataset=toy_dataset
    )
    data = reference.read_bytes()
    # keep 5 records and half of the 6th (a crash mid-write); lines: header, the
    # run's selection, then the records
    offsets = [i for i, b in enumerate(data) if b == ord("\n")]
    assert b'"type": "selection"' in data[offsets[0] : offsets[1]]
    cut = offsets[6] + (offsets[7] - offsets[6]) // 2
    crashed = tmp_path / "crashed.jsonl"
    crashed.write_bytes(data[:cut])
    events: list[RunProgress] = []
    run_certification(
        toy_config, crashed, model=toy_model, dataset=toy_dataset, progress=events.append
    )
    assert events[0].resumed == 5
    assert without_time(read_results(crashed).records) == without_time(
        read_results(reference).records
    )


def test_other_config_is_refused_before_any_work(
    tmp_path, toy_model, toy_dataset, toy_config
) -> None:
    path = tmp_path / "run.jsonl"
    run_certification(toy_config, path, model=toy_model, dataset=toy_dataset)
    before = path.read_bytes()
    other = dataclasses.replace(toy_config, params={**TOY_PARAMS, "n": 200})
    with pytest.raises(ResultStoreError) as info:
        run_certification(other, path, model=toy_model, dataset=toy_dataset)
    message = str(info.value)
    assert toy_config.config_hash() in message and other.config_hash() in message
    assert "params.n: 100 in the file, 200 now" in message and str(path) in message
    assert path.read_bytes() == before


def test_other_weights_are_refused(tmp_path, toy_model, toy_dataset, toy_config) -> None:
    path = tmp_path / "run.jsonl"
    run_certification(
        dataclasses.replace(toy_config, num_examples=2), path, model=toy_model, dataset=toy_dataset
    )
    before = path.read_bytes()
    retrained = copy.deepcopy(toy_model)
    with torch.no_grad():
        retrained[1].bias.add_(0.01)
    with pytest.raises(ResultStoreError, match="fingerprint"):
        run_certification(toy_config, path, model=retrained, dataset=toy_dataset)
    assert path.read_bytes() == before


def test_certify_example_is_pure(toy_model, toy_dataset, toy_config) -> None:
    image, label, index = toy_dataset.images[2], int(toy_dataset.labels[2]), 106
    x = torch.from_numpy(image)
    a = certify_example(toy_config, toy_model, (x,), label=label, index=index)
    b = certify_example(toy_config, toy_model, (x.clone(),), label=label, index=index)
    c = certify_example(toy_config, toy_model, (x,), label=label, index=index + 1)
    assert without_time([a]) == without_time([b])
    assert a["seed"] != c["seed"]
    assert a["seed"] == example_seed(toy_config.seed, index) and a["index"] == index
    # inputs are a tuple of tensors now; anything else names the example
    with pytest.raises(InvalidParameterError, match="example index 106: .*ndarray.*torch.Tensor"):
        certify_example(toy_config, toy_model, (image,), label=label, index=index)


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"device": "gpu"}, InvalidParameterError, "device = 'gpu'"),
        ({"device": "tpu"}, InvalidParameterError, "device = 'tpu'"),
        ({"start": 8}, InvalidParameterError, "start = 8"),
    ],
)
def test_invalid_runs_fail_before_writing(
    tmp_path, toy_model, toy_dataset, toy_config, kwargs, error, needle
) -> None:
    device = kwargs.pop("device", "cpu")
    config = dataclasses.replace(toy_config, **kwargs)
    path = tmp_path / "run.jsonl"
    with pytest.raises(error, match="valid") as info:
        run_certification(config, path, device=device, model=toy_model, dataset=toy_dataset)
    assert needle in str(info.value)
    assert not path.exists()


def test_mismatched_or_broken_datasets_are_rejected(
    tmp_path, toy_model, toy_dataset, toy_config
) -> None:
    path = tmp_path / "run.jsonl"
    renamed = dataclasses.replace(toy_dataset, name="other")
    with pytest.raises(InvalidParameterError, match="does not match"):
        run_certification(toy_config, path, model=toy_model, dataset=renamed)
    dup = dataclasses.replace(toy_dataset, indices=np.zeros(8, dtype=np.int64))
    with pytest.raises(InvalidParameterError, match="unique"):
        run_certification(toy_config, path, model=toy_model, dataset=dup)
    with pytest.raises(InvalidParameterError, match="RunConfig"):
        run_certification({"n": 1}, path, model=toy_model, dataset=toy_dataset)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="directory"):
        run_certification(toy_config, tmp_path, model=toy_model, dataset=toy_dataset)
    assert not path.exists()


def test_wrong_model_output_is_rejected(tmp_path, toy_dataset, toy_config) -> None:
    four_classes = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4)).eval()
    with pytest.raises(InvalidParameterError, match="num_classes"):
        run_certification(
            toy_config, tmp_path / "run.jsonl", model=four_classes, dataset=toy_dataset
        )


def test_check_device() -> None:
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")).type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="CUDA is not available"):
            check_device("cuda")


def test_bundled_names_are_checked_before_loading(tmp_path, monkeypatch) -> None:
    models = pytest.importorskip("smoothcert.models")
    if not hasattr(models, "list_models"):
        pytest.skip("smoothcert.models not available yet")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model must not be loaded for an invalid run")

    monkeypatch.setattr(models, "load_model", forbidden)
    path = tmp_path / "run.jsonl"
    cases = [
        (RunConfig(model="no_such_model"), "model = 'no_such_model'"),
        (RunConfig(dataset="no_such_data"), "dataset = 'no_such_data'"),
        (RunConfig(split="validation"), "split = 'validation'"),
        (
            RunConfig(params={"sigma": 0.3, "n0": 100, "n": 10_000, "alpha": 0.001}),
            "sigma = 0.3",
        ),
    ]
    for config, needle in cases:
        with pytest.raises(InvalidParameterError, match="valid values") as info:
            run_certification(config, path)
        assert needle in str(info.value)
    assert not path.exists()


def test_header_torn_mid_write_is_rewritten_and_the_run_completes(
    tmp_path, toy_model, toy_dataset, toy_config
) -> None:
    full = run_certification(
        toy_config, tmp_path / "full.jsonl", model=toy_model, dataset=toy_dataset
    )
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(full.read_bytes()[:40])  # a crash while the header was being written
    run_certification(toy_config, torn, model=toy_model, dataset=toy_dataset)
    assert by_index(read_results(torn).records) == by_index(read_results(full).records)


def test_plain_callable_cannot_resume_a_module_file(
    tmp_path, toy_model, toy_dataset, toy_config
) -> None:
    path = tmp_path / "run.jsonl"
    run_certification(
        dataclasses.replace(toy_config, num_examples=2), path, model=toy_model, dataset=toy_dataset
    )
    with pytest.raises(ResultStoreError, match="fingerprint"):
        run_certification(toy_config, path, model=lambda x: toy_model(x), dataset=toy_dataset)


def test_example_seeds_do_not_collide_for_large_indices() -> None:
    # A plain [run_seed, index] entropy list would give these two the same seed.
    assert example_seed(5, 2**32 * 3 + 7) != example_seed(2**32 * 7 + 5, 3)
    seeds = {example_seed(s, i) for s in (0, 1, 2**32) for i in (0, 1, 2**32, 2**40)}
    assert len(seeds) == 12


def test_nan_input_names_the_example_index(tmp_path, toy_model, toy_dataset, toy_config) -> None:
    images = toy_dataset.images.copy()
    images[3, 0, 1, 2] = np.nan
    broken = dataclasses.replace(toy_dataset, images=images)
    path = tmp_path / "run.jsonl"
    with pytest.raises(InvalidParameterError) as info:
        run_certification(toy_config, path, model=toy_model, dataset=broken)
    assert str(info.value).startswith("example index 109: x contains NaN or Inf values; valid")
    # the examples before it are stored; a re-run resumes there
    assert [r["index"] for r in read_results(path).records] == [100, 103, 106]


def test_unusable_output_path_is_refused_before_loading(
    tmp_path, toy_model, toy_dataset, toy_config, monkeypatch
) -> None:
    import smoothcert.runner.run as run_module

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may be loaded for an unusable output path")

    monkeypatch.setattr(run_module.RunJob, "load_dataset", forbidden)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(InvalidParameterError, match="output = .*cannot be created") as info:
        run_certification(toy_config, blocker / "run.jsonl", model=toy_model, dataset=toy_dataset)
    assert str(blocker) in str(info.value)

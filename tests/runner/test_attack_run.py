"""attack-l2 through the runner: resume after a crash, extension, config hash (toy model)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from record_toys import without_time
from smoothcert.errors import ResultStoreError
from smoothcert.results import read_results
from smoothcert.runner import RunConfig
from smoothcert.runner.run import RunProgress, run_certification

PARAMS = {"sigma": 0.25, "radii": (0.25, 0.5), "steps": 4, "noise_samples": 4, "eval_n": 100}


def attack_config(**params: Any) -> RunConfig:
    return RunConfig(
        method="attack-l2",
        model="toy_linear",
        dataset="toy",
        split="test",
        params={**PARAMS, **params},
        batch_size=32,
        seed=0,
    )


def test_resume_after_a_crash_gives_the_records_of_an_uninterrupted_run(
    tmp_path, toy_model, toy_dataset
) -> None:
    config = attack_config()
    reference = run_certification(
        config, tmp_path / "ref.jsonl", model=toy_model, dataset=toy_dataset
    )
    records = read_results(reference).records
    assert len(records) == 8 and {r["claim"] for r in records} == {"empirical"}
    data = reference.read_bytes()
    offsets = [i for i, b in enumerate(data) if b == ord("\n")]
    cut = offsets[4] + (offsets[5] - offsets[4]) // 2  # 3 records, then half of the 4th
    crashed = tmp_path / "crashed.jsonl"
    crashed.write_bytes(data[:cut])
    events: list[RunProgress] = []
    run_certification(config, crashed, model=toy_model, dataset=toy_dataset, progress=events.append)
    assert events[0].resumed == 3
    assert without_time(read_results(crashed).records) == without_time(records)


def test_extending_a_run_appends_and_another_grid_is_refused(
    tmp_path, toy_model, toy_dataset
) -> None:
    path = tmp_path / "a.jsonl"
    config = attack_config()
    run_certification(
        dataclasses.replace(config, num_examples=3), path, model=toy_model, dataset=toy_dataset
    )
    run_certification(config, path, model=toy_model, dataset=toy_dataset)
    full = run_certification(config, tmp_path / "b.jsonl", model=toy_model, dataset=toy_dataset)
    assert without_time(read_results(path).records) == without_time(read_results(full).records)
    with pytest.raises(ResultStoreError, match="config"):
        run_certification(
            attack_config(radii=(0.25, 0.75)), path, model=toy_model, dataset=toy_dataset
        )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sigma", 0.5),
        ("radii", (0.25, 0.75)),
        ("steps", 5),
        ("step_size", 0.1),
        ("noise_samples", 8),
        ("eval_n", 200),
        ("temperature", 2.0),
        ("score", "logits"),
        ("random_start", False),
        ("clip", False),
        ("alpha", 0.01),
    ],
)
def test_every_attack_parameter_changes_the_hash(name: str, value: Any) -> None:
    assert attack_config(**{name: value}).config_hash() != attack_config().config_hash()


@pytest.mark.slow
def test_a_ray_run_gives_the_records_of_a_local_run(tmp_path, toy_model, toy_dataset) -> None:
    ray = pytest.importorskip("ray")
    import os
    from pathlib import Path

    from smoothcert.runner.ray_backend import RayBackend

    config = attack_config()
    local = run_certification(config, tmp_path / "l.jsonl", model=toy_model, dataset=toy_dataset)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    tests = str(Path(__file__).resolve().parents[1])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": tests}},
    )
    try:
        remote = run_certification(
            config,
            tmp_path / "r.jsonl",
            model=toy_model,
            dataset=toy_dataset,
            backend=RayBackend(workers=2, shard_size=3),
        )
    finally:
        ray.shutdown()
    by_index = sorted(read_results(remote).records, key=lambda r: r["index"])
    assert without_time(by_index) == without_time(read_results(local).records)


HYBRID = {
    "sigma": 0.25,
    "beta": 0.1,
    "alphabet": 7,
    "n0": 0,
    "n": 100,
    "alpha": 0.01,
    "target": 1,
    "tau": 0.5,
}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("radii", (0.0, 0.5)),
        ("attack_d_max", 1),
        ("steps", 5),
        ("step_size", 0.1),
        ("noise_samples", 8),
        ("candidates", 8),
        ("n", 200),
        ("tau", 0.4),
    ],
)
def test_every_hybrid_attack_parameter_changes_the_hash(name: str, value: Any) -> None:
    def config(**change: Any) -> RunConfig:
        return RunConfig(
            method="attack-hybrid", model="toy", dataset="toy", params={**HYBRID, **change}
        )

    assert config(**{name: value}).config_hash() != config().config_hash()

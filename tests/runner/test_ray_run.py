"""Dataset runs on a real local Ray cluster: same records as local, nothing lost or duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline_toys import METHOD_RUNS, KillOnce, image_dataset, image_model
from smoothcert.results import read_results
from smoothcert.runner import RunConfig, run_certification
from smoothcert.runner.backends import LocalBackend

ray = pytest.importorskip("ray")
from smoothcert.runner.ray_backend import RayBackend  # noqa: E402

TESTS = str(Path(__file__).resolve().parents[1])
SIZE = 9


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": TESTS}},
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def config() -> RunConfig:
    _, params = METHOD_RUNS["cohen"]
    return RunConfig(params=params, model="toy", dataset="toy_images", batch_size=64, seed=11)


def run(path: Path, backend: Any, model: Any = None) -> list[dict[str, Any]]:
    run_certification(
        config(),
        path,
        model=model if model is not None else image_model(),
        dataset=image_dataset(SIZE),
        backend=backend,
    )
    return read_results(path).records


def comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in sorted(records, key=lambda r: r["index"]):
        r = {k: v for k, v in r.items() if k != "seconds"}
        r["evidence"] = {k: v for k, v in r["evidence"].items() if k != "seconds"}
        out.append(r)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[dict[str, Any]]:
    return comparable(run(tmp_path_factory.mktemp("local") / "r.jsonl", LocalBackend()))


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_ray_records_equal_local_for_any_number_of_workers(
    cluster, reference, tmp_path, workers
) -> None:
    records = run(tmp_path / "r.jsonl", RayBackend(workers=workers, shard_size=2))
    assert comparable(records) == reference
    assert len({r["index"] for r in records}) == SIZE == len(records)


def test_a_killed_worker_loses_and_duplicates_nothing(cluster, reference, tmp_path) -> None:
    marker = tmp_path / "killed"
    model = KillOnce(image_model(), str(marker)).eval()
    records = run(tmp_path / "r.jsonl", RayBackend(workers=2, shard_size=2), model=model)
    assert marker.exists()  # a worker really died mid-shard
    assert int(marker.read_text()) != os.getpid()
    strip = [{**r, "params": r["params"]} for r in comparable(records)]
    assert strip == reference


def test_a_killed_driver_resumes_without_loss_or_duplicates(cluster, reference, tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {TESTS!r})
        import ray
        from pipeline_toys import METHOD_RUNS, image_dataset, image_model
        from smoothcert.runner import RunConfig, run_certification
        from smoothcert.runner.ray_backend import RayBackend
        ray.init(address={cluster!r}, log_to_driver=False,
                 runtime_env={{"env_vars": {{"PYTHONPATH": {TESTS!r}}}}})
        _, params = METHOD_RUNS["cohen"]
        config = RunConfig(params=params, model="toy", dataset="toy_images", batch_size=64, seed=11)
        def progress(event):
            if event.done >= 3:
                os.kill(os.getpid(), signal.SIGKILL)
        backend = RayBackend(workers=2, shard_size=1)
        run_certification(config, {str(path)!r}, model=image_model(),
                          dataset=image_dataset({SIZE}), backend=backend, progress=progress)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    partial = read_results(path).records
    assert 3 <= len(partial) < SIZE
    records = run(path, RayBackend(workers=2, shard_size=2))
    assert comparable(records) == reference
    assert [r["index"] for r in records][: len(partial)] == [r["index"] for r in partial]

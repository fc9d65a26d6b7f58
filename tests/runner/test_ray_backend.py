"""RayBackend on a real local Ray cluster (no mocks): determinism, fault tolerance, errors.

One cluster with 2 CPUs (this machine's cores) is started for the whole module; with 3
workers each actor gets 2/3 of a CPU (the backend's default share), so all 3 are placed.
Its workers import the test job as ``runner.ray_jobs``, so ``tests/`` is put on their
PYTHONPATH through the cluster's runtime environment.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smoothcert.errors import InvalidParameterError, SmoothCertError
from smoothcert.runner.backends import LocalBackend
from smoothcert.runner.ray_backend import (
    DEFAULT_SHARD_SIZE,
    RayBackend,
    ShardFailedError,
    shard_positions,
)

ray = pytest.importorskip("ray", reason="the Ray backend tests need pip install 'smoothcert[ray]'")

from runner.ray_jobs import CohenShardJob, stable_index  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parents[1]
SIZE = 24
SHARD = 4


def _worker_env() -> dict[str, Any]:
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
        runtime_env=_worker_env(),
    )
    yield
    ray.shutdown()


def _strip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records sorted by index, without the worker pid (the only backend-dependent key)."""
    return sorted(({k: v for k, v in r.items() if k != "pid"} for r in records), key=_index)


def _index(record: dict[str, Any]) -> int:
    return int(record["index"])


@pytest.fixture(scope="module")
def reference() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    LocalBackend().run(CohenShardJob(size=SIZE), shard_positions(range(SIZE), SHARD), out.extend)
    return _strip(out)


def _run(backend: RayBackend, job: CohenShardJob) -> tuple[list[dict[str, Any]], int]:
    """Run on the backend; return the raw records and the number of on_records calls."""
    out: list[dict[str, Any]] = []
    calls = []

    def on_records(records: list[dict[str, Any]]) -> None:
        calls.append(os.getpid())
        out.extend(records)

    backend.run(job, shard_positions(range(job.size), SHARD), on_records)
    assert set(calls) == {os.getpid()}  # records reach the driver process
    return out, len(calls)


def test_reference_is_a_real_certification(reference: list[dict[str, Any]]) -> None:
    assert [r["index"] for r in reference] == [stable_index(p) for p in range(SIZE)]
    assert any(r["radius"] > 0 for r in reference)
    assert all(0.0 <= r["p_lower"] <= 1.0 for r in reference)


@pytest.mark.parametrize(
    "workers", [pytest.param(1, marks=pytest.mark.slow), 2, pytest.param(3, marks=pytest.mark.slow)]
)
def test_results_do_not_depend_on_workers(
    cluster: None, reference: list[dict[str, Any]], workers: int
) -> None:
    records, calls = _run(RayBackend(workers=workers), CohenShardJob(size=SIZE))
    assert calls == math.ceil(SIZE / SHARD)
    assert _strip(records) == reference
    pids = {r["pid"] for r in records}
    assert os.getpid() not in pids
    assert len(pids) <= workers


def test_killed_worker_loses_nothing(
    cluster: None, reference: list[dict[str, Any]], tmp_path: Path
) -> None:
    marker = tmp_path / "killed"
    victim = stable_index(9)  # in the third shard
    job = CohenShardJob(size=SIZE, kill_index=victim, kill_marker=str(marker))
    records, _ = _run(RayBackend(workers=2, max_retries=2), job)
    assert marker.exists()  # a worker really died mid-run
    killed_pid = int(marker.read_text())
    # the victim's shard was redone by another (or the restarted) worker process
    assert [r["pid"] for r in records if r["index"] == victim] != [killed_pid]
    indices = [r["index"] for r in records]
    assert sorted(indices) == sorted(set(indices))  # every index exactly once
    assert _strip(records) == reference


@pytest.mark.slow
def test_worker_dying_every_time_fails_after_max_retries(cluster: None) -> None:
    job = CohenShardJob(size=8, kill_index=stable_index(5), kill_marker=None)
    out: list[dict[str, Any]] = []
    with pytest.raises(ShardFailedError, match="max_retries = 1"):
        RayBackend(workers=1, max_retries=1).run(job, shard_positions(range(8), SHARD), out.extend)
    assert stable_index(5) not in {r["index"] for r in out}


def test_job_error_is_reraised_with_type_and_message(cluster: None) -> None:
    bad = stable_index(13)
    job = CohenShardJob(size=SIZE, bad_index=bad)
    out: list[dict[str, Any]] = []
    with pytest.raises(InvalidParameterError) as info:
        RayBackend(workers=1).run(job, shard_positions(range(SIZE), SHARD), out.extend)
    assert type(info.value) is InvalidParameterError
    assert str(info.value) == f"example index = {bad} is invalid; valid range: any index but {bad}"
    # nothing of the failing shard (positions 12..15) reached the driver
    assert not {stable_index(p) for p in range(12, 16)} & {r["index"] for r in out}


def test_no_shards_is_a_no_op(cluster: None) -> None:
    out: list[dict[str, Any]] = []
    RayBackend(workers=2).run(CohenShardJob(size=SIZE), [], out.extend)
    RayBackend(workers=2).run(CohenShardJob(size=SIZE), [[]], out.extend)
    assert out == []


def test_gpus_beyond_a_local_cluster_are_rejected(cluster: None) -> None:
    with pytest.raises(InvalidParameterError, match=r"gpus_per_worker = 1\.0 .*valid range"):
        RayBackend(workers=1, gpus_per_worker=1).run(CohenShardJob(size=4), [[0]], list)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"workers": 0}, "workers = 0"),
        ({"workers": -2}, "workers = -2"),
        ({"workers": 1.5}, "workers = 1.5"),
        ({"workers": True}, "workers = True"),
        ({"max_retries": -1}, "max_retries = -1"),
        ({"max_in_flight": 0}, "max_in_flight = 0"),
        ({"shard_size": 0}, "shard_size = 0"),
        ({"gpus_per_worker": -1.0}, "gpus_per_worker = -1.0"),
        ({"gpus_per_worker": float("nan")}, "gpus_per_worker = nan"),
        ({"cpus_per_worker": -0.5}, "cpus_per_worker = -0.5"),
        ({"address": ""}, "address = ''"),
        ({"runtime_env": "x"}, "runtime_env = 'x'"),
    ],
)
def test_argument_validation(kwargs: dict[str, Any], bad: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        RayBackend(**kwargs)
    assert bad in str(info.value)
    assert "valid range" in str(info.value)
    assert isinstance(info.value, SmoothCertError)


def test_backend_attributes() -> None:
    backend = RayBackend(workers=3, cpus_per_worker=0.5)
    assert backend.name == "ray"
    assert (backend.workers, backend.cpus_per_worker, backend.max_retries) == (3, 0.5, 3)
    assert backend.shard_size == DEFAULT_SHARD_SIZE
    assert backend.address is None and backend.gpus_per_worker is None
    assert RayBackend().cpus_per_worker is None  # an equal share of the cluster's CPUs


@given(
    positions=st.lists(st.integers(min_value=0, max_value=10**6), max_size=60),
    size=st.integers(min_value=1, max_value=20),
)
def test_shard_positions_properties(positions: list[int], size: int) -> None:
    shards = shard_positions(positions, size)
    assert [p for s in shards for p in s] == positions
    assert all(1 <= len(s) <= size for s in shards)
    assert all(len(s) == size for s in shards[:-1])
    assert len(shards) == math.ceil(len(positions) / size)


def test_shard_positions_defaults_and_errors() -> None:
    assert shard_positions(range(DEFAULT_SHARD_SIZE + 1)) == [
        list(range(DEFAULT_SHARD_SIZE)),
        [DEFAULT_SHARD_SIZE],
    ]
    for bad in (0, -1, 2.0, True):
        with pytest.raises(InvalidParameterError, match=f"shard_size = {bad!r}"):
            shard_positions([1, 2], bad)
    with pytest.raises(InvalidParameterError, match="position = 'a'"):
        shard_positions([1, "a"], 2)


DRIVER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ray
    from runner.ray_jobs import CohenShardJob
    from smoothcert.runner.ray_backend import RayBackend, shard_positions

    tests_dir, address = sys.argv[1], sys.argv[2] or None
    env = {"env_vars": {"PYTHONPATH": tests_dir}}
    out = []
    backend = RayBackend(workers=2, cpus_per_worker=0.5, address=address, runtime_env=env)
    backend.run(CohenShardJob(size=8), shard_positions(range(8), 4), out.extend)
    print(json.dumps({"initialized_after": ray.is_initialized(), "records": out}))
    """
)


def _run_driver(address: str) -> dict[str, Any]:
    """Run the backend in a fresh driver process (not the one holding the module's cluster)."""
    env = dict(os.environ, PYTHONPATH=_worker_env()["env_vars"]["PYTHONPATH"])
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER_SCRIPT, str(TESTS_DIR), address],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_backend_starts_and_stops_its_own_local_cluster(
    reference: list[dict[str, Any]],
) -> None:
    result = _run_driver("")
    assert result["initialized_after"] is False
    assert _strip(result["records"]) == reference[:8]


@pytest.mark.slow
def test_backend_connects_to_an_existing_cluster(
    cluster: None, reference: list[dict[str, Any]]
) -> None:
    address = ray.get_runtime_context().gcs_address
    result = _run_driver(address)
    assert result["initialized_after"] is False  # disconnected at the end
    assert _strip(result["records"]) == reference[:8]
    assert ray.is_initialized()  # the cluster (and this driver's connection) is still up
    assert ray.cluster_resources().get("CPU") == 2

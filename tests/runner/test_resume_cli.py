"""Crash-resume of the real command: SIGKILL mid-run, re-run, compare with a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from smoothcert.results import read_results


def _bundled_model_available() -> bool:
    try:
        from smoothcert.models import list_models, load_model

        if "digits_cnn" not in list_models():
            return False
        load_model("digits_cnn", sigma=0.25)
    except Exception:  # noqa: BLE001 - any failure means the assets are not there
        return False
    return True


pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"),
    pytest.mark.skipif(not _bundled_model_available(), reason="bundled digits_cnn not available"),
]

NUM_EXAMPLES = 12
ARGS = [
    "certify",
    "--n0", "10",
    "-n", "500",
    "--batch-size", "500",
    "--alpha", "0.01",
    "--num-examples", str(NUM_EXAMPLES),
    "--skip", "3",
    "--no-progress",
    "--no-plot",
]  # fmt: skip


def command(output: Path) -> list[str]:
    return [sys.executable, "-m", "smoothcert", *ARGS, "--output", str(output)]


def complete_records(path: Path) -> int:
    """Complete record lines (the header and the run's selection line are not records)."""
    if not path.exists():
        return 0
    complete = path.read_bytes().split(b"\n")[:-1]
    return sum(line.startswith(b'{"type": "record"') for line in complete)


def without_time(path: Path) -> list[dict[str, Any]]:
    """Records without wall-clock times (the record's and its evidence's seconds)."""
    out = []
    for r in read_results(path).records:
        rec = {k: v for k, v in r.items() if k != "seconds"}
        rec["evidence"] = {k: v for k, v in r["evidence"].items() if k != "seconds"}
        out.append(rec)
    return out


def run_to_end(output: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(command(output), cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def run_in_process(output: Path, monkeypatch: pytest.MonkeyPatch, cwd: Path) -> Any:
    from typer.testing import CliRunner

    from smoothcert.cli import app

    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(app, [*ARGS, "--output", str(output)])
    assert result.exit_code == 0, result.output
    return result


def test_sigkill_then_rerun_equals_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(
        command(killed), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while complete_records(killed) < 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no records after 120 s"
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    partial = complete_records(killed)
    assert 2 <= partial < NUM_EXAMPLES

    resumed = run_to_end(killed, tmp_path)  # the same command again, in a new process
    assert f"resuming: {partial} of {NUM_EXAMPLES}" in resumed.stderr
    assert "| radius |" in resumed.stdout  # the summary table

    reference = tmp_path / "reference.jsonl"
    run_in_process(reference, monkeypatch, tmp_path)
    assert len(read_results(reference).records) == NUM_EXAMPLES
    assert (
        read_results(killed).header["config_hash"] == read_results(reference).header["config_hash"]
    )
    for got, want in zip(without_time(killed), without_time(reference), strict=True):
        diff = {
            k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)
        }
        assert not diff, diff
    # one selection line per run that appended records (the killed run, its resume)
    selection = {"num_examples": NUM_EXAMPLES, "skip": 3, "start": 0}
    assert read_results(killed).selections == (selection,)
    assert read_results(reference).selections == (selection,)

    # a crash in the middle of writing a line: cut the last record in half, re-run
    data = reference.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(data[: last + (len(data) - last) // 2])
    again = run_in_process(torn, monkeypatch, tmp_path)
    assert f"resuming: {NUM_EXAMPLES - 1} of {NUM_EXAMPLES}" in again.stderr
    assert without_time(torn) == without_time(reference)
    assert not (tmp_path / "results").exists()  # --output was honoured

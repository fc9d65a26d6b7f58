"""The forward-samples report: totals and per-input distribution of real runs."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from pipeline_toys import METHOD_RUNS, toy_for
from smoothcert.cli import app
from smoothcert.reports import is_sequential, load_results, samples_per_input, samples_table
from smoothcert.runner import RunConfig, run_certification


def run(tmp_path, method: str, params: dict) -> object:
    model, data = toy_for("image")
    config = RunConfig(
        method=method,
        params=params,
        model="toy",
        dataset=data.name,
        split="test",
        batch_size=64,
        seed=3,
    )
    return run_certification(config, tmp_path / f"{method}.jsonl", model=model, dataset=data)


def test_samples_table_counts_every_stage_of_every_record(tmp_path) -> None:
    seq_path = run(tmp_path, "cohen-sequential", METHOD_RUNS["cohen-sequential"][1])
    fixed_path = run(tmp_path, "cohen", {"sigma": 0.5, "n0": 20, "n": 1_980, "alpha": 0.01})
    seq, fixed = load_results(seq_path), load_results(fixed_path)
    assert is_sequential(seq) and not is_sequential(fixed)
    used = samples_per_input(seq.records)
    expected = [sum(s["n"] for s in r["evidence"]["stages"]) for r in seq.records]
    assert used.tolist() == expected
    assert np.all(samples_per_input(fixed.records) == 2_000)
    table = samples_table([fixed, seq])
    assert f"| total | {6 * 2_000:,} | {sum(expected):,} |" in table
    share = 100 * sum(expected) / 12_000
    assert f"| share of the largest total | 100.0% | {share:.1f}% |" in table
    assert f"| per input: max | 2,000 | {max(expected):,} |" in table

    result = CliRunner().invoke(
        app, ["report", str(fixed_path), str(seq_path), "--plot", str(tmp_path / "p.png")]
    )
    assert result.exit_code == 0, result.output
    assert "| forward samples | cohen | cohen-sequential |" in result.output
    assert (tmp_path / "p_samples.png").stat().st_size > 0


def test_fixed_n_reports_have_no_samples_table(tmp_path) -> None:
    fixed_path = run(tmp_path, "cohen", {"sigma": 0.5, "n0": 20, "n": 300, "alpha": 0.01})
    result = CliRunner().invoke(app, ["report", str(fixed_path)])
    assert result.exit_code == 0 and "forward samples" not in result.output

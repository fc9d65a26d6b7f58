"""End to end: a soft run certified with betting, then re-certified on the SAME samples.

A real (tiny, linear) torch model and the runner write the file; ``recertify --bound
betting`` must reproduce the run's own certificates from the saved histograms (the
independent path: the combined decision on the file's evidence), and the other bounds
re-decide the same file; a file without histograms is refused with a clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline_toys import image_dataset, image_model
from smoothcert.cli import app
from smoothcert.errors import InvalidParameterError
from smoothcert.results import read_results
from smoothcert.results.recertify import recertify
from smoothcert.runner import RunConfig
from smoothcert.runner.run import run_certification

PARAMS = {"sigma": 0.5, "n0": 20, "n": 400, "alpha": 0.01, "temperature": 2.0}


def _run(tmp_path: Path, name: str, **params) -> Path:
    config = RunConfig(
        method=params.pop("method", "soft"),
        model="toy_linear",
        dataset="toy_images",
        split="test",
        params={**PARAMS, **params},
        batch_size=64,
        seed=0,
    )
    return run_certification(config, tmp_path / name, model=image_model(), dataset=image_dataset(4))


@pytest.fixture(scope="module")
def betting_file(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("bet"), "soft_betting.jsonl", score_bound="betting")


def _certificates(path: Path) -> list[tuple]:
    return [
        (r["index"], r["prediction"], r["radius"], r["p_lower"]) for r in read_results(path).records
    ]


def test_a_betting_run_keeps_histograms_and_recertifies_to_the_same_certificates(
    betting_file, tmp_path
) -> None:
    records = read_results(betting_file).records
    assert len(records) == 4
    for rec in records:
        sel, est = rec["evidence"]["stages"]
        assert "score_histograms" not in sel
        hist = est["score_histograms"]
        assert hist["bins"] == 4096 and len(hist["classes"]) == 3
        assert all(sum(c for _, c in row) == PARAMS["n"] for row in hist["classes"])
        assert rec["details"]["score_bound"] == "betting"
    assert any(not r["abstained"] for r in records)
    out = recertify(betting_file, tmp_path / "mono.jsonl", bound="betting", combiner="mono")
    assert _certificates(out) == _certificates(betting_file)
    assert {r["method"] for r in read_results(out).records} == {"soft-combined"}
    # re-running the file's own method reproduces it exactly
    same = recertify(betting_file, tmp_path / "same.jsonl")
    assert read_results(same).records == records


def test_other_bounds_and_top2_on_the_same_file(betting_file, tmp_path) -> None:
    bern = recertify(betting_file, tmp_path / "bern.jsonl", bound="bernstein")
    hoef = recertify(betting_file, tmp_path / "hoef.jsonl", bound="hoeffding")
    top2 = recertify(betting_file, tmp_path / "top2.jsonl", bound="betting", combiner="top2")
    soft_top2 = recertify(betting_file, tmp_path / "soft_top2.jsonl", method="soft-top2")
    assert [r["params"]["bound"] for r in read_results(bern).records] == ["bernstein"] * 4
    for a, b, h in zip(
        read_results(betting_file).records,
        read_results(bern).records,
        read_results(hoef).records,
        strict=True,
    ):
        # the same samples: betting beats Hoeffding; all stay below the sample mean
        assert h["p_lower"] <= a["p_lower"] <= a["details"]["mean"]
        assert b["p_lower"] <= a["details"]["mean"]
    got = [(r["p_lower"], r["p_upper"]) for r in read_results(top2).records]
    want = [(r["p_lower"], r["p_upper"]) for r in read_results(soft_top2).records]
    np.testing.assert_allclose(got, want, atol=1e-9)  # alpha/2 vs alpha/2 rounded down


def test_cli_recertify_bound_betting(betting_file, tmp_path) -> None:
    out = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(
        app, ["recertify", str(betting_file), "--output", str(out), "--bound", "betting"]
    )
    assert result.exit_code == 0, result.output
    assert _certificates(out) == _certificates(betting_file)


def test_a_file_without_histograms_is_refused_before_writing(tmp_path) -> None:
    plain = _run(tmp_path, "soft_bernstein.jsonl", score_bound="bernstein")
    assert all(
        "score_histograms" not in s
        for r in read_results(plain).records
        for s in r["evidence"]["stages"]
    )
    out = tmp_path / "bet.jsonl"
    with pytest.raises(InvalidParameterError, match="no per-class score histograms") as err:
        recertify(plain, out, bound="betting")
    assert "--score-bound betting" in str(err.value)
    assert not out.exists()
    # a hardmax file needs none: its votes are exact
    votes = _run(tmp_path, "hardmax.jsonl", score_map="hardmax", score_bound="bernstein")
    again = recertify(votes, tmp_path / "votes_bet.jsonl", bound="betting")
    assert len(read_results(again).records) == 4

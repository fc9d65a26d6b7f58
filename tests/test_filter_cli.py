"""End to end on the real listings pairs and the bundled listing_filter: calibrate -> certify
(--tau) -> recertify (--tau) -> report --filter, with small n."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from smoothcert.cli import app
from smoothcert.reports import filter_summary, load_results
from smoothcert.results import read_results

COMMON = ["certify", "--method", "hybrid", "--model", "listing_filter", "--dataset",
          "listings", "--sigma", "0.5", "--target", "1", "--n", "100", "--threat",
          "append_suffix", "--suffix-length", "4", "--placeholder-id", "0",
          "--no-progress", "--no-plot"]  # fmt: skip


def _run(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def test_calibrate_certify_recertify_report(tmp_path: Path) -> None:
    cal = tmp_path / "cal.jsonl"
    _run(*COMMON, "--split", "calibration", "--num-examples", "40", "--output", str(cal))
    tau_json = tmp_path / "tau.json"
    _run("calibrate", str(cal), "--fp-rate", "0.3", "--output", str(tau_json))
    calibration = json.loads(tau_json.read_text())
    tau = calibration["tau"]
    assert 0 < tau < 1 and calibration["split"] == "calibration"

    at_half = tmp_path / "test_half.jsonl"
    at_tau = tmp_path / "test_tau.jsonl"
    _run(*COMMON, "--split", "test", "--num-examples", "12", "--tau", "0.5", "--output",
         str(at_half))  # fmt: skip
    _run(*COMMON, "--split", "test", "--num-examples", "12", "--tau", repr(tau), "--output",
         str(at_tau))  # fmt: skip
    test_indices = {r["index"] for r in read_results(at_tau).records}
    assert not test_indices & set(calibration["indices"])  # disjoint by stable index

    redone = tmp_path / "test_redone.jsonl"
    _run("recertify", str(at_half), "--output", str(redone), "--tau", repr(tau))

    def strip(path: Path) -> list[dict]:  # the same evidence: only the timing differs
        out = []
        for r in read_results(path).records:
            r = dict(r, seconds=None)
            r["evidence"] = dict(r["evidence"], seconds=None)
            out.append(r)
        return out

    assert strip(redone) == strip(at_tau)
    report = _run("report", "--filter", str(at_half), str(redone), "--plot",
                  str(tmp_path / "f.png"), "--calibration", str(tau_json))  # fmt: skip
    s = filter_summary(load_results(redone))
    assert f"| test_redone | append_suffix D=4 | 0.5 | 0.7 | {tau} | 30.0% |" in report
    assert s.num_unsafe + s.num_benign == 12
    assert len(list(tmp_path.glob("f_*_dr.png"))) >= 1

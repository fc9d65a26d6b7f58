"""The safety-filter report (reports/filter.py) and re-deciding at another tau offline.

Oracle: the numbers computed directly from the counts of a synthetic file (Clopper-Pearson
bounds from scipy's beta quantiles, Cohen's closed form r(0) = sigma (Phi^-1(p_lower) -
Phi^-1(tau)) for the d = 0 row), and a fresh decision at the new tau on the same evidence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import beta as beta_dist
from scipy.stats import norm
from typer.testing import CliRunner

from filter_toys import ALPHA, SIGMA, N, evidence, params_dict, write_filter_file
from smoothcert.cli import app
from smoothcert.decisions.hybrid import HybridParams, decide_hybrid
from smoothcert.errors import InvalidParameterError
from smoothcert.reports import filter_summary, filter_tables, load_results, plot_filter_heatmaps
from smoothcert.results import read_results, record_line
from smoothcert.results.recertify import recertify

PAIRS = [(980, 1), (900, 1), (700, 1), (520, 1), (300, 1), (5, 0), (200, 0), (480, 0),
         (515, 0), (650, 0), (30, 0)]  # fmt: skip


def _direct(tau: float, radii: list[float]) -> dict[str, object]:
    k = np.array([p[0] for p in PAIRS])
    lab = np.array([p[1] for p in PAIRS])
    lower = np.where(k > 0, beta_dist.ppf(ALPHA, k, N - k + 1), 0.0)
    upper = np.where(k < N, beta_dist.ppf(1 - ALPHA, k + 1, N - k), 1.0)
    unsafe, benign = lab == 1, lab == 0
    r0 = np.where(lower >= tau, SIGMA * (norm.ppf(np.clip(lower, 1e-300, 1)) - norm.ppf(tau)), -1.0)
    return {
        "detection_point": np.mean(k[unsafe] / N >= tau),
        "d0_row": [np.mean((lower[unsafe] >= tau) & (r0[unsafe] >= r)) for r in radii],
        "fp_point": np.mean(k[benign] / N >= tau),
        "fp_certified": np.mean(lower[benign] >= tau),
        "fp_upper": np.mean(upper[benign] >= tau),
    }


@pytest.mark.parametrize("tau", [0.5, 0.3])
def test_report_numbers_match_a_direct_computation(tmp_path: Path, tau: float) -> None:
    f = load_results(write_filter_file(tmp_path / "t.jsonl", PAIRS, split="test", tau=tau))
    radii = [0.0, 0.05, 0.2, 0.6]
    s = filter_summary(f, d_values=[0, 1, 2, 4, 8], radii=radii)
    want = _direct(tau, radii)
    assert (s.num_unsafe, s.num_benign) == (5, 6)
    assert s.detection_point == pytest.approx(want["detection_point"])
    # r(0) of records on a cell boundary may differ in the last digits: none here
    assert s.grid[0].tolist() == pytest.approx(want["d0_row"])
    assert s.fp_point == pytest.approx(want["fp_point"])
    assert s.fp_certified == pytest.approx(want["fp_certified"])
    assert s.fp_upper == pytest.approx(want["fp_upper"])
    assert s.fp_certified <= s.fp_upper
    assert s.seconds_per_pair == pytest.approx(0.02)
    assert s.grid[4].tolist() == [0.0] * 4  # d = 8 > d_max = 4: never certified
    assert np.all(np.diff(s.grid, axis=0) <= 0) and np.all(np.diff(s.grid, axis=1) <= 0)
    table = filter_tables([s])
    assert f"| {tau} | 0 | " in table and "fp upper" in table


def test_heatmaps_one_per_file(tmp_path: Path) -> None:
    files = [
        load_results(write_filter_file(tmp_path / f"t{t}.jsonl", PAIRS, split="test", tau=t))
        for t in (0.5, 0.3)
    ]
    paths = plot_filter_heatmaps(files, tmp_path / "out" / "filter.png")
    assert [p.name for p in paths] == ["filter_t0.5_dr.png", "filter_t0.3_dr.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_a_majority_file_is_refused(tmp_path: Path) -> None:
    from smoothcert.reports import ResultFile

    header = {"config": {"method": "cohen", "params": {"sigma": 0.5}}}
    rec = {"index": 0, "label": 0, "correct": True, "abstained": False, "radius": 0.1}
    with pytest.raises(InvalidParameterError, match="invalid for a filter report"):
        filter_summary(ResultFile(Path("c.jsonl"), header, [rec]))


def test_recertify_at_another_tau_equals_a_fresh_decision(tmp_path: Path) -> None:
    src = write_filter_file(tmp_path / "t.jsonl", PAIRS, split="test", tau=0.5)
    for tau in (0.2, 0.8):
        out = recertify(src, tmp_path / f"r{tau}.jsonl", tau=tau)
        params = HybridParams(**params_dict(tau))  # type: ignore[arg-type]
        fresh = [
            record_line(decide_hybrid(evidence(k, seed=i), params), index=6000 + i, label=lab)
            for i, (k, lab) in enumerate(PAIRS)
        ]
        got = read_results(out).records
        assert [{**r, "type": None} for r in got] == [{**r, "type": None} for r in fresh]
        assert read_results(out).header["config"]["params"]["tau"] == tau


def test_recertify_tau_bad_input(tmp_path: Path) -> None:
    src = write_filter_file(tmp_path / "t.jsonl", PAIRS, split="test")
    for bad in (0.0, 1.0, -0.5, 2.0):
        with pytest.raises(InvalidParameterError, match="tau = .* valid range: 0 < tau < 1"):
            recertify(tmp_path / "missing.jsonl", tmp_path / "o.jsonl", tau=bad)
    from smoothcert.decisions.cohen import GaussianFacts, GaussianParams, decide_cohen
    from smoothcert.records import Evidence, StageEvidence
    from smoothcert.results import ResultStore
    from smoothcert.runner.config import RunConfig

    cfg = RunConfig(params={"sigma": 0.5, "n0": 10, "n": 100, "alpha": 0.001})
    ev = Evidence(
        (
            StageEvidence("selection", n=10, alpha=0.0, counts=(0, 10)),
            StageEvidence("estimation", n=100, alpha=0.0, counts=(5, 95)),
        ),
        GaussianFacts(num_classes=2),
    )
    cohen = tmp_path / "cohen.jsonl"
    with ResultStore.open(cohen, config=cfg.to_dict(), config_hash=cfg.config_hash()) as store:
        res = decide_cohen(ev, GaussianParams(sigma=0.5, n0=10, n=100, alpha=0.001))
        store.append(record_line(res, index=0, label=0))
    with pytest.raises(InvalidParameterError, match="cannot re-certify 'cohen'"):
        recertify(cohen, tmp_path / "o.jsonl", tau=0.3)
    res = CliRunner().invoke(app, ["recertify", str(src), "--output", str(tmp_path / "x.jsonl"),
                                   "--tau", "1.5"])  # fmt: skip
    assert res.exit_code != 0 and "tau = 1.5 is invalid" in res.output


def test_cli_report_filter(tmp_path: Path) -> None:
    src = write_filter_file(tmp_path / "t.jsonl", PAIRS, split="test", tau=0.5)
    res = CliRunner().invoke(
        app, ["report", "--filter", str(src), "--radii", "0,0.2", "--plot", str(tmp_path / "f.png")]
    )
    assert res.exit_code == 0, res.output
    s = filter_summary(load_results(src), radii=[0.0, 0.2])
    assert filter_tables([s]) in res.output
    assert (tmp_path / "f_t_dr.png").exists()


def test_a_calibration_applies_only_to_disjoint_pairs_of_the_same_filter(tmp_path: Path) -> None:
    import json

    from smoothcert.reports.filter import check_calibration
    from smoothcert.results.calibration import calibrate_file

    rng = np.random.default_rng(5)
    cal_pairs = [(int(k), 0) for k in rng.binomial(N, rng.beta(1, 6, size=150))]
    cal_path = write_filter_file(tmp_path / "cal.jsonl", cal_pairs + [(950, 1)] * 20)
    cal = calibrate_file(cal_path, fp_rate=0.1).to_dict()
    cal_json = tmp_path / "tau.json"
    cal_json.write_text(json.dumps(cal))
    good = write_filter_file(
        tmp_path / "good.jsonl", PAIRS, split="test", tau=cal["tau"], start_index=7200
    )
    s = filter_summary(load_results(good), calibration=cal)
    assert s.fp_target == 0.1 and "| 10.0% |" in filter_tables([s])
    res = CliRunner().invoke(app, ["report", "--filter", str(good), "--calibration", str(cal_json)])
    assert res.exit_code == 0 and "| 10.0% |" in res.output, res.output
    overlap = write_filter_file(tmp_path / "o.jsonl", PAIRS, split="test", tau=cal["tau"])
    with pytest.raises(InvalidParameterError, match="were used to fit tau"):
        check_calibration(load_results(overlap), cal)
    other_tau = write_filter_file(tmp_path / "t.jsonl", PAIRS, split="test", start_index=7200)
    with pytest.raises(InvalidParameterError, match="is not the calibrated"):
        check_calibration(load_results(other_tau), cal)
    other_sigma = dict(cal, source=dict(cal["source"]))
    other_sigma["source"]["config"] = dict(
        cal["source"]["config"], params=dict(cal["source"]["config"]["params"], sigma=0.25)
    )
    with pytest.raises(InvalidParameterError, match="sigma = 0.5 differs"):
        check_calibration(load_results(good), other_sigma)
    res = CliRunner().invoke(
        app, ["report", "--filter", str(other_tau), "--calibration", str(cal_json)]
    )
    assert res.exit_code != 0 and "fits none of the files" in res.output

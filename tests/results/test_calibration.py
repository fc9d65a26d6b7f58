"""Calibrating a safety filter's tau on benign calibration pairs (results/calibration.py).

Oracles: the rank rule written out by hand (sorted Clopper-Pearson upper bounds from
scipy's beta quantile), the exact FP rate of a known benign distribution of ``P(flag)``
(Monte Carlo over calibration draws: the marginal guarantee, with mutants it must catch),
the dataset's stable indices (calibration and test are disjoint).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import beta as beta_dist
from scipy.stats import binom
from typer.testing import CliRunner

from filter_toys import ALPHA, N, write_filter_file
from smoothcert.cli import app
from smoothcert.errors import InvalidParameterError
from smoothcert.results.calibration import (
    calibrate_file,
    calibrate_tau,
    fp_guarantee,
    tau_from_upper_bounds,
)
from smoothcert.results.recertify import load_records
from smoothcert.stats.binomial import clopper_pearson_upper

RNG_SEED = 20261202


def _pairs(m_benign: int, m_unsafe: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    benign = rng.binomial(N, rng.beta(1, 6, size=m_benign))
    unsafe = rng.binomial(N, rng.beta(6, 1, size=m_unsafe))
    pairs = [(int(k), 0) for k in benign] + [(int(k), 1) for k in unsafe]
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order]


def _scipy_upper(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Independent one-sided CP upper bound: the 1 - alpha quantile of Beta(k + 1, n - k)."""
    return np.where(k >= n, 1.0, beta_dist.ppf(1 - alpha, k + 1, np.maximum(n - k, 1)))


def test_tau_meets_the_target_on_the_calibration_records(tmp_path: Path) -> None:
    pairs = _pairs(300, 150)
    path = write_filter_file(tmp_path / "cal.jsonl", pairs)
    cal = calibrate_file(path, fp_rate=0.05)
    benign = np.array([k for k, lab in pairs if lab == 0])
    upper = _scipy_upper(benign, N, ALPHA)
    m = benign.size
    # the rank rule by hand: largest k with E[min(1, (k + B)/(m + 1))] <= 0.05
    b = np.arange(m + 1)
    pmf = binom.pmf(b, m, ALPHA)
    ranks = [k for k in range(1, m + 1) if np.sum(pmf * np.minimum(1, (k + b) / (m + 1))) <= 0.05]
    k = max(ranks)
    u_k = np.sort(upper)[::-1][k - 1]
    assert cal.rank == k and cal.num_benign == m == 300
    assert cal.threshold_upper == pytest.approx(u_k, rel=1e-6)
    assert u_k < cal.tau < 1 and cal.tau - u_k <= 1e-3 * max(u_k, 1e-3) + 1e-12
    assert cal.guarantee <= 0.05
    # on the calibration records: fewer than k pairs may be flagged, < the target rate
    assert np.mean(upper >= cal.tau) == pytest.approx(cal.calibration_fp_upper)
    assert cal.calibration_fp_upper <= (k - 1) / m < 0.05
    assert cal.calibration_fp_point <= cal.calibration_fp_upper
    assert cal.split == "calibration" and cal.target == 1 and cal.method == "hybrid"
    assert len(cal.indices) == m and all(6000 <= i < 6450 for i in cal.indices)


def test_records_and_arrays_give_the_same_tau(tmp_path: Path) -> None:
    pairs = _pairs(120, 10, seed=3)
    _, records = load_records(write_filter_file(tmp_path / "c.jsonl", pairs))
    benign = np.array([k for k, lab in pairs if lab == 0])
    upper = np.asarray(clopper_pearson_upper(benign, N, alpha=ALPHA))
    assert (
        calibrate_tau(records, fp_rate=0.1, split="calibration").tau
        == tau_from_upper_bounds(upper, fp_rate=0.1, alpha=ALPHA).tau
    )


def test_the_test_split_never_fits_tau(tmp_path: Path) -> None:
    path = write_filter_file(tmp_path / "test.jsonl", _pairs(200, 10), split="test")
    with pytest.raises(InvalidParameterError, match="split = 'test' is invalid"):
        calibrate_file(path, fp_rate=0.05)
    _, records = load_records(path)
    for split in ("test", "train"):
        with pytest.raises(InvalidParameterError, match=f"split = '{split}'"):
            calibrate_tau(records, fp_rate=0.05, split=split)


def test_calibration_and_test_pairs_are_disjoint_by_stable_index() -> None:
    from smoothcert.data import load_dataset

    cal = load_dataset("listings", split="calibration")
    test = load_dataset("listings", split="test")
    assert not set(cal.indices.tolist()) & set(test.indices.tolist())


@pytest.mark.parametrize("fp_rate", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_fp_rate_outside_the_open_unit_interval_is_refused(tmp_path: Path, fp_rate) -> None:
    with pytest.raises(InvalidParameterError, match="fp_rate = .* valid range: 0 < fp_rate < 1"):
        calibrate_file(tmp_path / "missing.jsonl", fp_rate=fp_rate)  # before reading


def test_other_methods_and_majority_mode_are_refused(tmp_path: Path) -> None:
    from smoothcert.decisions.cohen import GaussianFacts, GaussianParams, decide_cohen
    from smoothcert.records import Evidence, StageEvidence
    from smoothcert.results import ResultStore, record_line
    from smoothcert.runner.config import RunConfig

    cfg = RunConfig(params={"sigma": 0.5, "n0": 10, "n": 100, "alpha": 0.001}, split="calibration")
    ev = Evidence(
        (
            StageEvidence("selection", n=10, alpha=0.0, counts=(0, 10)),
            StageEvidence("estimation", n=100, alpha=0.0, counts=(5, 95)),
        ),
        GaussianFacts(num_classes=2),
    )
    path = tmp_path / "cohen.jsonl"
    with ResultStore.open(path, config=cfg.to_dict(), config_hash=cfg.config_hash()) as store:
        res = decide_cohen(ev, GaussianParams(sigma=0.5, n0=10, n=100, alpha=0.001))
        store.append(record_line(res, index=0, label=0))
    with pytest.raises(InvalidParameterError, match="method = 'cohen'"):
        calibrate_file(path, fp_rate=0.05)
    _, records = load_records(path)
    with pytest.raises(InvalidParameterError, match="method = 'cohen'"):
        calibrate_tau(records, fp_rate=0.05, split="calibration")


def test_too_few_benign_pairs_and_unreachable_targets_are_refused(tmp_path: Path) -> None:
    _, records = load_records(write_filter_file(tmp_path / "c.jsonl", _pairs(10, 3)))
    with pytest.raises(InvalidParameterError, match="out of reach with 10 benign"):
        calibrate_tau(records, fp_rate=0.05, split="calibration")
    _, unsafe_only = load_records(write_filter_file(tmp_path / "u.jsonl", [(900, 1)] * 3))
    with pytest.raises(InvalidParameterError, match="benign records = 0"):
        calibrate_tau(unsafe_only, fp_rate=0.5, split="calibration")
    with pytest.raises(InvalidParameterError, match="no tau in \\(0, 1\\)"):
        tau_from_upper_bounds(np.ones(100), fp_rate=0.05, alpha=ALPHA)
    with pytest.raises(InvalidParameterError, match="upper bounds"):
        tau_from_upper_bounds([0.2, float("nan")], fp_rate=0.5, alpha=ALPHA)


def test_fp_guarantee_closed_form() -> None:
    # alpha -> 0: exactly k / (m + 1); alpha = 1: (k + m) / (m + 1) capped at 1.
    assert fp_guarantee(3, num_benign=99, alpha=1e-12) == pytest.approx(0.03)
    assert fp_guarantee(1, num_benign=9, alpha=1 - 1e-12) == pytest.approx(1.0)
    m, alpha = 50, 0.01
    assert fp_guarantee(2, num_benign=m, alpha=alpha) == pytest.approx((2 + m * alpha) / (m + 1))


def _mean_fp(
    rng: np.random.Generator,
    *,
    reps: int,
    m: int,
    n: int,
    fp_rate: float,
    draw_p,
    fp_true,
    rule: str,
) -> tuple[float, float]:
    """Mean and standard error over calibration draws of the exact FP rate of the tau."""
    values = []
    for _ in range(reps):
        p = draw_p(rng, m)
        k = rng.binomial(n, p)
        if rule == "point":  # MUTANT: point estimates instead of upper bounds
            scores = k / n
        else:
            scores = np.minimum(1.0, np.asarray(clopper_pearson_upper(k, n, alpha=ALPHA)))
        choice = tau_from_upper_bounds(scores, fp_rate=fp_rate, alpha=ALPHA)
        tau = choice.tau
        if rule == "one_more":  # MUTANT: tau above the (k + 1)-th largest (off by one)
            tau = float(np.nextafter(np.sort(scores)[::-1][choice.rank], 1.0))
        values.append(fp_true(tau))
    arr = np.asarray(values)
    return float(arr.mean()), float(arr.std(ddof=1) / np.sqrt(reps))


def test_coverage_on_fresh_benign_pairs_catches_point_estimates() -> None:
    """Marginal FP <= target on a benign distribution built to punish point estimates.

    P(flag) of a benign pair is 0.31 with probability q = 0.07 (a hard cluster) and else
    uniform on [0, 0.1]; m = 199 pairs, n = 20 samples each. The correct rule puts tau
    above the cluster; tau from point estimates ``k / n`` lands inside it whenever fewer
    than k = 9 of the ~14 cluster estimates reach 0.31, so its FP rate is ~q = 0.059 > 0.05.
    Why a doubled alpha cannot be caught here (or anywhere cheaply): alpha enters the
    guarantee only through ``m alpha / (m + 1) ~ alpha = 0.001`` and through bounds that
    are already far above the cluster; the FP rate moves by less than 1e-3, below any
    affordable Monte Carlo resolution. The point-estimate mutant is alpha = 1/2, a real bug.
    """
    q, c = 0.07, 0.31

    def draw_p(rng, m):
        return np.where(rng.random(m) < q, c, 0.1 * rng.random(m))

    def fp_true(tau):  # P(p_new >= tau) for a fresh benign pair, exactly
        return q * (tau <= c) + (1 - q) * float(np.clip((0.1 - tau) / 0.1, 0.0, 1.0))

    rng = np.random.default_rng(RNG_SEED)
    kw = {"reps": 800, "m": 199, "n": 20, "fp_rate": 0.05, "draw_p": draw_p, "fp_true": fp_true}
    mean, se = _mean_fp(rng, rule="upper", **kw)
    assert mean <= 0.05 + 3 * se
    mutant, mse = _mean_fp(rng, rule="point", **kw)
    assert mutant > 0.05 + 4 * mse, (mutant, mse)


def test_coverage_is_tight_and_catches_an_off_by_one() -> None:
    """Continuous benign P(flag) ~ U(0, 1), n = 10^7: bounds ~ exact, so E[FP] ~ k/(m + 1).

    m = 99, target 0.045: the rule takes k = 4 (guarantee 0.0401); the mutant that puts tau
    above the 5th largest bound has E[FP] = 0.05 > 0.045 and must be caught.
    """
    rng = np.random.default_rng(RNG_SEED + 1)
    kw = {
        "reps": 1000,
        "m": 99,
        "n": 10**7,
        "fp_rate": 0.045,
        "draw_p": lambda r, m: r.random(m),
        "fp_true": lambda tau: max(0.0, 1.0 - tau),
    }
    mean, se = _mean_fp(rng, rule="upper", **kw)
    assert abs(mean - 0.04) < 4 * se + 1e-3  # tight: the rule is not needlessly loose
    assert mean <= 0.045 + 3 * se
    mutant, mse = _mean_fp(rng, rule="one_more", **kw)
    assert mutant > 0.045 + 3 * mse, (mutant, mse)


def test_cli_calibrate_prints_and_writes_tau(tmp_path: Path) -> None:
    path = write_filter_file(tmp_path / "cal.jsonl", _pairs(200, 20))
    out = tmp_path / "tau.json"
    res = CliRunner().invoke(
        app, ["calibrate", str(path), "--fp-rate", "0.05", "--output", str(out)]
    )
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    assert saved["tau"] == calibrate_file(path, fp_rate=0.05).tau
    assert f"tau = {saved['tau']!r}" in res.output
    assert saved["source"]["config"]["split"] == "calibration"
    bad = CliRunner().invoke(app, ["calibrate", str(path), "--fp-rate", "1.5"])
    assert bad.exit_code != 0 and "fp_rate = 1.5 is invalid" in bad.output
    test = write_filter_file(tmp_path / "t.jsonl", _pairs(200, 20), split="test")
    refused = CliRunner().invoke(app, ["calibrate", str(test), "--fp-rate", "0.05"])
    assert refused.exit_code != 0 and "split = 'test' is invalid" in refused.output

"""recertify --bound/--combiner: every certificate on the SAME saved samples.

Oracles are written out independently here (scipy's beta quantiles, the closed forms of
Hoeffding and Maurer-Pontil, the CPM partition by hand) and compared with the records
``recertify`` writes; orderings that theory guarantees are checked; a Monte Carlo test
on multinomial votes and simplex scores with a known runner-up checks coverage and has
the power to catch a doubled alpha.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import beta as beta_dist
from scipy.stats import norm
from typer.testing import CliRunner

from smoothcert.cli import app
from smoothcert.decisions.cohen import GaussianFacts, GaussianParams, decide_cohen
from smoothcert.decisions.combined import (
    CombinedParams,
    SoftCombinedParams,
    decide_cohen_combined,
    decide_soft_combined,
)
from smoothcert.decisions.soft import SoftParams, decide_soft
from smoothcert.errors import InvalidParameterError
from smoothcert.records import Evidence, StageEvidence
from smoothcert.results import ResultStore, read_results, record_line
from smoothcert.results.recertify import load_records, recertify
from smoothcert.runner.config import RunConfig

SIGMA, N0, N, ALPHA = 0.5, 50, 1000, 0.01
COMBINERS = ("mono", "top2", "cpm", "bonferroni")

# (selection counts, estimation counts, label); K = 5.
VOTES = [
    ((2, 40, 5, 2, 1), (20, 850, 80, 30, 20), 1),
    ((30, 10, 4, 3, 3), (700, 120, 90, 50, 40), 0),
    ((5, 25, 15, 3, 2), (90, 520, 300, 50, 40), 1),
    ((1, 1, 46, 1, 1), (2, 3, 990, 3, 2), 3),  # certified but wrong label
    ((10, 12, 10, 9, 9), (190, 230, 200, 190, 190), 1),  # abstains
]


def _soft_stage(role: str, n: int, counts, rng) -> StageEvidence:
    # A soft score per sample: mostly on its vote class, some mass spread.
    k = len(counts)
    sums = np.zeros(k)
    sq = np.zeros(k)
    for c, m in enumerate(counts):
        if m == 0:
            continue
        main = rng.uniform(0.6, 0.95, size=m)
        rest = (1.0 - main)[:, None] * rng.dirichlet(np.ones(k - 1), size=m)
        scores = np.insert(rest, c, main, axis=1)
        sums += scores.sum(axis=0)
        sq += (scores**2).sum(axis=0)
    return StageEvidence(
        role,
        n=n,
        alpha=0.0,
        counts=tuple(int(x) for x in counts),
        score_sums=tuple(float(x) for x in sums),
        score_sq_sums=tuple(float(x) for x in sq),
    )


def _evidence(sel, est, *, soft: bool = False, seed: int = 0) -> Evidence:
    if soft:
        rng = np.random.default_rng(seed)
        stages = (_soft_stage("selection", N0, sel, rng), _soft_stage("estimation", N, est, rng))
    else:
        stages = (
            StageEvidence("selection", n=N0, alpha=0.0, counts=sel),
            StageEvidence("estimation", n=N, alpha=0.0, counts=est),
        )
    return Evidence(stages, GaussianFacts(num_classes=len(sel)), seed=seed, seconds=0.25)


def _write(path: Path, method: str, params_dict: dict, decide, params, *, soft: bool) -> Path:
    cfg = RunConfig(method=method, params=params_dict, model="toy", dataset="toy", seed=7)
    with ResultStore.open(path, config=cfg.to_dict(), config_hash=cfg.config_hash()) as store:
        for i, (sel, est, label) in enumerate(VOTES):
            result = decide(_evidence(sel, est, soft=soft, seed=i), params)
            store.append(record_line(result, index=i, label=label))
    return path


@pytest.fixture
def cohen_file(tmp_path) -> Path:
    d = {"sigma": SIGMA, "n0": N0, "n": N, "alpha": ALPHA}
    return _write(
        tmp_path / "cohen.jsonl", "cohen", d, decide_cohen, GaussianParams(**d), soft=False
    )


@pytest.fixture
def soft_file(tmp_path) -> Path:
    d = {"sigma": SIGMA, "n0": N0, "n": N, "alpha": ALPHA, "score_bound": "hoeffding"}
    return _write(tmp_path / "soft.jsonl", "soft", d, decide_soft, SoftParams(**d), soft=True)


# --- independent oracles ---------------------------------------------------------------


def cp_lower(k, n, a):
    return 0.0 if k == 0 else float(beta_dist.ppf(a, k, n - k + 1))


def cp_upper(k, n, a):
    return 1.0 if k == n else float(beta_dist.ppf(1 - a, k + 1, n - k))


def hoef(mean, n, a, sign):
    return min(max(mean + sign * math.sqrt(math.log(1 / a) / (2 * n)), 0.0), 1.0)


def bern(mean, var, n, a, sign):
    w = math.sqrt(2 * var * math.log(2 / a) / n) + 7 * math.log(2 / a) / (3 * (n - 1))
    return min(max(mean + sign * w, 0.0), 1.0)


def cpm_partition(sel, top):
    """The CPM rule written out: runner-up alone; peel the pool while it outweighs it."""
    others = sorted((c for c in range(len(sel)) if c != top), key=lambda c: (-sel[c], c))
    buckets = [[others[0]]]
    pool = others[1:]
    while pool and sum(sel[c] for c in pool) > sel[others[0]]:
        buckets.append([pool.pop(0)])
    if pool:
        buckets.append(pool)
    return buckets


def oracle(sel, est_sums, est_sq, *, top, bound, combiner):
    """(p_lower, p_upper) from scratch; est_* are per-class sums (counts for votes)."""
    k = len(sel)
    groups = {
        "mono": None,
        "top2": [[c] for c in range(k) if c != top],
        "bonferroni": [[c] for c in range(k) if c != top],
        "cpm": cpm_partition(sel, top),
    }[combiner]
    parts = {"mono": 1, "top2": 2, "bonferroni": k}.get(combiner) or 1 + len(groups)
    a = ALPHA / parts

    def stat(cs):
        s = sum(est_sums[c] for c in cs)
        if len(cs) == 1:
            q = est_sq[cs[0]]
            var = (q - s * s / N) / (N - 1)
        else:
            m = s / N
            var = N / (N - 1) * m * (1 - m)
        return s, var

    def lo_up(cs, sign):
        s, var = stat(cs)
        if bound == "cp":
            return cp_lower(int(s), N, a) if sign < 0 else cp_upper(int(s), N, a)
        if bound == "hoeffding":
            return hoef(s / N, N, a, sign)
        return bern(s / N, var, N, a, sign)

    lo = lo_up([top], -1)
    up = 1 - lo if groups is None else min(max(lo_up(g, +1) for g in groups), 1 - lo)
    return lo, up


def radius_of(lo, up, combiner):
    if combiner == "mono":
        return SIGMA * norm.ppf(lo) if lo > 0.5 else 0.0
    return SIGMA / 2 * (norm.ppf(lo) - norm.ppf(up)) if lo > up else 0.0


# --- each (bound, combiner) equals the oracle ------------------------------------------


@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("bound", ["cp", "hoeffding", "bernstein"])
def test_votes_each_bound_and_combiner_equal_the_oracle(cohen_file, tmp_path, bound, combiner):
    out = recertify(cohen_file, tmp_path / "out.jsonl", bound=bound, combiner=combiner)
    contents = read_results(out)
    assert contents.header["config"]["method"] == "cohen-combined"
    assert contents.header["config"]["params"] == {
        "sigma": SIGMA,
        "n0": N0,
        "n": N,
        "alpha": ALPHA,
        "bound": bound,
        "combiner": combiner,
    }
    src = contents.header["recertified_from"]
    assert (src["method"], src["bound"], src["combiner"]) == ("cohen", bound, combiner)
    for rec, (sel, est, _) in zip(contents.records, VOTES, strict=True):
        top = int(np.argmax(sel))
        lo, up = oracle(sel, est, est, top=top, bound=bound, combiner=combiner)
        # The library's CP quantiles are computed another way and rounded outwards.
        tol = 1e-7 if bound == "cp" else 1e-9
        assert rec["p_lower"] == pytest.approx(lo, rel=tol, abs=1e-12)
        assert rec["p_upper"] == pytest.approx(up, rel=tol, abs=1e-12)
        assert rec["p_lower"] <= lo * (1 + 1e-12) and rec["p_upper"] >= up * (1 - 1e-12)
        r = radius_of(lo, up, combiner)
        assert rec["radius"] == pytest.approx(r, rel=1e-6, abs=1e-12)
        assert rec["abstained"] == (r == 0.0)
        assert rec["prediction"] == (None if r == 0.0 else top)
        assert rec["details"]["bound"] == bound and rec["details"]["combiner"] == combiner
        assert rec["alpha"] == ALPHA
    # The re-certified file validates (every record re-decided) and reports.
    load_records(out)
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("combiner", COMBINERS)
@pytest.mark.parametrize("bound", ["hoeffding", "bernstein"])
def test_soft_each_bound_and_combiner_equal_the_oracle(soft_file, tmp_path, bound, combiner):
    out = recertify(soft_file, tmp_path / "out.jsonl", bound=bound, combiner=combiner)
    contents = read_results(out)
    assert contents.header["config"]["method"] == "soft-combined"
    params = contents.header["config"]["params"]
    assert (params["bound"], params["combiner"], params["score_map"]) == (
        bound,
        combiner,
        "softmax",
    )
    for rec in contents.records:
        sel_stage, est_stage = rec["evidence"]["stages"]
        top = int(np.argmax(sel_stage["score_sums"]))  # selection by SCORE sums
        lo, up = oracle(
            sel_stage["counts"],  # CPM buckets from the selection counts
            est_stage["score_sums"],
            est_stage["score_sq_sums"],
            top=top,
            bound=bound,
            combiner=combiner,
        )
        assert rec["p_lower"] == pytest.approx(lo, rel=1e-9, abs=1e-12)
        assert rec["p_upper"] == pytest.approx(up, rel=1e-9, abs=1e-12)
        assert rec["radius"] == pytest.approx(radius_of(lo, up, combiner), rel=1e-8, abs=1e-12)
    load_records(out)


# --- the original settings, and orderings that theory guarantees -----------------------


def test_cp_mono_reproduces_cohen_and_soft_mono_reproduces_soft(
    cohen_file, soft_file, tmp_path
) -> None:
    same = read_results(recertify(cohen_file, tmp_path / "a.jsonl", combiner="mono")).records
    for new, old in zip(same, read_results(cohen_file).records, strict=True):
        assert new["method"] == "cohen-combined"
        assert (new["prediction"], new["p_lower"], new["radius"]) == (
            old["prediction"],
            old["p_lower"],
            old["radius"],
        )
    soft = read_results(recertify(soft_file, tmp_path / "b.jsonl", combiner="mono")).records
    assert soft[0]["params"]["bound"] == "hoeffding"  # the file's own score_bound kept
    for new, old in zip(soft, read_results(soft_file).records, strict=True):
        assert new["prediction"] == old["prediction"]
        assert new["p_lower"] == pytest.approx(old["p_lower"], rel=1e-12)
        assert new["radius"] == pytest.approx(old["radius"], rel=1e-9)


def test_theory_orderings_hold_on_the_same_votes() -> None:
    rng = np.random.default_rng(5)
    for _ in range(60):
        k = int(rng.integers(3, 12))
        p = rng.dirichlet(np.full(k, 0.3))
        sel = tuple(int(x) for x in rng.multinomial(N0, p))
        est = tuple(int(x) for x in rng.multinomial(N, p))
        ev = _evidence(sel, est)

        def res(bound, combiner, ev=ev):
            params = CombinedParams(
                sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, bound=bound, combiner=combiner
            )
            return decide_cohen_combined(ev, params)

        top2, bonf, cpm = res("cp", "top2"), res("cp", "bonferroni"), res("cp", "cpm")
        # top2 spends alpha/2 on each side; Bonferroni alpha/K (K >= 3), CPM alpha/(1+B)
        # with bucket totals >= the classes they hold: never tighter than top2.
        assert bonf.p_lower <= top2.p_lower and bonf.p_upper >= top2.p_upper
        assert cpm.p_lower <= top2.p_lower and cpm.p_upper >= top2.p_upper
        assert bonf.radius <= top2.radius and cpm.radius <= top2.radius
        # Hoeffding's tail bound dominates the exact binomial tail: never tighter than CP.
        for combiner in COMBINERS:
            assert res("hoeffding", combiner).p_lower <= res("cp", combiner).p_lower
            assert res("hoeffding", combiner).radius <= res("cp", combiner).radius


# --- class and buckets come from the selection stage only ------------------------------


def test_class_and_cpm_buckets_come_from_the_selection_stage_only() -> None:
    params = CombinedParams(sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, bound="cp", combiner="cpm")
    sel = (39, 5, 3, 2, 1)
    est = (100, 850, 30, 10, 10)  # the estimation sample prefers class 1
    res = decide_cohen_combined(_evidence(sel, est), params)
    assert cpm_partition(sel, 0) == [[1], [2], [3, 4]]
    assert res.abstained and res.p_lower == pytest.approx(cp_lower(100, N, ALPHA / 4))
    assert res.details.buckets == 3
    # Buckets move with the selection counts, never with the estimation counts.
    other = decide_cohen_combined(_evidence(sel, (600, 100, 100, 100, 100)), params)
    assert other.details.buckets == 3 and other.prediction == 0
    flat = decide_cohen_combined(_evidence((40, 3, 3, 2, 2), est), params)
    assert cpm_partition((40, 3, 3, 2, 2), 0) == [[1], [2], [3], [4]]
    assert flat.details.buckets == 4


# --- Monte Carlo coverage with a known runner-up ---------------------------------------


P_TRUE = np.array([0.46, 0.30, 0.12, 0.07, 0.05])
MC_ALPHA, MC_N0, MC_N = 0.2, 30, 400


def _failure_rate(decide, make_params, alpha, *, soft: bool, seed: int, trials: int) -> float:
    rng = np.random.default_rng(seed)
    k = len(P_TRUE)
    if soft:
        # Scores: each sample is one of these simplex vectors, drawn with weights W; the
        # smoothed score is then W @ T exactly.
        templates = np.array(
            [
                [0.9, 0.05, 0.05, 0.0, 0.0],
                [0.2, 0.7, 0.1, 0.0, 0.0],
                [0.1, 0.2, 0.5, 0.1, 0.1],
                [0.0, 0.0, 0.1, 0.6, 0.3],
            ]
        )
        w = np.array([0.4, 0.35, 0.15, 0.1])
        mean = w @ templates
    else:
        mean = P_TRUE
    params = make_params(alpha)
    failures = 0
    for _ in range(trials):
        if soft:
            cs = rng.multinomial(MC_N0, w)
            ce = rng.multinomial(MC_N, w)
            votes = np.argmax(templates, axis=1)
            sel_counts = np.bincount(votes, weights=cs, minlength=k).astype(int)
            est_counts = np.bincount(votes, weights=ce, minlength=k).astype(int)
            stages = tuple(
                StageEvidence(
                    role,
                    n=n,
                    alpha=0.0,
                    counts=tuple(int(x) for x in cnt),
                    score_sums=tuple(float(x) for x in c @ templates),
                    score_sq_sums=tuple(float(x) for x in c @ templates**2),
                )
                for role, n, c, cnt in (
                    ("selection", MC_N0, cs, sel_counts),
                    ("estimation", MC_N, ce, est_counts),
                )
            )
        else:
            sel = tuple(int(x) for x in rng.multinomial(MC_N0, P_TRUE))
            est = tuple(int(x) for x in rng.multinomial(MC_N, P_TRUE))
            stages = (
                StageEvidence("selection", n=MC_N0, alpha=0.0, counts=sel),
                StageEvidence("estimation", n=MC_N, alpha=0.0, counts=est),
            )
        res = decide(Evidence(stages, GaussianFacts(num_classes=k), seed=0), params)
        sel_stage = stages[0]
        top = int(np.argmax(sel_stage.score_sums if soft else sel_stage.counts))
        runner_up = float(np.max(np.delete(mean, top)))
        failures += res.p_lower > mean[top] or res.p_upper < runner_up
    return failures / trials


@pytest.mark.parametrize("combiner", COMBINERS)
def test_coverage_on_multinomial_votes_and_a_doubled_alpha_is_caught(combiner) -> None:
    def make(alpha):
        return CombinedParams(
            sigma=SIGMA, n0=MC_N0, n=MC_N, alpha=alpha, bound="cp", combiner=combiner
        )

    trials = 800
    slack = 3 * math.sqrt(MC_ALPHA * (1 - MC_ALPHA) / trials)
    rate = _failure_rate(decide_cohen_combined, make, MC_ALPHA, soft=False, seed=11, trials=trials)
    assert rate <= MC_ALPHA + slack, rate
    if combiner in ("mono", "top2"):  # near-exact CP: the test has the power to see 2 alpha
        mutant = _failure_rate(
            decide_cohen_combined, make, 2 * MC_ALPHA, soft=False, seed=11, trials=trials
        )
        assert mutant > MC_ALPHA + slack, mutant


@pytest.mark.parametrize("combiner", ["mono", "top2", "cpm"])
@pytest.mark.parametrize("bound", ["hoeffding", "bernstein"])
def test_coverage_on_simplex_scores(bound, combiner) -> None:
    def make(alpha):
        return SoftCombinedParams(
            sigma=SIGMA, n0=MC_N0, n=MC_N, alpha=alpha, bound=bound, combiner=combiner
        )

    trials = 400
    slack = 3 * math.sqrt(MC_ALPHA * (1 - MC_ALPHA) / trials)
    rate = _failure_rate(decide_soft_combined, make, MC_ALPHA, soft=True, seed=13, trials=trials)
    assert rate <= MC_ALPHA + slack, rate


# --- bad requests: one clear error before anything is written ---------------------------


@pytest.mark.parametrize(
    ("kw", "needles"),
    [
        (
            {"bound": "betting", "combiner": "cpm"},
            ["combiner = 'cpm' is invalid with bound = 'betting'", "mono, top2"],
        ),
        ({"bound": "wilson"}, ["bound = 'wilson' is invalid", "cp, hoeffding, bernstein, betting"]),
        ({"combiner": "holm"}, ["combiner = 'holm' is invalid", "mono, top2, cpm, bonferroni"]),
        ({"bound": "cp", "method": "cohen-top2"}, ["method = 'cohen-top2' with bound"]),
        ({"bound": "cp", "alpha": 1.5}, ["alpha = 1.5 is invalid"]),
    ],
)
def test_bad_requests_fail_before_writing(cohen_file, tmp_path, kw, needles) -> None:
    out = tmp_path / "out.jsonl"
    with pytest.raises(InvalidParameterError) as err:
        recertify(cohen_file, out, **kw)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))
    assert not out.exists()


def test_cp_on_a_soft_file_is_refused(soft_file, tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    with pytest.raises(InvalidParameterError, match="bound = 'cp' is invalid for a 'soft' file"):
        recertify(soft_file, out, bound="cp")
    assert not out.exists()


def test_method_name_alone_keeps_the_files_settings(cohen_file, tmp_path) -> None:
    out = recertify(cohen_file, tmp_path / "out.jsonl", method="cohen-combined", alpha=0.05)
    params = read_results(out).header["config"]["params"]
    assert (params["bound"], params["combiner"], params["alpha"]) == ("cp", "mono", 0.05)
    # A combined file re-certified with its own settings reproduces itself.
    again = recertify(out, tmp_path / "again.jsonl")
    assert read_results(again).records == read_results(out).records


def test_cli_recertify_with_bound_and_combiner(cohen_file, tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli.jsonl"
    args = ["recertify", str(cohen_file), "--output", str(out)]
    result = runner.invoke(app, [*args, "--bound", "bernstein", "--combiner", "cpm"])
    assert result.exit_code == 0, result.output
    rec = read_results(out).records[0]
    assert (rec["method"], rec["params"]["bound"], rec["params"]["combiner"]) == (
        "cohen-combined",
        "bernstein",
        "cpm",
    )
    bad = tmp_path / "bad.jsonl"
    result = runner.invoke(
        app,
        ["recertify", str(cohen_file), "--output", str(bad), "--bound", "betting"]
        + ["--combiner", "bonferroni"],
    )
    assert result.exit_code != 0
    assert "combiner = 'bonferroni' is invalid with bound = 'betting'" in result.output
    assert not bad.exists()


# --- the comparison script (benchmarks/bench_bounds.py) ---------------------------------


def test_bench_bounds_smoke(cohen_file, soft_file, tmp_path, capsys) -> None:
    import importlib.util
    import json
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_bounds.py"
    spec = importlib.util.spec_from_file_location("smoothcert_bench_bounds", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        out = tmp_path / "bounds.json"
        args = [str(cohen_file), str(soft_file), "--radii", "0", "0.5", "--out", str(out)]
        assert module.main(args) == 0
    finally:
        sys.modules.pop(spec.name, None)
    text = capsys.readouterr().out
    assert "| CP mono |" in text and "| CP CPM |" in text and "| soft Bernstein |" in text
    assert "Sign test against CP mono" in text
    cohen, soft = json.loads(out.read_text())
    assert set(cohen["columns"]) == {"CP mono", "CP top2", "CP CPM", "CP Bonferroni"}
    assert len(soft["columns"]) == 7
    # CP mono is Cohen's certificate: its accuracy is the file's own at each radius.
    records = read_results(cohen_file).records
    for radius, acc in zip((0.0, 0.5), cohen["columns"]["CP mono"]["accuracy"], strict=True):
        own = np.mean([r["correct"] and r["radius"] >= radius for r in records])
        assert acc == pytest.approx(own)
    acr = np.mean([r["radius"] if r["correct"] else 0.0 for r in records])
    assert cohen["columns"]["CP mono"]["acr"] == pytest.approx(acr)
    assert all(0.0 <= t["p_value"] <= 1.0 for t in cohen["tests"]["CP top2"])


def test_cli_top2_with_a_bound_means_the_top2_combiner(cohen_file, tmp_path) -> None:
    out = tmp_path / "t.jsonl"
    args = ["recertify", str(cohen_file), "--output", str(out), "--top2", "--bound", "hoeffding"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    params = read_results(out).header["config"]["params"]
    assert (params["bound"], params["combiner"]) == ("hoeffding", "top2")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--method", "cohen", "--combiner", "cpm"], "--combiner is not an option of method"),
        (
            ["--method", "cohen-combined", "--bound", "betting", "--combiner", "cpm"],
            "combiner = 'cpm' is invalid with bound = 'betting'",
        ),
        (["--method", "cohen-combined", "--combiner", "holm"], "combiner = 'holm' is invalid"),
        (["--method", "soft-combined", "--bound", "cp"], "bound = 'cp' is invalid"),
    ],
)
def test_cli_certify_bad_bound_or_combiner_fails_before_sampling(tmp_path, args, needle) -> None:
    out = tmp_path / "x.jsonl"
    result = CliRunner().invoke(app, ["certify", *args, "--output", str(out), "--no-progress"])
    assert result.exit_code != 0 and needle in result.output, result.output
    assert not out.exists()

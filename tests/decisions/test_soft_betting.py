"""Soft smoothing certified with the betting bound on saved per-class score histograms.

Oracles: the stats-level betting bounds called directly on the same histograms with
scipy's normal quantile for the radius; exact votes for hardmax and hard-vote files;
Monte Carlo coverage of the whole certificate (class chosen on the selection stage) on
Dirichlet scores with known means, with a doubled-alpha comparison.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from smoothcert.decisions.cohen import GaussianFacts
from smoothcert.decisions.combined import (
    CombinedParams,
    SoftCombinedParams,
    decide_cohen_combined,
    decide_soft_combined,
)
from smoothcert.decisions.soft import (
    SoftParams,
    decide_soft,
    decide_soft_top2,
    histogram_bins_for,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.records import Evidence, ScoreHistograms, StageEvidence
from smoothcert.runner.config import RunConfig
from smoothcert.stats import (
    HISTOGRAM_BINS,
    betting_histogram_lower,
    betting_histogram_upper,
    betting_mixture_lower,
    betting_mixture_upper,
    score_histogram,
)

SIGMA, N0, N, ALPHA = 0.5, 20, 2000, 0.001


def _stage(role: str, scores: np.ndarray, *, hist: bool) -> StageEvidence:
    """Stage evidence of per-sample scores (n, K), as the sampler records it."""
    q = np.floor(scores * 2.0**31) / 2.0**31
    return StageEvidence(
        role,
        n=scores.shape[0],
        alpha=0.0,
        counts=tuple(int(c) for c in np.bincount(scores.argmax(1), minlength=scores.shape[1])),
        score_sums=tuple(float(v) for v in q.sum(0)),
        score_sq_sums=tuple(float(v) for v in (q * q).sum(0)),
        score_histograms=ScoreHistograms.from_dense(score_histogram(scores.T)) if hist else None,
    )


def _scores(rng, concentration, n: int) -> np.ndarray:
    return rng.dirichlet(concentration, size=n)


def _evidence(rng, concentration=(2.0, 30.0, 4.0), *, n: int = N, hist: bool = True):
    k = len(concentration)
    sel = _stage("selection", _scores(rng, concentration, N0), hist=False)
    est_scores = _scores(rng, concentration, n)
    est = _stage("estimation", est_scores, hist=hist)
    return Evidence((sel, est), GaussianFacts(num_classes=k), seed=0), est_scores


def test_soft_betting_equals_the_stats_bound_on_the_same_histogram() -> None:
    ev, scores = _evidence(np.random.default_rng(0))
    params = SoftParams(sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, score_bound="betting")
    res = decide_soft(ev, params)
    dense = score_histogram(scores.T)
    p_lower = float(betting_histogram_lower(dense[1], alpha=ALPHA))
    assert res.prediction == 1 and res.p_lower == p_lower
    assert res.radius == pytest.approx(SIGMA * norm.ppf(p_lower), rel=1e-12)
    assert res.details.score_bound == "betting"
    # at least as good as hoeffding on these scores, and a valid-looking bound
    hoeff = decide_soft(
        ev, SoftParams(sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, score_bound="hoeffding")
    )
    assert hoeff.p_lower < res.p_lower < scores[:, 1].mean()


def test_soft_top2_betting_splits_alpha_and_bounds_the_runner_up() -> None:
    ev, scores = _evidence(np.random.default_rng(1))
    params = SoftParams(sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, score_bound="betting")
    res = decide_soft_top2(ev, params)
    dense = score_histogram(scores.T)
    lower = float(betting_histogram_lower(dense[1], alpha=ALPHA / 2))
    upper = float(np.max(betting_histogram_upper(dense[[0, 2]], alpha=ALPHA / 2)))
    assert res.p_lower == lower and res.p_upper == min(upper, 1 - lower)
    expected = SIGMA / 2 * (norm.ppf(lower) - norm.ppf(res.p_upper))
    assert res.radius == pytest.approx(expected, rel=1e-12)
    # the combined method with top2 gives the same certificate (alpha/2 rounded down)
    comb = decide_soft_combined(
        ev,
        SoftCombinedParams(sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, bound="betting", combiner="top2"),
    )
    assert comb.p_lower == pytest.approx(lower, abs=1e-9)
    assert comb.p_upper == pytest.approx(res.p_upper, abs=1e-9)


def test_soft_combined_mono_betting_equals_soft() -> None:
    ev, _ = _evidence(np.random.default_rng(2))
    soft = decide_soft(ev, SoftParams(sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, score_bound="betting"))
    comb = decide_soft_combined(
        ev,
        SoftCombinedParams(sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, bound="betting", combiner="mono"),
    )
    assert (comb.prediction, comb.p_lower, comb.radius) == (
        soft.prediction,
        soft.p_lower,
        soft.radius,
    )
    assert comb.p_upper >= 1 - comb.p_lower


def test_hardmax_betting_uses_exact_votes_without_histograms() -> None:
    counts = np.array([30, 1950, 20])
    sel = StageEvidence(
        "selection",
        n=N0,
        alpha=0.0,
        counts=(1, 19, 0),
        score_sums=(1.0, 19.0, 0.0),
        score_sq_sums=(1.0, 19.0, 0.0),
    )
    sums = tuple(float(c) for c in counts)
    est = StageEvidence(
        "estimation",
        n=N,
        alpha=0.0,
        counts=tuple(int(c) for c in counts),
        score_sums=sums,
        score_sq_sums=sums,
    )
    ev = Evidence((sel, est), GaussianFacts(num_classes=3), seed=0)
    params = SoftParams(
        sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, score_map="hardmax", score_bound="betting"
    )
    votes = [0.0, 1.0]
    res = decide_soft_top2(ev, params)
    assert res.p_lower == float(betting_mixture_lower(votes, counts=[50, 1950], alpha=ALPHA / 2))
    up = betting_mixture_upper(votes, counts=[[1970, 30], [1980, 20]], alpha=ALPHA / 2)
    assert res.p_upper == min(float(np.max(up)), 1 - res.p_lower)
    # hard-vote files (cohen-combined) give the same bounds from their counts
    comb = decide_cohen_combined(
        ev, CombinedParams(sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, bound="betting", combiner="top2")
    )
    assert comb.p_lower == pytest.approx(res.p_lower, abs=1e-9)
    assert histogram_bins_for("hardmax", "betting") is None
    assert histogram_bins_for("softmax", "betting") == HISTOGRAM_BINS
    assert histogram_bins_for("softmax", "bernstein") is None


def test_missing_histograms_are_named() -> None:
    ev, _ = _evidence(np.random.default_rng(3), hist=False)
    params = SoftParams(sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, score_bound="betting")
    for decide in (decide_soft, decide_soft_top2):
        with pytest.raises(
            InvalidParameterError, match="no score histograms.*--score-bound betting"
        ):
            decide(ev, params)


@pytest.mark.parametrize("combiner", ["cpm", "bonferroni"])
def test_combiners_that_need_more_are_refused(combiner) -> None:
    for cls, extra in ((SoftCombinedParams, {}), (CombinedParams, {})):
        with pytest.raises(
            InvalidParameterError,
            match=f"combiner = '{combiner}' is invalid with bound = 'betting'.*mono, top2",
        ):
            cls(sigma=SIGMA, n0=N0, n=N, alpha=ALPHA, bound="betting", combiner=combiner, **extra)


def test_betting_keeps_the_config_hash_of_existing_soft_runs() -> None:
    # a new allowed value, no new field: the hash of a bernstein run is unchanged, and
    # betting hashes differently
    base = {"sigma": 0.25, "n0": 10, "n": 100, "alpha": 0.01}
    cfg = RunConfig(method="soft", params=base)
    assert set(cfg.params) == {
        "sigma",
        "n0",
        "n",
        "alpha",
        "score_map",
        "temperature",
        "score_bound",
    }
    bet = RunConfig(method="soft", params={**base, "score_bound": "betting"})
    assert cfg.config_hash() != bet.config_hash()
    assert cfg.config_hash() == RunConfig(method="soft", params=dict(base)).config_hash()


# --- coverage of the whole certificate ----------------------------------------------------


def _coverage_failures(alpha: float, trials: int, seed: int) -> tuple[float, float]:
    """Failure rates of (soft, soft-top2) betting bounds on Dirichlet scores, n = 60."""
    conc = np.array([3.0, 5.0, 2.0])
    mu = conc / conc.sum()
    rng = np.random.default_rng(seed)
    fail_mono = fail_top2 = 0
    params = SoftParams(sigma=SIGMA, n0=N0, n=60, alpha=alpha, score_bound="betting")
    for _ in range(trials):
        ev, _ = _evidence(rng, conc, n=60)
        mono = decide_soft(ev, params)
        top = int(np.argmax(ev.stages[0].score_sums))
        fail_mono += mono.p_lower > mu[top]
        two = decide_soft_top2(ev, params)
        runner = max(mu[c] for c in range(3) if c != top)
        fail_top2 += two.p_lower > mu[top] or two.p_upper < runner
    return fail_mono / trials, fail_top2 / trials


def test_monte_carlo_coverage_of_the_certificate() -> None:
    # Continuous scores are far from the two-point worst case of Markov's inequality, so
    # the failure rate is far below alpha (measured 0.04 / 0.01 at alpha = 0.2, and 0.07 /
    # 0.06 at a doubled alpha): this check cannot see a doubled alpha; the exact
    # enumeration on votes below can.
    alpha, trials = 0.2, 100
    mono, top2 = _coverage_failures(alpha, trials, seed=4)
    slack = 3 * np.sqrt(alpha * (1 - alpha) / trials)
    assert mono <= alpha + slack and top2 <= alpha + slack, (mono, top2)


def _exact_vote_failure(alpha: float, n: int) -> float:
    """Exact max over p of P(decide_soft's p_lower > p) on hardmax votes, class 1 chosen."""
    from scipy.stats import binom

    sel = StageEvidence(
        "selection",
        n=N0,
        alpha=0.0,
        counts=(0, N0),
        score_sums=(0.0, float(N0)),
        score_sq_sums=(0.0, float(N0)),
    )
    params = SoftParams(
        sigma=SIGMA, n0=N0, n=n, alpha=alpha, score_map="hardmax", score_bound="betting"
    )
    lowers = []
    for k in range(n + 1):
        sums = (float(n - k), float(k))
        est = StageEvidence(
            "estimation", n=n, alpha=0.0, counts=(n - k, k), score_sums=sums, score_sq_sums=sums
        )
        ev = Evidence((sel, est), GaussianFacts(num_classes=2), seed=0)
        lowers.append(decide_soft(ev, params).p_lower)
    ps = np.linspace(0.0005, 0.9995, 1999)
    pmf = binom.pmf(np.arange(n + 1)[None, :], n, ps[:, None])
    return float((pmf * (np.array(lowers)[None, :] > ps[:, None])).sum(axis=1).max())


@pytest.mark.parametrize("n", [20, 50])
def test_exact_coverage_of_the_decision_on_votes_catches_a_doubled_alpha(n: int) -> None:
    alpha = 0.2
    assert _exact_vote_failure(alpha, n) <= alpha
    assert _exact_vote_failure(2 * alpha, n) > alpha  # the doubled-alpha mutant is caught

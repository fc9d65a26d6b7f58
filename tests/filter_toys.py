"""Synthetic safety-filter result files (hybrid, flag class 1) for calibration and report tests.

Records are decided by the real pure decision (:func:`smoothcert.decisions.hybrid.decide_hybrid`)
from hand-made counts, and written through the real result store, so every reader validates
them exactly as it validates a run's file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from smoothcert.decisions.hybrid import HybridParams, decide_hybrid
from smoothcert.decisions.tokens import TokenFacts
from smoothcert.records import Evidence, StageEvidence
from smoothcert.results import ResultStore, record_line
from smoothcert.runner.config import HASHED_FIELDS, RunConfig

N, ALPHA, SIGMA, BETA, V, D = 1000, 0.001, 0.5, 0.7, 30522, 4
FACTS = TokenFacts(num_classes=2, length=D, num_eligible=D, d_max=D, sampling_tv_bound=0.0)


def params_dict(tau: float) -> dict[str, object]:
    """The hybrid filter parameters of the toy files (as a run config holds them)."""
    return {
        "sigma": SIGMA,
        "beta": BETA,
        "alphabet": V,
        "n0": 100,
        "n": N,
        "alpha": ALPHA,
        "tau": tau,
        "target": 1,
        "threat": "anywhere",
    }


def evidence(flags: int, *, seed: int) -> Evidence:
    """One pair's evidence: ``flags`` samples of the flag class out of N."""
    stage = StageEvidence("estimation", n=N, alpha=0.0, counts=(N - flags, flags))
    return Evidence((stage,), FACTS, seed=seed, seconds=0.02)


def write_filter_file(
    path: Path,
    pairs: Sequence[tuple[int, int]],
    *,
    split: str = "calibration",
    tau: float = 0.5,
    start_index: int = 6000,
) -> Path:
    """Write ``(flag count, label)`` pairs as a hybrid filter run's result file."""
    config = RunConfig(
        method="hybrid",
        params=params_dict(tau),
        model="listing_filter",
        dataset="listings",
        split=split,
    )
    params = HybridParams(**params_dict(tau))  # type: ignore[arg-type]
    with ResultStore.open(
        path,
        config=config.to_dict(),
        config_hash=config.config_hash(),
        hashed_fields=HASHED_FIELDS,
    ) as store:
        store.append_many(
            [
                record_line(
                    decide_hybrid(evidence(k, seed=i), params), index=start_index + i, label=lab
                )
                for i, (k, lab) in enumerate(pairs)
            ]
        )
    return path

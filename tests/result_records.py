"""Real version-2 result records with chosen outcomes, for report, CLI and store tests.

Readers validate every record (each is re-decided from its own evidence), so a test that
wants a record with a given prediction, radius and time builds it with the real Cohen
decision: the counts fix ``p_lower``, and sigma is chosen so that
``sigma * Phi^-1(p_lower)`` is exactly the wanted radius (one sigma per record: these
records exercise reports, not re-certification of a run).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtri

from smoothcert.decisions.cohen import GaussianFacts, GaussianParams, decide_cohen
from smoothcert.records import CertifyResult, Evidence, StageEvidence
from smoothcert.results import make_header, record_line
from smoothcert.runner.config import RunConfig

N0, N, ALPHA = 10, 1000, 0.001
NUM_CLASSES = 5
RADIUS_SIGMA = 0.25  # sigma of abstained records (and of the file header)


def _evidence(top: int, k: int, *, seconds: float, seed: int) -> Evidence:
    other = (top + 1) % NUM_CLASSES
    selection = [0] * NUM_CLASSES
    selection[top] = N0
    estimation = [0] * NUM_CLASSES
    estimation[top] += k
    estimation[other] += N - k
    return Evidence(
        (
            StageEvidence("selection", n=N0, alpha=0.0, counts=tuple(selection)),
            StageEvidence("estimation", n=N, alpha=ALPHA, counts=tuple(estimation)),
        ),
        GaussianFacts(num_classes=NUM_CLASSES),
        seed=seed,
        seconds=seconds,
    )


def cohen_result(
    prediction: int | None, radius: float, *, seconds: float = 0.0, seed: int = 0
) -> CertifyResult:
    """A real ``cohen`` result that predicts ``prediction`` at exactly ``radius``.

    ``prediction=None`` gives an abstention (the selected class is 0, ``p_lower < 1/2``).
    """
    if prediction is None:
        assert radius == 0.0
        params = GaussianParams(sigma=RADIUS_SIGMA, n0=N0, n=N, alpha=ALPHA)
        result = decide_cohen(_evidence(0, 400, seconds=seconds, seed=seed), params)
        assert result.abstained
        return result
    assert radius > 0
    # p_lower in (0.6, 0.84): Phi^-1(p_lower) < 1, so consecutive sigmas move the radius
    # by at most one ulp and some sigma gives exactly ``radius``.
    for k in range(760, 700, -1):
        evidence = _evidence(prediction, k, seconds=seconds, seed=seed)
        probe = decide_cohen(evidence, GaussianParams(sigma=1.0, n0=N0, n=N, alpha=ALPHA))
        sigma = radius / float(ndtri(probe.p_lower))
        for _ in range(8):
            params = GaussianParams(sigma=sigma, n0=N0, n=N, alpha=ALPHA)
            result = decide_cohen(evidence, params)
            if result.radius == radius:
                assert result.prediction == prediction
                return result
            sigma = float(np.nextafter(sigma, np.inf if result.radius < radius else 0.0))
    raise AssertionError(f"no sigma gives radius {radius!r} exactly")


def cohen_record(
    index: int, label: int, prediction: int | None, radius: float, seconds: float = 0.0
) -> dict[str, Any]:
    """The record line of :func:`cohen_result` for example ``index`` with ``label``."""
    result = cohen_result(prediction, radius, seconds=seconds, seed=index)
    return record_line(result, index=index, label=label)


def header(config_hash: str = "h" * 64) -> dict[str, Any]:
    """A header like a cohen run's at sigma 0.25, n0 = 10, n = 1000, alpha = 0.001.

    Without the ``method`` key: the records have one sigma each (see the module
    docstring), so the header must not claim one run's parameters, which readers check
    every record against.
    """
    config = RunConfig(params={"sigma": RADIUS_SIGMA, "n0": N0, "n": N, "alpha": ALPHA})
    return make_header({k: v for k, v in config.to_dict().items() if k != "method"}, config_hash)


def write_result_file(
    path: Path,
    records: Sequence[dict[str, Any]],
    *,
    config_hash: str = "h" * 64,
    tail: bytes = b"",
) -> Path:
    """Write a version-2 result file of ``records`` (and ``tail`` after the last line)."""
    lines = [json.dumps(header(config_hash))] + [json.dumps(r) for r in records]
    path.write_bytes(("\n".join(lines) + "\n").encode() + tail)
    return path

"""Certificates on the SAME samples: bounds, combiners, Lipschitz-aware radius, attacks (issue 8).

Usage:
    .venv/bin/python benchmarks/bench_bounds.py RESULTS.jsonl [MORE.jsonl ...] \
        [--radii 0 0.25 0.5 0.75 1.0] [--alpha 0.001] [--attack ATTACK.jsonl ...] \
        [--logit-lipschitz L] [--out FILE.json]

Each file is a saved ``cohen``/``cohen-top2`` run (class counts) or a ``soft``/``soft-top2``
run (class counts AND score sums of the same noisy samples; with ``--score-bound betting``
also per-class score histograms). Every record's saved evidence is re-decided, without a
model and without new samples, by the pure decisions of ``cohen-combined``,
``soft-combined`` and ``lipschitz``, so every column is a certificate of the same samples
at the same alpha (the file's, or ``--alpha``):

* ``CP mono``: Cohen's one-class certificate, Clopper-Pearson on p_A (the classic);
* ``CP top2``: p_A and the runner-up, alpha/2 each;
* ``CP CPM``: class partitioning (Delattre et al. 2025, arXiv 2504.02412), buckets on
  the selection counts;
* ``CP Bonferroni``: every class at alpha/K;
* soft files only: ``soft Hoeffding``, ``soft Bernstein`` (one-class, on the mean score
  of the file's score map), ``soft Bernstein top2``; with histograms also
  ``soft betting`` and ``soft betting top2`` (the order-invariant betting bound,
  ``docs/soft.md``);
* softmax files of a model with a certified Lipschitz constant (the bundled
  ``digits_lipschitz`` / ``fmnist_lipschitz``, read from the weights manifest, or
  ``--logit-lipschitz``): ``Lipschitz Bernstein`` and, with histograms, ``Lipschitz
  betting`` (the Lipschitz-aware radius of ``lipschitz``, arXiv 2309.16883).

Soft files' CP columns certify the HARD-vote smoothed classifier from the same samples'
argmax counts (class chosen on the selection counts); the soft columns certify the
soft smoothed classifier (class chosen on the selection score sums).

``--attack FILE`` adds the EMPIRICAL row of an ``attack-l2`` file of the same model,
sigma and dataset (``smoothcert attack``, ``docs/attack.md``): the fraction of the
examples that are correct and not flipped by the attack at each radius of its grid
("-" at radii the attack did not try), over the examples both files hold. It is an
upper bound on the true robust accuracy of the smoothed classifier, the certificates
lower bounds, both up to Monte Carlo error.

Printed: a Markdown table of certified accuracy at each radius and ACR per column, the
binomial standard error of a certified accuracy over the m examples, and, per radius,
an exact two-sided sign test of each column against ``CP mono`` on the examples where
they disagree (paired: same examples, same samples). A difference with p >= 0.05 is
reported as within noise.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from smoothcert.decisions.combined import (
    CombinedParams,
    SoftCombinedParams,
    decide_cohen_combined,
    decide_soft_combined,
)
from smoothcert.decisions.lipschitz import LipschitzParams, decide_lipschitz
from smoothcert.records import CertifyResult, Evidence
from smoothcert.results.recertify import load_records
from smoothcert.results.records import result_of

DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
REFERENCE = "CP mono"
VOTE_COLUMNS = (
    ("CP mono", "cp", "mono"),
    ("CP top2", "cp", "top2"),
    ("CP CPM", "cp", "cpm"),
    ("CP Bonferroni", "cp", "bonferroni"),
)
SOFT_COLUMNS = (
    ("soft Hoeffding", "hoeffding", "mono"),
    ("soft Bernstein", "bernstein", "mono"),
    ("soft Bernstein top2", "bernstein", "top2"),
)
BETTING_COLUMNS = (
    ("soft betting", "betting", "mono"),
    ("soft betting top2", "betting", "top2"),
)
EMPIRICAL = "attack (empirical)"
SOURCE_METHODS = ("cohen", "cohen-top2", "cohen-combined", "soft", "soft-top2", "soft-combined")


def _votes(evidence: Evidence, *, params: CombinedParams) -> CertifyResult:
    return decide_cohen_combined(evidence, params)


def _soft(evidence: Evidence, *, params: SoftCombinedParams) -> CertifyResult:
    return decide_soft_combined(evidence, params)


def _lipschitz(evidence: Evidence, *, params: LipschitzParams) -> CertifyResult:
    return decide_lipschitz(evidence, params)


def certified_logit_lipschitz(config: dict[str, Any]) -> float | None:
    """The certified logit constant of the file's bundled model (weights manifest), or None."""
    from smoothcert.models import available_sigmas, list_models, weights_info

    model = config.get("model")
    sigma = config.get("model_sigma") or config["params"].get("sigma")
    if model not in list_models() or sigma not in available_sigmas(model):
        return None
    value = weights_info(model, sigma).metadata.get("lipschitz")
    return None if value is None else float(value)


def _deciders(
    method: str, params: dict[str, Any], alpha: float, *, logit_lipschitz: float | None
) -> list[tuple[str, Callable[[Evidence], CertifyResult]]]:
    base = {"sigma": params["sigma"], "n0": params["n0"], "n": params["n"], "alpha": alpha}
    out: list[tuple[str, Callable[[Evidence], CertifyResult]]] = []
    for name, bound, combiner in VOTE_COLUMNS:
        p = CombinedParams(**base, bound=bound, combiner=combiner)
        out.append((name, functools.partial(_votes, params=p)))
    if not method.startswith("soft"):
        return out
    scores = {"score_map": params["score_map"], "temperature": params["temperature"]}
    histograms = params.get("score_bound") == "betting" or params["score_map"] == "hardmax"
    for name, bound, combiner in SOFT_COLUMNS + (BETTING_COLUMNS if histograms else ()):
        q = SoftCombinedParams(**base, **scores, bound=bound, combiner=combiner)
        out.append((name, functools.partial(_soft, params=q)))
    if logit_lipschitz is not None and params["score_map"] == "softmax":
        bounds = ("bernstein", "betting") if histograms else ("bernstein",)
        for bound in bounds:
            lp = LipschitzParams(
                **base,
                temperature=params["temperature"],
                logit_lipschitz=logit_lipschitz,
                score_bound=bound,
            )
            out.append((f"Lipschitz {bound}", functools.partial(_lipschitz, params=lp)))
    return out


def _attack_radii(path: Path, config: dict[str, Any]) -> tuple[dict[int, float], list[float]]:
    """Per example index, the attack's radius if correct (else -1), and the attack grid."""
    header, records = load_records(path)
    attack = header["config"]
    if attack["method"] != "attack-l2":
        raise ValueError(f"{path}: method {attack['method']!r} is invalid; valid: attack-l2")
    for key in ("model", "dataset", "split"):
        if attack.get(key) != config.get(key):
            raise ValueError(
                f"{path}: {key} {attack.get(key)!r} differs from the certificates' "
                f"{config.get(key)!r}; valid: an attack of the same model, dataset and split"
            )
    if attack["params"]["sigma"] != config["params"]["sigma"]:
        raise ValueError(f"{path}: sigma differs from the certificates'")
    out = {
        int(r["index"]): (float(r["radius"]) if r["prediction"] == r["label"] else -1.0)
        for r in records
    }
    return out, [float(v) for v in attack["params"]["radii"]]


def compare_file(
    path: str | Path,
    radii: Sequence[float] = DEFAULT_RADII,
    *,
    alpha: float | None = None,
    attack: str | Path | None = None,
    logit_lipschitz: float | None = None,
) -> dict[str, Any]:
    """Re-decide one result file with every column; accuracies, ACR and sign tests.

    Returns:
        ``{"path", "method", "sigma", "alpha", "n0", "n", "examples", "radii",
        "columns": {name: {"accuracy": [...], "acr"}}, "se": [...],
        "tests": {name: [{"radius", "gained", "lost", "p_value"}]}}``.

    Raises:
        ValueError: on a file of a method other than :data:`SOURCE_METHODS`.
    """
    header, records = load_records(path)  # validated: every record re-decided first
    config = header["config"]
    method = config["method"]
    if method not in SOURCE_METHODS:
        raise ValueError(
            f"{path}: method {method!r} is invalid here; valid: files of "
            f"{', '.join(SOURCE_METHODS)}"
        )
    params = dict(config["params"])
    level = float(params["alpha"] if alpha is None else alpha)
    if logit_lipschitz is None:
        logit_lipschitz = certified_logit_lipschitz(config)
    columns = _deciders(method, params, level, logit_lipschitz=logit_lipschitz)
    attacked: dict[int, float] | None = None
    attack_grid: list[float] = []
    if attack is not None:
        attacked, attack_grid = _attack_radii(Path(attack), config)
        records = [r for r in records if int(r["index"]) in attacked]
    labels = np.array([r["label"] for r in records])
    # radius certified AND correct, per column and example (0 when wrong or abstained)
    good: dict[str, np.ndarray] = {}
    for name, decide in columns:
        rows = []
        for rec, label in zip(records, labels, strict=True):
            res = decide(result_of(rec, where=f"{path}: index {rec['index']}").evidence)
            ok = not res.abstained and res.prediction == label
            rows.append(res.radius if ok else -1.0)
        good[name] = np.array(rows)
    m = len(records)
    grid = np.asarray(radii, dtype=np.float64)
    out: dict[str, Any] = {
        "path": str(path),
        "method": method,
        "sigma": params["sigma"],
        "alpha": level,
        "n0": params["n0"],
        "n": params["n"],
        "examples": m,
        "radii": grid.tolist(),
        "columns": {},
        "se": [],
        "tests": {},
    }
    for name, r in good.items():
        acc = [(float(np.mean(r >= t)) if m else 0.0) for t in grid]
        acr = float(np.mean(np.maximum(r, 0.0))) if m else 0.0
        out["columns"][name] = {"accuracy": acc, "acr": acr}
    ref = good[REFERENCE]
    out["se"] = [
        math.sqrt(a * (1 - a) / m) if m else 0.0 for a in out["columns"][REFERENCE]["accuracy"]
    ]
    if attacked is not None:
        emp = np.array([attacked[int(r["index"])] for r in records])
        tried = [0.0, *attack_grid]
        out["columns"][EMPIRICAL] = {
            "accuracy": [
                (float(np.mean(emp >= t)) if m and any(abs(t - g) < 1e-12 for g in tried) else None)
                for t in grid
            ],
            "acr": None,
        }
        out["attack"] = str(attack)
    for name, r in good.items():
        if name == REFERENCE:
            continue
        tests = []
        for t in grid:
            x, y = r >= t, ref >= t
            gained, lost = int(np.sum(x & ~y)), int(np.sum(~x & y))
            p = float(binomtest(gained, gained + lost, 0.5).pvalue) if gained + lost else 1.0
            tests.append({"radius": float(t), "gained": gained, "lost": lost, "p_value": p})
        out["tests"][name] = tests
    return out


def format_report(result: dict[str, Any]) -> str:
    """Markdown table and the noise notes of :func:`compare_file`'s result."""
    radii = result["radii"]
    head = "| certificate | " + " | ".join(f"r={r:g}" for r in radii) + " | ACR |"
    lines = [
        f"### {result['path']}",
        "",
        f"method {result['method']}, sigma {result['sigma']:g}, n0 {result['n0']}, "
        f"n {result['n']}, alpha {result['alpha']:g}, {result['examples']} examples; "
        "every column re-decides the same saved samples.",
        "",
        head,
        "|" + "---|" * (len(radii) + 2),
    ]
    for name, col in result["columns"].items():
        cells = " | ".join("-" if a is None else f"{a:.3f}" for a in col["accuracy"])
        acr = "-" if col["acr"] is None else f"{col['acr']:.4f}"
        lines.append(f"| {name} | {cells} | {acr} |")
    if EMPIRICAL in result["columns"]:
        emp = result["columns"][EMPIRICAL]["accuracy"]
        best = [
            max(c["accuracy"][i] for k, c in result["columns"].items() if k != EMPIRICAL)
            for i in range(len(radii))
        ]
        gaps = ", ".join(
            f"r={r:g}: {e - b:+.3f}"
            for r, e, b in zip(radii, emp, best, strict=True)
            if e is not None
        )
        lines += ["", f"Empirical minus the best certificate, per radius: {gaps}."]
    se = ", ".join(f"{s:.3f}" for s in result["se"])
    lines += ["", f"Binomial s.e. of a certified accuracy (over examples), per radius: {se}."]
    lines.append(
        f"Sign test against {REFERENCE} (examples certified-correct by one and not the "
        "other at each radius; two-sided exact, paired):"
    )
    for name, tests in result["tests"].items():
        real = [t for t in tests if t["p_value"] < 0.05]
        moved = [t for t in tests if t["gained"] or t["lost"]]
        if not moved:
            lines.append(f"- {name}: identical to {REFERENCE} at every radius.")
            continue
        detail = "; ".join(
            f"r={t['radius']:g}: +{t['gained']}/-{t['lost']} (p={t['p_value']:.2g})" for t in moved
        )
        verdict = (
            "real at r=" + ", ".join(f"{t['radius']:g}" for t in real) if real else "within noise"
        )
        lines.append(f"- {name}: {verdict}; {detail}.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="cohen or soft result files")
    parser.add_argument("--radii", nargs="+", type=float, default=list(DEFAULT_RADII))
    parser.add_argument("--alpha", type=float, default=None, help="default: each file's")
    parser.add_argument("--out", type=Path, default=None, help="also write JSON here")
    parser.add_argument(
        "--attack", nargs="+", type=Path, default=None, help="attack-l2 files, one per file"
    )
    parser.add_argument(
        "--logit-lipschitz", type=float, default=None, help="default: the bundled manifest's"
    )
    args = parser.parse_args(argv)
    attacks = args.attack or [None] * len(args.files)
    if len(attacks) != len(args.files):
        parser.error(f"--attack takes one file per result file ({len(args.files)})")
    results = [
        compare_file(
            f, args.radii, alpha=args.alpha, attack=a, logit_lipschitz=args.logit_lipschitz
        )
        for f, a in zip(args.files, attacks, strict=True)
    ]
    print("\n\n".join(format_report(r) for r in results))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

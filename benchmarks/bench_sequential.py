"""Sequential (anytime-valid) certification against fixed n: accuracy kept, forward passes spent.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_sequential.py \
        [--quick] [--skip 2] [--sigmas 0.25 0.5] [--device cpu] [--out FILE.json]

On the bundled digits CNN at each sigma, the same test examples (every ``skip``-th of the
360) are certified four ways through the dataset runner (result files under
``results/bench_sequential/``, so an interrupted benchmark resumes):

* ``fixed``: Cohen CERTIFY, n0 = 100, n = 100,000, alpha = 0.001;
* ``target-union`` / ``target-mixture``: ``cohen-sequential`` in target mode at the radii
  0.25, 0.5, 0.75 with at most 100,100 samples (n0 = 100 included), alpha = 0.001, with
  the union-bound (half of alpha at the last checkpoint) and the beta-mixture confidence
  sequences;
* ``target-futility`` (and ``-z2``, ``-z0.5``): as ``target-union``, giving up on a target
  that the current rate plus one (two, a half) standard error would not certify at the
  budget (``futility_z``);
* ``precision``: ``cohen-sequential`` in precision mode (tolerance 0.05 sigma), union bound.

It prints and writes (JSON) the certified accuracy at each radius, ACR, total forward
passes and their ratio to ``fixed``, and the distribution of samples per input. The
issue's goal: at least 98% of the fixed-n certified accuracy at every target radius with
at most one tenth of the forward passes. ``--quick`` (20 examples, n = 10,000) is a smoke
test whose figures are not meant to be quoted.

Set ``OMP_NUM_THREADS=1`` on a shared 2-core machine: with other processes running,
torch's default intra-op threads spin and slow the run by an order of magnitude.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from smoothcert.reports import (
    average_certified_radius,
    certified_accuracy,
    load_results,
    samples_per_input,
)
from smoothcert.runner import RunConfig, run_certification

RADII = (0.25, 0.5, 0.75)
ALPHA = 0.001
N0 = 100
RESULTS = Path("results/bench_sequential")


def _runs(sigma: float, n: int) -> dict[str, tuple[str, dict[str, Any]]]:
    sequential = {"sigma": sigma, "n0": N0, "alpha": ALPHA, "max_samples": N0 + n}
    return {
        "fixed": ("cohen", {"sigma": sigma, "n0": N0, "n": n, "alpha": ALPHA}),
        "target-union": ("cohen-sequential", {**sequential, "target_radii": RADII}),
        "target-futility": (
            "cohen-sequential",
            {**sequential, "target_radii": RADII, "futility_z": 1.0},
        ),
        "target-futility-z2": (
            "cohen-sequential",
            {**sequential, "target_radii": RADII, "futility_z": 2.0},
        ),
        "target-futility-z0.5": (
            "cohen-sequential",
            {**sequential, "target_radii": RADII, "futility_z": 0.5},
        ),
        "target-mixture": (
            "cohen-sequential",
            {**sequential, "target_radii": RADII, "bound": "mixture"},
        ),
        "precision": ("cohen-sequential", {**sequential, "tolerance": 0.05 * sigma}),
    }


def _summary(path: Path, fixed_total: int | None) -> dict[str, Any]:
    result = load_results(path)
    used = samples_per_input(result.records)
    total = int(used.sum())
    acc = certified_accuracy(result.records, np.array([0.0, *RADII]))
    return {
        "examples": len(result.records),
        "certified_accuracy": {f"{r:g}": float(a) for r, a in zip([0.0, *RADII], acc, strict=True)},
        "acr": float(average_certified_radius(result.records)),
        "forward_samples_total": total,
        "share_of_fixed": None if not fixed_total else total / fixed_total,
        "samples_per_input": {
            "min": int(used.min()),
            "median": float(np.median(used)),
            "p90": float(np.percentile(used, 90)),
            "p99": float(np.percentile(used, 99)),
            "max": int(used.max()),
        },
        "seconds": float(sum(float(r["seconds"]) for r in result.records)),
    }


def bench_sequential(
    *,
    sigmas: tuple[float, ...],
    skip: int,
    n: int,
    num_examples: int | None,
    device: str,
    results_dir: Path = RESULTS,
) -> dict[str, Any]:
    """Run every configuration at every sigma and summarise (see the module docstring)."""
    out: dict[str, Any] = {}
    for sigma in sigmas:
        per: dict[str, Any] = {}
        fixed_total = None
        for name, (method, params) in _runs(sigma, n).items():
            config = RunConfig(
                method=method,
                params=params,
                model="digits_cnn",
                dataset="digits",
                split="test",
                skip=skip,
                num_examples=num_examples,
                batch_size=2000,
                seed=0,
            )
            path = results_dir / f"sigma{sigma:g}_n{n}_skip{skip}_{num_examples}_{name}.jsonl"
            start = time.perf_counter()
            run_certification(config, path, device=device)
            summary = _summary(path, fixed_total)
            summary["wall_seconds_this_call"] = time.perf_counter() - start
            if name == "fixed":
                fixed_total = summary["forward_samples_total"]
                summary["share_of_fixed"] = 1.0
            per[name] = summary
        fixed_acc = per["fixed"]["certified_accuracy"]
        for summary in per.values():
            summary["accuracy_kept"] = {
                r: (summary["certified_accuracy"][r] / fixed_acc[r] if fixed_acc[r] else None)
                for r in (f"{x:g}" for x in RADII)
            }
        out[f"sigma={sigma:g}"] = per
    return out


HYBRID_POINTS = ((0, 0.5), (1, 0.25))


def bench_hybrid_sequential(
    *,
    n: int,
    num_examples: int | None,
    skip: int,
    device: str,
    results_dir: Path = RESULTS,
    tau: float = 0.1,
) -> dict[str, Any]:
    """The listing filter (sigma 0.5, flag class 1 at ``tau``): fixed-n hybrid vs sequential.

    Certified detection at each target point ``(d, r)`` (label 1, flagged and certified
    at the point) and the forward samples of each run.
    """
    common = {"sigma": 0.5, "beta": 0.7, "alpha": ALPHA, "tau": tau, "target": 1, "n0": 0}
    runs = {
        "fixed": ("hybrid", {**common, "n": n}),
        "sequential": ("hybrid-sequential", {**common, "max_samples": n, "targets": HYBRID_POINTS}),
    }
    out: dict[str, Any] = {}
    for name, (method, params) in runs.items():
        config = RunConfig(
            method=method,
            params={**params, "alphabet": 30_522, "threat": "given"},
            model="listing_filter",
            dataset="listings",
            split="test",
            skip=skip,
            num_examples=num_examples,
            batch_size=1000,
            seed=0,
        )
        path = results_dir / f"listings_tau{tau:g}_n{n}_skip{skip}_{num_examples}_{name}.jsonl"
        run_certification(config, path, device=device)
        records = load_results(path).records
        detected = {}
        for d, r in HYBRID_POINTS:
            hits = [
                rec["label"] == 1
                and not rec["abstained"]
                and d < len(rec["radius_curve"])
                and rec["radius_curve"][d] >= r
                and (r > 0 or d <= (rec["details"]["d_certified"] or -1))
                for rec in records
            ]
            detected[f"d={d},r={r:g}"] = float(np.mean(hits))
        used = samples_per_input(records)
        out[name] = {
            "examples": len(records),
            "positives": int(sum(rec["label"] == 1 for rec in records)),
            "certified_detection": detected,
            "forward_samples_total": int(used.sum()),
            "samples_per_input_median": float(np.median(used)),
        }
    out["sequential"]["share_of_fixed"] = (
        out["sequential"]["forward_samples_total"] / out["fixed"]["forward_samples_total"]
    )
    return out


def _print(results: dict[str, Any]) -> None:
    for key, per in results.items():
        if key == "hybrid":
            print("\n## listing filter (hybrid, safety-filter mode)")
            print(json.dumps(per, indent=2))
            continue
        print(f"\n## digits CNN, {key}, {per['fixed']['examples']} test examples, alpha {ALPHA}")
        heads = list(per)
        print("| | " + " | ".join(heads) + " |")
        print("|---|" + "---:|" * len(heads))
        for r in ("0", *(f"{x:g}" for x in RADII)):
            cells = [f"{100 * per[h]['certified_accuracy'][r]:.1f}%" for h in heads]
            print(f"| certified accuracy at {r} | " + " | ".join(cells) + " |")
        print("| ACR | " + " | ".join(f"{per[h]['acr']:.3f}" for h in heads) + " |")
        print(
            "| forward samples | "
            + " | ".join(f"{per[h]['forward_samples_total']:,}" for h in heads)
            + " |"
        )
        print(
            "| share of fixed | "
            + " | ".join(f"{100 * per[h]['share_of_fixed']:.2f}%" for h in heads)
            + " |"
        )
        for q in ("median", "p90", "p99", "max"):
            cells = [f"{per[h]['samples_per_input'][q]:,.0f}" for h in heads]
            print(f"| samples per input, {q} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip", type=int, default=2)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--hybrid", action="store_true", help="also the listing filter (hybrid-sequential)"
    )
    args = parser.parse_args()
    n, num = (10_000, 20) if args.quick else (100_000, None)
    results = bench_sequential(
        sigmas=tuple(args.sigmas), skip=args.skip, n=n, num_examples=num, device=args.device
    )
    if args.hybrid:
        results["hybrid"] = bench_hybrid_sequential(
            n=2_000 if args.quick else 10_000,
            num_examples=10 if args.quick else 100,
            skip=10,
            device=args.device,
        )
    _print(results)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "machine": {"platform": platform.platform(), "processor": platform.processor()},
            "settings": {"skip": args.skip, "n": n, "num_examples": num, "alpha": ALPHA},
            "results": results,
        }
        args.out.write_text(json.dumps(payload, indent=2))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

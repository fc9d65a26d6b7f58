"""Dual randomized smoothing against each global sigma, on the Fashion-MNIST test split.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dual.py \
        [--num-examples 500] [--n 10000] [--results DIR] [--out FILE.json] [--plot FILE.png]
        [--quick]

The same test examples (the first ``num_examples`` of the Fashion-MNIST test split) are
certified four ways through the dataset runner, with the bundled experts ``fmnist_cnn``
(channels-last forward passes for every run, so all four certify the same models):

* ``sigma=0.25``, ``sigma=0.5``, ``sigma=1.0``: Cohen CERTIFY with the expert trained at
  that sigma, n0 = 100, n = 10,000, alpha = 0.001;
* ``dual``: dual smoothing (arXiv 2512.01782) with the bundled sigma estimator
  ``fmnist_sigma_estimator`` at sigma_estimator = 1.0 routing to the same three experts,
  n0 = 100 and n = 10,000 per stage, alpha = 0.001 split evenly (0.0005 per stage).

Result files go to ``--results`` (default ``results/bench_dual/``) as
``global_sigma{s}.jsonl`` and ``dual.jsonl``, so an interrupted benchmark resumes (and
files made with ``smoothcert certify`` and the same settings are reused). It prints and
writes (JSON) the certified accuracy at radii 0, 0.25, ... until every curve is 0, ACR,
dual's gap to the best global sigma at each radius and where it beats all of them, the
share of inputs routed to each sigma, the share of certified radii limited by R_sigma,
and the compute overhead of dual over one global run (forward passes and seconds).
``--quick`` (20 examples, n = 1,000) is a smoke test whose figures are not meant to be
quoted.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from smoothcert.reports import (
    average_certified_radius,
    certified_accuracy,
    dual_table,
    gap_table,
    load_results,
    plot_certified_accuracy,
    samples_per_input,
)
from smoothcert.runner import RunConfig, run_certification

SIGMAS = (0.25, 0.5, 1.0)
ALPHA = 0.001
N0 = 100
STEP = 0.25


def configs(num_examples: int, n: int) -> dict[str, RunConfig]:
    """The four runs, by label."""
    common = dict(
        model="fmnist_cnn",
        dataset="fashion_mnist",
        split="test",
        num_examples=num_examples,
        batch_size=1000,
        channels_last=True,
    )
    runs = {
        f"sigma={s}": RunConfig(
            method="cohen", params={"sigma": s, "n0": N0, "n": n, "alpha": ALPHA}, **common
        )
        for s in SIGMAS
    }
    runs["dual"] = RunConfig(
        method="dual",
        params={"sigmas": SIGMAS, "sigma_estimator": 1.0, "n0": N0, "n": n, "alpha": ALPHA},
        **common,
    )
    return runs


def file_name(label: str) -> str:
    return "dual.jsonl" if label == "dual" else f"global_{label.replace('=', '')}.jsonl"


def summarize(paths: dict[str, Path]) -> dict[str, Any]:
    """Every figure of the module docstring, from the result files."""
    files = {label: load_results(path, label=label) for label, path in paths.items()}
    top = max(float(f.radii.max(initial=0.0)) for f in files.values())
    grid = np.arange(0.0, top + STEP, STEP)
    accuracy = {label: certified_accuracy(f, grid).tolist() for label, f in files.items()}
    singles = [label for label in files if label != "dual"]
    best = np.max([accuracy[label] for label in singles], axis=0)
    dual = np.asarray(accuracy["dual"])
    records = files["dual"].records
    details = [r["details"] for r in records]
    certified = [d for d in details if d["limited_by"] is not None]
    samples = {label: int(samples_per_input(f.records).sum()) for label, f in files.items()}
    seconds = {label: float(sum(r["seconds"] for r in f.records)) for label, f in files.items()}
    return {
        "radii": grid.tolist(),
        "certified_accuracy": accuracy,
        "acr": {label: average_certified_radius(f) for label, f in files.items()},
        "dual_minus_best_global_pp": (100 * (dual - best)).round(1).tolist(),
        "dual_beats_every_global_at": [
            float(r)
            for i, r in enumerate(grid)
            if all(dual[i] > accuracy[label][i] for label in singles)
        ],
        "routed_to_sigma": {
            f"{s:g}": float(np.mean([d["sigma"] == s for d in details])) for s in SIGMAS
        },
        "abstained_at_estimator": float(np.mean([d["abstained_at"] == "sigma" for d in details])),
        "limited_by_r_sigma_of_certified": (
            float(np.mean([d["limited_by"] == "sigma" for d in certified])) if certified else None
        ),
        "forward_samples": samples,
        "seconds": seconds,
        "dual_overhead_forward_samples": {
            label: samples["dual"] / samples[label] - 1 for label in singles
        },
        "dual_overhead_seconds": {label: seconds["dual"] / seconds[label] - 1 for label in singles},
        "examples": {label: len(f) for label, f in files.items()},
        "tables": {
            "dual": dual_table(list(files.values())),
            "gap": gap_table(list(files.values()), grid),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-examples", type=int, default=500)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--results", type=Path, default=Path("results/bench_dual"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.num_examples, args.n = 20, 1000
        args.results = args.results / "quick"
    paths = {}
    for label, config in configs(args.num_examples, args.n).items():
        path = args.results / file_name(label)
        print(f"{label}: {path}", flush=True)
        run_certification(config, path, device=args.device)
        paths[label] = path
    out = summarize(paths)
    out["machine"] = {"platform": platform.platform(), "processor": platform.processor()}
    out["settings"] = {"num_examples": args.num_examples, "n": args.n, "n0": N0, "alpha": ALPHA}
    print(out["tables"]["gap"], out["tables"]["dual"], sep="\n\n")
    print(json.dumps({k: v for k, v in out.items() if k != "tables"}, indent=1))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    if args.plot is not None:
        files = [load_results(p, label=label) for label, p in paths.items()]
        title = (
            f"Fashion-MNIST test, {args.num_examples} images: dual vs global sigma "
            f"(n={args.n:,}, alpha={ALPHA:g})"
        )
        print(plot_certified_accuracy(files, args.plot, title=title))


if __name__ == "__main__":
    main()

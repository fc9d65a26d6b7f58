#!/usr/bin/env python
"""Measure the bundled listing filter: accuracy clean and under noise, and hybrid certificates.

Prints (and writes as JSON with ``--json``) for each shipped sigma the test accuracy on
clean pairs, on pairs with one draw of the training noise (token substitution at the
weights' beta AND Gaussian image noise), and of a 25-vote majority; then, for one
sigma, certifies every ``--every``-th test pair with the hybrid certificate
(majority vote, tau = 1/2; in-place threat on the description's tokens) and reports the
certified accuracy at d = 0, 1, 2 substituted tokens and a few image radii, with the
seconds per pair. The numbers in docs/datasets.md come from this script.

Usage::

    python scripts/measure_listing_filter.py --sigma 0.25 --every 10 --n 10000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from smoothcert.data import TextImageDataset, load_dataset
from smoothcert.methods import hybrid
from smoothcert.methods.threats import positions
from smoothcert.models import available_sigmas, load_model
from smoothcert.models.train_listings import listing_accuracy


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sigma", type=float, default=0.25, help="sigma to certify at")
    parser.add_argument("--every", type=int, default=10, help="certify every k-th test pair")
    parser.add_argument("--n", type=int, default=10_000, help="estimation samples per pair")
    parser.add_argument("--n0", type=int, default=100, help="selection samples per pair")
    parser.add_argument("--alpha", type=float, default=0.001, help="failure probability")
    parser.add_argument("--d-max", type=int, default=4, help="largest d to certify")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test = load_dataset("listings", "test")
    assert isinstance(test, TextImageDataset)
    out: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}",
        "load_average": os.getloadavg(),
        "accuracy": {},
    }
    for sigma in available_sigmas("listing_filter"):
        model = load_model("listing_filter", sigma=sigma)
        beta = float(model.beta)
        row = {
            "beta": beta,
            "clean": listing_accuracy(model),
            "noisy": listing_accuracy(model, beta=beta, sigma=sigma, seed=1),
            "image_noise_only": listing_accuracy(model, sigma=sigma, seed=1),
            "token_noise_only": listing_accuracy(model, beta=beta, seed=1),
            "vote25": listing_accuracy(model, beta=beta, sigma=sigma, seed=1, votes=25),
        }
        out["accuracy"][str(sigma)] = row  # type: ignore[index]
        print(f"sigma={sigma} beta={beta}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))

    model = load_model("listing_filter", sigma=args.sigma)
    beta = float(model.beta)
    rows = np.arange(0, len(test), args.every)
    curves, correct, seconds = [], [], []
    for i in rows:
        start = time.perf_counter()
        result = hybrid.certify(
            model,
            torch.from_numpy(test.tokens[i].copy()),
            torch.from_numpy(test.images[i].copy()),
            sigma=args.sigma,
            beta=beta,
            alphabet=test.vocab_size,
            n0=args.n0,
            n=args.n,
            alpha=args.alpha,
            threat=positions(test.eligible[i].copy(), d_max=args.d_max),
            seed=int(test.indices[i]),
        )
        seconds.append(time.perf_counter() - start)
        curve = np.zeros(args.d_max + 1)
        if not result.abstained:
            got = np.asarray(result.radius_curve, dtype=float)
            curve[: got.size] = got
        curves.append(curve)
        correct.append((not result.abstained) and result.prediction == int(test.labels[i]))
    curve_arr = np.asarray(curves)
    ok = np.asarray(correct)
    radii = (0.0, 0.1, 0.25, 0.5)
    table = {
        f"d={d}": {
            f"r>={r}": float(np.mean(ok & (curve_arr[:, d] > 0) & (curve_arr[:, d] >= r)))
            for r in radii
        }
        for d in range(min(args.d_max, 2) + 1)
    }
    # "r >= 0" means certified at d with an unperturbed image (r(d) > 0).
    out["certified"] = {
        "sigma": args.sigma,
        "beta": beta,
        "n0": args.n0,
        "n": args.n,
        "alpha": args.alpha,
        "pairs": int(rows.size),
        "clean_smoothed_accuracy": float(ok.mean()),
        "certified_accuracy": table,
        "seconds_per_pair": float(np.mean(seconds)),
    }
    print(json.dumps(out["certified"], indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()

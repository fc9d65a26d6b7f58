"""Benchmark: hybrid text+image radius curves r(0..d_max).

Times one example's curve (median of repeats) and a batch of examples' curves, for the
uniform and mask kernels. Not part of the test run.

    python benchmarks/bench_hybrid_curve.py
    python benchmarks/bench_hybrid_curve.py --batch 10000 --d-max 8 --vocab-size 30522
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from smoothcert.certificates import hybrid_radius_curve


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-max", type=int, default=8)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--beta", type=float, default=0.3)
    parser.add_argument("--vocab-size", type=int, default=30522)
    parser.add_argument("--mask-beta", type=float, default=0.9)
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--filter-beta", type=float, default=0.5)
    parser.add_argument("--filter-tau", type=float, default=4.6e-5)
    parser.add_argument("--p-one", type=float, default=0.9999, help="p_lower of the single curve")
    parser.add_argument("--repeats", type=int, default=20, help="repeats of the one-curve timing")
    parser.add_argument("--batch-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    # p_lower spread like a certification run: most examples confident, a tail near 1/2.
    batch = np.clip(1.0 - 10.0 ** rng.uniform(-7, np.log10(0.5), args.batch), 0.0, 1 - 1e-12)
    print(f"machine: {_cpu_name()}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    print(f"d_max={args.d_max} sigma={args.sigma} batch={args.batch}")
    configs = [
        (
            f"uniform beta={args.beta} V={args.vocab_size} tau={args.tau}",
            {"beta": args.beta, "vocab_size": args.vocab_size, "tau": args.tau},
        ),
        (
            f"uniform beta={args.filter_beta} V={args.vocab_size} tau={args.filter_tau} "
            "(safety filter)",
            {"beta": args.filter_beta, "vocab_size": args.vocab_size, "tau": args.filter_tau},
        ),
        (
            f"mask beta={args.mask_beta} tau={args.tau}",
            {"beta": args.mask_beta, "kernel": "mask", "tau": args.tau},
        ),
    ]
    for name, kw in configs:
        common = {"d_max": args.d_max, "sigma": args.sigma, **kw}
        hybrid_radius_curve(args.p_one, **common)  # warm the level caches
        one = _time(lambda c=common: hybrid_radius_curve(args.p_one, **c), args.repeats)
        many = _time(lambda c=common: hybrid_radius_curve(batch, **c), args.batch_repeats)
        one_curve = hybrid_radius_curve(args.p_one, **common)
        curves = hybrid_radius_curve(batch, **common)
        certified = (curves > 0).sum(axis=0)
        print(f"\n[{name}]")
        print(f"  one curve (p_lower={args.p_one}): r(d) = {np.round(one_curve, 4).tolist()}")
        print(
            f"  one curve: median {1e3 * statistics.median(one):.2f} ms, "
            f"min {1e3 * min(one):.2f} ms"
        )
        print(
            f"  {args.batch} curves: median {statistics.median(many):.3f} s "
            f"({1e6 * statistics.median(many) / args.batch:.1f} us per example)"
        )
        print(f"  certified per d: {certified.tolist()}")


if __name__ == "__main__":
    main()

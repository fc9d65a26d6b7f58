"""Benchmark: hybrid text+image radius curves r(0..d_max).

Times one example's curve (median of repeats) and a batch of examples' curves, for the
uniform and mask kernels. Not part of the test run; also run (as ``hybrid_curve``) by
``benchmarks/run_all.py``.

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


def run_hybrid(
    *,
    d_max: int = 8,
    batch: int = 10_000,
    sigma: float = 0.5,
    beta: float = 0.3,
    vocab_size: int = 30522,
    mask_beta: float = 0.9,
    tau: float = 0.5,
    filter_beta: float = 0.5,
    filter_tau: float = 4.6e-5,
    p_one: float = 0.9999,
    repeats: int = 20,
    batch_repeats: int = 3,
    seed: int = 0,
) -> list[dict]:
    """Time one curve and ``batch`` curves for three kernels; one dict per kernel."""
    rng = np.random.default_rng(seed)
    # p_lower spread like a certification run: most examples confident, a tail near 1/2.
    p_batch = np.clip(1.0 - 10.0 ** rng.uniform(-7, np.log10(0.5), batch), 0.0, 1 - 1e-12)
    configs = [
        (
            f"uniform beta={beta} V={vocab_size} tau={tau}",
            {"beta": beta, "vocab_size": vocab_size, "tau": tau},
        ),
        (
            f"uniform beta={filter_beta} V={vocab_size} tau={filter_tau} (safety filter)",
            {"beta": filter_beta, "vocab_size": vocab_size, "tau": filter_tau},
        ),
        (f"mask beta={mask_beta} tau={tau}", {"beta": mask_beta, "kernel": "mask", "tau": tau}),
    ]
    rows = []
    for name, kw in configs:
        common = {"d_max": d_max, "sigma": sigma, **kw}
        hybrid_radius_curve(p_one, **common)  # warm the level caches
        one = _time(lambda c=common: hybrid_radius_curve(p_one, **c), repeats)
        many = _time(lambda c=common: hybrid_radius_curve(p_batch, **c), batch_repeats)
        one_curve = hybrid_radius_curve(p_one, **common)
        curves = hybrid_radius_curve(p_batch, **common)
        rows.append(
            {
                "kernel": name,
                "d_max": d_max,
                "sigma": sigma,
                "batch": batch,
                "p_one": p_one,
                "one_curve": np.round(one_curve, 4).tolist(),
                "one_curve_median_s": statistics.median(one),
                "one_curve_min_s": min(one),
                "batch_median_s": statistics.median(many),
                "batch_us_per_example": 1e6 * statistics.median(many) / batch,
                "certified_per_d": (curves > 0).sum(axis=0).tolist(),
            }
        )
    return rows


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

    print(f"machine: {_cpu_name()}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    print(f"d_max={args.d_max} sigma={args.sigma} batch={args.batch}")
    rows = run_hybrid(**{k: v for k, v in vars(args).items()})
    for row in rows:
        print(f"\n[{row['kernel']}]")
        print(f"  one curve (p_lower={row['p_one']}): r(d) = {row['one_curve']}")
        print(
            f"  one curve: median {1e3 * row['one_curve_median_s']:.2f} ms, "
            f"min {1e3 * row['one_curve_min_s']:.2f} ms"
        )
        print(
            f"  {row['batch']} curves: median {row['batch_median_s']:.3f} s "
            f"({row['batch_us_per_example']:.1f} us per example)"
        )
        print(f"  certified per d: {row['certified_per_d']}")


if __name__ == "__main__":
    main()

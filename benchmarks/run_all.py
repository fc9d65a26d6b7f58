"""Run every smoothcert benchmark and write all figures, with the machine, to one JSON file.

Usage:
    .venv/bin/python benchmarks/run_all.py [--quick] [--out benchmarks/results/<host>.json]
        [--device cpu|cuda] [--only NAME ...] [--no-compile] [--no-ray] [--repeats R]
        [--threads T] [--variants fp32 bf16 fp32+compile ...]

``--quick`` uses tiny sizes (a smoke test, well under a minute on 2 CPU cores, and no
``torch.compile``); its figures are not meant to be quoted. Without it, the full run
takes about 10 to 20 minutes on 2 CPU cores.

Benchmarks (each a function ``bench_*(settings) -> dict``, listed in :data:`BENCHMARKS`):

* ``bare_forward``: forward + argmax on PRE-MADE noisy inputs (noise drawn before the
  clock starts), samples/s at several batch sizes: the ceiling for the engine.
* ``engine_single``: ``count_classes`` on one input at a time, at n = 100 (many inputs,
  one after the other) and at n = 10,000.
* ``engine_multi``: ``count_classes_many`` with k = 8, 32, 64 inputs at n = 100, and its
  ratio to the bare forward throughput (target >= 0.8 for the digits CNN).
* ``noise``: drawing the Gaussian noise alone: k per-input ``GaussianNoise.sample``
  calls vs one big ``torch.randn`` vs numpy's ziggurat, and the share of the engine's
  time that noise takes.
* ``fast_path``: fp32 vs bf16 autocast, ``torch.compile`` and channels-last: examples/s
  at n = 100 (100 examples, multi-input batching) and the fraction of examples whose
  smoothed prediction (argmax of the counts, same seeds) agrees with fp32 eager.
* ``runner``: certified examples/s through ``smoothcert.runner.run_certification``
  (n0 = n = 100, 50 digits examples): local one example at a time, local with
  multi-input batching (``examples_per_batch``), Ray with 1 and 2 workers; a variant the
  runner API does not support any more is recorded as an ``error`` entry.
* ``engine_overhead``, ``hybrid_curve``: the older standalone scripts
  (``bench_engine_overhead.py``, ``bench_hybrid_curve.py``), called as functions.

Timings are the best of ``repeats`` runs after a warm-up: on a shared machine the best
run is the least disturbed one. Numbers from different machines are comparable only with
their ``machine`` block (CPU model, cores, threads, load average).

Models: the bundled digits CNN (``load_model("digits_cnn", sigma=0.25)``, 1x8x8 inputs from
the digits test split) and ``Cifar32CNN`` of ``bench_engine_overhead.py`` (VGG-style,
3x32x32, randomly initialised with seed 0; its inputs are digits test images resized to
32x32 and repeated over 3 channels, so that inputs differ as real images do).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine_overhead import Cifar32CNN, run_overhead, time_bare  # noqa: E402
from bench_hybrid_curve import run_hybrid  # noqa: E402

from smoothcert.noise import GaussianNoise  # noqa: E402
from smoothcert.sampling import count_classes, make_generator  # noqa: E402
from smoothcert.sampling.fast_path import autocast_dtype_for, prepare_model  # noqa: E402
from smoothcert.sampling.multi import count_classes_many  # noqa: E402

SIGMA = 0.25
MODELS = ("digits_cnn", "cifar32_cnn")


@dataclass
class Settings:
    """Sizes of every benchmark (the defaults are the full run)."""

    device: str = "cpu"
    repeats: int = 3
    models: tuple[str, ...] = MODELS
    bare_batch_sizes: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"digits_cnn": (100, 1000, 6400), "cifar32_cnn": (100, 1000)}
    )
    bare_samples: dict[str, int] = field(
        default_factory=lambda: {"digits_cnn": 51_200, "cifar32_cnn": 2_000}
    )
    n_small: int = 100
    n_large: int = 10_000
    single_inputs: dict[str, int] = field(
        default_factory=lambda: {"digits_cnn": 64, "cifar32_cnn": 8}
    )
    large_inputs: dict[str, int] = field(
        default_factory=lambda: {"digits_cnn": 4, "cifar32_cnn": 1}
    )
    batch_size: int = 1000
    ks: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"digits_cnn": (8, 32, 64), "cifar32_cnn": (8, 32)}
    )
    fast_examples: dict[str, int] = field(
        default_factory=lambda: {"digits_cnn": 100, "cifar32_cnn": 100}
    )
    fast_k: int = 10
    fast_budget_s: float = 120.0
    fast_variants: dict[str, tuple[str, ...]] | None = None
    compile: bool = True
    noise_repeats: int = 5
    runner_examples: int = 360
    runner_batch: int = 60
    ray: bool = True
    overhead_samples: int = 20_000
    overhead_large_samples: int = 2048
    overhead_batch_sizes: tuple[int, ...] = (256, 1024)
    hybrid_batch: int = 10_000
    hybrid_repeats: int = 20


def quick_settings(device: str = "cpu") -> Settings:
    """Tiny sizes for a smoke run (under a minute on 2 cores, no compile)."""
    return Settings(
        device=device,
        repeats=1,
        bare_batch_sizes={"digits_cnn": (100, 800), "cifar32_cnn": (100,)},
        bare_samples={"digits_cnn": 1600, "cifar32_cnn": 200},
        n_small=100,
        n_large=1000,
        single_inputs={"digits_cnn": 8, "cifar32_cnn": 1},
        large_inputs={"digits_cnn": 1, "cifar32_cnn": 1},
        ks={"digits_cnn": (8,), "cifar32_cnn": (2,)},
        fast_examples={"digits_cnn": 20, "cifar32_cnn": 4},
        fast_k=4,
        fast_budget_s=5.0,
        fast_variants={
            "digits_cnn": ("fp32", "bf16"),
            "cifar32_cnn": ("fp32", "fp32+channels_last"),
        },
        compile=False,
        noise_repeats=2,
        runner_examples=4,
        runner_batch=2,
        ray=False,
        overhead_samples=2000,
        overhead_large_samples=256,
        overhead_batch_sizes=(256,),
        hybrid_batch=100,
        hybrid_repeats=2,
    )


# ---------------------------------------------------------------------------------------
# machine, models, inputs, timing helpers


def machine_info(device: str) -> dict[str, Any]:
    """CPU model, cores, RAM, GPU, library versions, date and load of this machine."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    ram_gib = None
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    ram_gib = round(int(line.split()[1]) / 2**20, 1)
                    break
    gpu = None
    if torch.cuda.is_available():
        dev = torch.device(device) if device.startswith("cuda") else torch.device("cuda")
        gpu = torch.cuda.get_device_name(dev)
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": ram_gib,
        "gpu": gpu,
        "device": device,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "c_compiler": shutil.which("cc") or shutil.which("gcc"),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


_CACHE: dict[tuple[str, str], Any] = {}


def get_model(name: str, device: str) -> torch.nn.Module:
    """The benchmark model ``name`` on ``device`` (cached; do not modify it in place)."""
    key = (name, device)
    if key not in _CACHE:
        if name == "digits_cnn":
            from smoothcert.models import load_model

            model = load_model("digits_cnn", sigma=SIGMA, device=device)
        elif name == "cifar32_cnn":
            torch.manual_seed(0)
            model = Cifar32CNN().to(device).eval()
        else:
            raise ValueError(f"model = {name!r} is invalid; valid: {MODELS}")
        _CACHE[key] = model
    return _CACHE[key]


def get_inputs(name: str, count: int, device: str) -> torch.Tensor:
    """``count`` clean inputs for model ``name``: digits test images (resized for CIFAR)."""
    from smoothcert.data import load_dataset

    images = np.array(load_dataset("digits", split="test").images, copy=True)
    idx = np.arange(count) % len(images)
    x = torch.from_numpy(images[idx]).float()
    if name == "cifar32_cnn":
        x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear")
        x = x.repeat(1, 3, 1, 1)
    return x.to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_time(fn: Callable[[], Any], repeats: int, device: str, *, warmup: bool = True) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` (after one untimed warm-up call)."""
    if warmup:
        fn()
    times = []
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def gaussian_samplers(xs: torch.Tensor, seed: int) -> list[Callable[[int], tuple]]:
    """One kernel and one generator per input, as ``certify`` builds them."""
    out = []
    for i, x in enumerate(xs):
        kernel, g = GaussianNoise(SIGMA), make_generator(seed + i, x.device)
        out.append(lambda b, x=x, kernel=kernel, g=g: (kernel.sample(x, b, generator=g),))
    return out


def bare_rate(model: Any, x: torch.Tensor, batch_size: int, samples: int, s: Settings) -> float:
    """Bare forward samples/s at ``batch_size`` (pre-made noise), best of repeats."""
    samples = max(batch_size, samples - samples % batch_size)
    dev = torch.device(s.device)
    time_bare(model, x, SIGMA, batch_size, batch_size, dev)  # warm-up
    best = min(time_bare(model, x, SIGMA, samples, batch_size, dev) for _ in range(s.repeats))
    return samples / best


# ---------------------------------------------------------------------------------------
# benchmarks


def bench_bare_forward(s: Settings) -> dict[str, Any]:
    """Bare forward + argmax samples/s on pre-made noisy inputs, per model and batch size."""
    out: dict[str, Any] = {}
    for name in s.models:
        model, x = get_model(name, s.device), get_inputs(name, 1, s.device)[0]
        sizes = sorted({*s.bare_batch_sizes[name], *(k * s.n_small for k in s.ks[name])})
        rates = {str(b): bare_rate(model, x, b, s.bare_samples[name], s) for b in sizes}
        out[name] = {"samples_per_s_by_batch": rates, "best_samples_per_s": max(rates.values())}
    return out


def bench_engine_single(s: Settings) -> dict[str, Any]:
    """``count_classes`` one input at a time, at n = n_small and n = n_large."""
    out: dict[str, Any] = {}
    for name in s.models:
        model = get_model(name, s.device)
        row: dict[str, Any] = {"batch_size": s.batch_size}
        for label, n, count in (
            ("n_small", s.n_small, s.single_inputs[name]),
            ("n_large", s.n_large, s.large_inputs[name]),
        ):
            xs = get_inputs(name, count, s.device)

            def run(xs=xs, n=n, model=model) -> None:
                for sampler in gaussian_samplers(xs, 0):
                    count_classes(
                        model,
                        sampler,
                        n,
                        num_classes=10,
                        batch_size=s.batch_size,
                        device=s.device,
                    )

            # Warm up with one short input; fewer repeats for the long n_large runs.
            run(xs[:1], min(n, s.batch_size))
            repeats = s.repeats if label == "n_small" else min(s.repeats, 2)
            t = best_time(run, repeats, s.device, warmup=False)
            row[label] = {
                "n": n,
                "inputs": count,
                "samples_per_s": count * n / t,
                "examples_per_s": count / t,
            }
        out[name] = row
    return out


def interleaved_best(
    fns: dict[str, Callable[[], Any]], rounds: int, device: str
) -> dict[str, float]:
    """Best wall time of each function, calling them in turn for ``rounds`` rounds.

    Interleaving puts every measurement of a comparison in the same time window, so a
    change in the machine's load moves all of them, not one side (after one untimed
    warm-up call of each).
    """
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(max(1, rounds)):
        for key, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            best[key] = min(best[key], time.perf_counter() - t0)
    return best


def bench_engine_multi(s: Settings, bare: dict[str, Any] | None = None) -> dict[str, Any]:
    """``count_classes_many`` with k inputs at n = n_small, vs bare forward and one-by-one.

    For each k, three things are timed in turn (interleaved, best of ``max(repeats, 3)``
    rounds) on the same number of samples (``reps`` x k x n):

    * ``bare``: forward + argmax on pre-made noisy inputs, batches of k x b rows;
    * ``multi``: ``count_classes_many`` on k inputs (noise drawn per input, one forward
      pass of k x b rows per step, counts on the device);
    * ``single``: ``count_classes`` on the k inputs one after the other (forward passes
      of b = min(n, batch_size) rows).

    ``ratio_to_same_batch_bare`` = multi samples/s / bare samples/s at the same batch;
    ``ratio_to_best_bare`` divides by the best bare rate over every k of this benchmark
    and the ``bare_forward`` benchmark (conservative, but the latter was measured at
    another time); ``speedup_vs_single_input`` = single time / multi time.
    """
    out: dict[str, Any] = {}
    for name in s.models:
        model = get_model(name, s.device)
        rows = {}
        best_bare = 0.0
        for k in s.ks[name]:
            xs = get_inputs(name, k, s.device)
            b = min(s.n_small, s.batch_size)
            reps = max(1, s.bare_samples[name] // (k * s.n_small))
            g = make_generator(0, s.device)
            batches = [
                xs.unsqueeze(1)
                + SIGMA * torch.randn((k, b, *xs.shape[1:]), generator=g, device=s.device)
                for _ in range(-(-s.n_small // b))
            ]
            batches = [t.reshape(k * b, *xs.shape[1:]) for t in batches]

            def bare_fn(batches=batches, model=model, reps=reps) -> None:
                with torch.inference_mode():
                    for _ in range(reps):
                        for batch in batches:
                            model(batch).argmax(1)

            def multi_fn(xs=xs, model=model, reps=reps) -> None:
                for _ in range(reps):
                    count_classes_many(
                        model,
                        gaussian_samplers(xs, 0),
                        s.n_small,
                        num_classes=10,
                        batch_size=s.batch_size,
                        device=s.device,
                    )

            def single_fn(xs=xs, model=model, reps=reps) -> None:
                for _ in range(reps):
                    for sampler in gaussian_samplers(xs, 0):
                        count_classes(
                            model,
                            sampler,
                            s.n_small,
                            num_classes=10,
                            batch_size=s.batch_size,
                            device=s.device,
                        )

            t = interleaved_best(
                {"bare": bare_fn, "multi": multi_fn, "single": single_fn},
                max(3, s.repeats),
                s.device,
            )
            samples = reps * k * s.n_small
            rate = samples / t["multi"]
            best_bare = max(best_bare, samples / t["bare"])
            rows[str(k)] = {
                "k": k,
                "n": s.n_small,
                "forward_rows": k * b,
                "samples_timed": samples,
                "bare_samples_per_s": samples / t["bare"],
                "samples_per_s": rate,
                "examples_per_s": reps * k / t["multi"],
                "single_input_samples_per_s": samples / t["single"],
                "ratio_to_same_batch_bare": t["bare"] / t["multi"],
                "speedup_vs_single_input": t["single"] / t["multi"],
            }
        if bare and name in bare:
            best_bare = max(best_bare, bare[name]["best_samples_per_s"])
        for row in rows.values():
            row["ratio_to_best_bare"] = row["samples_per_s"] / best_bare
        out[name] = {"bare_best_samples_per_s": best_bare, "by_k": rows}
    return out


def bench_noise(s: Settings) -> dict[str, Any]:
    """Drawing noise alone, for k inputs x n_small samples of each model's input shape.

    * ``per_input_kernel``: k ``GaussianNoise.sample(x_i, n, generator=g_i)`` calls, what
      the engine (single or multi) does;
    * ``one_randn``: one ``torch.randn(k * n, *shape)`` with one generator (same
      distribution, but not the per-input streams that make counts reproducible per
      example);
    * ``numpy_ziggurat``: numpy's ``Generator.standard_normal(dtype=float32)`` (exact,
      ziggurat) copied into a torch tensor (CPU only).

    ``noise_share_of_engine`` is engine time spent drawing noise:
    engine samples/s / per-input-kernel noise samples/s, for the single-input path
    (n = n_small, one input at a time) and the largest k of the multi-input path.
    """
    out: dict[str, Any] = {}
    n = s.n_small
    for name in s.models:
        k = max(s.ks[name])
        xs = get_inputs(name, k, s.device)
        shape = tuple(xs.shape[1:])
        samplers = gaussian_samplers(xs, 0)

        def per_input(samplers=samplers) -> None:
            for sampler in samplers:
                sampler(n)

        g = make_generator(0, s.device)
        buf = torch.empty((k * n, *shape), device=s.device)

        def one_randn(buf=buf, g=g) -> None:
            torch.randn(buf.shape, generator=g, out=buf)
            buf.mul_(SIGMA)

        rates = {
            "per_input_kernel": k * n / best_time(per_input, s.noise_repeats, s.device),
            "one_randn": k * n / best_time(one_randn, s.noise_repeats, s.device),
        }
        if s.device == "cpu":
            rng = np.random.default_rng(0)
            arr = np.empty((k * n, *shape), dtype=np.float32)
            tbuf = torch.from_numpy(arr)

            def ziggurat(rng=rng, arr=arr, tbuf=tbuf) -> None:
                rng.standard_normal(out=arr, dtype=np.float32)
                tbuf.mul_(SIGMA)

            rates["numpy_ziggurat"] = k * n / best_time(ziggurat, s.noise_repeats, s.device)
        out[name] = {"k": k, "n": n, "noise_samples_per_s": rates}
    return out


def add_noise_shares(noise: dict, single: dict, multi: dict, s: Settings) -> None:
    """Add the share of engine time spent on noise to ``noise`` (in place)."""
    for name, row in noise.items():
        k = str(max(s.ks[name]))
        rate = row["noise_samples_per_s"]["per_input_kernel"]
        shares = {}
        by_k = multi.get(name, {}).get("by_k", {})
        if k in by_k:  # the interleaved one-at-a-time figure, else engine_single's
            shares["single_n_small"] = by_k[k]["single_input_samples_per_s"] / rate
            shares[f"multi_k{k}"] = by_k[k]["samples_per_s"] / rate
        elif name in single:
            shares["single_n_small"] = single[name]["n_small"]["samples_per_s"] / rate
        row["noise_share_of_engine"] = shares


def _variants(name: str, s: Settings) -> list[tuple[str, str, bool, bool]]:
    """(label, precision, compile, channels_last) variants measured for ``name``."""
    out = [("fp32", "fp32", False, False), ("bf16", "bf16", False, False)]
    if name == "cifar32_cnn":
        out += [
            ("fp32+channels_last", "fp32", False, True),
            ("bf16+channels_last", "bf16", False, True),
        ]
        if s.compile:
            out += [
                ("fp32+compile", "fp32", True, False),
                ("fp32+compile+channels_last", "fp32", True, True),
                ("bf16+compile+channels_last", "bf16", True, True),
            ]
    if s.fast_variants is not None:
        out = [v for v in out if v[0] in s.fast_variants.get(name, ())]
    return out


def bench_fast_path(s: Settings) -> dict[str, Any]:
    """fp32 vs bf16 autocast vs compile vs channels-last: examples/s at n_small and agreement.

    Each variant certifies the same examples with the same per-example seeds through
    ``count_classes_many`` (groups of ``fast_k`` inputs, so every forward pass has the
    same shape and ``torch.compile`` compiles once). The first group is the warm-up
    (``first_call_s`` includes compilation); the other groups are timed
    (``examples_per_s``, steady state; best of ``repeats`` passes, the variants' passes
    interleaved so that they share the machine's load of the moment). A variant stops
    after ``fast_budget_s`` seconds (bf16 is very slow on CPUs without native bf16):
    then ``examples`` says how many examples its agreement is over, and with a single
    group its rate includes the warm-up (``rate_includes_warmup``).

    ``agreement_with_fp32`` is the fraction of examples whose smoothed prediction
    (argmax of the counts) equals fp32 eager's; ``counts_l1_per_example`` is the mean L1
    distance between the count vectors (0: identical counts).
    """
    out: dict[str, Any] = {}
    for name in s.models:
        base = get_model(name, s.device)
        num = s.fast_examples[name]
        xs = get_inputs(name, num, s.device)
        starts = list(range(0, num, s.fast_k))
        rows: dict[str, Any] = {}
        reference: np.ndarray | None = None
        state: dict[str, dict[str, Any]] = {}
        # Phase 1: build and warm up every variant (first group; compiles if asked).
        for label, precision, compile_, channels_last in _variants(name, s):
            try:
                model = prepare_model(
                    copy.deepcopy(base), compile=compile_, channels_last=channels_last
                )
                dtype = autocast_dtype_for(precision)

                def group(i: int, model=model, dtype=dtype, xs=xs) -> np.ndarray:
                    return count_classes_many(
                        model,
                        gaussian_samplers(xs[i : i + s.fast_k], 1000 + i),
                        s.n_small,
                        num_classes=10,
                        batch_size=s.batch_size,
                        device=s.device,
                        autocast_dtype=dtype,
                    )

                _sync(s.device)
                t0 = time.perf_counter()
                parts = [group(starts[0])]
                _sync(s.device)
                first = time.perf_counter() - t0
                state[label] = {
                    "flags": {
                        "precision": precision,
                        "compile": compile_,
                        "channels_last": channels_last,
                    },
                    "group": group,
                    "parts": parts,
                    "first": first,
                    "spent": first,
                    "best": None,
                    "timed": 0,
                }
            except Exception as err:  # noqa: BLE001 - record and go on (e.g. no compiler)
                rows[label] = {"error": f"{type(err).__name__}: {err}"}
        # Phase 2: timed passes, the variants in turn (interleaved: the same load for all).
        for rep in range(max(1, s.repeats)):
            for st in state.values():
                if "error" in st or st["spent"] > s.fast_budget_s:
                    continue
                try:
                    done, t0 = 0, time.perf_counter()
                    for i in starts[1:]:
                        if st["spent"] + time.perf_counter() - t0 > s.fast_budget_s:
                            break
                        counts_i = st["group"](i)
                        if rep == 0:
                            st["parts"].append(counts_i)
                        done += len(counts_i)
                    _sync(s.device)
                    elapsed = time.perf_counter() - t0
                    st["spent"] += elapsed
                    if done and (st["best"] is None or elapsed / done < st["best"]):
                        st["best"], st["timed"] = elapsed / done, done
                except Exception as err:  # noqa: BLE001
                    st["error"] = f"{type(err).__name__}: {err}"
        for label, st in state.items():
            if "error" in st:
                rows[label] = {"error": st["error"]}
                continue
            counts = np.concatenate(st["parts"])
            if reference is None:
                reference = counts
            ref = reference[: len(counts)]
            per_example = st["best"] if st["best"] else st["first"] / len(st["parts"][0])
            rows[label] = {
                **st["flags"],
                "examples": len(counts),
                "examples_per_s": 1.0 / per_example,
                "samples_per_s": s.n_small / per_example,
                "timed_examples": st["timed"] or len(st["parts"][0]),
                "rate_includes_warmup": st["best"] is None,
                "first_call_s": st["first"],
                "agreement_with_fp32": float(np.mean(counts.argmax(axis=1) == ref.argmax(axis=1))),
                "counts_l1_per_example": float(np.abs(counts - ref).sum(axis=1).mean()),
            }
        fp32 = rows.get("fp32", {}).get("examples_per_s")
        for row in rows.values():
            if fp32 and "examples_per_s" in row:
                row["speedup_vs_fp32"] = row["examples_per_s"] / fp32
        out[name] = {"examples": num, "n": s.n_small, "k": s.fast_k, "variants": rows}
    return out


def _runner_config(s: Settings, num_examples: int) -> Any:
    """A Cohen digits ``RunConfig`` at n0 = n = n_small, for the runner API of the day."""
    from smoothcert.runner import RunConfig

    common = {
        "model": "digits_cnn",
        "dataset": "digits",
        "split": "test",
        "num_examples": num_examples,
        "batch_size": s.batch_size,
    }
    params = {"sigma": SIGMA, "n0": s.n_small, "n": s.n_small, "alpha": 0.001}
    try:  # the redesigned runner: a registered method and its parameters
        return RunConfig(method="cohen", params=params, **common)
    except TypeError:  # the first release: Cohen's parameters are config fields
        return RunConfig(method="cohen", **params, **common)


def bench_runner(s: Settings, bare: dict[str, Any] | None = None) -> dict[str, Any]:
    """Certified examples/s through ``run_certification`` (digits, n0 = n = n_small).

    Variants: the local backend one example at a time, the local backend with
    ``examples_per_batch = runner_batch`` (multi-input batching, if the runner has
    it), and Ray with 1 and 2 workers (if Ray and ``RayBackend`` are available and
    ``settings.ray``; the Ray times include starting the local cluster and the workers'
    model loading, so they are a lower bound on the steady rate).

    Each variant that fails (e.g. the runner API has changed again) is recorded as
    ``{"error": ...}`` instead of crashing. ``ratio_to_best_bare`` compares the samples/s
    reached ((n0 + n) per example) with the digits CNN's best bare forward rate.
    """
    import inspect

    try:
        from smoothcert.runner import run_certification

        config = _runner_config(s, s.runner_examples)
        warm = _runner_config(s, 1)
        accepted = inspect.signature(run_certification).parameters
    except Exception as err:  # noqa: BLE001 - the runner API is being redesigned
        return {"error": f"{type(err).__name__}: {err}"}

    variants: dict[str, dict[str, Any]] = {"local": {}}
    if "examples_per_batch" in accepted:
        variants[f"local_examples_per_batch_{s.runner_batch}"] = {
            "examples_per_batch": s.runner_batch
        }
    if s.ray and "backend" in accepted:
        for workers in (1, 2):
            variants[f"ray_{workers}_workers"] = {"ray_workers": workers}

    best = bare["digits_cnn"]["best_samples_per_s"] if bare and "digits_cnn" in bare else None
    out: dict[str, Any] = {
        "model": "digits_cnn",
        "examples": s.runner_examples,
        "n0": s.n_small,
        "n": s.n_small,
        "variants": {},
    }
    for label, kw in variants.items():
        try:
            kw = dict(kw)
            workers = kw.pop("ray_workers", None)

            def call(cfg: Any, path: Path, kw=kw, workers=workers) -> Path:
                extra = dict(kw)
                if workers is not None:
                    from smoothcert.runner.ray_backend import RayBackend

                    extra["backend"] = RayBackend(workers=workers, cpus_per_worker=0.5)
                return run_certification(cfg, path, device=s.device, **extra)

            repeats = 1 if workers is not None else max(1, s.repeats)
            if workers is None:
                with tempfile.TemporaryDirectory() as tmp:
                    call(warm, Path(tmp) / "warm.jsonl")
            times, records = [], 0
            for _ in range(repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    t0 = time.perf_counter()
                    path = call(config, Path(tmp) / "run.jsonl")
                    times.append(time.perf_counter() - t0)
                    with open(path, encoding="utf-8") as fh:
                        records = sum(1 for line in fh if '"record"' in line)
            t = min(times)
            row = {
                "records_written": records,
                "seconds": t,
                "examples_per_s": s.runner_examples / t,
                "samples_per_s": s.runner_examples * 2 * s.n_small / t,
            }
            if best:
                row["ratio_to_best_bare"] = row["samples_per_s"] / best
            out["variants"][label] = row
        except Exception as err:  # noqa: BLE001 - record and go on
            out["variants"][label] = {
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=-3),
            }
    return out


def bench_engine_overhead(s: Settings) -> dict[str, Any]:
    """The older ``bench_engine_overhead.py`` table (bare vs engine at two batch sizes)."""
    return {
        "rows": run_overhead(
            s.device,
            samples=s.overhead_samples,
            large_samples=s.overhead_large_samples,
            batch_sizes=s.overhead_batch_sizes,
            repeats=s.repeats,
        )
    }


def bench_hybrid_curve(s: Settings) -> dict[str, Any]:
    """The ``bench_hybrid_curve.py`` timings (pure numpy/scipy, no device)."""
    return {"rows": run_hybrid(batch=s.hybrid_batch, repeats=s.hybrid_repeats)}


BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "bare_forward": bench_bare_forward,
    "engine_single": bench_engine_single,
    "engine_multi": bench_engine_multi,
    "noise": bench_noise,
    "fast_path": bench_fast_path,
    "runner": bench_runner,
    "engine_overhead": bench_engine_overhead,
    "hybrid_curve": bench_hybrid_curve,
}
"""Every benchmark, in run order. ``runner`` (and ``engine_multi`` when it ran) use
``bare_forward``'s best rate as the reference."""


# ---------------------------------------------------------------------------------------
# entry point


def run_all(
    s: Settings,
    only: list[str] | None = None,
    log: Callable[[str], None] = print,
    checkpoint: Callable[[dict], None] | None = None,
) -> dict:
    """Run the benchmarks (all, or those in ``only``) and return the JSON-ready result.

    ``checkpoint``, if given, is called with the partial result after each benchmark
    (the entry point writes the JSON file each time, so a long run that is stopped
    keeps the figures it has).
    """
    names = list(BENCHMARKS) if not only else only
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise SystemExit(f"unknown benchmarks {unknown}; valid: {', '.join(BENCHMARKS)}")
    if "runner" in names and "bare_forward" not in names:
        names.insert(0, "bare_forward")
    results: dict[str, Any] = {}
    timing: dict[str, float] = {}
    for name in [n for n in BENCHMARKS if n in names]:
        log(f"[{time.strftime('%H:%M:%S')}] {name} ...")
        t0 = time.perf_counter()
        try:
            fn = BENCHMARKS[name]
            if name in ("engine_multi", "runner"):
                results[name] = fn(s, bare=results.get("bare_forward"))
            else:
                results[name] = fn(s)
        except Exception as err:  # noqa: BLE001 - one broken benchmark must not lose the rest
            results[name] = {"error": f"{type(err).__name__}: {err}"}
            log(traceback.format_exc())
        timing[name] = round(time.perf_counter() - t0, 1)
        if checkpoint is not None:
            checkpoint({"benchmarks": results, "benchmark_seconds": timing})
    if {"noise", "engine_single", "engine_multi"} <= results.keys() and not any(
        "error" in results[k] for k in ("noise", "engine_single", "engine_multi")
    ):
        add_noise_shares(results["noise"], results["engine_single"], results["engine_multi"], s)
    return {"benchmarks": results, "benchmark_seconds": timing}


def summary(results: dict[str, Any]) -> list[str]:
    """Headline lines: multi-input ratio, fast-path speedups and agreement, runner."""
    lines = []
    multi = results.get("engine_multi", {})
    for name, row in multi.items() if "error" not in multi else []:
        for k, r in row["by_k"].items():
            lines.append(
                f"{name}: count_classes_many k={k} n={r['n']}: {r['samples_per_s']:,.0f} "
                f"samples/s = {r['ratio_to_same_batch_bare']:.2f} x bare forward at the same "
                f"batch ({r['ratio_to_best_bare']:.2f} x best bare), "
                f"{r['speedup_vs_single_input']:.2f} x one input at a time"
            )
    single = results.get("engine_single", {})
    for name, row in single.items() if "error" not in single else []:
        for label in ("n_small", "n_large"):
            r = row[label]
            lines.append(
                f"{name}: count_classes single input n={r['n']}: "
                f"{r['samples_per_s']:,.0f} samples/s"
            )
    fast = results.get("fast_path", {})
    for name, row in fast.items() if "error" not in fast else []:
        for label, r in row["variants"].items():
            if "error" in r:
                lines.append(f"{name}: {label}: error {r['error'][:120]}")
            else:
                lines.append(
                    f"{name}: {label}: {r['examples_per_s']:.2f} ex/s at n={row['n']} "
                    f"({r.get('speedup_vs_fp32', float('nan')):.2f}x fp32), agreement "
                    f"{100 * r['agreement_with_fp32']:.0f}% of {r['examples']}"
                )
    runner = results.get("runner", {})
    if "error" in runner:
        lines.append(f"runner: error {runner['error']}")
    for label, r in runner.get("variants", {}).items():
        if "error" in r:
            lines.append(f"runner {label}: error {r['error'][:160]}")
        else:
            lines.append(
                f"runner {label}: {r['examples_per_s']:.2f} certified ex/s "
                f"(n0=n={runner['n']}, {runner['examples']} examples), "
                f"{r.get('ratio_to_best_bare', float('nan')):.2f} x best bare forward"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, < 1 min)")
    parser.add_argument("--out", help="JSON output (default benchmarks/results/<host>.json)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"subset of {list(BENCHMARKS)}")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile variants")
    parser.add_argument("--repeats", type=int, help="override the number of timed repeats")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray runner variants")
    parser.add_argument(
        "--variants", nargs="+", metavar="LABEL", help="fast_path variants to run (e.g. fp32 bf16)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (default: torch's own choice)"
    )
    args = parser.parse_args(argv)

    s = quick_settings(args.device) if args.quick else Settings(device=args.device)
    if args.no_compile:
        s.compile = False
    if args.repeats:
        s.repeats = args.repeats
    if args.no_ray:
        s.ray = False
    if args.variants:
        s.fast_variants = {name: tuple(args.variants) for name in MODELS}
    if args.threads:
        torch.set_num_threads(args.threads)
    suffix = "-quick" if args.quick else ""
    out = Path(args.out) if args.out else (
        Path(__file__).resolve().parent / "results" / f"{socket.gethostname()}{suffix}.json"
    )  # fmt: skip
    machine = machine_info(args.device)
    print(f"machine: {machine['cpu_model']}, {machine['cpu_cores']} cores, "
          f"{machine['torch_threads']} torch threads, {machine['ram_gib']} GiB, "
          f"gpu {machine['gpu']}, torch {machine['torch']}, device {args.device}")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(result: dict, *, done: bool) -> dict:
        machine["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        payload = {
            "schema": 1,
            "quick": args.quick,
            "complete": done,
            "machine": machine,
            "settings": asdict(s),
            **result,
            "summary": summary(result["benchmarks"]),
        }
        out.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        return payload

    result = run_all(s, args.only, checkpoint=lambda r: write(r, done=False))
    payload = write(result, done=True)
    print("\n".join(payload["summary"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

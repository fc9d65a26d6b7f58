"""Keep benchmarks/run_all.py from rotting: import it and run tiny benchmarks.

No wall-clock assertions: only that the functions run and return the expected keys.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

RUN_ALL = Path(__file__).resolve().parents[2] / "benchmarks" / "run_all.py"


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("smoothcert_bench_run_all", RUN_ALL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def tiny(run_all):
    s = run_all.quick_settings("cpu")
    s.models = ("digits_cnn",)
    s.bare_batch_sizes = {"digits_cnn": (100,)}
    s.bare_samples = {"digits_cnn": 200}
    s.ks = {"digits_cnn": (2,)}
    s.single_inputs = {"digits_cnn": 2}
    s.n_large = 200
    s.fast_examples = {"digits_cnn": 4}
    s.fast_k = 2
    return s


def test_every_benchmark_is_registered(run_all):
    assert set(run_all.BENCHMARKS) >= {
        "bare_forward",
        "engine_single",
        "engine_multi",
        "noise",
        "fast_path",
        "runner",
        "engine_overhead",
        "hybrid_curve",
    }
    info = run_all.machine_info("cpu")
    assert {"cpu_model", "cpu_cores", "ram_gib", "gpu", "torch", "numpy", "date_utc"} <= set(info)


def test_tiny_engine_multi_and_fast_path_run(run_all):
    s = tiny(run_all)
    result = run_all.run_all(s, ["engine_multi", "noise", "fast_path"], log=lambda _: None)
    bench = result["benchmarks"]
    assert "error" not in bench["engine_multi"]
    row = bench["engine_multi"]["digits_cnn"]["by_k"]["2"]
    assert row["samples_per_s"] > 0 and row["ratio_to_best_bare"] > 0
    assert set(bench["noise"]["digits_cnn"]["noise_samples_per_s"]) >= {
        "per_input_kernel",
        "one_randn",
    }
    variants = bench["fast_path"]["digits_cnn"]["variants"]
    assert variants["fp32"]["agreement_with_fp32"] == 1.0
    assert "examples_per_s" in variants["bf16"]
    json.dumps(result)  # the whole result is JSON-serialisable
    assert run_all.summary(bench)


def test_runner_benchmark_records_errors_instead_of_crashing(run_all, monkeypatch):
    import smoothcert.runner

    def broken(*args, **kwargs):
        raise TypeError("run_certification() got an unexpected keyword argument")

    monkeypatch.setattr(smoothcert.runner, "run_certification", broken)
    s = tiny(run_all)
    s.runner_examples = 1
    out = run_all.bench_runner(s)
    assert "error" in out or all("error" in v for v in out["variants"].values())


def test_sequential_benchmark_runs_at_tiny_sizes(tmp_path):
    path = RUN_ALL.parent / "bench_sequential.py"
    spec = importlib.util.spec_from_file_location("smoothcert_bench_sequential", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.bench_sequential(
        sigmas=(0.5,), skip=90, n=300, num_examples=3, device="cpu", results_dir=tmp_path
    )
    per = out["sigma=0.5"]
    assert set(per) == {
        "fixed",
        "target-union",
        "target-futility",
        "target-futility-z2",
        "target-futility-z0.5",
        "target-mixture",
        "precision",
    }
    assert per["fixed"]["forward_samples_total"] == 3 * 400
    assert per["fixed"]["share_of_fixed"] == 1.0
    for summary in per.values():
        assert summary["examples"] == 3
        assert summary["forward_samples_total"] <= 3 * 400

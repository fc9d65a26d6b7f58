from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from smoothcert.decisions.cohen import GaussianParams
from smoothcert.errors import InvalidParameterError
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.runner.config import (
    HASH_SCHEMA,
    HASHED_FIELDS,
    SELECTION_FIELDS,
    RunConfig,
    default_run_stem,
    example_seed,
)

# Golden value: changing it breaks resuming every existing result file.
# Hash schema 2 (method + typed params, precision, compile, channels_last, model_sigma).
DEFAULT_HASH = "f0de6bcb8fd0a9e8f444c4b480fbf643ea07f8530791167b378b8cc8e3ee1a9e"
DEFAULT_PARAMS = {"sigma": 0.25, "n0": 100, "n": 10_000, "alpha": 0.001}


def test_default_hash_is_stable_across_processes() -> None:
    assert RunConfig().config_hash() == DEFAULT_HASH
    code = "from smoothcert.runner import RunConfig; print(RunConfig().config_hash())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == DEFAULT_HASH


def test_canonical_json_is_sorted_compact_and_tagged() -> None:
    text = RunConfig().canonical_json()
    payload = json.loads(text)
    assert list(payload) == sorted(payload)
    assert " " not in text
    assert set(payload) == set(HASHED_FIELDS) | {"hash_schema"}


CHANGES = {
    "method": "cohen-top2",
    "params": {**DEFAULT_PARAMS, "sigma": 0.5},
    "model": "other",
    "model_sigma": 0.5,
    "dataset": "other",
    "split": "train",
    "batch_size": 500,
    "seed": 1,
    "precision": "bf16",
    "compile": True,
    "channels_last": True,
}


def test_hashed_fields_and_schema() -> None:
    assert HASH_SCHEMA == 2
    assert RunConfig().params == DEFAULT_PARAMS
    assert RunConfig() == RunConfig(method="cohen", params=DEFAULT_PARAMS)
    assert set(RunConfig().hashed_fields()) == set(HASHED_FIELDS)
    assert not set(HASHED_FIELDS) & set(SELECTION_FIELDS)


@pytest.mark.parametrize("field", HASHED_FIELDS)
def test_every_hashed_field_changes_the_hash(field: str) -> None:
    assert set(CHANGES) == set(HASHED_FIELDS)
    changed = dataclasses.replace(RunConfig(), **{field: CHANGES[field]})
    assert changed.config_hash() != DEFAULT_HASH


@pytest.mark.parametrize(
    ("name", "value"), [("sigma", 0.5), ("n0", 101), ("n", 10_001), ("alpha", 0.01)]
)
def test_every_method_parameter_changes_the_hash(name: str, value: float) -> None:
    changed = RunConfig(params={**DEFAULT_PARAMS, name: value})
    assert changed.config_hash() != DEFAULT_HASH


def test_parameter_order_does_not_change_the_hash() -> None:
    reordered = dict(reversed(list(DEFAULT_PARAMS.items())))
    assert RunConfig(params=reordered).config_hash() == DEFAULT_HASH


@pytest.mark.parametrize(
    "change", [{"num_examples": 5}, {"skip": 20}, {"start": 3}, {"num_examples": 1, "skip": 2}]
)
def test_selection_does_not_change_the_hash(change: dict[str, int]) -> None:
    assert set(change) <= set(SELECTION_FIELDS)
    config = RunConfig(**change)
    assert config.config_hash() == DEFAULT_HASH
    assert config.selection() == {**RunConfig().selection(), **change}


def test_int_and_float_sigma_hash_equal() -> None:
    one = RunConfig(params={**DEFAULT_PARAMS, "sigma": 1})
    assert one.config_hash() == RunConfig(params={**DEFAULT_PARAMS, "sigma": 1.0}).config_hash()
    assert isinstance(one.sigma, float) and isinstance(one.method_params().sigma, float)


def test_batch_size_changes_the_noise_stream() -> None:
    """Why batch_size is hashed: the same generator split into other call sizes differs."""
    x = torch.zeros(3, 5, 5)  # 75 elements per sample, not a multiple of 16
    kernel = GaussianNoise(1.0)

    def draw(sizes: list[int]) -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        return torch.cat([kernel.sample(x, b, generator=gen).clone() for b in sizes])

    assert not torch.equal(draw([7, 13]), draw([20]))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"params": {**DEFAULT_PARAMS, "sigma": 0.0}}, "sigma = 0.0"),
        ({"params": {**DEFAULT_PARAMS, "sigma": float("nan")}}, "sigma = nan"),
        ({"params": {**DEFAULT_PARAMS, "alpha": 1.5}}, "alpha = 1.5"),
        ({"params": {**DEFAULT_PARAMS, "alpha": 0}}, "alpha = 0"),
        ({"params": {**DEFAULT_PARAMS, "n0": 0}}, "n0 = 0"),
        ({"params": {**DEFAULT_PARAMS, "n": -3}}, "n = -3"),
        ({"params": {**DEFAULT_PARAMS, "n": 2.5}}, "n = 2.5"),
        ({"params": {**DEFAULT_PARAMS, "beta": 0.1}}, "beta is not a parameter of method"),
        ({"params": {"sigma": 0.25}}, "needs n0, n, alpha"),
        ({"params": [0.25]}, "params of type list"),
        ({"method": "tokens"}, "params = None is invalid for method 'tokens'"),
        ({"batch_size": 0}, "batch_size = 0"),
        ({"num_examples": 0}, "num_examples = 0"),
        ({"skip": 0}, "skip = 0"),
        ({"start": -1}, "start = -1"),
        ({"seed": -1}, "seed = -1"),
        ({"seed": 2**63}, "seed = 9223372036854775808"),
        ({"method": "laplace"}, "method = 'laplace'"),
        ({"method": "cohen_top2"}, "method = 'cohen_top2'"),  # v1 spelling: now cohen-top2
        ({"model": ""}, "model = ''"),
        ({"split": 3}, "split = 3"),
        ({"model_sigma": 0}, "model_sigma = 0"),
        ({"precision": "fp8"}, "precision = 'fp8'"),
        ({"compile": 1}, "compile = 1"),
        ({"channels_last": "yes"}, "channels_last = 'yes'"),
    ],
)
def test_invalid_values_are_rejected_with_value_and_range(
    kwargs: dict[str, object], needle: str
) -> None:
    with pytest.raises(InvalidParameterError, match="valid") as info:
        RunConfig(**kwargs)  # type: ignore[arg-type]
    assert needle in str(info.value)


def test_round_trip_and_unknown_keys() -> None:
    cfg = RunConfig(
        method="cohen-top2",
        params={**DEFAULT_PARAMS, "sigma": 0.5},
        num_examples=7,
        precision="bf16",
    )
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.method_params() == GaussianParams(sigma=0.5, n0=100, n=10_000, alpha=0.001)
    with pytest.raises(InvalidParameterError, match="unknown RunConfig fields"):
        RunConfig.from_dict({**cfg.to_dict(), "device": "cuda"})


def test_select_positions() -> None:
    assert list(RunConfig().select_positions(5)) == [0, 1, 2, 3, 4]
    assert list(RunConfig(skip=20).select_positions(100)) == [0, 20, 40, 60, 80]
    assert list(RunConfig(skip=3, start=2, num_examples=2).select_positions(100)) == [2, 5]
    assert list(RunConfig(num_examples=50).select_positions(3)) == [0, 1, 2]
    with pytest.raises(InvalidParameterError, match=r"start = 5 is invalid.*0 <= start < 5"):
        RunConfig(start=5).select_positions(5)


def test_example_seed_properties() -> None:
    seeds = {example_seed(0, i) for i in range(1000)}
    assert len(seeds) == 1000
    assert all(0 <= s < 2**63 for s in seeds)
    assert example_seed(7, 3) == example_seed(7, np.int64(3))
    assert example_seed(0, 3) != example_seed(1, 3)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(InvalidParameterError, match="index"):
            example_seed(0, bad)  # type: ignore[arg-type]


def test_default_run_stem() -> None:
    assert default_run_stem(RunConfig()) == "digits_cnn_sigma0.25"
    half = RunConfig(params={**DEFAULT_PARAMS, "sigma": 0.5}, num_examples=3)
    assert default_run_stem(half) == "digits_cnn_sigma0.5"
    # any other configuration: model, method and a hash prefix (no collisions)
    top2 = RunConfig(method="cohen-top2", params=DEFAULT_PARAMS)
    assert default_run_stem(top2) == f"digits_cnn_cohen-top2_{top2.config_hash()[:8]}"
    bf16 = RunConfig(precision="bf16")
    assert default_run_stem(bf16) == f"digits_cnn_cohen_{bf16.config_hash()[:8]}"

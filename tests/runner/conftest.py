"""Fixtures for runner tests: a tiny linear model and a synthetic dataset (no assets)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from pipeline_toys import image_model
from smoothcert.runner import RunConfig


@dataclass(frozen=True)
class ToyDataset:
    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    num_classes: int
    name: str = "toy"
    split: str = "test"


def make_model(seed: int = 0) -> torch.nn.Module:
    return image_model(seed)


def make_dataset(size: int = 8) -> ToyDataset:
    rng = np.random.default_rng(1)
    images = rng.uniform(0.0, 1.0, size=(size, 1, 4, 4)).astype(np.float32)
    with torch.no_grad():
        clean = make_model()(torch.as_tensor(images)).argmax(dim=1).numpy()
    labels = clean.astype(np.int64)
    labels[::4] = (labels[::4] + 1) % 3  # a few wrong labels
    indices = (100 + 3 * np.arange(size)).astype(np.int64)  # stable ids != positions
    return ToyDataset(images, labels, indices, 3)


@pytest.fixture
def toy_model() -> torch.nn.Module:
    return make_model()


@pytest.fixture
def toy_dataset() -> ToyDataset:
    return make_dataset()


@pytest.fixture
def toy_config() -> RunConfig:
    return RunConfig(
        model="toy_linear",
        dataset="toy",
        split="test",
        params={"sigma": 0.25, "n0": 10, "n": 100, "alpha": 0.01},
        batch_size=32,
        seed=0,
    )

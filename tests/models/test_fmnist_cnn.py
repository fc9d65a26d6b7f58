"""The bundled Fashion-MNIST CNN (``fmnist_cnn``): the per-sigma experts of dual smoothing.

These tests read the real Fashion-MNIST test split (install it with
`bash scripts/install_data.sh`); like tests/data/test_fashion_mnist.py they are not
skipped when the files are missing.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from smoothcert.models import (
    FashionCNN,
    available_sigmas,
    default_weights_dir,
    get_model_spec,
    load_model,
    noisy_accuracy,
    read_manifest,
    weights_info,
)
from smoothcert.models.train import FMNIST_EPOCHS, FMNIST_VOTE_EXAMPLES, train_model

SIGMAS = (0.25, 0.5, 1.0)


def test_spec_and_sigmas() -> None:
    spec = get_model_spec("fmnist_cnn")
    assert spec.dataset == "fashion_mnist"
    assert spec.input_shape == (1, 28, 28)
    assert spec.num_classes == 10
    assert spec.kind == "image"
    assert available_sigmas("fmnist_cnn") == SIGMAS


def test_shipped_files_match_manifest_and_are_small() -> None:
    files = read_manifest()["files"]
    entries = {fn: e for fn, e in files.items() if e["model"] == "fmnist_cnn"}
    assert sorted(entries) == [f"fmnist_cnn_sigma{s!r}.pt" for s in SIGMAS]
    for filename, entry in entries.items():
        blob = (default_weights_dir() / filename).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
        assert len(blob) == entry["size_bytes"] < 1_500_000
        assert entry["dataset"] == "fashion_mnist"
        assert entry["training"]["split"] == "train"
        assert entry["training"]["epochs"] == FMNIST_EPOCHS
        assert entry["test_vote100_examples"] == FMNIST_VOTE_EXAMPLES
        assert 0.1 < entry["test_accuracy_noisy"] <= entry["test_accuracy_vote100"] <= 1.0


@pytest.mark.parametrize("sigma", SIGMAS)
def test_load_each_sigma(sigma: float) -> None:
    model = load_model("fmnist_cnn", sigma=sigma)
    assert isinstance(model, FashionCNN)
    assert all(not m.training for m in model.modules())
    assert model.sigma == sigma
    assert model.weights_sha256 == weights_info("fmnist_cnn", sigma).sha256
    with torch.inference_mode():
        out = model(torch.rand(7, 1, 28, 28))
    assert out.shape == (7, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_experts_differ_between_sigmas() -> None:
    a = load_model("fmnist_cnn", sigma=0.25).state_dict()["fc2.weight"]
    b = load_model("fmnist_cnn", sigma=1.0).state_dict()["fc2.weight"]
    assert not torch.equal(a, b)


# A sanity check, not a benchmark: a 20-vote majority on the first 200 test images,
# far above chance (0.1). Measured for the shipped weights (seeds 3, 4, 5): 0.89-0.895 /
# 0.88-0.885 / 0.85-0.86; the floors sit well below so that only a broken model or a
# wrong sigma fails, also after retraining.
@pytest.mark.parametrize(("sigma", "floor"), [(0.25, 0.8), (0.5, 0.75), (1.0, 0.65)])
def test_smoothed_accuracy_far_above_chance(sigma: float, floor: float) -> None:
    model = load_model("fmnist_cnn", sigma=sigma)
    acc = noisy_accuracy(
        model, sigma=sigma, dataset="fashion_mnist", votes=20, seed=3, max_examples=200
    )
    assert acc > floor


def test_training_uses_the_model_defaults_and_learns() -> None:
    model = train_model("fmnist_cnn", sigma=0.25, epochs=1, max_examples=512, seed=0)
    assert isinstance(model, FashionCNN) and not model.training
    with torch.inference_mode():
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_noisy_accuracy_on_a_subset_is_seeded() -> None:
    model = load_model("fmnist_cnn", sigma=0.5)
    acc = noisy_accuracy(model, sigma=0.5, dataset="fashion_mnist", max_examples=50, seed=1)
    assert 0.0 <= acc <= 1.0
    assert acc == noisy_accuracy(model, sigma=0.5, dataset="fashion_mnist", max_examples=50, seed=1)

"""Bundled models: sha256-checked loading, accuracy under noise, deterministic training."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from smoothcert.errors import AssetError, InvalidParameterError
from smoothcert.models import (
    DigitsCNN,
    available_sigmas,
    default_weights_dir,
    list_models,
    load_model,
    noisy_accuracy,
    read_manifest,
    save_weights,
    train_model,
    weights_info,
)

SIGMAS = (0.25, 0.5, 1.0)


@pytest.fixture()
def weights_copy(tmp_path: Path) -> Path:
    target = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), target)
    return target


def test_listing() -> None:
    assert list_models() == [
        "digits_cnn",
        "digits_lipschitz",
        "fmnist_cnn",
        "fmnist_lipschitz",
        "fmnist_sigma_estimator",
        "listing_filter",
        "tabular_mlp",
    ]
    assert available_sigmas("digits_cnn") == SIGMAS
    assert available_sigmas() == SIGMAS


def test_shipped_files_match_manifest_and_are_small() -> None:
    manifest = read_manifest()
    assert manifest["format"] == 1
    digits = {fn: e for fn, e in manifest["files"].items() if e["model"] == "digits_cnn"}
    assert sorted(digits) == [f"digits_cnn_sigma{s!r}.pt" for s in SIGMAS]
    for filename, entry in digits.items():
        path = default_weights_dir() / filename
        blob = path.read_bytes()
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
        assert len(blob) == entry["size_bytes"] < 1_000_000
        assert entry["dataset"] == "digits"


@pytest.mark.parametrize("sigma", SIGMAS)
def test_load_each_sigma(sigma: float) -> None:
    model = load_model("digits_cnn", sigma=sigma)
    assert isinstance(model, DigitsCNN)
    assert not model.training
    assert all(not m.training for m in model.modules())
    assert model.sigma == sigma
    assert model.weights_sha256 == weights_info("digits_cnn", sigma).sha256
    assert next(model.parameters()).device == torch.device("cpu")
    with torch.inference_mode():
        out = model(torch.rand(7, 1, 8, 8))
    assert out.shape == (7, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_models_differ_between_sigmas() -> None:
    a = load_model(sigma=0.25).state_dict()["fc2.weight"]
    b = load_model(sigma=1.0).state_dict()["fc2.weight"]
    assert not torch.equal(a, b)


# Thresholds sit well below the measured values of the shipped weights (one draw,
# mean over 10 seeds: 0.95 / 0.79 / 0.45; 25-vote majority, seed 2: 0.99 / 0.97 / 0.84)
# so that only a broken model or a wrong sigma fails, also after retraining.
@pytest.mark.parametrize(
    ("sigma", "single", "vote"), [(0.25, 0.90, 0.95), (0.5, 0.70, 0.90), (1.0, 0.35, 0.75)]
)
def test_accuracy_on_noisy_test_inputs(sigma: float, single: float, vote: float) -> None:
    model = load_model(sigma=sigma)
    assert noisy_accuracy(model, sigma=sigma, seed=1) > single
    assert noisy_accuracy(model, sigma=sigma, seed=2, votes=25) > vote


def test_noisy_accuracy_is_seeded() -> None:
    model = load_model(sigma=1.0)
    assert noisy_accuracy(model, sigma=1.0, seed=5) == noisy_accuracy(model, sigma=1.0, seed=5)


def test_weights_dir_override_loads(weights_copy: Path) -> None:
    model = load_model("digits_cnn", sigma=0.5, weights_dir=weights_copy)
    ref = load_model("digits_cnn", sigma=0.5)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.equal(model(x), ref(x))


def test_tampered_weights_raise_asset_error(weights_copy: Path) -> None:
    path = weights_copy / "digits_cnn_sigma0.25.pt"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(AssetError, match="smoothcert train") as info:
        load_model("digits_cnn", sigma=0.25, weights_dir=weights_copy)
    assert "sha256" in str(info.value)
    # the other files are still fine
    load_model("digits_cnn", sigma=0.5, weights_dir=weights_copy)


def test_missing_weight_file_raises_asset_error(weights_copy: Path) -> None:
    (weights_copy / "digits_cnn_sigma1.0.pt").unlink()
    with pytest.raises(AssetError, match="missing.*smoothcert train"):
        load_model("digits_cnn", sigma=1.0, weights_dir=weights_copy)


def test_missing_or_corrupt_manifest_raises_asset_error(weights_copy: Path) -> None:
    manifest = weights_copy / "manifest.json"
    manifest.write_text("{not json", encoding="utf-8")
    with pytest.raises(AssetError, match="smoothcert train"):
        load_model(sigma=0.25, weights_dir=weights_copy)
    manifest.write_text(json.dumps({"format": 1, "files": {"x.pt": {}}}), encoding="utf-8")
    with pytest.raises(AssetError, match="malformed"):
        available_sigmas(weights_dir=weights_copy)
    manifest.unlink()
    with pytest.raises(AssetError, match="missing.*smoothcert train"):
        load_model(sigma=0.25, weights_dir=weights_copy)
    with pytest.raises(AssetError):
        load_model(sigma=0.25, weights_dir=weights_copy / "nowhere")


def test_manifest_path_escape_is_refused(weights_copy: Path) -> None:
    manifest = json.loads((weights_copy / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"] = {"../evil.pt": manifest["files"]["digits_cnn_sigma0.25.pt"]}
    (weights_copy / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(AssetError, match="plain file name"):
        load_model(sigma=0.25, weights_dir=weights_copy)


def test_wrong_state_dict_raises_asset_error(weights_copy: Path) -> None:
    path = weights_copy / "digits_cnn_sigma0.25.pt"
    torch.save({"fc2.weight": torch.zeros(10, 128)}, path)
    manifest_path = weights_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"][path.name]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(AssetError, match="does not hold weights"):
        load_model(sigma=0.25, weights_dir=weights_copy)


def test_bad_arguments() -> None:
    with pytest.raises(InvalidParameterError, match="'resnet'.*digits_cnn"):
        load_model("resnet", sigma=0.25)
    with pytest.raises(InvalidParameterError, match=r"0\.3.*\[0\.25, 0\.5, 1\.0\]"):
        load_model("digits_cnn", sigma=0.3)
    for sigma in (0.0, -1.0, float("nan")):
        with pytest.raises(InvalidParameterError, match="sigma"):
            load_model("digits_cnn", sigma=sigma)
    with pytest.raises(InvalidParameterError, match="device"):
        load_model("digits_cnn", sigma=0.25, device="gpu0")
    with pytest.raises(InvalidParameterError):
        available_sigmas("resnet")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_rejected_before_work() -> None:
    with pytest.raises(InvalidParameterError, match="'cuda'"):
        load_model(sigma=0.25, device="cuda")
    with pytest.raises(InvalidParameterError, match="'cuda'"):
        train_model(sigma=0.25, device="cuda")


def test_training_is_deterministic_and_seed_dependent() -> None:
    kwargs = {"sigma": 0.5, "epochs": 1, "max_examples": 128, "batch_size": 32}
    before = torch.random.get_rng_state()
    a = train_model("digits_cnn", seed=0, **kwargs)
    assert torch.equal(torch.random.get_rng_state(), before)  # global RNG untouched
    b = train_model("digits_cnn", seed=0, **kwargs)
    c = train_model("digits_cnn", seed=1, **kwargs)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert not a.training and a.sigma == 0.5


def test_training_restores_thread_count() -> None:
    threads = torch.get_num_threads()
    train_model(sigma=0.25, epochs=1, max_examples=16, threads=1)
    assert torch.get_num_threads() == threads


def test_training_learns_something() -> None:
    model = train_model(sigma=0.25, epochs=3)
    assert noisy_accuracy(model, sigma=0.25) > 0.5


def test_training_rejects_bad_arguments() -> None:
    for kwargs in (
        {"sigma": 0.0},
        {"sigma": 0.5, "epochs": 0},
        {"sigma": 0.5, "seed": -1},
        {"sigma": 0.5, "batch_size": 0},
        {"sigma": 0.5, "lr": 0.0},
        {"sigma": 0.5, "max_examples": 0},
        {"sigma": 0.5, "threads": 0},
    ):
        with pytest.raises(InvalidParameterError):
            train_model(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="'mlp'"):
        train_model("mlp", sigma=0.5)


def test_save_then_load_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "w"
    model = train_model(sigma=0.5, epochs=1, max_examples=64)
    path = save_weights(model, "digits_cnn", 0.5, out, metadata={"note": "test"})
    assert path == out / "digits_cnn_sigma0.5.pt"
    assert available_sigmas(weights_dir=out) == (0.5,)
    save_weights(model, "digits_cnn", 0.12, out)
    assert available_sigmas(weights_dir=out) == (0.12, 0.5)
    entry = read_manifest(out)["files"]["digits_cnn_sigma0.5.pt"]
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["note"] == "test" and entry["sigma"] == 0.5
    loaded = load_model("digits_cnn", sigma=0.5, weights_dir=out)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    # re-saving replaces the entry and keeps the others
    model2 = train_model(sigma=0.5, epochs=1, max_examples=64, seed=7)
    save_weights(model2, "digits_cnn", 0.5, out)
    files = read_manifest(out)["files"]
    assert sorted(files) == ["digits_cnn_sigma0.12.pt", "digits_cnn_sigma0.5.pt"]
    assert "note" not in files["digits_cnn_sigma0.5.pt"]
    reloaded = load_model("digits_cnn", sigma=0.5, weights_dir=out)
    assert torch.equal(reloaded.state_dict()["fc2.weight"], model2.state_dict()["fc2.weight"])
    assert not list(out.glob(".*tmp*"))


def test_save_rejects_wrong_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="digits_cnn"):
        save_weights(torch.nn.Linear(64, 10), "digits_cnn", 0.5, tmp_path)
    assert not (tmp_path / "manifest.json").exists()

"""The full Fashion-MNIST, read from the Debian package files (dataset-fashion-mnist).

These tests need the real files: install them with `bash scripts/install_data.sh` (CI
does, in .ci/run). They are not skipped when the files are missing.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import smoothcert.data
from smoothcert.data import (
    ImageDataset,
    dataset_kind,
    dataset_splits,
    describe_dataset,
    list_datasets,
    load_dataset,
)
from smoothcert.data import datasets as registry
from smoothcert.data import fashion_mnist as fm
from smoothcert.errors import AssetError
from smoothcert.runner import RunConfig, run_certification

INSTALL = "bash scripts/install_data.sh"


def _clear_caches() -> None:
    registry._REGISTRY["fashion_mnist"].loader.cache_clear()
    fm._read_directory.cache_clear()


@pytest.fixture(scope="module")
def splits() -> dict[str, ImageDataset]:
    out = {}
    for split in ("train", "calibration", "test"):
        ds = load_dataset("fashion_mnist", split)
        assert isinstance(ds, ImageDataset)
        out[split] = ds
    return out


@pytest.fixture(scope="module")
def data_dir() -> Path:
    return fm.fashion_mnist_dir()


@pytest.fixture
def isolated() -> Iterator[None]:
    """Clear the caches before and after a test that changes where the files are."""
    _clear_caches()
    yield
    _clear_caches()


def _raw_bytes(path: Path) -> bytes:
    with gzip.open(path, "rb") as fh:
        return fh.read()


def test_registry_entry_needs_no_files() -> None:
    assert "fashion_mnist" in list_datasets()
    assert dataset_kind("fashion_mnist") == "image"
    assert dataset_splits("fashion_mnist") == ("train", "calibration", "test")
    text = describe_dataset("fashion_mnist")
    for part in ("0-54,999", "55,000-59,999", "t10k", "MIT", INSTALL):
        assert part in text


def test_shapes_dtypes_range_and_read_only(splits: dict[str, ImageDataset]) -> None:
    sizes = {"train": 55_000, "calibration": 5_000, "test": 10_000}
    for split, ds in splits.items():
        n = sizes[split]
        assert (ds.name, ds.split, len(ds), ds.num_classes) == ("fashion_mnist", split, n, 10)
        assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == np.float32
        assert ds.labels.shape == (n,) and ds.labels.dtype == np.int64
        assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == 1.0
        assert set(np.unique(ds.labels).tolist()) == set(range(10))
        for array in (ds.images, ds.labels, ds.indices):
            assert not array.flags.writeable
            with pytest.raises(ValueError):
                array[0] = 0


def test_class_counts(splits: dict[str, ImageDataset]) -> None:
    train_file = np.concatenate([splits["train"].labels, splits["calibration"].labels])
    assert np.bincount(train_file, minlength=10).tolist() == [6_000] * 10
    assert np.bincount(splits["test"].labels, minlength=10).tolist() == [1_000] * 10


def test_indices_are_file_rows(splits: dict[str, ImageDataset]) -> None:
    np.testing.assert_array_equal(splits["train"].indices, np.arange(0, 55_000))
    np.testing.assert_array_equal(splits["calibration"].indices, np.arange(55_000, 60_000))
    np.testing.assert_array_equal(splits["test"].indices, 60_000 + np.arange(10_000))
    everything = np.concatenate([ds.indices for ds in splits.values()])
    assert len(np.unique(everything)) == 70_000


def test_values_match_the_raw_files(splits: dict[str, ImageDataset], data_dir: Path) -> None:
    test_labels = _raw_bytes(data_dir / "t10k-labels-idx1-ubyte.gz")
    assert splits["test"].labels[0] == test_labels[8]  # the first label byte
    assert splits["test"].labels.tolist() == list(test_labels[8:])
    train_images = _raw_bytes(data_dir / "train-images-idx3-ubyte.gz")
    train_labels = _raw_bytes(data_dir / "train-labels-idx1-ubyte.gz")
    for row, r, c in ((0, 14, 14), (123, 5, 20), (55_001, 27, 0), (59_999, 10, 9)):
        byte = train_images[16 + row * 784 + r * 28 + c]
        split, pos = ("train", row) if row < 55_000 else ("calibration", row - 55_000)
        assert splits[split].images[pos, 0, r, c] == np.float32(byte) / np.float32(255)
        assert splits[split].labels[pos] == train_labels[8 + row]
    test_images = _raw_bytes(data_dir / "t10k-images-idx3-ubyte.gz")
    raw = np.frombuffer(test_images, dtype=np.uint8, offset=16)[:784].reshape(28, 28)
    np.testing.assert_array_equal(splits["test"].images[0, 0] * 255, raw.astype(np.float32))


def test_repeated_loads_are_cached(splits: dict[str, ImageDataset]) -> None:
    assert load_dataset("fashion_mnist", "test") is load_dataset("fashion_mnist", "test")


def test_lookup_order_env_var_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_dir: Path, isolated: None
) -> None:
    copy = tmp_path / "fashion-mnist"
    copy.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (copy / name).symlink_to(data_dir / name)
    # a recognisable test file: every pixel 51 (0.2), every label 3
    header = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (10_000, 28, 28))
    with gzip.open(copy / "t10k-images-idx3-ubyte.gz", "wb", compresslevel=1) as fh:
        fh.write(header + bytes([51]) * (10_000 * 784))
    with gzip.open(copy / "t10k-labels-idx1-ubyte.gz", "wb", compresslevel=1) as fh:
        fh.write((2049).to_bytes(4, "big") + (10_000).to_bytes(4, "big") + bytes([3]) * 10_000)
    monkeypatch.setenv("SMOOTHCERT_DATA_DIR", str(tmp_path))
    candidates = fm.fashion_mnist_candidate_dirs()
    assert candidates[0] == copy
    assert candidates[1:] == [
        Path(fm.__file__).resolve().parents[3] / ".data/usr/share/datasets/fashion-mnist",
        Path("/usr/share/datasets/fashion-mnist"),
    ]
    assert fm.fashion_mnist_dir() == copy
    ds = load_dataset("fashion_mnist", "test")
    assert set(ds.labels.tolist()) == {3}
    assert np.all(ds.images == np.float32(51) / np.float32(255))
    # an env var whose fashion-mnist/ lacks a file falls through to the next place
    (copy / "t10k-labels-idx1-ubyte.gz").unlink()
    assert fm.fashion_mnist_dir() != copy


def test_missing_data_names_places_and_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, isolated: None
) -> None:
    env_root, local, system = (tmp_path / name for name in ("env", "local", "system"))
    for directory in (env_root, local, system):
        directory.mkdir()
    monkeypatch.setenv("SMOOTHCERT_DATA_DIR", str(env_root))
    monkeypatch.setattr(fm, "_FALLBACK_DIRS", (local, system))
    with pytest.raises(AssetError) as info:
        load_dataset("fashion_mnist", "test")
    message = str(info.value)
    assert INSTALL in message
    for directory in (env_root / "fashion-mnist", local, system):
        assert str(directory) in message
    # the registry works without the files
    assert "fashion_mnist" in list_datasets()
    assert dataset_splits("fashion_mnist") == ("train", "calibration", "test")
    assert dataset_kind("fashion_mnist") == "image"
    assert INSTALL in describe_dataset("fashion_mnist")
    assert smoothcert.data.list_datasets() == ["digits", "fair", "fashion_mnist", "listings"]


def test_corrupt_file_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data_dir: Path, isolated: None
) -> None:
    copy = tmp_path / "fashion-mnist"
    copy.mkdir()
    for name in fm.FASHION_MNIST_FILES:
        (copy / name).symlink_to(data_dir / name)
    bad = copy / "t10k-labels-idx1-ubyte.gz"
    bad.unlink()
    with gzip.open(bad, "wb") as fh:  # an images magic number in a labels file
        fh.write((2051).to_bytes(4, "big") + (10_000).to_bytes(4, "big") + bytes(10_000))
    monkeypatch.setenv("SMOOTHCERT_DATA_DIR", str(tmp_path))
    with pytest.raises(AssetError, match="magic number 2051") as info:
        load_dataset("fashion_mnist", "test")
    assert str(bad) in str(info.value) and INSTALL in str(info.value)
    # not gzip at all
    bad.write_bytes(b"not a gzip file")
    with pytest.raises(AssetError, match="gzip") as info:
        fm.read_idx(bad, magic=2049)
    assert str(bad) in str(info.value)
    # a truncated payload
    with gzip.open(bad, "wb") as fh:
        fh.write((2049).to_bytes(4, "big") + (10_000).to_bytes(4, "big") + bytes(10))
    with pytest.raises(AssetError, match="corrupt") as info:
        fm.read_idx(bad, magic=2049)
    assert str(bad) in str(info.value)


def test_runner_certifies_fashion_mnist(tmp_path: Path, splits: dict[str, ImageDataset]) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    config = RunConfig(
        method="cohen",
        params={"sigma": 0.5, "n0": 10, "n": 50, "alpha": 0.01},
        model="toy",
        dataset="fashion_mnist",
        split="test",
        num_examples=2,
        batch_size=50,
    )
    path = run_certification(config, tmp_path / "r.jsonl", model=model)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    examples = [r for r in records if r["type"] == "record"]
    assert [r["index"] for r in examples] == [60_000, 60_001]
    assert [r["label"] for r in examples] == splits["test"].labels[:2].tolist()
    assert all(r["method"] == "cohen" and r["radius"] >= 0.0 for r in examples)


def test_install_script_is_valid_bash() -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "install_data.sh"
    assert script.is_file()
    assert shutil.which("bash") is not None
    subprocess.run(["bash", "-n", str(script)], check=True)

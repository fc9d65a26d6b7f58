"""The bundled digits dataset: real data, fixed stratified split, stable indices."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.datasets import load_digits

from smoothcert.data import (
    ImageDataset,
    dataset_splits,
    describe_dataset,
    list_datasets,
    load_dataset,
)
from smoothcert.errors import InvalidParameterError


@pytest.fixture(scope="module")
def raw() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    return np.asarray(bunch.data), np.asarray(bunch.target)


@pytest.mark.parametrize(("split", "size"), [("train", 1437), ("test", 360)])
def test_shapes_dtypes_and_range(split: str, size: int) -> None:
    ds = load_dataset("digits", split)
    assert isinstance(ds, ImageDataset)
    assert (ds.name, ds.split, ds.num_classes) == ("digits", split, 10)
    assert len(ds) == size
    assert ds.input_shape == (1, 8, 8)
    assert ds.images.shape == (size, 1, 8, 8) and ds.images.dtype == np.float32
    assert ds.labels.shape == (size,) and ds.labels.dtype == np.int64
    assert ds.indices.shape == (size,) and ds.indices.dtype == np.int64
    assert ds.images.min() == 0.0 and ds.images.max() == 1.0
    assert set(np.unique(ds.labels).tolist()) == set(range(10))


def test_defaults_are_digits_test() -> None:
    ds = load_dataset()
    assert (ds.name, ds.split, len(ds)) == ("digits", "test", 360)


def test_indices_are_rows_of_load_digits(raw: tuple[np.ndarray, np.ndarray]) -> None:
    data, target = raw
    for split in ("train", "test"):
        ds = load_dataset("digits", split)
        assert np.all(np.diff(ds.indices) > 0)  # sorted and unique
        np.testing.assert_array_equal(ds.labels, target[ds.indices])
        expected = (data[ds.indices] / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
        np.testing.assert_array_equal(ds.images, expected)
        # pixels are multiples of 1/16
        np.testing.assert_array_equal(ds.images * 16, np.round(ds.images * 16))


def test_splits_are_disjoint_and_cover_everything() -> None:
    train = load_dataset("digits", "train").indices
    test = load_dataset("digits", "test").indices
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(1797))


def test_split_is_stratified(raw: tuple[np.ndarray, np.ndarray]) -> None:
    _, target = raw
    full = np.bincount(target, minlength=10) / target.size
    for split, size in (("train", 1437), ("test", 360)):
        counts = np.bincount(load_dataset("digits", split).labels, minlength=10)
        assert np.all(np.abs(counts - size * full) <= 1.0), (split, counts)


def test_split_is_fixed_across_runs_and_versions() -> None:
    # Regression guard: results stored by index must stay comparable. If this fails,
    # scikit-learn changed train_test_split and the documented split moved.
    ds = load_dataset("digits", "test")
    text = ",".join(str(i) for i in ds.indices.tolist())
    assert ds.indices[:5].tolist() == [21, 24, 28, 34, 35]
    assert hashlib.sha256(text.encode()).hexdigest() == (
        "2b34a89618d0d4df0f89a3fc8c6dfe92c5c4afc5d09419ddf7bf197d7b652dd6"
    )


def test_loading_is_deterministic_and_cached() -> None:
    a = load_dataset("digits", "test")
    b = load_dataset("digits", "test")
    assert a is b
    np.testing.assert_array_equal(a.images, b.images)


def test_arrays_are_read_only_and_dataclass_frozen() -> None:
    ds = load_dataset("digits", "test")
    for arr in (ds.images, ds.labels, ds.indices):
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr.flat[0] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]


def test_subset_keeps_stable_indices() -> None:
    ds = load_dataset("digits", "test")
    every = ds.subset(slice(None, None, 20))
    assert len(every) == 18
    np.testing.assert_array_equal(every.indices, ds.indices[::20])
    picked = ds.subset([3, 1])
    np.testing.assert_array_equal(picked.labels, ds.labels[[3, 1]])
    np.testing.assert_array_equal(picked.images, ds.images[[3, 1]])
    assert len(ds.subset([])) == 0
    with pytest.raises(InvalidParameterError, match="360"):
        ds.subset([360])
    with pytest.raises(InvalidParameterError):
        ds.subset([0.5])  # type: ignore[list-item]


def test_registry_listing() -> None:
    assert list_datasets() == ["digits", "fair", "fashion_mnist", "listings"]
    assert dataset_splits("digits") == ("train", "test")
    assert "load_digits" in describe_dataset("digits")


@pytest.mark.parametrize("name", ["mnist", "", None, 3])
def test_bad_name_names_value_and_choices(name: object) -> None:
    with pytest.raises(InvalidParameterError) as info:
        load_dataset(name, "test")  # type: ignore[arg-type]
    assert repr(name) in str(info.value)
    assert "'digits'" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidParameterError):
        dataset_splits(name)  # type: ignore[arg-type]


@pytest.mark.parametrize("split", ["val", "Test", "", None])
def test_bad_split_names_value_and_choices(split: object) -> None:
    with pytest.raises(InvalidParameterError) as info:
        load_dataset("digits", split)  # type: ignore[arg-type]
    message = str(info.value)
    assert repr(split) in message
    assert "'train'" in message and "'test'" in message


def test_constructor_validates_arrays() -> None:
    good = {
        "name": "x",
        "split": "s",
        "images": np.zeros((2, 1, 2, 2), np.float32),
        "labels": np.zeros(2, np.int64),
        "num_classes": 3,
        "indices": np.arange(2, dtype=np.int64),
    }
    ImageDataset(**good)
    for key, bad in (
        ("images", np.zeros((2, 4), np.float32)),
        ("images", np.zeros((2, 1, 2, 2), np.float64)),
        ("labels", np.zeros(3, np.int64)),
        ("labels", np.array([0, 3], np.int64)),
        ("indices", np.arange(2, dtype=np.int32)),
        ("num_classes", 0),
    ):
        with pytest.raises(InvalidParameterError):
            ImageDataset(**{**good, key: bad})


def test_data_layer_does_not_import_torch() -> None:
    code = textwrap.dedent(
        """
        import importlib.abc, sys

        class BlockTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, fullname, path=None, target=None):
                if fullname == "torch" or fullname.startswith("torch."):
                    raise ImportError("torch blocked")
                return None

        sys.meta_path.insert(0, BlockTorch())
        from smoothcert.data import load_dataset
        ds = load_dataset("digits", "train")
        assert len(ds) == 1437
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"

"""The bundled ``fair`` table: shapes, splits, checksum, and equality with a rebuild."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from smoothcert.data import TabularDataset, dataset_kind, list_datasets, load_dataset
from smoothcert.data.listings import default_assets_dir
from smoothcert.data.tabular import FAIR_ASSET, fair_info, load_fair
from smoothcert.errors import AssetError, InvalidParameterError

ROOT = Path(__file__).resolve().parents[2]


def test_registered_as_tabular() -> None:
    assert "fair" in list_datasets() and dataset_kind("fair") == "tabular"


def test_shapes_dtypes_and_ranges() -> None:
    sizes = {"train": 4366, "calibration": 1000, "test": 1000}
    for split, size in sizes.items():
        ds = load_dataset("fair", split)
        assert isinstance(ds, TabularDataset) and len(ds) == size
        assert ds.tokens.shape == (size, 5) and ds.tokens.dtype == np.int64
        assert ds.images.shape == (size, 3) and ds.images.dtype == np.float32
        assert ds.field_vocab_sizes == (5, 4, 6, 6, 6)
        assert ds.continuous_names == ("age", "yrs_married", "children")
        for f, v in enumerate(ds.field_vocab_sizes):
            assert set(np.unique(ds.tokens[:, f])) == set(range(v))  # every id occurs
        assert set(np.unique(ds.labels)) == {0, 1}
        assert np.all(np.diff(ds.indices) > 0)
        assert not ds.tokens.flags.writeable and not ds.images.flags.writeable


def test_continuous_part_is_in_train_standard_deviations() -> None:
    train = load_dataset("fair", "train").images.astype(np.float64)
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(train.std(axis=0), 1.0, atol=1e-6)


def test_splits_are_disjoint_and_cover_every_row() -> None:
    idx = [load_dataset("fair", s).indices for s in ("train", "calibration", "test")]
    allidx = np.concatenate(idx)
    assert len(set(allidx.tolist())) == 6366
    assert set(allidx.tolist()) == set(range(6366))


def test_sha256_matches_manifest_and_tampering_is_detected(tmp_path: Path) -> None:
    blob = (default_assets_dir() / FAIR_ASSET).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == fair_info()["sha256"]
    shutil.copy(default_assets_dir() / "manifest.json", tmp_path / "manifest.json")
    (tmp_path / FAIR_ASSET).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(AssetError, match="fails its checksum"):
        load_fair("test", assets_dir=tmp_path)


def test_bad_split_and_bad_ids_are_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="split = 'val'"):
        load_fair("val")
    ds = load_fair("test").subset([0, 1])
    tokens = ds.tokens.copy()
    tokens[1, 1] = 4  # religious has V = 4: ids 0..3
    with pytest.raises(InvalidParameterError, match="category id 4 of field 1"):
        TabularDataset(
            name="x",
            split="y",
            tokens=tokens,
            images=ds.images,
            labels=ds.labels,
            indices=ds.indices,
            num_classes=2,
            field_vocab_sizes=ds.field_vocab_sizes,
            field_names=ds.field_names,
            continuous_names=ds.continuous_names,
        )


def test_asset_equals_a_rebuild_from_statsmodels() -> None:
    pytest.importorskip("statsmodels")
    spec = importlib.util.spec_from_file_location(
        "build_tabular_data", ROOT / "scripts" / "build_tabular_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rebuilt = module.build_arrays()
    rebuilt.pop("statsmodels_version")
    with np.load(default_assets_dir() / FAIR_ASSET, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(rebuilt)
        for key, value in rebuilt.items():
            np.testing.assert_array_equal(npz[key], value, err_msg=key)

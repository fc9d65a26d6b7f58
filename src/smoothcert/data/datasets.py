"""Bundled datasets with a stable index per example (numpy only, no torch).

Datasets are looked up by name in a small registry. Every example carries a stable
index (its row in the original source), so results from different runs, splits or
shards can be matched example by example. Nothing is ever downloaded: every dataset
here installs with a package.

Built-in datasets:

* ``"digits"``: scikit-learn's :func:`sklearn.datasets.load_digits` (1,797 grey-scale
  8x8 images of the digits 0-9, UCI optical recognition of handwritten digits; the data
  file ships inside scikit-learn). Pixel values 0..16 are divided by 16, so images are
  float32 in [0, 1] with shape ``(N, 1, 8, 8)``; a sigma for Gaussian noise on this
  dataset is therefore in units of [0, 1] pixels. The split is fixed:
  ``sklearn.model_selection.train_test_split(rows, test_size=360, stratify=labels,
  random_state=0)``, giving 1,437 training and 360 test examples with the class
  proportions of the full set. Within a split, examples are sorted by their index
  (the row in ``load_digits``).
* ``"fashion_mnist"``: the full Fashion-MNIST (70,000 grey-scale 28x28 product
  photos, 10 classes, MIT licence), read at run time from the files of the Debian
  package ``dataset-fashion-mnist`` (install: ``bash scripts/install_data.sh``).
  Pixels ``uint8 / 255``, float32 ``(N, 1, 28, 28)``. Splits: ``"train"`` = rows
  0-54,999 of the training file, ``"calibration"`` = its rows 55,000-59,999,
  ``"test"`` = the 10,000 rows of the test file; the stable index is the row in the
  training file, or 60,000 + the row in the test file. See
  :mod:`smoothcert.data.fashion_mnist`.
* ``"fair"``: a mixed categorical + continuous table (statsmodels' Fair affairs
  survey), read from a sha256-checked asset; see :mod:`smoothcert.data.tabular`.
* ``"listings"``: listing moderation, (description tokens, product image) pairs
  labelled match (0) / mismatch (1); Fashion-MNIST images and WordNet words tokenized
  with the all-MiniLM-L6-v2 WordPiece vocabulary, read from a sha256-checked asset
  inside the package. Splits ``"train"``, ``"calibration"``, ``"test"``. See
  :mod:`smoothcert.data.listings`.

Every dataset has a kind (:func:`dataset_kind`): ``"image"`` datasets are
:class:`ImageDataset` (images only, for Gaussian certificates), ``"text_image"``
datasets are :class:`~smoothcert.data.listings.TextImageDataset` (tokens and images,
for token and hybrid certificates), ``"tabular"`` datasets are
:class:`~smoothcert.data.tabular.TabularDataset` (categorical fields as token ids and a
continuous vector, for the ``hybrid-fields`` certificate).

Example:
    >>> from smoothcert.data import load_dataset
    >>> test = load_dataset("digits", split="test")
    >>> len(test), test.input_shape, test.num_classes
    (360, (1, 8, 8), 10)
    >>> float(test.images.min()), float(test.images.max())
    (0.0, 1.0)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert._validation import check_int
from smoothcert.data.fashion_mnist import (
    FASHION_MNIST_INSTALL_COMMAND,
    FASHION_MNIST_SPLITS,
    fashion_mnist_split,
)
from smoothcert.data.listings import LISTINGS_SPLITS, TextImageDataset, load_listings
from smoothcert.data.tabular import FAIR_SPLITS, TabularDataset, load_fair
from smoothcert.errors import InvalidParameterError

__all__ = [
    "DATASET_KINDS",
    "ImageDataset",
    "dataset_kind",
    "dataset_splits",
    "describe_dataset",
    "list_datasets",
    "load_dataset",
]

DATASET_KINDS = ("image", "text_image", "tabular")
"""Kinds of registered datasets: what one example holds."""


def _readonly(array: NDArray[Any]) -> NDArray[Any]:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A labelled image dataset split, held in memory as numpy arrays.

    The arrays are read-only: a dataset is shared between callers (it is cached), so
    copy an array before changing it.

    Attributes:
        name: dataset name, e.g. ``"digits"``.
        split: split name, e.g. ``"test"``.
        images: float32 array of shape ``(N, C, H, W)``, pixels in [0, 1].
        labels: int64 array of shape ``(N,)``, values in ``[0, num_classes)``.
        num_classes: number of classes.
        indices: int64 array of shape ``(N,)``; a stable index per example (for
            ``"digits"``, the row in scikit-learn's ``load_digits``). Unique across
            all splits of a dataset.

    Example:
        >>> from smoothcert.data import load_dataset
        >>> ds = load_dataset("digits", split="train")
        >>> ds.images.shape, ds.images.dtype, ds.labels.dtype
        ((1437, 1, 8, 8), dtype('float32'), dtype('int64'))
        >>> small = ds.subset([0, 1, 2])
        >>> small.indices.tolist() == ds.indices[:3].tolist()
        True
    """

    name: str
    split: str
    images: NDArray[np.float32]
    labels: NDArray[np.int64]
    num_classes: int
    indices: NDArray[np.int64]

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        indices = np.asarray(self.indices)
        if images.ndim != 4 or images.dtype != np.float32:
            raise InvalidParameterError(
                f"images of shape {images.shape} and dtype {images.dtype} are invalid; "
                "valid: a float32 array of shape (N, C, H, W)"
            )
        n = images.shape[0]
        for arr, field in ((labels, "labels"), (indices, "indices")):
            if arr.shape != (n,) or arr.dtype != np.int64:
                raise InvalidParameterError(
                    f"{field} of shape {arr.shape} and dtype {arr.dtype} is invalid; "
                    f"valid: an int64 array of shape ({n},)"
                )
        num_classes = check_int(self.num_classes, name="num_classes", minimum=1)
        if n and (labels.min() < 0 or labels.max() >= num_classes):
            raise InvalidParameterError(
                f"labels in [{labels.min()}, {labels.max()}] are invalid; "
                f"valid range: 0 <= label < num_classes = {num_classes}"
            )
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "indices", indices)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return (int(c), int(h), int(w))

    def __len__(self) -> int:
        """Number of examples in the split."""
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        """Short summary (the arrays are not printed)."""
        return (
            f"ImageDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )

    def subset(self, rows: Sequence[int] | NDArray[np.integer[Any]] | slice) -> ImageDataset:
        """Return the examples at the given row positions (not stable indices).

        Args:
            rows: row positions in this split (a sequence of ints, an integer array or
                a slice), e.g. ``slice(None, None, 20)`` for every 20th example.

        Returns:
            A new read-only :class:`ImageDataset` with the same name, split and
            ``num_classes``; the stable ``indices`` of the selected rows are kept.

        Raises:
            InvalidParameterError: if a row position is out of range or not an integer.
        """
        if isinstance(rows, slice):
            sel: NDArray[np.int64] = np.arange(len(self), dtype=np.int64)[rows]
        else:
            arr = np.asarray(rows)
            if arr.size == 0:
                arr = arr.astype(np.int64)
            if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                raise InvalidParameterError(
                    f"rows = {rows!r} is invalid; valid: a 1-D sequence of integer row "
                    f"positions in [0, {len(self)})"
                )
            bad = (arr < 0) | (arr >= len(self))
            if np.any(bad):
                raise InvalidParameterError(
                    f"rows contains {int(arr[bad][0])}, which is invalid; valid range: "
                    f"0 <= row < {len(self)}"
                )
            sel = arr.astype(np.int64)
        return ImageDataset(
            name=self.name,
            split=self.split,
            images=_readonly(self.images[sel]),
            labels=_readonly(self.labels[sel]),
            num_classes=self.num_classes,
            indices=_readonly(self.indices[sel]),
        )


AnyDataset = ImageDataset | TextImageDataset | TabularDataset
"""What :func:`load_dataset` returns: an image dataset or a text+image dataset."""

_Loader = Callable[[str], Any]


@dataclass(frozen=True)
class _DatasetSpec:
    """Registry entry: how to build each split of a dataset, and what it holds."""

    name: str
    splits: tuple[str, ...]
    description: str
    loader: _Loader
    kind: str = "image"


_REGISTRY: dict[str, _DatasetSpec] = {}


def _register(
    name: str, *, splits: tuple[str, ...], description: str, kind: str = "image"
) -> Callable[[_Loader], _Loader]:
    """Register ``loader(split) -> dataset`` under ``name`` (cached per split)."""
    if kind not in DATASET_KINDS:
        raise InvalidParameterError(f"kind = {kind!r} is invalid; valid: {DATASET_KINDS}")

    def decorate(loader: _Loader) -> _Loader:
        cached = functools.lru_cache(maxsize=None)(loader)
        _REGISTRY[name] = _DatasetSpec(name, splits, description, cached, kind)
        return loader

    return decorate


# --------------------------------------------------------------------------- digits

DIGITS_TEST_SIZE = 360
"""Number of test examples in the fixed digits split."""

DIGITS_SPLIT_SEED = 0
"""``random_state`` of the fixed stratified digits split."""


@functools.lru_cache(maxsize=1)
def _digits_split() -> tuple[NDArray[np.float32], NDArray[np.int64], dict[str, NDArray[np.int64]]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    data = np.asarray(bunch.data)
    images = (data.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32)
    labels = np.asarray(bunch.target, dtype=np.int64)
    rows = np.arange(labels.shape[0], dtype=np.int64)
    train_rows, test_rows = train_test_split(
        rows, test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=DIGITS_SPLIT_SEED
    )
    splits = {"train": np.sort(train_rows), "test": np.sort(test_rows)}
    return _readonly(images), _readonly(labels), splits


@_register(
    "digits",
    splits=("train", "test"),
    description=(
        "scikit-learn load_digits: 1,797 grey-scale 8x8 digits, pixels /16 into [0, 1]; "
        "fixed stratified split (test_size=360, random_state=0): 1,437 train / 360 test"
    ),
)
def _load_digits(split: str) -> ImageDataset:
    images, labels, splits = _digits_split()
    rows = splits[split]
    return ImageDataset(
        name="digits",
        split=split,
        images=_readonly(images[rows]),
        labels=_readonly(labels[rows]),
        num_classes=10,
        indices=_readonly(rows.copy()),
    )


# --------------------------------------------------------------------------- fashion_mnist


@_register(
    "fashion_mnist",
    splits=FASHION_MNIST_SPLITS,
    description=(
        "Fashion-MNIST (MIT; Debian dataset-fashion-mnist, read at run time): 70,000 grey-scale "
        "28x28 product photos, 10 classes, pixels /255 into [0, 1]; train = training-file rows "
        "0-54,999 (55,000), calibration = rows 55,000-59,999 (5,000), test = t10k rows 0-9,999 "
        "(10,000, index 60,000 + row); install with `" + FASHION_MNIST_INSTALL_COMMAND + "`"
    ),
)
def _load_fashion_mnist(split: str) -> ImageDataset:
    images, labels, indices = fashion_mnist_split(split)
    return ImageDataset(
        name="fashion_mnist",
        split=split,
        images=images,
        labels=labels,
        num_classes=10,
        indices=indices,
    )


# --------------------------------------------------------------------------- listings


@_register(
    "listings",
    splits=LISTINGS_SPLITS,
    kind="text_image",
    description=(
        "listing moderation: (description, product image) pairs, label 1 = mismatch; "
        "Fashion-MNIST images 2x2-pooled to 14x14 in [0, 1], WordNet words as 30,522-token "
        "WordPiece ids (length 24, [PAD]=0); 6,000 train / 1,200 calibration / 1,200 test"
    ),
)
def _load_listings(split: str) -> TextImageDataset:
    return load_listings(split)


# --------------------------------------------------------------------------- fair (tabular)


@_register(
    "fair",
    splits=FAIR_SPLITS,
    kind="tabular",
    description=(
        "Fair (1978) affairs survey (statsmodels, 6,366 rows), label affairs > 0: 5 categorical "
        "fields as ids (V = 5, 4, 6, 6, 6) + 3 continuous columns in train standard deviations; "
        "4,366 train / 1,000 calibration / 1,000 test"
    ),
)
def _load_fair(split: str) -> TabularDataset:
    return load_fair(split)


# --------------------------------------------------------------------------- public API


def list_datasets() -> list[str]:
    """Return the names of the registered datasets, sorted.

    Example:
        >>> from smoothcert.data import list_datasets
        >>> list_datasets()
        ['digits', 'fair', 'fashion_mnist', 'listings']
    """
    return sorted(_REGISTRY)


def dataset_splits(name: str) -> tuple[str, ...]:
    """Return the split names of a registered dataset.

    Args:
        name: a name from :func:`list_datasets`.

    Raises:
        InvalidParameterError: if ``name`` is not a registered dataset.

    Example:
        >>> from smoothcert.data import dataset_splits
        >>> dataset_splits("digits")
        ('train', 'test')
    """
    return _spec(name).splits


def dataset_kind(name: str) -> str:
    """Return what one example of a registered dataset holds.

    ``"image"``: an image only (:class:`ImageDataset`; Gaussian certificates).
    ``"text_image"``: a token sequence and an image
    (:class:`~smoothcert.data.listings.TextImageDataset`; token and hybrid
    certificates). A runner uses it to check that a dataset fits a method before
    loading anything.

    Args:
        name: a name from :func:`list_datasets`.

    Returns:
        One of :data:`DATASET_KINDS`.

    Raises:
        InvalidParameterError: if ``name`` is not a registered dataset.

    Example:
        >>> from smoothcert.data import dataset_kind
        >>> dataset_kind("digits"), dataset_kind("listings")
        ('image', 'text_image')
    """
    return _spec(name).kind


def describe_dataset(name: str) -> str:
    """Return a one-line description of a registered dataset (source, scaling, split).

    Args:
        name: a name from :func:`list_datasets`.

    Raises:
        InvalidParameterError: if ``name`` is not a registered dataset.
    """
    return _spec(name).description


def _spec(name: Any) -> _DatasetSpec:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise InvalidParameterError(
            f"dataset name = {name!r} is invalid; valid choices: {sorted(_REGISTRY)}"
        )
    return _REGISTRY[name]


def load_dataset(name: str = "digits", split: str = "test") -> AnyDataset:
    """Load a bundled dataset split (from installed packages, never downloaded).

    Results are cached per (name, split) and the returned arrays are read-only.

    Args:
        name: dataset name; see :func:`list_datasets`. ``"digits"`` is scikit-learn's
            ``load_digits`` with pixels scaled to [0, 1] and a fixed stratified split
            (``train_test_split(test_size=360, stratify=labels, random_state=0)``);
            ``"fashion_mnist"`` is the full Fashion-MNIST read from the Debian package
            files; ``"listings"`` is the listing moderation task (text + image).
        split: split name, ``"train"`` or ``"test"`` for ``"digits"``; ``"train"``,
            ``"calibration"`` or ``"test"`` for ``"fashion_mnist"`` and ``"listings"``.

    Returns:
        An :class:`ImageDataset` for ``"image"`` datasets, a
        :class:`~smoothcert.data.listings.TextImageDataset` for ``"text_image"`` ones
        (see :func:`dataset_kind`); examples are in increasing order of their stable
        ``indices``.

    Raises:
        InvalidParameterError: if ``name`` or ``split`` is unknown; the message names
            the bad value and the valid choices.
        AssetError: if a bundled asset is missing or fails its sha256 check, or if the
            Fashion-MNIST files are missing or corrupt (the message names the places
            looked in and the install command, ``bash scripts/install_data.sh``).

    Example:
        >>> from smoothcert.data import load_dataset
        >>> ds = load_dataset("digits", "test")
        >>> ds.labels[:5].tolist(), ds.indices[:5].tolist()
        ([1, 4, 8, 6, 5], [21, 24, 28, 34, 35])
        >>> load_dataset("digits", "val")
        Traceback (most recent call last):
        ...
        smoothcert.errors.InvalidParameterError: split = 'val' is invalid for dataset 'digits'; valid choices: ['train', 'test']
    """  # noqa: E501
    spec = _spec(name)
    if not isinstance(split, str) or split not in spec.splits:
        raise InvalidParameterError(
            f"split = {split!r} is invalid for dataset {name!r}; valid choices: {list(spec.splits)}"
        )
    dataset: AnyDataset = spec.loader(split)
    return dataset

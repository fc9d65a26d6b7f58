"""Fashion-MNIST read at run time from the Debian package files (numpy only, no torch).

Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017; MIT licence) holds 70,000 grey-scale 28x28
photos of fashion products in 10 classes: T-shirt/top, Trouser, Pullover, Dress, Coat,
Sandal, Shirt, Sneaker, Bag, Ankle boot. Nothing is downloaded and nothing ships inside
smoothcert: the four gzipped IDX files of the Debian package ``dataset-fashion-mnist``
are read where the package (or ``bash scripts/install_data.sh``, without root) put
them; see :func:`fashion_mnist_dir` for the places looked in, in order.

Scaling: pixels are ``uint8 / 255``, float32 in [0, 1], shape ``(N, 1, 28, 28)``; a
Gaussian sigma on this dataset is in units of [0, 1] pixels of the 28x28 image.

Splits (fixed, no shuffling; within a split, examples are in file order):

* ``"train"``: rows 0-54,999 of the training file (``train-*-ubyte.gz``); stable
  index = row.
* ``"calibration"``: rows 55,000-59,999 of the training file; stable index = row.
* ``"test"``: rows 0-9,999 of the test file (``t10k-*-ubyte.gz``); stable index =
  60,000 + row, so indices are unique across the splits (60,000-69,999).

The decoded files are cached in memory per process (:func:`read_fashion_mnist`).
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert.errors import AssetError

__all__ = [
    "FASHION_MNIST_CLASS_NAMES",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_INSTALL_COMMAND",
    "FASHION_MNIST_SPLITS",
    "TEST_INDEX_OFFSET",
    "fashion_mnist_candidate_dirs",
    "fashion_mnist_dir",
    "fashion_mnist_split",
    "read_fashion_mnist",
    "read_idx",
]

FASHION_MNIST_SPLITS = ("train", "calibration", "test")
"""Split names of the ``"fashion_mnist"`` dataset."""

FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Meaning of labels 0-9."""

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
"""The four files of Debian ``dataset-fashion-mnist`` that are read."""

FASHION_MNIST_INSTALL_COMMAND = "bash scripts/install_data.sh"
"""The one command (run in the repository root) that installs the files."""

DATA_DIR_ENV = "SMOOTHCERT_DATA_DIR"
"""Environment variable naming a data root; its ``fashion-mnist/`` is looked in first."""

TRAIN_SIZE, TEST_SIZE = 60_000, 10_000
"""Rows in the training and test files."""

CALIBRATION_START = 55_000
"""First training-file row of the calibration split (the last 5,000 rows)."""

TEST_INDEX_OFFSET = TRAIN_SIZE
"""Stable index of a test example = this + its row in the test file."""

_REPO_ROOT = Path(__file__).resolve().parents[3]

_FALLBACK_DIRS: tuple[Path, ...] = (
    _REPO_ROOT / ".data" / "usr" / "share" / "datasets" / "fashion-mnist",
    Path("/usr/share/datasets/fashion-mnist"),
)
"""Where to look after ``$SMOOTHCERT_DATA_DIR``: the no-root install, then the package."""

_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049
_Raw = tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8], NDArray[np.uint8]]


def fashion_mnist_candidate_dirs() -> list[Path]:
    """Return the directories looked in for the Fashion-MNIST files, first match wins.

    The order is:

    1. ``$SMOOTHCERT_DATA_DIR/fashion-mnist/`` (only if the variable is set and non-empty);
    2. ``<repository root>/.data/usr/share/datasets/fashion-mnist/``, where
       ``bash scripts/install_data.sh`` unpacks the package without root (the
       repository root is the checkout smoothcert is installed from, editable);
    3. ``/usr/share/datasets/fashion-mnist/``, where ``apt-get install
       dataset-fashion-mnist`` puts the files.

    Nothing is read here; :func:`fashion_mnist_dir` checks the files.
    """
    dirs: list[Path] = []
    root = os.environ.get(DATA_DIR_ENV, "")
    if root:
        dirs.append(Path(root) / "fashion-mnist")
    dirs.extend(_FALLBACK_DIRS)
    return dirs


def fashion_mnist_dir() -> Path:
    """Return the first directory of :func:`fashion_mnist_candidate_dirs` with all four files.

    Raises:
        AssetError: if no directory holds all of :data:`FASHION_MNIST_FILES`; the
            message names every directory looked in and the install command.
    """
    candidates = fashion_mnist_candidate_dirs()
    for directory in candidates:
        if all((directory / name).is_file() for name in FASHION_MNIST_FILES):
            return directory
    looked = ", ".join(str(d) for d in candidates)
    raise AssetError(
        "the Fashion-MNIST files (Debian package dataset-fashion-mnist) are missing: "
        f"no directory holds all of {', '.join(FASHION_MNIST_FILES)}; looked in, in order: "
        f"{looked}. Install them with `{FASHION_MNIST_INSTALL_COMMAND}` (run in the "
        f"smoothcert repository root; no root needed), or set {DATA_DIR_ENV} to a "
        "directory whose fashion-mnist/ holds the four files"
    )


def read_idx(path: str | os.PathLike[str], *, magic: int) -> NDArray[np.uint8]:
    """Read a gzipped IDX file of unsigned bytes, checking its header.

    Args:
        path: the ``.gz`` file.
        magic: the expected magic number, 2051 for images (3 dimensions) or 2049 for
            labels (1 dimension); its low byte is the number of dimensions.

    Returns:
        A uint8 array of the shape stored in the header.

    Raises:
        AssetError: naming the file, if it cannot be read or decompressed, its magic
            number is not ``magic``, or its size disagrees with its header.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as fh:
            blob = fh.read()
    except (OSError, EOFError, zlib.error) as err:
        raise AssetError(
            f"{path} is not a readable gzip file ({err}); reinstall it with "
            f"`{FASHION_MNIST_INSTALL_COMMAND}`"
        ) from err
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    found = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else None
    if found != magic:
        raise AssetError(
            f"{path} is corrupt: IDX magic number {found} (valid: {magic}); reinstall it "
            f"with `{FASHION_MNIST_INSTALL_COMMAND}`"
        )
    shape = tuple(int.from_bytes(blob[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(blob) != header + int(np.prod(shape)):
        raise AssetError(
            f"{path} is corrupt: the header says shape {shape} ({int(np.prod(shape))} bytes "
            f"of data) but it holds {len(blob) - header}; reinstall it with "
            f"`{FASHION_MNIST_INSTALL_COMMAND}`"
        )
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape)


def _read_pair(
    directory: Path, prefix: str, size: int
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    images_path = directory / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = directory / f"{prefix}-labels-idx1-ubyte.gz"
    images = read_idx(images_path, magic=_IMAGES_MAGIC)
    labels = read_idx(labels_path, magic=_LABELS_MAGIC)
    if images.shape != (size, 28, 28):
        raise AssetError(
            f"{images_path} holds images of shape {images.shape}; valid: ({size}, 28, 28)"
        )
    if labels.shape != (size,):
        raise AssetError(f"{labels_path} holds labels of shape {labels.shape}; valid: ({size},)")
    if labels.max() >= len(FASHION_MNIST_CLASS_NAMES):
        raise AssetError(f"{labels_path} holds label {labels.max()}; valid: 0-9")
    return images, labels


def read_fashion_mnist() -> _Raw:
    """Decode the four files found by :func:`fashion_mnist_dir`.

    The decoded arrays are cached in memory per process and per directory, so repeated
    calls only look the files up again (a few ``stat`` calls).

    Returns:
        Read-only uint8 arrays ``(train_images (60000, 28, 28), train_labels (60000,),
        test_images (10000, 28, 28), test_labels (10000,))``, in file order.

    Raises:
        AssetError: if the files are missing or corrupt (the message names the file or
            the directories looked in, and the install command).
    """
    return _read_directory(str(fashion_mnist_dir()))


@functools.lru_cache(maxsize=2)
def _read_directory(directory: str) -> _Raw:
    where = Path(directory)
    train_images, train_labels = _read_pair(where, "train", TRAIN_SIZE)
    test_images, test_labels = _read_pair(where, "t10k", TEST_SIZE)
    for array in (train_images, train_labels, test_images, test_labels):
        array.setflags(write=False)
    return train_images, train_labels, test_images, test_labels


def _readonly(array: NDArray[Any]) -> NDArray[Any]:
    array.setflags(write=False)
    return array


def fashion_mnist_split(
    split: str,
) -> tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.int64]]:
    """Return ``(images, labels, indices)`` of one split, as new read-only arrays.

    ``images`` are float32 ``(N, 1, 28, 28)`` in [0, 1] (``uint8 / 255``); ``indices``
    are the stable indices described in the module docstring.

    Raises:
        AssetError: if the files are missing or corrupt.
        KeyError: if ``split`` is not one of :data:`FASHION_MNIST_SPLITS` (the registry
            checks split names first).
    """
    rows_by_split = {
        "train": (0, CALIBRATION_START),
        "calibration": (CALIBRATION_START, TRAIN_SIZE),
        "test": (0, TEST_SIZE),
    }
    start, stop = rows_by_split[split]
    train_images, train_labels, test_images, test_labels = read_fashion_mnist()
    if split == "test":
        raw_images, raw_labels, offset = test_images, test_labels, TEST_INDEX_OFFSET
    else:
        raw_images, raw_labels, offset = train_images, train_labels, 0
    images = raw_images[start:stop, None].astype(np.float32) / np.float32(255.0)
    labels = raw_labels[start:stop].astype(np.int64)
    indices = np.arange(start + offset, stop + offset, dtype=np.int64)
    return _readonly(images), _readonly(labels), _readonly(indices)

"""Tabular data with categorical and continuous columns (numpy only, no torch).

The ``"fair"`` dataset is the tabular task of the hybrid certificate (Delattre et al.
2026, arXiv 2605.12876, tabular experiment): a real mixed-type table whose categorical
columns are token fields (each with its own alphabet) and whose continuous columns
get Gaussian noise.

Source: Fair (1978), "A Theory of Extramarital Affairs", the 1974 Redbook survey of
6,366 married women, as shipped by statsmodels (``statsmodels.datasets.fair``; public
domain). ``scripts/build_tabular_data.py`` builds the asset at build time; at run time
only the sha256-checked asset ``assets/fair_v1.npz`` is read (no pandas, no
statsmodels).

* ``tokens`` (the categorical fields), int64 ``(N, 5)``, field ``f`` holding ids
  ``0..V_f-1`` in increasing order of the survey's code
  (:attr:`TabularDataset.field_levels`): rate_marriage (V = 5, 1 = very poor .. 5 =
  very good), religious (V = 4, 1 = not .. 4 = strongly), educ (V = 6, years 9, 12,
  14, 16, 17, 20), occupation (V = 6, codes 1-6), occupation_husb (V = 6, codes 1-6).
* ``images`` (the continuous part; named so that the hybrid machinery reads it),
  float32 ``(N, 3)``: age, yrs_married, children, each standardised with the mean and
  standard deviation (ddof = 0) of the train split. A sigma or radius on this part is
  therefore in **train standard deviations** (``r = 1`` moves, e.g., age alone by
  one train standard deviation, about 6.8 years).
* ``labels``: 1 if ``affairs > 0`` (any time spent in affairs), else 0 (32% are 1).

Splits (fixed seeded permutation of the 6,366 rows): ``"train"`` 4,366,
``"calibration"`` 1,000, ``"test"`` 1,000; the stable index is the row in statsmodels'
table (0-6365), unique across splits.

Example:
    >>> from smoothcert.data import load_dataset
    >>> test = load_dataset("fair", split="test")
    >>> test
    TabularDataset(name='fair', split='test', n=1000, field_vocab_sizes=(5, 4, 6, 6, 6), num_continuous=3, num_classes=2)
    >>> test.field_names
    ('rate_marriage', 'religious', 'educ', 'occupation', 'occupation_husb')
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
    manifest_entry,
    read_npz_asset,
    resolve_assets_dir,
)
from smoothcert.data._assets import readonly as _readonly
from smoothcert.data._rows import subset_rows
from smoothcert.errors import InvalidParameterError

__all__ = [
    "FAIR_ASSET",
    "FAIR_SPLITS",
    "TabularDataset",
    "fair_info",
    "load_fair",
]

FAIR_ASSET = "fair_v1.npz"
"""File name of the ``"fair"`` asset inside the assets directory."""

FAIR_SPLITS = ("train", "calibration", "test")
"""Split names of the ``"fair"`` dataset."""

_REBUILD_HINT = (
    "reinstall smoothcert, or rebuild it with `python scripts/build_tabular_data.py` "
    "(needs pip package statsmodels)"
)


@dataclass(frozen=True, eq=False)
class TabularDataset:
    """A labelled table split: categorical fields as token ids, continuous columns as floats.

    Attributes:
        name: dataset name, e.g. ``"fair"``.
        split: split name.
        tokens: int64 ``(N, F)``; column ``f`` holds ids in ``[0, field_vocab_sizes[f])``.
        images: float32 ``(N, C)``: the continuous columns (standardised; the hybrid
            certificate's Gaussian part acts on them).
        labels: int64 ``(N,)`` in ``[0, num_classes)``.
        indices: int64 ``(N,)`` stable ids, unique across the dataset's splits.
        num_classes: number of classes.
        field_vocab_sizes: alphabet size ``V_f >= 2`` of each categorical field.
        field_names: name of each categorical field.
        continuous_names: name of each continuous column.
        field_levels: the original code of each id, one tuple per field.

    Example:
        >>> from smoothcert.data import load_dataset
        >>> ds = load_dataset("fair", split="train")
        >>> ds.tokens.shape, ds.images.shape, ds.images.dtype
        ((4366, 5), (4366, 3), dtype('float32'))
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
    field_vocab_sizes: tuple[int, ...]
    field_names: tuple[str, ...]
    continuous_names: tuple[str, ...]
    field_levels: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        tokens, images = np.asarray(self.tokens), np.asarray(self.images)
        if tokens.ndim != 2 or tokens.dtype != np.int64:
            raise InvalidParameterError(
                f"tokens of shape {tokens.shape} and dtype {tokens.dtype} are invalid; "
                "valid: an int64 array of shape (N, F)"
            )
        n, f = tokens.shape
        if images.ndim != 2 or images.dtype != np.float32 or images.shape[0] != n:
            raise InvalidParameterError(
                f"images of shape {images.shape} and dtype {images.dtype} are invalid; "
                f"valid: a float32 array of shape ({n}, C)"
            )
        vocab = tuple(
            check_int(v, name="field vocab size", minimum=2) for v in self.field_vocab_sizes
        )
        if len(vocab) != f or len(self.field_names) != f:
            raise InvalidParameterError(
                f"{len(vocab)} field vocab sizes and {len(self.field_names)} field names are "
                f"invalid; valid: one per categorical column ({f})"
            )
        if len(self.continuous_names) != images.shape[1]:
            raise InvalidParameterError(
                f"{len(self.continuous_names)} continuous names are invalid; valid: "
                f"{images.shape[1]}"
            )
        for field, value in (("labels", self.labels), ("indices", self.indices)):
            arr = np.asarray(value)
            if arr.shape != (n,) or arr.dtype != np.int64:
                raise InvalidParameterError(
                    f"{field} of shape {arr.shape} and dtype {arr.dtype} is invalid; "
                    f"valid: an int64 array of shape ({n},)"
                )
        num_classes = check_int(self.num_classes, name="num_classes", minimum=1)
        labels = np.asarray(self.labels)
        if n and (labels.min() < 0 or labels.max() >= num_classes):
            raise InvalidParameterError(
                f"labels in [{labels.min()}, {labels.max()}] are invalid; "
                f"valid range: 0 <= label < num_classes = {num_classes}"
            )
        if n:
            high = np.asarray(vocab)[None, :]
            bad = (tokens < 0) | (tokens >= high)
            if bad.any():
                row, col = (int(v[0]) for v in np.nonzero(bad))
                raise InvalidParameterError(
                    f"category id {int(tokens[row, col])} of field {col} "
                    f"({self.field_names[col]!r}) is invalid; valid range: 0 <= id < "
                    f"{vocab[col]}"
                )
        if not np.isfinite(images).all():
            raise InvalidParameterError("images contain NaN or Inf; valid: finite values only")
        set_ = object.__setattr__
        set_(self, "tokens", tokens)
        set_(self, "images", images)
        set_(self, "labels", labels)
        set_(self, "indices", np.asarray(self.indices))
        set_(self, "num_classes", num_classes)
        set_(self, "field_vocab_sizes", vocab)
        set_(self, "field_names", tuple(str(s) for s in self.field_names))
        set_(self, "continuous_names", tuple(str(s) for s in self.continuous_names))

    @property
    def num_fields(self) -> int:
        """Number ``F`` of categorical fields."""
        return int(self.tokens.shape[1])

    @property
    def num_continuous(self) -> int:
        """Number of continuous columns."""
        return int(self.images.shape[1])

    @property
    def input_shape(self) -> tuple[int]:
        """Shape ``(C,)`` of one example's continuous part."""
        return (self.num_continuous,)

    def __len__(self) -> int:
        """Number of examples in the split."""
        return int(self.tokens.shape[0])

    def __repr__(self) -> str:
        """Short summary (the arrays are not printed)."""
        return (
            f"TabularDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"field_vocab_sizes={self.field_vocab_sizes}, "
            f"num_continuous={self.num_continuous}, num_classes={self.num_classes})"
        )

    def subset(self, rows: Sequence[int] | NDArray[np.integer[Any]] | slice) -> TabularDataset:
        """Return the examples at the given row positions (not stable indices).

        Raises:
            InvalidParameterError: if a row position is out of range or not an integer.
        """
        return subset_rows(self, rows, ("tokens", "images", "labels", "indices"))


def fair_info(assets_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the manifest entry of the ``"fair"`` asset (sha256, size, sources).

    Raises:
        AssetError: if the manifest is missing, not JSON, or has no entry for the asset.

    Example:
        >>> from smoothcert.data.tabular import fair_info
        >>> sorted(fair_info()["sources"])
        ['statsmodels']
    """
    return manifest_entry(assets_dir, FAIR_ASSET, _REBUILD_HINT)


@functools.lru_cache(maxsize=4)
def _read_asset(directory: str) -> dict[str, NDArray[Any]]:
    """Read, sha256-check and parse the asset of ``directory`` (cached per directory)."""
    return read_npz_asset(directory, FAIR_ASSET, _REBUILD_HINT)


def load_fair(
    split: str = "test", *, assets_dir: str | os.PathLike[str] | None = None
) -> TabularDataset:
    """Load one split of the ``"fair"`` table from its sha256-checked asset.

    Args:
        split: ``"train"``, ``"calibration"`` or ``"test"``.
        assets_dir: directory holding ``fair_v1.npz`` and ``manifest.json``; ``None``
            for the one shipped in the package.

    Returns:
        A :class:`TabularDataset`, rows in increasing order of ``indices``.

    Raises:
        InvalidParameterError: for an unknown ``split``.
        AssetError: if the asset or manifest is missing, corrupt or fails its sha256.

    Example:
        >>> from smoothcert.data.tabular import load_fair
        >>> ds = load_fair("calibration")
        >>> len(ds), ds.num_fields, ds.num_continuous
        (1000, 5, 3)
    """
    if not isinstance(split, str) or split not in FAIR_SPLITS:
        raise InvalidParameterError(
            f"split = {split!r} is invalid for dataset 'fair'; valid choices: {list(FAIR_SPLITS)}"
        )
    a = _read_asset(str(resolve_assets_dir(assets_dir).resolve()))
    rows = np.flatnonzero(a["split"] == FAIR_SPLITS.index(split))
    rows = rows[np.argsort(a["indices"][rows], kind="stable")]
    vocab = tuple(int(v) for v in a["field_vocab_sizes"])
    levels = tuple(tuple(float(x) for x in a["field_levels"][j, :v]) for j, v in enumerate(vocab))
    return TabularDataset(
        name="fair",
        split=split,
        tokens=_readonly(a["categorical"][rows].astype(np.int64)),
        images=_readonly(a["continuous"][rows].astype(np.float32)),
        labels=_readonly(a["labels"][rows].astype(np.int64)),
        indices=_readonly(a["indices"][rows].astype(np.int64)),
        num_classes=2,
        field_vocab_sizes=vocab,
        field_names=tuple(str(s) for s in a["field_names"]),
        continuous_names=tuple(str(s) for s in a["continuous_names"]),
        field_levels=levels,
    )

"""Bundled datasets with a stable index per example (numpy only; never imports torch).

``"digits"`` and ``"fashion_mnist"`` are image datasets (:class:`ImageDataset`;
Fashion-MNIST is read from the Debian package files, install them with
``bash scripts/install_data.sh``); ``"listings"`` is a text+image
task (:class:`TextImageDataset`, listing moderation); ``"fair"`` is a tabular task
(:class:`TabularDataset`, categorical fields + continuous columns). :func:`dataset_kind`
says which.

Example:
    >>> from smoothcert.data import dataset_kind, list_datasets, load_dataset
    >>> list_datasets()
    ['digits', 'fair', 'fashion_mnist', 'listings']
    >>> load_dataset("digits", "test")
    ImageDataset(name='digits', split='test', n=360, input_shape=(1, 8, 8), num_classes=10)
    >>> [dataset_kind(name) for name in list_datasets()]
    ['image', 'tabular', 'image', 'text_image']
"""

from smoothcert.data.datasets import (
    DATASET_KINDS,
    ImageDataset,
    dataset_kind,
    dataset_splits,
    describe_dataset,
    list_datasets,
    load_dataset,
)
from smoothcert.data.listings import TextImageDataset, load_listings
from smoothcert.data.tabular import TabularDataset, load_fair
from smoothcert.data.wordpiece import WordPieceTokenizer

__all__ = [
    "DATASET_KINDS",
    "ImageDataset",
    "TabularDataset",
    "TextImageDataset",
    "WordPieceTokenizer",
    "dataset_kind",
    "dataset_splits",
    "describe_dataset",
    "list_datasets",
    "load_dataset",
    "load_fair",
    "load_listings",
]

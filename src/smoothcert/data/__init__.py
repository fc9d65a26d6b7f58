"""Bundled datasets with a stable index per example (numpy only; never imports torch).

Example:
    >>> from smoothcert.data import list_datasets, load_dataset
    >>> list_datasets()
    ['digits']
    >>> load_dataset("digits", "test")
    ImageDataset(name='digits', split='test', n=360, input_shape=(1, 8, 8), num_classes=10)
"""

from smoothcert.data.datasets import (
    ImageDataset,
    dataset_splits,
    describe_dataset,
    list_datasets,
    load_dataset,
)

__all__ = ["ImageDataset", "dataset_splits", "describe_dataset", "list_datasets", "load_dataset"]

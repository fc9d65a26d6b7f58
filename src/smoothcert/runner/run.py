"""Certify a dataset split with a bundled (or user) model, resumably.

:func:`run_certification` validates the whole configuration, then certifies the
selected examples one by one with :func:`smoothcert.methods.cohen.certify`, appending
one record per example to a :class:`~smoothcert.runner.store.ResultStore`. Re-running
it with the same configuration and output file resumes after the last complete
record.

Each example is certified by :func:`certify_example`, a pure function of the
configuration, the model and the example (its seed comes from the run seed and the
example's stable index), so the records do not depend on the order examples are run
in, on resuming, or on how the examples are split among workers. This is the seam a
distributed backend (one task per shard of examples, results merged into one store)
plugs into.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from smoothcert.errors import InvalidParameterError, ResultStoreError
from smoothcert.methods.cohen import certify
from smoothcert.runner.config import HASHED_FIELDS, RunConfig, example_seed
from smoothcert.runner.store import (
    ResultStore,
    check_same_config,
    existing_header,
)
from smoothcert.sampling.device import check_device


class DatasetLike(Protocol):
    """What a run needs from a dataset (``smoothcert.data.ImageDataset`` provides it).

    Attributes:
        images: float array ``(N, C, H, W)``, in the units sigma is given in.
        labels: int array ``(N,)`` of class labels.
        indices: int array ``(N,)`` of stable, unique, non-negative example ids.
        num_classes: number of classes.

    If it also has ``name`` and ``split``, they must match the run's config.
    """

    @property
    def images(self) -> Any:  # noqa: D102
        ...

    @property
    def labels(self) -> Any:  # noqa: D102
        ...

    @property
    def indices(self) -> Any:  # noqa: D102
        ...

    @property
    def num_classes(self) -> int:  # noqa: D102
        ...


@dataclass(frozen=True)
class RunProgress:
    """Progress of a run, passed to the ``progress`` callback.

    Attributes:
        done: examples of this run's selection stored so far (including ``resumed``).
        total: examples in this run's selection.
        resumed: examples that were already in the file when the run started.
        record: the record just stored, or None for the first event (sent before any
            example is certified).
    """

    done: int
    total: int
    resumed: int
    record: dict[str, Any] | None


ProgressCallback = Callable[[RunProgress], None]


def model_fingerprint(model: Any) -> str | None:
    """sha256 of a module's state dict (names, dtypes, shapes and raw bytes).

    Stored in the header so that a file is never resumed with different weights.

    Args:
        model: a ``torch.nn.Module`` (other callables have no fingerprint).

    Returns:
        The hex digest, or None if ``model`` is not a module.

    Example:
        >>> torch.manual_seed(0) is not None
        True
        >>> a = torch.nn.Linear(2, 2)
        >>> model_fingerprint(a) == model_fingerprint(a), model_fingerprint(len)
        (True, None)
    """
    if not isinstance(model, torch.nn.Module):
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def certify_example(
    config: RunConfig,
    model: Callable[..., torch.Tensor],
    image: Any,
    *,
    label: int,
    index: int,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Certify one example and return its record (pure given config, model and index).

    Args:
        config: the run configuration (method, sigma, n0, n, alpha, batch size, seed).
        model: the classifier, in eval mode.
        image: one input without batch axis (numpy array or tensor), in the units
            of sigma.
        label: the true class.
        index: the example's stable index; with ``config.seed`` it fixes the
            example's seed (:func:`~smoothcert.runner.config.example_seed`).
        num_classes: expected number of model outputs (checked), or None.
        device: device to sample on; default the model's device.

    Returns:
        ``{"type": "record", "index", "label", "correct", **CertifyResult.to_dict()}``
        where ``correct`` is True iff the method did not abstain and predicted
        ``label``.

    Raises:
        InvalidParameterError: on a bad input or model output.
    """
    # a private copy: dataset arrays may be read-only (torch warns on those)
    x = image if torch.is_tensor(image) else torch.from_numpy(np.array(image, copy=True))
    result = certify(
        model,
        x,
        sigma=config.sigma,
        n0=config.n0,
        n=config.n,
        alpha=config.alpha,
        batch_size=config.batch_size,
        seed=example_seed(config.seed, index),
        num_classes=num_classes,
        top2=config.top2,
        device=device,
    )
    label = int(label)
    correct = (not result.abstained) and result.prediction == label
    return {
        "type": "record",
        "index": int(index),
        "label": label,
        "correct": bool(correct),
        **result.to_dict(),
    }


def _check_output_path(output_path: Any) -> Path:
    if not isinstance(output_path, (str, os.PathLike)) or not str(output_path):
        raise InvalidParameterError(f"output_path = {output_path!r} is invalid; valid: a file path")
    path = Path(output_path)
    if path.is_dir():
        raise InvalidParameterError(
            f"output_path = {str(path)!r} is invalid; valid: a file path (it is a directory)"
        )
    return path


def _check_existing_file(path: Path, config: RunConfig) -> None:
    """Refuse early (before loading anything) if ``path`` holds another config."""
    header = existing_header(path)
    if header is None:
        return
    check_same_config(header, path=path, config=config.to_dict(), config_hash=config.config_hash())


def _check_bundled_names(config: RunConfig, *, need_model: bool, need_dataset: bool) -> None:
    if need_dataset:
        from smoothcert.data import dataset_splits, list_datasets

        datasets = list(list_datasets())
        if config.dataset not in datasets:
            raise InvalidParameterError(
                f"dataset = {config.dataset!r} is invalid; valid values: {', '.join(datasets)}"
            )
        splits = [str(s) for s in dataset_splits(config.dataset)]
        if config.split not in splits:
            raise InvalidParameterError(
                f"split = {config.split!r} is invalid for dataset {config.dataset!r}; "
                f"valid values: {', '.join(splits)}"
            )
    if need_model:
        from smoothcert.models import available_sigmas, list_models

        models = list(list_models())
        if config.model not in models:
            raise InvalidParameterError(
                f"model = {config.model!r} is invalid; valid values: {', '.join(models)}"
            )
        sigmas = [float(s) for s in available_sigmas(config.model)]
        if not any(math.isclose(config.sigma, s, rel_tol=1e-9) for s in sigmas):
            raise InvalidParameterError(
                f"sigma = {config.sigma!r} is invalid for model {config.model!r}; valid "
                f"values: {', '.join(str(s) for s in sigmas)} (the noise levels it was "
                "trained at)"
            )


def _check_dataset(dataset: Any, config: RunConfig) -> int:
    for attr in ("images", "labels", "indices", "num_classes"):
        if not hasattr(dataset, attr):
            raise InvalidParameterError(
                f"dataset of type {type(dataset).__name__} is invalid; valid: an object with "
                "images, labels, indices and num_classes (e.g. smoothcert.data.ImageDataset)"
            )
    name, split = getattr(dataset, "name", None), getattr(dataset, "split", None)
    if name is not None and (name, split) != (config.dataset, config.split):
        raise InvalidParameterError(
            f"dataset {name!r}/{split!r} does not match config.dataset/config.split = "
            f"{config.dataset!r}/{config.split!r}; valid: the same names (they are recorded)"
        )
    size = len(dataset.labels)
    if len(dataset.images) != size or len(dataset.indices) != size:
        raise InvalidParameterError(
            f"dataset has {len(dataset.images)} images, {size} labels and "
            f"{len(dataset.indices)} indices; valid: the same number of each"
        )
    indices = np.asarray(dataset.indices)
    if size and (
        not np.issubdtype(indices.dtype, np.integer)
        or indices.min() < 0
        or len(np.unique(indices)) != size
    ):
        raise InvalidParameterError(
            "dataset.indices is invalid; valid: unique integer ids >= 0 (they key the records)"
        )
    if size == 0:
        raise InvalidParameterError(
            f"dataset {config.dataset!r}/{config.split!r} is empty; valid: at least 1 example"
        )
    return size


def validate_run(
    config: RunConfig,
    output_path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    bundled_model: bool = True,
    bundled_dataset: bool = True,
) -> tuple[Path, torch.device]:
    """Every check :func:`run_certification` makes before loading anything.

    Checks the config type, the output path, the device, that an existing output
    file holds the same config hash, and the bundled model, dataset, split and
    sigma names (when they are used). Cheap: nothing is loaded and no file is written.

    Args:
        config: the run configuration (its values are validated on construction).
        output_path: the result file.
        device: the device name.
        bundled_model: check ``config.model`` and ``config.sigma`` against the
            bundled models.
        bundled_dataset: check ``config.dataset`` against the bundled datasets.

    Returns:
        ``(path, device)``, parsed.

    Raises:
        InvalidParameterError: on a bad config, path, device or name.
        ResultStoreError: if the output file exists with another config hash or is
            not a usable result file.
    """
    if not isinstance(config, RunConfig):
        raise InvalidParameterError(
            f"config of type {type(config).__name__} is invalid; valid: a RunConfig"
        )
    path = _check_output_path(output_path)
    dev = check_device(device)
    _check_existing_file(path, config)
    _check_bundled_names(config, need_model=bundled_model, need_dataset=bundled_dataset)
    return path, dev


def run_certification(
    config: RunConfig,
    output_path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    model: Callable[..., torch.Tensor] | None = None,
    dataset: DatasetLike | None = None,
) -> Path:
    """Certify the examples selected by ``config`` and append their records to a file.

    Everything is validated before the model is loaded or any noise is drawn: the
    config's values, the device, the model, dataset and sigma names, and (if the
    output file exists) that it holds the same config hash. Examples already in the
    file are skipped, so re-running after a crash resumes. Each record is flushed
    and fsync-ed as soon as it is computed.

    Args:
        config: the run configuration.
        output_path: the JSON-lines result file (created with its parent directories;
            format in :mod:`smoothcert.runner.store`).
        device: device the model runs and the noise is drawn on. Not part of the
            config hash (it is recorded in the header); CPU and CUDA draw different
            noise for the same seed.
        progress: optional callback, called once before the first example and after
            every stored record, with a :class:`RunProgress`.
        model: optional user model (eval mode) to certify instead of the bundled
            ``config.model`` (which then only labels the run); its weights'
            fingerprint is recorded and checked on resume.
        dataset: optional dataset object (see :class:`DatasetLike`) instead of the
            bundled ``config.dataset``/``config.split``; its name and split must
            match the config.

    Returns:
        The path of the result file.

    Raises:
        InvalidParameterError: on a bad config value, device, name, or dataset.
        ResultStoreError: if the output file holds another config, other model
            weights, is corrupt before its last line, or is locked by another run.
        AssetError: if bundled weights or data are missing or fail their checksum.
    """
    path, dev = validate_run(
        config,
        output_path,
        device=device,
        bundled_model=model is None,
        bundled_dataset=dataset is None,
    )

    data: DatasetLike
    if dataset is None:
        from smoothcert.data import load_dataset

        data = load_dataset(config.dataset, split=config.split)
    else:
        data = dataset
    size = _check_dataset(data, config)
    positions: Sequence[int] = config.select_positions(size)

    if model is None:
        from smoothcert.models import load_model

        model = load_model(config.model, sigma=config.sigma, device=str(dev))
    elif isinstance(model, torch.nn.Module):
        model = model.to(dev)
    fingerprint = model_fingerprint(model)

    extra = {
        "device": str(dev),
        "model_fingerprint": fingerprint,
        "model_weights_sha256": getattr(model, "weights_sha256", None),
    }
    with ResultStore.open(
        path,
        config=config.to_dict(),
        config_hash=config.config_hash(),
        hashed_fields=HASHED_FIELDS,
        extra_header=extra,
    ) as store:
        stored = store.header.get("model_fingerprint")
        if stored != fingerprint:  # None (a plain callable) only matches None
            raise ResultStoreError(
                f"{path} was written with model weights of fingerprint {stored}, but the "
                f"model now has fingerprint {fingerprint} (None: a callable that is not a "
                "torch.nn.Module, whose weights cannot be checked); refusing to mix "
                "results of different models: choose another output file"
            )
        done = store.done_indices
        indices = np.asarray(data.indices)
        labels = np.asarray(data.labels)
        todo = [p for p in positions if int(indices[p]) not in done]
        resumed = len(positions) - len(todo)
        if progress is not None:
            progress(RunProgress(resumed, len(positions), resumed, None))
        for count, pos in enumerate(todo, start=1):
            record = certify_example(
                config,
                model,
                data.images[pos],
                label=int(labels[pos]),
                index=int(indices[pos]),
                num_classes=int(data.num_classes),
                device=dev,
            )
            store.append(record)
            if progress is not None:
                progress(RunProgress(resumed + count, len(positions), resumed, record))
    return path

"""Certify a dataset split with any registered method, on one machine or a Ray cluster, resumably.

:func:`run_certification` validates the whole configuration (output path first), then
certifies the selected examples with the method of the config
(:mod:`smoothcert.methods.registry`), appending one record per example to a
:class:`~smoothcert.results.store.ResultStore`. Re-running it with the same
configuration and output file resumes after the last complete record.

The work is a :class:`RunJob` (picklable: the config, and how to load the model and
the dataset), executed by a backend (:mod:`smoothcert.runner.backends`): in this process
(:class:`~smoothcert.runner.backends.LocalBackend`) or on a Ray cluster
(:class:`~smoothcert.runner.ray_backend.RayBackend`). Records are written by one
process, the caller's. Each example's record is a pure function of the configuration,
the model and the example (its seed comes from the run seed and the example's stable
index), so records do not depend on the backend, the number of workers, the order
examples are run in, resuming, or on how many examples share a forward batch.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smoothcert.errors import InvalidParameterError, ResultStoreError
from smoothcert.methods.registry import MethodSpec
from smoothcert.methods.sampler import Prepared, draw, draw_many
from smoothcert.results.records import record_line, validate_record
from smoothcert.results.store import ResultStore, check_same_config, existing_header
from smoothcert.runner.backends import LocalBackend
from smoothcert.runner.config import HASHED_FIELDS, RunConfig, example_seed
from smoothcert.sampling.device import check_device
from smoothcert.sampling.fast_path import autocast_dtype_for, prepare_model

MAX_SAMPLES_PER_EXAMPLE = 10**9
"""Noisy samples per example above which a run is refused unless ``allow_large=True``
(10^9 forward samples of even a tiny model take hours per example on a CPU)."""


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


def dataset_kind_of(dataset: Any) -> str:
    """``"tabular"``, ``"text_image"``, ``"text"`` or ``"image"``: what a dataset object holds.

    A tabular dataset (categorical fields + continuous columns) says so by its
    ``field_vocab_sizes`` (:class:`~smoothcert.data.tabular.TabularDataset`).
    """
    has_tokens = hasattr(dataset, "tokens")
    has_images = hasattr(dataset, "images")
    if has_tokens and has_images and hasattr(dataset, "field_vocab_sizes"):
        return "tabular"
    if has_tokens and has_images:
        return "text_image"
    return "text" if has_tokens else "image"


def _tensor(array: Any) -> torch.Tensor:
    # a private copy: dataset arrays may be read-only (torch warns on those)
    return array if torch.is_tensor(array) else torch.from_numpy(np.array(array, copy=True))


def example_inputs(
    spec: MethodSpec, dataset: Any, position: int, *, threat: str | None = None
) -> tuple[tuple[torch.Tensor, ...], dict[str, Any]]:
    """The model inputs of the example at ``position``, and per-example sampling options.

    Inputs by the method's input kind: ``image``: ``(image,)``; ``tokens``: ``(tokens,)``
    or ``(tokens, image)`` (the image is passed unchanged); ``tokens+image``:
    ``(tokens, image)``; ``fields``: ``(tokens, continuous)`` (the dataset's ``images``).
    Options: ``{"eligible": mask}`` for the ``"given"`` threat, from the dataset's
    per-example eligible token positions.
    """
    if spec.input_kind == "image":
        return (_tensor(dataset.images[position]),), {}
    tokens = _tensor(dataset.tokens[position])
    inputs = (
        (tokens, _tensor(dataset.images[position])) if hasattr(dataset, "images") else (tokens,)
    )
    eligible = getattr(dataset, "eligible", None)
    if threat != "given" or eligible is None:
        return inputs, {}
    return inputs, {"eligible": np.asarray(eligible[position])}


def certify_example(
    config: RunConfig,
    model: Callable[..., torch.Tensor],
    inputs: tuple[Any, ...],
    *,
    label: int,
    index: int,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    eligible: Any = None,
) -> dict[str, Any]:
    """Certify one example and return its record (pure given config, model and index).

    Args:
        config: the run configuration (method and parameters, batch size, seed, ...).
        model: the classifier, in eval mode (as run: fast-path wrappers applied).
        inputs: the example's model inputs without batch axis (see :func:`example_inputs`).
        label: the true class.
        index: the example's stable index; with ``config.seed`` it fixes the
            example's seed (:func:`~smoothcert.runner.config.example_seed`).
        num_classes: expected number of model outputs (checked), or None.
        device: device to sample on; default the model's device.
        eligible: the example's eligible token positions (``"given"`` threat only).

    Returns:
        The record line (:func:`smoothcert.results.records.record_line`).

    Raises:
        InvalidParameterError: on a bad input or model output, naming the example index.
    """
    options = {} if eligible is None else {"eligible": eligible}
    return certify_examples(
        config,
        model,
        [(inputs, int(label), int(index), options)],
        num_classes=num_classes,
        device=device,
    )[0]


def prepare_example(
    config: RunConfig,
    model: Callable[..., torch.Tensor],
    example: tuple[tuple[Any, ...], int, int, dict[str, Any]],
    *,
    num_classes: int | None,
    device: torch.device | str | None,
    probe: bool = True,
) -> Prepared:
    """Every check of the config's method on one example ``(inputs, label, index, options)``.

    Returns the method's :class:`~smoothcert.methods.sampler.Prepared` (nothing sampled).

    Raises:
        InvalidParameterError: naming the example index.
    """
    inputs, _, index, options = example
    try:
        return config.spec.load_preparer()(
            model,
            inputs,
            config.method_params(),
            seed=example_seed(config.seed, index),
            batch_size=config.batch_size,
            num_classes=num_classes,
            device=device,
            autocast_dtype=autocast_dtype_for(config.precision),
            probe=probe,
            **options,
        )
    except InvalidParameterError as err:
        raise InvalidParameterError(f"example index {index}: {err}") from err


def certify_examples(
    config: RunConfig,
    model: Callable[..., torch.Tensor],
    examples: Sequence[tuple[tuple[Any, ...], int, int, dict[str, Any]]],
    *,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    share_batches: bool = False,
    probe: bool = True,
) -> list[dict[str, Any]]:
    """Certify several examples ``(inputs, label, index, options)``; one record each, in order.

    ``options`` are per-example keyword arguments of the method's ``prepare`` (e.g.
    ``eligible``, see :func:`example_inputs`). ``probe=False`` skips each example's clean
    probe pass (a run probes its first example in :meth:`RunJob.preflight`; ``num_classes``
    must then be given).

    With ``share_batches`` their noisy samples go through the model in shared forward
    passes (:func:`smoothcert.methods.sampler.draw_many`); the records are the same.

    Raises:
        InvalidParameterError: on a bad input or model output, naming the example index.
    """
    spec = config.spec
    params = config.method_params()
    prepared = [
        prepare_example(config, model, example, num_classes=num_classes, device=device, probe=probe)
        for example in examples
    ]
    try:
        if share_batches and len(prepared) > 1:
            evidences = draw_many(prepared)
        else:
            evidences = [draw(p) for p in prepared]
    except InvalidParameterError as err:
        where = ", ".join(str(index) for _, _, index, _ in examples)
        raise InvalidParameterError(f"example index {where}: {err}") from err
    return [
        record_line(spec.decide(evidence, params), index=index, label=label)
        for evidence, (_, label, index, _) in zip(evidences, examples, strict=True)
    ]


def _check_output_path(output_path: Any) -> Path:
    """Check the output path is a writable file path, before anything is loaded."""
    if not isinstance(output_path, (str, os.PathLike)) or not str(output_path):
        raise InvalidParameterError(f"output = {output_path!r} is invalid; valid: a file path")
    path = Path(output_path)
    if path.is_dir():
        raise InvalidParameterError(
            f"output = {str(path)!r} is invalid; valid: a file path (it is a directory)"
        )
    if path.exists():
        if not os.access(path, os.W_OK):
            raise InvalidParameterError(
                f"output = {str(path)!r} is not writable; valid: a file you can write"
            )
        return path
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidParameterError(
            f"output = {str(path)!r} cannot be created ({str(parent)!r} is not a writable "
            "directory); valid: a path in a directory you can write"
        )
    return path


def _check_bundled_names(config: RunConfig, *, need_model: bool, need_dataset: bool) -> None:
    if need_dataset:
        from smoothcert.data import dataset_kind, dataset_splits, list_datasets

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
        _check_kind_fits(config, dataset_kind(config.dataset))
    if need_model:
        from smoothcert.models import available_sigmas, list_models

        models = list(list_models())
        if config.model not in models:
            raise InvalidParameterError(
                f"model = {config.model!r} is invalid; valid values: {', '.join(models)}"
            )
        if config.spec.model_loader is not None:
            return  # several models, checked by the method's loader before anything runs
        sigmas = [float(s) for s in available_sigmas(config.model)]
        wanted = config.weights_sigma
        if wanted is None and len(sigmas) != 1:
            raise InvalidParameterError(
                f"model_sigma = None is invalid for model {config.model!r} with method "
                f"{config.method!r} (no sigma parameter); valid values: "
                f"{', '.join(str(s) for s in sigmas)}"
            )
        if wanted is not None and not any(math.isclose(wanted, s, rel_tol=1e-9) for s in sigmas):
            name = "model_sigma" if config.model_sigma is not None else "sigma"
            raise InvalidParameterError(
                f"{name} = {wanted!r} is invalid for model {config.model!r}; valid "
                f"values: {', '.join(str(s) for s in sigmas)} (the noise levels it was "
                "trained at; pass --model-sigma to certify at another sigma)"
            )


def _check_kind_fits(config: RunConfig, kind: str) -> None:
    config.spec.check_dataset_kind(kind, dataset=config.dataset)


def _check_dataset(dataset: Any, config: RunConfig) -> int:
    for attr in ("labels", "indices", "num_classes"):
        if not hasattr(dataset, attr):
            raise InvalidParameterError(
                f"dataset of type {type(dataset).__name__} is invalid; valid: an object with "
                "labels, indices, num_classes and images and/or tokens (e.g. "
                "smoothcert.data.ImageDataset)"
            )
    _check_kind_fits(config, dataset_kind_of(dataset))
    name, split = getattr(dataset, "name", None), getattr(dataset, "split", None)
    if name is not None and (name, split) != (config.dataset, config.split):
        raise InvalidParameterError(
            f"dataset {name!r}/{split!r} does not match config.dataset/config.split = "
            f"{config.dataset!r}/{config.split!r}; valid: the same names (they are recorded)"
        )
    size = len(dataset.labels)
    columns = [a for a in ("images", "tokens") if hasattr(dataset, a)]
    if any(len(getattr(dataset, a)) != size for a in columns) or len(dataset.indices) != size:
        raise InvalidParameterError(
            f"dataset has {size} labels, {len(dataset.indices)} indices and "
            f"{[len(getattr(dataset, a)) for a in columns]} {columns}; valid: the same number "
            "of each"
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


def check_sample_budget(config: RunConfig, *, allow_large: bool) -> None:
    """Refuse more than :data:`MAX_SAMPLES_PER_EXAMPLE` samples per example unless allowed."""
    per_example = config.samples_per_example()
    if per_example > MAX_SAMPLES_PER_EXAMPLE and not allow_large:
        raise InvalidParameterError(
            f"{per_example:,} noisy samples per example (at most) is above the limit of "
            f"{MAX_SAMPLES_PER_EXAMPLE:,}; valid: at most {MAX_SAMPLES_PER_EXAMPLE:,}, or "
            "allow it explicitly (--allow-large / allow_large=True) after checking the time "
            "it will take"
        )


def validate_run(
    config: RunConfig,
    output_path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    bundled_model: bool = True,
    bundled_dataset: bool = True,
    allow_large: bool = False,
) -> tuple[Path, torch.device]:
    """Every check :func:`run_certification` makes before loading anything.

    Checks the config type, the output path (a writable file path), the device, that an
    existing output file holds the same config hash, the sample budget, and the bundled
    model, dataset, split and sigma names and that the dataset fits the method (when
    they are used). Cheap: nothing is loaded and no file is written.

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
    header = existing_header(path)
    if header is not None:
        check_same_config(
            header, path=path, config=config.to_dict(), config_hash=config.config_hash()
        )
    check_sample_budget(config, allow_large=allow_large)
    _check_bundled_names(config, need_model=bundled_model, need_dataset=bundled_dataset)
    return path, dev


class RunJob:
    """The work of a run: certify the examples at given positions (a picklable ShardJob).

    A worker calls :meth:`prepare` once (it loads the bundled model and dataset, or
    uses the ones given, and applies the fast-path options), then :meth:`run_shard`.

    Args:
        config: the run configuration.
        device: device name the worker runs the model on.
        model: a user model (sent to each worker), or None for the bundled one.
        dataset: a user dataset, or None for the bundled one.
        examples_per_batch: examples whose noisy samples share forward passes, >= 1.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        device: str,
        model: Any = None,
        dataset: Any = None,
        examples_per_batch: int = 1,
    ) -> None:
        self.config = config
        self.device = device
        self.user_model = model
        self.user_dataset = dataset
        self.examples_per_batch = examples_per_batch
        self._model: Any = None
        self._data: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = state["_data"] = None  # each worker loads its own copy
        return state

    def load_dataset(self) -> Any:
        """The dataset (the user's, or the bundled one named by the config)."""
        if self._data is None:
            if self.user_dataset is not None:
                self._data = self.user_dataset
            else:
                from smoothcert.data import load_dataset

                self._data = load_dataset(self.config.dataset, split=self.config.split)
        return self._data

    def load_model(self) -> Any:
        """The model as certified: on the device, in eval mode, fast-path options applied."""
        if self._model is None:
            self._model = prepare_model(
                self.raw_model(),
                compile=self.config.compile,
                channels_last=self.config.channels_last,
            )
        return self._model

    def raw_model(self) -> Any:
        """The user's or bundled model on the device (before fast-path wrappers)."""
        if self.user_model is not None:
            model = self.user_model
            if isinstance(model, torch.nn.Module):
                model = model.to(self.device)
            return model
        from smoothcert.models import available_sigmas, load_model

        loader = self.config.spec.load_model_loader()
        if loader is not None:
            return loader(self.config.model, self.config.method_params(), device=self.device)
        sigma = self.config.weights_sigma
        if sigma is None:
            (sigma,) = available_sigmas(self.config.model)
        return load_model(self.config.model, sigma=sigma, device=self.device)

    def examples(self, positions: Sequence[int]) -> list[tuple[Any, ...]]:
        """``(inputs, label, index, options)`` of the examples at ``positions``."""
        data, spec = self._data, self.config.spec
        threat = (self.config.params or {}).get("threat")
        out = []
        for p in positions:
            inputs, options = example_inputs(spec, data, int(p), threat=threat)
            out.append((inputs, int(data.labels[p]), int(data.indices[p]), options))
        return out

    def preflight(self, position: int, model: Any) -> None:
        """Run every check of the method on one example without sampling (cheap).

        Raises:
            InvalidParameterError: naming the example index, as a run would.
        """
        self.load_dataset()
        (example,) = self.examples([position])
        prepare_example(
            self.config, model, example, num_classes=int(self._data.num_classes), device=self.device
        )

    def prepare(self) -> None:
        """Load the model and the dataset once per worker process (idempotent)."""
        self.load_dataset()
        self.load_model()

    def run_shard(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        """Certify the examples at ``positions``; one record each, in order."""
        self.prepare()
        records: list[dict[str, Any]] = []
        step = max(1, self.examples_per_batch)
        for start in range(0, len(positions), step):
            records.extend(
                certify_examples(
                    self.config,
                    self._model,
                    self.examples(positions[start : start + step]),
                    num_classes=int(self._data.num_classes),
                    device=self.device,
                    share_batches=step > 1,
                    probe=False,  # preflight probed the run's first example
                )
            )
        return records


def run_certification(
    config: RunConfig,
    output_path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    model: Callable[..., torch.Tensor] | None = None,
    dataset: Any = None,
    backend: Any = None,
    examples_per_batch: int = 1,
    allow_large: bool = False,
) -> Path:
    """Certify the examples selected by ``config`` and append their records to a file.

    Everything is validated before the model is loaded or any noise is drawn: the
    output path, the config's values, the device, the model, dataset and sigma names,
    that the dataset fits the method, the sample budget, and (if the output file
    exists) that it holds the same config hash. Examples already in the file are
    skipped, so re-running after a crash resumes; the file records each run's selection
    of examples. Each record is flushed and fsync-ed as soon as it reaches the writer
    (this process), whichever backend computed it.

    Args:
        config: the run configuration.
        output_path: the JSON-lines result file (created with its parent directories;
            format in :mod:`smoothcert.results.store`).
        device: device the model runs and the noise is drawn on. Not part of the
            config hash (it is recorded in the header); CPU and CUDA draw different
            noise for the same seed. With Ray, each worker uses this device type.
        progress: optional callback, called once before the first example and after
            every stored record, with a :class:`RunProgress`.
        model: optional user model (eval mode) to certify instead of the bundled
            ``config.model`` (which then only labels the run); its weights'
            fingerprint is recorded and checked on resume.
        dataset: optional dataset object (``ImageDataset``-like, or with ``tokens``)
            instead of the bundled ``config.dataset``/``config.split``; its name and
            split must match the config.
        backend: where examples are certified: None or a
            :class:`~smoothcert.runner.backends.LocalBackend` (this process), or a
            :class:`~smoothcert.runner.ray_backend.RayBackend`.
        examples_per_batch: examples whose noisy samples share forward passes (a tiny
            model runs near its bare forward throughput); records are the same.
        allow_large: allow more than :data:`MAX_SAMPLES_PER_EXAMPLE` samples per example.

    Returns:
        The path of the result file.

    Raises:
        InvalidParameterError: on a bad config value, device, name, or dataset.
        ResultStoreError: if the output file holds another config, other model
            weights, is corrupt before its last line, or is locked by another run.
        AssetError: if bundled weights or data are missing or fail their checksum.
    """
    from smoothcert._validation import check_int

    examples_per_batch = check_int(examples_per_batch, name="examples_per_batch", minimum=1)
    path, dev = validate_run(
        config,
        output_path,
        device=device,
        bundled_model=model is None,
        bundled_dataset=dataset is None,
        allow_large=allow_large,
    )
    job = RunJob(
        config,
        device=str(dev),
        model=model,
        dataset=dataset,
        examples_per_batch=examples_per_batch,
    )
    data = job.load_dataset()
    size = _check_dataset(data, config)
    positions: Sequence[int] = config.select_positions(size)
    raw = job.raw_model()
    fingerprint = model_fingerprint(raw)
    if model is not None:
        job.user_model = raw  # already on the device
    # Every per-example check (threat, alphabet, target, the model on this input) on the
    # first selected example, before the result file is created or touched.
    job.preflight(int(positions[0]), raw)

    extra = {
        "device": str(dev),
        "model_fingerprint": fingerprint,
        "model_weights_sha256": getattr(raw, "weights_sha256", None),
    }
    backend = backend if backend is not None else LocalBackend()
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
        todo = [p for p in positions if int(indices[p]) not in done]
        resumed = len(positions) - len(todo)
        if todo:
            store.record_selection(config.selection())
        if progress is not None:
            progress(RunProgress(resumed, len(positions), resumed, None))
        state = {"done": resumed}

        expected = {"method": config.method, "params": config.method_params().to_dict()}
        wanted = {int(indices[p]) for p in todo}

        def on_records(records: list[dict[str, Any]]) -> None:
            fresh = []
            for record in records:
                index = int(record["index"])
                if store.is_done(index) or any(r["index"] == index for r in fresh):
                    continue  # a retried shard: already stored, never duplicated
                if index not in wanted:
                    raise ResultStoreError(
                        f"{backend.name} worker record for example index {index}: this run "
                        "did not ask for that example"
                    )
                if not getattr(backend, "in_process", False):
                    # Another process's output is checked by the pure half before it is
                    # stored (the local backend's records come from that very code).
                    where = f"{backend.name} worker record for example index {index}"
                    record = validate_record(record, where=where, expected=expected)
                fresh.append(record)
            store.append_many(fresh)
            for record in fresh:
                state["done"] += 1
                if progress is not None:
                    progress(RunProgress(state["done"], len(positions), resumed, record))

        shard_size = examples_per_batch if isinstance(backend, LocalBackend) else None
        shards = _shards(todo, backend, shard_size)
        backend.run(job, shards, on_records)
    return path


def _shards(todo: list[int], backend: Any, shard_size: int | None) -> list[list[int]]:
    """Cut the positions to run into shards.

    Local runs use shards of ``examples_per_batch`` positions, so each record is stored
    as soon as it is computed; other backends their ``shard_size`` (default
    :data:`~smoothcert.runner.ray_backend.DEFAULT_SHARD_SIZE`).
    """
    from smoothcert.runner.ray_backend import DEFAULT_SHARD_SIZE, shard_positions

    if shard_size is None:
        shard_size = int(getattr(backend, "shard_size", DEFAULT_SHARD_SIZE))
    return shard_positions(todo, shard_size)

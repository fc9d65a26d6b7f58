"""Training the bundled models with Gaussian noise augmentation, and saving their weights.

A smoothed classifier ``g(x) = argmax_c P(f(x + e) = c)``, ``e ~ N(0, sigma^2 I)``, is
only accurate if the base model ``f`` classifies noisy inputs well, so the base model
is trained on inputs with exactly the noise the certificate assumes (Cohen, Rosenfeld
and Kolter 2019, "Certified Adversarial Robustness via Randomized Smoothing",
arXiv 1902.02918, Sec. 3.3 and 4): Gaussian noise of standard deviation ``sigma``
added to pixels in [0, 1], with no clipping, fresh noise for every example at every
step.

Training uses the ``"train"`` split only, Adam with a one-cycle learning-rate
schedule and cross-entropy. It is deterministic for a given ``seed``: the initial
weights come from a forked, seeded global RNG (the caller's RNG state is untouched)
and the batch order and noise from explicit ``torch.Generator`` objects. Re-running
gives bit-identical weights with the same torch version, thread count and CPU kernels
(AVX512 and AVX2 kernels round differently: pin them with ``ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2``, as the shipped weights were made; ``tests/reproduce.py``).

The command ``smoothcert train`` calls :func:`train_all`, which dispatches by model:
image models (``digits_cnn``, ``fmnist_cnn``) are trained here, each with its own
default epochs, batch size and learning rate (:data:`IMAGE_TRAINING_DEFAULTS`); the
text+image ``listing_filter`` is trained with token and image noise by
:func:`smoothcert.models.train_listings.train_listing_filter`.

Example:
    >>> from smoothcert.models.train import train_model
    >>> model = train_model(sigma=0.5, epochs=1, max_examples=64)
    >>> model.training, model.sigma
    (False, 0.5)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from smoothcert._validation import check_int, check_positive
from smoothcert.data import load_dataset
from smoothcert.errors import AssetError, InvalidParameterError
from smoothcert.models.architectures import get_model_spec
from smoothcert.models.loading import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    _resolve_dir,
    read_manifest,
    weights_filename,
)
from smoothcert.models.train_lipschitz import RECIPES as LIPSCHITZ_RECIPES
from smoothcert.sampling.device import check_device

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "DEFAULT_SIGMAS",
    "FMNIST_BATCH_SIZE",
    "FMNIST_EPOCHS",
    "FMNIST_LR",
    "FMNIST_VOTE_EXAMPLES",
    "IMAGE_TRAINING_DEFAULTS",
    "noisy_accuracy",
    "save_weights",
    "train_all",
    "train_model",
]

DEFAULT_EPOCHS = 100
"""Passes over the training split (fresh noise each pass), for ``digits_cnn``."""

DEFAULT_BATCH_SIZE = 64
"""Training batch size, for ``digits_cnn``."""

DEFAULT_LR = 2e-3
"""Peak learning rate of the one-cycle schedule (Adam), for ``digits_cnn``."""

FMNIST_EPOCHS = 5
"""Passes over the 60,000 Fashion-MNIST training images for ``fmnist_cnn`` (about 30 s
each on two CPU cores at batch 256 with two threads)."""

FMNIST_BATCH_SIZE = 256
"""Training batch size for ``fmnist_cnn``."""

FMNIST_LR = 3e-3
"""Peak learning rate of the one-cycle schedule (Adam) for ``fmnist_cnn``."""

FMNIST_VOTE_EXAMPLES = 1000
"""Test examples (the first ones of the split) the 100-vote accuracy of ``fmnist_cnn``
is measured on by :func:`train_all`: 100 votes on all 10,000 would be a million
forward passes, several minutes on two CPU cores. The one-draw accuracy uses the whole
test split."""

IMAGE_TRAINING_DEFAULTS: dict[str, tuple[int, int, float]] = {
    "digits_cnn": (DEFAULT_EPOCHS, DEFAULT_BATCH_SIZE, DEFAULT_LR),
    "fmnist_cnn": (FMNIST_EPOCHS, FMNIST_BATCH_SIZE, FMNIST_LR),
}
"""Default ``(epochs, batch_size, peak_lr)`` of each bundled image model."""

_VOTE_EXAMPLES: dict[str, int] = {
    "fmnist_cnn": FMNIST_VOTE_EXAMPLES,
    "fmnist_lipschitz": FMNIST_VOTE_EXAMPLES,
}


def _image_defaults(name: str) -> tuple[int, int, float]:
    return IMAGE_TRAINING_DEFAULTS.get(name, (DEFAULT_EPOCHS, DEFAULT_BATCH_SIZE, DEFAULT_LR))


DEFAULT_SIGMAS = (0.25, 0.5, 1.0)
"""Noise levels of the bundled weights, in [0, 1]-pixel units."""


def _two_seeds(seed: int) -> tuple[int, int]:
    """Derive independent seeds for the batch order and the noise from one seed."""
    state = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
    return int(state[0] >> np.uint64(1)), int(state[1] >> np.uint64(1))


def train_model(
    name: str = "digits_cnn",
    *,
    sigma: float,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    lr: float | None = None,
    max_examples: int | None = None,
    threads: int | None = 1,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """Train a bundled architecture with Gaussian noise augmentation at ``sigma``.

    Each training step adds fresh ``N(0, sigma^2)`` noise to every pixel of the
    (unclipped) [0, 1] images, the noise the Gaussian certificate assumes
    (Cohen et al. 2019, arXiv 1902.02918). Optimiser: Adam, one-cycle schedule with
    peak ``lr``, cross-entropy loss. Only the dataset's ``"train"`` split is used.
    For ``name = "listing_filter"`` this calls
    :func:`~smoothcert.models.train_listings.train_listing_filter` (token noise at
    ``LISTING_BETA`` as well).

    Args:
        name: a name from :func:`~smoothcert.models.list_models`.
        sigma: noise standard deviation, in [0, 1]-pixel units (> 0).
        epochs: passes over the training examples (>= 1); None for the model's default
            (:data:`DEFAULT_EPOCHS` for ``digits_cnn``, :data:`FMNIST_EPOCHS` for
            ``fmnist_cnn``, ``LISTING_EPOCHS`` for ``listing_filter``).
        seed: seed of the initial weights, batch order and noise (>= 0).
        device: torch device to train on.
        batch_size: examples per step (>= 1); None for the model's default.
        lr: peak learning rate (> 0); None for the model's default.
        max_examples: if given, train on the first ``max_examples`` training
            examples only (for quick tests); ``None`` uses the whole split.
        threads: CPU threads torch uses while training (the previous setting is
            restored afterwards); ``None`` keeps the current setting. The default 1 is
            the fastest for this tiny model (two threads on small batches slow down
            many times over when another process shares the cores) and makes the
            result independent of the machine's core count.
        log: optional callback receiving one progress line per epoch.

    Returns:
        The trained model, in eval mode on ``device``, with attribute ``sigma``.

    Raises:
        InvalidParameterError: for an unknown ``name`` or ``device`` or any argument
            outside its range.

    Example:
        >>> from smoothcert.models.train import train_model
        >>> a = train_model(sigma=0.25, epochs=1, max_examples=32, seed=3)
        >>> b = train_model(sigma=0.25, epochs=1, max_examples=32, seed=3)
        >>> all(a.state_dict()[k].equal(b.state_dict()[k]) for k in a.state_dict())
        True
    """
    spec = get_model_spec(name)
    if spec.kind in ("tabular", "text_image"):
        trainer, defaults = _own_trainer(spec.kind)
        return trainer(
            sigma=sigma,
            epochs=defaults[0] if epochs is None else epochs,
            seed=seed,
            device=device,
            batch_size=defaults[1] if batch_size is None else batch_size,
            lr=defaults[2] if lr is None else lr,
            max_examples=max_examples,
            threads=threads,
            log=log,
        )
    if name in LIPSCHITZ_RECIPES:
        from smoothcert.models import train_lipschitz as tlip

        return tlip.train_lipschitz_model(
            name,
            sigma=sigma,
            epochs=epochs,
            seed=seed,
            device=device,
            batch_size=batch_size,
            lr=lr,
            max_examples=max_examples,
            threads=threads,
            log=log,
        )
    sigma = check_positive(sigma, name="sigma")
    default_epochs, default_batch_size, default_lr = _image_defaults(name)
    epochs = check_int(default_epochs if epochs is None else epochs, name="epochs", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    batch_size = check_int(
        default_batch_size if batch_size is None else batch_size, name="batch_size", minimum=1
    )
    lr = check_positive(default_lr if lr is None else lr, name="lr")
    if max_examples is not None:
        max_examples = check_int(max_examples, name="max_examples", minimum=1)
    if threads is not None:
        threads = check_int(threads, name="threads", minimum=1)
    target = check_device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        model = _train(
            spec.build,
            spec.dataset,
            sigma=sigma,
            epochs=epochs,
            seed=seed,
            device=target,
            batch_size=batch_size,
            lr=lr,
            max_examples=max_examples,
            log=None if log is None else lambda line: log(f"{name} {line}"),
        )
    finally:
        torch.set_num_threads(previous_threads)
    model.sigma = sigma  # type: ignore[assignment]
    return model


def _own_trainer(kind: str) -> tuple[Callable[..., nn.Module], tuple[int, int, float]]:
    """The trainer of a tabular or text-image model and its (epochs, batch, lr) defaults."""
    if kind == "tabular":
        from smoothcert.models import train_tabular as tt

        return tt.train_tabular_mlp, (tt.TABULAR_EPOCHS, tt.TABULAR_BATCH_SIZE, tt.TABULAR_LR)
    from smoothcert.models import train_listings as tl

    return tl.train_listing_filter, (tl.LISTING_EPOCHS, tl.LISTING_BATCH_SIZE, tl.LISTING_LR)


def fit_one_cycle(
    model: nn.Module,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    *,
    n: int,
    epochs: int,
    batch_size: int,
    lr: float,
    order_gen: torch.Generator,
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None = None,
) -> None:
    """Train ``model`` in place: Adam with a one-cycle schedule over shuffled batches.

    Each epoch draws a permutation of the ``n`` rows from ``order_gen``, then for each
    batch of row indices ``idx`` (on ``device``) takes one step on ``batch_loss(idx)``
    (which draws its own noise). ``on_epoch(epoch, mean_loss)`` follows every epoch.
    Used by :mod:`~smoothcert.models.train_tabular` and
    :mod:`~smoothcert.models.train_lipschitz`.

    Args:
        model: the model, on ``device``; left in train mode.
        batch_loss: the loss of a batch of row indices.
        n: rows per epoch, >= 1.
        epochs: passes over the rows, >= 1.
        batch_size: rows per step, >= 1.
        lr: peak learning rate, > 0.
        order_gen: CPU generator of the batch order.
        device: the device of the rows.
        on_epoch: optional callback ``(epoch index, mean batch loss over the rows)``.
    """
    steps = epochs * ((n + batch_size - 1) // batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=order_gen).to(device)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = batch_loss(idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * idx.numel()
        if on_epoch is not None:
            on_epoch(epoch, total / n)


def _train(
    build: Callable[[], nn.Module],
    dataset: str,
    *,
    sigma: float,
    epochs: int,
    seed: int,
    device: torch.device,
    batch_size: int,
    lr: float,
    max_examples: int | None,
    log: Callable[[str], None] | None,
) -> nn.Module:
    target = device

    data = load_dataset(dataset, "train")
    n = len(data) if max_examples is None else min(max_examples, len(data))
    images = torch.from_numpy(data.images[:n].copy()).to(target)
    labels = torch.from_numpy(data.labels[:n].copy()).to(target)

    order_seed, noise_seed = _two_seeds(seed)
    order_gen = torch.Generator().manual_seed(order_seed)
    noise_gen = torch.Generator(device=target).manual_seed(noise_seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    model.to(target)

    steps_per_epoch = (n + batch_size - 1) // batch_size
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=order_gen).to(target)
        total_loss = torch.zeros((), device=target)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            x = images[idx]
            noise = torch.randn(x.shape, generator=noise_gen, device=target, dtype=x.dtype)
            loss = functional.cross_entropy(model(x + sigma * noise), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            total_loss += loss.detach() * idx.numel()
        if log is not None:
            log(f"sigma={sigma!r} epoch {epoch + 1}/{epochs} loss {total_loss.item() / n:.4f}")
    return model.eval()


def noisy_accuracy(
    model: nn.Module,
    *,
    sigma: float,
    dataset: str = "digits",
    split: str = "test",
    votes: int = 1,
    seed: int = 0,
    batch_size: int = 1000,
    max_examples: int | None = None,
) -> float:
    """Accuracy of a model on Gaussian-noised inputs of a dataset split.

    With ``votes = 1`` this is the accuracy of the base model on one noisy copy of
    each example. With ``votes > 1`` each example is classified by a majority vote
    over ``votes`` noisy copies (ties go to the lowest class): a Monte Carlo
    estimate of the smoothed classifier's clean accuracy, with no certificate.

    Args:
        model: maps pixels in [0, 1] of shape ``(B, C, H, W)`` to logits; it is run
            under ``torch.inference_mode`` on the device of its first parameter.
        sigma: noise standard deviation, in [0, 1]-pixel units (> 0).
        dataset: a name from :func:`smoothcert.data.list_datasets`.
        split: the split to evaluate.
        votes: noisy copies per example (>= 1).
        seed: seed of the noise.
        batch_size: inputs per forward pass (>= 1).
        max_examples: if given, evaluate the first ``max_examples`` examples of the
            split only; ``None`` uses the whole split.

    Returns:
        The fraction of correctly classified examples, in [0, 1].

    Raises:
        InvalidParameterError: for an unknown dataset or split, or an argument outside
            its range.

    Example:
        >>> from smoothcert.models import load_model
        >>> from smoothcert.models.train import noisy_accuracy
        >>> noisy_accuracy(load_model(sigma=0.25), sigma=0.25) > 0.9
        True
    """
    sigma = check_positive(sigma, name="sigma")
    votes = check_int(votes, name="votes", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    if max_examples is not None:
        max_examples = check_int(max_examples, name="max_examples", minimum=1)
    data = load_dataset(dataset, split)
    n = len(data) if max_examples is None else min(max_examples, len(data))
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    images = torch.from_numpy(data.images[:n].copy()).to(device)
    labels = torch.from_numpy(data.labels[:n].copy()).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    counts = torch.zeros(n, data.num_classes, dtype=torch.int64, device=device)
    flat_rows = torch.arange(n, device=device).repeat_interleave(votes)
    with torch.inference_mode():
        for start in range(0, flat_rows.numel(), batch_size):
            rows = flat_rows[start : start + batch_size]
            x = images[rows]
            noise = torch.randn(x.shape, generator=gen, device=device, dtype=x.dtype)
            pred = model(x + sigma * noise).argmax(dim=1)
            counts.index_put_((rows, pred), torch.ones_like(pred), accumulate=True)
        correct = counts.argmax(dim=1) == labels
    return float(correct.double().mean().item())


def save_weights(
    model: nn.Module,
    name: str,
    sigma: float,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a model's ``state_dict`` and record its sha256 in the manifest.

    Writes ``{out_dir}/{name}_sigma{sigma}.pt`` (``torch.save`` of the CPU
    ``state_dict``) and adds or replaces its entry in ``{out_dir}/manifest.json``,
    keeping the other entries. Both files are written to a temporary name first and
    then renamed, so a crash never leaves a half-written file in place.

    Args:
        model: a model of architecture ``name`` (its ``state_dict`` must match).
        name: a name from :func:`~smoothcert.models.list_models`.
        sigma: the training noise level, in [0, 1]-pixel units (> 0).
        out_dir: weights directory (created if needed); ``None`` for the package's
            bundled weights directory.
        metadata: extra JSON-serialisable fields for the manifest entry (training
            settings, accuracy, ...).

    Returns:
        Path of the written weight file.

    Raises:
        InvalidParameterError: for an unknown ``name``, a bad ``sigma``, or a model
            whose ``state_dict`` does not fit architecture ``name``.
        AssetError: if an existing manifest in ``out_dir`` is malformed (it is not
            overwritten; delete it to start afresh).
    """
    spec = get_model_spec(name)
    sigma = check_positive(sigma, name="sigma")
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    try:
        spec.build().load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InvalidParameterError(
            f"model of type {type(model).__name__} is invalid for name = {name!r}; valid: a "
            f"model built by the {name!r} architecture ({err})"
        ) from err
    directory = _resolve_dir(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / MANIFEST_NAME).exists():
        manifest = read_manifest(directory)
    else:
        manifest = {"format": MANIFEST_FORMAT, "files": {}}

    buffer = io.BytesIO()
    torch.save(state, buffer)
    blob = buffer.getvalue()
    filename = weights_filename(name, sigma)
    path = directory / filename
    _atomic_write(path, blob)

    files: dict[str, Any] = {
        fn: entry
        for fn, entry in manifest["files"].items()
        if not (entry["model"] == name and abs(float(entry["sigma"]) - sigma) <= 1e-9 * sigma)
    }
    files[filename] = {
        "model": name,
        "sigma": sigma,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size_bytes": len(blob),
        "dataset": spec.dataset,
        "noise": "gaussian N(0, sigma^2) added to pixels in [0, 1], unclipped",
        "torch_version": torch.__version__,
        **(metadata or {}),
    }
    manifest = {"format": MANIFEST_FORMAT, "files": dict(sorted(files.items()))}
    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    _atomic_write(directory / MANIFEST_NAME, text.encode("utf-8"))
    return path


def _atomic_write(path: Path, blob: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise AssetError(f"cannot write {path} ({err})") from err


def train_all(
    sigmas: Iterable[float] = DEFAULT_SIGMAS,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    name: str = "digits_cnn",
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
    log: Callable[[str], None] | None = None,
) -> dict[float, Path]:
    """Train model ``name`` at each sigma and save the weights and manifest.

    This is what ``smoothcert train`` runs. For each sigma it calls
    :func:`train_model`, measures the accuracy on noisy test inputs (one noise draw
    per example, and a 100-vote majority; for ``fmnist_cnn`` the 100-vote majority on
    the first :data:`FMNIST_VOTE_EXAMPLES` test examples, recorded as
    ``test_vote100_examples``), and calls :func:`save_weights` with the
    training settings and those accuracies as manifest metadata. Load the result with
    ``load_model(name, sigma, weights_dir=out_dir)``. With the defaults each sigma
    takes a few seconds on two CPU cores for ``digits_cnn``.

    For ``name = "fmnist_sigma_estimator"`` this trains the sigma estimator of dual
    randomized smoothing once, at its smoothing noise ``sigma_e = 1.0``, with labels
    from the three ``fmnist_cnn`` experts
    (:func:`~smoothcert.models.train_dual.train_sigma_estimator`); ``sigmas`` must be
    ``(1.0,)`` or the default ``(0.25, 0.5, 1.0)`` (the sigmas it chooses from), and the
    result is ``{1.0: path}``.

    For ``name = "listing_filter"`` (text+image) each sigma is trained with token
    noise at ``beta = LISTING_BETA`` as well
    (:func:`~smoothcert.models.train_listings.train_listing_filter`), ``beta`` is
    recorded in the manifest entry, and the metadata holds the clean, noisy and
    25-vote test accuracies.

    Args:
        sigmas: training noise levels, in [0, 1]-pixel units (each > 0).
        out_dir: weights directory; ``None`` overwrites the package's bundled weights
            (the default weights of :func:`~smoothcert.models.load_model`).
        name: a name from :func:`~smoothcert.models.list_models`.
        epochs: training epochs per sigma; None for the model's default
            (:data:`DEFAULT_EPOCHS` = 100 for ``digits_cnn``, :data:`FMNIST_EPOCHS` = 5
            for ``fmnist_cnn``, 25 for ``listing_filter``).
        seed: training seed (the same for every sigma); the evaluation noise uses it too.
        device: torch device to train on.
        threads: CPU threads for training; see :func:`train_model`.
        log: optional callback receiving one summary line per sigma (e.g. ``print``).

    Returns:
        A dict from each sigma to the path of its weight file.

    Raises:
        InvalidParameterError: for an empty ``sigmas``, a bad sigma or any other
            argument outside its range (all checked before training starts).
        AssetError: if an existing manifest in ``out_dir`` is malformed.
    """
    spec = get_model_spec(name)
    sigma_list = [check_positive(s, name="sigma") for s in sigmas]
    if not sigma_list:
        raise InvalidParameterError("sigmas = () is invalid; valid: at least one sigma > 0")
    if spec.kind == "tabular":
        from smoothcert.models import train_tabular as tt

        return tt.train_all_tabular(
            sigma_list, out_dir, epochs=epochs, seed=seed, device=device, threads=threads, log=log
        )
    if name == "fmnist_sigma_estimator":
        return _train_sigma_estimator(
            sigma_list, out_dir, epochs=epochs, seed=seed, device=device, threads=threads, log=log
        )
    if name in LIPSCHITZ_RECIPES:
        return _train_all_lipschitz(
            name,
            sigma_list,
            out_dir,
            epochs=epochs,
            seed=seed,
            device=device,
            threads=threads,
            log=log,
        )
    if spec.kind == "text_image":
        from smoothcert.models import train_listings as tl

        epochs = check_int(
            tl.LISTING_EPOCHS if epochs is None else epochs, name="epochs", minimum=1
        )
    else:
        epochs = check_int(
            _image_defaults(name)[0] if epochs is None else epochs, name="epochs", minimum=1
        )
    seed = check_int(seed, name="seed", minimum=0)
    if threads is not None:
        threads = check_int(threads, name="threads", minimum=1)
    check_device(device)
    if spec.kind == "text_image":
        return _train_all_text_image(
            name,
            sigma_list,
            out_dir,
            epochs=epochs,
            seed=seed,
            device=device,
            threads=threads,
            log=log,
        )
    _, batch_size, lr = _image_defaults(name)
    vote_examples = _VOTE_EXAMPLES.get(name)
    paths: dict[float, Path] = {}
    for sigma in sigma_list:
        start = time.perf_counter()
        model = train_model(
            name, sigma=sigma, epochs=epochs, seed=seed, device=device, threads=threads
        )
        seconds = time.perf_counter() - start
        acc_noisy = noisy_accuracy(model, sigma=sigma, dataset=spec.dataset, seed=seed)
        acc_vote = noisy_accuracy(
            model,
            sigma=sigma,
            dataset=spec.dataset,
            seed=seed,
            votes=100,
            max_examples=vote_examples,
        )
        training: dict[str, Any] = {
            "split": "train",
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": "adam",
            "schedule": "one-cycle",
            "peak_lr": lr,
            "seed": seed,
        }
        if name != "digits_cnn":
            training["threads"] = threads
            training["seconds"] = round(seconds, 1)
        metadata: dict[str, Any] = {
            "training": training,
            "test_accuracy_noisy": round(acc_noisy, 4),
            "test_accuracy_vote100": round(acc_vote, 4),
        }
        if vote_examples is not None:
            metadata["test_vote100_examples"] = vote_examples
        paths[sigma] = save_weights(model, name, sigma, out_dir, metadata=metadata)
        if log is not None:
            log(
                f"{name} sigma={sigma!r}: trained in {seconds:.1f} s, test accuracy on "
                f"noisy inputs {acc_noisy:.3f}, 100-vote majority {acc_vote:.3f} -> "
                f"{paths[sigma]}"
            )
    return paths


def _train_all_lipschitz(
    name: str,
    sigmas: list[float],
    out_dir: str | os.PathLike[str] | None,
    *,
    epochs: int | None,
    seed: int,
    device: str | torch.device,
    threads: int | None,
    log: Callable[[str], None] | None,
) -> dict[float, Path]:
    """:func:`train_all` for a certified-Lipschitz model: records its ``lipschitz``."""
    from smoothcert.models import train_lipschitz as tlip

    recipe = tlip.RECIPES[name]
    epochs = check_int(recipe.epochs if epochs is None else epochs, name="epochs", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    if threads is not None:
        threads = check_int(threads, name="threads", minimum=1)
    check_device(device)
    paths: dict[float, Path] = {}
    for sigma in sigmas:
        start = time.perf_counter()
        model = tlip.train_lipschitz_model(
            name, sigma=sigma, epochs=epochs, seed=seed, device=device, threads=threads
        )
        seconds = time.perf_counter() - start
        clean = tlip.clean_accuracy(model, dataset=recipe.dataset)
        noisy = noisy_accuracy(model, sigma=sigma, dataset=recipe.dataset, seed=seed)
        vote = noisy_accuracy(
            model,
            sigma=sigma,
            dataset=recipe.dataset,
            seed=seed,
            votes=100,
            max_examples=_VOTE_EXAMPLES.get(name),
        )
        lipschitz = float(model.lipschitz)  # type: ignore[arg-type]
        metadata: dict[str, Any] = {
            "lipschitz": lipschitz,
            "lipschitz_norm": "L2, logits per unit of input (pixels in [0, 1])",
            "lipschitz_method": (
                "product of float64-SVD spectral norms of the stored linear weights "
                "(each x (1 + 1e-9)), MaxMin 1-Lipschitz, product x (1 + 1e-6)"
            ),
            "training": {
                "split": "train",
                "epochs": epochs,
                "batch_size": recipe.batch_size,
                "optimizer": "adam",
                "schedule": "one-cycle",
                "peak_lr": recipe.lr,
                "loss_scale": tlip.LIPSCHITZ_LOSS_SCALE,
                "constraint": "orthogonal linear weights (torch parametrizations.orthogonal"
                + (f", {recipe.orthogonal_map} map)" if recipe.orthogonal_map else ")"),
                "seed": seed,
                "threads": threads,
                "seconds": round(seconds, 1),
            },
            "test_accuracy_clean": round(clean, 4),
            "test_accuracy_noisy": round(noisy, 4),
            "test_accuracy_vote100": round(vote, 4),
        }
        if name in _VOTE_EXAMPLES:
            metadata["test_vote100_examples"] = _VOTE_EXAMPLES[name]
        paths[sigma] = save_weights(model, name, sigma, out_dir, metadata=metadata)
        if log is not None:
            log(
                f"{name} sigma={sigma!r}: trained in {seconds:.1f} s, certified L "
                f"{lipschitz:.7f}, test accuracy clean {clean:.3f}, on noisy inputs "
                f"{noisy:.3f}, 100-vote majority {vote:.3f} -> {paths[sigma]}"
            )
    return paths


def _train_sigma_estimator(
    sigmas: list[float],
    out_dir: str | os.PathLike[str] | None,
    *,
    epochs: int | None,
    seed: int,
    device: str | torch.device,
    threads: int | None,
    log: Callable[[str], None] | None,
) -> dict[float, Path]:
    """:func:`train_all` for the dual-RS sigma estimator (one weight file, at sigma_e)."""
    from smoothcert.models import train_dual as td

    if sigmas != [td.SIGMA_E] and tuple(sigmas) != td.DUAL_SIGMAS:
        raise InvalidParameterError(
            f"sigmas = {tuple(sigmas)!r} is invalid for {td.ESTIMATOR_NAME!r}; valid: "
            f"({td.SIGMA_E!r},) (its smoothing noise sigma_e) or {td.DUAL_SIGMAS!r} (the "
            "experts' sigmas it chooses from, the default); both train the one estimator"
        )
    path = td.train_sigma_estimator(
        out_dir,
        epochs=td.ESTIMATOR_EPOCHS if epochs is None else epochs,
        seed=seed,
        device=device,
        threads=threads,
        log=log,
    )
    return {td.SIGMA_E: path}


def _train_all_text_image(
    name: str,
    sigmas: list[float],
    out_dir: str | os.PathLike[str] | None,
    *,
    epochs: int,
    seed: int,
    device: str | torch.device,
    threads: int | None,
    log: Callable[[str], None] | None,
) -> dict[float, Path]:
    """:func:`train_all` for the text+image ``listing_filter``."""
    from smoothcert.models import train_listings as tl

    beta = tl.LISTING_BETA
    paths: dict[float, Path] = {}
    for sigma in sigmas:
        start = time.perf_counter()
        model = tl.train_listing_filter(
            sigma=sigma, beta=beta, epochs=epochs, seed=seed, device=device, threads=threads
        )
        seconds = time.perf_counter() - start
        clean = tl.listing_accuracy(model)
        noisy = tl.listing_accuracy(model, beta=beta, sigma=sigma, seed=seed)
        vote = tl.listing_accuracy(model, beta=beta, sigma=sigma, seed=seed, votes=25)
        metadata = {
            "beta": beta,
            "noise": (
                "uniform token substitution at beta over the 30,522-id vocabulary on the "
                "description's tokens (not [CLS]/[SEP]/[PAD]), and gaussian N(0, sigma^2) "
                "added to pixels in [0, 1], unclipped"
            ),
            "kind": "text_image",
            "training": {
                "split": "train",
                "epochs": epochs,
                "batch_size": tl.LISTING_BATCH_SIZE,
                "optimizer": "adam",
                "schedule": "one-cycle",
                "peak_lr": tl.LISTING_LR,
                "aux_weight": tl.AUX_WEIGHT,
                "seed": seed,
                "threads": threads,
            },
            "test_accuracy_clean": round(clean, 4),
            "test_accuracy_noisy": round(noisy, 4),
            "test_accuracy_vote25": round(vote, 4),
        }
        paths[sigma] = save_weights(model, name, sigma, out_dir, metadata=metadata)
        if log is not None:
            log(
                f"{name} sigma={sigma!r} beta={beta!r}: trained in {seconds:.1f} s, test "
                f"accuracy clean {clean:.3f}, on noisy inputs {noisy:.3f}, 25-vote majority "
                f"{vote:.3f} -> {paths[sigma]}"
            )
    return paths

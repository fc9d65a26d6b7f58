"""Training the certified-Lipschitz networks ``digits_lipschitz`` and ``fmnist_lipschitz``.

A :class:`~smoothcert.models.lipschitz.LipschitzMLP` is trained with every linear
weight constrained to be orthogonal (:func:`~smoothcert.models.lipschitz.orthogonalize`),
Gaussian noise augmentation at ``sigma`` (fresh ``N(0, sigma^2)`` on every pixel of the
unclipped [0, 1] images at each step), Adam with a one-cycle schedule and cross-entropy
on ``LIPSCHITZ_LOSS_SCALE * logits`` (a 1-Lipschitz network has small logit margins; the
scale plays the role of the softmax temperature during training only, the certified
constant is that of the unscaled logits). After training the weights are made plain
matrices (:func:`~smoothcert.models.lipschitz.unparametrize`) and the certified
constant of the logits is computed from them
(:func:`~smoothcert.models.lipschitz.lipschitz_upper_bound`); :func:`train_all`
records it in the manifest as ``"lipschitz"`` next to the sha256.

Deterministic for a seed (forked global RNG for the initial weights, explicit
generators for the batch order and the noise), on one thread. The per-model settings
(dataset, epochs, batch size, learning rate, orthogonal map) are in :data:`RECIPES`.

Example:
    >>> model = train_digits_lipschitz(sigma=0.5, epochs=1, max_examples=64)
    >>> 1.0 <= model.lipschitz < 1.0001
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from smoothcert._validation import check_int, check_positive
from smoothcert.data import load_dataset
from smoothcert.errors import InvalidParameterError
from smoothcert.models.lipschitz import (
    DigitsLipschitzNet,
    FashionLipschitzNet,
    LipschitzMLP,
    lipschitz_upper_bound,
    orthogonalize,
    unparametrize,
)
from smoothcert.sampling.device import check_device

__all__ = [
    "LIPSCHITZ_BATCH_SIZE",
    "LIPSCHITZ_EPOCHS",
    "LIPSCHITZ_LOSS_SCALE",
    "LIPSCHITZ_LR",
    "RECIPES",
    "LipschitzRecipe",
    "clean_accuracy",
    "train_digits_lipschitz",
    "train_lipschitz_model",
]

LIPSCHITZ_EPOCHS = 100
"""Passes over the digits training split."""

LIPSCHITZ_BATCH_SIZE = 128
"""Training batch size."""

LIPSCHITZ_LR = 1e-2
"""Peak learning rate of the one-cycle schedule (Adam)."""

LIPSCHITZ_LOSS_SCALE = 16.0
"""The cross-entropy is taken on ``LIPSCHITZ_LOSS_SCALE * logits`` during training."""


@dataclass(frozen=True)
class LipschitzRecipe:
    """How one certified-Lipschitz model is trained (defaults of :func:`train_lipschitz_model`).

    Attributes:
        dataset: training dataset (its ``train`` split).
        build: constructor of the untrained :class:`~smoothcert.models.lipschitz.LipschitzMLP`.
        epochs: passes over the training split.
        batch_size: examples per step.
        lr: peak learning rate of the one-cycle schedule (Adam).
        orthogonal_map: ``parametrizations.orthogonal``'s map (None: PyTorch's default).
    """

    dataset: str
    build: Callable[[], LipschitzMLP]
    epochs: int
    batch_size: int
    lr: float
    orthogonal_map: str | None = None


RECIPES: dict[str, LipschitzRecipe] = {
    "digits_lipschitz": LipschitzRecipe(
        "digits", DigitsLipschitzNet, LIPSCHITZ_EPOCHS, LIPSCHITZ_BATCH_SIZE, LIPSCHITZ_LR
    ),
    # Cayley: about 5x faster than the default map for the 784 -> 256 layer on a CPU.
    "fmnist_lipschitz": LipschitzRecipe(
        "fashion_mnist", FashionLipschitzNet, 12, 256, 5e-3, orthogonal_map="cayley"
    ),
}
"""The bundled certified-Lipschitz models and their training settings."""


def train_digits_lipschitz(**kwargs: Any) -> nn.Module:
    """:func:`train_lipschitz_model` for ``digits_lipschitz`` (same keyword arguments)."""
    return train_lipschitz_model("digits_lipschitz", **kwargs)


def train_lipschitz_model(
    name: str,
    *,
    sigma: float,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    lr: float | None = None,
    loss_scale: float = LIPSCHITZ_LOSS_SCALE,
    max_examples: int | None = None,
    threads: int | None = 1,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """Train a certified-Lipschitz model with Gaussian noise at ``sigma`` (module docstring).

    Args:
        name: a key of :data:`RECIPES` (``"digits_lipschitz"``, ``"fmnist_lipschitz"``).
        sigma: training noise standard deviation, [0, 1]-pixel units, > 0.
        epochs: passes over the training examples, >= 1 (None: the recipe's).
        seed: seed of the initial weights, batch order and noise, >= 0.
        device: torch device to train on.
        batch_size: examples per step, >= 1 (None: the recipe's).
        lr: peak learning rate, > 0 (None: the recipe's).
        loss_scale: the logits are multiplied by it inside the loss, > 0.
        max_examples: train on the first ``max_examples`` training examples only.
        threads: CPU threads while training (restored afterwards); None keeps them.
        log: optional callback receiving one line per epoch.

    Returns:
        The trained model in eval mode, with plain (unparametrized) weights and the
        attributes ``sigma`` and ``lipschitz`` (the certified L2 constant of its logits).

    Raises:
        InvalidParameterError: on an unknown ``name`` or an argument outside its range.
    """
    if name not in RECIPES:
        raise InvalidParameterError(f"name = {name!r} is invalid; valid values: {sorted(RECIPES)}")
    recipe = RECIPES[name]
    sigma = check_positive(sigma, name="sigma")
    epochs = check_int(recipe.epochs if epochs is None else epochs, name="epochs", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    batch_size = check_int(
        recipe.batch_size if batch_size is None else batch_size, name="batch_size", minimum=1
    )
    lr = check_positive(recipe.lr if lr is None else lr, name="lr")
    loss_scale = check_positive(loss_scale, name="loss_scale")
    if max_examples is not None:
        max_examples = check_int(max_examples, name="max_examples", minimum=1)
    target = check_device(device)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int(threads, name="threads", minimum=1))
    try:
        from smoothcert.models.train import _two_seeds, fit_one_cycle

        data = load_dataset(recipe.dataset, "train")
        n = len(data) if max_examples is None else min(max_examples, len(data))
        images = torch.from_numpy(data.images[:n].copy()).to(target)
        labels = torch.from_numpy(data.labels[:n].copy()).to(target)
        order_seed, noise_seed = _two_seeds(seed)
        order_gen = torch.Generator().manual_seed(order_seed)
        noise_gen = torch.Generator(device=target).manual_seed(noise_seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = orthogonalize(recipe.build(), orthogonal_map=recipe.orthogonal_map)
        model.to(target)

        def batch_loss(idx: torch.Tensor) -> torch.Tensor:
            x = images[idx]
            noise = torch.randn(x.shape, generator=noise_gen, device=target, dtype=x.dtype)
            logits = model(x + sigma * noise)
            return functional.cross_entropy(loss_scale * logits, labels[idx])

        def on_epoch(epoch: int, loss: float) -> None:
            if log is not None:
                log(f"{name} sigma={sigma!r} epoch {epoch + 1}/{epochs} loss {loss:.4f}")

        fit_one_cycle(
            model,
            batch_loss,
            n=n,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            order_gen=order_gen,
            device=target,
            on_epoch=on_epoch,
        )
    finally:
        torch.set_num_threads(previous)
    model = unparametrize(model).eval()
    model.sigma = sigma  # type: ignore[assignment]
    model.lipschitz = lipschitz_upper_bound(model)  # type: ignore[assignment]
    return model


def clean_accuracy(model: nn.Module, *, dataset: str = "digits", split: str = "test") -> float:
    """Accuracy of ``model`` on the clean ``split`` of ``dataset`` (no noise)."""
    data = load_dataset(dataset, split)
    images = torch.from_numpy(data.images.copy())
    with torch.inference_mode():
        pred = torch.cat([model(chunk).argmax(dim=1) for chunk in images.split(4096)])
    return float((pred.numpy() == data.labels).mean())

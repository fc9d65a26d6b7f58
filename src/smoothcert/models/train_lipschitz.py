"""Training the certified-Lipschitz digits network ``digits_lipschitz``.

:class:`~smoothcert.models.lipschitz.DigitsLipschitzNet` is trained with every linear
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
generators for the batch order and the noise), on one thread.

Example:
    >>> model = train_digits_lipschitz(sigma=0.5, epochs=1, max_examples=64)
    >>> 1.0 <= model.lipschitz < 1.0001
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional

from smoothcert._validation import check_int, check_positive
from smoothcert.data import load_dataset
from smoothcert.models.lipschitz import (
    DigitsLipschitzNet,
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
    "clean_accuracy",
    "train_digits_lipschitz",
]

LIPSCHITZ_EPOCHS = 100
"""Passes over the digits training split."""

LIPSCHITZ_BATCH_SIZE = 128
"""Training batch size."""

LIPSCHITZ_LR = 1e-2
"""Peak learning rate of the one-cycle schedule (Adam)."""

LIPSCHITZ_LOSS_SCALE = 16.0
"""The cross-entropy is taken on ``LIPSCHITZ_LOSS_SCALE * logits`` during training."""


def train_digits_lipschitz(
    *,
    sigma: float,
    epochs: int = LIPSCHITZ_EPOCHS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = LIPSCHITZ_BATCH_SIZE,
    lr: float = LIPSCHITZ_LR,
    loss_scale: float = LIPSCHITZ_LOSS_SCALE,
    max_examples: int | None = None,
    threads: int | None = 1,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """Train ``digits_lipschitz`` with Gaussian noise at ``sigma`` (module docstring).

    Args:
        sigma: training noise standard deviation, [0, 1]-pixel units, > 0.
        epochs: passes over the training examples, >= 1.
        seed: seed of the initial weights, batch order and noise, >= 0.
        device: torch device to train on.
        batch_size: examples per step, >= 1.
        lr: peak learning rate, > 0.
        loss_scale: the logits are multiplied by it inside the loss, > 0.
        max_examples: train on the first ``max_examples`` training examples only.
        threads: CPU threads while training (restored afterwards); None keeps them.
        log: optional callback receiving one line per epoch.

    Returns:
        The trained model in eval mode, with plain (unparametrized) weights and the
        attributes ``sigma`` and ``lipschitz`` (the certified L2 constant of its logits).

    Raises:
        InvalidParameterError: on an argument outside its range.
    """
    sigma = check_positive(sigma, name="sigma")
    epochs = check_int(epochs, name="epochs", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    lr = check_positive(lr, name="lr")
    loss_scale = check_positive(loss_scale, name="loss_scale")
    if max_examples is not None:
        max_examples = check_int(max_examples, name="max_examples", minimum=1)
    target = check_device(device)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int(threads, name="threads", minimum=1))
    try:
        from smoothcert.models.train import _two_seeds

        data = load_dataset("digits", "train")
        n = len(data) if max_examples is None else min(max_examples, len(data))
        images = torch.from_numpy(data.images[:n].copy()).to(target)
        labels = torch.from_numpy(data.labels[:n].copy()).to(target)
        order_seed, noise_seed = _two_seeds(seed)
        order_gen = torch.Generator().manual_seed(order_seed)
        noise_gen = torch.Generator(device=target).manual_seed(noise_seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = orthogonalize(DigitsLipschitzNet())
        model.to(target)
        steps = epochs * ((n + batch_size - 1) // batch_size)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
        model.train()
        for epoch in range(epochs):
            perm = torch.randperm(n, generator=order_gen).to(target)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                x = images[idx]
                noise = torch.randn(x.shape, generator=noise_gen, device=target, dtype=x.dtype)
                logits = model(x + sigma * noise)
                loss = functional.cross_entropy(loss_scale * logits, labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * idx.numel()
            if log is not None:
                log(
                    f"digits_lipschitz sigma={sigma!r} epoch {epoch + 1}/{epochs} "
                    f"loss {total / n:.4f}"
                )
    finally:
        torch.set_num_threads(previous)
    model = unparametrize(model).eval()
    model.sigma = sigma  # type: ignore[assignment]
    model.lipschitz = lipschitz_upper_bound(model)  # type: ignore[assignment]
    return model


def clean_accuracy(model: nn.Module, *, split: str = "test") -> float:
    """Accuracy of ``model`` on the clean digits ``split`` (no noise)."""
    data = load_dataset("digits", split)
    with torch.inference_mode():
        pred = model(torch.from_numpy(data.images.copy())).argmax(dim=1).numpy()
    return float((pred == data.labels).mean())

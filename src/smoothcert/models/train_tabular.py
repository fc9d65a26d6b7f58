"""Training the ``tabular_mlp`` model on the ``"fair"`` table with both noises of hybrid smoothing.

The tabular certificate (:mod:`smoothcert.methods.fields`; Delattre et al. 2026, arXiv
2605.12876) smooths a model with each categorical field's own uniform substitution
kernel and Gaussian noise on the continuous columns; its base model is trained on
inputs with that same noise, drawn fresh at every step for every row:

* field ``f``: keep the id with probability ``1 - beta_f``, else ``(id + u) mod V_f``
  with ``u`` uniform on ``1..V_f-1`` (one of the ``V_f - 1`` other ids uniformly; the
  law of :class:`~smoothcert.noise.fields.FieldsNoise`), with ``beta_f`` =
  :data:`TABULAR_BETAS`;
* continuous columns: ``N(0, sigma^2)`` added (train standard-deviation units).

Cross-entropy, Adam with a one-cycle schedule, one CPU thread by default;
deterministic for a seed on a given machine and torch version. ``smoothcert train
--model tabular_mlp`` runs :func:`train_all_tabular` (through
:func:`smoothcert.models.train.train_all`).

Example:
    >>> model = train_tabular_mlp(sigma=0.5, epochs=1, max_examples=256)
    >>> model.training, model.sigma, model.field_betas
    (False, 0.5, (0.3, 0.35, 0.45, 0.45, 0.45))
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from smoothcert._validation import check_int, check_open_unit, check_positive
from smoothcert.data import TabularDataset, load_dataset
from smoothcert.models.tabular import TabularMLP
from smoothcert.sampling.device import check_device

__all__ = [
    "TABULAR_BATCH_SIZE",
    "TABULAR_BETAS",
    "TABULAR_EPOCHS",
    "TABULAR_LR",
    "substitute_fields",
    "tabular_accuracy",
    "train_all_tabular",
    "train_tabular_mlp",
]

TABULAR_BETAS = (0.3, 0.35, 0.45, 0.45, 0.45)
"""Substitution probability of each ``"fair"`` field (rate_marriage V=5, religious V=4,
educ, occupation, occupation_husb V=6): less noise on the two most predictive fields.
A majority vote certifies one changed field (whichever of the five) once ``p_lower`` is
about 0.947, two once it is about 0.987. (At about ``0.7 (V_f - 1) / V_f`` the smoothed
model fell to the majority-class rate, 0.661 on the test split.)"""

TABULAR_EPOCHS = 60
"""Passes over the 4,366 training rows (fresh noise each pass)."""

TABULAR_BATCH_SIZE = 128
"""Training batch size."""

TABULAR_LR = 3e-3
"""Peak learning rate of the one-cycle schedule (Adam)."""


def substitute_fields(
    tokens: torch.Tensor,
    *,
    vocab_sizes: Sequence[int],
    betas: Sequence[float],
    generator: torch.Generator,
) -> torch.Tensor:
    """Each field's uniform substitution noise on a batch ``(B, F)``, one draw per row.

    Field ``f``: keep with probability ``1 - beta_f``, else ``(id + u) mod V_f`` with
    ``u`` uniform on ``1..V_f-1``. The law of :class:`~smoothcert.noise.fields.FieldsNoise`
    (``torch.rand < beta`` is exact up to float32 rounding, which only matters for
    training).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> out = substitute_fields(torch.zeros(4000, 2, dtype=torch.long), vocab_sizes=(2, 6),
        ...                         betas=(0.3, 0.5), generator=g)
        >>> [round(float(v), 1) for v in (out != 0).float().mean(0)]
        [0.3, 0.5]
    """
    sizes = torch.tensor(list(vocab_sizes), device=tokens.device)
    beta = torch.tensor(list(betas), device=tokens.device)
    replace = torch.rand(tokens.shape, generator=generator, device=tokens.device) < beta
    u = torch.rand(tokens.shape, generator=generator, device=tokens.device, dtype=torch.float64)
    offset = 1 + torch.minimum((u * (sizes - 1)).long(), sizes - 2)
    return torch.where(replace, (tokens + offset) % sizes, tokens)


def _fair(split: str, max_examples: int | None = None) -> TabularDataset:
    data = load_dataset("fair", split)
    assert isinstance(data, TabularDataset)
    return data if max_examples is None else data.subset(slice(0, max_examples))


def train_tabular_mlp(
    *,
    sigma: float,
    betas: Sequence[float] = TABULAR_BETAS,
    epochs: int = TABULAR_EPOCHS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = TABULAR_BATCH_SIZE,
    lr: float = TABULAR_LR,
    max_examples: int | None = None,
    threads: int | None = 1,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """Train :class:`~smoothcert.models.tabular.TabularMLP` on the ``"fair"`` train split.

    Args:
        sigma: continuous noise standard deviation, train standard deviations (> 0).
        betas: substitution probability of each field, in (0, 1).
        epochs: passes over the training rows (>= 1).
        seed: seed of the initial weights, batch order and both noises (>= 0).
        device: torch device to train on.
        batch_size: rows per step (>= 1).
        lr: peak learning rate (> 0).
        max_examples: train on the first ``max_examples`` rows only (quick tests).
        threads: CPU threads while training (restored afterwards); None keeps the setting.
        log: optional callback receiving one line per 10 epochs.

    Returns:
        The model in eval mode, with attributes ``sigma`` and ``field_betas``.

    Raises:
        InvalidParameterError: for any argument outside its range.
    """
    from smoothcert.models.train import _two_seeds, fit_one_cycle

    sigma = check_positive(sigma, name="sigma")
    betas = tuple(check_open_unit(b, name="field beta") for b in betas)
    epochs = check_int(epochs, name="epochs", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    lr = check_positive(lr, name="lr")
    target = check_device(device)
    data = _fair("train", max_examples)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int(threads, name="threads", minimum=1))
    try:
        order_seed, noise_seed = _two_seeds(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = TabularMLP()
        model.to(target)
        tokens = torch.from_numpy(data.tokens.copy()).to(target)
        cont = torch.from_numpy(data.images.copy()).to(target)
        labels = torch.from_numpy(data.labels.copy()).to(target)
        n = len(data)
        order_gen = torch.Generator().manual_seed(order_seed)
        noise_gen = torch.Generator(device=target).manual_seed(noise_seed)

        def batch_loss(idx: torch.Tensor) -> torch.Tensor:
            toks = substitute_fields(
                tokens[idx],
                vocab_sizes=model.field_vocab_sizes,
                betas=betas,
                generator=noise_gen,
            )
            x = cont[idx]
            x = x + sigma * torch.randn(x.shape, generator=noise_gen, device=target)
            return functional.cross_entropy(model(toks, x), labels[idx])

        def on_epoch(epoch: int, loss: float) -> None:
            if log is not None and (epoch + 1) % 10 == 0:
                log(f"tabular_mlp sigma={sigma!r} epoch {epoch + 1}/{epochs} loss {loss:.4f}")

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
    model.eval()
    model.sigma = sigma  # type: ignore[assignment]
    model.field_betas = betas  # type: ignore[assignment]
    return model


def tabular_accuracy(
    model: nn.Module,
    *,
    sigma: float | None = None,
    betas: Sequence[float] | None = None,
    split: str = "test",
    votes: int = 1,
    seed: int = 0,
) -> float:
    """Accuracy of a tabular model on a ``"fair"`` split, clean or under both noises.

    With ``sigma`` and ``betas`` None the rows are clean (``votes`` must be 1).
    Otherwise each row gets ``votes`` noisy copies classified by majority (ties to
    class 0): ``votes = 1`` is the base model under noise, more a Monte Carlo estimate
    of the smoothed model's clean accuracy (no certificate).

    Example:
        >>> from smoothcert.models import load_model
        >>> tabular_accuracy(load_model("tabular_mlp", sigma=0.5)) > 0.68
        True
    """
    votes = check_int(votes, name="votes", minimum=1)
    if (sigma is None) != (betas is None) or (sigma is None and votes != 1):
        from smoothcert.errors import InvalidParameterError

        raise InvalidParameterError(
            f"sigma = {sigma!r}, betas = {betas!r}, votes = {votes} is invalid; valid: both "
            "noises given, or neither with votes = 1"
        )
    data = _fair(split)
    first = next(iter(model.parameters()))
    dev = first.device
    tokens = torch.from_numpy(data.tokens.copy()).to(dev)
    cont = torch.from_numpy(data.images.copy()).to(dev)
    labels = torch.from_numpy(data.labels.copy()).to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    counts = torch.zeros(len(data), 2, dtype=torch.int64, device=dev)
    with torch.inference_mode():
        for _ in range(votes):
            toks, x = tokens, cont
            if sigma is not None and betas is not None:
                toks = substitute_fields(
                    tokens,
                    vocab_sizes=TabularMLP.field_vocab_sizes,
                    betas=betas,
                    generator=gen,
                )
                x = cont + sigma * torch.randn(cont.shape, generator=gen, device=dev)
            pred = model(toks, x).argmax(dim=1)
            counts[torch.arange(len(data), device=dev), pred] += 1
    return float((counts.argmax(dim=1) == labels).double().mean())


def train_all_tabular(
    sigmas: Sequence[float],
    out_dir: str | os.PathLike[str] | None,
    *,
    epochs: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
    log: Callable[[str], None] | None = None,
) -> dict[float, Path]:
    """Train ``tabular_mlp`` at each sigma and save weights + manifest entries.

    The manifest entry records ``field_betas``, ``field_vocab_sizes``, the training
    settings and the clean, noisy and 25-vote test accuracies.
    """
    from smoothcert.models.train import save_weights

    epochs = check_int(TABULAR_EPOCHS if epochs is None else epochs, name="epochs", minimum=1)
    paths: dict[float, Path] = {}
    for sigma in sigmas:
        start = time.perf_counter()
        model = train_tabular_mlp(
            sigma=sigma, epochs=epochs, seed=seed, device=device, threads=threads
        )
        seconds = time.perf_counter() - start
        clean = tabular_accuracy(model)
        noisy = tabular_accuracy(model, sigma=sigma, betas=TABULAR_BETAS, seed=seed)
        vote = tabular_accuracy(model, sigma=sigma, betas=TABULAR_BETAS, seed=seed, votes=25)
        metadata: dict[str, Any] = {
            "field_betas": list(TABULAR_BETAS),
            "field_vocab_sizes": list(TabularMLP.field_vocab_sizes),
            "noise": (
                "per categorical field: uniform substitution at field_betas[f] over its "
                "field_vocab_sizes[f] ids; gaussian N(0, sigma^2) added to the continuous "
                "columns (train standard deviations)"
            ),
            "kind": "tabular",
            "training": {
                "split": "train",
                "epochs": epochs,
                "batch_size": TABULAR_BATCH_SIZE,
                "optimizer": "adam",
                "schedule": "one-cycle",
                "peak_lr": TABULAR_LR,
                "seed": seed,
                "threads": threads,
                "seconds": round(seconds, 1),
            },
            "test_accuracy_clean": round(clean, 4),
            "test_accuracy_noisy": round(noisy, 4),
            "test_accuracy_vote25": round(vote, 4),
        }
        paths[sigma] = save_weights(model, "tabular_mlp", sigma, out_dir, metadata=metadata)
        if log is not None:
            log(
                f"tabular_mlp sigma={sigma!r}: trained in {seconds:.1f} s, test accuracy clean "
                f"{clean:.3f}, noisy {noisy:.3f}, 25-vote {vote:.3f} -> {paths[sigma]}"
            )
    return paths

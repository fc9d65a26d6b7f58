"""Training and evaluating the listing moderation filter with both noises of the hybrid kernel.

The hybrid certificate (Delattre et al. 2026, arXiv 2605.12876) smooths a text+image
model with the product of a token kernel and Gaussian image noise. Its base model is
only accurate if it was trained on inputs with that same noise, so
:func:`train_listing_filter` draws, fresh at every step and for every pair:

* token noise: the ``"uniform"`` substitution kernel over the whole 30,522-id
  vocabulary, at the description's own tokens (:attr:`TextImageDataset.eligible`: not
  ``[CLS]``, ``[SEP]`` or padding): each such token is kept with probability
  ``1 - beta``, else replaced by one of the other 30,521 ids uniformly
  (:func:`substitute_tokens`; the same law as
  ``TokenSubstitutionNoise(beta=beta, alphabet=30522)``);
* image noise: ``N(0, sigma^2)`` added to every pixel in [0, 1], unclipped.

Loss: cross-entropy of the pair label (match / mismatch) plus ``AUX_WEIGHT`` times the
cross-entropy of two auxiliary heads that name the image's class and the class the
description names (training only; they give each branch a direct signal). Adam with a
one-cycle schedule. Deterministic for a seed on a given machine, torch version and
thread count (one thread by default).

``smoothcert train --model listing_filter`` runs :func:`smoothcert.models.train.train_all`,
which calls :func:`train_listing_filter` at every sigma with ``beta = LISTING_BETA``.

Example:
    >>> from smoothcert.models.train_listings import train_listing_filter
    >>> model = train_listing_filter(sigma=0.25, epochs=1, max_examples=256)
    >>> model.training, model.sigma, model.beta
    (False, 0.25, 0.7)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional

from smoothcert._validation import check_int, check_open_unit, check_positive
from smoothcert.data import TextImageDataset, load_dataset
from smoothcert.errors import InvalidParameterError
from smoothcert.models.architectures import ListingFilter
from smoothcert.sampling.device import check_device

__all__ = [
    "AUX_WEIGHT",
    "LISTING_BATCH_SIZE",
    "LISTING_BETA",
    "LISTING_EPOCHS",
    "LISTING_LR",
    "listing_accuracy",
    "substitute_tokens",
    "train_listing_filter",
]

LISTING_BETA = 0.7
"""Token substitution probability of the shipped ``listing_filter`` weights.

At ``beta = 0.7`` over the 30,522-id vocabulary a majority vote certifies ``d = 1``
substituted token once ``p_lower >= 0.8`` (``d = 0`` needs only ``p_lower > 0.5``);
``beta <= 0.5`` never certifies ``d >= 1`` at ``tau = 1/2`` whatever ``n``."""

LISTING_EPOCHS = 25
"""Passes over the 6,000 training pairs (fresh noise each pass)."""

LISTING_BATCH_SIZE = 128
"""Training batch size."""

LISTING_LR = 3e-3
"""Peak learning rate of the one-cycle schedule (Adam)."""

AUX_WEIGHT = 0.5
"""Weight of each auxiliary class loss (image class, described class)."""


def substitute_tokens(
    tokens: torch.Tensor,
    eligible: torch.Tensor,
    *,
    beta: float,
    vocab_size: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """Uniform token substitution noise on a batch, one independent draw per row.

    At each eligible position, independently: keep the token with probability
    ``1 - beta``, otherwise replace it by ``(token + u) mod V`` with ``u`` uniform on
    ``1..V-1``, i.e. by one of the ``V - 1`` other ids uniformly. This is the law of
    ``TokenSubstitutionNoise(beta=beta, alphabet=V)`` (alphabet ``0..V-1``), drawn for a
    whole batch of different sequences at once (``torch.rand < beta`` is exact up to
    float32 rounding of ``beta``, which only matters for training).

    Args:
        tokens: int64 ``(B, L)`` ids in ``[0, V)``.
        eligible: bool ``(B, L)``; positions that may change.
        beta: substitution probability, in (0, 1).
        vocab_size: ``V >= 2``.
        generator: a ``torch.Generator`` on the tokens' device.

    Returns:
        A new int64 ``(B, L)`` tensor.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> tokens = torch.full((4000, 3), 7)
        >>> eligible = torch.tensor([[False, True, True]]).expand(4000, 3)
        >>> out = substitute_tokens(tokens, eligible, beta=0.3, vocab_size=10, generator=g)
        >>> bool((out[:, 0] == 7).all()), round(float((out[:, 1:] != 7).float().mean()), 2)
        (True, 0.3)
    """
    beta = check_open_unit(beta, name="beta")
    vocab_size = check_int(vocab_size, name="vocab_size", minimum=2)
    u = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    offset = torch.randint(1, vocab_size, tokens.shape, generator=generator, device=tokens.device)
    replace = (u < beta) & eligible
    return torch.where(replace, (tokens + offset) % vocab_size, tokens)


def _tensors(data: TextImageDataset, device: torch.device) -> dict[str, torch.Tensor]:
    out = {
        "tokens": torch.from_numpy(data.tokens.copy()),
        "images": torch.from_numpy(data.images.copy()),
        "labels": torch.from_numpy(data.labels.copy()),
        "eligible": torch.from_numpy(data.eligible.copy()),
    }
    if data.image_class is not None and data.text_class is not None:
        out["image_class"] = torch.from_numpy(data.image_class.copy())
        out["text_class"] = torch.from_numpy(data.text_class.copy())
    return {k: v.to(device) for k, v in out.items()}


def train_listing_filter(
    *,
    sigma: float,
    beta: float = LISTING_BETA,
    epochs: int = LISTING_EPOCHS,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = LISTING_BATCH_SIZE,
    lr: float = LISTING_LR,
    max_examples: int | None = None,
    threads: int | None = 1,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """Train :class:`~smoothcert.models.ListingFilter` with token and image noise.

    Uses the ``"listings"`` ``"train"`` split only. The embedding table's vocabulary
    (:meth:`ListingFilter.set_vocabulary`) is the set of ids in those descriptions.

    Args:
        sigma: image noise standard deviation, in [0, 1]-pixel units (> 0).
        beta: token substitution probability, in (0, 1).
        epochs: passes over the training pairs (>= 1).
        seed: seed of the initial weights, batch order and both noises (>= 0).
        device: torch device to train on.
        batch_size: pairs per step (>= 1).
        lr: peak learning rate (> 0).
        max_examples: train on the first ``max_examples`` pairs only (quick tests).
        threads: CPU threads while training (restored afterwards); ``None`` keeps the
            current setting.
        log: optional callback receiving one line per epoch.

    Returns:
        The model in eval mode on ``device``, with attributes ``sigma`` and ``beta``.

    Raises:
        InvalidParameterError: for any argument outside its range.
    """
    from smoothcert.models.train import _two_seeds

    sigma = check_positive(sigma, name="sigma")
    beta = check_open_unit(beta, name="beta")
    epochs = check_int(epochs, name="epochs", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    lr = check_positive(lr, name="lr")
    if max_examples is not None:
        max_examples = check_int(max_examples, name="max_examples", minimum=1)
    if threads is not None:
        threads = check_int(threads, name="threads", minimum=1)
    target = check_device(device)
    data = load_dataset("listings", "train")
    if not isinstance(data, TextImageDataset):  # pragma: no cover - registry guarantees it
        raise InvalidParameterError("dataset 'listings' is not a text+image dataset")
    if max_examples is not None:
        data = data.subset(slice(0, max_examples))
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        model = _train(
            data,
            sigma=sigma,
            beta=beta,
            epochs=epochs,
            seed=seed,
            device=target,
            batch_size=batch_size,
            lr=lr,
            seeds=_two_seeds(seed),
            log=log,
        )
    finally:
        torch.set_num_threads(previous_threads)
    model.sigma = sigma  # type: ignore[assignment]
    model.beta = beta  # type: ignore[assignment]
    return model


def _train(
    data: TextImageDataset,
    *,
    sigma: float,
    beta: float,
    epochs: int,
    seed: int,
    device: torch.device,
    batch_size: int,
    lr: float,
    seeds: tuple[int, int],
    log: Callable[[str], None] | None,
) -> nn.Module:
    t = _tensors(data, device)
    n = len(data)
    order_gen = torch.Generator().manual_seed(seeds[0])
    noise_gen = torch.Generator(device=device).manual_seed(seeds[1])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ListingFilter()
    model.set_vocabulary(t["tokens"].cpu())
    model.to(device)
    steps = epochs * ((n + batch_size - 1) // batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=order_gen).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            tokens = substitute_tokens(
                t["tokens"][idx],
                t["eligible"][idx],
                beta=beta,
                vocab_size=model.vocab_size,
                generator=noise_gen,
            )
            x = t["images"][idx]
            x = x + sigma * torch.randn(x.shape, generator=noise_gen, device=device, dtype=x.dtype)
            logits, text_logits, image_logits = model.forward_with_aux(tokens, x)
            loss = functional.cross_entropy(logits, t["labels"][idx])
            if "image_class" in t:
                loss = loss + AUX_WEIGHT * (
                    functional.cross_entropy(text_logits, t["text_class"][idx])
                    + functional.cross_entropy(image_logits, t["image_class"][idx])
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            total += loss.detach() * idx.numel()
        if log is not None:
            log(
                f"listing_filter sigma={sigma!r} beta={beta!r} epoch {epoch + 1}/{epochs} "
                f"loss {total.item() / n:.4f}"
            )
    return model.eval()


def listing_accuracy(
    model: nn.Module,
    *,
    beta: float | None = None,
    sigma: float | None = None,
    split: str = "test",
    votes: int = 1,
    seed: int = 0,
    batch_size: int = 2000,
    data: TextImageDataset | None = None,
) -> float:
    """Accuracy of a (tokens, images) model on a listings split, clean or noisy.

    With ``beta`` and ``sigma`` both None the inputs are clean (and ``votes`` must be
    1). Otherwise each pair gets ``votes`` noisy copies (token noise at ``beta`` on the
    eligible positions if ``beta`` is given, image noise at ``sigma`` if ``sigma`` is
    given) and is classified by their majority (ties to class 0): with ``votes = 1``
    the base model's accuracy under noise, with more a Monte Carlo estimate of the
    smoothed model's clean accuracy (no certificate).

    Args:
        model: maps ``(tokens, images)`` to 2 logits; run under inference mode on the
            device of its first parameter.
        beta: token substitution probability in (0, 1), or None for no token noise.
        sigma: image noise in [0, 1]-pixel units (> 0), or None for none.
        split: ``"train"``, ``"calibration"`` or ``"test"``.
        votes: noisy copies per pair (>= 1).
        seed: seed of the noise.
        batch_size: inputs per forward pass.
        data: evaluate on this dataset instead of ``split`` (e.g. a subset, or one half
            replaced by a neutral input).

    Returns:
        The fraction of pairs classified correctly.

    Raises:
        InvalidParameterError: for an argument outside its range.

    Example:
        >>> from smoothcert.models import load_model
        >>> from smoothcert.models.train_listings import listing_accuracy
        >>> listing_accuracy(load_model("listing_filter", sigma=0.25)) > 0.8
        True
    """
    votes = check_int(votes, name="votes", minimum=1)
    seed = check_int(seed, name="seed", minimum=0)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    if beta is not None:
        beta = check_open_unit(beta, name="beta")
    if sigma is not None:
        sigma = check_positive(sigma, name="sigma")
    if beta is None and sigma is None and votes != 1:
        raise InvalidParameterError(
            f"votes = {votes} is invalid without noise; valid: votes = 1 when beta and "
            "sigma are both None"
        )
    if data is None:
        loaded = load_dataset("listings", split)
        assert isinstance(loaded, TextImageDataset)
        data = loaded
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    t = _tensors(data, device)
    gen = torch.Generator(device=device).manual_seed(seed)
    rows_all = torch.arange(len(data), device=device).repeat_interleave(votes)
    counts = torch.zeros(len(data), 2, dtype=torch.int64, device=device)
    vocab_size = int(data.vocab_size)
    with torch.inference_mode():
        for start in range(0, rows_all.numel(), batch_size):
            rows = rows_all[start : start + batch_size]
            tokens, x = t["tokens"][rows], t["images"][rows]
            if beta is not None:
                tokens = substitute_tokens(
                    tokens, t["eligible"][rows], beta=beta, vocab_size=vocab_size, generator=gen
                )
            if sigma is not None:
                x = x + sigma * torch.randn(x.shape, generator=gen, device=device, dtype=x.dtype)
            pred = model(tokens, x).argmax(dim=1)
            counts.index_put_((rows, pred), torch.ones_like(pred), accumulate=True)
    correct = counts.argmax(dim=1) == t["labels"]
    return float(correct.double().mean().item())

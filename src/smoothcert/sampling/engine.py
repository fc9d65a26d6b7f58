"""Monte Carlo engine: class counts of a model over noisy copies of an input, on device.

The engine asks a sampler for a batch of noisy inputs, runs the model under
``torch.inference_mode()``, takes the argmax and accumulates int64 class counts on the
model's device with ``index_add_`` (no host synchronisation per batch). The only
synchronisation is the final copy of the counts to the host.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(4, 3)
    >>> g = torch.Generator().manual_seed(0)
    >>> counts = count_classes(model, lambda b: (torch.randn(b, 4, generator=g),),
    ...                        100, num_classes=3, batch_size=32, device="cpu")
    >>> int(counts.sum()), counts.dtype
    (100, dtype('int64'))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from smoothcert._validation import check_int
from smoothcert.errors import InvalidParameterError

Sampler = Callable[[int], Sequence[torch.Tensor]]

AUTOCAST_DTYPES = (None, torch.bfloat16, torch.float16)


def check_autocast_dtype(autocast_dtype: Any) -> None:
    """Raise unless ``autocast_dtype`` is one of :data:`AUTOCAST_DTYPES`."""
    if autocast_dtype not in AUTOCAST_DTYPES:
        raise InvalidParameterError(
            f"autocast_dtype = {autocast_dtype!r} is invalid; valid: one of {AUTOCAST_DTYPES}"
        )


def autocast_context(
    device: torch.device, autocast_dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` to ``autocast_dtype`` on the device's type, or a no-op for None."""
    if autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=autocast_dtype)


def count_classes(
    model: Callable[..., torch.Tensor],
    sampler: Sampler,
    num_samples: int,
    *,
    num_classes: int,
    batch_size: int,
    device: torch.device | str,
    autocast_dtype: torch.dtype | None = None,
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Count the model's argmax class over ``num_samples`` noisy inputs.

    Args:
        model: a ``torch.nn.Module`` or callable mapping a batch of inputs (one or
            several tensors, as returned by ``sampler``) to logits or scores of shape
            ``(batch, num_classes)``.
        sampler: ``sampler(b)`` returns a tuple of input tensors holding ``b`` noisy
            samples (first axis ``b``). It owns the generator, so the counts are a
            deterministic function of its seed.
        num_samples: total number of samples, >= 1.
        num_classes: number of output columns the model must have, >= 2.
        batch_size: samples per forward pass, >= 1.
        device: device the counts accumulate on (the model's device).
        autocast_dtype: optional reduced precision (``torch.bfloat16`` or
            ``torch.float16``) for the forward pass under ``torch.autocast``.

    Returns:
        int64 numpy array of length ``num_classes``; its entries sum to ``num_samples``.

    Raises:
        InvalidParameterError: if the model output does not have shape
            ``(batch, num_classes)``, if any row of scores holds NaN or Inf (argmax
            would silently turn it into a vote), or on bad counts.
    """
    return _count_classes(
        model,
        sampler,
        num_samples,
        num_classes=num_classes,
        batch_size=batch_size,
        device=device,
        autocast_dtype=autocast_dtype,
    )


ScoreHook = Callable[[torch.Tensor, int], None]
"""``hook(scores, b)``: called in the sampling loop with each batch's ``(k * b, num_classes)``
model output (``k = 1`` in :func:`count_classes`), after the class counts are added; used by
:mod:`smoothcert.sampling.scores` to accumulate score sums in the same loop."""


def _count_classes(
    model: Callable[..., torch.Tensor],
    sampler: Sampler,
    num_samples: int,
    *,
    num_classes: int,
    batch_size: int,
    device: torch.device | str,
    autocast_dtype: torch.dtype | None = None,
    on_scores: ScoreHook | None = None,
) -> np.ndarray[Any, np.dtype[np.int64]]:
    """:func:`count_classes`, calling ``on_scores(scores, b)`` on every batch if given."""
    num_samples = check_int(num_samples, name="num_samples", minimum=1)
    num_classes = check_int(num_classes, name="num_classes", minimum=2)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    device = torch.device(device)
    check_autocast_dtype(autocast_dtype)
    counts = torch.zeros(num_classes, dtype=torch.int64, device=device)
    # Rows with NaN/Inf scores, counted on the device and checked once at the end.
    non_finite = torch.zeros((), dtype=torch.int64, device=device)
    ones = torch.ones(min(batch_size, num_samples), dtype=torch.int64, device=device)
    autocast = autocast_context(device, autocast_dtype)
    remaining = num_samples
    with torch.inference_mode(), autocast:
        while remaining > 0:
            b = min(batch_size, remaining)
            scores = model(*sampler(b))
            if scores.ndim != 2 or scores.shape[0] != b or scores.shape[1] != num_classes:
                raise InvalidParameterError(
                    f"model output shape = {tuple(scores.shape)} is invalid; valid shape: "
                    f"(batch, num_classes) = ({b}, {num_classes})"
                )
            counts.index_add_(0, scores.argmax(dim=1), ones[:b])
            non_finite += (~torch.isfinite(scores)).any(dim=1).sum()
            if on_scores is not None:
                on_scores(scores, b)
            remaining -= b
    bad_rows = int(non_finite)
    if bad_rows:
        raise InvalidParameterError(
            f"model output had NaN or Inf scores in {bad_rows} of {num_samples} noisy samples; "
            "valid: finite scores for every sample (check for overflow under autocast)"
        )
    return counts.cpu().numpy().astype(np.int64)


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """Return a ``torch.Generator`` on ``device`` seeded with ``seed`` (no global RNG).

    Example:
        >>> make_generator(0, "cpu").initial_seed()
        0
    """
    seed = check_int(seed, name="seed", minimum=0, maximum=2**63 - 1)
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(seed)
    return gen

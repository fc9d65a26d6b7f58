"""Multi-input batching: several inputs share each forward pass, counts stay per input.

A small model certified at a small ``n`` (e.g. n = 100 to build training labels) runs
forward passes of only ``min(batch_size, n)`` rows per input, far below the batch size
where its throughput saturates. :func:`count_classes_many` steps the samplers of ``k``
inputs in lockstep, stacks their chunks into one forward batch of ``k * b`` rows, and
splits the argmax back per input.

Exactness: each input keeps its own sampler (and its own ``torch.Generator``), called
with exactly the chunk sizes :func:`~smoothcert.sampling.engine.count_classes` uses for
one input (``b = min(batch_size, remaining)``). Each input's noise is therefore drawn by
the same generator calls as in the one-input path, and its counts are identical to
``count_classes(model, sampler_i, ...)``, up to floating-point differences between
forward passes of different batch sizes (none for standard CPU layers in our tests; a
backend may choose a different kernel for a larger batch, which can move a sample that
sits exactly on a decision boundary).

Example:
    >>> import torch
    >>> from smoothcert.noise import GaussianNoise
    >>> from smoothcert.sampling import count_classes, make_generator
    >>> model = torch.nn.Linear(4, 3).eval()
    >>> xs = [torch.full((4,), float(i)) for i in range(3)]
    >>> def samplers(seed):
    ...     out = []
    ...     for i, x in enumerate(xs):
    ...         kernel, g = GaussianNoise(0.5), make_generator(seed + i, "cpu")
    ...         out.append(lambda b, x=x, k=kernel, g=g: (k.sample(x, b, generator=g),))
    ...     return out
    >>> many = count_classes_many(model, samplers(0), 100, num_classes=3, batch_size=32,
    ...                           device="cpu")
    >>> many.shape, many.dtype, many.sum(axis=1).tolist()
    ((3, 3), dtype('int64'), [100, 100, 100])
    >>> one = [count_classes(model, s, 100, num_classes=3, batch_size=32, device="cpu")
    ...        for s in samplers(0)]
    >>> bool((many == np.stack(one)).all())
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from smoothcert._validation import check_int
from smoothcert.errors import InvalidParameterError
from smoothcert.sampling.device import check_device
from smoothcert.sampling.engine import (
    Sampler,
    ScoreHook,
    autocast_context,
    check_autocast_dtype,
)

Counts2D = np.ndarray[Any, np.dtype[np.int64]]


def _check_samplers(samplers: Any) -> list[Sampler]:
    if isinstance(samplers, (str, bytes)) or not isinstance(samplers, Sequence):
        raise InvalidParameterError(
            f"samplers of type {type(samplers).__name__} is invalid; valid: a non-empty "
            "sequence (list or tuple) of callables sampler(b) -> tuple of tensors"
        )
    if len(samplers) == 0:
        raise InvalidParameterError(
            "samplers = [] is invalid; valid: a non-empty sequence of callables (k >= 1)"
        )
    for i, sampler in enumerate(samplers):
        if not callable(sampler):
            raise InvalidParameterError(
                f"samplers[{i}] of type {type(sampler).__name__} is invalid; valid: a callable "
                "sampler(b) -> tuple of tensors with b rows"
            )
    return list(samplers)


def _as_tuple(chunk: Any, *, index: int, b: int) -> tuple[torch.Tensor, ...]:
    if isinstance(chunk, torch.Tensor):
        chunk = (chunk,)
    if not isinstance(chunk, (tuple, list)) or len(chunk) == 0:
        raise InvalidParameterError(
            f"samplers[{index}]({b}) returned {type(chunk).__name__}; valid: a non-empty "
            "tuple of tensors, each with first axis b"
        )
    for j, t in enumerate(chunk):
        if not isinstance(t, torch.Tensor) or t.ndim == 0 or t.shape[0] != b:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise InvalidParameterError(
                f"samplers[{index}]({b}) returned tensor {j} with shape {shape}; valid: a "
                f"tensor whose first axis is b = {b}"
            )
    return tuple(chunk)


def _group_size(k: int, batch_size: int, max_batch: int | None) -> int:
    if max_batch is None:
        return k
    max_batch = check_int(max_batch, name="max_batch", minimum=batch_size)
    return max(1, min(k, max_batch // batch_size))


def count_classes_many(
    model: Any,
    samplers: Sequence[Sampler],
    num_samples: int,
    *,
    num_classes: int,
    batch_size: int,
    device: torch.device | str,
    autocast_dtype: torch.dtype | None = None,
    max_batch: int | None = None,
) -> Counts2D:
    """Class counts of ``k`` inputs, ``num_samples`` noisy samples each, in shared batches.

    Every step calls each input's sampler with ``b = min(batch_size, remaining)``
    (the chunk sizes of :func:`~smoothcert.sampling.engine.count_classes` for one
    input), copies the ``k`` chunks into one preallocated forward batch of ``k * b``
    rows (input ``i`` at rows ``i*b .. (i+1)*b - 1``; each chunk is copied before the
    next sampler is called, so samplers may return views of buffers that any later
    call overwrites, even buffers shared between inputs), runs the model once under
    ``torch.inference_mode()`` (and autocast if asked), and adds each row's argmax to
    its input's counts on the device with one ``index_add_`` into a flat
    ``(k * num_classes)`` counter (no host synchronisation per batch).

    Args:
        model: a ``torch.nn.Module`` or callable mapping a batch of inputs (one or
            several tensors, as the samplers return them) to scores of shape
            ``(batch, num_classes)``. Rows must not interact (eval mode, no batch
            statistics): each row is one input's independent vote.
        samplers: ``k >= 1`` callables; ``samplers[i](b)`` returns a tuple of tensors
            (or one tensor) with first axis ``b``, the noisy samples of input ``i``.
            Each owns its input's ``torch.Generator``. All must return the same number
            of tensors with the same trailing shapes, dtypes and device.
        num_samples: samples per input, >= 1.
        num_classes: number of output columns the model must have, >= 2.
        batch_size: samples per input per step, >= 1 (a forward pass has up to
            ``k * batch_size`` rows). Fixes the chunk sizes, hence each input's noise
            stream, exactly as in ``count_classes``.
        device: device the counts accumulate on (the model's device).
        autocast_dtype: optional reduced precision (``torch.bfloat16`` or
            ``torch.float16``) for the forward pass under ``torch.autocast``.
        max_batch: optional cap on the rows of one forward pass, >= ``batch_size``.
            When ``k * batch_size > max_batch`` the inputs are processed in
            consecutive groups of ``max_batch // batch_size`` inputs (each input's
            samples are still drawn with the same chunk sizes, so the counts do not
            depend on ``max_batch``). None: all ``k`` inputs in every forward pass.

    Returns:
        int64 numpy array of shape ``(k, num_classes)``; row ``i`` holds input ``i``'s
        counts and sums to ``num_samples``.

    Raises:
        InvalidParameterError: on bad arguments, if a sampler returns a chunk that
            does not have ``b`` rows or does not match the other inputs' chunks, if
            the model output does not have shape ``(k * b, num_classes)``, or if any
            row of scores holds NaN or Inf (the message names the inputs affected).

    Example:
        >>> import torch
        >>> gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
        >>> samplers = [lambda b, g=g: (torch.randn(b, 4, generator=g),) for g in gens]
        >>> count_classes_many(torch.nn.Linear(4, 3), samplers, 50, num_classes=3,
        ...                    batch_size=16, device="cpu").sum(axis=1).tolist()
        [50, 50]
    """
    samplers = _check_samplers(samplers)
    num_samples = check_int(num_samples, name="num_samples", minimum=1)
    num_classes = check_int(num_classes, name="num_classes", minimum=2)
    batch_size = check_int(batch_size, name="batch_size", minimum=1)
    if not callable(model):
        raise InvalidParameterError(
            f"model of type {type(model).__name__} is invalid; valid: a torch.nn.Module or "
            "callable returning (batch, num_classes) scores"
        )
    dev = check_device(device)
    check_autocast_dtype(autocast_dtype)
    k = len(samplers)
    group = _group_size(k, batch_size, max_batch)
    out = np.empty((k, num_classes), dtype=np.int64)
    for start in range(0, k, group):
        stop = min(k, start + group)
        out[start:stop] = _count_group(
            model,
            samplers[start:stop],
            first_index=start,
            num_samples=num_samples,
            num_classes=num_classes,
            batch_size=batch_size,
            device=dev,
            autocast_dtype=autocast_dtype,
        )
    return out


def _count_group(
    model: Any,
    samplers: list[Sampler],
    *,
    first_index: int,
    num_samples: int,
    num_classes: int,
    batch_size: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    on_scores: ScoreHook | None = None,
) -> Counts2D:
    """Counts of one group of inputs that share every forward pass (see above).

    ``on_scores(scores, b)``, if given, is called with each ``(k * b, num_classes)`` output
    (input ``i`` at rows ``i*b .. (i+1)*b - 1``) after the counts are added.
    """
    k = len(samplers)
    rows = k * min(batch_size, num_samples)
    counts = torch.zeros(k * num_classes, dtype=torch.int64, device=device)
    # Rows with NaN/Inf scores, per input, counted on the device and checked at the end.
    non_finite = torch.zeros(k, dtype=torch.int64, device=device)
    ones = torch.ones(rows, dtype=torch.int64, device=device)
    # offsets[i] = i * num_classes: input i's counts live at [offset, offset + num_classes).
    offsets = torch.arange(k, dtype=torch.int64, device=device).mul_(num_classes).unsqueeze(1)
    buffers: list[torch.Tensor] | None = None
    autocast = autocast_context(device, autocast_dtype)
    remaining = num_samples
    with torch.inference_mode(), autocast:
        while remaining > 0:
            b = min(batch_size, remaining)
            batch: list[torch.Tensor] = []
            for i, sampler in enumerate(samplers):
                # Copy each chunk before the next sampler runs: samplers may return views
                # of buffers that any later call overwrites (also one kernel shared by
                # several inputs, as a TokenImageNoise bound to several pairs).
                chunk = _as_tuple(sampler(b), index=first_index + i, b=b)
                if buffers is None:
                    buffers = [
                        torch.empty((rows, *t.shape[1:]), dtype=t.dtype, device=t.device)
                        for t in chunk
                    ]
                if not batch:
                    batch = [buf[: k * b] for buf in buffers]
                if len(chunk) != len(batch):
                    raise InvalidParameterError(
                        f"samplers[{first_index + i}] returned {len(chunk)} tensors; valid: "
                        f"{len(batch)} tensors, as samplers[{first_index}]"
                    )
                for j, t in enumerate(chunk):
                    target = batch[j]
                    if t.shape[1:] != target.shape[1:] or t.dtype != target.dtype:
                        raise InvalidParameterError(
                            f"samplers[{first_index + i}] returned tensor {j} with shape "
                            f"{tuple(t.shape)} and dtype {t.dtype}; valid: shape "
                            f"{(b, *target.shape[1:])} and dtype {target.dtype}, as "
                            f"samplers[{first_index}] (all inputs share one batch)"
                        )
                    target[i * b : (i + 1) * b].copy_(t)
            scores = model(*batch)
            if scores.ndim != 2 or scores.shape[0] != k * b or scores.shape[1] != num_classes:
                raise InvalidParameterError(
                    f"model output shape = {tuple(scores.shape)} is invalid; valid shape: "
                    f"(batch, num_classes) = ({k * b}, {num_classes}) for {k} inputs x {b} "
                    "samples"
                )
            index = (scores.argmax(dim=1).view(k, b) + offsets).view(-1)
            counts.index_add_(0, index, ones[: k * b])
            non_finite += (~torch.isfinite(scores)).any(dim=1).view(k, b).sum(dim=1)
            if on_scores is not None:
                on_scores(scores, b)
            remaining -= b
    bad = non_finite.cpu().numpy()
    if bad.any():
        which = [first_index + int(i) for i in np.flatnonzero(bad)]
        shown = ", ".join(str(i) for i in which[:10]) + (" ..." if len(which) > 10 else "")
        raise InvalidParameterError(
            f"model output had NaN or Inf scores in {int(bad.sum())} of {k * num_samples} "
            f"noisy samples (inputs {shown}); valid: finite scores for every sample (check "
            "for overflow under autocast)"
        )
    return counts.view(k, num_classes).cpu().numpy().astype(np.int64)

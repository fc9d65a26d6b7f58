"""Input checks and device handling shared by the torch certification methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from smoothcert.errors import InvalidParameterError


def model_device(model: Callable[..., Any], fallback: torch.device) -> torch.device:
    """Return the device of the model's first parameter or buffer, else ``fallback``."""
    if isinstance(model, torch.nn.Module):
        for tensor in (*model.parameters(), *model.buffers()):
            return tensor.device
    return fallback


def check_eval_mode(model: Callable[..., Any]) -> None:
    """Reject a ``torch.nn.Module`` any of whose submodules is in training mode.

    Dropout would randomise votes and batch-norm in training mode makes each vote
    depend on the other samples of its batch: the votes would no longer be the
    independent draws the binomial bound assumes.
    """
    if isinstance(model, torch.nn.Module):
        for name, module in model.named_modules():
            if module.training:
                where = f"submodule {name!r}" if name else "model"
                raise InvalidParameterError(
                    f"{where}.training = True is invalid; valid: the model and every "
                    "submodule in eval mode (call model.eval())"
                )


def check_image(x: Any, *, name: str = "x", input_shape: tuple[int, ...] | None = None) -> None:
    """Check that ``x`` is one finite floating-point tensor (no batch axis)."""
    if not isinstance(x, torch.Tensor):
        raise InvalidParameterError(
            f"{name} of type {type(x).__name__} is invalid; valid: a torch.Tensor"
        )
    if not torch.is_floating_point(x):
        raise InvalidParameterError(
            f"{name}.dtype = {x.dtype} is invalid; valid: a floating-point dtype "
            "(float32, float64, float16, bfloat16)"
        )
    if x.numel() == 0:
        raise InvalidParameterError(
            f"{name}.shape = {tuple(x.shape)} is invalid; valid: a non-empty tensor"
        )
    if input_shape is not None and tuple(x.shape) != tuple(input_shape):
        raise InvalidParameterError(
            f"{name}.shape = {tuple(x.shape)} is invalid; valid shape: {tuple(input_shape)} "
            "(one example, no batch axis)"
        )
    if not bool(torch.isfinite(x).all()):
        raise InvalidParameterError(f"{name} contains NaN or Inf values; valid: finite values only")


def describe_inputs(inputs: tuple[torch.Tensor, ...]) -> str:
    """Shapes (without the batch axis), dtypes and devices of the inputs, for messages."""
    parts = [f"shape {tuple(t.shape[1:])}, dtype {t.dtype}, device {t.device}" for t in inputs]
    return "; ".join(parts)


def model_rejected_input(
    err: BaseException, inputs: tuple[torch.Tensor, ...], *, when: str
) -> InvalidParameterError:
    """Build the error for a model that raised on the (clean or noisy) input.

    Args:
        err: the exception the model raised.
        inputs: the input tensors given to the model (with a batch axis).
        when: where it happened, e.g. ``"on the clean input"``.

    Returns:
        An :class:`InvalidParameterError` that names the inputs' shape, dtype and
        device and repeats the original error (chain it with ``from err``). An
        ``IndexError`` (an embedding lookup out of range) adds that the token alphabet /
        vocab_size may be larger than the model's embedding table.
    """
    hint = (
        "valid: inputs of the shape (one example, no batch axis), dtype and device the "
        "model accepts"
    )
    if isinstance(err, IndexError):
        hint = (
            "the token ids may exceed the model's embedding table: the alphabet / "
            "vocab_size (or a token id) may be larger than the model's vocabulary; valid: "
            "an alphabet whose ids the model accepts"
        )
    return InvalidParameterError(
        f"the input {when} ({describe_inputs(inputs)}) was rejected by the model: "
        f"{type(err).__name__}: {err}; {hint}"
    )


def probe_num_classes(
    model: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], num_classes: int | None
) -> int:
    """Run the model once on the clean input(s) and check its output has ``num_classes`` columns.

    Args:
        model: the user's model.
        inputs: one clean example per argument, each with a batch axis of size 1.
        num_classes: expected number of classes, or None to take it from the output.

    Returns:
        The number of classes (columns of the model output).

    Raises:
        InvalidParameterError: if the model raises on the input (wrong shape, dtype or
            device, or an index out of range; the message repeats the model's error) or
            its output is not ``(1, num_classes)`` with ``num_classes >= 2``.
    """
    # Clones: a model that edits its input in place must not move the point we certify.
    try:
        with torch.inference_mode():
            out = model(*(t.clone() for t in inputs))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise model_rejected_input(err, inputs, when="on the clean input") from err
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InvalidParameterError(
            f"model output shape = {shape} is invalid; valid: a tensor of shape "
            "(batch, num_classes)"
        )
    if not bool(torch.isfinite(out).all()):
        raise InvalidParameterError(
            "model output contains NaN or Inf at the clean input; valid: finite scores"
        )
    columns = int(out.shape[1])
    if num_classes is None:
        if columns < 2:
            raise InvalidParameterError(
                f"model output has {columns} column(s); valid: num_classes >= 2 columns"
            )
        return columns
    if columns != num_classes:
        raise InvalidParameterError(
            f"model output has {columns} columns but num_classes = {num_classes}; valid: "
            "the model's output must have exactly num_classes columns"
        )
    return columns

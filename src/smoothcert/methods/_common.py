"""Input checks and device handling shared by the torch certification methods."""

from __future__ import annotations

import functools
import types
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


# How far check_eval_mode follows references from the callable (bound method -> object ->
# attribute -> ...), and how many items of one container it looks at.
_EVAL_SEARCH_DEPTH = 4
_EVAL_SEARCH_ITEMS = 64
_EVAL_SEARCH_NODES = 10_000


def _referenced(obj: Any) -> list[tuple[str, Any]]:
    """The objects a callable or plain object exposes, as ``(path suffix, object)`` pairs.

    Bound methods (``__self__``, ``__func__``), ``functools.partial`` (``func``, ``args``,
    ``keywords``), functions (closure cells, the globals their code names, ``__wrapped__``),
    plain containers, and the instance attributes of any other object (``vars(obj)``).
    """
    out: list[tuple[str, Any]] = []
    if isinstance(obj, types.MethodType):
        out += [(".__self__", obj.__self__), (".__func__", obj.__func__)]
    elif isinstance(obj, functools.partial):
        out.append((".func", obj.func))
        out += [(f".args[{i}]", a) for i, a in enumerate(obj.args)]
        out += [(f".keywords[{k!r}]", v) for k, v in obj.keywords.items()]
    elif isinstance(obj, types.FunctionType):
        names = obj.__code__.co_freevars
        for name, cell in zip(names, obj.__closure__ or (), strict=False):
            try:
                out.append((f".<closure {name!r}>", cell.cell_contents))
            except ValueError:  # empty cell
                continue
        for name in obj.__code__.co_names:
            if name in obj.__globals__:
                out.append((f".<global {name!r}>", obj.__globals__[name]))
        if hasattr(obj, "__wrapped__"):
            out.append((".__wrapped__", obj.__wrapped__))
    elif isinstance(obj, (list, tuple, set, frozenset)):
        out += [(f"[{i}]", v) for i, v in enumerate(list(obj)[:_EVAL_SEARCH_ITEMS])]
    elif isinstance(obj, dict):
        out += [(f"[{k!r}]", v) for k, v in list(obj.items())[:_EVAL_SEARCH_ITEMS]]
    elif not isinstance(obj, (type, types.ModuleType, types.BuiltinFunctionType)):
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict):
            out += [(f".{k}", v) for k, v in list(attrs.items())[:_EVAL_SEARCH_ITEMS]]
    return out


def _training_submodule(module: torch.nn.Module) -> str | None:
    """Name of the first submodule in training mode ('' for the module itself), or None."""
    for name, sub in module.named_modules():
        if sub.training:
            return str(name)
    return None


def check_eval_mode(model: Callable[..., Any]) -> None:
    """Reject a model that reaches a ``torch.nn.Module`` with a submodule in training mode.

    Dropout would randomise votes and batch-norm in training mode makes each vote
    depend on the other samples of its batch: the votes would no longer be the
    independent draws the binomial bound assumes.

    What is checked: ``model`` itself when it is a ``Module`` (every submodule), and
    every ``Module`` reachable from a plain callable within a few steps (depth 4, the
    first 64 items of each container): the object of a bound method
    (``net.forward.__self__``), the ``func``, ``args`` and ``keywords`` of a
    ``functools.partial``, the closure cells and the globals named by the code of a
    function or lambda, ``__wrapped__``, the items of lists, tuples and dicts, and the
    instance attributes (``vars(obj)``) of any other object, e.g. a class whose
    ``__call__`` uses ``self.net`` (at most 10,000 objects in all). A ``Module`` is checked
    through its registered submodules only. A callable that hides its modules elsewhere
    (behind a property, in a registry, a C extension, another process, deeper than these
    limits) cannot be checked: put the model in eval mode yourself.

    Args:
        model: the user's model, a ``torch.nn.Module`` or any callable.

    Raises:
        InvalidParameterError: naming the path to the module (e.g.
            ``model.keywords['net']``) and the submodule in training mode.
    """
    seen: set[int] = set()
    stack: list[tuple[str, Any, int]] = [("model", model, 0)]
    while stack and len(seen) < _EVAL_SEARCH_NODES:
        path, obj, depth = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            name = _training_submodule(obj)
            if name is not None:
                if path == "model":
                    where = f"submodule {name!r}" if name else "model"
                else:
                    where = f"{path} (a module the model calls)"
                    where += f": submodule {name!r}" if name else ""
                raise InvalidParameterError(
                    f"{where}.training = True is invalid; valid: the model and every "
                    "module it calls, with every submodule, in eval mode (call .eval())"
                )
            continue  # a Module's own submodules are covered by named_modules
        if depth >= _EVAL_SEARCH_DEPTH:
            continue
        for suffix, child in _referenced(obj):
            if isinstance(child, (str, bytes, int, float, complex, bool, type(None))):
                continue
            stack.append((path + suffix, child, depth + 1))


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

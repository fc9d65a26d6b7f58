"""Fast-path options for the forward pass: reduced precision, ``torch.compile``, channels-last.

Each option can make the forward passes faster, and each can change the classifier
that is certified:

* **bf16/fp16 autocast** rounds weights and activations, so a noisy sample near a
  decision boundary can get another argmax than in float32;
* **torch.compile** fuses and reorders floating-point operations (a different
  rounding), and may pick other kernels;
* **channels-last** memory format selects other convolution kernels (another
  summation order).

The certificate is still sound, but it is a certificate for the model *as run*
(with these options), not for the float32 eager model. That is why a run records
these flags with its results, and why they are opt-in. The noise itself is not
affected: :class:`~smoothcert.noise.gaussian.GaussianNoise` draws and adds it in
float32 whatever the precision of the forward pass.

Example:
    >>> import torch
    >>> autocast_dtype_for("bf16")
    torch.bfloat16
    >>> autocast_dtype_for("fp32") is None
    True
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    >>> fast = prepare_model(model, channels_last=True)
    >>> tuple(fast(torch.rand(2, 3, 5, 5)).shape)
    (2, 36)
    >>> prepare_model(model) is model
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from smoothcert.errors import InvalidParameterError

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""Precision names accepted by runs and the CLI -> ``autocast_dtype`` of the engine.

``"fp32"`` means no autocast (the model's own dtype, float32 for the bundled models).
"""


def autocast_dtype_for(precision: str) -> torch.dtype | None:
    """Return the autocast dtype for a precision name (see :data:`PRECISIONS`).

    Args:
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Returns:
        ``None`` for ``"fp32"`` (no autocast), else ``torch.bfloat16`` or
        ``torch.float16``; pass it as ``autocast_dtype`` to the engine.

    Raises:
        InvalidParameterError: if ``precision`` is not one of the names.

    Example:
        >>> autocast_dtype_for("fp16")
        torch.float16
        >>> autocast_dtype_for("int8")
        Traceback (most recent call last):
        ...
        smoothcert.errors.InvalidParameterError: precision = 'int8' is invalid; valid values: fp32, bf16, fp16
    """  # noqa: E501
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InvalidParameterError(
            f"precision = {precision!r} is invalid; valid values: {', '.join(PRECISIONS)}"
        )
    return PRECISIONS[precision]


def _to_channels_last(t: Any) -> Any:
    if isinstance(t, torch.Tensor) and t.ndim == 4:
        return t.contiguous(memory_format=torch.channels_last)
    return t


class PreparedModel(torch.nn.Module):
    """A model run with fast-path options (built by :func:`prepare_model`).

    A ``torch.nn.Module`` so that eval-mode checks and device lookups see the wrapped
    module. ``state_dict()`` is the wrapped module's own (same names, same values),
    so a weight fingerprint does not change with the options; the options
    themselves are in :attr:`options` and must be recorded by the caller.

    Attributes:
        module: the wrapped module (converted to channels-last in place if asked).
        options: ``{"compile": bool, "channels_last": bool}``.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        forward_fn: Callable[..., torch.Tensor],
        *,
        compile: bool,
        channels_last: bool,
    ) -> None:
        super().__init__()
        self.module = module
        # Not registered as a submodule: the compiled module wraps ``module`` itself.
        object.__setattr__(self, "_forward_fn", forward_fn)
        self.options = {"compile": compile, "channels_last": channels_last}
        if hasattr(module, "weights_sha256"):
            self.weights_sha256 = module.weights_sha256
        self.train(module.training)

    def forward(self, *inputs: Any) -> torch.Tensor:  # noqa: D102
        if self.options["channels_last"]:
            inputs = tuple(_to_channels_last(t) for t in inputs)
        return self._forward_fn(*inputs)

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        return self.module.load_state_dict(*args, **kwargs)


def prepare_model(
    model: Callable[..., torch.Tensor], *, compile: bool = False, channels_last: bool = False
) -> Callable[..., torch.Tensor]:
    """Return ``model`` set up for faster forward passes (compile and/or channels-last).

    With both options off, ``model`` itself is returned unchanged. Otherwise a
    :class:`PreparedModel` wraps it:

    * ``channels_last``: the module is converted IN PLACE with
      ``model.to(memory_format=torch.channels_last)`` (like any ``Module.to``), and
      every 4-D input tensor is converted with
      ``.contiguous(memory_format=torch.channels_last)`` before the forward pass.
      Helps convolutional models on CPU (oneDNN) and on GPUs with tensor cores;
      inputs that are not 4-D are passed unchanged.
    * ``compile``: the forward pass runs through ``torch.compile(model)``. The first
      calls compile (seconds to minutes; on CPU it needs a C compiler) and each new
      batch shape may trigger a recompilation, so it pays off on long runs only.

    Warning:
        Both options, like bf16/fp16 autocast (:func:`autocast_dtype_for`), can change
        the classifier that is certified: other kernels and fused operations round
        differently, so a sample on a decision boundary may change class. The
        certificate is for the model as run. Record the options with the results (a
        run's header does), and do not compare certificates across options as if they
        were for the same classifier.

    Args:
        model: a ``torch.nn.Module`` in eval mode (``channels_last`` needs a module;
            ``compile`` also accepts a plain callable).
        compile: run the forward pass through ``torch.compile``.
        channels_last: use the channels-last memory format for the module and its
            4-D inputs.

    Returns:
        ``model`` itself if both options are False, else a :class:`PreparedModel`
        (a ``torch.nn.Module``) with the same outputs up to floating-point rounding. A
        bundle of models with a ``map_parts(fn)`` method
        (:class:`~smoothcert.methods.dual.DualSmoothingModel`) gets the options on each
        of its models instead.

    Raises:
        InvalidParameterError: if an option is not a bool, if ``model`` is not
            callable, or if ``channels_last`` is asked for a model that is not a
            ``torch.nn.Module``.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(4, 2).eval()
        >>> fast = prepare_model(model, channels_last=True)
        >>> fast.options, fast.module is model
        ({'compile': False, 'channels_last': True}, True)
        >>> bool(torch.equal(fast(torch.ones(3, 4)), model(torch.ones(3, 4))))
        True
    """
    for name, value in (("compile", compile), ("channels_last", channels_last)):
        if not isinstance(value, bool):
            raise InvalidParameterError(f"{name} = {value!r} is invalid; valid values: True, False")
    if not callable(model):
        raise InvalidParameterError(
            f"model of type {type(model).__name__} is invalid; valid: a torch.nn.Module or callable"
        )
    if not (compile or channels_last):
        return model
    map_parts = getattr(model, "map_parts", None)
    if map_parts is not None:  # a bundle of models (dual smoothing): prepare each one
        return map_parts(  # type: ignore[no-any-return]
            lambda part: prepare_model(part, compile=compile, channels_last=channels_last)
        )
    if channels_last and not isinstance(model, torch.nn.Module):
        raise InvalidParameterError(
            f"channels_last = True is invalid for a model of type {type(model).__name__}; "
            "valid: channels_last = False, or pass a torch.nn.Module"
        )
    if channels_last:
        assert isinstance(model, torch.nn.Module)
        model = model.to(memory_format=torch.channels_last)
    forward_fn: Callable[..., torch.Tensor] = torch.compile(model) if compile else model
    if isinstance(model, torch.nn.Module):
        module = model
    else:
        # A plain callable (compile only): hold it in a parameter-free module.
        module = _CallableModule(model).eval()
    return PreparedModel(module, forward_fn, compile=compile, channels_last=channels_last)


class _CallableModule(torch.nn.Module):
    """A parameter-free module around a plain callable (for :class:`PreparedModel`)."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        object.__setattr__(self, "_fn", fn)

    def forward(self, *inputs: Any) -> torch.Tensor:  # noqa: D102
        return self._fn(*inputs)

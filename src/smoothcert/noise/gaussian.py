"""Isotropic Gaussian noise kernel, sampled on the input's device into a reusable buffer.

The kernel adds e ~ N(0, sigma^2 I) to a fixed input x (Cohen et al. 2019, arXiv
1902.02918, eq. 1). ``sigma`` is in the units of ``x`` (pixels in [0, 1] for the
bundled models): the certificate's radius is in the same units.

Example:
    >>> import torch
    >>> kernel = GaussianNoise(sigma=0.5)
    >>> x = torch.zeros(1, 4, 4)
    >>> g = torch.Generator().manual_seed(0)
    >>> batch = kernel.sample(x, 3, generator=g)
    >>> tuple(batch.shape)
    (3, 1, 4, 4)
"""

from __future__ import annotations

import torch

from smoothcert._validation import check_int, check_positive
from smoothcert.errors import InvalidParameterError


class GaussianNoise:
    """Gaussian kernel N(x, sigma^2 I) with preallocated buffers.

    The noise is drawn and added in float32 (float64 for a float64 input) and the sum
    is rounded ONCE to the input's dtype. Drawing in bfloat16/float16 would round the
    noise and the scaled noise before the addition and sample a different
    distribution than the certificate assumes; rounding ``x + e`` once is part of the
    model (a deterministic function of the Gaussian sample).

    Args:
        sigma: noise standard deviation, > 0, in the units of the input tensor.

    Raises:
        InvalidParameterError: if ``sigma <= 0`` or not finite.
    """

    def __init__(self, sigma: float) -> None:
        self.sigma = check_positive(sigma, name="sigma")
        self._work: torch.Tensor | None = None
        self._out: torch.Tensor | None = None

    @staticmethod
    def _reuse(
        buf: torch.Tensor | None, shape: tuple[int, ...], like: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        if (
            buf is None
            or buf.shape[0] < shape[0]
            or buf.shape[1:] != shape[1:]
            or buf.device != like.device
            or buf.dtype != dtype
            or buf.is_inference() != torch.is_inference_mode_enabled()
        ):
            buf = torch.empty(shape, device=like.device, dtype=dtype)
        return buf

    def sample(self, x: torch.Tensor, num: int, *, generator: torch.Generator) -> torch.Tensor:
        """Return ``num`` noisy copies ``x + sigma * e`` stacked on a new first axis.

        The returned tensor is a view of an internal buffer that the next call
        overwrites; the model must consume it before the next call (the engine does).

        Args:
            x: the clean input (any shape), floating point, on the device the noise is
                drawn on.
            num: number of copies, >= 1.
            generator: a ``torch.Generator`` on ``x.device``.

        Returns:
            Tensor of shape ``(num, *x.shape)``, dtype and device of ``x``.

        Raises:
            InvalidParameterError: if ``x`` is not floating point, ``num < 1`` or
                ``generator`` is not a ``torch.Generator`` (no global RNG).
        """
        num = check_int(num, name="num", minimum=1)
        if not isinstance(generator, torch.Generator):
            raise InvalidParameterError(
                f"generator of type {type(generator).__name__} is invalid; valid: a "
                "torch.Generator (smoothcert never uses the global RNG)"
            )
        if not torch.is_floating_point(x):
            raise InvalidParameterError(
                f"x.dtype = {x.dtype} is invalid; valid: a floating-point dtype"
            )
        work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        shape = (num, *x.shape)
        self._work = self._reuse(self._work, shape, x, work_dtype)
        work = self._work[:num]
        torch.randn(work.shape, generator=generator, out=work, dtype=work_dtype, device=x.device)
        work.mul_(self.sigma).add_(x.to(work_dtype))
        if x.dtype == work_dtype:
            return work
        self._out = self._reuse(self._out, shape, x, x.dtype)
        out = self._out[:num]
        out.copy_(work)
        return out

    def bind(self, x: torch.Tensor) -> BoundGaussianNoise:
        """Bind the kernel to one clean input; return its sampler (see the noise contract).

        Args:
            x: the clean input (no batch axis), floating point, on the sampling device.

        Returns:
            A :class:`BoundGaussianNoise`.

        Raises:
            InvalidParameterError: if ``x`` is not a floating-point tensor.

        Example:
            >>> bound = GaussianNoise(0.5).bind(torch.zeros(3))
            >>> tuple(bound.sample(2, generator=torch.Generator().manual_seed(0))[0].shape)
            (2, 3)
        """
        if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
            raise InvalidParameterError(
                f"x of type {type(x).__name__} is invalid; valid: a floating-point tensor"
            )
        return BoundGaussianNoise(self, x)


class BoundGaussianNoise:
    """The Gaussian kernel bound to one clean input (created by :meth:`GaussianNoise.bind`).

    The noise contract shared by every bound kernel (:mod:`smoothcert.noise`):
    ``sample(num, generator=...)`` returns the model's inputs for ``num`` noisy copies,
    ``clean_inputs()`` the clean ones, ``tv_bound()`` the sampler's total-variation
    distance to the kernel the certificate assumes (0 here: ``torch.randn`` is treated as
    exact Gaussian noise), and ``sigma`` the exact parameter the certificate uses.
    """

    def __init__(self, kernel: GaussianNoise, x: torch.Tensor) -> None:
        self.kernel = kernel
        self.x = x

    @property
    def sigma(self) -> float:
        """The noise standard deviation the certificate must use (input units)."""
        return self.kernel.sigma

    def clean_inputs(self) -> tuple[torch.Tensor, ...]:
        """The clean model inputs, without a batch axis."""
        return (self.x,)

    def tv_bound(self) -> float:
        """0: Gaussian noise from ``torch.randn`` is treated as exact."""
        return 0.0

    def sample(self, num: int, *, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """``num`` noisy copies ``x + sigma e`` (a view of a reused buffer), as a 1-tuple."""
        return (self.kernel.sample(self.x, num, generator=generator),)

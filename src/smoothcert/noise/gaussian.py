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


class GaussianNoise:
    """Gaussian kernel N(x, sigma^2 I) with a preallocated output buffer.

    Args:
        sigma: noise standard deviation, > 0, in the units of the input tensor.

    Raises:
        InvalidParameterError: if ``sigma <= 0`` or not finite.
    """

    def __init__(self, sigma: float) -> None:
        self.sigma = check_positive(sigma, name="sigma")
        self._buffer: torch.Tensor | None = None

    def _buffer_for(self, x: torch.Tensor, num: int) -> torch.Tensor:
        shape = (num, *x.shape)
        buf = self._buffer
        if (
            buf is None
            or buf.shape[0] < num
            or buf.shape[1:] != x.shape
            or buf.device != x.device
            or buf.dtype != x.dtype
        ):
            buf = torch.empty(shape, device=x.device, dtype=x.dtype)
            self._buffer = buf
        return buf[:num]

    def sample(self, x: torch.Tensor, num: int, *, generator: torch.Generator) -> torch.Tensor:
        """Return ``num`` noisy copies ``x + sigma * e`` stacked on a new first axis.

        The returned tensor is a view of an internal buffer that the next call
        overwrites; the model must consume it before the next call (the engine does).

        Args:
            x: the clean input (any shape), on the device the noise is drawn on.
            num: number of copies, >= 1.
            generator: a ``torch.Generator`` on ``x.device``.

        Returns:
            Tensor of shape ``(num, *x.shape)``, dtype and device of ``x``.
        """
        num = check_int(num, name="num", minimum=1)
        out = self._buffer_for(x, num)
        torch.randn(out.shape, generator=generator, out=out, dtype=out.dtype, device=out.device)
        out.mul_(self.sigma).add_(x)
        return out

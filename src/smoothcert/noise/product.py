"""Product kernel for (tokens, image) pairs: token substitution x Gaussian image noise.

The hybrid certificate of Delattre et al. 2026 (arXiv 2605.12876) smooths a
multimodal model with the product of a token substitution kernel (on the eligible
positions of the text, see :mod:`smoothcert.noise.tokens`) and isotropic Gaussian
noise ``N(0, sigma^2 I)`` on the image (:class:`~smoothcert.noise.gaussian.GaussianNoise`;
``sigma`` in the units of the image tensor, pixels in [0, 1] unless the model
normalises inside). Both parts are drawn from ONE ``torch.Generator`` (tokens first,
then the image, batch after batch), so one seed fixes the whole sample.

What is approximate (soundness rule 4): the token part's sampling differs from the
ideal kernel by at most :meth:`BoundTokenImageNoise.tv_bound` in total variation, and
the methods subtract that from the probability bound. The Gaussian image noise is
``torch.randn`` in floating point (float32 for float32 images), and is treated as
exact ``N(0, sigma^2 I)`` noise: it is NOT part of the TV correction, as in every
Gaussian smoothing implementation.

Example:
    >>> import torch
    >>> from smoothcert.noise.gaussian import GaussianNoise
    >>> from smoothcert.noise.tokens import TokenSubstitutionNoise
    >>> noise = TokenImageNoise(TokenSubstitutionNoise(beta=0.2, alphabet=50), GaussianNoise(0.5))
    >>> bound = noise.bind(torch.tensor([4, 8, 15]), torch.zeros(3, 2, 2), eligible=[1, 2])
    >>> toks, imgs = bound.sample(6, generator=torch.Generator().manual_seed(0))
    >>> tuple(toks.shape), tuple(imgs.shape)
    ((6, 3), (6, 3, 2, 2))
"""

from __future__ import annotations

from typing import Any

import torch

from smoothcert._validation import check_int
from smoothcert.errors import InvalidParameterError
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.noise.tokens import BoundTokenNoise, TokenSubstitutionNoise


def _check_image(image: Any) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise InvalidParameterError(
            f"image of type {type(image).__name__} is invalid; valid: a torch.Tensor"
        )
    if not torch.is_floating_point(image) or image.numel() == 0:
        raise InvalidParameterError(
            f"image with dtype = {image.dtype}, shape = {tuple(image.shape)} is invalid; "
            "valid: a non-empty floating-point tensor"
        )
    if not bool(torch.isfinite(image).all()):
        raise InvalidParameterError("image contains NaN or Inf values; valid: finite values only")
    return image


class TokenImageNoise:
    """Product of a token substitution kernel and a Gaussian kernel on the image.

    Args:
        token_noise: the :class:`~smoothcert.noise.tokens.TokenSubstitutionNoise`.
        image_noise: the :class:`~smoothcert.noise.gaussian.GaussianNoise` (or a
            positive ``sigma``, in image units, to build one).

    Raises:
        InvalidParameterError: if ``image_noise`` is neither a ``GaussianNoise`` nor a
            valid ``sigma``.

    Example:
        >>> TokenImageNoise(TokenSubstitutionNoise(beta=0.1, alphabet=5), 0.25).sigma
        0.25
    """

    def __init__(
        self, token_noise: TokenSubstitutionNoise, image_noise: GaussianNoise | float
    ) -> None:
        # Duck-typed (not isinstance): doctest collection may import this package twice.
        if not (callable(getattr(token_noise, "bind", None)) and hasattr(token_noise, "beta")):
            raise InvalidParameterError(
                f"token_noise of type {type(token_noise).__name__} is invalid; valid: a "
                "TokenSubstitutionNoise"
            )
        self.token_noise = token_noise
        self.image_noise = (
            image_noise if isinstance(image_noise, GaussianNoise) else GaussianNoise(image_noise)
        )

    @property
    def sigma(self) -> float:
        """Standard deviation of the image noise, in image units."""
        return self.image_noise.sigma

    def bind(
        self, tokens: torch.Tensor, image: torch.Tensor, eligible: Any = None
    ) -> BoundTokenImageNoise:
        """Validate one (tokens, image) pair once; return a sampler for it.

        Args:
            tokens: 1-D integer tensor ``(L,)``, on the same device as ``image``.
            image: one finite floating-point image (no batch axis).
            eligible: eligible token positions (see
                :meth:`~smoothcert.noise.tokens.TokenSubstitutionNoise.bind`).

        Returns:
            A :class:`BoundTokenImageNoise`.

        Raises:
            InvalidParameterError: on bad tokens, tokens outside the alphabet at
                eligible positions, a non-finite or non-float image, or tokens and image
                on different devices.
        """
        image = _check_image(image)
        if isinstance(tokens, torch.Tensor) and tokens.device != image.device:
            raise InvalidParameterError(
                f"tokens.device = {tokens.device} and image.device = {image.device} differ; "
                "valid: both on the device of the generator"
            )
        return BoundTokenImageNoise(self, self.token_noise.bind(tokens, eligible), image)


class BoundTokenImageNoise:
    """A product kernel bound to one validated (tokens, image) pair.

    Created by :meth:`TokenImageNoise.bind`.

    Attributes:
        tokens: the bound token sampler (:class:`~smoothcert.noise.tokens.BoundTokenNoise`).
        image: the clean image.
    """

    def __init__(self, noise: TokenImageNoise, tokens: BoundTokenNoise, image: torch.Tensor):
        self.noise = noise
        self.tokens = tokens
        self.image = image

    def clean_inputs(self) -> tuple[torch.Tensor, ...]:
        """The clean model inputs ``(tokens, image)``, without a batch axis."""
        return (self.tokens.tokens, self.image)

    def tv_bound(self) -> float:
        """TV bound of the token part's sampling (see ``BoundTokenNoise.tv_bound``).

        The Gaussian image noise (floating-point ``torch.randn``) is treated as exact
        and contributes nothing to this bound.
        """
        return self.tokens.tv_bound()

    def sample(self, num: int, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``num`` noisy pairs: tokens ``(num, L)`` int64 and images ``(num, *shape)``.

        Draws the tokens, then the image noise, from the same ``generator``. Both
        results are views of internal buffers that the next call overwrites.

        Args:
            num: number of pairs, >= 1.
            generator: a ``torch.Generator`` on the inputs' device.

        Returns:
            ``(tokens_batch, images_batch)``.
        """
        num = check_int(num, name="num", minimum=1)
        toks = self.tokens.sample(num, generator=generator)
        imgs = self.noise.image_noise.sample(self.image, num, generator=generator)
        return toks, imgs


class BoundWithFixedInputs:
    """A bound token kernel whose model also takes fixed (un-noised) inputs, e.g. an image.

    Token smoothing of a (tokens, image) model: only the tokens are noised, the other
    inputs are passed unchanged (broadcast views, no copies) after them.

    Args:
        bound: the bound token kernel (:class:`~smoothcert.noise.tokens.BoundTokenNoise`).
        fixed: the fixed inputs, each without a batch axis, on the tokens' device.

    Example:
        >>> from smoothcert.noise.tokens import TokenSubstitutionNoise
        >>> bound = TokenSubstitutionNoise(beta=0.2, alphabet=9).bind(torch.tensor([1, 2]))
        >>> both = BoundWithFixedInputs(bound, (torch.ones(3),))
        >>> [tuple(t.shape) for t in both.sample(4, generator=torch.Generator().manual_seed(0))]
        [(4, 2), (4, 3)]
    """

    def __init__(self, bound: BoundTokenNoise, fixed: tuple[torch.Tensor, ...]) -> None:
        self.bound = bound
        self.fixed = tuple(fixed)

    def clean_inputs(self) -> tuple[torch.Tensor, ...]:
        """The clean tokens, then the fixed inputs (no batch axis)."""
        return (self.bound.tokens, *self.fixed)

    def tv_bound(self) -> float:
        """The token sampler's TV bound (the fixed inputs are not random)."""
        return self.bound.tv_bound()

    def sample(self, num: int, *, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """``num`` noisy token sequences, then each fixed input broadcast to ``num`` rows."""
        toks = self.bound.sample(num, generator=generator)
        return (toks, *(t.unsqueeze(0).expand(num, *t.shape) for t in self.fixed))

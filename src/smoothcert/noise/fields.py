"""Product kernel for tabular rows: one token kernel per categorical field x Gaussian noise.

The tabular case of hybrid smoothing (Delattre et al. 2026, arXiv 2605.12876; DESIGN.md,
"Fields with different alphabet sizes"): a row is ``F`` categorical fields, field ``f``
holding one id of its own alphabet ``0..V_f-1``, and a continuous vector. Independently,
field ``f`` keeps its id with probability ``1 - beta_f`` and otherwise takes one of the
``V_f - 1`` OTHER ids uniformly (the ``"uniform"`` kernel of
:class:`~smoothcert.noise.tokens.TokenSubstitutionNoise`, one instance per field), and
the continuous vector gets ``N(0, sigma^2 I)`` (:class:`~smoothcert.noise.gaussian.GaussianNoise`;
``sigma`` in the units of the continuous vector, e.g. train standard deviations for the
bundled ``"fair"`` table). Everything is drawn from ONE generator: field 0, field 1, ...,
then the continuous part, batch after batch.

The kernel each field samples is the exact kernel the certificate uses for that field
(:attr:`FieldsNoise.token_fields`), and the TV bound of the sampler is the sum of the
fields' bounds (:meth:`BoundFieldsNoise.tv_bound`; the Gaussian part is treated as exact,
as in :mod:`smoothcert.noise.product`).

Example:
    >>> import torch
    >>> noise = FieldsNoise(vocab_sizes=(2, 3), betas=(0.2, 0.5), sigma=0.5)
    >>> bound = noise.bind(torch.tensor([1, 0]), torch.zeros(3))
    >>> toks, cont = bound.sample(4, generator=torch.Generator().manual_seed(0))
    >>> tuple(toks.shape), tuple(cont.shape), bool(((toks >= 0) & (toks < torch.tensor([2, 3]))).all())
    ((4, 2), (4, 3), True)
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from smoothcert._validation import check_int, check_open_unit
from smoothcert.certificates.tokens import TokenField
from smoothcert.errors import InvalidParameterError
from smoothcert.noise.gaussian import GaussianNoise
from smoothcert.noise.tokens import BoundTokenNoise, TokenSubstitutionNoise, check_tokens


class FieldsNoise:
    """Per-field uniform token kernels (own ``V_f``, ``beta_f``) x Gaussian continuous noise.

    Args:
        vocab_sizes: alphabet size ``V_f >= 2`` of each categorical field (ids
            ``0..V_f-1``).
        betas: substitution probability ``beta_f`` in (0, 1) of each field.
        sigma: standard deviation of the continuous noise, > 0, in the continuous
            vector's units.

    Raises:
        InvalidParameterError: on an empty field list, lists of different lengths,
            ``V_f < 2``, ``beta_f`` outside (0, 1) or ``sigma <= 0``.

    Example:
        >>> FieldsNoise(vocab_sizes=(5, 4), betas=(0.5, 0.4), sigma=1.0).token_fields[1]
        TokenField(beta=0.4, vocab_size=4, kernel='uniform', positions=1)
    """

    def __init__(self, *, vocab_sizes: Sequence[int], betas: Sequence[float], sigma: float) -> None:
        vocab = tuple(check_int(v, name="field vocab size", minimum=2) for v in vocab_sizes)
        beta = tuple(check_open_unit(b, name="field beta") for b in betas)
        if not vocab or len(vocab) != len(beta):
            raise InvalidParameterError(
                f"{len(vocab)} field vocab sizes and {len(beta)} field betas are invalid; "
                "valid: one (V_f, beta_f) pair per categorical field, at least one field"
            )
        self.vocab_sizes = vocab
        self.betas = beta
        self.continuous_noise = GaussianNoise(sigma)
        self.field_noises = tuple(
            TokenSubstitutionNoise(beta=b, alphabet=v) for v, b in zip(vocab, beta, strict=True)
        )

    @property
    def sigma(self) -> float:
        """Standard deviation of the continuous noise (continuous-vector units)."""
        return self.continuous_noise.sigma

    @property
    def num_fields(self) -> int:
        """Number ``F`` of categorical fields."""
        return len(self.vocab_sizes)

    @property
    def token_fields(self) -> tuple[TokenField, ...]:
        """The certificate's description of the fields: one position each."""
        return tuple(
            TokenField(b, v, positions=1) for v, b in zip(self.vocab_sizes, self.betas, strict=True)
        )

    def check_tokens(self, tokens: Any) -> torch.Tensor:
        """Validate one row's category ids: 1-D, one per field, each inside its alphabet.

        Raises:
            InvalidParameterError: naming the field, the bad id and its valid range.
        """
        tokens = check_tokens(tokens)
        if tokens.numel() != self.num_fields:
            raise InvalidParameterError(
                f"tokens.shape = {tuple(tokens.shape)} is invalid; valid: ({self.num_fields},), "
                "one category id per categorical field"
            )
        high = torch.tensor(self.vocab_sizes, device=tokens.device)
        bad = (tokens < 0) | (tokens >= high)
        if bool(bad.any()):
            f = int(torch.nonzero(bad)[0, 0])
            raise InvalidParameterError(
                f"category id {int(tokens[f])} of field {f} is invalid; valid range: "
                f"0 <= id <= {self.vocab_sizes[f] - 1} (the field's alphabet; the certificate "
                "assumes clean and attacked ids lie in it)"
            )
        return tokens

    def bind(self, tokens: Any, continuous: Any) -> BoundFieldsNoise:
        """Validate one row (category ids, continuous vector) once; return its sampler.

        Args:
            tokens: 1-D integer tensor ``(F,)`` of category ids.
            continuous: 1-D finite floating-point tensor ``(C,)`` on the same device.

        Returns:
            A :class:`BoundFieldsNoise`.

        Raises:
            InvalidParameterError: on ids outside a field's alphabet, a wrong number of
                fields, a non-1-D, non-float or non-finite continuous vector, or tensors on
                different devices.
        """
        tokens = self.check_tokens(tokens)
        if not isinstance(continuous, torch.Tensor) or continuous.ndim != 1:
            raise InvalidParameterError(
                f"continuous part of shape {tuple(getattr(continuous, 'shape', ()))} is "
                "invalid; valid: a 1-D float tensor (C,), one row without a batch axis"
            )
        if not torch.is_floating_point(continuous) or continuous.numel() == 0:
            raise InvalidParameterError(
                f"continuous part with dtype {continuous.dtype} and {continuous.numel()} values "
                "is invalid; valid: a non-empty floating-point tensor"
            )
        if not bool(torch.isfinite(continuous).all()):
            raise InvalidParameterError(
                "continuous part contains NaN or Inf; valid: finite values only"
            )
        if tokens.device != continuous.device:
            raise InvalidParameterError(
                f"tokens.device = {tokens.device} and continuous.device = {continuous.device} "
                "differ; valid: both on the device of the generator"
            )
        bound = tuple(noise.bind(tokens[f : f + 1]) for f, noise in enumerate(self.field_noises))
        return BoundFieldsNoise(self, tokens, continuous, bound)


class BoundFieldsNoise:
    """The fields kernel bound to one validated row (created by :meth:`FieldsNoise.bind`).

    Attributes:
        tokens: the clean category ids ``(F,)``.
        continuous: the clean continuous vector ``(C,)``.
    """

    def __init__(
        self,
        noise: FieldsNoise,
        tokens: torch.Tensor,
        continuous: torch.Tensor,
        fields: tuple[BoundTokenNoise, ...],
    ) -> None:
        self.noise = noise
        self.tokens = tokens
        self.continuous = continuous
        self.fields = fields
        self._out = torch.empty(0, dtype=torch.int64)

    def clean_inputs(self) -> tuple[torch.Tensor, ...]:
        """The clean model inputs ``(tokens, continuous)``, without a batch axis."""
        return (self.tokens, self.continuous)

    def tv_bound(self) -> float:
        """Sum of the fields' TV bounds (:meth:`~smoothcert.noise.tokens.BoundTokenNoise.tv_bound`).

        The TV distance of a product law is at most the sum over its factors; the
        Gaussian part is treated as exact and adds nothing.
        """
        return float(sum(b.tv_bound() for b in self.fields))

    def sample(self, num: int, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``num`` noisy rows: ids ``(num, F)`` int64 and continuous ``(num, C)``.

        Draws field 0, 1, ..., then the continuous noise, from ``generator``. Both
        results are views of buffers that the next call overwrites.
        """
        num = check_int(num, name="num", minimum=1)
        if (
            self._out.shape[0] < num
            or self._out.device != self.tokens.device
            or self._out.is_inference() != torch.is_inference_mode_enabled()
        ):
            self._out = torch.empty(
                (num, self.noise.num_fields), dtype=torch.int64, device=self.tokens.device
            )
        out = self._out[:num]
        for f, bound in enumerate(self.fields):
            out[:, f] = bound.sample(num, generator=generator)[:, 0]
        cont = self.noise.continuous_noise.sample(self.continuous, num, generator=generator)
        return out, cont

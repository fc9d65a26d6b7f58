"""Token substitution noise kernels, sampled on the tokens' device into reusable buffers.

Two kernels act independently on each ELIGIBLE position of a token sequence (DESIGN.md,
"Token substitution kernels"; Lee et al. 2019, arXiv 1906.04948; the text part of the
hybrid kernel of Delattre et al. 2026, arXiv 2605.12876):

- ``"uniform"``: keep the token with probability ``1 - beta``; otherwise replace it by
  a token drawn uniformly from the ``V - 1`` OTHER tokens of the alphabet (``V`` =
  ``vocab_size``, the alphabet size). With ``attacker="alphabet"`` (default) the
  original token at every eligible position must lie in the alphabet (checked before
  sampling), and the certificate assumes that every token an attacker writes lies in it
  too. With ``attacker="any"`` the kernel is extended to every vocabulary id: a token
  outside the alphabet is kept with probability ``1 - beta``, otherwise replaced by one
  of the ``V`` alphabet tokens uniformly (the kernel the any-token certificate of
  :func:`smoothcert.certificates.token_lower_bound` assumes); :attr:`BoundTokenNoise.num_outside`
  counts such clean tokens.
- ``"mask"``: replace the token by ``mask_id`` with probability ``beta``. The original
  tokens at eligible positions must differ from ``mask_id`` (and, when an alphabet is
  given, lie in it while ``mask_id`` does not); the certificate assumes the attacker
  never writes ``mask_id``.

Positions that are not eligible are never changed.

Sampling is integer index arithmetic on the device, with no host synchronisation per
batch. For each eligible position two independent 62-bit integers ``r1, r2`` are drawn
uniformly (``torch.randint(0, 2**62)``, exact for a power-of-two range):

- replace iff ``r1 < round(beta * 2**62)``: the replacement probability is ``beta``
  rounded to a multiple of ``2**-62`` (exactly the float ``beta`` for ``beta >= 2**-9``);
- the new token is ``alphabet[(pos + 1 + r2 mod (V - 1)) mod V]`` where ``pos`` is the
  original token's index in the sorted alphabet: the offset ``1 + r2 mod (V - 1)``
  covers ``1..V-1``, so the new token is never the original and each of the ``V - 1``
  others has probability ``1/(V - 1)`` up to ``2**-62`` (modulo bias; exactly uniform
  when ``V - 1`` is a power of two). An out-of-alphabet original (``attacker="any"``)
  becomes ``alphabet[r2 mod V]``: each of the ``V`` alphabet tokens with probability
  ``1/V`` up to ``2**-62``.

:meth:`BoundTokenNoise.tv_bound` returns an upper bound on the total-variation distance
between the sampled joint law and the ideal kernel (at most ``D (V + 1) 2**-63`` for
``D`` eligible positions, about 5e-12 for ``D = 1000``, ``V = 50000``); the methods
subtract it from the probability bound, which makes the certificate rigorous for the
ideal kernel (soundness rule 4). It covers the token kernel only: the Gaussian image
noise of the hybrid product kernel (float ``torch.randn``) is treated as exact and is
NOT part of this correction (see :mod:`smoothcert.noise.product`).

Token ids, alphabets and eligible positions may be given as torch tensors, lists of
(Python or numpy) integers, or numpy integer / boolean arrays.

Example:
    >>> import torch
    >>> kernel = TokenSubstitutionNoise(beta=0.3, alphabet=10)
    >>> bound = kernel.bind(torch.tensor([1, 2, 3, 4]), eligible=[2, 3])
    >>> g = torch.Generator().manual_seed(0)
    >>> batch = bound.sample(5, generator=g)
    >>> tuple(batch.shape), batch.dtype
    ((5, 4), torch.int64)
    >>> bool((batch[:, :2] == torch.tensor([1, 2])).all())
    True
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from smoothcert._validation import check_int, check_open_unit
from smoothcert.errors import InvalidParameterError

KERNELS = ("uniform", "mask")
ATTACKERS = ("alphabet", "any")

_RANGE_BITS = 62
_RANGE = 1 << _RANGE_BITS

_INT_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)


def from_numpy(value: Any, *, name: str) -> Any:
    """Return a numpy integer / boolean array as a CPU tensor; anything else unchanged.

    Raises:
        InvalidParameterError: on a numpy array of another dtype (float, object, ...).
    """
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind == "b":
        return torch.from_numpy(np.array(value, dtype=np.bool_))
    if value.dtype.kind in "iu":
        if value.dtype.kind == "u" and value.size and int(value.max()) > np.iinfo(np.int64).max:
            raise InvalidParameterError(
                f"{name} = {value!r} is invalid; valid: integer ids <= {np.iinfo(np.int64).max}"
            )
        return torch.from_numpy(np.array(value, dtype=np.int64))
    raise InvalidParameterError(
        f"{name}.dtype = numpy {value.dtype} is invalid; valid: an integer (or boolean mask) "
        "numpy array, torch tensor or list of ints"
    )


def _as_int_tensor(value: Any, *, name: str) -> torch.Tensor:
    """Return ``value`` as a 1-D int64 tensor (keeping its device), or raise."""
    value = from_numpy(value, name=name)
    if isinstance(value, torch.Tensor):
        if value.dtype not in _INT_DTYPES:
            raise InvalidParameterError(
                f"{name}.dtype = {value.dtype} is invalid; valid: an integer dtype "
                "(torch.int64 / torch.int32 token ids)"
            )
        tensor = value.to(torch.int64)
    else:
        items = list(value) if isinstance(value, Sequence) else None
        if items is None or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items
        ):
            raise InvalidParameterError(
                f"{name} = {value!r} is invalid; valid: a 1-D integer tensor, numpy integer "
                "array or list of ints"
            )
        tensor = torch.tensor([int(v) for v in items], dtype=torch.int64)
    if tensor.ndim != 1:
        raise InvalidParameterError(
            f"{name}.shape = {tuple(tensor.shape)} is invalid; valid: a 1-D tensor"
        )
    return tensor


def check_tokens(tokens: Any, *, name: str = "tokens") -> torch.Tensor:
    """Check one token sequence and return it as a 1-D int64 tensor on its device.

    Args:
        tokens: a 1-D integer tensor of token ids (one example, no batch axis).
        name: name used in error messages.

    Returns:
        The tokens as ``torch.int64`` (same device).

    Raises:
        InvalidParameterError: if ``tokens`` is not a tensor, not of an integer dtype,
            not 1-D, empty, or holds negative ids.

    Example:
        >>> check_tokens(torch.tensor([3, 1], dtype=torch.int32)).dtype
        torch.int64
    """
    if not isinstance(tokens, torch.Tensor):
        raise InvalidParameterError(
            f"{name} of type {type(tokens).__name__} is invalid; valid: a 1-D integer "
            "torch.Tensor of token ids"
        )
    if tokens.dtype not in _INT_DTYPES:
        raise InvalidParameterError(
            f"{name}.dtype = {tokens.dtype} is invalid; valid: an integer dtype "
            "(torch.int64 token ids)"
        )
    if tokens.ndim != 1 or tokens.numel() == 0:
        raise InvalidParameterError(
            f"{name}.shape = {tuple(tokens.shape)} is invalid; valid: a non-empty 1-D sequence "
            "(L,) of token ids for one example, no batch axis"
        )
    tokens = tokens.to(torch.int64)
    if bool((tokens < 0).any()):
        first = int(torch.nonzero(tokens < 0)[0, 0])
        raise InvalidParameterError(
            f"{name}[{first}] = {int(tokens[first])} is invalid; valid: token ids >= 0"
        )
    return tokens


def eligible_index(eligible: Any, length: int) -> torch.Tensor:
    """Normalise eligible positions to a sorted int64 index tensor (on the CPU).

    Args:
        eligible: None (every position), a boolean mask of shape ``(length,)``, or a
            list / 1-D integer tensor of distinct positions in ``[0, length)``.
        length: sequence length ``L``.

    Returns:
        Sorted, distinct positions as a 1-D ``torch.int64`` CPU tensor.

    Raises:
        InvalidParameterError: on a mask of the wrong length, a position outside
            ``[0, length)`` or a repeated position.

    Example:
        >>> eligible_index([3, 1], 5).tolist()
        [1, 3]
        >>> eligible_index(torch.tensor([True, False, True]), 3).tolist()
        [0, 2]
    """
    if eligible is None:
        return torch.arange(length, dtype=torch.int64)
    eligible = from_numpy(eligible, name="eligible")
    if isinstance(eligible, torch.Tensor) and eligible.dtype == torch.bool:
        if tuple(eligible.shape) != (length,):
            raise InvalidParameterError(
                f"eligible mask shape = {tuple(eligible.shape)} is invalid; valid shape: "
                f"({length},), one flag per token position"
            )
        return torch.nonzero(eligible.cpu()).flatten().to(torch.int64)
    idx = _as_int_tensor(eligible, name="eligible").cpu()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= length):
        bad = int(idx[(idx < 0) | (idx >= length)][0])
        raise InvalidParameterError(
            f"eligible position {bad} is invalid; valid range: 0 <= position <= {length - 1}"
        )
    idx = torch.sort(idx).values
    if idx.numel() > 1 and bool((idx[1:] == idx[:-1]).any()):
        dup = int(idx[1:][idx[1:] == idx[:-1]][0])
        raise InvalidParameterError(
            f"eligible position {dup} is repeated; valid: distinct positions"
        )
    return idx


def _alphabet_tensor(alphabet: Any) -> torch.Tensor:
    """Return the alphabet as a sorted, distinct, non-negative int64 CPU tensor."""
    if isinstance(alphabet, numbers.Integral) and not isinstance(alphabet, bool):
        size = check_int(alphabet, name="vocab_size", minimum=2)
        return torch.arange(size, dtype=torch.int64)
    alphabet = from_numpy(alphabet, name="alphabet")
    if isinstance(alphabet, torch.Tensor) and alphabet.dtype == torch.bool:
        if alphabet.ndim != 1:
            raise InvalidParameterError(
                f"alphabet mask shape = {tuple(alphabet.shape)} is invalid; valid: a 1-D "
                "boolean mask over the vocabulary"
            )
        ids = torch.nonzero(alphabet.cpu()).flatten().to(torch.int64)
    else:
        ids = _as_int_tensor(alphabet, name="alphabet").cpu()
        if ids.numel() and int(ids.min()) < 0:
            raise InvalidParameterError(
                f"alphabet id {int(ids.min())} is invalid; valid: token ids >= 0"
            )
        ids = torch.sort(ids).values
        if ids.numel() > 1 and bool((ids[1:] == ids[:-1]).any()):
            dup = int(ids[1:][ids[1:] == ids[:-1]][0])
            raise InvalidParameterError(f"alphabet id {dup} is repeated; valid: distinct token ids")
    if ids.numel() < 2:
        raise InvalidParameterError(
            f"vocab_size = {ids.numel()} is invalid; valid range: vocab_size >= 2 "
            "(alphabet of at least two tokens)"
        )
    return ids


class TokenSubstitutionNoise:
    """Token substitution kernel (``"uniform"`` or ``"mask"``) with fixed parameters.

    Bind it to one token sequence and its eligible positions with :meth:`bind`, which
    validates the input once (one host synchronisation) and returns a
    :class:`BoundTokenNoise` whose :meth:`~BoundTokenNoise.sample` draws batches into
    preallocated buffers on the tokens' device.

    Args:
        beta: substitution probability per eligible position, ``0 < beta < 1``.
        alphabet: the ``V`` token ids the kernel draws from: an int ``V`` (ids
            ``0..V-1``), a 1-D integer tensor, numpy array or list of distinct ids
            (sorted here), or a 1-D boolean mask (tensor or numpy) over the
            vocabulary. ``V >= 2``. Required for ``"uniform"``; optional for
            ``"mask"`` (then it only restricts the original tokens, and must not
            contain ``mask_id``).
        kernel: ``"uniform"`` or ``"mask"``.
        mask_id: the mask token id (``"mask"`` kernel only), ``>= 0``.
        attacker: ``"alphabet"`` (clean eligible tokens must lie in the alphabet) or
            ``"any"`` (uniform kernel: out-of-alphabet clean tokens are sampled by the
            extended kernel, see the module docstring; the mask kernel is unchanged).

    Raises:
        InvalidParameterError: on ``beta`` outside (0, 1), an alphabet of fewer than 2
            tokens, an unknown kernel or attacker, a missing or unexpected ``mask_id``,
            or a ``mask_id`` inside the alphabet.

    Example:
        >>> TokenSubstitutionNoise(beta=0.1, alphabet=torch.tensor([7, 3, 5])).vocab_size
        3
        >>> TokenSubstitutionNoise(beta=1.5, alphabet=3)
        Traceback (most recent call last):
        ...
        smoothcert.errors.InvalidParameterError: beta = 1.5 is invalid; valid range: 0 < beta < 1
    """

    def __init__(
        self,
        *,
        beta: float,
        alphabet: Any = None,
        kernel: str = "uniform",
        mask_id: int | None = None,
        attacker: str = "alphabet",
    ) -> None:
        self.beta = check_open_unit(beta, name="beta")
        if kernel not in KERNELS:
            raise InvalidParameterError(f"kernel = {kernel!r} is invalid; valid values: {KERNELS}")
        if attacker not in ATTACKERS:
            raise InvalidParameterError(
                f"attacker = {attacker!r} is invalid; valid values: {ATTACKERS}"
            )
        self.kernel = kernel
        self.attacker = attacker
        if kernel == "uniform":
            if mask_id is not None:
                raise InvalidParameterError(
                    f"mask_id = {mask_id!r} is invalid for kernel 'uniform'; valid: None "
                    "(mask_id is used by kernel 'mask' only)"
                )
            if alphabet is None:
                raise InvalidParameterError(
                    "alphabet = None is invalid for kernel 'uniform'; valid: the vocabulary "
                    "size V >= 2, a tensor of token ids, or a boolean mask"
                )
        else:
            if mask_id is None:
                raise InvalidParameterError(
                    "mask_id = None is invalid for kernel 'mask'; valid: a token id >= 0"
                )
            mask_id = check_int(mask_id, name="mask_id", minimum=0)
        self.mask_id = mask_id
        self.alphabet: torch.Tensor | None = (
            None if alphabet is None else _alphabet_tensor(alphabet)
        )
        if self.alphabet is not None and mask_id is not None:
            if bool((self.alphabet == mask_id).any()):
                raise InvalidParameterError(
                    f"mask_id = {mask_id} is inside the alphabet; valid: a mask id that is "
                    "not one of the alphabet's tokens (the attacker may write any alphabet "
                    "token, and the mask kernel's certificate assumes it never writes mask_id)"
                )
        # Replacement iff r1 < threshold, r1 uniform on [0, 2**62): probability
        # threshold / 2**62, within 2**-63 of beta.
        self._threshold = int(round(self.beta * _RANGE))
        self._device_alphabets: dict[torch.device, torch.Tensor] = {}

    @property
    def vocab_size(self) -> int | None:
        """Alphabet size ``V`` (None for a mask kernel without an alphabet)."""
        return None if self.alphabet is None else int(self.alphabet.numel())

    @property
    def sampled_beta(self) -> float:
        """The replacement probability actually sampled (``beta`` on a 2**-62 grid)."""
        return self._threshold / _RANGE

    def valid_range(self) -> str:
        """Describe the valid token ids at eligible positions, for error messages."""
        parts = []
        if self.alphabet is not None:
            lo, hi, size = int(self.alphabet[0]), int(self.alphabet[-1]), self.vocab_size
            if size is not None and hi - lo + 1 == size:
                parts.append(f"{lo} <= token id <= {hi}")
            else:
                parts.append(f"one of the {size} alphabet ids in [{lo}, {hi}]")
        if self.mask_id is not None:
            parts.append(f"token id != mask_id = {self.mask_id}")
        return " and ".join(parts)

    def _alphabet_on(self, device: torch.device) -> torch.Tensor:
        assert self.alphabet is not None
        cached = self._device_alphabets.get(device)
        if cached is None:
            cached = self.alphabet.to(device)
            self._device_alphabets[device] = cached
        return cached

    def alphabet_positions(
        self, tokens: torch.Tensor, *, where: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Index of each ``tokens[where]`` in the sorted alphabet, after checking membership.

        Args:
            tokens: 1-D int64 tokens.
            where: 1-D int64 positions to check (on ``tokens.device``).

        Returns:
            ``(index, outside)``: int64 alphabet indices (0 where outside) and a boolean
            tensor marking tokens outside the alphabet (allowed only for the uniform
            kernel with ``attacker="any"``; all False otherwise).

        Raises:
            InvalidParameterError: naming the first offending token id, its position and
                the valid range.
        """
        vals = tokens[where]
        bad = torch.zeros_like(vals, dtype=torch.bool)
        pos = torch.zeros_like(vals)
        outside = torch.zeros_like(vals, dtype=torch.bool)
        if self.alphabet is not None:
            alphabet = self._alphabet_on(tokens.device)
            pos = torch.searchsorted(alphabet, vals).clamp_(max=alphabet.numel() - 1)
            if self.kernel == "uniform" and self.attacker == "any":
                outside = alphabet[pos] != vals
                pos = torch.where(outside, torch.zeros_like(pos), pos)
            else:
                bad |= alphabet[pos] != vals
        if self.mask_id is not None:
            bad |= vals == self.mask_id
        if bool(bad.any()):
            first = int(torch.nonzero(bad)[0, 0])
            raise InvalidParameterError(
                f"token id {int(vals[first])} at eligible position {int(where[first])} is "
                f"invalid; valid: {self.valid_range()} (the certificate assumes every "
                "original token at an eligible position lies in the kernel's alphabet; "
                "attacker='any' lifts this for the uniform kernel)"
            )
        return pos, outside

    def bind(self, tokens: torch.Tensor, eligible: Any = None) -> BoundTokenNoise:
        """Validate ``tokens`` and eligible positions once; return a sampler for them.

        Args:
            tokens: 1-D integer tensor ``(L,)`` of token ids, on the sampling device.
            eligible: positions the kernel may change: None (all), a boolean mask of
                shape ``(L,)``, or a list / tensor of distinct positions.

        Returns:
            A :class:`BoundTokenNoise`.

        Raises:
            InvalidParameterError: on a bad token tensor, bad positions, or a token id
                at an eligible position outside the alphabet (or equal to ``mask_id``).
        """
        tokens = check_tokens(tokens).clone()
        idx = eligible_index(eligible, int(tokens.numel())).to(tokens.device)
        pos, outside = self.alphabet_positions(tokens, where=idx)
        return BoundTokenNoise(self, tokens, idx, pos, outside)

    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters of the kernel (for result records)."""
        return {
            "beta": self.beta,
            "kernel": self.kernel,
            "vocab_size": self.vocab_size,
            "mask_id": self.mask_id,
            "attacker": self.attacker,
        }


class BoundTokenNoise:
    """A token kernel bound to one validated sequence; samples batches on its device.

    Created by :meth:`TokenSubstitutionNoise.bind`; do not construct directly.

    Attributes:
        kernel: the :class:`TokenSubstitutionNoise`.
        tokens: the clean sequence, int64 ``(L,)``.
        eligible: sorted eligible positions, int64 ``(D,)``, on the tokens' device.
    """

    def __init__(
        self,
        kernel: TokenSubstitutionNoise,
        tokens: torch.Tensor,
        eligible: torch.Tensor,
        alphabet_pos: torch.Tensor,
        outside: torch.Tensor | None = None,
    ) -> None:
        self.kernel = kernel
        self.tokens = tokens
        self.eligible = eligible
        self._orig = tokens[eligible]
        self._alphabet = kernel._alphabet_on(tokens.device) if kernel.kernel == "uniform" else None
        outside = torch.zeros_like(alphabet_pos, dtype=torch.bool) if outside is None else outside
        self.num_outside = int(outside.sum())
        """Eligible positions whose clean token lies outside the alphabet (``"any"``)."""
        # Start offset: the original's alphabet index plus 1 (offsets are 1..V-1); an
        # out-of-alphabet original starts at 0 with offsets 0..V-1 (modulus V).
        self._start = torch.where(outside, torch.zeros_like(alphabet_pos), alphabet_pos + 1)
        self._modulus: torch.Tensor | None = None
        if self.num_outside and self._alphabet is not None:
            size = int(self._alphabet.numel())
            self._modulus = torch.where(
                outside,
                torch.full_like(alphabet_pos, size),
                torch.full_like(alphabet_pos, size - 1),
            )
        self._capacity = 0
        self._out = torch.empty(0)
        self._r1 = torch.empty(0)
        self._r2 = torch.empty(0)
        self._replace = torch.empty(0)
        self._vals = torch.empty(0)

    @property
    def num_eligible(self) -> int:
        """Number ``D`` of eligible positions."""
        return int(self.eligible.numel())

    def clean_inputs(self) -> tuple[torch.Tensor, ...]:
        """The clean model input (the token sequence), without a batch axis."""
        return (self.tokens,)

    def tv_bound(self) -> float:
        """Upper bound on the TV distance between the sampled and the ideal joint kernel.

        Per eligible position: ``|P(replace) - beta| <= 2**-63`` plus, for ``"uniform"``,
        a modulo bias of at most ``2**-62`` per token over ``V - 1`` tokens (TV at most
        ``(V - 1) 2**-63``, zero when ``V - 1`` is a power of two; ``V 2**-63`` over
        the ``V`` alphabet tokens when some clean token lies outside the alphabet, the
        larger of the two is used for every position). Summed over the
        ``D`` independent positions (TV of a product is at most the sum). The exact
        per-position TV is at most ``|P(replace) - beta| + rem (m - rem) / (m 2**62)``
        with ``m = V - 1`` and ``rem = 2**62 mod m``, below this bound.

        It assumes ``torch.randint(0, 2**62)`` is exactly uniform (a power-of-two range)
        and covers the token kernel only; Gaussian image noise (hybrid kernel) is treated
        as exact and is not included.

        Returns:
            A float bound (about ``D (V + 1) 1.1e-19``).
        """
        per = abs(self.kernel.sampled_beta - self.kernel.beta)
        if self.kernel.kernel == "uniform":
            m = int(self._alphabet.numel()) - 1 if self._alphabet is not None else 1
            # Out-of-alphabet originals draw r2 mod V: bias at most V 2**-63.
            moduli = (m, m + 1) if self.num_outside else (m,)
            per += max((k * 2.0**-63 for k in moduli if k & (k - 1)), default=0.0)
        return self.num_eligible * per

    def _ensure(self, num: int) -> None:
        # Buffers made inside torch.inference_mode() are inference tensors, which
        # cannot be written in place outside it: reallocate when the mode changes.
        if num <= self._capacity and (
            self._out.is_inference() == torch.is_inference_mode_enabled()
        ):
            return
        dev, d, length = self.tokens.device, self.num_eligible, self.tokens.numel()
        self._out = torch.empty((num, length), dtype=torch.int64, device=dev)
        self._r1 = torch.empty((num, d), dtype=torch.int64, device=dev)
        self._r2 = torch.empty((num, d), dtype=torch.int64, device=dev)
        self._replace = torch.empty((num, d), dtype=torch.bool, device=dev)
        self._vals = torch.empty((num, d), dtype=torch.int64, device=dev)
        self._capacity = num

    def sample(self, num: int, *, generator: torch.Generator) -> torch.Tensor:
        """Return ``num`` noisy copies of the sequence, shape ``(num, L)``, int64.

        The result is a view of an internal buffer that the next call overwrites; the
        model must consume it first (the sampling engine does). No host synchronisation.

        Args:
            num: number of copies, >= 1.
            generator: a ``torch.Generator`` on the tokens' device.

        Returns:
            LongTensor ``(num, L)`` on the tokens' device.
        """
        num = check_int(num, name="num", minimum=1)
        self._ensure(num)
        out = self._out[:num]
        out.copy_(self.tokens.expand(num, -1))
        if self.num_eligible == 0:
            return out
        r1, vals, replace = self._r1[:num], self._vals[:num], self._replace[:num]
        torch.randint(0, _RANGE, r1.shape, generator=generator, out=r1)
        torch.lt(r1, self.kernel._threshold, out=replace)
        if self.kernel.kernel == "uniform":
            assert self._alphabet is not None
            size = int(self._alphabet.numel())
            r2 = self._r2[:num]
            torch.randint(0, _RANGE, r2.shape, generator=generator, out=r2)
            # New alphabet index (pos + 1 + r2 mod (V-1)) mod V: never pos itself;
            # (r2 mod V) for an out-of-alphabet original.
            if self._modulus is None:
                r2.remainder_(size - 1)
            else:
                r2.remainder_(self._modulus)
            r2.add_(self._start).remainder_(size)
            torch.index_select(self._alphabet, 0, r2.view(-1), out=r1.view(-1))
            torch.where(replace, r1, self._orig, out=vals)
        else:
            assert self.kernel.mask_id is not None
            vals.copy_(self._orig.expand(num, -1))
            vals.masked_fill_(replace, self.kernel.mask_id)
        out.index_copy_(1, self.eligible, vals)
        return out

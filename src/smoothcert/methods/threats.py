"""Text threat models: which token positions an attacker may edit, and how many.

A :class:`ThreatModel` is a reusable, JSON-serialisable description of the attack on
the text part of an input (DESIGN.md, "Hybrid text+image certificate", threat
variants; Delattre et al. 2026, arXiv 2605.12876). Applied to one token sequence it
gives the sequence to certify, the ``D`` eligible positions (the positions the noise
kernel randomises and the attacker may overwrite) and ``d_max <= D``, the largest
number of substituted tokens to certify. The attacker substitutes at most ``d`` of the
eligible tokens, writing tokens of the kernel's alphabet.

- :func:`append_suffix`: ``D`` placeholder tokens are appended to the prompt and the
  attacker may overwrite any of them (prompt-suffix attacks). The placeholder must be
  inside the kernel's alphabet (``"uniform"``), or differ from the mask id
  (``"mask"``): the certificate assumes the clean token at every eligible position
  lies in the alphabet.
- :func:`last_d`: the last ``D`` tokens of the sequence are eligible.
- :func:`anywhere`: every position is eligible; the attacker edits any ``d`` tokens.
- :func:`positions`: an explicit set of positions (boolean mask or index list).

All noise is drawn at all ``D`` eligible positions at once (shared sampling): one
probability bound is then valid for every ``d <= D`` simultaneously, since positions the
attacker leaves alone have likelihood ratio 1.

Example:
    >>> import torch
    >>> applied = append_suffix(3, placeholder_id=0).apply(torch.tensor([5, 6]))
    >>> applied.tokens.tolist(), applied.eligible.tolist(), applied.d_max
    ([5, 6, 0, 0, 0], [2, 3, 4], 3)
    >>> last_d(2, d_max=1).apply(torch.tensor([5, 6, 7])).eligible.tolist()
    [1, 2]
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import torch

from smoothcert._validation import check_int
from smoothcert.errors import InvalidParameterError
from smoothcert.noise.tokens import check_tokens, eligible_index, from_numpy

THREATS = ("append_suffix", "last_d", "anywhere", "positions")


@dataclass(frozen=True)
class ThreatModel:
    """Which token positions the attacker may edit, and the largest ``d`` to certify.

    Build it with :func:`append_suffix`, :func:`last_d`, :func:`anywhere` or
    :func:`positions` rather than directly.

    Attributes:
        kind: one of ``"append_suffix"``, ``"last_d"``, ``"anywhere"``, ``"positions"``.
        num_positions: ``D`` for ``append_suffix`` and ``last_d``, else None.
        placeholder_id: the appended token id for ``append_suffix``, else None.
        eligible: explicit positions (``positions``), sorted, else None.
        mask_length: sequence length a boolean mask was given for (``positions``), else
            None.
        d_max: largest number of substituted tokens to certify; None means ``D``.
    """

    kind: str
    num_positions: int | None = None
    placeholder_id: int | None = None
    eligible: tuple[int, ...] | None = None
    mask_length: int | None = None
    d_max: int | None = None

    def __post_init__(self) -> None:
        """Validate the fields for ``kind`` (also when constructed directly).

        Raises:
            InvalidParameterError: on an unknown kind, a missing or unexpected field for
                the kind, ``num_positions < 1``, a negative placeholder, negative or
                repeated positions, a mask length not covering the positions, or
                ``d_max`` outside ``[0, D]`` (when ``D`` is known before applying).
        """
        if not isinstance(self.kind, str) or self.kind not in THREATS:
            raise InvalidParameterError(f"threat kind = {self.kind!r} is invalid; valid: {THREATS}")
        kind = self.kind
        uses = {
            "num_positions": kind in ("append_suffix", "last_d"),
            "placeholder_id": kind == "append_suffix",
            "eligible": kind == "positions",
            "mask_length": kind == "positions",
        }
        for field, used in uses.items():
            value = getattr(self, field)
            if not used and value is not None:
                owners = {
                    "num_positions": "'append_suffix' and 'last_d'",
                    "placeholder_id": "'append_suffix'",
                    "eligible": "'positions'",
                    "mask_length": "'positions'",
                }[field]
                raise InvalidParameterError(
                    f"{field} = {value!r} is invalid for threat kind {kind!r}; valid: None "
                    f"({field} is used by {owners} only)"
                )
        num: int | None = None
        if uses["num_positions"]:
            if self.num_positions is None:
                raise InvalidParameterError(
                    f"num_positions = None is invalid for threat kind {kind!r}; valid range: "
                    "integer num_positions >= 1"
                )
            num = check_int(self.num_positions, name="num_positions", minimum=1)
            object.__setattr__(self, "num_positions", num)
        if uses["placeholder_id"]:
            if self.placeholder_id is None:
                raise InvalidParameterError(
                    "placeholder_id = None is invalid for threat kind 'append_suffix'; valid: "
                    "a token id >= 0"
                )
            placeholder = check_int(self.placeholder_id, name="placeholder_id", minimum=0)
            object.__setattr__(self, "placeholder_id", placeholder)
        if uses["eligible"]:
            if self.eligible is None or isinstance(self.eligible, (str, bytes)):
                raise InvalidParameterError(
                    f"eligible = {self.eligible!r} is invalid for threat kind 'positions'; "
                    "valid: a sequence of distinct token positions >= 0"
                )
            try:
                values = list(self.eligible)
            except TypeError:
                raise InvalidParameterError(
                    f"eligible = {self.eligible!r} is invalid; valid: a sequence of distinct "
                    "token positions >= 0"
                ) from None
            idx = sorted(check_int(v, name="eligible position", minimum=0) for v in values)
            for a, b in zip(idx, idx[1:], strict=False):
                if a == b:
                    raise InvalidParameterError(
                        f"eligible position {a} is repeated; valid: distinct positions"
                    )
            object.__setattr__(self, "eligible", tuple(idx))
            num = len(idx)
            if self.mask_length is not None:
                low = idx[-1] + 1 if idx else 1
                length = check_int(self.mask_length, name="mask_length", minimum=low)
                object.__setattr__(self, "mask_length", length)
        if self.d_max is not None:
            if num is None:
                d_max = check_int(self.d_max, name="d_max", minimum=0)
            else:
                d_max = check_int(self.d_max, name="d_max", minimum=0, maximum=num)
            object.__setattr__(self, "d_max", d_max)

    def apply(self, tokens: torch.Tensor) -> AppliedThreat:
        """Apply the threat to one token sequence.

        Args:
            tokens: 1-D integer tensor ``(L,)`` (one example, no batch axis).

        Returns:
            An :class:`AppliedThreat` with the sequence to certify (the prompt plus the
            placeholder suffix for ``append_suffix``), the eligible positions and
            ``d_max``.

        Raises:
            InvalidParameterError: on bad tokens, ``D > L`` for ``last_d``, positions
                outside the sequence, or ``d_max > D``.
        """
        tokens = check_tokens(tokens)
        length = int(tokens.numel())
        if self.kind == "append_suffix":
            assert self.num_positions is not None and self.placeholder_id is not None
            suffix = torch.full(
                (self.num_positions,), self.placeholder_id, dtype=torch.int64, device=tokens.device
            )
            tokens = torch.cat([tokens, suffix])
            eligible = torch.arange(length, length + self.num_positions, dtype=torch.int64)
        elif self.kind == "last_d":
            assert self.num_positions is not None
            if self.num_positions > length:
                raise InvalidParameterError(
                    f"num_positions = {self.num_positions} is invalid for a sequence of length "
                    f"{length}; valid range: 1 <= num_positions <= {length}"
                )
            eligible = torch.arange(length - self.num_positions, length, dtype=torch.int64)
        elif self.kind == "anywhere":
            eligible = torch.arange(length, dtype=torch.int64)
        else:
            assert self.eligible is not None
            if self.mask_length is not None and self.mask_length != length:
                raise InvalidParameterError(
                    f"eligible mask length = {self.mask_length} is invalid for a sequence of "
                    f"length {length}; valid: a mask of length {length}"
                )
            eligible = eligible_index(list(self.eligible), length)
        num = int(eligible.numel())
        d_max = num if self.d_max is None else self.d_max
        if d_max > num:
            raise InvalidParameterError(
                f"d_max = {d_max} is invalid; valid range: 0 <= d_max <= D = {num} (the number "
                "of eligible positions)"
            )
        return AppliedThreat(threat=self, tokens=tokens, eligible=eligible, d_max=d_max)

    def params(self) -> dict[str, Any]:
        """JSON-serialisable description (for result records and config hashes)."""
        out: dict[str, Any] = {"threat": self.kind}
        if self.num_positions is not None:
            out["num_positions"] = self.num_positions
        if self.placeholder_id is not None:
            out["placeholder_id"] = self.placeholder_id
        if self.eligible is not None:
            out["eligible_positions"] = list(self.eligible)
        if self.d_max is not None:
            out["threat_d_max"] = self.d_max
        return out


@dataclass(frozen=True)
class AppliedThreat:
    """A threat applied to one sequence (returned by :meth:`ThreatModel.apply`).

    Attributes:
        threat: the :class:`ThreatModel`.
        tokens: the sequence to certify, int64 ``(L',)`` on the input's device.
        eligible: sorted eligible positions, int64 ``(D,)`` on the CPU.
        d_max: largest number of substituted tokens to certify, ``0 <= d_max <= D``.
    """

    threat: ThreatModel
    tokens: torch.Tensor
    eligible: torch.Tensor
    d_max: int

    @property
    def num_eligible(self) -> int:
        """Number ``D`` of eligible positions."""
        return int(self.eligible.numel())


def _optional_d_max(d_max: int | None) -> int | None:
    return None if d_max is None else check_int(d_max, name="d_max", minimum=0)


def append_suffix(
    num_positions: int, placeholder_id: int, *, d_max: int | None = None
) -> ThreatModel:
    """Threat: ``num_positions`` placeholder tokens appended; the attacker overwrites up to d.

    Args:
        num_positions: ``D``, the number of appended placeholder tokens, >= 1.
        placeholder_id: token id of the placeholder, >= 0. It must lie in the kernel's
            alphabet (uniform kernel) or differ from the mask id (mask kernel); the
            methods check this before sampling.
        d_max: largest d to certify, ``0 <= d_max <= D`` (default ``D``).

    Returns:
        The :class:`ThreatModel`.

    Raises:
        InvalidParameterError: on ``num_positions < 1``, a negative placeholder or
            ``d_max`` outside ``[0, D]``.

    Example:
        >>> append_suffix(20, placeholder_id=1).params()
        {'threat': 'append_suffix', 'num_positions': 20, 'placeholder_id': 1}
    """
    num = check_int(num_positions, name="num_positions", minimum=1)
    placeholder = check_int(placeholder_id, name="placeholder_id", minimum=0)
    d_max = _optional_d_max(d_max)
    if d_max is not None:
        check_int(d_max, name="d_max", minimum=0, maximum=num)
    return ThreatModel("append_suffix", num_positions=num, placeholder_id=placeholder, d_max=d_max)


def last_d(num_positions: int, *, d_max: int | None = None) -> ThreatModel:
    """Threat: the last ``num_positions`` tokens are eligible; the attacker edits up to d.

    Args:
        num_positions: ``D``, the number of trailing eligible tokens, >= 1.
        d_max: largest d to certify, ``0 <= d_max <= D`` (default ``D``).

    Returns:
        The :class:`ThreatModel`.

    Raises:
        InvalidParameterError: on ``num_positions < 1`` or ``d_max`` outside ``[0, D]``.

    Example:
        >>> last_d(4).apply(torch.arange(6)).eligible.tolist()
        [2, 3, 4, 5]
    """
    num = check_int(num_positions, name="num_positions", minimum=1)
    d_max = _optional_d_max(d_max)
    if d_max is not None:
        check_int(d_max, name="d_max", minimum=0, maximum=num)
    return ThreatModel("last_d", num_positions=num, d_max=d_max)


def anywhere(*, d_max: int | None = None) -> ThreatModel:
    """Threat: every token position is eligible; the attacker edits any d tokens.

    Args:
        d_max: largest d to certify, ``0 <= d_max <= L`` (default ``L``, the sequence
            length; checked when applied).

    Returns:
        The :class:`ThreatModel`.

    Raises:
        InvalidParameterError: on ``d_max < 0`` (and ``d_max > L`` when applied).

    Example:
        >>> anywhere(d_max=2).apply(torch.arange(3)).d_max
        2
    """
    return ThreatModel("anywhere", d_max=_optional_d_max(d_max))


def positions(eligible: Any, *, d_max: int | None = None) -> ThreatModel:
    """Threat: an explicit set of eligible positions.

    Args:
        eligible: a 1-D boolean mask (tensor or numpy) over the sequence, or a list
            (of Python or numpy ints), 1-D integer tensor or numpy integer array of
            distinct non-negative positions. It may be empty: then only ``d = 0`` is
            certified (the hybrid certificate reduces to the Gaussian one).
        d_max: largest d to certify, ``0 <= d_max <= D`` (default ``D``).

    Returns:
        The :class:`ThreatModel`.

    Raises:
        InvalidParameterError: on repeated or negative positions, or ``d_max < 0``.

    Example:
        >>> positions([4, 1]).apply(torch.arange(5)).eligible.tolist()
        [1, 4]
    """
    eligible = from_numpy(eligible, name="eligible")
    mask_length = None
    if isinstance(eligible, torch.Tensor) and eligible.dtype == torch.bool:
        if eligible.ndim != 1:
            raise InvalidParameterError(
                f"eligible mask shape = {tuple(eligible.shape)} is invalid; valid: a 1-D mask"
            )
        mask_length = int(eligible.numel())
    idx = eligible_index(
        eligible, mask_length if mask_length is not None else _max_position(eligible) + 1
    )
    d_max = _optional_d_max(d_max)
    if d_max is not None:
        check_int(d_max, name="d_max", minimum=0, maximum=int(idx.numel()))
    return ThreatModel(
        "positions", eligible=tuple(int(i) for i in idx), mask_length=mask_length, d_max=d_max
    )


def _max_position(eligible: Any) -> int:
    """Largest integer position in ``eligible`` (0 if none), to size the index check."""
    if isinstance(eligible, torch.Tensor):
        if eligible.numel() == 0 or eligible.dtype.is_floating_point:
            return 0
        return int(eligible.max())
    try:
        values = list(eligible)
    except TypeError:
        return 0
    ints = [int(v) for v in values if isinstance(v, numbers.Integral) and not isinstance(v, bool)]
    return max(ints) if ints else 0

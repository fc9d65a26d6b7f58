"""Soft-score reducer: per-class sums of a [0, 1] score and of its square, on the device.

Soft smoothing (DESIGN.md, "Soft scores, Lipschitz-aware radius, tighter bounds")
certifies the mean of a score ``s(f(x + e)) in [0, 1]^K`` instead of hard votes. The
score map is applied to the model's output (logits) in the same loop that counts the
argmax classes (:func:`~smoothcert.sampling.engine.count_classes`):

* ``hardmax``: the one-hot vector of the argmax (the votes; ``temperature`` is unused);
* ``softmax``: ``softmax(t * logits)``;
* ``sparsemax``: ``sparsemax(t * logits)`` (Martins & Astudillo 2016, arXiv 1602.02068):
  the Euclidean projection of ``t * logits`` onto the probability simplex.

Exact, order-free accumulation. Each score is computed in float64 and rounded DOWN to
the grid ``2^-31`` (:data:`SCORE_SCALE`): ``q = floor(s * 2^31)``; the engine sums the
integers ``q`` and, for the squares, the high and low 31 bits of ``q^2`` in int64 on the
device (so the sums of ``(q / 2^31)^2`` are exact too). Integer sums do not
depend on the order of the additions, so the totals are bit-identical whatever the
device's reduction order, the batch size of a forward pass or the number of inputs
sharing it (:func:`score_classes_many` equals :func:`score_classes` one input at a
time), and the only host synchronisation is the final copy. Soundness is kept exactly:
the recorded score ``s_q = q / 2^31`` is itself an i.i.d. [0, 1] variable with
``s - 2^-31 < s_q <= s``, so a lower confidence bound on ``E[s_q]`` (from the sums and
sums of squares of ``s_q``) is a lower bound on ``E[s]``. The sums are returned as
float64 (exact up to ``n = 2^22`` samples, then within a relative ``2^-53``). At most
:data:`MAX_SCORE_SAMPLES` samples per call (int64 headroom).

Histograms (for the betting bounds, :func:`smoothcert.stats.bounded.betting_histogram_lower`):
with ``histogram_bins=B`` the reducer also counts, per class, the samples whose float64
score falls in bin ``min(floor(s * B), B)`` (bin ``b < B`` holds ``[b/B, (b+1)/B)``, bin
``B`` exactly 1; :func:`smoothcert.stats.bounded.score_histogram` is the same rule in
numpy). One ``index_add_`` of int64 ones per batch at ``(input * K + class) * (B + 1) +
bin``, on the device: integer counts, so the histograms are identical whatever the batch
split or the number of inputs sharing a forward pass.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(4, 3)
    >>> g = torch.Generator().manual_seed(0)
    >>> out = score_classes(model, lambda b: (torch.randn(b, 4, generator=g),), 100,
    ...                     num_classes=3, batch_size=32, device="cpu",
    ...                     score_map="softmax", temperature=1.0)
    >>> int(out.counts.sum()), round(float(out.sums.sum()), 6)
    (100, 100.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from smoothcert._validation import check_choice, check_int, check_positive
from smoothcert.decisions.soft import SCORE_MAPS
from smoothcert.errors import InvalidParameterError
from smoothcert.sampling.device import check_device
from smoothcert.sampling.engine import Sampler, _count_classes, check_autocast_dtype
from smoothcert.sampling.multi import _check_samplers, _count_group, _group_size
from smoothcert.stats.bounded import MAX_HISTOGRAM_BITS

SCORE_BITS = 31
SCORE_SCALE = 2**SCORE_BITS
"""Scores are rounded down to multiples of ``1 / SCORE_SCALE`` before they are summed."""

MAX_SCORE_SAMPLES = 2**32 - 1
"""Most samples per input and call: ``MAX_SCORE_SAMPLES * SCORE_SCALE < 2^63`` (int64)."""


class ScoreTotals(NamedTuple):
    """What the score reducer returns for one input (1-D arrays) or ``k`` inputs (2-D).

    Attributes:
        counts: int64 class counts of the argmax (sum to ``n`` per input).
        sums: float64 per-class sums of the (rounded-down) score, in ``[0, n]``.
        sq_sums: float64 per-class sums of the (rounded-down) score's square, in ``[0, n]``.
        histograms: int64 per-class score histograms ``(..., num_classes, B + 1)`` when
            ``histogram_bins=B`` was asked for, else None.
    """

    counts: np.ndarray[Any, np.dtype[np.int64]]
    sums: np.ndarray[Any, np.dtype[np.float64]]
    sq_sums: np.ndarray[Any, np.dtype[np.float64]]
    histograms: np.ndarray[Any, np.dtype[np.int64]] | None = None


def check_score_map(score_map: Any, temperature: Any) -> tuple[str, float]:
    """Validate a score map name (:data:`~smoothcert.decisions.soft.SCORE_MAPS`) and t > 0.

    Raises:
        InvalidParameterError: naming the bad value and the valid ones.
    """
    return (
        check_choice(score_map, name="score_map", choices=SCORE_MAPS),
        check_positive(temperature, name="temperature"),
    )


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """Sparsemax along the last axis (Martins & Astudillo 2016, arXiv 1602.02068, Alg. 1).

    ``sparsemax(z) = argmin_{p in simplex} ||p - z||^2 = max(z - tau(z), 0)`` with
    ``k(z) = max{k : 1 + k z_(k) > sum_{j <= k} z_(j)}`` (``z_(1) >= z_(2) >= ...``
    sorted) and ``tau(z) = (sum_{j <= k(z)} z_(j) - 1) / k(z)``. Vectorised: one sort and
    one cumulative sum per row.

    Args:
        z: a floating tensor ``(..., K)``.

    Returns:
        A tensor of the same shape and dtype; every row is in the simplex.

    Example:
        >>> z = torch.tensor([[1.0, 0.0, -1.0], [0.1, 0.0, 0.0]], dtype=torch.float64)
        >>> sparsemax(z).round(decimals=12).tolist()
        [[1.0, 0.0, 0.0], [0.4, 0.3, 0.3]]
    """
    zs, _ = torch.sort(z, dim=-1, descending=True)
    cs = zs.cumsum(dim=-1)
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype, device=z.device)
    support = (1 + k * zs) > cs
    kz = support.sum(dim=-1, keepdim=True).clamp_min(1)  # k(z) >= 1 always (j = 1 holds)
    tau = (cs.gather(-1, kz - 1) - 1) / kz.to(z.dtype)
    return (z - tau).clamp_min(0)


def apply_score_map(logits: torch.Tensor, score_map: str, temperature: float) -> torch.Tensor:
    """The scores ``(B, K)`` in [0, 1] of a batch of logits, in float64.

    Args:
        logits: ``(B, K)`` model output.
        score_map: ``"hardmax"``, ``"softmax"`` or ``"sparsemax"``.
        temperature: ``t > 0`` (scales the logits; unused by hardmax).

    Example:
        >>> apply_score_map(torch.tensor([[0.0, 1.0]]), "hardmax", 1.0).tolist()
        [[0.0, 1.0]]
    """
    z = logits.to(torch.float64)
    if score_map == "hardmax":
        out = torch.zeros_like(z)
        return out.scatter_(1, z.argmax(dim=1, keepdim=True), 1.0)
    if score_map == "softmax":
        return torch.softmax(temperature * z, dim=1)
    if score_map == "sparsemax":
        return sparsemax(temperature * z)
    raise InvalidParameterError(
        f"score_map = {score_map!r} is invalid; valid: one of {', '.join(SCORE_MAPS)}"
    )


class _ScoreSums:
    """The hook that accumulates the rounded scores of ``k`` inputs (int64, on device)."""

    def __init__(
        self,
        k: int,
        num_classes: int,
        device: torch.device,
        score_map: str,
        temperature: float,
        histogram_bins: int | None = None,
    ) -> None:
        self.k = k
        self.score_map = score_map
        self.temperature = temperature
        self.device = device
        # sums of q, and of the high and low SCORE_BITS bits of q^2 (each < 2^31 per sample)
        self.acc = torch.zeros((3, k, num_classes), dtype=torch.int64, device=device)
        self.bins = histogram_bins
        self.hist: torch.Tensor | None = None
        if histogram_bins is not None:
            self.hist = torch.zeros(
                k * num_classes * (histogram_bins + 1), dtype=torch.int64, device=device
            )
            width = histogram_bins + 1
            # offset of (input, class) in the flat histogram, per row of a batch of b
            self._class_offset = torch.arange(num_classes, device=device) * width
            self._input_offset = torch.arange(k, device=device) * (num_classes * width)

    def __call__(self, scores: torch.Tensor, b: int) -> None:
        # float64 maps, outside autocast (never computed in reduced precision)
        with torch.autocast(device_type=self.device.type, enabled=False):
            s = apply_score_map(scores, self.score_map, self.temperature)
            q = torch.floor(s * SCORE_SCALE).clamp_(0, SCORE_SCALE).to(torch.int64)
            q2 = q * q  # <= 2^62
            parts = torch.stack((q, q2 >> SCORE_BITS, q2 & (SCORE_SCALE - 1)))
            self.acc += parts.view(3, self.k, b, -1).sum(dim=2)
            if self.hist is not None and self.bins is not None:
                # s * B is exact (B a power of two); s < 1 gives a bin < B
                idx = torch.floor(s * self.bins).clamp_(0, self.bins).to(torch.int64)
                idx = idx.view(self.k, b, -1) + self._class_offset
                idx = idx + self._input_offset.view(-1, 1, 1)
                flat = idx.reshape(-1)
                self.hist.index_add_(0, flat, torch.ones_like(flat))

    def totals(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        acc = self.acc.cpu().numpy().astype(np.float64)
        sums = acc[0] / SCORE_SCALE
        sq_sums = acc[1] / SCORE_SCALE + acc[2] / float(SCORE_SCALE) ** 2
        return sums, sq_sums

    def histograms(self) -> np.ndarray[Any, Any] | None:
        """The histograms ``(k, num_classes, B + 1)`` (one host copy), or None."""
        if self.hist is None or self.bins is None:
            return None
        out: np.ndarray[Any, Any] = self.hist.cpu().numpy().reshape(self.k, -1, self.bins + 1)
        return out


def check_histogram_bins(bins: Any) -> int | None:
    """None, or a power of two ``1 <= B <= 2^MAX_HISTOGRAM_BITS`` (the bins of a histogram).

    Raises:
        InvalidParameterError: naming the bad value and the valid range.
    """
    if bins is None:
        return None
    out = check_int(bins, name="histogram_bins", minimum=1, maximum=2**MAX_HISTOGRAM_BITS)
    if out & (out - 1):
        raise InvalidParameterError(
            f"histogram_bins = {out} is invalid; valid: a power of two 1 <= B <= "
            f"{2**MAX_HISTOGRAM_BITS}"
        )
    return out


def _check(num_samples: int, score_map: Any, temperature: Any) -> tuple[int, str, float]:
    num_samples = check_int(num_samples, name="num_samples", minimum=1, maximum=MAX_SCORE_SAMPLES)
    score_map, temperature = check_score_map(score_map, temperature)
    return num_samples, score_map, temperature


def score_classes(
    model: Callable[..., torch.Tensor],
    sampler: Sampler,
    num_samples: int,
    *,
    num_classes: int,
    batch_size: int,
    device: torch.device | str,
    score_map: str,
    temperature: float = 1.0,
    autocast_dtype: torch.dtype | None = None,
    histogram_bins: int | None = None,
) -> ScoreTotals:
    """Class counts and per-class score sums of ``num_samples`` noisy inputs.

    The loop, the argmax counts and their checks are those of
    :func:`~smoothcert.sampling.engine.count_classes` (same sampler calls, so the same
    counts for the same seed); each batch's scores are also mapped to [0, 1] and summed
    on the device (module docstring).

    Args:
        model: maps a batch of inputs to logits ``(batch, num_classes)``.
        sampler: ``sampler(b)`` returns the tuple of ``b`` noisy inputs.
        num_samples: samples, ``1 <= num_samples <= MAX_SCORE_SAMPLES``.
        num_classes: output columns, >= 2.
        batch_size: samples per forward pass, >= 1.
        device: the device the sums accumulate on (the model's).
        score_map: ``"hardmax"``, ``"softmax"`` or ``"sparsemax"``.
        temperature: ``t > 0``, the logits are multiplied by it (unused by hardmax).
        autocast_dtype: optional reduced-precision forward passes (the maps stay float64).
        histogram_bins: None, or ``B`` (a power of two): also count per-class score
            histograms of ``B + 1`` bins (module docstring).

    Returns:
        :class:`ScoreTotals` of 1-D arrays of length ``num_classes`` (histograms
        ``(num_classes, B + 1)``).

    Raises:
        InvalidParameterError: on bad arguments (before sampling) or malformed or
            non-finite model output.
    """
    num_samples, score_map, temperature = _check(num_samples, score_map, temperature)
    histogram_bins = check_histogram_bins(histogram_bins)
    dev = torch.device(device)
    num_classes = check_int(num_classes, name="num_classes", minimum=2)
    hook = _ScoreSums(1, num_classes, dev, score_map, temperature, histogram_bins)
    counts = _count_classes(
        model,
        sampler,
        num_samples,
        num_classes=num_classes,
        batch_size=batch_size,
        device=dev,
        autocast_dtype=autocast_dtype,
        on_scores=hook,
    )
    sums, sq = hook.totals()
    hist = hook.histograms()
    return ScoreTotals(counts, sums[0], sq[0], None if hist is None else hist[0])


def score_classes_many(
    model: Any,
    samplers: Sequence[Sampler],
    num_samples: int,
    *,
    num_classes: int,
    batch_size: int,
    device: torch.device | str,
    score_map: str,
    temperature: float = 1.0,
    autocast_dtype: torch.dtype | None = None,
    max_batch: int | None = None,
    histogram_bins: int | None = None,
) -> ScoreTotals:
    """:func:`score_classes` for ``k`` inputs in shared forward passes.

    The batching of :func:`~smoothcert.sampling.multi.count_classes_many` (each input's
    sampler called with the one-input chunk sizes); the totals are identical to
    :func:`score_classes` one input at a time (integer sums; identical model outputs
    assumed, as for the counts).

    Args:
        model: maps a batch of inputs to logits ``(batch, num_classes)``.
        samplers: ``k >= 1`` samplers, one per input (own generator each).
        num_samples: samples per input, ``1 <= num_samples <= MAX_SCORE_SAMPLES``.
        num_classes: output columns, >= 2.
        batch_size: samples per input per step, >= 1.
        device: the device the sums accumulate on (the model's).
        score_map: ``"hardmax"``, ``"softmax"`` or ``"sparsemax"``.
        temperature: ``t > 0`` (unused by hardmax).
        autocast_dtype: optional reduced-precision forward passes.
        max_batch: optional cap on the rows of one forward pass, >= ``batch_size``.
        histogram_bins: as :func:`score_classes`.

    Returns:
        :class:`ScoreTotals` of ``(k, num_classes)`` arrays, row ``i`` for input ``i``
        (histograms ``(k, num_classes, B + 1)``).

    Raises:
        InvalidParameterError: as :func:`score_classes` and
            :func:`~smoothcert.sampling.multi.count_classes_many`.
    """
    samplers = _check_samplers(samplers)
    num_samples, score_map, temperature = _check(num_samples, score_map, temperature)
    histogram_bins = check_histogram_bins(histogram_bins)
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
    counts = np.empty((k, num_classes), dtype=np.int64)
    sums = np.empty((k, num_classes), dtype=np.float64)
    sq_sums = np.empty((k, num_classes), dtype=np.float64)
    hists = (
        None
        if histogram_bins is None
        else np.empty((k, num_classes, histogram_bins + 1), dtype=np.int64)
    )
    for start in range(0, k, group):
        stop = min(k, start + group)
        hook = _ScoreSums(stop - start, num_classes, dev, score_map, temperature, histogram_bins)
        counts[start:stop] = _count_group(
            model,
            samplers[start:stop],
            first_index=start,
            num_samples=num_samples,
            num_classes=num_classes,
            batch_size=batch_size,
            device=dev,
            autocast_dtype=autocast_dtype,
            on_scores=hook,
        )
        sums[start:stop], sq_sums[start:stop] = hook.totals()
        if hists is not None:
            hists[start:stop] = hook.histograms()
    return ScoreTotals(counts, sums, sq_sums, hists)

"""The sampler core every method draws its evidence with.

A :class:`Sampler` is one validated object holding the model, a noise kernel bound to
one clean input (the noise contract of :mod:`smoothcert.noise`), the generator, the
device, the batch size and the autocast dtype. ``counts(n)`` returns the class counts
of ``n`` FRESH noisy samples: successive calls continue the same generator, so the
stages of a method (selection, then estimation) are independent draws.

Building it checks, before any sampling, that every submodule of the model is in eval
mode and that the model accepts the clean input(s) and returns ``(1, num_classes)``
finite scores (on clones, so a model that edits its input in place cannot move the
certified point).

Example:
    >>> import torch
    >>> from smoothcert.noise.gaussian import GaussianNoise
    >>> model = torch.nn.Linear(3, 2).eval()
    >>> s = Sampler(model, GaussianNoise(0.5).bind(torch.zeros(3)), seed=0, batch_size=64)
    >>> s.num_classes, int(s.counts(100).sum())
    (2, 100)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from smoothcert._validation import check_int
from smoothcert.errors import InvalidParameterError
from smoothcert.methods._common import (
    check_eval_mode,
    model_rejected_input,
    probe_num_classes,
)
from smoothcert.records import Evidence, Facts, ScoreHistograms, StageEvidence
from smoothcert.sampling.engine import count_classes, make_generator
from smoothcert.sampling.scores import ScoreTotals, score_classes

Counts = np.ndarray[Any, np.dtype[np.int64]]


class BoundNoise(Protocol):
    """The noise contract: a kernel bound to one clean input (see :mod:`smoothcert.noise`)."""

    def sample(self, num: int, *, generator: torch.Generator) -> Any:  # noqa: D102
        ...

    def clean_inputs(self) -> tuple[torch.Tensor, ...]:  # noqa: D102
        ...

    def tv_bound(self) -> float:  # noqa: D102
        ...


class Sampler:
    """Model + bound kernel + generator + device + batch size + autocast.

    Args:
        model: ``torch.nn.Module`` in eval mode (or a callable) taking the kernel's
            inputs with a batch axis and returning scores ``(B, num_classes)``.
        noise: the bound kernel (``sample``, ``clean_inputs``, ``tv_bound``).
        seed: seed of the ``torch.Generator`` on ``device``, 0 <= seed < 2**63.
        batch_size: samples per forward pass, >= 1.
        num_classes: expected output columns, or None to take them from the model.
        device: the device the inputs are on and the noise is drawn on (default: the
            device of the first clean input).
        autocast_dtype: optional ``torch.bfloat16`` / ``torch.float16`` forward passes.
        probe: run the model once on the clean input to check it and count its classes.
            False skips that forward pass when ``num_classes`` is given and the caller has
            already probed the model on an input of the same kind (a dataset run probes
            its first example); the engine still checks every noisy batch's output.
        generator: an existing generator to continue (a later stage of the same input
            drawn by another model or kernel: its noise is fresh, after the stream
            already used); None seeds a new one with ``seed``.

    Raises:
        InvalidParameterError: on a model in training mode, a model that rejects the
            clean input, a bad output shape or non-finite output, or bad arguments.
    """

    def __init__(
        self,
        model: Callable[..., torch.Tensor],
        noise: BoundNoise,
        *,
        seed: int,
        batch_size: int,
        num_classes: int | None = None,
        device: torch.device | None = None,
        autocast_dtype: torch.dtype | None = None,
        probe: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        self.model = model
        self.noise = noise
        self.batch_size = check_int(batch_size, name="batch_size", minimum=1)
        self.seed = check_int(seed, name="seed", minimum=0, maximum=2**63 - 1)
        if num_classes is not None:
            num_classes = check_int(num_classes, name="num_classes", minimum=2)
        clean = noise.clean_inputs()
        self.device = device if device is not None else clean[0].device
        self.autocast_dtype = autocast_dtype
        check_eval_mode(model)
        self._clean_batch = tuple(t.unsqueeze(0) for t in clean)
        if probe or num_classes is None:
            self.num_classes = probe_num_classes(model, self._clean_batch, num_classes)
        else:
            self.num_classes = num_classes
        if generator is not None and generator.device != torch.device(self.device):
            raise InvalidParameterError(
                f"generator on {generator.device} is invalid for sampling on {self.device}; "
                "valid: a generator on the sampling device"
            )
        self.generator = (
            generator if generator is not None else make_generator(self.seed, self.device)
        )

    def _draw(self, num: int) -> tuple[torch.Tensor, ...]:
        out = self.noise.sample(num, generator=self.generator)
        return (out,) if isinstance(out, torch.Tensor) else tuple(out)

    def counts(self, num: int) -> Counts:
        """Class counts of ``num`` fresh noisy samples (int64, summing to ``num``).

        Raises:
            InvalidParameterError: if the model output is malformed or non-finite, or the
                model raises ``IndexError`` on a noisy sample (typically token ids beyond
                its embedding table); the message repeats the model's error.
        """
        try:
            return count_classes(
                self.model,
                self._draw,
                num,
                num_classes=self.num_classes,
                batch_size=self.batch_size,
                device=self.device,
                autocast_dtype=self.autocast_dtype,
            )
        except IndexError as err:
            raise model_rejected_input(err, self._clean_batch, when="on a noisy sample") from err

    def scores(
        self,
        num: int,
        score_map: str,
        temperature: float = 1.0,
        *,
        histogram_bins: int | None = None,
    ) -> ScoreTotals:
        """Class counts and per-class score sums of ``num`` fresh noisy samples.

        The same generator stream as :meth:`counts` (the same counts for the same draws);
        the scores are ``score_map`` (``hardmax``, ``softmax``, ``sparsemax``) of
        ``temperature * logits``, summed on the device
        (:func:`smoothcert.sampling.scores.score_classes`), with per-class histograms of
        ``histogram_bins + 1`` bins if asked for.

        Returns:
            :class:`~smoothcert.sampling.scores.ScoreTotals` (counts, sums, sq_sums,
            histograms).

        Raises:
            InvalidParameterError: as :meth:`counts`, or on a bad map or temperature.
        """
        try:
            return score_classes(
                self.model,
                self._draw,
                num,
                num_classes=self.num_classes,
                batch_size=self.batch_size,
                device=self.device,
                score_map=score_map,
                temperature=temperature,
                autocast_dtype=self.autocast_dtype,
                histogram_bins=histogram_bins,
            )
        except IndexError as err:
            raise model_rejected_input(err, self._clean_batch, when="on a noisy sample") from err

    def measure(self, stage: PlannedStage) -> StageEvidence:
        """Draw ``stage`` with this sampler: its counts, and score sums if it asks for them."""
        if stage.scores is None:
            return _stage(stage, self.counts(stage.n))
        totals = self.scores(stage.n, *stage.scores, histogram_bins=stage.histogram_bins)
        return _stage(stage, totals.counts, totals.sums, totals.sq_sums, totals.histograms)


@dataclass(frozen=True)
class PlannedStage:
    """One sampling stage a method will draw.

    Attributes:
        role: its role (:data:`smoothcert.records.ROLES`).
        n: its number of samples.
        alpha: the alpha it plans to spend.
        source: which sampler draws it: 0 is :attr:`Prepared.sampler`, ``i >= 1`` is
            ``Prepared.sources[i - 1]`` (another model or noise level of the same input,
            e.g. dual smoothing's expert at the chosen sigma).
        scores: None for class counts only; ``(score_map, temperature)`` to record also
            per-class score sums and sums of squares
            (:func:`smoothcert.sampling.scores.score_classes`).
        histogram_bins: with ``scores``: None, or ``B`` to record also per-class score
            histograms of ``B + 1`` bins (for the betting bounds).
    """

    role: str
    n: int
    alpha: float
    source: int = 0
    scores: tuple[str, float] | None = None
    histogram_bins: int | None = None


NextStage = Callable[[Evidence], PlannedStage | None]
"""A sequential method's stopping rule: the evidence so far -> the next stage, or None."""


@dataclass(frozen=True)
class Prepared:
    """A method's torch half, ready to draw: validated sampler, stage plan and facts.

    Created by each method's ``prepare`` (every check done, nothing sampled yet).
    :func:`draw` draws the stages of one input; :func:`draw_many` draws those of
    several inputs in shared forward batches, with identical counts.

    Attributes:
        sampler: the validated :class:`Sampler` (its own generator).
        stages: the stages to draw, in order, all from the sampler's generator.
        facts: the method's facts about the input.
        started: ``time.perf_counter()`` when preparation started.
        next_stage: for a sequential method, the pure stopping rule called after the
            planned stages and after each further stage with the evidence so far; it
            returns the next stage to draw (fresh samples, same generator) or None to
            stop. None for a method with a fixed plan.
        sources: further samplers a stage may draw from (:attr:`PlannedStage.source`);
            they share :attr:`sampler`'s generator, so every stage draws fresh noise
            that continues the same stream whichever sampler draws it.
    """

    sampler: Sampler
    stages: tuple[PlannedStage, ...]
    facts: Facts
    started: float
    next_stage: NextStage | None = None
    sources: tuple[Sampler, ...] = ()

    def __post_init__(self) -> None:
        for source in self.sources:
            if source.generator is not self.sampler.generator:
                raise InvalidParameterError(
                    "a Prepared's further samplers must share its sampler's generator; "
                    "valid: Sampler(..., generator=prepared_sampler.generator)"
                )

    def sampler_for(self, stage: PlannedStage) -> Sampler:
        """The sampler that draws ``stage`` (its :attr:`PlannedStage.source`)."""
        if stage.source == 0:
            return self.sampler
        if not 1 <= stage.source <= len(self.sources):
            raise InvalidParameterError(
                f"stage source = {stage.source} is invalid; valid range: 0 <= source <= "
                f"{len(self.sources)}"
            )
        return self.sources[stage.source - 1]

    def evidence(self, stages: Sequence[StageEvidence]) -> Evidence:
        """The evidence of the stages drawn so far (seconds since preparation started)."""
        return Evidence(
            tuple(stages),
            self.facts,
            seed=self.sampler.seed,
            seconds=time.perf_counter() - self.started,
        )


def round_rule(next_size: Callable[[Evidence], int | None]) -> NextStage:
    """A sequential method's ``next_stage``: a ``round`` of the size ``next_size`` asks for.

    ``next_size`` is the method's pure rule (e.g.
    :func:`smoothcert.decisions.sequential.next_round_size` with its parameters bound);
    None stops the loop.
    """

    def rule(evidence: Evidence) -> PlannedStage | None:
        size = next_size(evidence)
        return None if size is None else PlannedStage("round", size, 0.0)

    return rule


def _stage(
    planned: PlannedStage, counts: Any, sums: Any = None, sq_sums: Any = None, hist: Any = None
) -> StageEvidence:
    return StageEvidence(
        planned.role,
        n=planned.n,
        alpha=planned.alpha,
        counts=tuple(counts),
        score_sums=None if sums is None else tuple(float(v) for v in sums),
        score_sq_sums=None if sq_sums is None else tuple(float(v) for v in sq_sums),
        score_histograms=None if hist is None else ScoreHistograms.from_dense(hist),
    )


def draw(prepared: Prepared) -> Evidence:
    """Draw the stages of one input, one after the other (fresh samples each).

    The planned stages first; then, for a sequential method, the stages its
    ``next_stage`` rule asks for until it returns None.
    """
    stages = [prepared.sampler_for(s).measure(s) for s in prepared.stages]
    if prepared.next_stage is not None:
        while (planned := prepared.next_stage(prepared.evidence(stages))) is not None:
            stages.append(prepared.sampler_for(planned).measure(planned))
    return prepared.evidence(stages)


def draw_many(prepared: Sequence[Prepared], *, max_batch: int | None = None) -> list[Evidence]:
    """Draw the stages of several inputs with shared forward passes.

    Several small inputs share one forward batch
    (:func:`smoothcert.sampling.multi.count_classes_many`): each input's noise is drawn
    from its own generator with the chunk sizes of :func:`draw`, so the counts are
    those :func:`draw` gives for each input alone. A sequential method's inputs stop at
    different rounds: after each round, the inputs whose rules ask for the same next
    stage share its forward passes. Every input must use the same model,
    batch size, number of classes, device, autocast and stage plan (one run's examples
    do). Each evidence's ``seconds`` is its share of the total time.

    Args:
        prepared: the inputs' :class:`Prepared`, >= 1.
        max_batch: optional cap on the rows of one forward pass.

    Returns:
        One :class:`~smoothcert.records.Evidence` per input, in order.

    Raises:
        InvalidParameterError: if the inputs do not share model and stage plan, or the
            model output is malformed.
    """
    first = prepared[0]
    s0 = first.sampler
    for p in prepared[1:]:
        s = p.sampler
        if (
            s.model is not s0.model
            or p.stages != first.stages
            or (p.next_stage is None) != (first.next_stage is None)
            or (s.batch_size, s.num_classes, s.device, s.autocast_dtype)
            != (s0.batch_size, s0.num_classes, s0.device, s0.autocast_dtype)
        ):
            raise InvalidParameterError(
                "inputs that share forward passes must share the model, batch size, number "
                "of classes, device, autocast and stage plan; valid: the examples of one run"
            )
    per_input: list[list[StageEvidence]] = [[] for _ in prepared]
    for stage in first.stages:
        for i, measured in enumerate(_measure_many(prepared, stage, max_batch)):
            per_input[i].append(measured)
    active = list(range(len(prepared))) if first.next_stage is not None else []
    while active:
        # every input asks its own rule; inputs that ask for the same stage share passes
        asked: dict[PlannedStage, list[int]] = {}
        for i in active:
            rule = prepared[i].next_stage
            assert rule is not None
            planned = rule(prepared[i].evidence(per_input[i]))
            if planned is not None:
                asked.setdefault(planned, []).append(i)
        for planned, members in asked.items():
            measured = _measure_many([prepared[i] for i in members], planned, max_batch)
            for row, i in enumerate(members):
                per_input[i].append(measured[row])
        active = [i for members in asked.values() for i in members]
    started = min(p.started for p in prepared)
    share = (time.perf_counter() - started) / len(prepared)
    return [
        Evidence(tuple(per_input[i]), p.facts, seed=p.sampler.seed, seconds=share)
        for i, p in enumerate(prepared)
    ]


def _measure_many(
    prepared: Sequence[Prepared], stage: PlannedStage, max_batch: int | None
) -> list[StageEvidence]:
    """The stage evidence of ``stage.n`` fresh samples of each input, in shared passes."""
    if stage.scores is None:
        return [_stage(stage, row) for row in _counts_many(prepared, stage, max_batch)]
    totals = _counts_many(prepared, stage, max_batch)
    return [
        _stage(
            stage,
            totals.counts[i],
            totals.sums[i],
            totals.sq_sums[i],
            None if totals.histograms is None else totals.histograms[i],
        )
        for i in range(len(prepared))
    ]


def _counts_many(prepared: Sequence[Prepared], stage: PlannedStage, max_batch: int | None) -> Any:
    """Class counts of ``stage.n`` fresh samples of each input, in shared forward passes.

    For a stage with ``scores``: their :class:`~smoothcert.sampling.scores.ScoreTotals`.
    """
    from smoothcert.sampling.multi import count_classes_many
    from smoothcert.sampling.scores import score_classes_many

    samplers = [p.sampler_for(stage) for p in prepared]
    s0 = samplers[0]
    if any(
        s.model is not s0.model or (s.num_classes, s.device) != (s0.num_classes, s0.device)
        for s in samplers[1:]
    ):
        raise InvalidParameterError(
            f"inputs that share the forward passes of a {stage.role} stage must share its "
            "model, number of classes and device; valid: the examples of one run"
        )
    try:
        if stage.scores is not None:
            return score_classes_many(
                s0.model,
                [s._draw for s in samplers],
                stage.n,
                num_classes=s0.num_classes,
                batch_size=s0.batch_size,
                device=s0.device,
                score_map=stage.scores[0],
                temperature=stage.scores[1],
                autocast_dtype=s0.autocast_dtype,
                max_batch=max_batch,
                histogram_bins=stage.histogram_bins,
            )
        return count_classes_many(
            s0.model,
            [s._draw for s in samplers],
            stage.n,
            num_classes=s0.num_classes,
            batch_size=s0.batch_size,
            device=s0.device,
            autocast_dtype=s0.autocast_dtype,
            max_batch=max_batch,
        )
    except IndexError as err:
        raise model_rejected_input(err, s0._clean_batch, when="on a noisy sample") from err

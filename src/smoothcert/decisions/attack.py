"""Empirical robustness of the smoothed classifier: the decision of an L2 attack (``attack-l2``).

Pure: evidence (class counts at the clean input and at the attacked inputs) and
:class:`AttackParams` -> :class:`~smoothcert.records.CertifyResult` with claim
``"empirical"``. This is NOT a certificate: it is the outcome of an attack, reported next to
the certified curves (the gap between them says how loose the certificate may be).

The torch half (:mod:`smoothcert.methods.attack`) attacks the SMOOTHED classifier
``g(x) = argmax_c P(f(x + e) = c)``, ``e ~ N(0, sigma^2 I)``, SmoothAdv style (Salman et
al. 2019, "Provably Robust Deep Learning via Adversarially Trained Smoothed Classifiers",
arXiv 1906.04584, Section 3.1, eq. (S): PGD on ``-log E_e[softmax(f(x' + e))_c]`` with the
expectation replaced by ``noise_samples`` draws per step) at each radius ``r`` of a grid,
then draws ``eval_n`` fresh noisy samples at each attacked input ``x'(r)``. The evidence is:

* a ``selection`` stage of ``eval_n`` samples at ``x``: the clean prediction ``c`` is their
  majority class (label-free: the attack moves away from ``c``, whatever the label);
* one ``attack`` stage of ``eval_n`` samples at ``x'(r)`` per grid radius, in grid order.

A flip at ``r`` is declared only when Cohen et al.'s PREDICT (arXiv 1902.02918,
Proposition 1: two-sided binomial test of the top count ``n_A`` out of ``n_A + n_B`` at 1/2)
returns a class other than ``c`` at level ``alpha``: a declared flip is a real change of
the smoothed prediction with probability >= 1 - alpha (no false flips beyond that);
an inconclusive test is "no flip found". The result's ``radius`` is the largest grid
radius ``r`` with no flip found at every grid radius ``r' <= r`` (0 if the first one
flips; the grid's largest radius if none flips), in the units of the input tensor
(pixels in [0, 1] for the bundled models).

What the numbers mean: the fraction of examples that are correct with ``radius >= r``
(``r`` a grid radius) is the attack's empirical robust accuracy at ``r``. An attack only
finds some perturbations, so it is an UPPER bound on the true robust accuracy of the
smoothed classifier, which is itself >= the certified accuracy (a lower bound, with
failure probability alpha per example); both comparisons hold up to Monte Carlo error
(the clean majority of ``eval_n`` samples may differ from ``g(x)`` near a tie, and each
declared flip is wrong with probability <= alpha).

Example:
    >>> from smoothcert.records import Evidence, StageEvidence
    >>> params = AttackParams(sigma=0.5, radii=(0.25, 0.5), eval_n=100, alpha=0.001)
    >>> ev = Evidence((StageEvidence("selection", n=100, alpha=0.0, counts=(90, 10)),
    ...                StageEvidence("attack", n=100, alpha=0.0, counts=(70, 30)),
    ...                StageEvidence("attack", n=100, alpha=0.0, counts=(5, 95))),
    ...               AttackFacts(num_classes=2, radii=(0.25, 0.5)), seed=0)
    >>> res = decide_attack(ev, params)
    >>> res.prediction, res.radius, res.claim, res.details.flipped
    (0, 0.25, 'empirical', (False, True))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binomtest

from smoothcert._validation import (
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability_level,
)
from smoothcert.decisions._common import (
    check_class,
    check_num_classes,
    require_facts,
    with_alpha,
)
from smoothcert.errors import InvalidParameterError
from smoothcert.records import (
    CertifyResult,
    Details,
    Evidence,
    Facts,
    Payload,
    StageEvidence,
    register_payload,
)

ATTACK_SCORES = ("softmax", "logits")
"""What the PGD minimises, averaged over the noise draws of each step: ``"softmax"``: the
smoothed soft score of the clean class, as ``log mean_j softmax(t f(x' + e_j))_c``
(SmoothAdv); ``"logits"``: the mean margin ``f_c - max_{c' != c} f_c'`` of the base model's
logits (a CW-style expectation-over-noise attack)."""


def check_radius_grid(
    radii: Any, *, name: str = "radii", allow_zero: bool = False
) -> tuple[float, ...]:
    """Return a radius grid as a tuple of floats: non-empty, finite, > 0, strictly increasing.

    Args:
        radii: the grid (input units).
        name: its name in messages.
        allow_zero: accept a radius of 0 (a (d, r) grid: token or field changes alone).

    Raises:
        InvalidParameterError: naming the grid and the valid range.

    Example:
        >>> check_radius_grid([0.25, 0.5]), check_radius_grid([0, 0.5], allow_zero=True)
        ((0.25, 0.5), (0.0, 0.5))
    """
    bound = ">= 0" if allow_zero else "> 0"
    valid = f"a non-empty, strictly increasing sequence of finite {name} {bound} (input units)"
    check = check_nonnegative if allow_zero else check_positive
    if isinstance(radii, (str, bytes)) or not isinstance(radii, Sequence) or not radii:
        raise InvalidParameterError(f"{name} = {radii!r} is invalid; valid: {valid}")
    try:
        grid = tuple(check(r, name="radius") for r in radii)
    except InvalidParameterError as err:
        raise InvalidParameterError(f"{name} = {radii!r} is invalid; valid: {valid}") from err
    if any(b <= a for a, b in zip(grid, grid[1:], strict=False)):
        raise InvalidParameterError(f"{name} = {radii!r} is invalid; valid: {valid}")
    return grid


@register_payload
@dataclass(frozen=True, kw_only=True)
class AttackParams(Payload):
    """Parameters of the L2 PGD attack on the Gaussian-smoothed classifier (``attack-l2``).

    Every field changes the records, so every field is hashed with the run's config.

    Attributes:
        sigma: noise standard deviation of the smoothed classifier, > 0, input units.
        radii: the attacked L2 radii, strictly increasing, each > 0, in the units of the
            input tensor (pixels in [0, 1] for the bundled models).
        steps: PGD steps per radius, >= 1.
        step_size: L2 length of each PGD step, > 0, input units; None: ``2.5 r / steps``
            at radius ``r`` (Madry et al. 2018's rule of thumb).
        noise_samples: noise draws per gradient step (the Monte Carlo expectation over
            noise of SmoothAdv), >= 1.
        eval_n: fresh noisy samples that evaluate the smoothed classifier at the clean
            input and at each attacked input, >= 1.
        temperature: the ``softmax`` score is that of ``temperature * logits``, > 0.
        score: what PGD minimises, one of :data:`ATTACK_SCORES`.
        random_start: start PGD at a random point of the ball (drawn from the run's
            generator), else at ``x``.
        clip: keep the attacked input in the pixel box [0, 1] (projection after each
            step); False for inputs that are not pixels in [0, 1].
        alpha: level of the flip test (PREDICT) at each attacked input, in (0, 1).
    """

    kind = "attack_l2"
    sigma: float
    radii: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    steps: int = 20
    step_size: float | None = None
    noise_samples: int = 8
    eval_n: int = 1000
    temperature: float = 1.0
    score: str = "softmax"
    random_start: bool = True
    clip: bool = True
    alpha: float = 0.001

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "sigma", check_positive(self.sigma, name="sigma"))
        set_(self, "radii", check_radius_grid(self.radii))
        set_(self, "steps", check_int(self.steps, name="steps", minimum=1))
        if self.step_size is not None:
            set_(self, "step_size", check_positive(self.step_size, name="step_size"))
        set_(
            self,
            "noise_samples",
            check_int(self.noise_samples, name="noise_samples", minimum=1),
        )
        set_(self, "eval_n", check_int(self.eval_n, name="eval_n", minimum=1))
        set_(self, "temperature", check_positive(self.temperature, name="temperature"))
        check_choice(self.score, name="score", choices=ATTACK_SCORES)
        for name in ("random_start", "clip"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidParameterError(
                    f"{name} = {getattr(self, name)!r} is invalid; valid: true or false"
                )
        set_(self, "alpha", check_probability_level(self.alpha))

    def step_length(self, radius: float) -> float:
        """The PGD step length at ``radius`` (input units): ``step_size`` or ``2.5 r / steps``."""
        return self.step_size if self.step_size is not None else 2.5 * radius / self.steps

    def forward_samples(self) -> int:
        """Noisy forward passes per input: evaluations plus PGD's (each also has a backward).

        ``eval_n (1 + len(radii)) + len(radii) steps noise_samples``.
        """
        k = len(self.radii)
        return self.eval_n * (1 + k) + k * self.steps * self.noise_samples


@register_payload
@dataclass(frozen=True, kw_only=True)
class AttackFacts(Facts):
    """What the attack's decision needs to know about the input.

    Attributes:
        num_classes: number of model outputs, >= 2.
        radii: the grid the attack ran at (the ``attack`` stages, in order).
    """

    kind = "attack_facts"
    num_classes: int
    radii: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "num_classes", check_int(self.num_classes, name="num_classes", minimum=2)
        )
        object.__setattr__(self, "radii", check_radius_grid(self.radii))


@register_payload
@dataclass(frozen=True, kw_only=True)
class AttackDetails(Details):
    """Per-radius outcome of the attack.

    Attributes:
        radii: the grid radii (input units).
        flipped: per radius, whether a flip of the smoothed prediction was declared.
        attacked_class: per radius, the top class of the counts at the attacked input.
        p_values: per radius, PREDICT's two-sided binomial p-value (top two counts).
        first_flip: the smallest radius with a declared flip, or None.
    """

    kind = "attack_details"
    radii: tuple[float, ...]
    flipped: tuple[bool, ...]
    attacked_class: tuple[int, ...]
    p_values: tuple[float, ...]
    first_flip: float | None


def predict_test(counts: Sequence[int] | np.ndarray) -> tuple[int, float]:
    """PREDICT's top class and two-sided binomial p-value of ``n_A`` out of ``n_A + n_B`` at 1/2.

    Cohen et al. 2019 (arXiv 1902.02918), Proposition 1; the flip test of every attack.

    Example:
        >>> top, p = predict_test([10, 90])
        >>> top, p < 1e-10
        (1, True)
    """
    array = np.asarray(counts, dtype=np.int64)
    order = np.argsort(-array, kind="stable")
    n_a, n_b = int(array[order[0]]), int(array[order[1]])
    p_value = float(binomtest(n_a, n_a + n_b, 0.5).pvalue) if n_a + n_b > 0 else 1.0
    return int(order[0]), p_value


def check_attack_stages(
    evidence: Evidence, *, points: int, n: int, n_name: str, method: str, unit: str
) -> list[StageEvidence]:
    """The ``attack`` stages of an attack's evidence, after checking its layout and sizes.

    The layout every attack shares: a ``selection`` stage at the clean input, then one
    ``attack`` stage per attacked point, each of ``n`` samples with class counts.

    Args:
        evidence: the saved evidence.
        points: number of attacked points (``attack`` stages).
        n: samples per stage (the parameters' ``n_name``).
        n_name: the parameter's name, for the message (``"eval_n"`` or ``"n"``).
        method: the method's name, for the message.
        unit: what one attack stage is, for the message (``"radius"``, ``"(d, r) point"``).

    Returns:
        The ``attack`` stages, in order.

    Raises:
        InvalidParameterError: on other stages or sample sizes than the parameters say.
    """
    roles = [s.role for s in evidence.stages]
    if roles != ["selection"] + ["attack"] * points:
        raise InvalidParameterError(
            f"evidence stages {roles} are invalid for method {method!r}; valid: a "
            f"selection stage then {points} attack stages (one per {unit})"
        )
    for stage in evidence.stages:
        if stage.n != n or not stage.counts:
            raise InvalidParameterError(
                f"the {stage.role} stage drew n = {stage.n} samples (counts {stage.counts}) "
                f"but the parameters say {n_name} = {n}; valid: parameters with the sample "
                "sizes of the evidence"
            )
    return list(evidence.stages[1:])


def empirical_result(
    method: str,
    evidence: Evidence,
    params: Any,
    *,
    prediction: int | None,
    radius: float,
    details: Details,
) -> CertifyResult:
    """The result of an attack (claim ``"empirical"``, ``p_lower = 0``: nothing is bounded).

    ``params.alpha`` is recorded as spent by every ``attack`` stage's test; the result
    abstains exactly when ``prediction`` is None (nothing to attack).
    """
    return CertifyResult(
        method=method,
        claim="empirical",
        prediction=prediction,
        abstained=prediction is None,
        radius=float(radius),
        p_lower=0.0,
        alpha=params.alpha,
        seed=evidence.seed,
        seconds=evidence.seconds,
        params=params,
        evidence=with_alpha(evidence, {"attack": params.alpha}),
        details=details,
    )


def dr_points(radii: Sequence[float], d_max: int) -> tuple[tuple[int, float], ...]:
    """The attacked points ``(d, r)`` of a grid, d-major, without the clean ``(0, 0)``.

    Example:
        >>> dr_points((0.0, 0.5), 1)
        ((0, 0.5), (1, 0.0), (1, 0.5))
    """
    return tuple((d, r) for d in range(d_max + 1) for r in radii if (d, r) != (0, 0.0))


def decide_attack(evidence: Evidence, params: AttackParams) -> CertifyResult:
    """The attack's empirical outcome from saved counts (see the module docstring).

    Args:
        evidence: a ``selection`` stage and one ``attack`` stage per grid radius, each of
            ``params.eval_n`` samples with class counts, and :class:`AttackFacts`.
        params: the :class:`AttackParams`.

    Returns:
        The result, method ``"attack-l2"``, claim ``"empirical"`` (never abstains;
        ``p_lower = 0``: nothing is bounded), ``radius`` the largest grid radius up to which
        no flip was found, and :class:`AttackDetails`.

    Raises:
        InvalidParameterError: on evidence that does not fit the parameters.
    """
    facts = require_facts(evidence, AttackFacts, method="attack-l2")
    if facts.radii != params.radii:
        raise InvalidParameterError(
            f"the evidence was drawn at radii = {facts.radii} but the parameters say "
            f"{params.radii}; valid: parameters with the evidence's radius grid"
        )
    stages = check_attack_stages(
        evidence,
        points=len(params.radii),
        n=params.eval_n,
        n_name="eval_n",
        method="attack-l2",
        unit="radius",
    )
    check_num_classes((evidence.stages[0], *stages), facts.num_classes)
    clean = int(np.argmax(np.asarray(evidence.stages[0].counts, dtype=np.int64)))
    check_class(clean, facts.num_classes, name="clean prediction")
    flipped: list[bool] = []
    tops: list[int] = []
    p_values: list[float] = []
    for stage in stages:
        top, p_value = predict_test(stage.counts)
        tops.append(top)
        p_values.append(p_value)
        flipped.append(top != clean and p_value <= params.alpha)
    first = next((i for i, f in enumerate(flipped) if f), None)
    radius = params.radii[-1] if first is None else (params.radii[first - 1] if first else 0.0)
    return empirical_result(
        "attack-l2",
        evidence,
        params,
        prediction=clean,
        radius=radius,
        details=AttackDetails(
            radii=params.radii,
            flipped=tuple(flipped),
            attacked_class=tuple(tops),
            p_values=tuple(p_values),
            first_flip=None if first is None else params.radii[first],
        ),
    )

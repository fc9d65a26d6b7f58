"""One example's certification outcome and its evidence, as plain Python that round-trips JSON.

Every method is two halves (DESIGN.md, "Architecture"): a torch half draws noise and
returns :class:`Evidence` (one :class:`StageEvidence` per sampling stage, plus the
:class:`Facts` about the input that the certificate needs), and a pure half turns
evidence and the method's parameters into a :class:`CertifyResult`. The result keeps
the evidence, so the certificate can be recomputed offline with other settings
(``smoothcert recertify``) without a model.

Typed payloads (method parameters, facts and decision details) are frozen dataclasses
deriving from :class:`Payload`; each names a ``kind`` and is registered with
:func:`register_payload` so that JSON records rebuild the right type. The decision
modules register theirs; :mod:`smoothcert.methods.registry` imports them all.

Example:
    >>> from smoothcert.decisions.cohen import GaussianParams, GaussianFacts
    >>> stages = (StageEvidence("selection", n=100, alpha=0.0, counts=(0, 0, 0, 100)),
    ...           StageEvidence("estimation", n=1000, alpha=0.001, counts=(0, 10, 0, 990)))
    >>> r = CertifyResult(method="cohen", claim="majority", prediction=3, abstained=False,
    ...                   radius=0.42, p_lower=0.8, alpha=0.001, seed=0, seconds=0.1,
    ...                   params=GaussianParams(sigma=0.25, n0=100, n=1000, alpha=0.001),
    ...                   evidence=Evidence(stages, GaussianFacts(num_classes=4)))
    >>> CertifyResult.from_json(r.to_json()) == r
    True
    >>> r.counts_estimation, r.n0, r.n
    ((0, 10, 0, 990), 100, 1000)
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from smoothcert.errors import InvalidParameterError

RADIUS_UNITS = ("l2", "tokens")
"""``"l2"``: a radius in the units of the tensor the noise is added to; ``"tokens"``: edits."""

CLAIMS = ("majority", "flagged", "prediction", "empirical")
"""What a record claims.

* ``"majority"``: the smoothed classifier returns ``prediction`` on the whole certified
  region (radius, or the staircase under ``radius_curve``).
* ``"flagged"``: a safety filter: ``P(f(noisy input) = prediction) >= tau`` on the whole
  certified region (the input is flagged and stays flagged); ``prediction`` is the fixed
  target class, never a majority class. Abstained means "not certified to stay flagged".
* ``"prediction"``: Cohen et al.'s PREDICT: the class returned is the smoothed
  classifier's at the clean input with probability >= 1 - alpha; no radius.
* ``"empirical"``: NOT a certificate: an attack's outcome (``attack-l2``,
  :mod:`smoothcert.decisions.attack`): ``prediction`` is the smoothed classifier's clean
  majority class and ``radius`` the largest radius of the attack's grid up to which no
  flip was found (an upper bound on the robust radius, up to Monte Carlo error).
"""

ROLES = (
    "selection",
    "estimation",
    "prediction",
    "sigma_selection",
    "sigma_estimation",
    "round",
    "attack",
)
"""Roles of a sampling stage. Selection stages choose (a class, a sigma) and spend no alpha;
the others are bounded at the alpha they record. A sequential run's estimation samples are
drawn in ``round`` stages, in order; the last one records the alpha of the whole sequence.
An ``attack`` stage counts the classes at an attacked input (one per radius of the grid of
:mod:`smoothcert.decisions.attack`), tested at the alpha it records."""

P = TypeVar("P", bound="Payload")
_PAYLOADS: dict[str, type[Payload]] = {}


def register_payload(cls: type[P]) -> type[P]:
    """Class decorator: make a :class:`Payload` subclass rebuildable from JSON by its ``kind``.

    Raises:
        InvalidParameterError: if another class already uses the kind.
    """
    kind = cls.kind
    existing = _PAYLOADS.get(kind)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise InvalidParameterError(
            f"payload kind {kind!r} is registered twice ({existing.__qualname__} and "
            f"{cls.__qualname__}); valid: one class per kind"
        )
    _PAYLOADS[kind] = cls
    return cls


def _ensure_registered() -> None:
    # The registry imports every decision module, which registers its payloads.
    importlib.import_module("smoothcert.methods.registry")


def _to_json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json_value(v) for v in value]
    if isinstance(value, Payload):
        return value.to_dict()
    return value


def _from_json_value(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_from_json_value(v) for v in value)
    return value


@dataclass(frozen=True)
class Payload:
    """Base of the typed parts of a record (parameters, facts, details).

    Subclasses are frozen dataclasses with JSON-scalar or tuple fields, set ``kind`` and
    are decorated with :func:`register_payload`.
    """

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., field: value, ...}`` with tuples as lists."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            out[f.name] = _to_json_value(getattr(self, f.name))
        return out

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Payload:
        """Rebuild the registered payload named by ``data["kind"]``.

        Raises:
            InvalidParameterError: on an unknown kind or fields the kind does not have.
        """
        if not isinstance(data, Mapping):
            raise InvalidParameterError(
                f"payload {data!r} is invalid; valid: a JSON object with a 'kind' key"
            )
        kind = data.get("kind")
        if kind not in _PAYLOADS:
            _ensure_registered()
        cls = _PAYLOADS.get(kind) if isinstance(kind, str) else None
        if cls is None:
            raise InvalidParameterError(
                f"payload kind = {kind!r} is invalid; valid kinds: {sorted(_PAYLOADS)}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names - {"kind"}
        if unknown:
            raise InvalidParameterError(
                f"unknown fields {sorted(unknown)} for {kind!r}; valid fields: {sorted(names)}"
            )
        return cls(**{k: _from_json_value(v) for k, v in data.items() if k != "kind"})


def _check_count(value: Any, *, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidParameterError(f"{name} = {value!r} is invalid; valid: an integer >= 0")
    return int(value)


def _check_unit(value: Any, *, name: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not math.isfinite(float(value))
        or not 0.0 <= float(value) <= 1.0
    ):
        raise InvalidParameterError(f"{name} = {value!r} is invalid; valid range: 0 <= {name} <= 1")
    return float(value)


@dataclass(frozen=True)
class ScoreHistograms:
    """Per-class histograms of a [0, 1] score over one stage's samples, stored sparsely.

    Bin ``b < bins`` holds the scores in ``[b / bins, (b + 1) / bins)``, bin ``bins`` holds
    exactly 1 (:func:`smoothcert.stats.bounded.histogram_edges`); the betting bounds read
    them (:func:`smoothcert.stats.bounded.betting_histogram_lower`). JSON:
    ``{"bins": B, "classes": [[[bin, count], ...], ...]}``, one list per class of its
    occupied bins in increasing order (records stay small: at most ``min(n, B + 1)``
    pairs per class).

    Attributes:
        bins: ``B``, a power of two, ``1 <= B <= 2^16``.
        classes: per class, ``(bin, count)`` pairs with ``0 <= bin <= B``, strictly
            increasing bins and counts ``>= 1``.

    Example:
        >>> h = ScoreHistograms.from_dense([[0, 3, 0], [1, 0, 2]])
        >>> h.bins, h.classes, h.dense().tolist()
        (2, (((1, 3),), ((0, 1), (2, 2))), [[0, 3, 0], [1, 0, 2]])
    """

    bins: int
    classes: tuple[tuple[tuple[int, int], ...], ...]

    def __post_init__(self) -> None:
        bins = _check_count(self.bins, name="histogram bins")
        if bins < 1 or bins & (bins - 1) or bins > 2**16:
            raise InvalidParameterError(
                f"histogram bins = {bins} is invalid; valid: a power of two 1 <= bins <= 65536"
            )
        classes = []
        for pairs in self.classes:
            try:
                row = tuple(
                    (_check_count(b, name="bin"), _check_count(c, name="count")) for b, c in pairs
                )
            except (TypeError, ValueError):
                raise InvalidParameterError(
                    f"histogram pairs {pairs!r} are invalid; valid: [bin, count] integer pairs"
                ) from None
            for i, (b, c) in enumerate(row):
                if not 0 <= b <= bins or c < 1 or (i and b <= row[i - 1][0]):
                    raise InvalidParameterError(
                        f"histogram pair [{b}, {c}] is invalid; valid: [bin, count] with "
                        f"0 <= bin <= {bins} in increasing order and count >= 1"
                    )
            classes.append(row)
        object.__setattr__(self, "bins", bins)
        object.__setattr__(self, "classes", tuple(classes))

    def totals(self) -> tuple[int, ...]:
        """Samples counted per class."""
        return tuple(sum(c for _, c in row) for row in self.classes)

    def dense(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The counts as an int64 array ``(num_classes, bins + 1)``."""
        out = np.zeros((len(self.classes), self.bins + 1), dtype=np.int64)
        for k, row in enumerate(self.classes):
            for b, c in row:
                out[k, b] = c
        return out

    @classmethod
    def from_dense(cls, counts: Any) -> ScoreHistograms:
        """From counts ``(num_classes, B + 1)`` (e.g. what the sampler accumulates)."""
        arr = np.asarray(counts)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise InvalidParameterError(
                f"histogram counts of shape {arr.shape} are invalid; valid: (classes, B + 1)"
            )
        return cls(
            arr.shape[1] - 1,
            tuple(tuple((int(b), int(row[b])) for b in np.flatnonzero(row)) for row in arr),
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"bins": B, "classes": [[[bin, count], ...], ...]}``."""
        return {"bins": self.bins, "classes": [[[b, c] for b, c in row] for row in self.classes]}

    @classmethod
    def from_dict(cls, data: Any) -> ScoreHistograms:
        """Rebuild from :meth:`to_dict` output."""
        if not isinstance(data, Mapping) or set(data) != {"bins", "classes"}:
            raise InvalidParameterError(
                f"score_histograms = {data!r} is invalid; valid: an object with 'bins' and "
                "'classes'"
            )
        try:
            classes = tuple(tuple((b, c) for b, c in row) for row in data["classes"])
        except (TypeError, ValueError):
            raise InvalidParameterError(
                "score_histograms classes are invalid; valid: per class a list of "
                "[bin, count] pairs"
            ) from None
        return cls(data["bins"], classes)


@dataclass(frozen=True)
class StageEvidence:
    """The raw outcome of one sampling stage.

    Attributes:
        role: one of :data:`ROLES`.
        n: number of noisy samples drawn, >= 1.
        alpha: the failure probability spent bounding this stage, in [0, 1); 0 for a
            selection stage (it chooses, it is not bounded).
        counts: per-class counts of the samples' argmax (int, summing to ``n``), or
            empty when the stage records scores only.
        score_sums: per-class sums of a [0, 1] score over the samples, or None.
        score_sq_sums: per-class sums of the squared score, or None.
        score_histograms: per-class histograms of the score (:class:`ScoreHistograms`,
            each class counting all ``n`` samples), kept only when a betting bound was
            asked for (``score_bound="betting"``), else None.
    """

    role: str
    n: int
    alpha: float
    counts: tuple[int, ...] = ()
    score_sums: tuple[float, ...] | None = None
    score_sq_sums: tuple[float, ...] | None = None
    score_histograms: ScoreHistograms | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidParameterError(f"role = {self.role!r} is invalid; valid values: {ROLES}")
        n = _check_count(self.n, name="n")
        if n < 1:
            raise InvalidParameterError(f"n = {n} is invalid; valid range: n >= 1")
        alpha = float(self.alpha)
        if not (math.isfinite(alpha) and 0.0 <= alpha < 1.0):
            raise InvalidParameterError(
                f"alpha = {self.alpha!r} is invalid; valid range: 0 <= alpha < 1"
            )
        counts = tuple(_check_count(c, name="count") for c in self.counts)
        if counts and sum(counts) != n:
            raise InvalidParameterError(
                f"counts sum to {sum(counts)} but n = {n}; valid: counts that sum to n"
            )
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "counts", counts)
        for name in ("score_sums", "score_sq_sums"):
            values = getattr(self, name)
            if values is not None:
                floats = tuple(float(v) for v in values)
                if not all(math.isfinite(v) and 0.0 <= v <= n for v in floats):
                    raise InvalidParameterError(
                        f"{name} = {values!r} is invalid; valid: finite sums in [0, n = {n}]"
                    )
                object.__setattr__(self, name, floats)
        hist = self.score_histograms
        if hist is not None:
            if not isinstance(hist, ScoreHistograms):
                raise InvalidParameterError(
                    f"score_histograms of type {type(hist).__name__} are invalid; valid: "
                    "ScoreHistograms or None"
                )
            totals = hist.totals()
            if any(t != n for t in totals) or (counts and len(totals) != len(counts)):
                raise InvalidParameterError(
                    f"score_histograms count {totals} samples per class; valid: n = {n} for "
                    f"each of the {len(counts) or len(totals)} classes"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (None score fields are left out)."""
        out: dict[str, Any] = {
            "role": self.role,
            "n": self.n,
            "alpha": self.alpha,
            "counts": list(self.counts),
        }
        if self.score_sums is not None:
            out["score_sums"] = list(self.score_sums)
        if self.score_sq_sums is not None:
            out["score_sq_sums"] = list(self.score_sq_sums)
        if self.score_histograms is not None:
            out["score_histograms"] = self.score_histograms.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageEvidence:
        """Rebuild from :meth:`to_dict` output."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InvalidParameterError(
                f"unknown stage fields {sorted(unknown)}; valid fields: {sorted(names)}"
            )
        kwargs = dict(data)
        for key in ("counts", "score_sums", "score_sq_sums"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        if kwargs.get("score_histograms") is not None:
            kwargs["score_histograms"] = ScoreHistograms.from_dict(kwargs["score_histograms"])
        return cls(**kwargs)


@dataclass(frozen=True)
class Facts(Payload):
    """Facts about one input measured by the torch half that its certificate needs."""


@dataclass(frozen=True)
class Details(Payload):
    """Method-specific outputs of a decision (beyond the common result fields)."""


@dataclass(frozen=True)
class Evidence:
    """Everything the sampling half of a method observed for one input.

    Attributes:
        stages: the sampling stages, in the order they were drawn.
        facts: the method's :class:`Facts` about the input (number of classes, number of
            eligible token positions, the kernel's sampling TV bound, ...).
        seed: the seed the samples were drawn with (None if unknown).
        seconds: wall-clock seconds the sampling took.
    """

    stages: tuple[StageEvidence, ...]
    facts: Facts
    seed: int | None = None
    seconds: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if not all(isinstance(s, StageEvidence) for s in self.stages):
            raise InvalidParameterError(
                f"stages = {self.stages!r} is invalid; valid: a tuple of StageEvidence"
            )
        if self.seed is not None:
            _check_count(self.seed, name="seed")
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise InvalidParameterError(
                f"seconds = {self.seconds!r} is invalid; valid range: finite seconds >= 0"
            )

    def stage(self, role: str) -> StageEvidence | None:
        """The first stage with ``role``, or None."""
        for s in self.stages:
            if s.role == role:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        return {
            "stages": [s.to_dict() for s in self.stages],
            "facts": self.facts.to_dict(),
            "seed": self.seed,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Rebuild from :meth:`to_dict` output."""
        facts = Payload.from_dict(data["facts"])
        if not isinstance(facts, Facts):
            raise InvalidParameterError(
                f"facts of kind {facts.kind!r} are invalid; valid: a Facts payload"
            )
        return cls(
            stages=tuple(StageEvidence.from_dict(s) for s in data["stages"]),
            facts=facts,
            seed=data.get("seed"),
            seconds=float(data.get("seconds", 0.0)),
        )


@dataclass(frozen=True)
class CertifyResult:
    """Outcome of certifying (or predicting) one input, with its evidence.

    Attributes:
        method: registered method name (``"cohen"``, ``"cohen-top2"``, ``"tokens"``,
            ``"hybrid"``, ``"cohen-predict"``; see :mod:`smoothcert.methods.registry`).
        claim: what the record claims, one of :data:`CLAIMS`.
        prediction: the certified class (majority), the target class (flagged), or None
            when the method abstained.
        abstained: True iff ``prediction`` is None (never a -1 sentinel).
        radius: certified radius, 0.0 when abstained: L2 in the units of the tensor the
            noise is added to (``radius_unit == "l2"``; ``r(0)`` for hybrid), or a
            number of edited tokens (``"tokens"``).
        p_lower: lower confidence bound on the probability of ``prediction`` (0.0 when
            no bound was computed).
        alpha: one-sided failure probability of the whole certificate (all stages).
        seed: seed of the samples (None if unknown).
        seconds: wall-clock seconds of the sampling (``evidence.seconds``; the decision's
            own time is left out so that re-certification reproduces the record).
        params: the method's typed parameters (a registered :class:`Payload`).
        evidence: the :class:`Evidence` the decision was made from.
        p_upper: upper bound on the runner-up's (top-two) probability, else None.
        radius_unit: ``"l2"`` or ``"tokens"``.
        radius_curve: hybrid certificates: ``r(d)`` for ``d = 0..d_max``, else None.
        details: the method's typed :class:`Details`, or None.
    """

    method: str
    claim: str
    prediction: int | None
    abstained: bool
    radius: float
    p_lower: float
    alpha: float
    seed: int | None
    seconds: float
    params: Payload
    evidence: Evidence
    p_upper: float | None = None
    radius_unit: str = "l2"
    radius_curve: tuple[float, ...] | None = None
    details: Details | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise InvalidParameterError(
                f"method = {self.method!r} is invalid; valid: a registered method name"
            )
        if self.claim not in CLAIMS:
            raise InvalidParameterError(f"claim = {self.claim!r} is invalid; valid: {CLAIMS}")
        if self.prediction is not None and (
            isinstance(self.prediction, bool) or not isinstance(self.prediction, (int, np.integer))
        ):
            raise InvalidParameterError(
                f"prediction = {self.prediction!r} is invalid; valid: an int class index or None"
            )
        if self.prediction is not None:
            object.__setattr__(self, "prediction", _check_count(self.prediction, name="prediction"))
        object.__setattr__(self, "p_lower", _check_unit(self.p_lower, name="p_lower"))
        object.__setattr__(
            self, "p_upper", _check_unit(self.p_upper, name="p_upper", allow_none=True)
        )
        if not 0.0 < self.alpha < 1.0:
            raise InvalidParameterError(
                f"alpha = {self.alpha!r} is invalid; valid range: 0 < alpha < 1"
            )
        if not isinstance(self.abstained, bool) or self.abstained != (self.prediction is None):
            raise InvalidParameterError(
                f"abstained = {self.abstained!r} with prediction = {self.prediction!r}; "
                "valid: abstained is True exactly when prediction is None"
            )
        if not math.isfinite(self.radius) or self.radius < 0:
            raise InvalidParameterError(
                f"radius = {self.radius!r} is invalid; valid range: finite radius >= 0"
            )
        if self.abstained and self.radius != 0:
            raise InvalidParameterError(
                f"radius = {self.radius!r} with an abstention; valid: radius == 0 when abstained"
            )
        if self.radius_unit not in RADIUS_UNITS:
            raise InvalidParameterError(
                f"radius_unit = {self.radius_unit!r} is invalid; valid values: {RADIUS_UNITS}"
            )
        if not isinstance(self.params, Payload) or not isinstance(self.evidence, Evidence):
            raise InvalidParameterError(
                "params and evidence are invalid; valid: a method parameter Payload and an Evidence"
            )
        if self.details is not None and not isinstance(self.details, Details):
            raise InvalidParameterError(
                f"details of type {type(self.details).__name__} are invalid; valid: a Details "
                "payload or None"
            )
        if self.radius_curve is not None:
            curve = tuple(float(r) for r in self.radius_curve)
            if not all(math.isfinite(r) and r >= 0 for r in curve):
                raise InvalidParameterError(
                    f"radius_curve = {curve!r} is invalid; valid: finite radii >= 0"
                )
            if self.abstained and any(curve):
                raise InvalidParameterError(
                    "radius_curve has non-zero radii with an abstention; valid: all zero"
                )
            object.__setattr__(self, "radius_curve", curve)

    # Views of the evidence kept for the pre-evidence API (result.counts_estimation, ...).
    @property
    def counts_selection(self) -> tuple[int, ...]:
        """Class counts of the selection stage (empty when there is none)."""
        stage = self.evidence.stage("selection")
        return stage.counts if stage is not None else ()

    @property
    def counts_estimation(self) -> tuple[int, ...]:
        """Class counts of the estimation (or PREDICT) stage."""
        stage = self.evidence.stage("estimation") or self.evidence.stage("prediction")
        return stage.counts if stage is not None else ()

    @property
    def n0(self) -> int:
        """Number of selection samples drawn (0 when there is no selection stage)."""
        stage = self.evidence.stage("selection")
        return stage.n if stage is not None else 0

    @property
    def n(self) -> int:
        """Number of estimation (or PREDICT) samples."""
        stage = self.evidence.stage("estimation") or self.evidence.stage("prediction")
        return stage.n if stage is not None else 0

    @property
    def samples_used(self) -> int:
        """Noisy samples (forward passes) drawn for this result, every stage included."""
        return sum(s.n for s in self.evidence.stages)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        out: dict[str, Any] = {
            "method": self.method,
            "claim": self.claim,
            "prediction": self.prediction,
            "abstained": self.abstained,
            "radius": self.radius,
            "radius_unit": self.radius_unit,
            "p_lower": self.p_lower,
            "p_upper": self.p_upper,
            "alpha": self.alpha,
            "seed": self.seed,
            "seconds": self.seconds,
            "params": self.params.to_dict(),
            "evidence": self.evidence.to_dict(),
            "details": None if self.details is None else self.details.to_dict(),
        }
        if self.radius_curve is not None:
            out["radius_curve"] = list(self.radius_curve)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CertifyResult:
        """Rebuild a result from :meth:`to_dict` output.

        Raises:
            InvalidParameterError: on unknown or missing fields or invalid values.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidParameterError(
                f"unknown CertifyResult fields {sorted(unknown)}; valid fields: {sorted(known)}"
            )
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = required - set(data)
        if missing:
            raise InvalidParameterError(
                f"CertifyResult fields {sorted(missing)} are missing; required: {sorted(required)}"
            )
        kwargs = dict(data)
        kwargs["params"] = Payload.from_dict(data["params"])
        kwargs["evidence"] = Evidence.from_dict(data["evidence"])
        if data.get("details") is not None:
            kwargs["details"] = Payload.from_dict(data["details"])
        if data.get("radius_curve") is not None:
            kwargs["radius_curve"] = tuple(data["radius_curve"])
        return cls(**kwargs)

    def to_json(self) -> str:
        """Serialise to one line of JSON."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> CertifyResult:
        """Parse a line written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

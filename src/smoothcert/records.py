"""One example's certification outcome, as plain Python that round-trips through JSON.

A :class:`CertifyResult` carries everything needed to recompute the certificate
offline: the raw class counts of the selection and estimation samples, n0, n, alpha,
the method parameters and the seed.

Example:
    >>> r = CertifyResult(method="cohen", prediction=3, abstained=False, radius=0.42,
    ...                   p_lower=0.8, n0=100, n=1000, alpha=0.001, seed=0, seconds=0.1,
    ...                   counts_selection=(0, 0, 0, 100), counts_estimation=(0, 10, 0, 990),
    ...                   params={"sigma": 0.25})
    >>> CertifyResult.from_json(r.to_json()) == r
    True
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, field
from typing import Any

import numpy as np

from smoothcert.errors import InvalidParameterError

RADIUS_UNITS = ("l2", "tokens")


@dataclass(frozen=True)
class CertifyResult:
    """Outcome of certifying (or predicting) one input.

    Attributes:
        method: name of the method that produced it (``"cohen"``, ``"cohen_top2"``,
            ``"cohen_predict"``, ``"tokens"``, ``"hybrid"``, ...).
        prediction: predicted class, or None when the method abstained.
        abstained: True iff the method abstained (never a -1 sentinel).
        radius: certified radius; 0.0 when abstained. In L2 units of the tensor the
            noise is added to when ``radius_unit == "l2"``, or a number of edited
            tokens when ``radius_unit == "tokens"``.
        p_lower: lower confidence bound on the probability of the predicted class
            (0.0 for an abstention with no bound).
        n0: number of selection samples.
        n: number of estimation samples.
        alpha: one-sided failure probability of the whole certificate.
        seed: seed the samples were drawn with (None if the caller passed a generator
            whose seed is unknown).
        seconds: wall-clock seconds spent.
        counts_selection: per-class counts of the n0 selection samples (int).
        counts_estimation: per-class counts of the n estimation samples (int).
        p_upper: upper bound on the runner-up's probability (top-two variant), else None.
        radius_unit: ``"l2"`` or ``"tokens"``.
        radius_curve: for joint certificates, the radius r(d) for d = 0..d_max, else None.
        params: method parameters (sigma, beta, ...), JSON-serialisable.
    """

    method: str
    prediction: int | None
    abstained: bool
    radius: float
    p_lower: float
    n0: int
    n: int
    alpha: float
    seed: int | None
    seconds: float
    counts_selection: tuple[int, ...]
    counts_estimation: tuple[int, ...]
    p_upper: float | None = None
    radius_unit: str = "l2"
    radius_curve: tuple[float, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.prediction is not None and (
            isinstance(self.prediction, bool) or not isinstance(self.prediction, int)
        ):
            raise InvalidParameterError(
                f"prediction = {self.prediction!r} is invalid; valid: an int class index or None"
            )
        if not (math.isfinite(self.p_lower) and 0.0 <= self.p_lower <= 1.0):
            raise InvalidParameterError(
                f"p_lower = {self.p_lower!r} is invalid; valid range: 0 <= p_lower <= 1"
            )
        if self.p_upper is not None and not (
            math.isfinite(self.p_upper) and 0.0 <= self.p_upper <= 1.0
        ):
            raise InvalidParameterError(
                f"p_upper = {self.p_upper!r} is invalid; valid range: 0 <= p_upper <= 1 or None"
            )
        if not 0.0 < self.alpha < 1.0:
            raise InvalidParameterError(
                f"alpha = {self.alpha!r} is invalid; valid range: 0 < alpha < 1"
            )
        if self.n0 < 0 or self.n < 1:
            raise InvalidParameterError(
                f"n0 = {self.n0!r}, n = {self.n!r} are invalid; valid: n0 >= 0 and n >= 1"
            )
        for counts_name in ("counts_selection", "counts_estimation"):
            for c in getattr(self, counts_name):
                if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
                    raise InvalidParameterError(
                        f"{counts_name} entry {c!r} is invalid; valid: integer counts >= 0"
                    )
        if self.abstained != (self.prediction is None):
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
        object.__setattr__(self, "counts_selection", tuple(int(c) for c in self.counts_selection))
        object.__setattr__(self, "counts_estimation", tuple(int(c) for c in self.counts_estimation))
        if self.radius_curve is not None:
            object.__setattr__(self, "radius_curve", tuple(float(r) for r in self.radius_curve))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (tuples become lists)."""
        out = asdict(self)
        out["counts_selection"] = list(self.counts_selection)
        out["counts_estimation"] = list(self.counts_estimation)
        if self.radius_curve is not None:
            out["radius_curve"] = list(self.radius_curve)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CertifyResult:
        """Rebuild a result from :meth:`to_dict` output (unknown keys are rejected)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise InvalidParameterError(
                f"unknown CertifyResult fields {sorted(unknown)}; valid fields: {sorted(known)}"
            )
        required = {
            name
            for name, spec in cls.__dataclass_fields__.items()
            if spec.default is MISSING and spec.default_factory is MISSING
        }
        missing = required - set(data)
        if missing:
            raise InvalidParameterError(
                f"CertifyResult fields {sorted(missing)} are missing; required: {sorted(required)}"
            )
        kwargs = dict(data)
        kwargs["counts_selection"] = tuple(kwargs.get("counts_selection", ()))
        kwargs["counts_estimation"] = tuple(kwargs.get("counts_estimation", ()))
        if kwargs.get("radius_curve") is not None:
            kwargs["radius_curve"] = tuple(kwargs["radius_curve"])
        return cls(**kwargs)

    def to_json(self) -> str:
        """Serialise to one line of JSON."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> CertifyResult:
        """Parse a line written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

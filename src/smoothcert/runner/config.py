"""Configuration of a dataset certification run, its hash and per-example seeds.

A :class:`RunConfig` names everything that determines the records of a run: the
method and its typed parameters (:mod:`smoothcert.methods.registry`), the model and
the noise level its weights were trained at, the dataset split, the batch size, the
run seed and the fast-path options. Its :meth:`RunConfig.config_hash` is the sha256 of
the canonical JSON of exactly those fields, so a result file can refuse records from a
different configuration.

What is hashed and why:

* ``method, params, model, model_sigma, dataset, split, seed`` obviously change the
  records.
* ``batch_size`` is hashed too: the noise of one example is drawn by consecutive
  ``torch.randn`` calls of ``batch_size`` samples, and the stream of a generator
  split into calls of different sizes is NOT the same in general (checked: on CPU
  it differs whenever one sample has a number of elements that is not a multiple
  of 16, and on CUDA the Philox offset advances per call). Counts, hence records,
  depend on it.
* ``precision``, ``compile`` and ``channels_last`` change the classifier that is
  certified (bf16 autocast rounds every layer; a compiled or channels-last model may
  sum in another order), so they are hashed: a certificate is for the model as run.
* The example selection ``start, skip, num_examples`` is NOT hashed: each example's
  record depends only on the hashed fields and the example's stable index (through
  :func:`example_seed`), never on which other examples are in the run. A file can
  therefore be extended to more examples by re-running with another selection; the
  file records every selection that was run into it (``{"type": "selection"}`` lines,
  :mod:`smoothcert.results.store`).
* The device is not a config field at all (it is recorded in the file header).
  Note that CPU and CUDA generators give different streams for the same seed, so
  records of one file resumed on another device are valid certificates but not
  bit-identical to an uninterrupted run.

This module is pure Python/numpy (no torch).

Example:
    >>> cfg = RunConfig(params={"sigma": 0.5, "n0": 100, "n": 1000, "alpha": 0.001})
    >>> cfg.config_hash() == RunConfig(params=cfg.params, num_examples=10).config_hash()
    True
    >>> cfg.config_hash() == RunConfig().config_hash()
    False
    >>> list(cfg.select_positions(10))
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    >>> list(RunConfig(skip=3, start=1, num_examples=2).select_positions(10))
    [1, 4]
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from smoothcert._validation import check_int, check_positive
from smoothcert.errors import InvalidParameterError
from smoothcert.methods.registry import MethodSpec, get_method
from smoothcert.records import Payload

HASH_SCHEMA = 2
"""Version of the hashed payload; bumped when the set of hashed fields changes."""

HASHED_FIELDS: tuple[str, ...] = (
    "method",
    "params",
    "model",
    "model_sigma",
    "dataset",
    "split",
    "batch_size",
    "seed",
    "precision",
    "compile",
    "channels_last",
)
"""Fields of :class:`RunConfig` that determine each example's record (hashed)."""

SELECTION_FIELDS: tuple[str, ...] = ("num_examples", "skip", "start")
"""Fields that only choose which examples are run (not hashed; recorded per run)."""

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
"""Forward-pass precisions: fp32, or autocast to bfloat16 / float16."""

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "cohen": {"sigma": 0.25, "n0": 100, "n": 10_000, "alpha": 0.001},
}
"""Parameters used when a config names a method but gives no ``params``."""

MAX_SEED = 2**63 - 1


def _check_name(value: Any, *, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise InvalidParameterError(
            f"{name} = {value!r} is invalid; valid: a non-empty name without surrounding spaces"
        )
    return value


def _check_bool(value: Any, *, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidParameterError(f"{name} = {value!r} is invalid; valid: true or false")
    return value


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a dataset certification run (device-independent).

    Attributes:
        method: a registered method name (:func:`smoothcert.methods.registry.method_names`).
        params: the method's parameters as a mapping (validated into its typed
            parameter class; see :meth:`method_params`); None: the method's defaults
            (:data:`DEFAULT_PARAMS`, the bundled default run).
        model: name of a bundled model (``smoothcert.models.list_models()``), or a label
            for a user model passed to :func:`~smoothcert.runner.run_certification`.
        model_sigma: the noise level the bundled model's weights were trained at; None:
            the method's ``sigma`` (or the model's only weights).
        dataset: name of a bundled dataset (``smoothcert.data.list_datasets()``).
        split: dataset split, e.g. ``"test"``.
        batch_size: noisy samples per forward pass, >= 1 (changes the noise stream,
            hence hashed).
        num_examples: number of examples to certify, >= 1; None for all selected.
        skip: take every ``skip``-th example (as Cohen et al.'s scripts), >= 1.
        start: position in the split of the first example, >= 0.
        seed: run seed, 0 <= seed < 2**63; each example's seed is derived from it and
            the example's stable index by :func:`example_seed`.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast forward passes).
        compile: run the model through ``torch.compile``.
        channels_last: run the model and inputs in channels-last memory format.

    Raises:
        InvalidParameterError: on any value out of range (the message repeats the
            value and states the valid range), an unknown method, or parameters that
            are not the method's.
    """

    method: str = "cohen"
    params: Mapping[str, Any] | None = None
    model: str = "digits_cnn"
    model_sigma: float | None = None
    dataset: str = "digits"
    split: str = "test"
    batch_size: int = 1000
    num_examples: int | None = None
    skip: int = 1
    start: int = 0
    seed: int = 0
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        _check_name(self.model, name="model")
        _check_name(self.dataset, name="dataset")
        _check_name(self.split, name="split")
        spec = get_method(self.method)
        set_ = object.__setattr__
        if self.params is None:
            if self.method not in DEFAULT_PARAMS:
                raise InvalidParameterError(
                    f"params = None is invalid for method {self.method!r}; valid: its "
                    f"parameters ({', '.join(f.name for f in fields(spec.params_type))})"
                )
            set_(self, "params", dict(DEFAULT_PARAMS[self.method]))
        if not isinstance(self.params, Mapping):
            raise InvalidParameterError(
                f"params of type {type(self.params).__name__} are invalid; valid: a mapping "
                "of the method's parameters"
            )
        typed = spec.params(dict(self.params))
        # Canonical form: every field, validated, JSON types (hash and header agree).
        canonical = typed.to_dict()
        canonical.pop("kind")
        set_(self, "params", canonical)
        if self.model_sigma is not None:
            set_(self, "model_sigma", check_positive(self.model_sigma, name="model_sigma"))
        set_(self, "batch_size", check_int(self.batch_size, name="batch_size", minimum=1))
        if self.num_examples is not None:
            set_(self, "num_examples", check_int(self.num_examples, name="num_examples", minimum=1))
        set_(self, "skip", check_int(self.skip, name="skip", minimum=1))
        set_(self, "start", check_int(self.start, name="start", minimum=0))
        set_(self, "seed", check_int(self.seed, name="seed", minimum=0, maximum=MAX_SEED))
        if self.precision not in PRECISIONS:
            raise InvalidParameterError(
                f"precision = {self.precision!r} is invalid; valid values: {', '.join(PRECISIONS)}"
            )
        _check_bool(self.compile, name="compile")
        _check_bool(self.channels_last, name="channels_last")

    @property
    def spec(self) -> MethodSpec:
        """The registered method."""
        return get_method(self.method)

    def method_params(self) -> Payload:
        """The method's typed parameters (built once per config: runs ask for them per example).

        Example:
            >>> RunConfig().method_params().sigma
            0.25
        """
        cached = self.__dict__.get("_method_params")
        if cached is None:
            assert self.params is not None
            cached = self.spec.params(dict(self.params))
            object.__setattr__(self, "_method_params", cached)  # not a field: not hashed
        return cached

    @property
    def sigma(self) -> float | None:
        """The method's Gaussian sigma, or None for a method without one."""
        assert self.params is not None
        value = self.params.get("sigma")
        return None if value is None else float(value)

    @property
    def weights_sigma(self) -> float | None:
        """The noise level that selects the bundled model's weights (None: its only one)."""
        return self.model_sigma if self.model_sigma is not None else self.sigma

    def samples_per_example(self) -> int:
        """Noisy samples (forward passes) the method draws per example."""
        return int(self.method_params().forward_samples())  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        """Return every field as a JSON-serialisable dict.

        Example:
            >>> RunConfig().to_dict()["params"]["n"]
            10000
        """
        out = asdict(self)
        out["params"] = dict(self.params or {})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Rebuild a config from :meth:`to_dict` output (unknown keys are rejected).

        Raises:
            InvalidParameterError: on unknown keys or values out of range.

        Example:
            >>> RunConfig.from_dict(RunConfig(seed=5).to_dict()) == RunConfig(seed=5)
            True
        """
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidParameterError(
                f"unknown RunConfig fields {sorted(unknown)}; valid fields: {sorted(known)}"
            )
        return cls(**data)

    def selection(self) -> dict[str, Any]:
        """The example selection (not hashed), as recorded in a result file."""
        return {name: getattr(self, name) for name in SELECTION_FIELDS}

    def hashed_fields(self) -> dict[str, Any]:
        """Return the fields that determine the records (see the module docstring)."""
        data = self.to_dict()
        return {name: data[name] for name in HASHED_FIELDS}

    def canonical_json(self) -> str:
        """Canonical JSON of the hashed fields (sorted keys, no spaces, schema tag).

        Example:
            >>> RunConfig().canonical_json()[:31]
            '{"batch_size":1000,"channels_la'
        """
        payload = dict(self.hashed_fields(), hash_schema=HASH_SCHEMA)
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def config_hash(self) -> str:
        """Return the sha256 hex digest of :meth:`canonical_json`.

        Example:
            >>> len(RunConfig().config_hash())
            64
        """
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def select_positions(self, size: int) -> range:
        """Positions (0-based, in split order) of the examples this run certifies.

        ``range(start, size, skip)``, cut to ``num_examples`` entries.

        Args:
            size: number of examples in the split, >= 1.

        Returns:
            A ``range`` of positions.

        Raises:
            InvalidParameterError: if ``start`` is not a valid position in a split of
                ``size`` examples.

        Example:
            >>> RunConfig(skip=20).select_positions(100)
            range(0, 100, 20)
        """
        size = check_int(size, name="dataset size", minimum=1)
        if self.start >= size:
            raise InvalidParameterError(
                f"start = {self.start} is invalid; valid range: 0 <= start < {size} "
                f"(the {self.dataset}/{self.split} split has {size} examples)"
            )
        positions = range(self.start, size, self.skip)
        if self.num_examples is not None:
            positions = positions[: self.num_examples]
        return positions


def example_seed(run_seed: int, index: int) -> int:
    """Seed of one example: a function of the run seed and the example's stable index.

    ``numpy.random.SeedSequence([run_seed, index])`` hashes both into a well-mixed
    64-bit state, shifted to 63 bits so that it is a valid ``torch.Generator`` seed.
    Records therefore do not depend on the order examples are run in, on resuming,
    or on how a run is sharded.

    Args:
        run_seed: the run seed, 0 <= run_seed < 2**63.
        index: the example's stable index, >= 0.

    Returns:
        An int in [0, 2**63).

    Raises:
        InvalidParameterError: on negative or non-integer arguments.

    Example:
        >>> example_seed(0, 5) == example_seed(0, 5)
        True
        >>> example_seed(0, 5) != example_seed(0, 6) != example_seed(1, 5)
        True
        >>> 0 <= example_seed(0, 5) < 2**63
        True
    """
    run_seed = check_int(run_seed, name="seed", minimum=0, maximum=MAX_SEED)
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise InvalidParameterError(f"index = {index!r} is invalid; valid range: integer >= 0")
    index = check_int(int(index), name="index", minimum=0)
    # index as the spawn key: the entropy is padded to a fixed width before it, so no
    # two (run_seed, index) pairs share a seed, whatever their size.
    state = np.random.SeedSequence(run_seed, spawn_key=(index,)).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


def default_run_stem(config: RunConfig) -> str:
    """File stem for a run's results when the user gives no output path.

    ``{model}_sigma{sigma}`` for the bundled default configuration up to model, sigma
    and the example selection; otherwise ``{model}_{method}`` plus a short prefix of the
    config hash, so that re-running the same command resumes and a different
    configuration never collides with an existing file.

    Example:
        >>> default_run_stem(RunConfig())
        'digits_cnn_sigma0.25'
        >>> default_run_stem(RunConfig(seed=1)).startswith('digits_cnn_cohen_')
        True
    """
    sigma = config.sigma
    plain_params = dict(DEFAULT_PARAMS.get(config.method, {}), sigma=sigma)
    if config.method in DEFAULT_PARAMS and math.isfinite(sigma or math.nan):
        plain = RunConfig(method=config.method, params=plain_params, model=config.model)
        if config.hashed_fields() == plain.hashed_fields():
            return f"{config.model}_sigma{sigma}".replace("/", "_").replace("\\", "_")
    stem = f"{config.model}_{config.method}_{config.config_hash()[:8]}"
    return stem.replace("/", "_").replace("\\", "_")

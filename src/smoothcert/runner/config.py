"""Configuration of a dataset certification run, its hash and per-example seeds.

A :class:`RunConfig` names everything that determines the records of a run: the
method, the model and its noise level, the dataset split, the sample sizes, alpha,
the batch size and the run seed. Its :meth:`RunConfig.config_hash` is the sha256 of
the canonical JSON of exactly those fields, so a result file can refuse records
from a different configuration.

What is hashed and why:

* ``method, model, dataset, split, sigma, n0, n, alpha, seed`` obviously change the
  records.
* ``batch_size`` is hashed too: the noise of one example is drawn by consecutive
  ``torch.randn`` calls of ``batch_size`` samples, and the stream of a generator
  split into calls of different sizes is NOT the same in general (checked: on CPU
  it differs whenever one sample has a number of elements that is not a multiple
  of 16, and on CUDA the Philox offset advances per call). Counts, hence records,
  depend on it.
* The example selection ``start, skip, num_examples`` is NOT hashed: each example's
  record depends only on the hashed fields and the example's stable index (through
  :func:`example_seed`), never on which other examples are in the run. A file can
  therefore be extended to more examples by re-running with a larger
  ``num_examples``.
* The device is not a config field at all (it is recorded in the file header).
  Note that CPU and CUDA generators give different streams for the same seed, so
  records of one file resumed on another device are valid certificates but not
  bit-identical to an uninterrupted run.

This module is pure Python/numpy (no torch).

Example:
    >>> cfg = RunConfig(sigma=0.5, n=1000)
    >>> cfg.config_hash() == RunConfig(sigma=0.5, n=1000, num_examples=10).config_hash()
    True
    >>> cfg.config_hash() == RunConfig(sigma=0.25, n=1000).config_hash()
    False
    >>> list(cfg.select_positions(10))
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    >>> list(RunConfig(skip=3, start=1, num_examples=2).select_positions(10))
    [1, 4]
"""

from __future__ import annotations

import hashlib
import json
import numbers
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from smoothcert._validation import (
    check_int,
    check_positive,
    check_probability_level,
)
from smoothcert.errors import InvalidParameterError

METHODS: tuple[str, ...] = ("cohen", "cohen_top2")
"""Methods a dataset run supports."""

HASH_SCHEMA = 1
"""Version of the hashed payload; bumped if the set of hashed fields ever changes."""

HASHED_FIELDS: tuple[str, ...] = (
    "method",
    "model",
    "dataset",
    "split",
    "sigma",
    "n0",
    "n",
    "alpha",
    "batch_size",
    "seed",
)
"""Fields of :class:`RunConfig` that determine each example's record (hashed)."""

SELECTION_FIELDS: tuple[str, ...] = ("num_examples", "skip", "start")
"""Fields that only choose which examples are run (not hashed)."""

MAX_SEED = 2**63 - 1


def _check_name(value: Any, *, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise InvalidParameterError(
            f"{name} = {value!r} is invalid; valid: a non-empty name without surrounding spaces"
        )
    return value


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a dataset certification run (device-independent).

    Attributes:
        model: name of a bundled model (see ``smoothcert.models.list_models()``), or
            a label for a user model passed to :func:`run_certification`.
        dataset: name of a bundled dataset (``smoothcert.data.list_datasets()``).
        split: dataset split, e.g. ``"test"``.
        sigma: Gaussian noise standard deviation, > 0, in the units of the dataset's
            images (pixels in [0, 1] for the bundled datasets). Also selects the
            bundled model's weights trained at that noise level.
        method: ``"cohen"`` (CERTIFY of Cohen et al. 2019) or ``"cohen_top2"``
            (top-two certificate with the runner-up bounded).
        n0: selection samples per example, >= 1.
        n: estimation samples per example, >= 1.
        alpha: one-sided failure probability of each example's certificate, in (0, 1).
        batch_size: noisy samples per forward pass, >= 1 (changes the noise stream,
            hence hashed).
        num_examples: number of examples to certify, >= 1; None for all selected.
        skip: take every ``skip``-th example (as Cohen et al.'s scripts), >= 1.
        start: position in the split of the first example, >= 0.
        seed: run seed, 0 <= seed < 2**63; each example's seed is derived from it and
            the example's stable index by :func:`example_seed`.

    Raises:
        InvalidParameterError: on any value out of range (the message repeats the
            value and states the valid range).
    """

    model: str = "digits_cnn"
    dataset: str = "digits"
    split: str = "test"
    sigma: float = 0.25
    method: str = "cohen"
    n0: int = 100
    n: int = 10_000
    alpha: float = 0.001
    batch_size: int = 1000
    num_examples: int | None = None
    skip: int = 1
    start: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_name(self.model, name="model")
        _check_name(self.dataset, name="dataset")
        _check_name(self.split, name="split")
        if self.method not in METHODS:
            raise InvalidParameterError(
                f"method = {self.method!r} is invalid; valid values: {', '.join(METHODS)}"
            )
        set_ = object.__setattr__
        set_(self, "sigma", check_positive(self.sigma, name="sigma"))
        set_(self, "alpha", check_probability_level(self.alpha, name="alpha"))
        set_(self, "n0", check_int(self.n0, name="n0", minimum=1))
        set_(self, "n", check_int(self.n, name="n", minimum=1))
        set_(self, "batch_size", check_int(self.batch_size, name="batch_size", minimum=1))
        if self.num_examples is not None:
            set_(self, "num_examples", check_int(self.num_examples, name="num_examples", minimum=1))
        set_(self, "skip", check_int(self.skip, name="skip", minimum=1))
        set_(self, "start", check_int(self.start, name="start", minimum=0))
        set_(self, "seed", check_int(self.seed, name="seed", minimum=0, maximum=MAX_SEED))

    @property
    def top2(self) -> bool:
        """True for the top-two certificate (``method == "cohen_top2"``)."""
        return self.method == "cohen_top2"

    def to_dict(self) -> dict[str, Any]:
        """Return every field as a JSON-serialisable dict.

        Example:
            >>> RunConfig().to_dict()["model"]
            'digits_cnn'
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Rebuild a config from :meth:`to_dict` output (unknown keys are rejected).

        Raises:
            InvalidParameterError: on unknown keys or values out of range.

        Example:
            >>> RunConfig.from_dict(RunConfig(n=50).to_dict()) == RunConfig(n=50)
            True
        """
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidParameterError(
                f"unknown RunConfig fields {sorted(unknown)}; valid fields: {sorted(known)}"
            )
        return cls(**data)

    def hashed_fields(self) -> dict[str, Any]:
        """Return the fields that determine the records (see the module docstring)."""
        data = self.to_dict()
        return {name: data[name] for name in HASHED_FIELDS}

    def canonical_json(self) -> str:
        """Canonical JSON of the hashed fields (sorted keys, no spaces, schema tag).

        Example:
            >>> RunConfig().canonical_json()[:33]
            '{"alpha":0.001,"batch_size":1000,'
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

    ``{model}_sigma{sigma}`` for the configuration that only differs from the
    defaults in model, sigma and the example selection; otherwise a short prefix of the
    config hash is appended, so that re-running the same command resumes and a
    different configuration never collides with an existing file.

    Example:
        >>> default_run_stem(RunConfig())
        'digits_cnn_sigma0.25'
        >>> default_run_stem(RunConfig(n=100)).startswith('digits_cnn_sigma0.25_')
        True
    """
    stem = f"{config.model}_sigma{config.sigma}"
    plain = RunConfig(model=config.model, sigma=config.sigma)
    if config.hashed_fields() != plain.hashed_fields():
        stem += f"_{config.config_hash()[:8]}"
    return stem.replace("/", "_").replace("\\", "_")

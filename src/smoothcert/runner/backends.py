"""Execution backends of a dataset run: where the examples of a run are certified.

A backend takes a :class:`ShardJob` (a picklable description of the work: the run's
configuration, plus how to load the model and the dataset) and a list of shards (lists
of dataset positions), runs ``job.run_shard(shard)`` for every shard and hands each
shard's records to ``on_records`` ON THE CALLING PROCESS, where the one writer of the
run appends them to the result file. Records are a pure function of the configuration
and each example's stable index (per-example seeds), so they do not depend on the
backend, on the number of workers, or on the order shards finish in.

- :class:`LocalBackend`: in this process, shard after shard.
- :class:`smoothcert.runner.ray_backend.RayBackend`: a Ray cluster (optional extra
  ``smoothcert[ray]``).

Example:
    >>> class Squares:
    ...     def prepare(self): pass
    ...     def run_shard(self, positions):
    ...         return [{"index": p, "value": p * p} for p in positions]
    >>> out = []
    >>> LocalBackend().run(Squares(), [[0, 1], [2]], out.extend)
    >>> [r["value"] for r in out]
    [0, 1, 4]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

Record = dict[str, Any]
OnRecords = Callable[[list[Record]], None]


class ShardJob(Protocol):
    """The work of a run, sent to every worker (must be picklable).

    ``prepare()`` loads what the job needs (model, dataset) once per worker process and
    is idempotent; ``run_shard(positions)`` certifies the examples at those dataset
    positions and returns one record per position, in order.
    """

    def prepare(self) -> None:  # noqa: D102
        ...

    def run_shard(self, positions: Sequence[int]) -> list[Record]:  # noqa: D102
        ...


class LocalBackend:
    """Run every shard in the calling process, in order."""

    name = "local"
    in_process = True
    """Records are computed in the writer's process by the library's own decisions."""

    def run(self, job: ShardJob, shards: Sequence[Sequence[int]], on_records: OnRecords) -> None:
        """Run ``job`` on each shard and pass its records to ``on_records`` as they finish.

        Args:
            job: the work (see :class:`ShardJob`).
            shards: lists of dataset positions.
            on_records: called once per shard with its records, in this process.
        """
        job.prepare()
        for shard in shards:
            on_records(job.run_shard(shard))

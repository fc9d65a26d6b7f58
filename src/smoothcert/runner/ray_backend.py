"""Ray backend of a dataset run: shards of examples certified by a pool of Ray actors.

:class:`RayBackend` runs a :class:`~smoothcert.runner.backends.ShardJob` on a Ray
cluster, either one it connects to (``address="auto"``, ``"ray://head:10001"``,
``"head:6379"``) or a local one it starts and stops itself. Install the optional
extra with ``pip install 'smoothcert[ray]'``.

Design:

* ``workers`` actors, each holding its own copy of the model: an actor calls
  ``job.prepare()`` (load model and dataset) once, then serves ``run_shard`` calls.
  Each actor requests ``gpus_per_worker`` GPUs (by default one GPU per worker when
  the cluster has a GPU for each; see :class:`RayBackend`) and ``cpus_per_worker``
  CPUs (by default 1, or an equal share when the cluster has fewer CPUs than workers,
  so that every requested worker is placed).
* At most ``max_in_flight`` shards are queued per actor; the driver waits on them
  with ``ray.wait`` and hands each finished shard's records to ``on_records`` in the
  calling process (where the run's single writer appends them), as shards finish.
  Records are a pure function of the configuration and each example's stable index,
  so they do not depend on the number of workers or on the completion order.
* A killed worker loses nothing: the records of every finished shard are already
  with the driver, and a shard whose worker process (or node) died is resubmitted,
  up to ``max_retries`` times, to the pool; the dead actor is restarted by Ray
  (``max_restarts=-1``) and prepares the job again. A shard that fails with an
  exception raised by the job itself (e.g.
  :class:`~smoothcert.errors.InvalidParameterError` on bad input) is not retried:
  the original exception is re-raised on the driver.
* A killed driver loses only the shards in flight: records already handed to
  ``on_records`` are in the append-only result file, and re-running the same
  command resumes after them.

Example:
    >>> shard_positions(range(7), 3)
    [[0, 1, 2], [3, 4, 5], [6]]
    >>> DEFAULT_SHARD_SIZE
    16
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from smoothcert._validation import check_int, check_nonnegative
from smoothcert.errors import InvalidParameterError, SmoothCertError
from smoothcert.runner.backends import OnRecords, Record, ShardJob

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "RayBackend",
    "RayUnavailableError",
    "ShardFailedError",
    "shard_positions",
]

DEFAULT_SHARD_SIZE = 16
"""Default number of examples per shard.

A shard is the unit of scheduling and of loss on a worker crash: small enough that
a killed worker redoes little work and that progress reaches the result file often;
large enough that the per-call overhead of Ray (a few milliseconds) is negligible
next to certifying an example (n = 100,000 forward samples each in a typical run).
"""

INSTALL_HINT = "pip install 'smoothcert[ray]'"


class RayUnavailableError(SmoothCertError, ImportError):
    """Ray is not installed; the message names the install command."""


class ShardFailedError(SmoothCertError, RuntimeError):
    """A shard's worker died more than ``max_retries`` times (or the cluster failed it)."""


def shard_positions(
    positions: Iterable[int], shard_size: int = DEFAULT_SHARD_SIZE
) -> list[list[int]]:
    """Cut dataset positions into consecutive shards of at most ``shard_size``.

    Pure: the shards, concatenated, are exactly ``positions`` in their order; every
    shard but the last has ``shard_size`` positions; no shard is empty.

    Args:
        positions: dataset positions (ints), in run order.
        shard_size: positions per shard, an int >= 1 (default :data:`DEFAULT_SHARD_SIZE`).

    Returns:
        A list of shards (lists of ints); empty when ``positions`` is empty.

    Raises:
        InvalidParameterError: if ``shard_size`` is not an int >= 1, or a position is
            not an int.

    Example:
        >>> shard_positions([5, 6, 7, 8], 2)
        [[5, 6], [7, 8]]
        >>> shard_positions([], 4)
        []
    """
    size = check_int(shard_size, name="shard_size", minimum=1)
    items = [check_int(p, name="position") for p in positions]
    return [items[i : i + size] for i in range(0, len(items), size)]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise RayUnavailableError(
            f"the Ray backend needs Ray, which is not installed; install it with {INSTALL_HINT}"
        ) from err
    return ray


def _retryable_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Ray errors that mean a worker process or node died, not that the job raised."""
    exc = ray.exceptions
    names = (
        "RayActorError",  # ActorDiedError, ActorUnavailableError
        "WorkerCrashedError",
        "NodeDiedError",
        "ObjectLostError",
        "OutOfMemoryError",  # the worker was killed by Ray's memory monitor
    )
    return tuple(getattr(exc, n) for n in names if hasattr(exc, n))


class _ShardActor:
    """Body of one pool actor: one copy of the job (and its model) per process."""

    def __init__(self, job: ShardJob) -> None:
        self._job = job
        self._prepared = False

    def run_shard(self, positions: Sequence[int]) -> list[Record]:
        self._prepare()
        return self._job.run_shard(positions)

    def ready(self) -> int:
        self._prepare()
        return os.getpid()

    def _prepare(self) -> None:
        if not self._prepared:
            self._job.prepare()
            self._prepared = True


class RayBackend:
    """Run the shards of a dataset run on a pool of Ray actors.

    Args:
        workers: number of actors (model copies), an int >= 1. Default: one per GPU
            of the cluster if it has GPUs, else one per CPU (per ``cpus_per_worker``
            CPUs when given) of the cluster (of this machine for a local cluster).
        address: address of an existing cluster (``"auto"``, ``"host:port"``,
            ``"ray://host:10001"``). ``None`` starts a local cluster with
            ``ceil(workers * cpus_per_worker)`` CPUs (at least 1; ``workers`` CPUs when
            ``cpus_per_worker`` is None) and shuts it down at
            the end of :meth:`run` (a connection to an existing cluster is closed at
            the end, the cluster keeps running). If Ray is already initialised in
            this process, that connection is used and left open.
        gpus_per_worker: GPUs each actor requests, a finite float >= 0 (fractions
            share a GPU). Default: 1 if the cluster has at least one GPU per worker,
            else ``GPUs / workers`` if it has any GPU, else 0. Ray sets
            ``CUDA_VISIBLE_DEVICES`` in each actor; the job picks its device in
            ``prepare()``.
        cpus_per_worker: CPUs each actor requests, a finite float >= 0. Default: 1
            if the cluster has a CPU per worker, else ``CPUs / workers`` (so that 3
            workers are all placed on a 2-CPU cluster). A fraction (or 0) places more
            actors than cores on one machine.
        shard_size: positions per shard the runner cuts for this backend, an int
            >= 1 (default :data:`DEFAULT_SHARD_SIZE`); see :func:`shard_positions`.
        max_retries: times one shard is resubmitted after its worker process or node
            died, an int >= 0. Default 3.
        max_in_flight: shards queued at once per actor, an int >= 1. Default 2 (one
            running, one ready to start).
        runtime_env: Ray runtime environment of the actors (e.g.
            ``{"env_vars": {"PYTHONPATH": ...}}`` so that workers can import the job's
            module); None for the job-level default.
        init_kwargs: extra keyword arguments of ``ray.init``.

    Raises:
        RayUnavailableError: if Ray is not installed (names ``pip install 'smoothcert[ray]'``).
        InvalidParameterError: on an argument outside its valid range.

    Example:
        >>> backend = RayBackend(workers=2, cpus_per_worker=0.5)
        >>> backend.name, backend.workers
        ('ray', 2)
        >>> backend.run(job, shard_positions(range(100)), store.extend)  # doctest: +SKIP
    """

    name = "ray"

    def __init__(
        self,
        *,
        workers: int | None = None,
        address: str | None = None,
        gpus_per_worker: float | None = None,
        cpus_per_worker: float | None = None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        max_retries: int = 3,
        max_in_flight: int = 2,
        runtime_env: dict[str, Any] | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._ray = _import_ray()
        self.workers = None if workers is None else check_int(workers, name="workers", minimum=1)
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise InvalidParameterError(
                f"address = {address!r} is invalid; valid range: None (start a local cluster), "
                "'auto', 'host:port' or 'ray://host:port'"
            )
        self.address = address
        self.gpus_per_worker = (
            None
            if gpus_per_worker is None
            else check_nonnegative(gpus_per_worker, name="gpus_per_worker")
        )
        self.cpus_per_worker = (
            None
            if cpus_per_worker is None
            else check_nonnegative(cpus_per_worker, name="cpus_per_worker")
        )
        self.shard_size = check_int(shard_size, name="shard_size", minimum=1)
        self.max_retries = check_int(max_retries, name="max_retries", minimum=0)
        self.max_in_flight = check_int(max_in_flight, name="max_in_flight", minimum=1)
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise InvalidParameterError(
                f"runtime_env = {runtime_env!r} is invalid; valid range: None or a dict"
            )
        self.runtime_env = runtime_env
        if init_kwargs is not None and not isinstance(init_kwargs, dict):
            raise InvalidParameterError(
                f"init_kwargs = {init_kwargs!r} is invalid; valid range: None or a dict"
            )
        self.init_kwargs = dict(init_kwargs or {})

    def __repr__(self) -> str:
        return (
            f"RayBackend(workers={self.workers!r}, address={self.address!r}, "
            f"gpus_per_worker={self.gpus_per_worker!r}, cpus_per_worker={self.cpus_per_worker!r}, "
            f"shard_size={self.shard_size!r}, max_retries={self.max_retries!r}, "
            f"max_in_flight={self.max_in_flight!r})"
        )

    # -- cluster -----------------------------------------------------------------------

    def _connect(self) -> bool:
        """Initialise Ray if needed; return True if this call did (then :meth:`run` shuts it).

        ``ray.shutdown()`` stops a local cluster this process started, and only
        disconnects from an existing cluster given by ``address``.
        """
        ray = self._ray
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "configure_logging": True,
        }
        if self.address is not None:
            kwargs.update(self.init_kwargs)
            ray.init(address=self.address, **kwargs)
            return True
        kwargs["include_dashboard"] = False
        # a local cluster: size it for the pool, no usage-stats prompt
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self.workers is not None:
            per_cpu = 1.0 if self.cpus_per_worker is None else self.cpus_per_worker
            kwargs["num_cpus"] = max(1, math.ceil(self.workers * per_cpu))
        kwargs.update(self.init_kwargs)
        ray.init(**kwargs)
        return True

    def _pool_shape(self) -> tuple[int, float, float]:
        """Number of actors, GPUs and CPUs per actor, from the arguments and the cluster."""
        resources = self._ray.cluster_resources()
        gpus = float(resources.get("GPU", 0.0))
        cpus = float(resources.get("CPU", 0.0))
        workers = self.workers
        if workers is None:
            if gpus >= 1 and self.gpus_per_worker != 0:
                workers = int(gpus // (self.gpus_per_worker or 1.0))
            elif self.cpus_per_worker != 0:
                workers = int(cpus // (self.cpus_per_worker or 1.0))
            else:
                workers = os.cpu_count() or 1
            workers = max(1, workers)
        per_gpu = self.gpus_per_worker
        if per_gpu is None:
            per_gpu = 1.0 if gpus >= workers else gpus / workers
        per_cpu = self.cpus_per_worker
        if per_cpu is None:
            per_cpu = 1.0 if cpus >= workers else cpus / workers
        if per_gpu > gpus and self.address is None:
            raise InvalidParameterError(
                f"gpus_per_worker = {per_gpu!r} is invalid; valid range: 0 <= gpus_per_worker "
                f"<= {gpus:g} (the GPUs of the local cluster)"
            )
        return workers, per_gpu, per_cpu

    # -- run ---------------------------------------------------------------------------

    def run(self, job: ShardJob, shards: Sequence[Sequence[int]], on_records: OnRecords) -> None:
        """Run ``job`` on every shard on the pool; pass each shard's records to ``on_records``.

        ``on_records`` is called in this process, once per shard, as shards finish (in
        completion order, not submission order). Shards are resubmitted when their worker
        dies (at most ``max_retries`` times each).

        Args:
            job: the work (see :class:`~smoothcert.runner.backends.ShardJob`), picklable;
                its class must be importable by the workers.
            shards: lists of dataset positions (see :func:`shard_positions`).
            on_records: called with each finished shard's records, in this process.

        Raises:
            SmoothCertError: the job's own error on a shard (e.g.
                :class:`~smoothcert.errors.InvalidParameterError`), re-raised with its
                type and message; other exceptions raised by the job are re-raised as
                well. Nothing of a failing shard reaches ``on_records``.
            ShardFailedError: a shard's worker died more than ``max_retries`` times.
            InvalidParameterError: a local cluster has fewer GPUs than ``gpus_per_worker``.
        """
        todo = [list(s) for s in shards if len(s) > 0]
        if not todo:
            return
        ray = self._ray
        started = self._connect()
        actors: list[Any] = []
        try:
            workers, per_gpu, per_cpu = self._pool_shape()
            workers = min(workers, len(todo))
            remote_cls = ray.remote(_ShardActor).options(
                num_cpus=per_cpu,
                num_gpus=per_gpu,
                max_restarts=-1,
                max_task_retries=0,
                **({"runtime_env": self.runtime_env} if self.runtime_env is not None else {}),
            )
            # the job goes by value (not a ray.put reference), so that Ray can restart an
            # actor from its own copy of the constructor arguments
            actors = [remote_cls.remote(job) for _ in range(workers)]
            self._drive(actors, todo, on_records)
        finally:
            for actor in actors:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # noqa: BLE001 - best-effort clean-up
                    pass
            if started:
                ray.shutdown()

    def _drive(self, actors: list[Any], todo: list[list[int]], on_records: OnRecords) -> None:
        """Dispatch shards to ready actors, collect results, resubmit shards of dead workers.

        An actor gets shards once its ``ready()`` call (which prepares the job) has
        returned, so an actor that cannot be scheduled (no free GPU) holds no shard.
        When a shard fails because the actor's process died, the shard goes back to the
        front of the queue (for any ready actor) and the actor, restarted by Ray, gets
        shards again once its ``ready()`` returns; an actor whose process dies more than
        ``max_retries`` times in a row while preparing is dropped.
        """
        ray = self._ray
        retryable = _retryable_errors(ray)
        pending: deque[int] = deque(range(len(todo)))
        failures = [0] * len(todo)
        actor_failures = [0] * len(actors)
        ready_actors: set[int] = set()
        load = [0] * len(actors)
        starting: dict[Any, int] = {actor.ready.remote(): a for a, actor in enumerate(actors)}
        in_flight: dict[Any, tuple[int, int]] = {}  # ref -> (shard id, actor id)

        def dispatch() -> None:
            while pending and ready_actors:
                a = min(ready_actors, key=load.__getitem__)
                if load[a] >= self.max_in_flight:
                    return
                s = pending.popleft()
                in_flight[actors[a].run_shard.remote(todo[s])] = (s, a)
                load[a] += 1

        while in_flight or pending:
            if not in_flight and not starting:
                raise ShardFailedError(
                    f"no Ray worker is left to run {len(pending)} shards: every actor died "
                    f"more than max_retries = {self.max_retries} times while preparing the job"
                )
            done, _ = ray.wait([*in_flight, *starting], num_returns=1)
            for ref in done:
                if ref in starting:
                    a = starting.pop(ref)
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayTaskError as err:
                        raise _unwrap(err) from err
                    except retryable:
                        actor_failures[a] += 1
                        if actor_failures[a] <= self.max_retries:
                            starting[actors[a].ready.remote()] = a
                        continue
                    actor_failures[a] = 0
                    ready_actors.add(a)
                    continue
                s, a = in_flight.pop(ref)
                load[a] -= 1
                try:
                    records = ray.get(ref)
                except ray.exceptions.RayTaskError as err:
                    raise _unwrap(err) from err
                except retryable as err:
                    failures[s] += 1
                    if failures[s] > self.max_retries:
                        raise ShardFailedError(
                            f"shard {s} (positions {todo[s][0]}..{todo[s][-1]}) failed "
                            f"{failures[s]} times because its worker died; "
                            f"max_retries = {self.max_retries}: {err}"
                        ) from err
                    pending.appendleft(s)
                    if a in ready_actors:  # its process died: no new shards until it is back
                        ready_actors.discard(a)
                        starting[actors[a].ready.remote()] = a
                    continue
                if len(records) != len(todo[s]):
                    raise ShardFailedError(
                        f"shard {s} returned {len(records)} records for {len(todo[s])} positions"
                    )
                on_records(records)
            dispatch()


def _unwrap(err: Any) -> BaseException:
    """The job's original exception inside a ``RayTaskError`` (its type and message)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    try:
        unwrapped: BaseException = err.as_instanceof_cause()
    except Exception:  # noqa: BLE001 - fall back to the Ray error itself
        unwrapped = err
    return unwrapped

r"""Append-only JSON-lines result store with crash-tolerant resume.

File format (UTF-8, one JSON object per line, ``\n`` terminated):

* Line 1, the header::

    {"type": "header", "format": "smoothcert-results", "format_version": 1,
     "config": {...every RunConfig field...}, "config_hash": "<sha256 hex>",
     "hashed_fields": [...names...], "versions": {"smoothcert": ..., "torch": ...,
     "numpy": ..., "scipy": ..., "python": ...}, "created": "<ISO 8601 UTC>", ...}

  Writers may add keys (a run adds ``device`` and ``model_fingerprint``).
* Then one line per example::

    {"type": "record", "index": <stable id>, "label": <int>, "correct": <bool>,
     ...every field of CertifyResult.to_dict()...}

  and, before the records of each run that appended to the file, one line naming the
  examples that run selected (so the file always says which examples were asked for)::

    {"type": "selection", "selection": {"start": 0, "skip": 1, "num_examples": 4},
     "created": "<ISO 8601 UTC>"}

Version 1 files (smoothcert 0.1) have no selection lines and records without
evidence; :mod:`smoothcert.results.records` reads them.

Every line is written with one ``write`` call, flushed and ``os.fsync``-ed, so after a
crash (or SIGKILL) at most the LAST line can be incomplete. Opening a file for
appending drops such an incomplete or corrupt last line (truncating the file back to
the last complete line); a corrupt line anywhere else is an error, since silently
skipping it would lose a result. A file whose header has a different config hash is
refused. An advisory lock (``fcntl.flock``, where available) stops two processes
from appending to the same file.

This module is pure Python (no torch, no numpy), so ``smoothcert.reports`` can use it.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.jsonl"
    >>> with ResultStore.open(path, config={"n": 10}, config_hash="abc") as store:
    ...     store.append({"type": "record", "index": 7, "label": 1, "correct": True})
    >>> contents = read_results(path)
    >>> contents.header["config_hash"], [r["index"] for r in contents.records]
    ('abc', [7])
    >>> ResultStore.open(path, config={"n": 20}, config_hash="def")
    Traceback (most recent call last):
    ...
    smoothcert.errors.ResultStoreError: ...
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from smoothcert.errors import InvalidParameterError, ResultStoreError

try:  # POSIX advisory locks; absent on Windows, where the store runs unlocked.
    import fcntl
except ImportError:  # pragma: no cover - platform dependent
    fcntl = None  # type: ignore[assignment]

FORMAT = "smoothcert-results"
"""Value of the header's ``format`` key."""

FORMAT_VERSION = 2
"""Version of the file format this module writes and the newest it reads."""

READABLE_VERSIONS = (1, 2)
"""Format versions this module reads (version 1 is read-only: never appended to)."""

_VERSIONED_PACKAGES = ("smoothcert", "torch", "numpy", "scipy")
_HEADER_PREFIX = b'{"type": "header"'  # how every header line written here starts


def library_versions() -> dict[str, str | None]:
    """Installed versions of smoothcert, torch, numpy, scipy and Python.

    Read from package metadata, so torch is not imported. A package that is not
    installed is reported as None.

    Example:
        >>> sorted(library_versions())
        ['numpy', 'python', 'scipy', 'smoothcert', 'torch']
    """
    out: dict[str, str | None] = {}
    for name in _VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def make_header(
    config: Mapping[str, Any],
    config_hash: str,
    *,
    hashed_fields: Iterable[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a header line's object.

    Args:
        config: the full run configuration (JSON-serialisable).
        config_hash: hash of the result-determining part of ``config``.
        hashed_fields: names of the config keys covered by the hash (used to list the
            differences when a file is refused); default all keys of ``config``.
        extra: additional keys (e.g. ``device``, ``model_fingerprint``).

    Returns:
        The header dict.

    Example:
        >>> h = make_header({"n": 1}, "abc")
        >>> h["type"], h["format"], h["config_hash"]
        ('header', 'smoothcert-results', 'abc')
    """
    header: dict[str, Any] = {
        "type": "header",
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": dict(config),
        "config_hash": config_hash,
        "hashed_fields": list(hashed_fields) if hashed_fields is not None else sorted(config),
        "versions": library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        for key, value in extra.items():
            if key in header:
                raise InvalidParameterError(
                    f"extra header key {key!r} is invalid; valid: a key not in {sorted(header)}"
                )
            header[key] = value
    return header


@dataclass(frozen=True)
class ResultContents:
    """What a result file holds.

    Attributes:
        path: the file.
        header: the header object.
        records: the record objects, in file order.
        torn_tail: True if an incomplete or corrupt last line was ignored (a run that
            crashed mid-write, or one that is writing right now).
        selections: the example selections of the runs that wrote the file, in order.
        record_lines: the line number (1-based) of each record, for messages.
    """

    path: Path
    header: dict[str, Any]
    records: list[dict[str, Any]]
    torn_tail: bool = False
    selections: tuple[dict[str, Any], ...] = ()
    record_lines: tuple[int, ...] = ()


@dataclass(frozen=True)
class _Parsed:
    header: dict[str, Any] | None
    records: list[dict[str, Any]]
    selections: list[dict[str, Any]]
    record_lines: list[int]
    keep: int  # number of leading bytes that hold complete, valid lines
    torn_tail: bool  # the last line was incomplete/corrupt and is not kept
    needs_newline: bool  # the last kept line is valid JSON but lacks its "\n"


def _reject_constant(token: str) -> Any:
    raise ValueError(f"non-finite number {token}")


def _parse_line(raw: bytes) -> dict[str, Any]:
    obj = json.loads(raw, parse_constant=_reject_constant)
    if not isinstance(obj, dict):
        raise ValueError(f"a JSON {type(obj).__name__}, not an object")
    return obj


def _check_header(header: dict[str, Any], path: Path) -> None:
    if header.get("type") != "header" or header.get("format") != FORMAT:
        raise ResultStoreError(
            f"{path} is not a smoothcert result file (its first line is not a "
            f"'{FORMAT}' header); refusing to use it"
        )
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise ResultStoreError(
            f"{path} has format_version = {version!r}; this smoothcert reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}: upgrade smoothcert to read it"
        )
    if version not in READABLE_VERSIONS:
        raise ResultStoreError(
            f"{path} has format_version = {version!r}; valid: {READABLE_VERSIONS}"
        )
    if not isinstance(header.get("config_hash"), str) or not isinstance(header.get("config"), dict):
        raise ResultStoreError(f"{path} has a header without config and config_hash")


def _check_record(record: dict[str, Any], seen: set[int], where: str) -> int:
    if record.get("type") != "record":
        raise ResultStoreError(
            f"{where} has type = {record.get('type')!r}; valid: 'record' (only the "
            "first line is a header)"
        )
    index = record.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ResultStoreError(f"{where} has index = {index!r}; valid: an integer >= 0")
    if index in seen:
        raise ResultStoreError(f"{where} repeats index {index}; each example is stored once")
    return index


def _parse(data: bytes, path: Path) -> _Parsed:
    spans: list[tuple[int, int, bool]] = []  # (start, end without "\n", has "\n")
    pos = 0
    while pos < len(data):
        newline = data.find(b"\n", pos)
        if newline == -1:
            spans.append((pos, len(data), False))
            break
        spans.append((pos, newline, True))
        pos = newline + 1

    objects: list[dict[str, Any]] = []
    keep = len(data)
    torn = False
    for number, (start, end, _) in enumerate(spans, start=1):
        try:
            objects.append(_parse_line(data[start:end]))
        except ValueError as err:  # includes JSONDecodeError and UnicodeDecodeError
            if number == len(spans):
                keep, torn = start, True
                break
            raise ResultStoreError(
                f"{path}: line {number} of {len(spans)} is corrupt ({err}); only the "
                "last line of a result file may be incomplete (a crash mid-write), so "
                "this file cannot be used as is"
            ) from None
    needs_newline = bool(spans) and not torn and not spans[-1][2]

    if not objects:
        # Nothing complete: an empty file, or a header torn mid-write. Anything else is
        # somebody else's file, which must never be overwritten.
        if data and not (data.startswith(_HEADER_PREFIX) or _HEADER_PREFIX.startswith(data)):
            raise ResultStoreError(
                f"{path} is not a smoothcert result file (its first line is not a "
                f"'{FORMAT}' header); refusing to use it"
            )
        return _Parsed(None, [], [], [], 0, torn, False)
    header = objects[0]
    _check_header(header, path)
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    selections: list[dict[str, Any]] = []
    seen: set[int] = set()
    for number, obj in enumerate(objects[1:], start=2):
        if obj.get("type") == "selection" and isinstance(obj.get("selection"), dict):
            selections.append(obj["selection"])
            continue
        seen.add(_check_record(obj, seen, f"{path}: line {number}"))
        records.append(obj)
        lines.append(number)
    return _Parsed(header, records, selections, lines, keep, torn, needs_newline)


def read_results(path: str | os.PathLike[str]) -> ResultContents:
    """Read a result file without modifying it.

    An incomplete or corrupt LAST line is ignored (``torn_tail`` is set), so a file
    that a run is still writing can be read.

    Args:
        path: the result file.

    Returns:
        A :class:`ResultContents`.

    Raises:
        ResultStoreError: if the file is missing, empty, not a smoothcert result file,
            of a newer format, or has a corrupt line that is not the last.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ResultStoreError(f"result file {path} does not exist") from None
    except IsADirectoryError:
        raise ResultStoreError(f"result file {path} is a directory, not a file") from None
    parsed = _parse(data, path)
    if parsed.header is None:
        raise ResultStoreError(f"result file {path} is empty (no complete header line)")
    return ResultContents(
        path,
        parsed.header,
        parsed.records,
        parsed.torn_tail,
        tuple(parsed.selections),
        tuple(parsed.record_lines),
    )


def existing_header(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Header of an existing result file, without modifying it.

    Returns:
        None when the file is missing, empty, or holds only a header torn mid-write
        (opening a :class:`ResultStore` rewrites that header); else the header.

    Raises:
        ResultStoreError: as :func:`read_results`, for files that cannot be resumed.
    """
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        raise ResultStoreError(f"result file {path} is a directory, not a file")
    return _parse(path.read_bytes(), path).header


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the header of a result file (see :func:`read_results` for the errors)."""
    return read_results(path).header


def _config_differences(header: Mapping[str, Any], config: Mapping[str, Any]) -> str:
    old = header.get("config", {})
    names = header.get("hashed_fields") or sorted(set(old) | set(config))
    diffs = []
    for name in names:
        was, now = old.get(name), config.get(name)
        if was == now:
            continue
        if isinstance(was, Mapping) and isinstance(now, Mapping):
            # nested method parameters: name the parameters that differ, not the dicts
            keys = dict.fromkeys([*was, *now])
            diffs += [
                f"{name}.{key}: {was.get(key)!r} in the file, {now.get(key)!r} now"
                for key in keys
                if was.get(key) != now.get(key)
            ]
        else:
            diffs.append(f"{name}: {was!r} in the file, {now!r} now")
    return "; ".join(diffs)


def check_same_config(
    header: Mapping[str, Any],
    *,
    path: str | os.PathLike[str],
    config: Mapping[str, Any],
    config_hash: str,
) -> None:
    """Refuse a file whose header has another config hash.

    Args:
        header: the file's header.
        path: the file (for the message).
        config: the configuration of the run that wants to append.
        config_hash: its hash.

    Raises:
        ResultStoreError: naming the path, both hashes and the differing fields.

    Example:
        >>> h = make_header({"n": 1}, "aaa")
        >>> check_same_config(h, path="r.jsonl", config={"n": 1}, config_hash="aaa")
        >>> check_same_config(h, path="r.jsonl", config={"n": 2}, config_hash="bbb")
        Traceback (most recent call last):
        ...
        smoothcert.errors.ResultStoreError: r.jsonl holds results of config hash aaa, but \
this run has config hash bbb (n: 1 in the file, 2 now); refusing to append: choose \
another output file, or delete this one to start over
    """
    if header["config_hash"] != config_hash:
        diffs = _config_differences(header, config)
        raise ResultStoreError(
            f"{path} holds results of config hash {header['config_hash']}, but this "
            f"run has config hash {config_hash}"
            + (f" ({diffs})" if diffs else "")
            + "; refusing to append: choose another output file, or delete this "
            "one to start over"
        )


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse
        pass
    finally:
        os.close(fd)


class ResultStore:
    """An open result file that records are appended to.

    Use :meth:`open`; the store is a context manager that releases the file on exit.

    Attributes:
        path: the file.
        header: its header (the existing one when resuming).
        records: the records already in the file, then those appended.
        repaired: True if opening dropped an incomplete last line.
    """

    def __init__(
        self,
        path: Path,
        handle: IO[bytes],
        header: dict[str, Any],
        records: list[dict[str, Any]],
        repaired: bool,
        selections: list[dict[str, Any]] | None = None,
    ) -> None:
        self.path = path
        self._handle: IO[bytes] | None = handle
        self.header = header
        self.records = records
        self.repaired = repaired
        self.selections = list(selections or [])
        self._done = {int(r["index"]) for r in records}

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        config: Mapping[str, Any],
        config_hash: str,
        hashed_fields: Iterable[str] | None = None,
        extra_header: Mapping[str, Any] | None = None,
    ) -> ResultStore:
        """Open (or create) a result file for appending.

        A new or empty file gets a header built by :func:`make_header`. An existing
        file must have the same ``config_hash``; its incomplete last line, if any, is
        truncated away, and its records are loaded (see :attr:`done_indices`).

        Args:
            path: the result file; parent directories are created.
            config: the full run configuration.
            config_hash: hash of the result-determining part of ``config``.
            hashed_fields: names of the config keys the hash covers.
            extra_header: additional header keys for a new file.

        Returns:
            The open store (holding an exclusive advisory lock on the file).

        Raises:
            ResultStoreError: if the file has another config hash, is not a result
                file, has a corrupt line that is not the last, or is locked by
                another process.
        """
        path = Path(path)
        if path.is_dir():
            raise ResultStoreError(f"result file {path} is a directory, not a file")
        created = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # noqa: SIM115 - closed by close()
        try:
            cls._lock(handle, path)
            handle.seek(0)
            parsed = _parse(handle.read(), path)
            if parsed.header is None:
                header = make_header(
                    config, config_hash, hashed_fields=hashed_fields, extra=extra_header
                )
                handle.truncate(0)
                cls._write_line(handle, header)
                if created:
                    _fsync_directory(path.parent)
                return cls(path, handle, header, [], parsed.torn_tail)
            header = parsed.header
            if header.get("format_version") != FORMAT_VERSION:
                raise ResultStoreError(
                    f"{path} is a format_version {header.get('format_version')} result file; "
                    f"this smoothcert appends to version {FORMAT_VERSION} files only (read it "
                    "with report/export/recertify, or choose another output file)"
                )
            check_same_config(header, path=path, config=config, config_hash=config_hash)
            if parsed.torn_tail:
                handle.truncate(parsed.keep)
            if parsed.needs_newline:
                handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
            return cls(
                path,
                handle,
                header,
                list(parsed.records),
                parsed.torn_tail,
                parsed.selections,
            )
        except BaseException:
            handle.close()
            raise

    @staticmethod
    def _lock(handle: IO[bytes], path: Path) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ResultStoreError(
                f"{path} is locked by another process that is writing to it; wait for "
                "it to finish or choose another output file"
            ) from None

    @staticmethod
    def _write_line(handle: IO[bytes], obj: Mapping[str, Any]) -> None:
        line = json.dumps(obj, allow_nan=False) + "\n"
        handle.write(line.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())

    @property
    def done_indices(self) -> frozenset[int]:
        """Stable indices of the examples already stored."""
        return frozenset(self._done)

    def record_selection(self, selection: Mapping[str, Any]) -> None:
        """Write a selection line unless ``selection`` is the file's latest one.

        Called by a run before it appends records, so that the file names every
        selection of examples that was run into it.

        Args:
            selection: JSON-serialisable description of the selected examples.

        Raises:
            ResultStoreError: if the store is closed.
        """
        if self._handle is None:
            raise ResultStoreError(f"result store {self.path} is closed")
        selection = dict(selection)
        if self.selections and self.selections[-1] == selection:
            return
        line = {
            "type": "selection",
            "selection": selection,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        self._write_line(self._handle, line)
        self.selections.append(selection)

    def is_done(self, index: int) -> bool:
        """Whether the example with stable ``index`` is already stored (O(1))."""
        return index in self._done

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record, then flush and fsync it (see :meth:`append_many`)."""
        self.append_many([record])

    def append_many(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records with one write, then flush and fsync once.

        A crash mid-write leaves at most the last line incomplete (dropped on resume);
        the records of one call reach the disk together.

        Args:
            records: JSON-serialisable mappings with ``type == "record"`` and indices not
                yet in the file (nor repeated among them).

        Raises:
            ResultStoreError: if the store is closed, a record is malformed, not
                JSON-serialisable, or its index is already stored; nothing is written then.
        """
        if self._handle is None:
            raise ResultStoreError(f"result store {self.path} is closed")
        seen = set(self._done)
        lines = []
        checked = []
        for record in records:
            record = dict(record)
            index = _check_record(record, seen, f"record for {self.path}")
            try:
                lines.append(json.dumps(record, allow_nan=False) + "\n")
            except (TypeError, ValueError) as err:
                raise ResultStoreError(
                    f"record with index {index} is not JSON-serialisable ({err})"
                ) from err
            seen.add(index)
            checked.append((index, record))
        if not checked:
            return
        self._handle.write("".join(lines).encode("utf-8"))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        for index, record in checked:
            self._done.add(index)
            self.records.append(record)

    def close(self) -> None:
        """Release the lock and close the file (idempotent)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

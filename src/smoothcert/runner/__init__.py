"""Dataset certification runs: config hash, append-only result store, resume.

The configuration (:class:`RunConfig`) and the store (:class:`ResultStore`,
:func:`read_results`) are pure Python/numpy; :func:`run_certification` and
:func:`certify_example` need torch and are imported on first use, so that
``smoothcert.reports`` can read result files without torch.

Example:
    >>> from smoothcert.runner import RunConfig
    >>> RunConfig(sigma=0.5).sigma
    0.5
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smoothcert.runner.config import (
    HASHED_FIELDS,
    METHODS,
    RunConfig,
    default_run_stem,
    example_seed,
)
from smoothcert.runner.store import (
    FORMAT,
    FORMAT_VERSION,
    ResultContents,
    ResultStore,
    read_header,
    read_results,
)

if TYPE_CHECKING:  # pragma: no cover
    from smoothcert.runner.run import (
        RunProgress,
        certify_example,
        check_device,
        model_fingerprint,
        run_certification,
        validate_run,
    )

_LAZY = {
    "RunProgress",
    "certify_example",
    "check_device",
    "model_fingerprint",
    "run_certification",
    "validate_run",
}

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "HASHED_FIELDS",
    "METHODS",
    "ResultContents",
    "ResultStore",
    "RunConfig",
    "RunProgress",
    "certify_example",
    "check_device",
    "default_run_stem",
    "example_seed",
    "model_fingerprint",
    "read_header",
    "read_results",
    "run_certification",
    "validate_run",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from smoothcert.runner import run

        return getattr(run, name)
    raise AttributeError(f"module 'smoothcert.runner' has no attribute {name!r}")

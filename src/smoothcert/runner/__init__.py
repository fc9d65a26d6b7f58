"""Dataset certification runs: config hash, backends (local, Ray), one writer, resume.

The configuration (:class:`RunConfig`) is pure Python/numpy; :func:`run_certification`,
:func:`certify_example` and the backends need torch and are imported on first use. The
result-file format lives in :mod:`smoothcert.results`.

Example:
    >>> from smoothcert.runner import RunConfig
    >>> RunConfig().method_params().sigma
    0.25
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smoothcert.runner.config import (
    HASHED_FIELDS,
    RunConfig,
    default_run_stem,
    example_seed,
)

if TYPE_CHECKING:  # pragma: no cover
    from smoothcert.runner.run import (
        RunJob,
        RunProgress,
        certify_example,
        model_fingerprint,
        run_certification,
        validate_run,
    )

_LAZY = {
    "RunJob",
    "RunProgress",
    "certify_example",
    "model_fingerprint",
    "run_certification",
    "validate_run",
}

__all__ = [
    "HASHED_FIELDS",
    "RunConfig",
    "RunJob",
    "RunProgress",
    "certify_example",
    "default_run_stem",
    "example_seed",
    "model_fingerprint",
    "run_certification",
    "validate_run",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from smoothcert.runner import run

        return getattr(run, name)
    raise AttributeError(f"module 'smoothcert.runner' has no attribute {name!r}")

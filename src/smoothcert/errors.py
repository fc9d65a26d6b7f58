"""Exception hierarchy of smoothcert.

Every error the library raises on purpose derives from :class:`SmoothCertError`, so
callers can catch the whole family with one ``except`` clause.

Example:
    >>> from smoothcert.errors import InvalidParameterError
    >>> try:
    ...     raise InvalidParameterError("sigma = -1.0 is invalid; valid range: sigma > 0")
    ... except ValueError as err:
    ...     print(err)
    sigma = -1.0 is invalid; valid range: sigma > 0
"""

from __future__ import annotations


class SmoothCertError(Exception):
    """Base class of every error raised by smoothcert."""


class InvalidParameterError(SmoothCertError, ValueError):
    """A parameter or input is outside its valid range.

    Raised before any sampling is done. The message repeats the bad value and states
    the valid range.
    """


class ConvergenceError(SmoothCertError, RuntimeError):
    """A numerical root finder or iteration did not converge to the required tolerance."""


class ResultStoreError(SmoothCertError):
    """A result file cannot be used (config mismatch, corrupt header, ...)."""


class AssetError(SmoothCertError):
    """A bundled asset (weights, dataset) is missing or fails its checksum."""

"""The result-file format (pure, no torch): header, records, append, resume rules, v1 reader.

:mod:`smoothcert.results.store` writes and reads the append-only JSON-lines files;
:mod:`smoothcert.results.records` validates their records (and upgrades version-1
ones). The runner writes through it; reports and ``recertify`` read through it.
"""

from smoothcert.results.records import (
    record_line,
    result_of,
    upgrade_v1_record,
    validate_record,
)
from smoothcert.results.store import (
    FORMAT,
    FORMAT_VERSION,
    READABLE_VERSIONS,
    ResultContents,
    ResultStore,
    check_same_config,
    existing_header,
    make_header,
    read_header,
    read_results,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "ResultContents",
    "ResultStore",
    "check_same_config",
    "existing_header",
    "make_header",
    "read_header",
    "read_results",
    "record_line",
    "result_of",
    "upgrade_v1_record",
    "validate_record",
]

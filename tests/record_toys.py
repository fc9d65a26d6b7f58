"""Helpers that compare result records (shared by the runner tests)."""

from __future__ import annotations

from typing import Any


def without_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without wall-clock times (the record's and its evidence's seconds)."""
    out = []
    for r in records:
        rec = {k: v for k, v in r.items() if k != "seconds"}
        rec["evidence"] = {k: v for k, v in r["evidence"].items() if k != "seconds"}
        out.append(rec)
    return out

"""The scripts in examples/ keep running against the current API."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_hybrid_safety_filter_example_runs(capsys) -> None:
    runpy.run_path(str(EXAMPLES / "hybrid_safety_filter.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "certified flagged" in out and "unsafe pair: p_lower = " in out
    assert "trigger prompt + bright image  unsafe" in out

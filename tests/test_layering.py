"""The pure layers must import (and work) with torch blocked."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc
    import sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname == "torch" or fullname.startswith("torch."):
                raise ImportError(f"torch is blocked in this test ({fullname})")
            return None

    sys.meta_path.insert(0, BlockTorch())
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker did not block torch")
    """
)


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pure_layers_import_without_torch() -> None:
    proc = run_blocked(
        """
        import smoothcert.certificates
        import smoothcert.certificates.gaussian
        import smoothcert.stats
        import smoothcert.records
        import smoothcert.reports
        import smoothcert.runner
        import smoothcert.runner.config
        import smoothcert.runner.store
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_report_and_export_run_without_torch(tmp_path: Path) -> None:
    from smoothcert.runner.store import make_header

    path = tmp_path / "r.jsonl"
    record = {
        "type": "record",
        "index": 0,
        "label": 1,
        "correct": True,
        "prediction": 1,
        "abstained": False,
        "radius": 0.3,
        "seconds": 0.1,
    }
    path.write_text(json.dumps(make_header({}, "h")) + "\n" + json.dumps(record) + "\n")
    proc = run_blocked(
        f"""
        from smoothcert.cli import app
        for args in (["report", {str(path)!r}], ["export", {str(path)!r}]):
            try:
                app(args, prog_name="smoothcert")
            except SystemExit as stop:
                assert stop.code == 0, stop.code
        assert "torch" not in sys.modules
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "| 0 | 100.0% |" in proc.stdout
    assert "idx\tlabel\tpredict\tradius\tcorrect\ttime" in proc.stdout

"""The pure layers must import (and work) with torch blocked."""

from __future__ import annotations

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


PURE_MODULES = (
    "smoothcert.certificates",
    "smoothcert.certificates.gaussian",
    "smoothcert.certificates.tokens",
    "smoothcert.certificates.hybrid",
    "smoothcert.stats",
    "smoothcert.stats.binomial",
    "smoothcert.decisions",
    "smoothcert.decisions.cohen",
    "smoothcert.decisions.attack",
    "smoothcert.decisions.attack_hybrid",
    "smoothcert.decisions.attack_fields",
    "smoothcert.decisions.tokens",
    "smoothcert.decisions.hybrid",
    "smoothcert.decisions.sequential",
    "smoothcert.decisions.hybrid_sequential",
    "smoothcert.decisions.dual",
    "smoothcert.decisions.soft",
    "smoothcert.decisions.lipschitz",
    "smoothcert.certificates.lipschitz",
    "smoothcert.decisions.combined",
    "smoothcert.certificates.dual",
    "smoothcert.reports.dual",
    "smoothcert.reports.attack",
    "smoothcert.stats.sequential",
    "smoothcert.stats.combiners",
    "smoothcert.reports.samples",
    "smoothcert.records",
    "smoothcert.results",
    "smoothcert.results.store",
    "smoothcert.results.records",
    "smoothcert.results.recertify",
    "smoothcert.reports",
    "smoothcert.runner",
    "smoothcert.runner.config",
    "smoothcert.methods.registry",
)


def test_pure_layers_import_without_torch() -> None:
    imports = "\n".join(f"import {name}" for name in PURE_MODULES)
    proc = run_blocked(
        imports
        + """
from smoothcert.methods.registry import get_method, method_names
assert method_names() == (
    "attack-fields", "attack-hybrid", "attack-l2", "cohen", "cohen-combined", "cohen-predict",
    "cohen-sequential", "cohen-top2", "dual", "dual-predict", "hybrid", "hybrid-fields",
    "hybrid-sequential", "lipschitz", "soft", "soft-combined", "soft-top2", "tokens",
)
for name in method_names():
    get_method(name)
assert "torch" not in sys.modules
print("ok")
"""
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_recertify_and_validation_run_without_torch(tmp_path: Path) -> None:
    from result_records import cohen_record
    from smoothcert.results import ResultStore
    from smoothcert.runner.config import RunConfig

    config = RunConfig(params={"sigma": 0.25, "n0": 10, "n": 1000, "alpha": 0.001})
    path = tmp_path / "r.jsonl"
    record = cohen_record(0, 1, None, 0.0)
    with ResultStore.open(path, config=config.to_dict(), config_hash=config.config_hash()) as s:
        s.append(record)
    out = tmp_path / "top2.jsonl"
    proc = run_blocked(
        f"""
        from smoothcert.results.recertify import load_records, recertify
        recertify({str(path)!r}, {str(out)!r}, method="cohen-top2", alpha=0.01)
        header, records = load_records({str(out)!r})
        assert records[0]["method"] == "cohen-top2" and records[0]["alpha"] == 0.01
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_report_and_export_run_without_torch(tmp_path: Path) -> None:
    from result_records import cohen_record, write_result_file

    path = write_result_file(tmp_path / "r.jsonl", [cohen_record(0, 1, 1, 0.3, 0.1)])
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

"""Retraining a bundled model bit for bit, in a subprocess with pinned CPU kernels.

Bitwise reproduction of shipped weights needs the same float operations in the same
order. Two things change them from one machine to the next:

* threads: BLAS / OpenMP split sums differently with several threads, and the thread
  count is fixed when torch starts, so the trainer runs with ``OMP_NUM_THREADS=1``;
* the CPU kernels torch dispatches to: on a CPU with AVX512, torch's own kernels and
  oneDNN's (convolutions) use AVX512 by default, elsewhere AVX2, and they round
  differently. The bundled weights checked here were made with the AVX2 kernels, which
  every x86-64 machine that runs these tests has, so the trainer runs with
  ``ATEN_CPU_CAPABILITY=avx2`` and ``ONEDNN_MAX_CPU_ISA=AVX2``.

All must be set before torch is imported, hence the subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PINNED_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def retrain(name: str, sigma: float, out_dir: Path, *, timeout: float = 900) -> dict:
    """``train_all`` of one bundled model at one sigma into ``out_dir``; its manifest entry."""
    code = (
        "from smoothcert.models.train import train_all; "
        f"train_all(sigmas=({sigma!r},), out_dir={str(out_dir)!r}, name={name!r})"
    )
    env = dict(os.environ, **PINNED_ENV)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=timeout)
    files = json.loads((out_dir / "manifest.json").read_text())["files"]
    return files[f"{name}_sigma{sigma!r}.pt"]

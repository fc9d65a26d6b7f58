"""Picklable shard jobs for the Ray backend tests (imported by Ray workers as ``runner.ray_jobs``).

The job certifies examples of a small synthetic dataset with a real torch model and the
real Cohen CERTIFY, seeded per example from the run seed and the example's stable index,
so its records do not depend on the backend or on the number of workers. It can also kill
its own worker process (once, or every time) or raise an ``InvalidParameterError`` on a
chosen example, to test fault tolerance and error propagation.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smoothcert.errors import InvalidParameterError
from smoothcert.methods.cohen import certify
from smoothcert.runner.config import example_seed

NUM_CLASSES = 3


def make_model(seed: int = 0) -> torch.nn.Module:
    """A tiny CNN on 1x4x4 inputs with fixed weights drawn from ``seed`` (no global RNG)."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, kernel_size=3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, NUM_CLASSES),
    )
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.as_tensor(rng.normal(size=tuple(param.shape)), dtype=torch.float32))
    return model.eval()


def make_images(size: int) -> np.ndarray:
    """``size`` inputs of shape (1, 4, 4) in [0, 1]."""
    return np.random.default_rng(1).uniform(0.0, 1.0, size=(size, 1, 4, 4)).astype(np.float32)


def stable_index(position: int) -> int:
    """The stable id of the example at a dataset position (differs from the position)."""
    return 100 + 3 * position


@dataclass
class CohenShardJob:
    """Certify examples of the synthetic dataset with Cohen's CERTIFY.

    Attributes:
        size: dataset size.
        kill_index: stable index on which the worker process SIGKILLs itself.
        kill_marker: file created just before the kill; when given, the kill happens only
            if the file does not exist yet (first attempt only). When None, the worker
            dies on every attempt.
        bad_index: stable index on which ``run_shard`` raises ``InvalidParameterError``.
    """

    size: int = 24
    sigma: float = 0.25
    n0: int = 10
    n: int = 200
    alpha: float = 0.01
    batch_size: int = 64
    run_seed: int = 0
    kill_index: int | None = None
    kill_marker: str | None = None
    bad_index: int | None = None
    _model: Any = field(default=None, init=False, repr=False, compare=False)
    _images: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_model"] = None  # each worker loads its own copy in prepare()
        state["_images"] = None
        return state

    def prepare(self) -> None:
        if self._model is None:
            torch.set_num_threads(1)
            self._model = make_model()
            self._images = torch.as_tensor(make_images(self.size))

    def run_shard(self, positions: Sequence[int]) -> list[dict[str, Any]]:
        self.prepare()
        out = []
        for pos in positions:
            idx = stable_index(pos)
            if idx == self.bad_index:
                raise InvalidParameterError(
                    f"example index = {idx} is invalid; valid range: any index but {idx}"
                )
            if idx == self.kill_index:
                marker = None if self.kill_marker is None else Path(self.kill_marker)
                if marker is None or not marker.exists():
                    if marker is not None:
                        marker.write_text(str(os.getpid()))
                    os.kill(os.getpid(), signal.SIGKILL)
            res = certify(
                self._model,
                self._images[pos],
                sigma=self.sigma,
                n0=self.n0,
                n=self.n,
                alpha=self.alpha,
                batch_size=self.batch_size,
                seed=example_seed(self.run_seed, idx),
                num_classes=NUM_CLASSES,
            )
            out.append(
                {
                    "index": idx,
                    "prediction": res.prediction,
                    "radius": res.radius,
                    "p_lower": res.p_lower,
                    "pid": os.getpid(),
                }
            )
        return out

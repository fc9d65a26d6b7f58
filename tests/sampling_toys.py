"""The small model, input and noise stream shared by the score-sampling tests.

tests/sampling/test_scores.py (score sums) and tests/sampling/test_score_histograms.py
(score histograms) check the device reducers against the same host reference: the
logits of :func:`noisy_logits`, mapped in numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from smoothcert.decisions.cohen import GaussianFacts
from smoothcert.methods.sampler import PlannedStage, Prepared, Sampler
from smoothcert.noise import GaussianNoise
from smoothcert.sampling import make_generator

X = torch.linspace(-1, 1, 6).reshape(1, 2, 3)
"""The input of :class:`TinyNet` (no batch axis)."""


class TinyNet(torch.nn.Module):
    """A fixed random linear model on a (2, 3) input with 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 4))
        with torch.no_grad():
            self.net[1].weight.copy_(torch.randn(4, 6, generator=g))
            self.net[1].bias.copy_(torch.randn(4, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def gaussian_sampler(
    x: torch.Tensor, seed: int, sigma: float = 0.7
) -> Callable[[int], tuple[torch.Tensor]]:
    """A batch sampler of Gaussian-noised copies of ``x`` from a seeded CPU generator."""
    kernel, g = GaussianNoise(sigma), make_generator(seed, "cpu")
    return lambda b: (kernel.sample(x, b, generator=g),)


def noisy_logits(
    model: torch.nn.Module, x: torch.Tensor, seed: int, num: int, batch_size: int
) -> np.ndarray:
    """Float64 logits ``(num, classes)`` on ``gaussian_sampler(x, seed)``'s noise.

    Drawn in batches of ``batch_size``: the same draws as the device reducers get.
    """
    sampler, rows, left = gaussian_sampler(x, seed), [], num
    while left:
        b = min(batch_size, left)
        with torch.no_grad():
            rows.append(model(*sampler(b)).double().numpy())
        left -= b
    return np.concatenate(rows)


def prepared(
    model: torch.nn.Module, x: torch.Tensor, seed: int, scores: Any, bins: int | None = None
) -> Prepared:
    """Two planned stages (selection 20, estimation 50 at alpha 0.01) at ``x`` (sigma 0.5).

    Both stages reduce ``scores`` (None: votes only); the estimation stage keeps score
    histograms of ``bins`` bins when given.
    """
    sampler = Sampler(model, GaussianNoise(0.5).bind(x), seed=seed, batch_size=16)
    plan = (
        PlannedStage("selection", 20, 0.0, scores=scores),
        PlannedStage("estimation", 50, 0.01, scores=scores, histogram_bins=bins),
    )
    return Prepared(sampler, plan, GaussianFacts(num_classes=4), 0.0)

"""An additive tabular model whose smoothed probability and worst case are known exactly.

Class 1 iff ``sum_f table_f[id_f] + w.x + b > 0``. Under the fields kernel (field ``f``
keeps its id with probability ``1 - beta_f``, else one of the ``V_f - 1`` others
uniformly) times ``N(0, sigma^2 I)`` on ``x``, ``P(class 1)`` is, by enumeration of the
fields, ``sum_z P(z) Phi((sum_f table_f[z_f] + w.x + b) / (sigma ||w||))``. It decreases
along ``-w``, so the worst continuous move of norm ``r`` is ``-r w / ||w||`` whatever the
fields, and the worst case at ``(d, r)`` is the minimum over every choice of ``d`` fields
and levels at that point. Used by the ``hybrid-fields`` and ``attack-fields`` tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from scipy.special import ndtr

W = torch.tensor([0.8, -0.4, 0.3])
B = 0.1


class AdditiveModel(torch.nn.Module):
    """Class 1 iff sum_f table_f[id_f] + w.x + b > 0; logits ``(-scale z, scale z)``."""

    def __init__(self, tables: list[list[float]], scale: float = 1.0) -> None:
        super().__init__()
        self.tables = [torch.tensor(t) for t in tables]
        self.scale = scale

    def forward(self, tokens: torch.Tensor, cont: torch.Tensor) -> torch.Tensor:
        z = cont @ W + B
        for f, table in enumerate(self.tables):
            z = z + table[tokens[:, f]]
        return torch.stack([-self.scale * z, self.scale * z], dim=1)


def exact_smoothed_p1(
    model: AdditiveModel,
    tokens: Sequence[int],
    x: torch.Tensor,
    vocab: Sequence[int],
    betas: Sequence[float],
    sigma: float,
) -> float:
    """P(class 1) under the fields kernel x N(0, sigma^2 I), by enumeration of the fields."""
    total = 0.0
    for z in itertools.product(*[range(v) for v in vocab]):
        prob = 1.0
        for f, (v, b) in enumerate(zip(vocab, betas, strict=True)):
            prob *= (1 - b) if z[f] == tokens[f] else b / (v - 1)
        score = float(sum(model.tables[f][z[f]] for f in range(len(vocab))))
        score += float(W @ x.float()) + B
        total += prob * float(ndtr(score / (sigma * float(W.norm()))))
    return total


def worst_case_p1(
    model: AdditiveModel,
    tokens: Sequence[int],
    x: torch.Tensor,
    vocab: Sequence[int],
    betas: Sequence[float],
    sigma: float,
    *,
    d: int,
    r: float,
) -> tuple[float, tuple[int, ...]]:
    """The smallest P(class 1) over every attack at ``(d, r)``, and its field ids."""
    moved = x - r * W / W.norm()
    best = (exact_smoothed_p1(model, tokens, moved, vocab, betas, sigma), tuple(tokens))
    for fields in itertools.combinations(range(len(vocab)), d):
        levels = [[v for v in range(vocab[f]) if v != tokens[f]] for f in fields]
        for values in itertools.product(*levels):
            attacked = list(tokens)
            for f, v in zip(fields, values, strict=True):
                attacked[f] = v
            p = exact_smoothed_p1(model, attacked, moved, vocab, betas, sigma)
            if p < best[0]:
                best = (p, tuple(attacked))
    return best

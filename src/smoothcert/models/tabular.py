"""Small model for tabular rows: per-field embeddings + an MLP (the ``tabular_mlp`` model).

Example:
    >>> import torch
    >>> net = TabularMLP().eval()
    >>> net(torch.tensor([[4, 3, 5, 5, 5]]), torch.zeros(1, 3)).shape
    torch.Size([1, 2])
    >>> sum(p.numel() for p in net.parameters())
    5178
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

__all__ = ["TabularMLP"]


class TabularMLP(nn.Module):
    """Categorical fields + continuous vector -> 2 logits, for the ``"fair"`` table.

    Inputs: ``tokens`` int64 ``(B, 5)``, field ``f`` an id in ``0..V_f-1`` with
    ``V = (5, 4, 6, 6, 6)`` (an id outside its field raises ``IndexError``), and
    ``continuous`` float ``(B, 3)`` in train standard deviations (see
    :mod:`smoothcert.data.tabular`). Each field has its own 8-dimensional embedding (one
    table with per-field offsets); the 40 embedding values and the 3 continuous values
    go through linear 43 -> 64, ReLU, 64 -> 32, ReLU, 32 -> 2. 5,178 parameters.

    Attributes:
        field_vocab_sizes: ``(5, 4, 6, 6, 6)``.
        num_continuous: ``3``.
        num_classes: ``2`` (0: no affair, 1: affair).
    """

    field_vocab_sizes: tuple[int, ...] = (5, 4, 6, 6, 6)
    num_continuous: int = 3
    num_classes: int = 2
    embed_dim: int = 8
    input_shape: tuple[int] = (3,)

    def __init__(self) -> None:
        super().__init__()
        sizes = torch.tensor(self.field_vocab_sizes)
        offsets = torch.cumsum(sizes, 0) - sizes
        self.register_buffer("offsets", offsets, persistent=False)
        self.register_buffer("sizes", sizes, persistent=False)
        self.embed = nn.Embedding(int(sizes.sum()), self.embed_dim)
        width = self.embed_dim * len(self.field_vocab_sizes) + self.num_continuous
        self.fc1 = nn.Linear(width, 64)
        self.fc2 = nn.Linear(64, 32)
        self.fc3 = nn.Linear(32, self.num_classes)

    def forward(self, tokens: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, 2)``.

        Raises:
            IndexError: if an id lies outside its field's alphabet.
        """
        if bool(((tokens < 0) | (tokens >= self.sizes)).any()):
            raise IndexError("a category id lies outside its field's alphabet 0..V_f-1")
        emb = self.embed(tokens + self.offsets).flatten(1)
        x = torch.cat([emb, continuous.to(emb.dtype)], dim=1)
        x = functional.relu(self.fc1(x))
        x = functional.relu(self.fc2(x))
        logits: torch.Tensor = self.fc3(x)
        return logits

"""GCG-style token candidates from the embedding gradient of a SMOOTHED score (torch).

The embedding hook: a ``(tokens, image) -> logits`` model exposes its token embedding
when it has both

* ``token_embedding_matrix() -> Tensor (vocab, dim)``: the embedding of every token id
  the model accepts (row ``t`` is what token ``t`` contributes), and
* ``forward_embeddings(embeds (B, L, dim), images) -> logits (B, C)``: the forward pass
  from those rows, equal to ``forward(tokens, images)`` when
  ``embeds = token_embedding_matrix()[tokens]``

(:func:`has_embedding_hook`; the bundled ``listing_filter`` has it,
:class:`~smoothcert.models.architectures.ListingFilter`).

Ranking (Zou et al. 2023, GCG, arXiv 2307.15043, Algorithm 1, lines 3-4: top-k of the
negative gradient w.r.t. the one-hot token; HotFlip, Ebrahimi et al. 2018, arXiv
1712.06751, eq. 1), adapted to the smoothed score
``s(u) = log mean_j softmax(f(Z_j, X + e_j))_target``: writing token ``t`` at position
``p`` changes the noisy token only in the samples where the kernel KEPT position ``p``
(``Z_jp = u_p``); to first order the change of ``s`` is

    ``Delta(p, t) ~= (1 / m) sum_{j : Z_jp = u_p} (E[t] - E[u_p]) . g_jp``

with ``g_jp`` the gradient of ``s`` w.r.t. the embedding at position ``p`` of sample ``j``
and ``m = noise_samples`` joint draws (an expectation over noise, as in SmoothAdv,
Salman et al. 2019, arXiv 1906.04584). The ranking divides by the number of samples that
kept ``p`` instead of ``m``: every eligible position is kept with the same probability
``1 - beta``, so the order is that of ``Delta`` in expectation, without the noise of the
per-position keep counts. The ``k`` pairs of most negative ``Delta`` are the
candidates, which the attack then evaluates on shared noise
(:func:`~smoothcert.methods._attack_search.greedy_edits`).

Example:
    >>> import torch
    >>> class Bag(torch.nn.Module):  # class 1's logit: the sum of the token weights
    ...     weights = torch.tensor([[0.0], [1.0], [-2.0], [0.5]])
    ...     def token_embedding_matrix(self):
    ...         return self.weights
    ...     def forward_embeddings(self, embeds, images):
    ...         z = embeds.sum(dim=(1, 2)) + 0 * images.sum(1)
    ...         return torch.stack([-z, z], dim=1)
    ...     def forward(self, tokens, images):
    ...         return self.forward_embeddings(self.weights[tokens], images)
    >>> bound = _Fixed(torch.tensor([[1, 1, 3]]), torch.zeros(1, 2))
    >>> gradient_candidates(Bag(), bound, torch.tensor([1, 1, 3]), [0, 2],
    ...                     torch.arange(4), target=1, k=2, noise_samples=1,
    ...                     generator=torch.Generator())
    [(0, 2), (2, 2)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from smoothcert.methods._attack_search import JointSampler
from smoothcert.sampling.engine import autocast_context


def has_embedding_hook(model: Any) -> bool:
    """Whether ``model`` exposes ``token_embedding_matrix`` and ``forward_embeddings``."""
    return callable(getattr(model, "token_embedding_matrix", None)) and callable(
        getattr(model, "forward_embeddings", None)
    )


def gradient_candidates(
    model: Any,
    bound: JointSampler,
    tokens: torch.Tensor,
    free: Sequence[int],
    alphabet: torch.Tensor,
    *,
    target: int,
    k: int,
    noise_samples: int,
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None = None,
) -> list[tuple[int, int]]:
    """The ``k`` (position, token) substitutions of most negative first-order ``Delta``.

    Args:
        model: a model with the embedding hook (module docstring).
        bound: the smoothed filter's kernel bound to the current ``tokens`` and image.
        tokens: the current (attacked so far) tokens ``(L,)``.
        free: the positions that may still be edited.
        alphabet: the token ids the attacker may write ``(A,)``.
        target: the class whose smoothed score is lowered.
        k: number of candidates, >= 1 (fewer if there are fewer pairs).
        noise_samples: joint noise draws ``m`` of the gradient's expectation.
        generator: the draws' generator.
        autocast_dtype: optional reduced-precision forward passes.

    Returns:
        Up to ``k`` pairs ``(position, token id)``, best first; a pair never writes the
        token already there.
    """
    if not free:
        return []
    toks, imgs = bound.sample(noise_samples, generator=generator)
    table = model.token_embedding_matrix().detach()
    positions = torch.tensor(list(free), device=tokens.device)
    with torch.inference_mode(False), torch.enable_grad():
        embeds = table[toks.clone()].clone().requires_grad_(True)
        with autocast_context(imgs.device, autocast_dtype):
            logits = model.forward_embeddings(embeds, imgs.clone())
        probs = torch.softmax(logits.float(), dim=1)[:, target]
        loss = torch.log(probs.mean().clamp_min(1e-30))
        (grad,) = torch.autograd.grad(loss, embeds)
    grad = grad.float()[:, positions]  # (m, P, dim)
    kept = (toks[:, positions] == tokens[positions]).float()  # (m, P)
    current = table[tokens[positions]].float()  # (P, dim)
    # the mean over the samples that kept p (every eligible position is kept with the
    # same probability 1 - beta, so this ranks as Delta does, without the noise of the
    # number of kept samples per position)
    g = (grad * kept[:, :, None]).sum(0) / kept.sum(0).clamp_min(1.0)[:, None]  # (P, dim)
    delta = g @ table[alphabet].float().T - (g * current).sum(1, keepdim=True)  # (P, A)
    same = alphabet[None, :] == tokens[positions][:, None]
    delta = delta.masked_fill(same, float("inf"))
    order = torch.argsort(delta.flatten(), stable=True)[: min(k, delta.numel())]
    out = []
    for flat in order.tolist():
        p, a = divmod(flat, int(alphabet.numel()))
        if torch.isfinite(delta[p, a]):
            out.append((int(free[p]), int(alphabet[a])))
    return out


class _Fixed:
    """A sampler that returns the same (tokens, image) rows (for the doctest)."""

    def __init__(self, toks: torch.Tensor, imgs: torch.Tensor) -> None:
        self.toks, self.imgs = toks, imgs

    def sample(self, num: int, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.toks.expand(num, -1), self.imgs.expand(num, -1)

"""Exact enumeration of token substitution kernels: the independent oracle the certificate
tests share.

Every noisy outcome of a few positions is listed with its exact clean and adversarial
probability (``fractions.Fraction``). The clean token is 0 at every position; the attacker
writes 1 at attacked positions. ``MASK`` stands for the mask id.
"""

import itertools
from fractions import Fraction

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr

MASK = -1


def position_law(kernel, beta, vocab, token):
    """Exact law of the noisy token at one position holding ``token``."""
    if kernel == "mask":
        return {token: 1 - beta, MASK: beta}
    other = beta / (vocab - 1)
    return {z: (1 - beta if z == token else other) for z in range(vocab)}


def joint_laws(clean_laws, adv_laws):
    """Clean/adversarial probabilities of every joint outcome of independent positions.

    Args:
        clean_laws: one ``{token: probability}`` law per position, clean input.
        adv_laws: the same positions under attack.

    Returns:
        Two lists ``(clean, adversarial)`` of probabilities, one entry per outcome in
        the product of the positions' joint supports.
    """
    supports = [sorted(set(c) | set(a)) for c, a in zip(clean_laws, adv_laws, strict=True)]
    pc, qa = [], []
    for z in itertools.product(*supports):
        p = q = Fraction(1)
        for i, zi in enumerate(z):
            p *= clean_laws[i].get(zi, 0)
            q *= adv_laws[i].get(zi, 0)
        pc.append(p)
        qa.append(q)
    return pc, qa


def enumerate_pair(positions, attacked):
    """Exact clean/adversarial laws over the joint noisy outcome.

    Args:
        positions: list of ``(kernel, beta, vocab)``, ``beta`` a Fraction (or float).
        attacked: list of bools, one per position.

    Returns:
        Two lists ``(clean, adversarial)`` of probabilities, one entry per outcome.
    """
    clean_laws, adv_laws = [], []
    for (kernel, beta, vocab), hit in zip(positions, attacked, strict=True):
        clean_laws.append(position_law(kernel, beta, vocab, 0))
        adv_laws.append(position_law(kernel, beta, vocab, 1 if hit else 0))
    return joint_laws(clean_laws, adv_laws)


def small_fields():
    """Three small fields (2 + 1 + 1 positions) and their per-position kernels, for the
    brute-force oracle: ``(list of TokenField, list of (kernel, beta, vocab))``."""
    from smoothcert.certificates import TokenField

    fields = [
        TokenField(0.3, 2, positions=2),
        TokenField(0.4, 3, positions=1),
        TokenField(0.6, kernel="mask", positions=1),
    ]
    positions = [
        ("uniform", Fraction(3, 10), 2),
        ("uniform", Fraction(3, 10), 2),
        ("uniform", Fraction(2, 5), 3),
        ("mask", Fraction(3, 5), 0),
    ]
    return fields, positions


def uniform_any_law(beta, vocab, token):
    """Exact law of the uniform kernel extended to every vocabulary id.

    An alphabet token (``token < vocab``) keeps w.p. ``1 - beta``, else one of the
    ``vocab - 1`` others; an out-of-alphabet token (``token >= vocab``) keeps w.p.
    ``1 - beta``, else one of the ``vocab`` alphabet tokens.
    """
    if token < vocab:
        return position_law("uniform", beta, vocab, token)
    law = {z: beta / vocab for z in range(vocab)}
    law[token] = 1 - beta
    return law


def enumerate_tokens(beta, vocab, clean, adversarial):
    """Exact clean/adversarial laws of the extended uniform kernel over whole sequences.

    Args:
        beta: substitution probability (a Fraction for exact results).
        vocab: alphabet size ``V`` (ids ``0..V-1``; larger ids are outside it), or one
            ``(beta, V)`` pair per position (then ``beta`` is ignored).
        clean: the clean token sequence.
        adversarial: the attacked sequence (same length).

    Returns:
        Two lists ``(clean, adversarial)`` of probabilities, one entry per outcome.
    """
    kernels = [(beta, vocab)] * len(clean) if isinstance(vocab, int) else list(vocab)
    clean_laws = [uniform_any_law(b, v, t) for (b, v), t in zip(kernels, clean, strict=True)]
    adv_laws = [uniform_any_law(b, v, t) for (b, v), t in zip(kernels, adversarial, strict=True)]
    return joint_laws(clean_laws, adv_laws)


def fractional_fill(pc, qa, p_lower):
    """Exact Neyman-Pearson bound: fill clean mass ``p_lower`` by increasing ratio.

    Outcomes with clean mass 0 (ratio infinity) are never filled.
    """
    items = sorted(((q / p, p) for p, q in zip(pc, qa, strict=True) if p > 0), key=lambda t: t[0])
    left = Fraction(p_lower)
    total = Fraction(0)
    for ratio, p in items:
        if left <= 0:
            break
        take = min(p, left)
        total += ratio * take
        left -= take
    return total


def any_token_attacks(vocab, clean, d):
    """Every attacked sequence with at most ``d`` edits, writing any alphabet id or one of
    two out-of-alphabet ids (more out-of-alphabet ids behave like these by symmetry).

    ``vocab`` is ``V`` or one ``(beta, V)`` pair per position (as in
    :func:`enumerate_tokens`)."""
    n = len(clean)
    sizes = [vocab] * n if isinstance(vocab, int) else [v for _, v in vocab]
    outside = (max(sizes) + 7, max(sizes) + 8)
    for size in range(min(d, n) + 1):
        for where in itertools.combinations(range(n), size):
            choices = [[t for t in (*range(sizes[i]), *outside) if t != clean[i]] for i in where]
            for written in itertools.product(*choices):
                adv = list(clean)
                for i, t in zip(where, written, strict=True):
                    adv[i] = t
                yield adv


def hybrid_oracle(pc, qa, p_lower, mu):
    """Hybrid worst case per noisy OUTCOME (no levels): solve F(s) = p, return G(s).

    ``F``/``G`` are the clean/adversarial laws of the joint likelihood-ratio statistic of
    token outcome and Gaussian image (``mu = r / sigma``), solved by ``brentq``. Outcomes
    with clean mass 0 (a written out-of-alphabet token) are left out of both F and G:
    they never enter the worst-case set.

    Args:
        pc: float array of clean outcome probabilities.
        qa: float array of adversarial outcome probabilities.
        p_lower: the clean lower bound.
        mu: ``r / sigma > 0``.
    """
    fin = (pc > 0) & (qa > 0)
    zero_mass = pc[(pc > 0) & (qa == 0)].sum()
    if p_lower <= zero_mass:
        return 0.0
    g = np.log(qa[fin] / pc[fin])

    def clean_cdf(s):
        return zero_mass + np.sum(pc[fin] * ndtr((s - g) / mu + mu / 2))

    s_star = brentq(lambda s: clean_cdf(s) - p_lower, -300, 300, xtol=1e-13, rtol=1e-15)
    return float(np.sum(qa[fin] * ndtr((s_star - g) / mu - mu / 2)))

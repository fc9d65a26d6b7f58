"""Exact enumeration of token substitution kernels: the independent oracle the certificate
tests share.

Every noisy outcome of a few positions is listed with its exact clean and adversarial
probability (``fractions.Fraction``). The clean token is 0 at every position; the attacker
writes 1 at attacked positions. ``MASK`` stands for the mask id.
"""

import itertools
from fractions import Fraction

MASK = -1


def position_law(kernel, beta, vocab, token):
    """Exact law of the noisy token at one position holding ``token``."""
    if kernel == "mask":
        return {token: 1 - beta, MASK: beta}
    other = beta / (vocab - 1)
    return {z: (1 - beta if z == token else other) for z in range(vocab)}


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

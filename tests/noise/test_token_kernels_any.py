"""The any-token kernel samples out-of-alphabet tokens exactly as the certificate assumes.

An out-of-alphabet clean token is kept w.p. ``1 - beta``, otherwise replaced by one of
the ``V`` alphabet tokens uniformly (``beta / V`` each), see
:func:`smoothcert.certificates.token_lower_bound` with ``attacker="any"``.
"""

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, chisquare

from smoothcert.errors import InvalidParameterError
from smoothcert.noise import TokenImageNoise, TokenSubstitutionNoise
from smoothcert.sampling import make_generator

ALPHABET = torch.tensor([2, 5, 7, 11, 13, 20, 31])  # V = 7, not contiguous
RANGE = 2**62


def _gen(seed=0):
    return make_generator(seed, "cpu")


def test_out_of_alphabet_token_frequencies():
    """Keep w.p. 1 - beta, else each of the V alphabet tokens w.p. beta / V.

    The chi-square test over the V + 1 outcomes catches a kernel that draws from V - 1
    tokens (one alphabet token would never appear) or keeps the token too often.
    """
    beta, n, outside = 0.4, 60_000, 99
    tokens = torch.tensor([outside, 2, outside])
    bound = TokenSubstitutionNoise(beta=beta, alphabet=ALPHABET, attacker="any").bind(tokens)
    assert bound.num_outside == 2
    batch = bound.sample(n, generator=_gen(3)).clone()
    for col in (0, 2):
        z = batch[:, col]
        counts = np.array([int((z == outside).sum())] + [int((z == t).sum()) for t in ALPHABET])
        assert counts.sum() == n  # nothing else ever appears
        expected = np.array([1 - beta] + [beta / 7] * 7) * n
        assert chisquare(counts, expected).pvalue > 1e-4
        # The V - 1 mutant (never the first alphabet token, beta / 6 for the others):
        assert counts[1] > 0.9 * beta / 7 * n
        mutant = np.array([1 - beta, 1e-9] + [beta / 6] * 6) * n
        assert chisquare(counts, mutant * n / mutant.sum()).pvalue < 1e-6
    # an alphabet token next to them keeps the V - 1 kernel
    z = batch[:, 1]
    assert binomtest(int((z == 2).sum()), n, 1 - beta).pvalue > 1e-4
    others = np.array([int((z == t).sum()) for t in ALPHABET[1:]])
    assert chisquare(others).pvalue > 1e-4


def test_documented_integer_algorithm_for_out_of_alphabet_tokens():
    """Bit-exact replay: replace iff r1 < round(beta 2^62); new = alphabet[r2 mod V]."""
    beta, num, seed = 0.37, 400, 5
    tokens = torch.tensor([40, 7, 3, 31])
    bound = TokenSubstitutionNoise(beta=beta, alphabet=ALPHABET, attacker="any").bind(tokens)
    got = bound.sample(num, generator=_gen(seed)).clone()
    g = _gen(seed)
    r1 = torch.randint(0, RANGE, (num, 4), generator=g)
    r2 = torch.randint(0, RANGE, (num, 4), generator=g)
    replace = r1 < int(round(beta * RANGE))
    pos = torch.tensor([0, 2, 0, 6])
    out = torch.tensor([True, False, True, False])
    idx = torch.where(out, r2 % 7, (pos + 1 + r2 % 6) % 7)
    expected = torch.where(replace, ALPHABET[idx], tokens.expand(num, -1))
    assert torch.equal(got, expected)


def test_alphabet_attacker_still_rejects_and_tv_bound_covers_modulus_v():
    tokens = torch.tensor([2, 99])
    with pytest.raises(InvalidParameterError, match="token id 99 at eligible position 1"):
        TokenSubstitutionNoise(beta=0.3, alphabet=ALPHABET).bind(tokens)
    with pytest.raises(InvalidParameterError, match="attacker = 'all'"):
        TokenSubstitutionNoise(beta=0.3, alphabet=ALPHABET, attacker="all")
    inside = TokenSubstitutionNoise(beta=0.3, alphabet=ALPHABET, attacker="any").bind(
        torch.tensor([2, 5])
    )
    mixed = TokenSubstitutionNoise(beta=0.3, alphabet=ALPHABET, attacker="any").bind(tokens)
    assert inside.num_outside == 0 and mixed.num_outside == 1
    assert mixed.tv_bound() >= 2 * 7 * 2.0**-63  # modulus V = 7 for the outside token
    # V = 8 alphabet: V - 1 = 7 biased, V = 8 exact; the bound uses the larger one
    eight = TokenSubstitutionNoise(beta=0.5, alphabet=8, attacker="any").bind(torch.tensor([9]))
    assert eight.tv_bound() == pytest.approx(7 * 2.0**-63)


def test_mask_kernel_unchanged_by_attacker_any():
    noise = TokenSubstitutionNoise(beta=0.3, kernel="mask", mask_id=0, attacker="any")
    with pytest.raises(InvalidParameterError, match="mask_id = 0"):
        noise.bind(torch.tensor([0, 4]))
    assert noise.params()["attacker"] == "any"


def test_product_kernel_with_out_of_alphabet_token():
    from smoothcert.noise import GaussianNoise

    noise = TokenImageNoise(
        TokenSubstitutionNoise(beta=0.5, alphabet=4, attacker="any"), GaussianNoise(0.5)
    )
    bound = noise.bind(torch.tensor([9, 1]), torch.zeros(2))
    toks, _ = bound.sample(20_000, generator=_gen(1))
    col = toks[:, 0]
    counts = np.array([int((col == t).sum()) for t in (9, 0, 1, 2, 3)])
    assert chisquare(counts, np.array([0.5, 0.125, 0.125, 0.125, 0.125]) * 20_000).pvalue > 1e-4

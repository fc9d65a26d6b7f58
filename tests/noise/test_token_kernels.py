"""Token and product kernels sample exactly what the certificate assumes (soundness rule 2)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, chisquare

from smoothcert.errors import InvalidParameterError
from smoothcert.noise import GaussianNoise, TokenImageNoise, TokenSubstitutionNoise
from smoothcert.sampling import make_generator

ALPHABET = torch.tensor([2, 5, 7, 11, 13, 20, 31])  # V = 7, not contiguous


def _gen(seed=0):
    return make_generator(seed, "cpu")


def test_uniform_keep_frequency_is_one_minus_beta():
    beta, n = 0.3, 20_000
    tokens = torch.tensor([2, 5, 7, 11, 13, 20, 31, 2])
    elig = [1, 3, 4, 6]
    bound = TokenSubstitutionNoise(beta=beta, alphabet=ALPHABET).bind(tokens, elig)
    batch = bound.sample(n, generator=_gen(1))
    kept = int((batch[:, elig] == tokens[elig]).sum())
    total = n * len(elig)
    # Two-sided exact binomial test of the kept count against 1 - beta (seeded).
    assert binomtest(kept, total, 1 - beta).pvalue > 1e-4
    # If a replacement could return the original, P(kept) would be 1 - beta + beta/V.
    assert binomtest(kept, total, 1 - beta + beta / 7).pvalue < 1e-6


@pytest.mark.parametrize("orig", [2, 11, 31])  # first, middle and last alphabet entries
def test_uniform_replacement_is_uniform_over_the_other_tokens(orig):
    beta, n = 0.5, 30_000
    tokens = torch.tensor([orig, orig])
    bound = TokenSubstitutionNoise(beta=beta, alphabet=ALPHABET).bind(tokens, [0])
    col = bound.sample(n, generator=_gen(2))[:, 0].clone()
    assert bool(torch.isin(col, ALPHABET).all())
    replaced = col[col != orig]
    others = [int(t) for t in ALPHABET if int(t) != orig]
    counts = np.array([int((replaced == t).sum()) for t in others])
    assert counts.sum() == replaced.numel()  # every replacement is one of the V - 1 others
    assert chisquare(counts).pvalue > 1e-4
    assert binomtest(int(replaced.numel()), n, beta).pvalue > 1e-4


def test_only_eligible_positions_change_and_mask_equals_index_list():
    tokens = torch.tensor([9, 1, 2, 3, 4, 99, 5])  # 9 and 99 are outside the alphabet
    kernel = TokenSubstitutionNoise(beta=0.9, alphabet=8)
    by_list = kernel.bind(tokens, [1, 3, 6]).sample(500, generator=_gen(3)).clone()
    mask = torch.zeros(7, dtype=torch.bool)
    mask[[1, 3, 6]] = True
    by_mask = kernel.bind(tokens, mask).sample(500, generator=_gen(3)).clone()
    assert torch.equal(by_list, by_mask)
    fixed = [0, 2, 4, 5]
    assert bool((by_list[:, fixed] == tokens[fixed]).all())
    assert bool((by_list[:, [1, 3, 6]] != tokens[[1, 3, 6]]).any())


def test_mask_kernel_frequency_and_values():
    beta, n, mask_id = 0.2, 20_000, 103
    tokens = torch.tensor([10, 11, 12, 13])
    bound = TokenSubstitutionNoise(beta=beta, kernel="mask", mask_id=mask_id).bind(
        tokens, [0, 2, 3]
    )
    batch = bound.sample(n, generator=_gen(4))
    sub = batch[:, [0, 2, 3]]
    masked = sub == mask_id
    assert bool((masked | (sub == tokens[[0, 2, 3]])).all())
    assert binomtest(int(masked.sum()), 3 * n, beta).pvalue > 1e-4
    assert bool((batch[:, 1] == 11).all())


def test_same_seed_same_samples_different_seed_differs():
    tokens = torch.arange(20)
    kernel = TokenSubstitutionNoise(beta=0.4, alphabet=50)
    a = kernel.bind(tokens).sample(64, generator=_gen(5)).clone()
    b = kernel.bind(tokens).sample(64, generator=_gen(5)).clone()
    c = kernel.bind(tokens).sample(64, generator=_gen(6)).clone()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_buffers_are_reused_and_dtype_is_long():
    bound = TokenSubstitutionNoise(beta=0.4, alphabet=50).bind(
        torch.arange(10, dtype=torch.int32), [0, 5]
    )
    g = _gen(0)
    first = bound.sample(100, generator=g)
    ptr = first.data_ptr()
    assert first.dtype == torch.int64
    assert bound.sample(30, generator=g).data_ptr() == ptr


def test_no_eligible_positions_is_a_no_op():
    tokens = torch.tensor([1, 2, 3])
    batch = (
        TokenSubstitutionNoise(beta=0.5, alphabet=4).bind(tokens, []).sample(5, generator=_gen())
    )
    assert bool((batch == tokens).all())


def test_tv_bound_is_tiny_and_zero_for_power_of_two():
    tokens = torch.zeros(100, dtype=torch.int64)
    exact = TokenSubstitutionNoise(beta=0.25, alphabet=9).bind(tokens)  # V - 1 = 8
    assert exact.tv_bound() == 0.0
    big = TokenSubstitutionNoise(beta=0.3, alphabet=30_522).bind(tokens)
    assert 0 < big.tv_bound() <= 100 * 30_523 * 2.0**-63


@settings(max_examples=25, deadline=None)
@given(
    alphabet=st.lists(st.integers(0, 200), min_size=2, max_size=12, unique=True),
    data=st.data(),
)
def test_samples_stay_in_alphabet_and_differ_when_replaced(alphabet, data):
    length = data.draw(st.integers(1, 8))
    toks = data.draw(st.lists(st.sampled_from(alphabet), min_size=length, max_size=length))
    beta = data.draw(st.floats(0.05, 0.95))
    tokens = torch.tensor(toks)
    batch = (
        TokenSubstitutionNoise(beta=beta, alphabet=torch.tensor(alphabet))
        .bind(tokens)
        .sample(200, generator=_gen(data.draw(st.integers(0, 1000))))
    )
    assert bool(torch.isin(batch, torch.tensor(alphabet)).all())


def test_product_kernel_moments_and_token_frequency():
    sigma, beta, n = 0.4, 0.25, 20_000
    image = torch.linspace(0, 1, 6).reshape(1, 2, 3)
    tokens = torch.tensor([3, 1, 4, 1, 5])
    noise = TokenImageNoise(TokenSubstitutionNoise(beta=beta, alphabet=10), GaussianNoise(sigma))
    toks, imgs = noise.bind(tokens, image, eligible=[0, 2, 4]).sample(n, generator=_gen(7))
    assert toks.shape == (n, 5) and imgs.shape == (n, 1, 2, 3)
    eps = imgs - image
    assert float(eps.mean()) == pytest.approx(0.0, abs=5 * sigma / math.sqrt(6 * n))
    assert float(eps.var()) == pytest.approx(sigma**2, rel=0.03)
    assert float(eps.mean(0).abs().max()) < 5 * sigma / math.sqrt(n)
    kept = int((toks[:, [0, 2, 4]] == tokens[[0, 2, 4]]).sum())
    assert binomtest(kept, 3 * n, 1 - beta).pvalue > 1e-4
    assert bool((toks[:, [1, 3]] == 1).all())


def test_product_kernel_one_generator_same_seed_same_pair():
    noise = TokenImageNoise(TokenSubstitutionNoise(beta=0.5, alphabet=30), 1.0)
    bound = noise.bind(torch.arange(8), torch.zeros(4))

    def draw(seed):
        t, x = bound.sample(16, generator=_gen(seed))
        return t.clone(), x.clone()

    (t1, x1), (t2, x2), (t3, x3) = draw(11), draw(11), draw(12)
    assert torch.equal(t1, t2) and torch.equal(x1, x2)
    assert not torch.equal(t1, t3) and not torch.equal(x1, x3)
    # The image draws continue the generator after the token draws: different from a
    # fresh generator that draws the image alone.
    assert not torch.equal(x1, GaussianNoise(1.0).sample(torch.zeros(4), 16, generator=_gen(11)))


@pytest.mark.parametrize("beta", [0.0, 1.0, -0.1, float("nan"), 2])
def test_beta_outside_open_unit_interval(beta):
    with pytest.raises(InvalidParameterError, match=r"beta = .* valid range: 0 < beta < 1"):
        TokenSubstitutionNoise(beta=beta, alphabet=5)


@pytest.mark.parametrize("alphabet", [1, 0, [3], torch.tensor([True, False])])
def test_vocab_size_below_two(alphabet):
    with pytest.raises(InvalidParameterError, match=r"vocab_size = [01] .*vocab_size >= 2"):
        TokenSubstitutionNoise(beta=0.1, alphabet=alphabet)


def test_alphabet_duplicates_and_negative_ids_rejected():
    with pytest.raises(InvalidParameterError, match="alphabet id 3 is repeated"):
        TokenSubstitutionNoise(beta=0.1, alphabet=[3, 1, 3])
    with pytest.raises(InvalidParameterError, match="alphabet id -1"):
        TokenSubstitutionNoise(beta=0.1, alphabet=[-1, 1])


def test_token_outside_alphabet_at_eligible_position_names_id_position_and_range():
    kernel = TokenSubstitutionNoise(beta=0.1, alphabet=10)
    with pytest.raises(
        InvalidParameterError, match=r"token id 12 at eligible position 2 .*0 <= token id <= 9"
    ):
        kernel.bind(torch.tensor([1, 2, 12, 3]))
    kernel.bind(torch.tensor([1, 2, 12, 3]), [0, 1, 3])  # not eligible: fine
    sparse = TokenSubstitutionNoise(beta=0.1, alphabet=ALPHABET)
    with pytest.raises(InvalidParameterError, match=r"token id 6 .*one of the 7 alphabet ids"):
        sparse.bind(torch.tensor([2, 6]))


def test_alphabet_as_boolean_mask():
    mask = torch.zeros(40, dtype=torch.bool)
    mask[ALPHABET] = True
    kernel = TokenSubstitutionNoise(beta=0.5, alphabet=mask)
    assert kernel.vocab_size == 7
    assert torch.equal(kernel.alphabet, ALPHABET)


@pytest.mark.parametrize(
    "tokens, match",
    [
        (torch.tensor([1.0, 2.0]), r"tokens.dtype = torch.float32 is invalid"),
        (torch.tensor([True, False]), r"tokens.dtype = torch.bool is invalid"),
        (torch.tensor([[1, 2]]), r"tokens.shape = \(1, 2\) is invalid"),
        (torch.tensor([], dtype=torch.int64), r"tokens.shape = \(0,\) is invalid"),
        ([1, 2], r"tokens of type list is invalid"),
        (torch.tensor([1, -2]), r"tokens\[1\] = -2 is invalid"),
    ],
)
def test_bad_token_tensors(tokens, match):
    with pytest.raises(InvalidParameterError, match=match):
        TokenSubstitutionNoise(beta=0.1, alphabet=5).bind(tokens)


@pytest.mark.parametrize(
    "eligible, match",
    [
        ([0, 4], r"eligible position 4 is invalid; valid range: 0 <= position <= 3"),
        ([-1], r"eligible position -1 is invalid"),
        ([1, 1], r"eligible position 1 is repeated"),
        (torch.tensor([True, False]), r"eligible mask shape = \(2,\) is invalid.*\(4,\)"),
        (torch.tensor([0.0]), r"eligible.dtype = torch.float32 is invalid"),
    ],
)
def test_bad_eligible_positions(eligible, match):
    with pytest.raises(InvalidParameterError, match=match):
        TokenSubstitutionNoise(beta=0.1, alphabet=5).bind(torch.tensor([0, 1, 2, 3]), eligible)


def test_mask_kernel_argument_checks():
    with pytest.raises(InvalidParameterError, match="mask_id = None is invalid"):
        TokenSubstitutionNoise(beta=0.1, kernel="mask")
    with pytest.raises(InvalidParameterError, match="mask_id = 3 is inside the alphabet"):
        TokenSubstitutionNoise(beta=0.1, kernel="mask", mask_id=3, alphabet=5)
    with pytest.raises(InvalidParameterError, match="mask_id = 3 is invalid for kernel 'uniform'"):
        TokenSubstitutionNoise(beta=0.1, mask_id=3, alphabet=5)
    with pytest.raises(InvalidParameterError, match="kernel = 'gauss' is invalid"):
        TokenSubstitutionNoise(beta=0.1, kernel="gauss", alphabet=5)
    kernel = TokenSubstitutionNoise(beta=0.1, kernel="mask", mask_id=7)
    with pytest.raises(InvalidParameterError, match=r"token id 7 at eligible position 1 .*!= mask"):
        kernel.bind(torch.tensor([1, 7]))


@pytest.mark.parametrize(
    "image, match",
    [
        (torch.tensor([1.0, float("nan")]), "image contains NaN or Inf"),
        (torch.tensor([1, 2]), "image with dtype = torch.int64"),
        ("img", "image of type str"),
    ],
)
def test_product_kernel_rejects_bad_images(image, match):
    noise = TokenImageNoise(TokenSubstitutionNoise(beta=0.1, alphabet=5), 0.5)
    with pytest.raises(InvalidParameterError, match=match):
        noise.bind(torch.tensor([1, 2]), image)


def test_product_kernel_rejects_bad_sigma():
    with pytest.raises(InvalidParameterError, match="sigma = 0"):
        TokenImageNoise(TokenSubstitutionNoise(beta=0.1, alphabet=5), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kernel", ["uniform", "mask"])
def test_cuda_sampling_stays_on_device_without_host_sync(kernel):
    dev = torch.device("cuda")
    tokens = torch.tensor([2, 5, 7, 11, 13], device=dev)
    extra = {"alphabet": ALPHABET} if kernel == "uniform" else {"mask_id": 99}
    token_noise = TokenSubstitutionNoise(beta=0.4, kernel=kernel, **extra)
    bound = TokenImageNoise(token_noise, 0.5).bind(tokens, torch.zeros(3, 4, device=dev), [1, 3])
    g = make_generator(0, dev)
    bound.sample(8, generator=g)  # allocate the buffers first
    torch.cuda.set_sync_debug_mode("error")
    try:
        toks, imgs = bound.sample(8, generator=g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert toks.device.type == "cuda" and imgs.device.type == "cuda"
    toks = toks.cpu()
    assert bool((toks[:, [0, 2, 4]] == torch.tensor([2, 7, 13])).all())
    big = bound.tokens.sample(20_000, generator=g)[:, [1, 3]].cpu()
    kept = int((big == torch.tensor([5, 11])).sum())
    assert binomtest(kept, 40_000, 0.6).pvalue > 1e-4


@pytest.mark.slow
def test_large_vocabulary_replacements_uniform():
    vocab, n = 30_522, 2_000_000
    tokens = torch.tensor([30_521])  # wraps around to the start of the alphabet
    bound = TokenSubstitutionNoise(beta=0.9, alphabet=vocab).bind(tokens)
    col = bound.sample(n, generator=_gen(9))[:, 0]
    replaced = col[col != 30_521]
    counts = torch.bincount(replaced, minlength=vocab)[: vocab - 1].numpy()
    assert counts.sum() == replaced.numel()
    assert chisquare(counts).pvalue > 1e-4

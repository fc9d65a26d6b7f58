"""Token and product kernels sample exactly what the certificate assumes (soundness rule 2)."""

import math
from fractions import Fraction
from math import prod

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, binomtest, chisquare

from smoothcert.errors import InvalidParameterError
from smoothcert.noise import GaussianNoise, TokenImageNoise, TokenSubstitutionNoise
from smoothcert.sampling import make_generator

ALPHABET = torch.tensor([2, 5, 7, 11, 13, 20, 31])  # V = 7, not contiguous
RANGE = 2**62  # the sampler's integer range (module docstring of smoothcert.noise.tokens)


def _gen(seed=0):
    return make_generator(seed, "cpu")


def _documented_draws(num, d, *, seed, beta, uniform=True):
    """Replay the documented integer draws: r1 (num, D) then r2 (num, D), same generator.

    Returns ``(replace, r2)``: replace iff ``r1 < round(beta * 2**62)``.
    """
    g = _gen(seed)
    r1 = torch.randint(0, RANGE, (num, d), generator=g)
    r2 = torch.randint(0, RANGE, (num, d), generator=g) if uniform else None
    return r1 < int(round(beta * RANGE)), r2


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


@pytest.mark.parametrize("kernel", ["uniform", "mask"])
def test_sampling_outside_inference_mode_after_inside_and_back(kernel):
    extra = {"alphabet": 10} if kernel == "uniform" else {"mask_id": 99}
    tokens = torch.arange(5)
    bound = TokenSubstitutionNoise(beta=0.3, kernel=kernel, **extra).bind(tokens)
    reference = bound.sample(8, generator=_gen(4)).clone()
    with torch.inference_mode():
        inside = bound.sample(8, generator=_gen(4))
        assert inside.is_inference()
        inside = inside.clone()
    outside = bound.sample(4, generator=_gen(4))  # smaller batch: must still reallocate
    assert not outside.is_inference()
    outside = outside.clone()
    with torch.inference_mode():
        again = bound.sample(8, generator=_gen(4)).clone()
    assert torch.equal(inside, reference) and torch.equal(again, reference)
    assert torch.equal(outside, bound.sample(4, generator=_gen(4)))
    outside_prod = TokenImageNoise(
        TokenSubstitutionNoise(beta=0.3, **extra, kernel=kernel), 0.5
    ).bind(tokens, torch.zeros(3))
    with torch.inference_mode():
        outside_prod.sample(6, generator=_gen(1))
    toks, imgs = outside_prod.sample(6, generator=_gen(1))
    assert not toks.is_inference() and not imgs.is_inference()


def test_numpy_alphabets_and_eligible_positions():
    ids = np.array([7, 3, 5], dtype=np.int32)
    assert torch.equal(
        TokenSubstitutionNoise(beta=0.1, alphabet=ids).alphabet, torch.tensor([3, 5, 7])
    )
    mask = np.zeros(10, dtype=bool)
    mask[[2, 4]] = True
    assert TokenSubstitutionNoise(beta=0.1, alphabet=mask).alphabet.tolist() == [2, 4]
    assert TokenSubstitutionNoise(beta=0.1, alphabet=np.int64(6)).vocab_size == 6
    kernel = TokenSubstitutionNoise(beta=0.1, alphabet=[np.int64(1), np.int64(4), 9])
    assert kernel.alphabet.tolist() == [1, 4, 9]
    tokens = torch.tensor([1, 4, 9, 4])
    assert kernel.bind(tokens, np.array([3, 0])).eligible.tolist() == [0, 3]
    assert kernel.bind(tokens, np.array([True, False, False, True])).eligible.tolist() == [0, 3]
    assert kernel.bind(tokens, [np.int64(2)]).eligible.tolist() == [2]
    with pytest.raises(InvalidParameterError, match=r"alphabet.dtype = numpy float64 is invalid"):
        TokenSubstitutionNoise(beta=0.1, alphabet=np.array([1.0, 2.0]))
    with pytest.raises(InvalidParameterError, match=r"eligible.dtype = numpy float64 is invalid"):
        kernel.bind(tokens, np.array([0.0]))
    with pytest.raises(InvalidParameterError, match=r"alphabet id 3 is repeated"):
        TokenSubstitutionNoise(beta=0.1, alphabet=np.array([3, 1, 3]))


def test_no_eligible_positions_is_a_no_op():
    tokens = torch.tensor([1, 2, 3])
    batch = (
        TokenSubstitutionNoise(beta=0.5, alphabet=4).bind(tokens, []).sample(5, generator=_gen())
    )
    assert bool((batch == tokens).all())


def exact_sampling_tv(*, beta, vocab, d, kernel="uniform"):
    """Exact TV between the sampled and the ideal law of D positions, as a Fraction.

    Derived independently from the documented integer algorithm: replace iff
    ``r1 < round(beta 2**62)``; the offset ``r2 mod (V - 1)`` takes each of the
    ``rem = 2**62 mod m`` smallest values with probability ``(q + 1) / 2**62`` and the
    others with ``q / 2**62`` (``m = V - 1``, ``q = 2**62 // m``). Per position a cell
    class is (sampled probability, ideal probability, number of such cells); the D-fold
    product groups cells by how many positions fall in each class.
    """
    b = Fraction(beta)
    b_sampled = Fraction(round(b * RANGE), RANGE)
    classes = [(1 - b_sampled, 1 - b, 1)]
    if kernel == "mask":
        classes.append((b_sampled, b, 1))
    else:
        m = vocab - 1
        q, rem = divmod(RANGE, m)
        classes.append((b_sampled * Fraction(q + 1, RANGE), b / m, rem))
        if m - rem:
            classes.append((b_sampled * Fraction(q, RANGE), b / m, m - rem))
    total = Fraction(0)

    def compositions(n, k):
        if k == 1:
            yield (n,)
            return
        for first in range(n + 1):
            for rest in compositions(n - first, k - 1):
                yield (first, *rest)

    for counts in compositions(d, len(classes)):
        ways = math.factorial(d) // prod(math.factorial(c) for c in counts)
        cells = ways * prod(cls[2] ** c for cls, c in zip(classes, counts, strict=True))
        sampled = prod(cls[0] ** c for cls, c in zip(classes, counts, strict=True))
        ideal = prod(cls[1] ** c for cls, c in zip(classes, counts, strict=True))
        total += cells * abs(sampled - ideal)
    return total / 2


def test_exact_tv_oracle_sanity():
    # V - 1 a power of two and beta on the 2**-62 grid: the sampler is exact.
    assert exact_sampling_tv(beta=0.25, vocab=9, d=3) == 0
    # One position, closed form rem (m - rem) / (m 2**62) times beta.
    m = 999
    rem = RANGE % m
    assert exact_sampling_tv(beta=0.5, vocab=1000, d=1) == Fraction(1, 2) * Fraction(
        rem * (m - rem), m * RANGE
    )


@pytest.mark.parametrize(
    "beta, vocab, d, kernel",
    [
        (0.3, 3, 4, "uniform"),  # exact sampler: TV 0
        (0.3, 1000, 3, "uniform"),  # modulo bias only
        (0.9, 30_522, 5, "uniform"),
        (0.5, 7, 6, "uniform"),
        (1e-5, 7, 4, "uniform"),  # beta off the 2**-62 grid, plus modulo bias
        (1e-5 + 3e-19, 12, 2, "uniform"),
        (1e-5, None, 6, "mask"),  # mask kernel: only the rounding of beta
        (3.3e-7, None, 3, "mask"),
    ],
)
def test_tv_bound_dominates_exact_sampling_tv(beta, vocab, d, kernel):
    extra = {"alphabet": vocab} if kernel == "uniform" else {"mask_id": 10**6}
    tokens = torch.zeros(d, dtype=torch.int64)
    bound = TokenSubstitutionNoise(beta=beta, kernel=kernel, **extra).bind(tokens)
    exact = exact_sampling_tv(beta=beta, vocab=vocab, d=d, kernel=kernel)
    assert Fraction(bound.tv_bound()) >= exact
    if exact > 0:
        assert bound.tv_bound() > 0
    # The documented magnitude: at most D (V + 1) 2**-63.
    assert bound.tv_bound() <= d * ((vocab or 1) + 1) * 2.0**-63


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
    seed = data.draw(st.integers(0, 1000))
    tokens = torch.tensor(toks)
    batch = (
        TokenSubstitutionNoise(beta=beta, alphabet=torch.tensor(alphabet))
        .bind(tokens)
        .sample(200, generator=_gen(seed))
    )
    assert bool(torch.isin(batch, torch.tensor(alphabet)).all())
    # Which positions the kernel replaced: replay the documented replacement draws.
    replace, _ = _documented_draws(200, length, seed=seed, beta=beta)
    orig = tokens.expand(200, -1)
    assert bool((batch[replace] != orig[replace]).all())  # a replacement never keeps u
    assert bool((batch[~replace] == orig[~replace]).all())  # and nothing else changes


@pytest.mark.parametrize(
    "kernel, alphabet, tokens, eligible",
    [
        ("uniform", ALPHABET, torch.tensor([2, 31, 7, 99, 13]), [0, 1, 2, 4]),
        ("uniform", 30_522, torch.tensor([0, 30_521, 17, 5]), None),
        ("mask", None, torch.tensor([4, 8, 15, 16]), [1, 3]),
    ],
)
def test_sampler_is_exactly_the_documented_integer_algorithm(kernel, alphabet, tokens, eligible):
    """Bit-exact replay of the module docstring's algorithm from the same seed."""
    beta, num, seed, mask_id = 0.37, 500, 21, 1000
    extra = {"alphabet": alphabet} if kernel == "uniform" else {"mask_id": mask_id}
    bound = TokenSubstitutionNoise(beta=beta, kernel=kernel, **extra).bind(tokens, eligible)
    got = bound.sample(num, generator=_gen(seed)).clone()
    elig = list(range(tokens.numel())) if eligible is None else eligible
    replace, r2 = _documented_draws(
        num, len(elig), seed=seed, beta=beta, uniform=kernel == "uniform"
    )
    orig = tokens[elig].expand(num, -1)
    if kernel == "uniform":
        alpha_ids = torch.arange(alphabet) if isinstance(alphabet, int) else alphabet
        size = alpha_ids.numel()
        pos = torch.tensor([int((alpha_ids == t).nonzero()) for t in tokens[elig]])
        new = alpha_ids[(pos + 1 + r2 % (size - 1)) % size]
    else:
        new = torch.full_like(orig, mask_id)
    expected = tokens.expand(num, -1).clone()
    expected[:, elig] = torch.where(replace, new, orig)
    assert torch.equal(got, expected)


def test_two_positions_are_jointly_independent_with_the_ideal_law():
    """Joint 9-cell law of two eligible positions (V = 3) is the product of the marginals."""
    beta, vocab, n = 0.4, 3, 300_000
    bound = TokenSubstitutionNoise(beta=beta, alphabet=vocab).bind(torch.tensor([0, 2, 1]), [0, 1])
    pair = bound.sample(n, generator=_gen(123))[:, :2].clone()

    def marginal(z, u):
        return 1 - beta if z == u else beta / (vocab - 1)

    cells = [(i, j) for i in range(vocab) for j in range(vocab)]
    observed = np.array([int(((pair[:, 0] == i) & (pair[:, 1] == j)).sum()) for i, j in cells])
    expected = np.array([marginal(i, 0) * marginal(j, 2) for i, j in cells]) * n
    assert observed.sum() == n
    assert chisquare(observed, expected).pvalue > 1e-4


@pytest.mark.parametrize("kernel", ["uniform", "mask"])
def test_number_of_replaced_tokens_is_binomial(kernel):
    """Replacements per sample ~ Binomial(D, beta): independent decisions across positions."""
    beta, d, n = 0.4, 8, 100_000
    extra = {"alphabet": 50} if kernel == "uniform" else {"mask_id": 99}
    tokens = torch.arange(d)
    bound = TokenSubstitutionNoise(beta=beta, kernel=kernel, **extra).bind(tokens)
    changed = (bound.sample(n, generator=_gen(77)) != tokens).sum(1).numpy()
    observed = np.bincount(changed, minlength=d + 1)
    expected = binom.pmf(np.arange(d + 1), d, beta) * n
    assert chisquare(observed, expected).pvalue > 1e-4


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


def test_product_kernel_draws_tokens_then_image_from_the_one_generator():
    """Replay: batch after batch, tokens then image noise, each advancing the generator."""
    tokens, image = torch.tensor([1, 2, 3, 4]), torch.linspace(0, 1, 6)
    token_noise = TokenSubstitutionNoise(beta=0.5, alphabet=10)
    bound = TokenImageNoise(token_noise, GaussianNoise(0.3)).bind(tokens, image, [0, 2, 3])
    g = _gen(31)
    got = [tuple(t.clone() for t in bound.sample(5, generator=g)) for _ in range(3)]
    ref_tokens, ref_image = token_noise.bind(tokens, [0, 2, 3]), GaussianNoise(0.3)
    g_ref = _gen(31)
    for toks, imgs in got:
        assert torch.equal(toks, ref_tokens.sample(5, generator=g_ref))
        assert torch.equal(imgs, ref_image.sample(image, 5, generator=g_ref))
    # Both generators end in the same state.
    assert torch.equal(g.get_state(), g_ref.get_state())


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

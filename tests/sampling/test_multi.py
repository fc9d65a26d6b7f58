"""count_classes_many: k inputs in shared forward passes, counts identical to one by one."""

import numpy as np
import pytest
import torch

from smoothcert.errors import InvalidParameterError
from smoothcert.noise import GaussianNoise
from smoothcert.noise.product import TokenImageNoise
from smoothcert.noise.tokens import TokenSubstitutionNoise
from smoothcert.sampling import count_classes, make_generator
from smoothcert.sampling.multi import count_classes_many


def gaussian_samplers(xs, sigma, seeds):
    """One kernel and one generator per input, as the one-input path builds them."""
    out = []
    for x, seed in zip(xs, seeds, strict=True):
        kernel, g = GaussianNoise(sigma), make_generator(seed, "cpu")
        out.append(lambda b, x=x, kernel=kernel, g=g: (kernel.sample(x, b, generator=g),))
    return out


def one_by_one(model, make_samplers, num, **kw):
    return np.stack([count_classes(model, s, num, **kw) for s in make_samplers()])


@pytest.fixture(scope="module")
def digits():
    from smoothcert.data import load_dataset
    from smoothcert.models import load_model

    model = load_model("digits_cnn", sigma=0.25)
    images = torch.from_numpy(np.array(load_dataset("digits", split="test").images[:12]))
    return model, images


@pytest.mark.parametrize("num,batch_size", [(100, 100), (250, 64), (37, 1000)])
def test_digits_cnn_counts_identical_to_one_input_path(digits, num, batch_size):
    model, images = digits
    xs, seeds = list(images), list(range(100, 112))

    def make():
        return gaussian_samplers(xs, 0.25, seeds)

    kw = {"num_classes": 10, "batch_size": batch_size, "device": "cpu"}
    many = count_classes_many(model, make(), num, **kw)
    assert many.dtype == np.int64 and many.shape == (12, 10)
    np.testing.assert_array_equal(many, one_by_one(model, make, num, **kw))
    assert (many.sum(axis=1) == num).all()
    # Not a degenerate check: inputs of different classes get different counts.
    assert len({int(row.argmax()) for row in many}) > 3


def test_linear_model_counts_identical_and_max_batch_groups():
    torch.manual_seed(0)
    model = torch.nn.Linear(20, 5).eval()
    xs = [torch.randn(20) * 0.3 for _ in range(7)]

    def make():
        return gaussian_samplers(xs, 1.0, range(7))

    kw = {"num_classes": 5, "batch_size": 32, "device": "cpu"}
    expected = one_by_one(model, make, 300, **kw)
    np.testing.assert_array_equal(count_classes_many(model, make(), 300, **kw), expected)
    for max_batch in (32, 70, 96, 10_000):  # groups of 1, 2, 3 and all 7 inputs
        got = count_classes_many(model, make(), 300, max_batch=max_batch, **kw)
        np.testing.assert_array_equal(got, expected)


def test_tokens_and_image_two_tensor_model_identical():
    class TextImage(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.EmbeddingBag(30, 8)
            self.img = torch.nn.Linear(12, 8)
            self.head = torch.nn.Linear(8, 3)

        def forward(self, tokens, image):
            return self.head(torch.tanh(self.emb(tokens) + self.img(image.flatten(1))))

    torch.manual_seed(1)
    model = TextImage().eval()
    noise = TokenImageNoise(TokenSubstitutionNoise(beta=0.3, alphabet=30), GaussianNoise(0.5))
    pairs = [(torch.randint(0, 30, (6,)), torch.rand(3, 2, 2)) for _ in range(5)]

    def make():
        out = []
        for i, (toks, img) in enumerate(pairs):
            bound, g = noise.bind(toks, img), make_generator(10 + i, "cpu")
            out.append(lambda b, bound=bound, g=g: bound.sample(b, generator=g))
        return out

    kw = {"num_classes": 3, "batch_size": 40, "device": "cpu"}
    many = count_classes_many(model, make(), 130, **kw)
    np.testing.assert_array_equal(many, one_by_one(model, make, 130, **kw))


def test_single_input_equals_count_classes():
    model = torch.nn.Linear(4, 3).eval()
    xs = [torch.ones(4)]
    kw = {"num_classes": 3, "batch_size": 8, "device": "cpu"}
    many = count_classes_many(model, gaussian_samplers(xs, 0.5, [3]), 50, **kw)
    single = count_classes(model, gaussian_samplers(xs, 0.5, [3])[0], 50, **kw)
    np.testing.assert_array_equal(many[0], single)


def test_rows_are_split_back_to_their_input():
    # The model returns each row's own "class id" (its first feature): input i votes i.
    samplers = [lambda b, i=i: (torch.full((b, 4), float(i)),) for i in range(4)]
    counts = count_classes_many(
        lambda x: torch.nn.functional.one_hot(x[:, 0].long(), 4).float(),
        samplers,
        10,
        num_classes=4,
        batch_size=3,
        device="cpu",
    )
    np.testing.assert_array_equal(counts, 10 * np.eye(4, dtype=np.int64))


def _constant_samplers(k, width=4):
    return [lambda b: (torch.zeros(b, width),) for _ in range(k)]


def test_nan_rows_name_the_inputs():
    def model(x):
        out = torch.zeros(x.shape[0], 3)
        out[5:7, 1] = float("nan")  # rows of input 1 when b = 4
        return out

    with pytest.raises(InvalidParameterError, match=r"NaN or Inf scores in 2 of 12 .*inputs 1\)"):
        count_classes_many(
            model, _constant_samplers(3), 4, num_classes=3, batch_size=4, device="cpu"
        )


def test_wrong_output_shape_raises():
    with pytest.raises(InvalidParameterError, match=r"\(batch, num_classes\) = \(20, 3\)"):
        count_classes_many(
            lambda x: x, _constant_samplers(2), 10, num_classes=3, batch_size=10, device="cpu"
        )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_samples": 0}, "num_samples = 0 is invalid"),
        ({"num_classes": 1}, "num_classes = 1 is invalid"),
        ({"batch_size": 0}, "batch_size = 0 is invalid"),
        ({"device": "tpu"}, "device = 'tpu' is invalid"),
        ({"autocast_dtype": torch.int8}, "autocast_dtype = torch.int8 is invalid"),
        ({"max_batch": 5}, r"max_batch = 5 is invalid; valid range: integer max_batch >= 10"),
        ({"samplers": []}, r"samplers = \[\] is invalid"),
        ({"samplers": [None]}, r"samplers\[0\] of type NoneType is invalid"),
        ({"samplers": lambda b: b}, "samplers of type function is invalid"),
    ],
)
def test_bad_arguments_raise_before_sampling(kwargs, match):
    args = {
        "samplers": _constant_samplers(2),
        "num_samples": 10,
        "num_classes": 4,
        "batch_size": 10,
        "device": "cpu",
    }
    args.update(kwargs)
    with pytest.raises(InvalidParameterError, match=match):
        count_classes_many(lambda x: x, **args)


def test_mismatched_samplers_raise():
    samplers = [lambda b: (torch.zeros(b, 4),), lambda b: (torch.zeros(b, 5),)]
    with pytest.raises(InvalidParameterError, match=r"samplers\[1\] returned tensor 0 with shape"):
        count_classes_many(lambda x: x, samplers, 4, num_classes=4, batch_size=4, device="cpu")
    short = [lambda b: (torch.zeros(b, 4),), lambda b: (torch.zeros(b - 1, 4),)]
    with pytest.raises(InvalidParameterError, match=r"valid: a tensor whose first axis is b = 4"):
        count_classes_many(lambda x: x, short, 4, num_classes=4, batch_size=4, device="cpu")


def test_bf16_autocast_runs_and_counts_sum():
    model = torch.nn.Linear(4, 3).eval()
    counts = count_classes_many(
        model,
        gaussian_samplers([torch.ones(4)] * 3, 0.5, [0, 1, 2]),
        64,
        num_classes=3,
        batch_size=16,
        device="cpu",
        autocast_dtype=torch.bfloat16,
    )
    assert counts.sum(axis=1).tolist() == [64, 64, 64]


def test_one_kernel_shared_by_all_inputs_gives_the_same_counts(digits):
    # GaussianNoise reuses one buffer: a kernel shared by every input overwrites the
    # previous input's chunk, so each chunk must be copied before the next sampler runs.
    model, images = digits
    shared = GaussianNoise(0.25)
    xs = list(images[:4])
    gens = [make_generator(s, "cpu") for s in range(4)]
    samplers = [
        lambda b, x=x, g=g: (shared.sample(x, b, generator=g),)
        for x, g in zip(xs, gens, strict=True)
    ]
    kw = {"num_classes": 10, "batch_size": 50, "device": "cpu"}
    many = count_classes_many(model, samplers, 120, **kw)
    np.testing.assert_array_equal(
        many, one_by_one(model, lambda: gaussian_samplers(xs, 0.25, range(4)), 120, **kw)
    )

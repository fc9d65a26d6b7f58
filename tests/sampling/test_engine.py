import numpy as np
import pytest
import torch

from smoothcert.errors import InvalidParameterError
from smoothcert.noise import GaussianNoise
from smoothcert.sampling import count_classes, make_generator


def test_counts_match_argmax_of_each_sample():
    g = make_generator(0, "cpu")
    samples = torch.randn(1000, 5, generator=g)
    it = iter(samples.split(128))
    counts = count_classes(
        lambda x: x, lambda b: (next(it),), 1000, num_classes=5, batch_size=128, device="cpu"
    )
    expected = np.bincount(samples.argmax(1).numpy(), minlength=5)
    np.testing.assert_array_equal(counts, expected)
    assert counts.dtype == np.int64


def test_wrong_output_columns_raise():
    with pytest.raises(InvalidParameterError, match=r"\(batch, num_classes\) = \(10, 3\)"):
        count_classes(
            lambda x: x,
            lambda b: (torch.zeros(b, 4),),
            10,
            num_classes=3,
            batch_size=10,
            device="cpu",
        )


def test_gaussian_kernel_moments_and_buffer_reuse():
    kernel = GaussianNoise(0.3)
    x = torch.linspace(0, 1, 12).reshape(3, 4)
    g = make_generator(1, "cpu")
    first = kernel.sample(x, 20_000, generator=g)
    assert first.shape == (20_000, 3, 4)
    noise = first - x
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.005)
    assert float(noise.var()) == pytest.approx(0.09, rel=0.02)
    ptr = first.data_ptr()
    second = kernel.sample(x, 100, generator=g)
    assert second.data_ptr() == ptr  # preallocated buffer, no new allocation


def test_make_generator_rejects_negative_seed():
    with pytest.raises(InvalidParameterError, match="seed = -1"):
        make_generator(-1, "cpu")

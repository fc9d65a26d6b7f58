"""Fast-path helpers: precision names, channels-last and torch.compile wrappers."""

import shutil

import numpy as np
import pytest
import torch

from smoothcert.errors import InvalidParameterError
from smoothcert.methods._common import check_eval_mode
from smoothcert.runner.run import model_fingerprint
from smoothcert.sampling import count_classes, make_generator
from smoothcert.sampling.fast_path import (
    PRECISIONS,
    PreparedModel,
    autocast_dtype_for,
    prepare_model,
)


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 5),
    ).eval()


def test_precisions_mapping_and_validation():
    assert PRECISIONS == {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    for name, dtype in PRECISIONS.items():
        assert autocast_dtype_for(name) is dtype
    for bad in ("FP32", "float32", "", None, torch.bfloat16):
        with pytest.raises(InvalidParameterError, match="valid values: fp32, bf16, fp16"):
            autocast_dtype_for(bad)


def test_no_option_returns_the_model_itself():
    model = small_cnn()
    assert prepare_model(model) is model


def test_channels_last_same_outputs_fingerprint_and_eval_mode():
    reference = small_cnn()
    x = torch.rand(6, 3, 8, 8)
    with torch.inference_mode():
        expected = reference(x)
    before = model_fingerprint(reference)
    fast = prepare_model(small_cnn(), channels_last=True)
    assert isinstance(fast, PreparedModel)
    assert fast.options == {"compile": False, "channels_last": True}
    assert fast.module[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model_fingerprint(fast) == before  # same weights, same names
    check_eval_mode(fast)  # the wrapper is in eval mode like its module
    with torch.inference_mode():
        got = fast(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_channels_last_counts_through_the_engine():
    model = small_cnn()
    fast = prepare_model(small_cnn(), channels_last=True)
    x = torch.rand(3, 8, 8)

    def counts(m):
        g = make_generator(0, "cpu")
        return count_classes(
            m,
            lambda b: (x + 0.5 * torch.randn(b, 3, 8, 8, generator=g),),
            500,
            num_classes=5,
            batch_size=128,
            device="cpu",
        )

    # Another kernel may round differently: counts agree up to boundary samples.
    assert np.abs(counts(fast) - counts(model)).sum() <= 4


def test_bad_options_raise():
    with pytest.raises(InvalidParameterError, match="compile = 1 is invalid"):
        prepare_model(small_cnn(), compile=1)
    with pytest.raises(InvalidParameterError, match="channels_last = 'yes' is invalid"):
        prepare_model(small_cnn(), channels_last="yes")
    with pytest.raises(InvalidParameterError, match="channels_last = True is invalid for a model"):
        prepare_model(lambda x: x, channels_last=True)
    with pytest.raises(InvalidParameterError, match="model of type int is invalid"):
        prepare_model(3, compile=True)


def test_compile_wrapper_is_lazy_and_keeps_the_weights():
    # Building the wrapper does not compile anything (compilation happens on the first call).
    model = small_cnn()
    fast = prepare_model(model, compile=True)
    assert fast.options == {"compile": True, "channels_last": False}
    assert fast.module is model
    assert list(fast.state_dict()) == list(model.state_dict())
    check_eval_mode(fast)


@pytest.mark.slow
def test_compiled_model_matches_eager():
    # torch.compile's CPU backend (inductor) writes and builds C++: about 40 s here.
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile on CPU needs a C compiler (cc/gcc); none on PATH")
    model = small_cnn()
    x = torch.rand(16, 3, 8, 8)
    with torch.inference_mode():
        expected = model(x)
    fast = prepare_model(small_cnn(), compile=True, channels_last=True)
    try:
        with torch.inference_mode():
            got = fast(x)
    except Exception as err:  # noqa: BLE001 - any backend failure means "not available here"
        pytest.skip(f"torch.compile failed in this environment: {type(err).__name__}: {err}")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

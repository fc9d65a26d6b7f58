"""The bundled listing moderation filter: sha256-checked weights, accuracy clean and noisy."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from smoothcert.data import TextImageDataset, load_dataset
from smoothcert.errors import AssetError, InvalidParameterError
from smoothcert.models import (
    ListingFilter,
    available_sigmas,
    default_weights_dir,
    get_model_spec,
    load_model,
    read_manifest,
    weights_info,
)
from smoothcert.models.train_listings import (
    LISTING_BETA,
    listing_accuracy,
    substitute_tokens,
    train_listing_filter,
)
from smoothcert.noise.tokens import TokenSubstitutionNoise

SIGMAS = (0.25, 0.5, 1.0)
# Documented floors (docs/datasets.md); measured values are a few points higher.
CLEAN_FLOOR = {0.25: 0.88, 0.5: 0.85, 1.0: 0.75}
NOISY_FLOOR = {0.25: 0.80, 0.5: 0.75, 1.0: 0.65}


@pytest.fixture(scope="module")
def test_split() -> TextImageDataset:
    ds = load_dataset("listings", "test")
    assert isinstance(ds, TextImageDataset)
    return ds


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_model("listing_filter", sigma=0.25)


def test_spec_and_manifest() -> None:
    spec = get_model_spec("listing_filter")
    assert (spec.kind, spec.dataset, spec.num_classes, spec.input_shape) == (
        "text_image",
        "listings",
        2,
        (1, 14, 14),
    )
    assert get_model_spec("digits_cnn").kind == "image"
    assert available_sigmas("listing_filter") == SIGMAS
    files = {fn: e for fn, e in read_manifest()["files"].items() if e["model"] == "listing_filter"}
    assert sorted(files) == [f"listing_filter_sigma{s!r}.pt" for s in SIGMAS]
    total = 0
    for filename, entry in files.items():
        blob = (default_weights_dir() / filename).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
        assert entry["beta"] == LISTING_BETA and entry["dataset"] == "listings"
        total += len(blob)
    assert total < 4_000_000
    info = weights_info("listing_filter", 0.25)
    assert info.beta == LISTING_BETA


@pytest.mark.parametrize("sigma", SIGMAS)
def test_load_each_sigma(sigma: float) -> None:
    net = load_model("listing_filter", sigma=sigma)
    assert isinstance(net, ListingFilter) and not net.training
    assert (net.sigma, net.beta) == (sigma, LISTING_BETA)
    with pytest.raises(InvalidParameterError, match="0.12"):
        load_model("listing_filter", sigma=0.12)


def test_altered_weights_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), target)
    path = target / "listing_filter_sigma0.25.pt"
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(AssetError, match="fails its checksum"):
        load_model("listing_filter", sigma=0.25, weights_dir=target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["files"]["listing_filter_sigma0.5.pt"]["beta"] = 1.5
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AssetError, match="beta = 1.5"):
        load_model("listing_filter", sigma=0.5, weights_dir=target)


def test_every_token_id_is_handled(model: torch.nn.Module) -> None:
    ids = torch.arange(30522)
    rows = torch.zeros(1272, 24, dtype=torch.int64)
    rows.view(-1)[: ids.numel()] = ids
    with torch.inference_mode():
        out = model(rows, torch.rand(1272, 1, 14, 14))
    assert out.shape == (1272, 2) and torch.isfinite(out).all()
    # Ids never seen in training share the zero embedding row.
    assert int((model.token_rows > 0).sum()) < model.table_size


@pytest.mark.parametrize("sigma", SIGMAS)
def test_clean_and_noisy_accuracy_above_floor(sigma: float) -> None:
    net = load_model("listing_filter", sigma=sigma)
    assert listing_accuracy(net) >= CLEAN_FLOOR[sigma]
    assert listing_accuracy(net, beta=LISTING_BETA, sigma=sigma, seed=1) >= NOISY_FLOOR[sigma]


def test_needs_both_halves(model: torch.nn.Module, test_split: TextImageDataset) -> None:
    # A neutral image (all zeros) or a neutral text ([CLS] [SEP]) leaves a function of
    # one half only; on this test split that is right on exactly half the pairs.
    blank_image = np.zeros_like(test_split.images)
    blank_tokens = np.zeros_like(test_split.tokens)
    blank_tokens[:, 0], blank_tokens[:, 1] = 101, 102
    for images, tokens, lengths in (
        (blank_image, test_split.tokens, test_split.lengths),
        (test_split.images, blank_tokens, np.full(len(test_split), 2, dtype=np.int64)),
    ):
        data = TextImageDataset(
            name="listings",
            split="test",
            tokens=tokens,
            images=images,
            labels=test_split.labels,
            indices=test_split.indices,
            num_classes=2,
            vocab_size=30522,
            pad_id=0,
            lengths=lengths,
            cls_id=101,
            sep_id=102,
        )
        assert listing_accuracy(model, data=data) == 0.5


def test_substitute_tokens_matches_the_kernel() -> None:
    gen = torch.Generator().manual_seed(3)
    v, beta, n = 7, 0.4, 40_000
    tokens = torch.tensor([[2, 5, 6]]).expand(n, 3)
    eligible = torch.tensor([[False, True, True]]).expand(n, 3)
    ours = substitute_tokens(tokens, eligible, beta=beta, vocab_size=v, generator=gen)
    kernel = TokenSubstitutionNoise(beta=beta, alphabet=v).bind(tokens[0], eligible=[1, 2])
    theirs = kernel.sample(n, generator=torch.Generator().manual_seed(4)).clone()
    assert (ours[:, 0] == 2).all()
    for col in (1, 2):
        a = torch.bincount(ours[:, col], minlength=v).double() / n
        b = torch.bincount(theirs[:, col], minlength=v).double() / n
        expected = torch.full((v,), beta / (v - 1), dtype=torch.float64)
        expected[tokens[0, col]] = 1 - beta
        assert torch.allclose(a, expected, atol=0.01) and torch.allclose(b, expected, atol=0.01)
    with pytest.raises(InvalidParameterError, match="beta"):
        substitute_tokens(tokens, eligible, beta=1.0, vocab_size=v, generator=gen)


def test_training_is_deterministic() -> None:
    a = train_listing_filter(sigma=0.5, epochs=1, max_examples=256, seed=2)
    b = train_listing_filter(sigma=0.5, epochs=1, max_examples=256, seed=2)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(sa[k].equal(sb[k]) for k in sa)
    assert (a.sigma, a.beta) == (0.5, LISTING_BETA)


def test_train_model_dispatches_by_name() -> None:
    from smoothcert.models import train_model

    net = train_model("listing_filter", sigma=1.0, epochs=1, max_examples=128)
    assert isinstance(net, ListingFilter) and not net.training
    assert (net.sigma, net.beta) == (1.0, LISTING_BETA)


def test_listing_accuracy_rejects_votes_without_noise(model: torch.nn.Module) -> None:
    with pytest.raises(InvalidParameterError, match="votes = 5"):
        listing_accuracy(model, votes=5)


@pytest.mark.slow
def test_train_all_reproduces_the_shipped_weights(tmp_path: Path) -> None:
    """``smoothcert train --model listing_filter`` (train_all) gives the shipped bytes."""
    from reproduce import retrain

    entry = retrain("listing_filter", 0.25, tmp_path)  # pinned threads and CPU kernels
    shipped = weights_info("listing_filter", 0.25)
    assert hashlib.sha256((tmp_path / "listing_filter_sigma0.25.pt").read_bytes()).hexdigest() == (
        shipped.sha256
    )
    assert entry["sha256"] == shipped.sha256
    assert entry["beta"] == LISTING_BETA

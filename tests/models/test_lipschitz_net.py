"""The certified-Lipschitz networks (digits, Fashion-MNIST) and the generic norm bound."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from reproduce import retrain
from smoothcert.data import load_dataset
from smoothcert.errors import AssetError, InvalidParameterError
from smoothcert.models import (
    DigitsCNN,
    DigitsLipschitzNet,
    FashionLipschitzNet,
    MaxMin,
    available_sigmas,
    default_weights_dir,
    lipschitz_upper_bound,
    load_model,
    read_manifest,
    train_model,
    weights_info,
)

SIGMAS = (0.25, 0.5, 1.0)
NETS = {
    "digits_lipschitz": (DigitsLipschitzNet, "digits"),
    "fmnist_lipschitz": (FashionLipschitzNet, "fashion_mnist"),
}
MODEL_SIGMAS = [(name, sigma) for name in NETS for sigma in SIGMAS]


@pytest.fixture()
def weights_copy(tmp_path: Path) -> Path:
    target = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), target)
    return target


def _entry(sigma: float, name: str = "digits_lipschitz") -> dict:
    files = read_manifest()["files"]
    return files[f"{name}_sigma{sigma!r}.pt"]


@pytest.mark.parametrize("name", NETS)
def test_bundled_weights_listed_with_sha256_and_certified_constant(name: str) -> None:
    assert available_sigmas(name) == SIGMAS
    for sigma in SIGMAS:
        entry = _entry(sigma, name)
        blob = (default_weights_dir() / f"{name}_sigma{sigma!r}.pt").read_bytes()
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
        assert len(blob) == entry["size_bytes"] < 1_500_000
        assert 1.0 <= entry["lipschitz"] < 1.0001  # orthogonal layers: 1 up to rounding


@pytest.mark.parametrize(("name", "sigma"), MODEL_SIGMAS)
def test_load_sets_the_recorded_constant_and_it_bounds_the_weights(name: str, sigma: float) -> None:
    model = load_model(name, sigma=sigma)
    assert isinstance(model, NETS[name][0]) and not model.training
    assert model.weights_sha256 == weights_info(name, sigma).sha256
    assert model.lipschitz == _entry(sigma, name)["lipschitz"]
    # Recomputed independently: the plain float64 SVD of every linear layer.
    norms = [
        np.linalg.svd(m.weight.detach().double().numpy(), compute_uv=False)[0]
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]
    assert len(norms) == 4
    assert float(np.prod(norms)) <= model.lipschitz
    assert lipschitz_upper_bound(model) <= model.lipschitz


def _float64(model: nn.Module) -> nn.Module:
    copy = type(model)()
    copy.load_state_dict(model.state_dict())
    return copy.double().eval()


@pytest.mark.parametrize(("name", "sigma"), MODEL_SIGMAS)
def test_certified_constant_holds_on_random_pairs(name: str, sigma: float) -> None:
    model = load_model(name, sigma=sigma)
    net = _float64(model)
    gen = torch.Generator().manual_seed(int(sigma * 100))
    images = torch.from_numpy(load_dataset(NETS[name][1], "test").images[:200].copy()).double()
    x = images + sigma * torch.randn(images.shape, generator=gen, dtype=torch.float64)
    ratios = []
    for scale in (1e-3, 0.1, 1.0, 5.0):
        y = x + scale * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            num = (net(x) - net(y)).norm(dim=1)
        ratios.append(num / (x - y).flatten(1).norm(dim=1))
    y = images[torch.randperm(200, generator=gen)]  # pairs of different test images
    with torch.no_grad():
        ratios.append((net(images) - net(y)).norm(dim=1) / (images - y).flatten(1).norm(dim=1))
    ratio = torch.cat(ratios)
    ratio = ratio[torch.isfinite(ratio)]
    assert float(ratio.max()) <= model.lipschitz
    assert float(ratio.max()) > 0.3  # not vacuous: the network uses its budget


@pytest.mark.parametrize(("name", "sigma"), MODEL_SIGMAS)
def test_jacobian_norm_never_exceeds_the_constant(name: str, sigma: float) -> None:
    model = load_model(name, sigma=sigma)
    net = _float64(model)
    gen = torch.Generator().manual_seed(7)
    shape = (1, *model.input_shape)
    worst = 0.0
    for _ in range(40):
        x = torch.rand(shape, generator=gen, dtype=torch.float64) + sigma * torch.randn(
            shape, generator=gen, dtype=torch.float64
        )
        jac = torch.autograd.functional.jacobian(net, x).reshape(10, -1)
        worst = max(worst, float(torch.linalg.matrix_norm(jac, ord=2)))
        # every logit's gradient, too (the Jacobian's rows)
        assert float(jac.norm(dim=1).max()) <= model.lipschitz
    assert worst <= model.lipschitz
    assert worst > 0.5


def test_maxmin_is_a_pairwise_sort_and_one_lipschitz() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(500, 6, generator=gen, dtype=torch.float64)
    act = MaxMin()
    assert torch.all((act(a) - act(b)).norm(dim=1) <= (a - b).norm(dim=1) * (1 + 1e-12))
    assert torch.equal(act(a).sort(dim=1).values, a.sort(dim=1).values)  # a permutation


def test_generic_bound_is_exact_for_linear_layers_and_sound_for_conv() -> None:
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    exact = [np.linalg.svd(m.weight.detach().double().numpy())[1][0] for m in (lin[0], lin[2])]
    assert lipschitz_upper_bound(lin) == pytest.approx(exact[0] * exact[1], rel=1e-5)
    assert lipschitz_upper_bound(lin) >= exact[0] * exact[1]
    for stride in (1, 2):
        conv = nn.Conv2d(2, 3, 3, stride=stride, padding=1)
        chain = nn.Sequential(conv, nn.ReLU(), nn.Flatten())
        # exact operator norm on 5x5 inputs: the matrix of the linear map, column by column
        basis = torch.eye(2 * 25).reshape(50, 2, 5, 5)
        with torch.no_grad():
            matrix = (conv(basis) - conv(torch.zeros(1, 2, 5, 5))).flatten(1).T.double()
        op_norm = float(torch.linalg.matrix_norm(matrix, ord=2))
        assert lipschitz_upper_bound(chain) >= op_norm


def test_generic_bound_refuses_what_it_cannot_prove() -> None:
    with pytest.raises(InvalidParameterError, match="nn.Sequential"):
        lipschitz_upper_bound(DigitsCNN())
    with pytest.raises(InvalidParameterError, match="Sigmoid"):
        lipschitz_upper_bound(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid()))
    with pytest.raises(InvalidParameterError, match="groups=1"):
        lipschitz_upper_bound(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2)))


def test_manifest_constant_below_the_weights_bound_is_refused(weights_copy: Path) -> None:
    path = weights_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["files"]["digits_lipschitz_sigma0.5.pt"]["lipschitz"] = 0.5
    path.write_text(json.dumps(manifest))
    with pytest.raises(AssetError, match="certified Lipschitz bound"):
        load_model("digits_lipschitz", sigma=0.5, weights_dir=weights_copy)
    manifest["files"]["digits_lipschitz_sigma0.5.pt"]["lipschitz"] = -1
    path.write_text(json.dumps(manifest))
    with pytest.raises(AssetError, match="lipschitz = -1"):
        load_model("digits_lipschitz", sigma=0.5, weights_dir=weights_copy)


def test_tampered_weights_fail_the_checksum(weights_copy: Path) -> None:
    path = weights_copy / "digits_lipschitz_sigma0.25.pt"
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(AssetError, match="sha256"):
        load_model("digits_lipschitz", sigma=0.25, weights_dir=weights_copy)


def test_ordinary_models_have_no_certified_constant() -> None:
    assert not hasattr(load_model("digits_cnn", sigma=0.5), "lipschitz")


@pytest.mark.parametrize("name", NETS)
def test_short_training_is_deterministic_orthogonal_and_certified(name: str) -> None:
    a = train_model(name, sigma=0.5, epochs=1, max_examples=128, seed=1)
    b = train_model(name, sigma=0.5, epochs=1, max_examples=128, seed=1)
    assert isinstance(a, NETS[name][0])
    assert all(a.state_dict()[k].equal(b.state_dict()[k]) for k in a.state_dict())
    assert 1.0 <= a.lipschitz < 1.0001
    assert a.lipschitz == lipschitz_upper_bound(a)
    for m in a.modules():
        if isinstance(m, nn.Linear):  # semi-orthogonal: W W^T = I or W^T W = I
            w = m.weight.detach().double()
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            assert torch.allclose(gram, torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-5)


@pytest.mark.slow
def test_training_command_reproduces_the_shipped_weights(tmp_path: Path) -> None:
    entry = retrain("digits_lipschitz", 0.5, tmp_path)  # pinned threads and CPU kernels
    assert entry["sha256"] == _entry(0.5)["sha256"]
    assert entry["lipschitz"] == _entry(0.5)["lipschitz"]

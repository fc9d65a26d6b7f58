"""Training the dual-RS sigma estimator (``smoothcert.models.train_dual``) and its weights."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import norm

from smoothcert.errors import AssetError, InvalidParameterError
from smoothcert.models import default_weights_dir, get_model_spec, load_model, read_manifest
from smoothcert.models.architectures import FashionCNN, FashionSigmaEstimator
from smoothcert.models.train import train_all
from smoothcert.models.train_dual import (
    DUAL_SIGMAS,
    ESTIMATOR_NAME,
    SIGMA_E,
    _estimator_from_expert,
    consistency_loss,
    estimator_loss,
    kept_rows,
    optimal_sigma_weights,
    sigma_radius_labels,
    soft_radius_labels,
    train_estimator,
)


class Always(torch.nn.Module):
    """Votes ``cls`` of ``k`` classes whatever the input."""

    def __init__(self, cls: int, k: int = 4) -> None:
        super().__init__()
        self.cls, self.k = cls, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.k)
        out[:, self.cls] = 1.0
        return out


class SignOfMean(torch.nn.Module):
    """Class 1 if the mean pixel is positive, else 0: a noisy vote with known odds."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(dim=1)
        return torch.stack([-m, m], dim=1)


def _independent_radius(count: int, n: int, alpha: float, sigma: float) -> float:
    """Cohen's radius from first principles (Beta quantile of Clopper-Pearson)."""
    from scipy.stats import beta

    p = 0.0 if count == 0 else float(beta.ppf(alpha, count, n - count + 1))
    return sigma * float(norm.ppf(p)) if p > 0.5 else 0.0


def test_labels_of_constant_classifiers_match_closed_form() -> None:
    n, alpha = 100, 0.001
    sigmas = (0.25, 0.5, 1.0)
    # Expert j always votes class j: an input of label j is certified at sigma j only.
    experts = [Always(0), Always(1), Always(2)]
    images = torch.rand(5, 1, 3, 3)
    labels = [0, 1, 2, 3, 1]
    radii = sigma_radius_labels(experts, sigmas, images, labels, n=n, alpha=alpha, seed=3)
    full = alpha ** (1 / n)  # Clopper-Pearson lower bound at k = n
    expected = np.zeros((5, 3))
    for i, y in enumerate(labels):
        if y < 3:
            expected[i, y] = sigmas[y] * norm.ppf(full)
    np.testing.assert_allclose(radii, expected, rtol=1e-9, atol=0)
    assert math.isclose(expected[2, 2], _independent_radius(n, n, alpha, 1.0), rel_tol=1e-9)
    assert kept_rows(radii).tolist() == [True, True, True, False, True]


def test_labels_of_a_noisy_vote_match_independent_counts() -> None:
    # SignOfMean on a 1-pixel input x votes 1 with probability Phi(x / sigma). Recount the
    # votes with the same per-(sigma, input) generators the function documents.
    from smoothcert.models.train_dual import _noise_seed

    n, alpha, seed = 200, 0.01, 5
    sigmas = (0.5, 1.0)
    images = torch.tensor([0.8, -0.8, 2.0, 0.0]).view(4, 1, 1, 1)
    labels = np.array([1, 0, 1, 1])
    radii = sigma_radius_labels(
        [SignOfMean(), SignOfMean()],
        sigmas,
        images,
        labels,
        n=n,
        alpha=alpha,
        seed=seed,
        batch_size=64,
        examples_per_batch=3,
    )
    for j, sigma in enumerate(sigmas):
        for i in range(4):
            gen = torch.Generator().manual_seed(_noise_seed(seed, j, i))
            votes = 0
            remaining = n
            while remaining:
                b = min(64, remaining)
                x = images[i] + sigma * torch.randn((b, 1, 1, 1), generator=gen)
                votes += int(((x.flatten() > 0).long() == int(labels[i])).sum())
                remaining -= b
            assert radii[i, j] == pytest.approx(_independent_radius(votes, n, alpha, sigma))
    assert radii[2, 0] > 0 and radii[3, 0] == 0.0


def test_labels_are_deterministic_and_independent_of_grouping() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    torch.manual_seed(0)
    images = torch.rand(7, 1, 2, 2)
    labels = [0, 1, 2, 0, 1, 2, 0]
    args = ([model, model], (0.25, 1.0), images, labels)
    a = sigma_radius_labels(*args, n=50, seed=1, examples_per_batch=1)
    b = sigma_radius_labels(*args, n=50, seed=1, examples_per_batch=4)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (7, 2) and (a >= 0).all()


def test_labels_reject_bad_arguments() -> None:
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(InvalidParameterError, match="sigmas"):
        sigma_radius_labels([Always(0), Always(0)], (1.0, 0.5), x, [0, 0])
    with pytest.raises(InvalidParameterError, match="len\\(experts\\)"):
        sigma_radius_labels([Always(0)], (0.5, 1.0), x, [0, 0])
    with pytest.raises(InvalidParameterError, match="labels"):
        sigma_radius_labels([Always(0), Always(0)], (0.5, 1.0), x, [0, 9], n=5)


def test_soft_labels_sum_to_one_and_keep_the_order() -> None:
    rng = np.random.default_rng(0)
    radii = rng.uniform(0, 1.5, size=(50, 3))
    radii[:5] = 0.4  # ties
    for t in (0.05, 0.1, 1.0):
        soft = soft_radius_labels(radii, temperature=t)
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-12)
        for r, s in zip(radii, soft, strict=True):
            for a in range(3):
                for b in range(3):
                    if r[a] > r[b]:
                        assert s[a] > s[b]
                    elif r[a] == r[b]:
                        assert s[a] == pytest.approx(s[b])
    with pytest.raises(InvalidParameterError):
        soft_radius_labels(radii, temperature=0.0)


def test_dropped_rows_and_inverse_frequency_weights() -> None:
    radii = np.array(
        [[0.0, 0.0, 0.0], [0.3, 0.1, 0.0], [0.3, 0.2, 0.1], [0.1, 0.5, 0.0], [0.0, 0.0, 0.0]]
    )
    keep = kept_rows(radii)
    assert keep.tolist() == [False, True, True, True, False]
    w = optimal_sigma_weights(radii[keep])
    # Optimal sigmas: 0, 0, 1 -> frequencies 2/3, 1/3, 0; two sigmas present.
    np.testing.assert_allclose(w, [0.75, 1.5, 0.0])
    per_input = w[radii[keep].argmax(axis=1)]
    assert per_input.mean() == pytest.approx(1.0)
    # Each optimal sigma carries the same total weight.
    assert per_input[:2].sum() == pytest.approx(per_input[2:].sum())
    with pytest.raises(InvalidParameterError):
        optimal_sigma_weights(np.zeros((0, 3)))


def test_consistency_loss_terms() -> None:
    logits = torch.tensor([[[2.0, 0.0, -1.0]]]).expand(2, 1, 3)
    p = torch.softmax(logits[0, 0], dim=0)
    entropy = float(-(p * p.log()).sum())
    # Identical draws: KL 0, only the entropy of the mean.
    assert float(consistency_loss(logits, lam=5.0, eta=0.5)) == pytest.approx(
        0.5 * entropy, rel=1e-6
    )
    different = torch.tensor([[[2.0, 0.0, -1.0]], [[-1.0, 0.0, 2.0]]])
    p_a, p_b = torch.softmax(different[0, 0], 0), torch.softmax(different[1, 0], 0)
    p_hat = (p_a + p_b) / 2
    kl = float(
        ((p_hat * (p_hat.log() - p_a.log())).sum() + (p_hat * (p_hat.log() - p_b.log())).sum()) / 2
    )
    assert float(consistency_loss(different, lam=2.0, eta=0.0)) == pytest.approx(2 * kl, rel=1e-5)
    soft = torch.tensor([[1.0, 0.0, 0.0]])
    w = torch.tensor([2.0])
    ce = -float(torch.log_softmax(logits[0, 0], dim=0)[0])
    assert float(estimator_loss(logits, soft, w, lam=0.0, eta=0.0)) == pytest.approx(
        2 * ce, rel=1e-6
    )


def test_training_a_tiny_estimator_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = FashionSigmaEstimator()
    images = torch.rand(16, 1, 28, 28).numpy()
    radii = np.zeros((16, 3))
    radii[np.arange(16), np.arange(16) % 3] = 0.5
    radii[0] = 0.0  # dropped
    summary = train_estimator(
        model, images, radii, epochs=15, batch_size=8, lr=3e-3, seed=0, sigma_e=0.25
    )
    assert summary["kept"] == 15 and summary["dropped"] == 1
    assert summary["final_loss"] < summary["first_loss"]
    assert not model.training
    assert sum(summary["optimal_fraction"]) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(InvalidParameterError, match="radii are 0"):
        train_estimator(model, images, np.zeros((16, 3)), epochs=1)


def test_estimator_initialised_from_expert_except_last_layer() -> None:
    expert = FashionCNN()
    model = _estimator_from_expert(expert, seed=0)
    for key, value in expert.state_dict().items():
        if key.startswith("fc2."):
            assert model.state_dict()[key].shape[0] == 3
        else:
            assert torch.equal(model.state_dict()[key], value)


def test_spec_names_the_estimator() -> None:
    assert get_model_spec("fmnist_cnn").sigma_estimator == ESTIMATOR_NAME
    spec = get_model_spec(ESTIMATOR_NAME)
    assert (spec.dataset, spec.input_shape, spec.num_classes) == ("fashion_mnist", (1, 28, 28), 3)
    assert spec.sigma_estimator is None
    assert get_model_spec("digits_cnn").sigma_estimator is None


def test_shipped_estimator_loads_and_matches_its_manifest() -> None:
    model = load_model(ESTIMATOR_NAME, sigma=SIGMA_E)
    assert model.dual_sigmas == DUAL_SIGMAS == (0.25, 0.5, 1.0)
    assert all(isinstance(s, float) for s in model.dual_sigmas)
    assert model.sigma == 1.0
    with torch.inference_mode():
        assert model(torch.rand(4, 1, 28, 28)).shape == (4, 3)
    files = read_manifest()["files"]
    name = f"{ESTIMATOR_NAME}_sigma1.0.pt"
    entry = files[name]
    assert entry["model"] == ESTIMATOR_NAME and entry["sigma"] == 1.0
    assert entry["dual_sigmas"] == [0.25, 0.5, 1.0]
    path = default_weights_dir() / name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == entry["sha256"] == model.weights_sha256
    assert path.stat().st_size < 1_500_000
    # Experts carry no dual_sigmas.
    assert not hasattr(load_model("fmnist_cnn", sigma=0.5), "dual_sigmas")


@pytest.mark.parametrize(
    "bad",
    [[0.25, 0.5], [0.5, 0.25, 1.0], [0.0, 0.5, 1.0], [0.25, 0.5, "1"], "0.25", [0.25, 0.5, True]],
)
def test_bad_dual_sigmas_in_manifest_is_an_asset_error(tmp_path: Path, bad: object) -> None:
    name = f"{ESTIMATOR_NAME}_sigma1.0.pt"
    shutil.copy(default_weights_dir() / name, tmp_path / name)
    entry = dict(read_manifest()["files"][name])
    entry["dual_sigmas"] = bad
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 1, "files": {name: entry}}))
    with pytest.raises(AssetError, match="dual_sigmas"):
        load_model(ESTIMATOR_NAME, sigma=1.0, weights_dir=tmp_path)


def test_train_all_rejects_other_sigmas_for_the_estimator(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="sigma_e"):
        train_all((0.5,), tmp_path, name=ESTIMATOR_NAME)

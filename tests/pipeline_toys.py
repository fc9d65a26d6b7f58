"""Small real torch models and in-memory datasets for every input kind (no assets).

- :func:`image_dataset` / :func:`image_model`: 1x4x4 images, 3 classes, a linear model.
- :func:`text_image_dataset` / :class:`TextImageModel`: token sequences over an alphabet
  of 7 ids with 1x2x2 images; the model's score rises with the fraction of token 3 and
  with the image's brightness, so token edits AND image moves both matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

VOCAB = 7


@dataclass(frozen=True)
class ImageData:
    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    num_classes: int
    name: str = "toy_images"
    split: str = "test"


@dataclass(frozen=True)
class TextImageData:
    tokens: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    num_classes: int
    vocab_size: int = VOCAB
    name: str = "toy_text_image"
    split: str = "test"
    eligible: np.ndarray | None = None  # per-example positions for the "given" threat


def image_model(seed: int = 0) -> torch.nn.Module:
    rng = np.random.default_rng(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.as_tensor(rng.normal(size=(3, 16)), dtype=torch.float32))
        model[1].bias.zero_()
    return model.eval()


def lipschitz_image_model(seed: int = 0) -> torch.nn.Module:
    """:func:`image_model` with its certified constant ``lipschitz`` (the weight's norm)."""
    from smoothcert.models import lipschitz_upper_bound

    model = image_model(seed)
    model.lipschitz = lipschitz_upper_bound(model)
    return model


def sigma_estimator_model() -> torch.nn.Module:
    """A 3-way sigma estimator for the 1x4x4 images: routes by brightness (dark -> index 0)."""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[-1.0] * 16, [0.0] * 16, [1.0] * 16]))
        net[1].bias.copy_(torch.tensor([8.0, 0.0, -8.0]))
    return net.eval()


DUAL_SIGMAS = (0.25, 0.5, 1.0)


def dual_model() -> torch.nn.Module:
    """Dual smoothing's bundle for the toy images: the estimator and three linear experts."""
    from smoothcert.methods.dual import DualSmoothingModel

    experts = [image_model(seed) for seed in (0, 1, 2)]
    return DualSmoothingModel(sigma_estimator_model(), experts, sigmas=DUAL_SIGMAS).eval()


def image_dataset(size: int = 6) -> ImageData:
    rng = np.random.default_rng(1)
    images = rng.uniform(0.0, 1.0, size=(size, 1, 4, 4)).astype(np.float32)
    with torch.no_grad():
        labels = image_model()(torch.as_tensor(images)).argmax(dim=1).numpy().astype(np.int64)
    labels[::3] = (labels[::3] + 1) % 3
    indices = (50 + 7 * np.arange(size)).astype(np.int64)
    return ImageData(images, labels, indices, 3)


class TextImageModel(torch.nn.Module):
    """Two classes; class 1's score: 6 * (fraction of token 3) + 3 * mean pixel - 4.5."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([6.0, 3.0, -4.5]), requires_grad=False)

    def forward(self, tokens: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        frac = (tokens == 3).float().mean(dim=1)
        bright = images.flatten(1).mean(dim=1)
        s = self.scale[0] * frac + self.scale[1] * bright + self.scale[2]
        return torch.stack([-s, s], dim=1)


def text_image_dataset(size: int = 6, *, with_eligible: bool = False) -> TextImageData:
    positive = np.arange(size) % 2 == 0
    tokens = np.where(positive[:, None], 3, 1).astype(np.int64) * np.ones((size, 6), np.int64)
    tokens[:, 0] = 5  # a fixed first token, in the alphabet
    images = np.where(positive[:, None, None, None], 0.9, 0.1).astype(np.float32)
    images = images * np.ones((size, 1, 2, 2), np.float32)
    labels = positive.astype(np.int64)
    labels[-1] = 1 - labels[-1]  # one wrong label
    indices = (10 + 3 * np.arange(size)).astype(np.int64)
    eligible = None
    if with_eligible:  # positions 1..k for k = 2, 3, 4, ...: a different D per example
        eligible = np.zeros(tokens.shape, dtype=bool)
        for i in range(size):
            eligible[i, 1 : 3 + i % 4] = True
    return TextImageData(tokens, images, labels, indices, 2, eligible=eligible)


TABULAR_VOCAB = (2, 3)


@dataclass(frozen=True)
class TabularData:
    tokens: np.ndarray
    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    num_classes: int
    field_vocab_sizes: tuple[int, ...] = TABULAR_VOCAB
    name: str = "toy_tabular"
    split: str = "test"


class TabularModel(torch.nn.Module):
    """Two classes; class 1's score: 3 * [field 0 == 1] + 2 * [field 1 == 2] + sum(x) - 2."""

    def forward(self, tokens: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
        s = 3.0 * (tokens[:, 0] == 1).float() + 2.0 * (tokens[:, 1] == 2).float()
        s = s + continuous.sum(dim=1) - 2.0
        return torch.stack([-s, s], dim=1)


def tabular_dataset(size: int = 6) -> TabularData:
    positive = np.arange(size) % 2 == 0
    tokens = np.where(positive[:, None], [1, 2], [0, 0]).astype(np.int64)
    tokens[1, 1] = 1  # a third category of field 1
    images = np.repeat(np.where(positive, 0.5, -0.5)[:, None], 3, axis=1).astype(np.float32)
    labels = positive.astype(np.int64)
    labels[-1] = 1 - labels[-1]  # one wrong label
    indices = (20 + 5 * np.arange(size)).astype(np.int64)
    return TabularData(tokens, images, labels, indices, 2)


METHOD_RUNS = {
    "attack-l2": (
        "image",
        {"sigma": 0.5, "radii": (0.25, 0.5), "steps": 3, "noise_samples": 4, "eval_n": 100},
    ),
    "attack-hybrid": (
        "text_image",
        {
            "sigma": 0.5,
            "beta": 0.3,
            "alphabet": VOCAB,
            "n0": 0,
            "n": 100,
            "alpha": 0.01,
            "target": 1,
            "tau": 0.5,
            "radii": (0.0, 0.25),
            "attack_d_max": 1,
            "steps": 3,
            "noise_samples": 4,
            "candidates": 4,
        },
    ),
    "attack-fields": (
        "tabular",
        {
            "field_vocab_sizes": TABULAR_VOCAB,
            "field_betas": (0.2, 0.3),
            "sigma": 0.5,
            "radii": (0.0, 0.25),
            "attack_d_max": 1,
            "steps": 3,
            "noise_samples": 4,
            "rounds": 1,
            "eval_n": 100,
        },
    ),
    "cohen": ("image", {"sigma": 0.5, "n0": 20, "n": 300, "alpha": 0.01}),
    "cohen-top2": ("image", {"sigma": 0.5, "n0": 20, "n": 300, "alpha": 0.01}),
    "cohen-predict": ("image", {"sigma": 0.5, "n": 300, "alpha": 0.01}),
    "cohen-sequential": (
        "image",
        {
            "sigma": 0.5,
            "n0": 20,
            "alpha": 0.01,
            "max_samples": 2000,
            "target_radii": (0.25, 0.5),
            "first_round": 30,
        },
    ),
    "dual": (
        "dual",
        {"sigmas": DUAL_SIGMAS, "sigma_estimator": 1.0, "n0": 20, "n": 300, "alpha": 0.02},
    ),
    "dual-predict": (
        "dual",
        {"sigmas": DUAL_SIGMAS, "sigma_estimator": 1.0, "n": 300, "alpha": 0.02},
    ),
    "soft": (
        "image",
        {
            "sigma": 0.5,
            "n0": 20,
            "n": 300,
            "alpha": 0.01,
            "score_map": "softmax",
            "temperature": 2.0,
            "score_bound": "bernstein",
        },
    ),
    "lipschitz": (
        "lipschitz",
        {
            "sigma": 0.5,
            "n0": 20,
            "n": 300,
            "alpha": 0.01,
            "temperature": 2.0,
            "logit_lipschitz": 6.0,
            "score_bound": "bernstein",
        },
    ),
    "soft-top2": (
        "image",
        {"sigma": 0.5, "n0": 20, "n": 300, "alpha": 0.01, "score_map": "sparsemax"},
    ),
    "cohen-combined": (
        "image",
        {"sigma": 0.5, "n0": 20, "n": 300, "alpha": 0.01, "bound": "bernstein", "combiner": "cpm"},
    ),
    "soft-combined": (
        "image",
        {
            "sigma": 0.5,
            "n0": 20,
            "n": 300,
            "alpha": 0.01,
            "score_map": "softmax",
            "bound": "hoeffding",
            "combiner": "bonferroni",
        },
    ),
    "tokens": ("text_image", {"beta": 0.3, "alphabet": VOCAB, "n0": 20, "n": 300, "alpha": 0.01}),
    "hybrid-sequential": (
        "text_image",
        {
            "sigma": 0.5,
            "beta": 0.3,
            "alphabet": VOCAB,
            "n0": 20,
            "alpha": 0.01,
            "max_samples": 2000,
            "targets": ((0, 0.1), (1, 0.05)),
            "first_round": 30,
        },
    ),
    "hybrid-fields": (
        "tabular",
        {
            "field_vocab_sizes": TABULAR_VOCAB,
            "field_betas": (0.2, 0.3),
            "sigma": 0.5,
            "n0": 20,
            "n": 300,
            "alpha": 0.01,
        },
    ),
    "hybrid": (
        "text_image",
        {"sigma": 0.5, "beta": 0.3, "alphabet": VOCAB, "n0": 20, "n": 300, "alpha": 0.01},
    ),
}
"""A small run of every registered method: the kind of toy data it needs, its parameters."""


def toy_for(kind: str) -> tuple[torch.nn.Module, object]:
    """The toy model and dataset of a kind (``"image"``, ``"dual"``, ``"lipschitz"`` (the
    image model with a certified ``lipschitz``) or ``"text_image"``)."""
    if kind == "image":
        return image_model(), image_dataset()
    if kind == "dual":
        return dual_model(), image_dataset()
    if kind == "lipschitz":
        return lipschitz_image_model(), image_dataset()
    if kind == "tabular":
        return TabularModel().eval(), tabular_dataset()
    return TextImageModel().eval(), text_image_dataset()


class KillOnce(torch.nn.Module):
    """Wraps a model; the first forward pass in any process SIGKILLs that process.

    A marker file makes it happen once per test: the retried work then runs normally.
    Used to kill a Ray worker in the middle of a shard.
    """

    def __init__(self, inner: torch.nn.Module, marker: str) -> None:
        super().__init__()
        self.inner = inner
        self.marker = marker

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        import os
        import signal

        if inputs[0].shape[0] > 1 and not os.path.exists(self.marker):
            with open(self.marker, "w") as handle:
                handle.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(*inputs)

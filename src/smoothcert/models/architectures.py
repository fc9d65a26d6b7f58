"""Architectures of the bundled models and the registry that names them.

Every bundled model takes pixels in [0, 1] (the units the Gaussian noise of the
certificate is added in) and does any normalisation inside its ``forward``, so a sigma
is always in [0, 1]-pixel units.

Example:
    >>> import torch
    >>> from smoothcert.models.architectures import DigitsCNN
    >>> model = DigitsCNN().eval()
    >>> model(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 10])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from smoothcert.errors import InvalidParameterError

__all__ = ["DigitsCNN", "ModelSpec", "get_model_spec", "list_models"]


class DigitsCNN(nn.Module):
    """Small CNN for 1x8x8 digit images in [0, 1], 10 classes (70,562 parameters).

    Layers: conv 1->12 3x3 pad 1 (12x8x8), ReLU, conv 12->32 3x3 stride 2 pad 1
    (32x4x4), ReLU, flatten (512), linear 512->128, ReLU, linear 128->10 (logits).
    The input is used as is (pixels in [0, 1] are already well scaled; a
    normalisation layer made no difference to accuracy under noise), so the sigma of
    the noise is in [0, 1]-pixel units.

    The shape is chosen for CPU speed at equal accuracy under Gaussian noise: a
    stride-2 convolution instead of a max pool (the pool over 8x8 maps cost more than
    the rest of the network), and 12 first-layer channels (on the CPU this was
    measured on, oneDNN runs a 1->16 or 1->32 channel 3x3 convolution on 8x8 inputs
    about ten times slower than 1->12). About 3 us of one CPU core per sample at
    batch 1000. (In-place ReLUs were measured 2x slower on CPU, so the ReLUs
    allocate.)

    Attributes:
        input_shape: ``(1, 8, 8)``.
        num_classes: ``10``.

    Example:
        >>> import torch
        >>> from smoothcert.models import DigitsCNN
        >>> net = DigitsCNN()
        >>> sum(p.numel() for p in net.parameters())
        70562
    """

    input_shape: tuple[int, int, int] = (1, 8, 8)
    num_classes: int = 10

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 12, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(12, 32, kernel_size=3, stride=2, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(B, 10)`` for images ``x`` of shape ``(B, 1, 8, 8)``.

        Args:
            x: pixels in [0, 1] (plus any noise), in the dtype of the weights.
        """
        x = functional.relu(self.conv1(x))
        x = functional.relu(self.conv2(x))
        x = functional.relu(self.fc1(x.flatten(1)))
        logits: torch.Tensor = self.fc2(x)
        return logits


@dataclass(frozen=True)
class ModelSpec:
    """Registry entry of a bundled model.

    Attributes:
        name: model name, e.g. ``"digits_cnn"``.
        dataset: name of the dataset (in :mod:`smoothcert.data`) it is trained on.
        build: constructor returning an untrained module.
        input_shape: shape ``(C, H, W)`` of one input.
        num_classes: number of output logits.
        description: one line for listings.
    """

    name: str
    dataset: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]
    num_classes: int
    description: str


_MODELS: dict[str, ModelSpec] = {
    "digits_cnn": ModelSpec(
        name="digits_cnn",
        dataset="digits",
        build=DigitsCNN,
        input_shape=(1, 8, 8),
        num_classes=10,
        description="small CNN for scikit-learn digits (1x8x8, pixels in [0, 1]), 10 classes",
    ),
}


def list_models() -> list[str]:
    """Return the names of the bundled model architectures, sorted.

    Example:
        >>> from smoothcert.models import list_models
        >>> list_models()
        ['digits_cnn']
    """
    return sorted(_MODELS)


def get_model_spec(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` registered under ``name``.

    Raises:
        InvalidParameterError: if ``name`` is not a bundled model; the message lists
            the valid names.
    """
    if not isinstance(name, str) or name not in _MODELS:
        raise InvalidParameterError(
            f"model name = {name!r} is invalid; valid choices: {list_models()}"
        )
    return _MODELS[name]

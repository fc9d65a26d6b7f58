"""Architectures of the bundled models and the registry that names them.

Every bundled model takes pixels in [0, 1] (the units the Gaussian noise of the
certificate is added in) and does any normalisation inside its ``forward``, so a sigma
is always in [0, 1]-pixel units.

``digits_cnn`` and ``fmnist_cnn`` are image classifiers (``model(images)``);
``fmnist_sigma_estimator`` is the sigma estimator of dual randomized smoothing for
``fmnist_cnn`` (an image model whose 3 outputs index the noise levels
(0.25, 0.5, 1.0)); ``listing_filter`` is a text+image fusion model for the
``"listings"`` dataset (``model(tokens, images)``).
:attr:`ModelSpec.kind` says which, with the same values as
:func:`smoothcert.data.dataset_kind`.

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
from smoothcert.models.lipschitz import DigitsLipschitzNet, FashionLipschitzNet
from smoothcert.models.tabular import TabularMLP

__all__ = [
    "DigitsCNN",
    "FashionCNN",
    "FashionSigmaEstimator",
    "ListingFilter",
    "ModelSpec",
    "get_model_spec",
    "list_models",
]


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


class FashionCNN(nn.Module):
    """Small CNN for 1x28x28 Fashion-MNIST images in [0, 1], 10 classes (320,938 parameters).

    Layers: conv 1->32 3x3 stride 2 pad 1 (32x14x14), ReLU, conv 32->64 3x3 pad 1
    (64x14x14), ReLU, max pool 2 (64x7x7), flatten (3136), linear 3136->96, ReLU,
    linear 96->10 (logits). The input is used as is, so the sigma of the noise is in
    [0, 1]-pixel units.

    The first convolution has stride 2 instead of a full-resolution convolution plus
    a max pool: on the 2-core CPU this was measured on, that cut a training epoch on
    the 60,000 training images from about 46 s to 32 s (batch 256, two threads). The
    hidden layer has 96 units so that a weight file stays under 1.5 MB (1.29 MB).

    Args:
        num_outputs: width of the last layer: 10 (the classes, default) or, for
            :class:`FashionSigmaEstimator`, the number of noise levels. The layer
            names do not depend on it.

    Attributes:
        input_shape: ``(1, 28, 28)``.
        num_classes: ``num_outputs`` (``10``).

    Example:
        >>> import torch
        >>> from smoothcert.models import FashionCNN
        >>> net = FashionCNN().eval()
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> sum(p.numel() for p in net.parameters())
        320938
    """

    input_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10

    def __init__(self, num_outputs: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 96)
        self.fc2 = nn.Linear(96, num_outputs)
        self.num_classes = num_outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(B, num_classes)`` for images ``x`` of shape ``(B, 1, 28, 28)``.

        Args:
            x: pixels in [0, 1] (plus any noise), in the dtype of the weights.
        """
        x = functional.relu(self.conv1(x))
        x = functional.max_pool2d(functional.relu(self.conv2(x)), 2)
        x = functional.relu(self.fc1(x.flatten(1)))
        logits: torch.Tensor = self.fc2(x)
        return logits


class FashionSigmaEstimator(FashionCNN):
    """Sigma estimator of dual randomized smoothing for Fashion-MNIST (3 outputs).

    :class:`FashionCNN` with a last layer of 3 logits (320,259 parameters): output ``j``
    scores noise level ``dual_sigmas[j]`` of ``(0.25, 0.5, 1.0)`` for the input. It is
    trained and smoothed at one global ``sigma_e = 1.0`` (Sun, Mao and Vechev,
    "Dual Randomized Smoothing: Beyond Global Noise Variance", arXiv 2512.01782); see
    :mod:`smoothcert.models.train_dual`. The layer names are those of
    :class:`FashionCNN`, so the convolutions and the hidden layer can be initialised
    from an ``fmnist_cnn`` expert.

    Attributes:
        input_shape: ``(1, 28, 28)``.
        num_classes: ``3`` (the number of sigmas).

    Example:
        >>> import torch
        >>> from smoothcert.models.architectures import FashionSigmaEstimator
        >>> net = FashionSigmaEstimator().eval()
        >>> net(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 3])
        >>> sum(p.numel() for p in net.parameters())
        320259
    """

    def __init__(self) -> None:
        super().__init__(num_outputs=3)


class ListingFilter(nn.Module):
    """Text+image fusion model for listing moderation: logits of (match, mismatch).

    Inputs: ``tokens`` int64 ``(B, 24)`` WordPiece ids of the all-MiniLM-L6-v2
    vocabulary (any id in ``[0, 30522)``; ``[PAD] = 0``) and ``images`` ``(B, 1, 14, 14)``
    pixels in [0, 1] (plus any noise; sigma is in [0, 1]-pixel units).

    Text branch: a fixed lookup ``token_rows`` (a buffer, int16, one entry per
    vocabulary id) maps each id to a row of a small embedding table (``table_size = 512``
    rows of 32). The trainer fills it from the training descriptions
    (:meth:`set_vocabulary`): their distinct ids get rows ``1..k``; every other id, and
    ``[PAD]``, maps to row 0, a fixed zero vector. So an id never seen in training (what
    uniform token noise almost always draws) adds nothing, and every id of the 30,522 is
    handled. The embeddings of a row's tokens are summed, then linear 32 -> 64, ReLU.

    Image branch: conv 1->16 3x3 stride 2 pad 1 (16x7x7), ReLU, conv 16->32 3x3 stride 2
    pad 1 (32x4x4), ReLU, linear 512 -> 64, ReLU. (A full-resolution first convolution
    cost three times the training time on CPU for about one point of accuracy.)

    Fusion: concat(text, image, text * image) (192) -> linear 64, ReLU -> linear 2.
    Two auxiliary heads (text class, image class, 64 -> 10 each) are used in training
    only (:meth:`forward_with_aux`); the forward pass returns the 2 logits.

    69,910 parameters plus the 30,522-entry int16 lookup; a weight file is 346 KB.

    Attributes:
        input_shape: ``(1, 14, 14)``.
        num_classes: ``2`` (0 = match, 1 = mismatch).
        vocab_size: ``30522``.
        seq_len: ``24``.

    Example:
        >>> import torch
        >>> from smoothcert.models import ListingFilter
        >>> net = ListingFilter().eval()
        >>> tokens = torch.tensor([[101, 2304, 102] + [0] * 21, [101, 30521, 102] + [0] * 21])
        >>> net(tokens, torch.zeros(2, 1, 14, 14)).shape
        torch.Size([2, 2])
        >>> sum(p.numel() for p in net.parameters())
        69910
    """

    input_shape: tuple[int, int, int] = (1, 14, 14)
    num_classes: int = 2
    vocab_size: int = 30522
    seq_len: int = 24
    table_size: int = 512
    embed_dim: int = 32
    num_item_classes: int = 10

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("token_rows", torch.zeros(self.vocab_size, dtype=torch.int16))
        self.embed = nn.Embedding(self.table_size, self.embed_dim, padding_idx=0)
        self.text_fc = nn.Linear(self.embed_dim, 64)
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1)
        self.image_fc = nn.Linear(32 * 4 * 4, 64)
        self.fuse = nn.Linear(3 * 64, 64)
        self.out = nn.Linear(64, self.num_classes)
        self.text_head = nn.Linear(64, self.num_item_classes)
        self.image_head = nn.Linear(64, self.num_item_classes)

    def set_vocabulary(self, ids: torch.Tensor) -> None:
        """Give each distinct id in ``ids`` (except ``[PAD] = 0``) its own embedding row.

        Rows ``1..k`` go to the sorted distinct ids; all other ids map to row 0 (zero).

        Raises:
            InvalidParameterError: if an id is outside ``[0, 30522)`` or there are more
                than ``table_size - 1`` distinct ids.
        """
        known = torch.unique(torch.as_tensor(ids, dtype=torch.int64).flatten())
        known = known[known != 0]
        if known.numel() and (int(known.min()) < 0 or int(known.max()) >= self.vocab_size):
            raise InvalidParameterError(
                f"token ids in [{int(known.min())}, {int(known.max())}] are invalid; valid "
                f"range: 0 <= id < {self.vocab_size}"
            )
        if known.numel() > self.table_size - 1:
            raise InvalidParameterError(
                f"{known.numel()} distinct token ids is invalid; valid: at most "
                f"{self.table_size - 1} (table_size - 1)"
            )
        rows = torch.zeros(self.vocab_size, dtype=torch.int16, device=self.token_rows.device)
        rows[known.to(rows.device)] = torch.arange(
            1, known.numel() + 1, dtype=torch.int16, device=rows.device
        )
        self.token_rows.copy_(rows)

    def _features(self, tokens: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rows = self.token_rows[tokens].long()
        text = functional.relu(self.text_fc(self.embed(rows).sum(dim=1)))
        x = functional.relu(self.conv1(images))
        x = functional.relu(self.conv2(x))
        image = functional.relu(self.image_fc(x.flatten(1)))
        fused = functional.relu(self.fuse(torch.cat([text, image, text * image], dim=1)))
        return self.out(fused), text, image

    def forward(self, tokens: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, 2)`` (match, mismatch).

        Args:
            tokens: int64 ``(B, L)`` token ids in ``[0, 30522)``.
            images: ``(B, 1, 14, 14)`` pixels in [0, 1] plus any noise, in the weights'
                dtype.
        """
        logits: torch.Tensor = self._features(tokens, images)[0]
        return logits

    def forward_with_aux(
        self, tokens: torch.Tensor, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (pair logits, text-class logits, image-class logits), for training."""
        logits, text, image = self._features(tokens, images)
        return logits, self.text_head(text), self.image_head(image)

    def token_embedding_matrix(self) -> torch.Tensor:
        """The embedding of every vocabulary id, ``(30522, 32)``.

        Row ``t`` is the table row of ``token_rows[t]`` (zero for ``[PAD]`` and ids never
        seen in training). With :meth:`forward_embeddings`, the embedding hook of
        :mod:`smoothcert.methods.token_gradient` (GCG-style token candidates).
        """
        return self.embed.weight[self.token_rows.long()]

    def forward_embeddings(self, embeds: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 2)`` from token embeddings (the embedding hook's forward pass).

        ``forward(tokens, images)`` equals
        ``forward_embeddings(token_embedding_matrix()[tokens], images)`` bit for bit.

        Args:
            embeds: ``(B, L, 32)`` rows of :meth:`token_embedding_matrix` (or any vectors:
                the text branch sums them over positions).
            images: ``(B, 1, 14, 14)`` as in :meth:`forward`.
        """
        text = functional.relu(self.text_fc(embeds.sum(dim=1)))
        x = functional.relu(self.conv1(images))
        x = functional.relu(self.conv2(x))
        image = functional.relu(self.image_fc(x.flatten(1)))
        fused = functional.relu(self.fuse(torch.cat([text, image, text * image], dim=1)))
        logits: torch.Tensor = self.out(fused)
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
        kind: ``"image"`` (``model(images)``), ``"tabular"`` (``model(tokens, continuous)``,
            categorical fields and a continuous vector) or ``"text_image"``
            (``model(tokens, images)``), as :func:`smoothcert.data.dataset_kind`.
        sigma_estimator: for a classifier family, the name of the bundled sigma
            estimator of dual randomized smoothing trained for its per-sigma experts
            (``"fmnist_sigma_estimator"`` for ``fmnist_cnn``); ``None`` if there is none.
    """

    name: str
    dataset: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, int, int]
    num_classes: int
    description: str
    kind: str = "image"
    sigma_estimator: str | None = None


_MODELS: dict[str, ModelSpec] = {
    "digits_cnn": ModelSpec(
        name="digits_cnn",
        dataset="digits",
        build=DigitsCNN,
        input_shape=(1, 8, 8),
        num_classes=10,
        description="small CNN for scikit-learn digits (1x8x8, pixels in [0, 1]), 10 classes",
    ),
    "digits_lipschitz": ModelSpec(
        name="digits_lipschitz",
        dataset="digits",
        build=DigitsLipschitzNet,
        input_shape=(1, 8, 8),
        num_classes=10,
        description=(
            "1-Lipschitz (L2) network for digits (1x8x8, pixels in [0, 1]): orthogonal dense "
            "layers and MaxMin; certified Lipschitz constant of the logits in the manifest"
        ),
    ),
    "fmnist_cnn": ModelSpec(
        name="fmnist_cnn",
        dataset="fashion_mnist",
        build=FashionCNN,
        input_shape=(1, 28, 28),
        num_classes=10,
        description="small CNN for Fashion-MNIST (1x28x28, pixels in [0, 1]), 10 classes",
        sigma_estimator="fmnist_sigma_estimator",
    ),
    "fmnist_lipschitz": ModelSpec(
        name="fmnist_lipschitz",
        dataset="fashion_mnist",
        build=FashionLipschitzNet,
        input_shape=(1, 28, 28),
        num_classes=10,
        description=(
            "1-Lipschitz (L2) network for Fashion-MNIST (1x28x28, pixels in [0, 1]): orthogonal "
            "dense layers and MaxMin; certified Lipschitz constant of the logits in the manifest"
        ),
    ),
    "fmnist_sigma_estimator": ModelSpec(
        name="fmnist_sigma_estimator",
        dataset="fashion_mnist",
        build=FashionSigmaEstimator,
        input_shape=(1, 28, 28),
        num_classes=3,
        description=(
            "dual-RS sigma estimator for the fmnist_cnn experts (1x28x28, pixels in [0, 1]): "
            "3 logits, output j picks sigma (0.25, 0.5, 1.0)[j]; smoothed at sigma_e = 1.0"
        ),
    ),
    "listing_filter": ModelSpec(
        name="listing_filter",
        dataset="listings",
        build=ListingFilter,
        input_shape=(1, 14, 14),
        num_classes=2,
        description=(
            "text+image fusion model for listing moderation: tokens (B, 24) of the 30,522-id "
            "WordPiece vocabulary and images (B, 1, 14, 14) in [0, 1] -> (match, mismatch)"
        ),
        kind="text_image",
    ),
    "tabular_mlp": ModelSpec(
        name="tabular_mlp",
        dataset="fair",
        build=TabularMLP,
        input_shape=(3,),  # type: ignore[arg-type]  # the continuous vector (C,)
        num_classes=2,
        description=(
            "per-field embeddings + MLP for the fair table: 5 categorical fields (B, 5) and 3 "
            "continuous columns (B, 3) in train standard deviations -> (no affair, affair)"
        ),
        kind="tabular",
    ),
}


def list_models() -> list[str]:
    """Return the names of the bundled model architectures, sorted.

    Example:
        >>> from smoothcert.models import list_models
        >>> for name in list_models():
        ...     print(name)
        digits_cnn
        digits_lipschitz
        fmnist_cnn
        fmnist_lipschitz
        fmnist_sigma_estimator
        listing_filter
        tabular_mlp
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

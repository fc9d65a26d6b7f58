"""Certified L2 Lipschitz constants: 1-Lipschitz dense networks and a generic bound.

A CERTIFIED constant is an upper bound proved from the weights, never an estimate from
data (DESIGN.md, "Soft scores, Lipschitz-aware radius"). Everything here bounds the
Lipschitz constant in L2 of the map from the input tensor (pixels in [0, 1] for the
bundled models) to the logits.

**Composition.** If ``f = f_k o ... o f_1`` and each ``f_i`` is ``L_i``-Lipschitz in L2,
then ``f`` is ``prod_i L_i``-Lipschitz (``|f(x) - f(y)| <= L_k |f_{k-1..1}(x) -
f_{k-1..1}(y)| <= ...``). This holds for a CHAIN only: a residual connection, a
concatenation or a product of branches needs its own argument, so
:func:`lipschitz_upper_bound` accepts an ``nn.Sequential`` of known layers and refuses
anything else.

**Layers.**

* ``nn.Linear``: ``x -> W x + b`` has constant ``|W|_2`` (the largest singular value);
  the bias does not matter. Computed by a float64 SVD of the stored float32 weight.
* :class:`MaxMin` (GroupSort of size 2) and ReLU: 1-Lipschitz. ReLU is applied
  coordinate-wise and ``|relu(a) - relu(b)| <= |a - b|``; MaxMin maps each pair
  ``(a, b)`` to ``(max, min)``, a permutation of the pair, and for two pairs
  ``(max(a) - max(b))^2 + (min(a) - min(b))^2 <= |a - b|^2`` (sorting is 1-Lipschitz in
  L2: the sorted vectors are at most as far apart as the vectors, by the rearrangement
  inequality ``<sort a, sort b> >= <a, b>``).
* ``nn.Flatten``, ``nn.Identity``, ``nn.Dropout`` in eval mode: isometries (1).
* ``nn.Conv2d`` (no dilation, groups 1, zero padding): write the convolution as
  ``y = sum_{(i, j)} S_{ij} K_{ij} x`` over the kernel offsets, where ``K_{ij}`` is the
  ``out x in`` channel matrix at offset ``(i, j)`` applied at every pixel (norm
  ``|K_{ij}|_2``) and ``S_{ij}`` shifts the image by the offset with zero fill and then
  keeps every ``stride``-th pixel (a partial isometry: norm <= 1). The triangle
  inequality gives ``|conv|_2 <= sum_{ij} |K_{ij}|_2`` (sound for any image size and
  stride). This is usually far from tight, and so is the product over a deep network:
  :func:`lipschitz_upper_bound` of an ordinary (unconstrained) network is typically
  orders of magnitude above its true local behaviour, so useless for a certificate.
  Use a network built to be 1-Lipschitz (:class:`LipschitzMLP`) instead.

**Rounding (soundness rule 4).** A float64 SVD of a float32 matrix returns the largest
singular value of the (exactly representable) float32 matrix to a relative error of a
few float64 ulps times the dimension; every per-layer norm is multiplied by
``1 + 1e-9`` and the product by ``1 + 1e-6`` before it is reported. The bound is then
a bound for the network in exact arithmetic with the stored weights. The float32 forward
pass itself rounds (relative error of order ``1e-7`` per layer of its outputs); like every
certificate in this library, the guarantee is for the model in exact arithmetic.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.ReLU())
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.tensor([[3.0, 0, 0], [0, 4.0, 0]]))
    >>> round(lipschitz_upper_bound(net), 4)
    4.0
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from smoothcert.errors import InvalidParameterError

__all__ = [
    "DigitsLipschitzNet",
    "FashionLipschitzNet",
    "LipschitzMLP",
    "MaxMin",
    "lipschitz_upper_bound",
    "orthogonalize",
    "spectral_norm_upper",
    "unparametrize",
]

_LAYER_SLACK = 1e-9
_PRODUCT_SLACK = 1e-6


class MaxMin(nn.Module):
    """GroupSort of size 2 (Anil, Lucas and Grosse 2019, arXiv 1811.05381): 1-Lipschitz.

    Splits the last dimension into pairs ``(a, b)`` (first half, second half) and returns
    ``(max(a, b), min(a, b))``. It is a per-pair sort, hence 1-Lipschitz in L2 (module
    docstring) and gradient-norm preserving (its Jacobian is a permutation matrix).

    Example:
        >>> import torch
        >>> MaxMin()(torch.tensor([[1.0, 5.0, 3.0, 2.0]])).tolist()
        [[3.0, 5.0, 1.0, 2.0]]
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``cat(max(a, b), min(a, b))`` for ``x = cat(a, b)`` on the last axis."""
        a, b = x.chunk(2, dim=-1)
        return torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=-1)


class LipschitzMLP(nn.Module):
    """1-Lipschitz (in L2) dense classifier: orthogonal linear layers and MaxMin.

    Layers (``self.net``, an ``nn.Sequential``): flatten, linear ``in -> width``, MaxMin,
    ``depth - 1`` times (linear ``width -> width``, MaxMin), linear ``width -> classes``
    (logits). No batch normalisation. It is trained with every weight exactly orthogonal
    (orthonormal columns or rows; PyTorch's ``parametrizations.orthogonal``, see
    :func:`orthogonalize`), so each linear layer has spectral norm 1 up to float
    rounding; after training the weights are stored as plain matrices
    (:func:`unparametrize`) and the certified constant of the logits is recomputed from
    them by :func:`lipschitz_upper_bound` (float64 SVD per layer, inflated). The
    certificate never relies on the training constraint: it uses the constant of the
    stored weights. :func:`~smoothcert.models.load_model` sets ``model.lipschitz`` to the
    value recorded in the manifest and refuses weights whose recomputed bound exceeds it.

    Args:
        input_shape: shape ``(C, H, W)`` of one input (pixels in [0, 1]).
        width: hidden width, even (MaxMin pairs units), >= 2.
        depth: number of hidden layers, >= 1.
        num_classes: number of logits, >= 2.

    Example:
        >>> import torch
        >>> net = LipschitzMLP((1, 4, 4), width=8, depth=2, num_classes=3).eval()
        >>> net(torch.zeros(2, 1, 4, 4)).shape
        torch.Size([2, 3])
    """

    def __init__(
        self, input_shape: tuple[int, int, int], *, width: int, depth: int, num_classes: int
    ) -> None:
        super().__init__()
        if width < 2 or width % 2 or depth < 1 or num_classes < 2:
            raise InvalidParameterError(
                f"width = {width!r}, depth = {depth!r}, num_classes = {num_classes!r} is "
                "invalid; valid: an even width >= 2, depth >= 1, num_classes >= 2"
            )
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.width = width
        layers: list[nn.Module] = [nn.Flatten(), nn.Linear(math.prod(input_shape), width)]
        for _ in range(depth - 1):
            layers += [MaxMin(), nn.Linear(width, width)]
        layers += [MaxMin(), nn.Linear(width, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, num_classes)`` for images ``(B, *input_shape)``."""
        logits: torch.Tensor = self.net(x)
        return logits


class DigitsLipschitzNet(LipschitzMLP):
    """The ``digits_lipschitz`` network: :class:`LipschitzMLP` for 1x8x8 digits.

    Flatten (64), linear 64->128, MaxMin, two (linear 128->128, MaxMin), linear 128->10.

    Example:
        >>> net = DigitsLipschitzNet()
        >>> sum(p.numel() for p in net.parameters())
        42634
    """

    def __init__(self) -> None:
        super().__init__((1, 8, 8), width=128, depth=3, num_classes=10)


class FashionLipschitzNet(LipschitzMLP):
    """The ``fmnist_lipschitz`` network: :class:`LipschitzMLP` for 1x28x28 Fashion-MNIST.

    Flatten (784), linear 784->256, MaxMin, two (linear 256->256, MaxMin), linear
    256->10.

    Example:
        >>> net = FashionLipschitzNet()
        >>> sum(p.numel() for p in net.parameters())
        335114
    """

    def __init__(self) -> None:
        super().__init__((1, 28, 28), width=256, depth=3, num_classes=10)


def orthogonalize(model: nn.Module, *, orthogonal_map: str | None = None) -> nn.Module:
    """Constrain every ``nn.Linear`` weight of ``model`` to be orthogonal (in place).

    Uses ``torch.nn.utils.parametrizations.orthogonal``: the weight is recomputed from
    free parameters at every forward pass as an exactly orthogonal (square) or
    semi-orthogonal (rectangular: orthonormal rows or columns) matrix, up to float
    rounding, so its spectral norm is 1. ``orthogonal_map`` is passed on (None: PyTorch's
    default; ``"cayley"`` is several times faster for wide rectangular layers). Returns
    ``model``.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear) and not parametrize.is_parametrized(module):
            parametrizations.orthogonal(module, orthogonal_map=orthogonal_map)
    return model


def unparametrize(model: nn.Module) -> nn.Module:
    """Replace every parametrized weight by its current value, a plain tensor (in place).

    The state dict then holds the matrices the forward pass uses, which is what the
    certified bound is computed from. Returns ``model``.
    """
    for module in model.modules():
        if parametrize.is_parametrized(module):
            names = list(getattr(module, "parametrizations").keys())  # noqa: B009
            for name in names:
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def spectral_norm_upper(matrix: torch.Tensor | np.ndarray) -> float:
    """Upper bound on the largest singular value of a matrix (float64 SVD, inflated).

    Args:
        matrix: a 2-D tensor or array (any float dtype; converted exactly to float64).

    Returns:
        ``sigma_max * (1 + 1e-9)``, a finite float >= 0.

    Raises:
        InvalidParameterError: if the matrix is not 2-D or not finite.

    Example:
        >>> round(spectral_norm_upper(np.diag([1.0, -3.0])), 6)
        3.0
    """
    arr = matrix.detach().cpu().double().numpy() if isinstance(matrix, torch.Tensor) else matrix
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or not np.all(np.isfinite(arr)):
        raise InvalidParameterError(
            f"matrix of shape {arr.shape} is invalid; valid: a finite 2-D matrix"
        )
    if arr.size == 0:
        return 0.0
    top = float(np.linalg.svd(arr, compute_uv=False)[0])
    return top * (1.0 + _LAYER_SLACK)


def _conv_bound(conv: nn.Conv2d) -> float:
    if conv.groups != 1 or conv.dilation not in ((1, 1), 1) or conv.padding_mode != "zeros":
        raise InvalidParameterError(
            f"layer {conv!r} is invalid for lipschitz_upper_bound; valid: Conv2d with groups=1, "
            "dilation=1 and zero padding"
        )
    if isinstance(conv.padding, str):
        raise InvalidParameterError(
            f"layer {conv!r} is invalid for lipschitz_upper_bound; valid: integer padding"
        )
    weight = conv.weight.detach()
    kh, kw = weight.shape[-2:]
    return sum(spectral_norm_upper(weight[:, :, i, j]) for i in range(kh) for j in range(kw))


def _layer_bound(layer: nn.Module) -> float:
    if isinstance(layer, nn.Sequential):
        return math.prod(_layer_bound(sub) for sub in layer)
    if isinstance(layer, nn.Linear):
        return spectral_norm_upper(layer.weight)
    if isinstance(layer, nn.Conv2d):
        return _conv_bound(layer)
    if isinstance(layer, (MaxMin, nn.ReLU, nn.Flatten, nn.Identity)):
        return 1.0
    if isinstance(layer, nn.Dropout) and not layer.training:
        return 1.0
    raise InvalidParameterError(
        f"layer {type(layer).__name__} is invalid for lipschitz_upper_bound; valid: an "
        "nn.Sequential chain of Linear, Conv2d, ReLU, MaxMin, Flatten, Identity and Dropout "
        "(eval) layers"
    )


def lipschitz_upper_bound(model: nn.Module) -> float:
    """A certified upper bound on the L2 Lipschitz constant of a chain network's output.

    The product of the layers' bounds (module docstring: exact spectral norms for
    ``Linear``, the sum over kernel offsets of the channel matrices' norms for
    ``Conv2d``, 1 for ReLU/MaxMin/Flatten), inflated for rounding.

    Warning:
        For an ordinary network this bound is usually useless: products of layer norms
        overestimate the true constant by orders of magnitude, and a Lipschitz-aware
        radius with such an ``L`` equals Cohen's. It is useful for networks trained to
        be 1-Lipschitz, such as :class:`LipschitzMLP`.

    Args:
        model: an ``nn.Sequential`` chain of supported layers, or a module with a
            ``net`` attribute that is one and whose forward is ``net(x)`` (a
            :class:`LipschitzMLP`).

    Returns:
        The bound (> 0 finite float), in output units per input unit.

    Raises:
        InvalidParameterError: for an unsupported layer or structure (a bound from a
            product of layers would not be sound for it).
    """
    chain = model if isinstance(model, nn.Sequential) else None
    if chain is None and isinstance(model, LipschitzMLP):
        chain = model.net
    if chain is None:
        raise InvalidParameterError(
            f"model of type {type(model).__name__} is invalid for lipschitz_upper_bound; "
            "valid: an nn.Sequential chain (or a LipschitzMLP); a product of layer norms "
            "is not sound for other structures"
        )
    return _layer_bound(chain) * (1.0 + _PRODUCT_SLACK)

"""Bundled small models: architectures, sha256-checked weights, and their training.

The weights ship inside the package (``models/weights/*.pt`` with ``manifest.json``)
and are never downloaded. ``digits_cnn`` is trained on the digits train split with
Gaussian noise at each sigma in :func:`available_sigmas`; inputs are pixels in [0, 1],
so a sigma is in [0, 1]-pixel units. ``listing_filter`` (:class:`ListingFilter`) is
the text+image model of the ``"listings"`` dataset, trained with token substitution
noise at ``beta = 0.7`` and Gaussian image noise at each sigma (see
:mod:`smoothcert.models.train_listings` and ``docs/datasets.md``). Recreate the weights
with ``smoothcert train [--model listing_filter]``
(:func:`smoothcert.models.train.train_all`). ``digits_lipschitz``
(:class:`DigitsLipschitzNet`) and ``fmnist_lipschitz`` (:class:`FashionLipschitzNet`)
are 1-Lipschitz (L2) networks whose loaded model carries ``lipschitz``, the certified
constant of its logits (recorded in the manifest, checked against the weights);
:func:`lipschitz_upper_bound` computes such a bound for any chain network (see
:mod:`smoothcert.models.lipschitz`).

Example:
    >>> from smoothcert.models import available_sigmas, list_models, load_model
    >>> for name in list_models():
    ...     print(name)
    digits_cnn
    digits_lipschitz
    fmnist_cnn
    fmnist_lipschitz
    fmnist_sigma_estimator
    listing_filter
    tabular_mlp
    >>> available_sigmas("digits_cnn")
    (0.25, 0.5, 1.0)
    >>> load_model("listing_filter", sigma=0.25).beta
    0.7
    >>> load_model("digits_cnn", sigma=1.0).training
    False
"""

from smoothcert.models.architectures import (
    DigitsCNN,
    FashionCNN,
    ListingFilter,
    ModelSpec,
    get_model_spec,
    list_models,
)
from smoothcert.models.lipschitz import (
    DigitsLipschitzNet,
    FashionLipschitzNet,
    LipschitzMLP,
    MaxMin,
    lipschitz_upper_bound,
)
from smoothcert.models.loading import (
    WeightsInfo,
    available_sigmas,
    default_weights_dir,
    load_model,
    read_manifest,
    weights_info,
)
from smoothcert.models.train import noisy_accuracy, save_weights, train_all, train_model

__all__ = [
    "DigitsCNN",
    "DigitsLipschitzNet",
    "FashionLipschitzNet",
    "LipschitzMLP",
    "MaxMin",
    "FashionCNN",
    "ListingFilter",
    "ModelSpec",
    "WeightsInfo",
    "available_sigmas",
    "default_weights_dir",
    "get_model_spec",
    "lipschitz_upper_bound",
    "list_models",
    "load_model",
    "noisy_accuracy",
    "read_manifest",
    "save_weights",
    "train_all",
    "train_model",
    "weights_info",
]

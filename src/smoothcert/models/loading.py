"""Loading bundled model weights, checked against a sha256 manifest.

Weight files live in a weights directory (by default ``smoothcert/models/weights/``
inside the installed package) next to ``manifest.json``, which records for every file
the model name, the training sigma and the sha256 of the file. Files are named
``{name}_sigma{sigma}.pt`` (e.g. ``digits_cnn_sigma0.25.pt``) and hold a plain
``state_dict``, read with ``torch.load(..., weights_only=True)``. Nothing is ever
downloaded; missing or altered weights raise :class:`~smoothcert.errors.AssetError`
telling the user to run ``smoothcert train``.

The manifest (``format`` 1) is a JSON object::

    {"format": 1,
     "files": {"digits_cnn_sigma0.25.pt": {"model": "digits_cnn", "sigma": 0.25,
               "sha256": "...", "size_bytes": 291000, "dataset": "digits",
               "training": {...}}}}

A text+image model's entry (``listing_filter``) also records ``"beta"``, the token
substitution probability it was trained with (its weights are keyed by sigma like every
other model; one beta per model). A sigma estimator of dual randomized smoothing
(``fmnist_sigma_estimator``) is keyed by its own smoothing noise ``sigma_e`` and records
``"dual_sigmas"``, the noise levels its outputs index (``[0.25, 0.5, 1.0]``).

Example:
    >>> from smoothcert.models import available_sigmas, load_model
    >>> available_sigmas("digits_cnn")
    (0.25, 0.5, 1.0)
    >>> model = load_model("digits_cnn", sigma=0.25)
    >>> model.training, model.sigma
    (False, 0.25)
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smoothcert._validation import check_positive
from smoothcert.errors import AssetError, InvalidParameterError
from smoothcert.models.architectures import get_model_spec
from smoothcert.sampling.device import check_device

__all__ = [
    "MANIFEST_NAME",
    "WeightsInfo",
    "available_sigmas",
    "default_weights_dir",
    "load_model",
    "read_manifest",
    "sha256_file",
    "weights_filename",
    "weights_info",
]

MANIFEST_NAME = "manifest.json"
"""File name of the manifest inside a weights directory."""

MANIFEST_FORMAT = 1
"""Version of the manifest layout written by :func:`smoothcert.models.train.save_weights`."""

_RETRAIN_HINT = "run `smoothcert train` to (re)create the weights"


def default_weights_dir() -> Path:
    """Return the weights directory shipped inside the package."""
    return Path(__file__).resolve().parent / "weights"


def _resolve_dir(weights_dir: str | os.PathLike[str] | None) -> Path:
    return default_weights_dir() if weights_dir is None else Path(weights_dir)


def weights_filename(name: str, sigma: float) -> str:
    """Return the file name of the weights of model ``name`` trained at ``sigma``.

    Example:
        >>> weights_filename("digits_cnn", 0.5)
        'digits_cnn_sigma0.5.pt'
    """
    return f"{name}_sigma{float(sigma)!r}.pt"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(weights_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read and validate ``manifest.json`` of a weights directory.

    Args:
        weights_dir: directory holding the weights; ``None`` for the bundled one.

    Returns:
        The manifest as a dict with keys ``"format"`` and ``"files"``.

    Raises:
        AssetError: if the manifest is missing, not valid JSON or malformed.
    """
    directory = _resolve_dir(weights_dir)
    path = directory / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AssetError(f"weights manifest {path} is missing; {_RETRAIN_HINT}") from None
    except OSError as err:
        raise AssetError(
            f"weights manifest {path} cannot be read ({err}); {_RETRAIN_HINT}"
        ) from err
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as err:
        raise AssetError(
            f"weights manifest {path} is not valid JSON ({err}); {_RETRAIN_HINT}"
        ) from err
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise AssetError(
            f"weights manifest {path} has an unsupported format (expected format "
            f"{MANIFEST_FORMAT}); {_RETRAIN_HINT}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(entry, dict)
        and isinstance(entry.get("model"), str)
        and isinstance(entry.get("sigma"), int | float)
        and isinstance(entry.get("sha256"), str)
        for entry in files.values()
    ):
        raise AssetError(f"weights manifest {path} is malformed; {_RETRAIN_HINT}")
    return manifest


@dataclass(frozen=True)
class WeightsInfo:
    """Where the weights of one (model, sigma) pair are and what they must hash to.

    Attributes:
        name: model name.
        sigma: standard deviation of the Gaussian training noise, in [0, 1]-pixel units.
        path: path of the weight file.
        sha256: expected hex sha256 of the file (from the manifest).
        metadata: the full manifest entry (training settings, accuracy, ...).
        beta: token substitution probability of the training noise, for text+image
            models (``None`` for image models).
    """

    name: str
    sigma: float
    path: Path
    sha256: str
    metadata: dict[str, Any]
    beta: float | None = None


def available_sigmas(
    name: str = "digits_cnn", *, weights_dir: str | os.PathLike[str] | None = None
) -> tuple[float, ...]:
    """Return the sigmas for which weights of model ``name`` exist, sorted.

    Args:
        name: a name from :func:`~smoothcert.models.list_models`.
        weights_dir: directory holding the weights; ``None`` for the bundled one.

    Returns:
        Training noise levels in [0, 1]-pixel units, increasing. Empty when the
        manifest lists no weights for ``name``.

    Raises:
        InvalidParameterError: if ``name`` is not a bundled model.
        AssetError: if the manifest is missing or malformed.

    Example:
        >>> from smoothcert.models import available_sigmas
        >>> available_sigmas("digits_cnn")
        (0.25, 0.5, 1.0)
    """
    get_model_spec(name)
    files = read_manifest(weights_dir)["files"]
    return tuple(sorted({float(e["sigma"]) for e in files.values() if e["model"] == name}))


def weights_info(
    name: str = "digits_cnn",
    sigma: float = 0.25,
    *,
    weights_dir: str | os.PathLike[str] | None = None,
) -> WeightsInfo:
    """Look up the manifest entry of model ``name`` trained at ``sigma``.

    Args:
        name: a name from :func:`~smoothcert.models.list_models`.
        sigma: training noise level (in [0, 1]-pixel units); must be one of
            :func:`available_sigmas` (compared with a relative tolerance of 1e-9).
        weights_dir: directory holding the weights; ``None`` for the bundled one.

    Returns:
        The :class:`WeightsInfo` (the file itself is not read).

    Raises:
        InvalidParameterError: if ``name`` is unknown, ``sigma`` is not a positive
            finite number, or no weights were trained at ``sigma`` (the message lists
            the available sigmas).
        AssetError: if the manifest is missing or malformed, or lists no weights at
            all for ``name``.
    """
    get_model_spec(name)
    sigma = check_positive(sigma, name="sigma")
    directory = _resolve_dir(weights_dir)
    files = read_manifest(directory)["files"]
    candidates = {fn: e for fn, e in files.items() if e["model"] == name}
    if not candidates:
        raise AssetError(
            f"no weights for model {name!r} in {directory / MANIFEST_NAME}; {_RETRAIN_HINT}"
        )
    for filename, entry in sorted(candidates.items()):
        if math.isclose(float(entry["sigma"]), sigma, rel_tol=1e-9, abs_tol=0.0):
            if Path(filename).name != filename:
                raise AssetError(
                    f"weights manifest entry {filename!r} is not a plain file name; {_RETRAIN_HINT}"
                )
            return WeightsInfo(
                name=name,
                sigma=float(entry["sigma"]),
                path=directory / filename,
                sha256=str(entry["sha256"]).lower(),
                metadata=dict(entry),
                beta=_entry_beta(entry, directory / MANIFEST_NAME),
            )
    choices = sorted({float(e["sigma"]) for e in candidates.values()})
    raise InvalidParameterError(
        f"sigma = {sigma!r} is invalid for model {name!r}; valid choices: {choices} "
        "(train weights for another sigma with `smoothcert train`)"
    )


def _entry_beta(entry: dict[str, Any], path: Path) -> float | None:
    beta = entry.get("beta")
    if beta is None:
        return None
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0.0 < beta < 1.0:
        raise AssetError(
            f"weights manifest {path} has beta = {beta!r} for {entry.get('model')!r}; valid: "
            f"0 < beta < 1; {_RETRAIN_HINT}"
        )
    return float(beta)


def load_model(
    name: str = "digits_cnn",
    sigma: float = 0.25,
    device: str | torch.device = "cpu",
    *,
    weights_dir: str | os.PathLike[str] | None = None,
) -> nn.Module:
    """Load a bundled model trained with Gaussian noise at ``sigma``, in eval mode.

    The weight file's sha256 is checked against the manifest before it is
    deserialised (``torch.load(weights_only=True)``, from the bytes that were hashed).

    Args:
        name: a name from :func:`~smoothcert.models.list_models`.
        sigma: training noise level, in [0, 1]-pixel units; one of
            :func:`available_sigmas`. Certify with the same sigma the model was
            trained at to get the accuracy it was trained for (any sigma is sound).
        device: torch device to move the model to.
        weights_dir: directory holding the weights and ``manifest.json``; ``None`` for
            the weights shipped in the package (e.g. pass the ``out_dir`` given to
            :func:`~smoothcert.models.train.train_all`).

    Returns:
        The model in eval mode on ``device``. It takes pixels in [0, 1] of shape
        ``(B, *input_shape)`` and returns logits ``(B, num_classes)`` (a text+image
        model such as ``listing_filter`` takes ``(tokens, images)``). Attributes
        ``sigma`` (float), ``beta`` (float, text+image models only),
        ``dual_sigmas`` (tuple of floats, sigma estimators of dual randomized
        smoothing only, e.g. ``fmnist_sigma_estimator``: output ``j`` means noise level
        ``dual_sigmas[j]``; ``sigma`` is then the estimator's own smoothing noise
        ``sigma_e``), ``lipschitz`` (float, certified-Lipschitz models only such as
        ``digits_lipschitz``: the certified L2 Lipschitz constant of the logits in
        [0, 1]-pixel input units, from the manifest, checked against the bound
        recomputed from the weights) and ``weights_sha256`` (str) record what was
        loaded.

    Raises:
        InvalidParameterError: for an unknown ``name`` or ``device``, or a ``sigma``
            without weights (the message lists the available sigmas).
        AssetError: if the manifest or weight file is missing, the sha256 does not
            match, or the file does not hold this model's weights. The message says
            to run ``smoothcert train``.

    Example:
        >>> import torch
        >>> from smoothcert.models import load_model
        >>> model = load_model("digits_cnn", sigma=0.5)
        >>> with torch.inference_mode():
        ...     logits = model(torch.rand(4, 1, 8, 8))
        >>> logits.shape
        torch.Size([4, 10])
    """
    spec = get_model_spec(name)
    target = check_device(device)
    info = weights_info(name, sigma, weights_dir=weights_dir)
    try:
        blob = info.path.read_bytes()
    except FileNotFoundError:
        raise AssetError(f"weight file {info.path} is missing; {_RETRAIN_HINT}") from None
    except OSError as err:
        raise AssetError(
            f"weight file {info.path} cannot be read ({err}); {_RETRAIN_HINT}"
        ) from err
    actual = hashlib.sha256(blob).hexdigest()
    if actual != info.sha256:
        raise AssetError(
            f"weight file {info.path} fails its checksum: sha256 {actual} does not match "
            f"{info.sha256} in the manifest (file altered or corrupt); {_RETRAIN_HINT}"
        )
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad asset
        raise AssetError(
            f"weight file {info.path} cannot be loaded ({err}); {_RETRAIN_HINT}"
        ) from err
    model = spec.build()
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise AssetError(
            f"weight file {info.path} does not hold weights of model {name!r} ({err}); "
            f"{_RETRAIN_HINT}"
        ) from err
    model.sigma = info.sigma  # type: ignore[assignment]
    if info.beta is not None:
        model.beta = info.beta  # type: ignore[assignment]
    dual_sigmas = _entry_dual_sigmas(info.metadata, spec.num_classes, info.path)
    if dual_sigmas is not None:
        model.dual_sigmas = dual_sigmas  # type: ignore[assignment]
    lipschitz = _entry_lipschitz(info.metadata, info.path)
    if lipschitz is not None:
        _check_lipschitz_weights(model, lipschitz, info.path)
        model.lipschitz = lipschitz  # type: ignore[assignment]
    model.weights_sha256 = actual  # type: ignore[assignment]
    return model.to(target).eval()


def _entry_lipschitz(entry: dict[str, Any], path: Path) -> float | None:
    """The certified ``lipschitz`` constant of a manifest entry, validated (or None)."""
    raw = entry.get("lipschitz")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw < math.inf:
        raise AssetError(
            f"weights manifest entry of {path.name} has lipschitz = {raw!r}; valid: a finite "
            f"number > 0; {_RETRAIN_HINT}"
        )
    return float(raw)


def _check_lipschitz_weights(model: nn.Module, recorded: float, path: Path) -> None:
    """Recompute the certified bound from the loaded weights; refuse a smaller record."""
    from smoothcert.models.lipschitz import lipschitz_upper_bound

    bound = lipschitz_upper_bound(model)
    if bound > recorded:
        raise AssetError(
            f"weight file {path} has a certified Lipschitz bound {bound!r} above the recorded "
            f"lipschitz = {recorded!r} in the manifest; {_RETRAIN_HINT}"
        )


def _entry_dual_sigmas(
    entry: dict[str, Any], num_classes: int, path: Path
) -> tuple[float, ...] | None:
    """The ``dual_sigmas`` of a sigma estimator's manifest entry, validated (or None)."""
    raw = entry.get("dual_sigmas")
    if raw is None:
        return None
    valid = (
        isinstance(raw, list)
        and len(raw) == num_classes
        and all(
            not isinstance(s, bool) and isinstance(s, int | float) and math.isfinite(s) and s > 0
            for s in raw
        )
        and all(b > a for a, b in zip(raw, raw[1:], strict=False))
    )
    if not valid:
        raise AssetError(
            f"weights manifest entry of {path.name} has dual_sigmas = {raw!r}; valid: a list "
            f"of {num_classes} strictly increasing positive numbers (one per estimator "
            f"output); {_RETRAIN_HINT}"
        )
    return tuple(float(s) for s in raw)

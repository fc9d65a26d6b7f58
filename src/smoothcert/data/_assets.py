"""The data assets shipped inside the package: where they are, their manifest, their check.

Every ``*.npz`` dataset asset in ``data/assets/`` has an entry in ``manifest.json``
(sha256, size, sources); :func:`manifest_entry` reads it and :func:`read_npz_asset`
reads an asset only when its bytes match that sha256. The dataset modules
(:mod:`smoothcert.data.listings`, :mod:`smoothcert.data.tabular`) add their own file
name and rebuild hint, and cache the parsed arrays per directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from smoothcert.errors import AssetError

MANIFEST_NAME = "manifest.json"
"""File name of the manifest inside an assets directory."""


def readonly(array: NDArray[Any]) -> NDArray[Any]:
    """Mark ``array`` read-only in place and return it (datasets hand out shared arrays)."""
    array.setflags(write=False)
    return array


def default_assets_dir() -> Path:
    """Return the directory of the data assets shipped inside the package.

    Example:
        >>> from smoothcert.data._assets import default_assets_dir
        >>> (default_assets_dir() / "manifest.json").is_file()
        True
    """
    return Path(__file__).resolve().parent / "assets"


def resolve_assets_dir(assets_dir: str | os.PathLike[str] | None) -> Path:
    """Return ``assets_dir`` as a path, or the shipped directory for ``None``."""
    return default_assets_dir() if assets_dir is None else Path(assets_dir)


def manifest_entry(
    assets_dir: str | os.PathLike[str] | None, name: str, rebuild_hint: str
) -> dict[str, Any]:
    """Return the manifest entry of asset ``name`` (sha256, size, sources, ...).

    Args:
        assets_dir: directory holding the asset and ``manifest.json``; ``None`` for
            the one shipped in the package.
        name: file name of the asset, e.g. ``"listings_v1.npz"``.
        rebuild_hint: how to get the asset back, appended to every error.

    Returns:
        A copy of the entry (a dict with at least a ``"sha256"`` string).

    Raises:
        AssetError: if the manifest is missing, not JSON, or has no valid entry for
            the asset.

    Example:
        >>> from smoothcert.data._assets import manifest_entry
        >>> len(manifest_entry(None, "fair_v1.npz", "reinstall")["sha256"])
        64
    """
    path = resolve_assets_dir(assets_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AssetError(f"data manifest {path} is missing; {rebuild_hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AssetError(f"data manifest {path} cannot be read ({err}); {rebuild_hint}") from err
    entry = manifest.get("files", {}).get(name) if isinstance(manifest, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise AssetError(f"data manifest {path} has no valid entry for {name}; {rebuild_hint}")
    return dict(entry)


def read_npz_asset(directory: str, name: str, rebuild_hint: str) -> dict[str, NDArray[Any]]:
    """Read, sha256-check and parse the ``.npz`` asset ``name`` of ``directory``.

    Args:
        directory: directory holding the asset and ``manifest.json``.
        name: file name of the asset.
        rebuild_hint: how to get the asset back, appended to every error.

    Returns:
        The arrays of the archive by key, each read-only.

    Raises:
        AssetError: if the manifest or the asset is missing or unreadable, the asset's
            sha256 does not match the manifest, or it is not a valid ``.npz``.

    Example:
        >>> from smoothcert.data._assets import default_assets_dir, read_npz_asset
        >>> arrays = read_npz_asset(str(default_assets_dir()), "fair_v1.npz", "reinstall")
        >>> arrays["labels"].flags.writeable
        False
    """
    entry = manifest_entry(directory, name, rebuild_hint)
    path = Path(directory) / name
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise AssetError(f"dataset asset {path} is missing; {rebuild_hint}") from None
    except OSError as err:
        raise AssetError(f"dataset asset {path} cannot be read ({err}); {rebuild_hint}") from err
    actual = hashlib.sha256(blob).hexdigest()
    expected = str(entry["sha256"]).lower()
    if actual != expected:
        raise AssetError(
            f"dataset asset {path} fails its checksum: sha256 {actual} does not match "
            f"{expected} in the manifest (file altered or corrupt); {rebuild_hint}"
        )
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise AssetError(f"dataset asset {path} cannot be parsed ({err}); {rebuild_hint}") from err
    for array in arrays.values():
        array.setflags(write=False)
    return arrays

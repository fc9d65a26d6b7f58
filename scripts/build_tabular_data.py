"""Build the bundled ``fair`` tabular asset from statsmodels (build time only).

Reads the Fair (1978) extramarital-affairs survey that ships inside statsmodels
(``statsmodels.datasets.fair``, 6,366 rows of the 1974 Redbook survey of married
women; public domain), and writes ``src/smoothcert/data/assets/fair_v1.npz`` and its
sha256 entry in ``src/smoothcert/data/assets/manifest.json``. The run-time loader
(:mod:`smoothcert.data.tabular`) reads only that asset: it never needs pandas or
statsmodels.

Layout (see :mod:`smoothcert.data.tabular` for the meaning of every array):

* 5 categorical fields, each mapped to integer ids ``0..V_f-1`` in increasing order
  of the survey's code: rate_marriage (V = 5), religious (4), educ (6), occupation (6),
  occupation_husb (6);
* 3 continuous columns age, yrs_married, children, standardised with the mean and
  standard deviation (ddof = 0) of the train split;
* label ``affairs > 0`` (1) or ``affairs == 0`` (0);
* a fixed split from ``numpy.random.default_rng(SEED).permutation(6366)``: the first
  1,000 rows of the permutation are the test split, the next 1,000 calibration, the
  rest (4,366) train; the stable index is the row in statsmodels' table.

Run: ``.venv/bin/python scripts/build_tabular_data.py [--out DIR]`` (needs
``pip install statsmodels``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

SEED = 20261202
CATEGORICAL = ("rate_marriage", "religious", "educ", "occupation", "occupation_husb")
CONTINUOUS = ("age", "yrs_married", "children")
SPLITS = ("train", "calibration", "test")
ASSET = "fair_v1.npz"
TEST_SIZE = 1000
CALIBRATION_SIZE = 1000


def build_arrays() -> dict[str, Any]:
    """The asset's arrays, built from the statsmodels copy of the survey."""
    import statsmodels
    import statsmodels.api as sm

    table = sm.datasets.fair.load_pandas().data
    n = len(table)
    order = np.random.default_rng(SEED).permutation(n)
    split = np.zeros(n, dtype=np.int8)  # 0 train
    split[order[:TEST_SIZE]] = 2
    split[order[TEST_SIZE : TEST_SIZE + CALIBRATION_SIZE]] = 1
    ids = np.zeros((n, len(CATEGORICAL)), dtype=np.int64)
    levels: list[np.ndarray] = []
    for j, name in enumerate(CATEGORICAL):
        values = table[name].to_numpy(dtype=np.float64)
        codes = np.unique(values)
        ids[:, j] = np.searchsorted(codes, values)
        levels.append(codes)
    raw = table[list(CONTINUOUS)].to_numpy(dtype=np.float64)
    train = split == 0
    mean = raw[train].mean(axis=0)
    std = raw[train].std(axis=0)
    vocab = np.array([len(c) for c in levels], dtype=np.int64)
    width = int(vocab.max())
    level_table = np.full((len(CATEGORICAL), width), np.nan)
    for j, codes in enumerate(levels):
        level_table[j, : len(codes)] = codes
    return {
        "categorical": ids.astype(np.uint8),
        "continuous": ((raw - mean) / std).astype(np.float32),
        "continuous_raw": raw.astype(np.float32),
        "labels": (table["affairs"].to_numpy() > 0).astype(np.uint8),
        "split": split,
        "indices": np.arange(n, dtype=np.int64),
        "field_vocab_sizes": vocab,
        "field_levels": level_table,
        "field_names": np.array(CATEGORICAL),
        "continuous_names": np.array(CONTINUOUS),
        "continuous_mean": mean,
        "continuous_std": std,
        "statsmodels_version": np.array(statsmodels.__version__),
    }


def main() -> None:
    """Write the asset and its manifest entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1] / "src" / "smoothcert" / "data" / "assets"
    parser.add_argument("--out", type=Path, default=default)
    args = parser.parse_args()
    arrays = build_arrays()
    version = str(arrays.pop("statsmodels_version"))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ASSET
    np.savez_compressed(path, **arrays)
    blob = path.read_bytes()
    manifest_path = args.out / "manifest.json"
    manifest = (
        json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest_path.exists()
        else {"format": 1, "files": {}}
    )
    manifest["files"][ASSET] = {
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size_bytes": len(blob),
        "dataset": "fair",
        "format": "npz (zip, deflate); arrays listed in smoothcert.data.tabular",
        "sources": {"statsmodels": version},
        "seed": SEED,
        "build": "python scripts/build_tabular_data.py",
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path} ({len(blob)} bytes), sha256 {manifest['files'][ASSET]['sha256']}")


if __name__ == "__main__":
    main()

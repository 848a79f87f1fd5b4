"""How much held-out text a model has already seen: sentence and 8-gram overlap with training text.

DESIGN §4 trap 7: evaluation text must be held out at the *sentence* level, and the check must be
able to fail. A first built-in world reused 61-80% of its eval sentences verbatim from the
training split while a check on whole documents reported zero collisions; eval loss then
measured memory of a finite sentence set.

Two measures per held-out set, each the share of the held-out units found in the training text:

- **sentences**: whitespace- and case-normalised sentences (split at ``. ! ?`` and line breaks);
- **8-grams**: runs of 8 lower-cased words, the contamination measure of LM evaluation reports.

Training text is indexed as sorted arrays of 64-bit hashes, so memory is 8 bytes per unit and
the check streams any corpus. :func:`check_overlap` raises :class:`DataError` when a set's
sentence overlap exceeds the allowed share.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tokenfilter.errors import TokenfilterError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+")
NGRAM = 8
# Odd 64-bit multiplier of the rolling word hash (any odd constant spreads the ids).
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


class DataError(TokenfilterError):
    """Held-out data failed a check (e.g. eval text that overlaps the training text)."""


def sentences(text: str) -> list[str]:
    return [" ".join(s.split()).lower() for s in _SENTENCE_END.split(text) if s.strip()]


def _sentence_hash(sentence: str) -> int:
    return int.from_bytes(hashlib.blake2b(sentence.encode("utf-8"), digest_size=8).digest(), "little")


_WORD_HASHES: dict[str, int] = {}


def _word_hash(word: str) -> int:
    h = _WORD_HASHES.get(word)
    if h is None:
        h = _WORD_HASHES[word] = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return h


def _word_hashes(words: list[str]) -> np.ndarray:
    """A 64-bit hash per word (stable across processes, unlike Python's ``hash``; cached, since a
    corpus repeats a small vocabulary)."""
    return np.fromiter((_word_hash(w) for w in words), dtype=np.uint64, count=len(words))


def ngram_hashes(text: str, n: int = NGRAM) -> np.ndarray:
    """One hash per run of ``n`` lower-cased words (a polynomial hash of the word hashes, mod 2^64)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return np.zeros(0, dtype=np.uint64)
    h = _word_hashes(words)
    out = np.zeros(len(words) - n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            out = out * _MULTIPLIER + h[k:len(words) - n + 1 + k]
    return out


class TextIndex:
    """Sorted unique hashes of every sentence and 8-gram of a body of text."""

    def __init__(self) -> None:
        self._sentences: list[np.ndarray] = []
        self._ngrams: list[np.ndarray] = []
        self.sentence_hashes = np.zeros(0, dtype=np.uint64)
        self.ngram_hashes = np.zeros(0, dtype=np.uint64)

    def add(self, text: str) -> None:
        self._sentences.append(np.array([_sentence_hash(s) for s in sentences(text)], dtype=np.uint64))
        self._ngrams.append(ngram_hashes(text))
        if len(self._sentences) >= 4096:
            self._compact()

    def _compact(self) -> None:
        self.sentence_hashes = np.unique(np.concatenate([self.sentence_hashes, *self._sentences]))
        self.ngram_hashes = np.unique(np.concatenate([self.ngram_hashes, *self._ngrams]))
        self._sentences, self._ngrams = [], []

    def finish(self) -> "TextIndex":
        self._compact()
        return self

    def contains_sentence(self, sentence: str) -> bool:
        return _member(np.array([_sentence_hash(sentence)], dtype=np.uint64), self.sentence_hashes)[0]


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    idx = np.searchsorted(sorted_set, values).clip(0, len(sorted_set) - 1)
    return sorted_set[idx] == values


@dataclass
class Overlap:
    """Shares of a held-out set's sentences and 8-grams found in the training text."""

    name: str
    n_documents: int
    n_sentences: int
    sentence_overlap: float
    n_ngrams: int
    ngram_overlap: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def overlap(name: str, texts: Iterable[str], index: TextIndex) -> Overlap:
    n_docs = 0
    sentence_hits = sentence_total = ngram_hits = ngram_total = 0
    for text in texts:
        n_docs += 1
        hashes = np.array([_sentence_hash(s) for s in sentences(text)], dtype=np.uint64)
        sentence_hits += int(_member(hashes, index.sentence_hashes).sum())
        sentence_total += len(hashes)
        grams = ngram_hashes(text)
        ngram_hits += int(_member(grams, index.ngram_hashes).sum())
        ngram_total += len(grams)
    return Overlap(name, n_docs, sentence_total, sentence_hits / max(1, sentence_total), ngram_total,
                   ngram_hits / max(1, ngram_total))


def check_overlap(results: list[Overlap], max_sentence_overlap: float) -> None:
    """Raise :class:`DataError` naming every held-out set whose sentence overlap is too high."""
    bad = [r for r in results if r.sentence_overlap > max_sentence_overlap]
    if bad:
        lines = [f"{r.name}: {100 * r.sentence_overlap:.1f}% of {r.n_sentences} sentences occur in the training text"
                 for r in bad]
        raise DataError("held-out text overlaps the training text (allowed: "
                        f"{100 * max_sentence_overlap:.1f}% of sentences):\n  " + "\n  ".join(lines))


def heldout_overlap(corpus_path: str, heldout: dict[str, str], max_sentence_overlap: float) -> list[Overlap]:
    """Overlap of every held-out corpus file (``{name: parquet path}``) with the training split of
    ``corpus_path``, and of later held-out sets with earlier ones (the attacker's corpus must not
    contain eval text either); raises :class:`DataError` above ``max_sentence_overlap``."""
    from tokenfilter.data.corpus import iter_corpus

    train = TextIndex()
    for row in iter_corpus(corpus_path, ["text"], split="train"):
        train.add(row["text"])
    train.finish()
    results = []
    seen = TextIndex()
    for name, path in heldout.items():
        texts = [row["text"] for row in iter_corpus(path, ["text"])]
        results.append(overlap(name, texts, train))
        if len(seen.sentence_hashes):
            results.append(overlap(f"{name}_vs_earlier_heldout", texts, seen))
        for text in texts:
            seen.add(text)
        seen.finish()
    check_overlap(results, max_sentence_overlap)
    return results

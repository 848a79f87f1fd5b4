"""Coarse labels for token probes: token, sentence or document granularity (paper §6.3, E16).

The paper labels whole documents or sentences with a judge (Claude Sonnet 4; sentences from NLTK's
``sent_tokenize``, judged with document context), lets every token inherit its sentence's or
document's label, trains token probes on the 61M biLM on those labels, and scores them on the
SAE token labels (Fig 25: coarse-label probes are only slightly worse), then filters with them
(Fig 14).

Here a text's sentences are the pieces between the separators of
:data:`tokenfilter.data.overlap._SENTENCE_END` (the project's one sentence splitter), trimmed of
surrounding whitespace. A sentence or document is forget if ``is_forget(text)`` says so (a judge),
or else if at least ``min_share`` of its characters lie in ground-truth forget spans (default 0.3:
the built-in world's document label rule). Tokens inherit a label through the project's one
span→token alignment (:func:`tokenfilter.data.alignment.token_labels_from_spans`): a token is
forget if its characters overlap a forget sentence (or document); zero-width tokens (end-of-text)
never are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from tokenfilter.data.alignment import merge_spans, token_labels_from_spans
from tokenfilter.data.overlap import _SENTENCE_END
from tokenfilter.data.shards import TokenShard
from tokenfilter.data.tokenizer import TextTokenizer

LEVELS = ("token", "sentence", "document")
IsForget = Callable[[str], bool]


def sentence_spans(text: str) -> np.ndarray:
    """int64 (n, 2): character spans [start, end) of the sentences of ``text``, whitespace trimmed,
    empty pieces dropped (the pieces :func:`tokenfilter.data.overlap.sentences` hashes)."""
    spans, start = [], 0
    for sep in [*_SENTENCE_END.finditer(text), None]:
        end = len(text) if sep is None else sep.start()
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            spans.append((start + lead, start + lead + len(stripped)))
        if sep is not None:
            start = sep.end()
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def forget_share(spans: np.ndarray, forget_spans: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """float64 (n,): the share of each span's characters inside the (merged) forget spans."""
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    merged = merge_spans(forget_spans)
    if len(spans) == 0:
        return np.zeros(0)
    if len(merged) == 0:
        return np.zeros(len(spans))
    starts, ends = spans[:, :1], spans[:, 1:]
    overlap = np.clip(np.minimum(ends, merged[None, :, 1]) - np.maximum(starts, merged[None, :, 0]), 0, None)
    return overlap.sum(axis=1) / np.maximum(spans[:, 1] - spans[:, 0], 1)


def token_labels(text: str, offsets: np.ndarray, level: str, forget_spans: Sequence[Sequence[int]] | None = None,
                 is_forget: IsForget | None = None, min_share: float = 0.3, doc_label: bool | None = None
                 ) -> np.ndarray:
    """bool (n_tokens,): the label each token of one document gets at ``level``.

    ``token``: the token overlaps a forget span (needs ``forget_spans``). ``sentence``: its
    sentence is forget. ``document``: the document is forget (``doc_label`` if given, else the
    rule above). Sentences and documents are judged by ``is_forget`` if given, else by their
    share of forget characters (needs ``forget_spans``).
    """
    if level not in LEVELS:
        raise ValueError(f"label level must be one of {LEVELS}, got {level!r}")
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    if level == "token" or (is_forget is None and not (level == "document" and doc_label is not None)):
        if forget_spans is None:
            raise ValueError(f"{level} labels need forget spans (or a judge, is_forget, for sentence/document)")
    if level == "token":
        return token_labels_from_spans(offsets, forget_spans)

    def judged(spans: np.ndarray) -> np.ndarray:
        if is_forget is not None:
            return np.array([bool(is_forget(text[a:b])) for a, b in spans], dtype=bool)
        return forget_share(spans, forget_spans) >= min_share

    if level == "sentence":
        spans = sentence_spans(text)
        return token_labels_from_spans(offsets, spans[judged(spans)]) if len(spans) else np.zeros(len(offsets), bool)
    whole = np.array([[0, len(text)]], dtype=np.int64)
    label = bool(doc_label) if doc_label is not None else bool(judged(whole)[0])
    return token_labels_from_spans(offsets, whole if label else whole[:0])


def labels_for_shard(shard: TokenShard, corpus_path: str | os.PathLike, tokenizer: TextTokenizer, level: str,
                     is_forget: IsForget | None = None, min_share: float = 0.3, use_doc_label: bool = False
                     ) -> np.ndarray:
    """uint8 (n_tokens,): ``level`` labels for every position of a token shard, aligned with it
    (end-of-text tokens 0), for training probes on coarse labels and scoring them on token truth.

    Documents are re-read from the corpus the shard was made from (same split, same order) and
    re-encoded for their character offsets; the ids must equal the shard's, truncation included.
    ``use_doc_label``: document level takes the corpus's ``doc_label`` column (the built-in
    world's ground-truth document label) instead of the share rule.
    """
    from tokenfilter.data.corpus import iter_corpus

    out = np.zeros(shard.n_tokens, dtype=np.uint8)
    max_tokens = shard.meta.get("max_doc_tokens")
    rows = iter_corpus(corpus_path, ["doc_id", "text", "forget_spans", "doc_label"], split=shard.meta.get("split"))
    n_docs = 0
    batch: list[dict] = []

    def flush() -> None:
        nonlocal n_docs
        for row, (ids, offsets) in zip(batch, tokenizer.encode_batch([r["text"] for r in batch])):
            if max_tokens is not None:
                ids, offsets = ids[:max_tokens], offsets[:max_tokens]
            if n_docs >= len(shard.docs):
                raise ValueError(f"{corpus_path} has more documents than the shard {shard.directory}")
            doc = shard.docs[n_docs]
            start, length = int(doc["start"]), int(doc["length"])
            if int(doc["doc_id"]) != row["doc_id"] or length != len(ids) + 1 or \
                    not np.array_equal(np.asarray(shard.tokens[start:start + len(ids)]), ids):
                raise ValueError(f"document {row['doc_id']} of {corpus_path} does not match the shard's document "
                                 f"{int(doc['doc_id'])}: was the shard made from this corpus and tokenizer?")
            doc_label = row["doc_label"] if (use_doc_label and level == "document") else None
            out[start:start + len(ids)] = token_labels(row["text"], offsets, level, row["forget_spans"], is_forget,
                                                       min_share, doc_label)
            n_docs += 1
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) == 512:
            flush()
    flush()
    if n_docs != len(shard.docs):
        raise ValueError(f"{corpus_path} has {n_docs} documents, the shard {shard.directory} {len(shard.docs)}")
    return out

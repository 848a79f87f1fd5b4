"""The document probe (paper §5.3, E3/S6): a linear probe on mean-pooled biLM features.

The paper's document classifier is a probe on the same 224M biLM as the token classifier,
trained on document labels from a judge (Claude Sonnet 4), with features mean-pooled over up to
the first 1024 tokens of the document (the authors' code). It reached F1 0.922 (val) and 0.941
(test); the document filtering arm drops what it flags.

A document's features are read from the same windowed stream as token features
(:mod:`tokenfilter.classify.bilm`), so its first tokens see the end of the previous document as
left context, as they do when the corpus is annotated. Pooling covers the document's text tokens
(its end-of-text token excluded), the first ``max_tokens`` of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tokenfilter.classify.bilm import StreamFeatures, features_at
from tokenfilter.classify.probe import Probe, fit_probe
from tokenfilter.data.shards import TokenShard

# The authors' code pooled over at most this many tokens (its classifier context).
MAX_POOLED_TOKENS = 1024


def pooled_ranges(shard: TokenShard, doc_indices: Sequence[int] | np.ndarray, max_tokens: int = MAX_POOLED_TOKENS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) of the positions each document's features are pooled over: its first
    ``max_tokens`` text tokens (the end-of-text token that closes every document excluded)."""
    docs = shard.docs[np.asarray(doc_indices, dtype=np.int64)]
    starts = docs["start"].astype(np.int64)
    n_text = np.maximum(docs["length"].astype(np.int64) - 1, 0)
    return starts, starts + np.minimum(n_text, max_tokens)


def mean_pool(features: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """float32 (n_docs, dim): the mean of consecutive runs of ``lengths`` rows of ``features``
    (sums in float64); an empty run pools to zeros."""
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.zeros((len(lengths), features.shape[1]), dtype=np.float64)
    filled = lengths > 0
    if filled.any():
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        sums = np.add.reduceat(features.astype(np.float64), offsets[filled], axis=0)
        out[filled] = sums / lengths[filled, None]
    return out.astype(np.float32)


def document_features(extractor: StreamFeatures, shard: TokenShard, doc_indices: Sequence[int] | np.ndarray,
                      max_tokens: int = MAX_POOLED_TOKENS) -> np.ndarray:
    """float32 (n_docs, dim): each document's mean-pooled features (paper §5.3)."""
    starts, stops = pooled_ranges(shard, doc_indices, max_tokens)
    if len(starts) == 0:
        return np.zeros((0, extractor.dim), np.float32)
    positions = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])
    return mean_pool(features_at(extractor, shard.tokens, positions), stops - starts)


def document_truth_labels(shard: TokenShard, share: float = 0.3) -> np.ndarray:
    """Ground-truth document labels of the built-in world: at least ``share`` of the document's
    text tokens are forget tokens. (The world's own ``doc_label`` counts characters; tokens are
    what a shard holds.)"""
    n_text = np.maximum(shard.docs["length"].astype(np.int64) - 1, 1)
    return shard.docs["n_forget"] / n_text >= share


def fit_document_probe(extractor: StreamFeatures, shard: TokenShard, train_docs: np.ndarray, train_labels: np.ndarray,
                       val_docs: np.ndarray, val_labels: np.ndarray, max_tokens: int = MAX_POOLED_TOKENS,
                       layer: int | None = None, **fit_kwargs: Any) -> Probe:
    """Fit a document probe on the documents ``train_docs`` (indices into ``shard.docs``) with
    0/1 labels, C and threshold chosen on ``val_docs`` (:func:`tokenfilter.classify.probe.fit_probe`)."""
    probe = fit_probe(document_features(extractor, shard, train_docs, max_tokens), train_labels,
                      document_features(extractor, shard, val_docs, max_tokens), val_labels, layer=layer, **fit_kwargs)
    probe.info["max_tokens"] = int(max_tokens)
    probe.info["level"] = "document"
    return probe

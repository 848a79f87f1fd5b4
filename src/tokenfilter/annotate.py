"""Per-token forget scores of the pretraining corpus, from a *filter source*.

Every filtering arm reads one float per training token (float16, aligned with the token shard)
and one per document. Only the source differs: ``truth`` reads the built-in world's ground truth;
the classifier stage adds trained classifiers that write the same files.

The ``truth`` score is ``0.5·label + 0.5·(mean label in a ±w window)``. A threshold of 0.5
selects exactly the ground-truth forget tokens, while the window term ranks tokens within each
class, as a contextual classifier's confidence would: tokens deep inside medical passages come
first, then their edges; among retain tokens, those next to medical text come first. Tokens with
equal scores are ordered by a deterministic per-position offset smaller than the step between
score levels, so "filter x% of tokens" thresholds (paper Fig 3) reach x% exactly.

``error_rate`` turns the ground truth into a simulated classifier: each token's label is flipped
with that probability (a fixed draw per token) before scoring, the error model of the paper's
Fig 12 (its best classifier errs on 11% of tokens against its ground truth). The document score
is the document's share of ground-truth forget tokens (a perfect document classifier).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tokenfilter.filtering import position_uniforms
from tokenfilter.io import atomic_directory, save_array, write_json
from tokenfilter.shards import TokenShard


def truth_token_scores(labels: np.ndarray, context_window: int, error_rate: float = 0.0, seed: int = 0) -> np.ndarray:
    """Scores from 0/1 labels (see the module docstring): >= 0.5 exactly where the (possibly
    flipped) label is 1."""
    positions = np.arange(len(labels))
    labels = np.asarray(labels).astype(bool)
    if error_rate > 0:
        labels = labels ^ (position_uniforms(positions, seed) < error_rate)
    labels = labels.astype(np.float64)
    w = context_window
    padded = np.concatenate([np.zeros(w + 1), labels, np.zeros(w)])
    csum = np.cumsum(padded)
    window_mean = (csum[2 * w + 1:] - csum[: len(labels)]) / (2 * w + 1)
    # Score levels are 0.5/(2w+1) apart; an offset below 0.9 of that breaks ties inside a level
    # without reordering levels or moving any token across 0.5.
    step = 0.5 / (2 * w + 1)
    tie_break = 0.9 * step * position_uniforms(positions, seed + 1)
    return (0.5 * labels + 0.5 * window_mean + tie_break).astype(np.float32)


def truth_document_scores(shard: TokenShard) -> np.ndarray:
    """Share of each document's text tokens that are ground-truth forget (EOT not counted)."""
    return (shard.docs["n_forget"] / np.maximum(shard.docs["length"] - 1, 1)).astype(np.float32)


def annotate_truth(shard_dir: str | os.PathLike, out_dir: str | os.PathLike, context_window: int,
                   error_rate: float = 0.0, seed: int = 0) -> dict:
    """Write ``token_scores.bin`` (float16), ``doc_scores.npy`` and ``meta.json`` for a shard."""
    shard = TokenShard.open(shard_dir)
    if shard.labels is None:
        raise ValueError(f"{shard_dir}: the truth filter needs ground-truth labels (built-in corpus only)")
    scores = truth_token_scores(shard.labels, context_window, error_rate, seed)
    # End-of-text tokens are never forget text: keep their score at 0 whatever the window says,
    # so no threshold can remove or mask a document boundary (DESIGN §4 trap 4).
    scores[shard.tokens == shard.meta["special_ids"]["eot"]] = 0.0
    out_dir = Path(out_dir)
    meta = {
        "source": "truth",
        "context_window": context_window,
        "error_rate": error_rate,
        "flagged_at_half": float(np.mean(scores >= 0.5)),
        "n_tokens": shard.n_tokens,
        "n_docs": int(len(shard.docs)),
        "forget_token_fraction": float(shard.labels.mean()),
    }
    with atomic_directory(out_dir) as tmp:
        scores.astype(np.float16).tofile(tmp / "token_scores.bin")
        save_array(tmp / "doc_scores.npy", truth_document_scores(shard))
        write_json(tmp / "meta.json", meta)
    return meta


def open_scores(annotation_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped token scores and the document scores of an annotation directory."""
    annotation_dir = Path(annotation_dir)
    token_scores = np.memmap(annotation_dir / "token_scores.bin", dtype=np.float16, mode="r")
    return token_scores, np.load(annotation_dir / "doc_scores.npy")

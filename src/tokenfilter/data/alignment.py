"""The one span→token alignment of the project.

A token is *forget* if its character span overlaps any forget character span. The same function
turns the built-in world's ground-truth spans into token labels and, later, transfers labels
between tokenisers (SAE labels in the reference model's tokens → the pretraining tokenizer,
paper §5.1: "any token that overlaps a labelled token's character span is labelled forget").
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def merge_spans(spans: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Sort character spans [start, end) and merge overlapping or touching ones; drop empty ones."""
    arr = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    arr = arr[arr[:, 1] > arr[:, 0]]
    if len(arr) == 0:
        return arr
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    merged = [arr[0].copy()]
    for start, end in arr[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append(np.array([start, end]))
    return np.stack(merged)


def token_labels_from_spans(
    offsets: Sequence[Sequence[int]] | np.ndarray, spans: Sequence[Sequence[int]] | np.ndarray
) -> np.ndarray:
    """Label each token whose character span [start, end) overlaps a forget span.

    ``offsets`` holds one (start, end) character span per token, as tokenizers report them.
    Zero-width tokens (special tokens such as end-of-text) are never labelled.
    Returns a boolean array with one entry per token.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    labels = np.zeros(len(offsets), dtype=bool)
    merged = merge_spans(spans)
    if len(merged) == 0 or len(offsets) == 0:
        return labels
    starts, ends = offsets[:, 0], offsets[:, 1]
    # For each token, the last merged span starting before the token ends is the only candidate:
    # merged spans are disjoint and sorted, so an earlier one ends before this one starts.
    idx = np.searchsorted(merged[:, 0], ends, side="left") - 1
    has_candidate = idx >= 0
    candidate_end = np.where(has_candidate, merged[np.clip(idx, 0, None), 1], -1)
    labels = has_candidate & (candidate_end > starts) & (ends > starts)
    return labels


def token_spans_to_char_spans(
    offsets: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[bool] | np.ndarray
) -> np.ndarray:
    """Character spans covered by the labelled tokens, merged; the inverse direction used to carry
    token labels from one tokenizer to another (label → char spans → :func:`token_labels_from_spans`)."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    labels = np.asarray(labels, dtype=bool)
    return merge_spans(offsets[labels])


def overlap_ranges(
    offsets_src: Sequence[Sequence[int]] | np.ndarray, offsets_dst: Sequence[Sequence[int]] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each destination token, the range ``[lo, hi)`` of source tokens whose character spans
    overlap its own: the same overlap rule as :func:`token_labels_from_spans`, in the direction
    that carries per-token *vectors* across tokenizers (a pretrained encoder's features read back
    at the pretraining tokenizer's positions).

    Zero-width source tokens (special tokens) are skipped; a destination token that overlaps no
    source token (whitespace another tokenizer folds into its neighbour) gets the empty range at
    the source token just before it, which :func:`pool_overlapping` reads as that token.
    Both offset arrays must be sorted by start, as tokenizers report them.
    """
    src = np.asarray(offsets_src, dtype=np.int64).reshape(-1, 2)
    dst = np.asarray(offsets_dst, dtype=np.int64).reshape(-1, 2)
    keep = np.nonzero(src[:, 1] > src[:, 0])[0]
    starts, ends = src[keep, 0], src[keep, 1]
    # Source spans are disjoint and sorted, so both ends are monotone and a binary search finds
    # the first source span ending after the token starts and the first starting at/after it ends.
    lo = np.searchsorted(ends, dst[:, 0], side="right")
    hi = np.searchsorted(starts, dst[:, 1], side="left")
    hi = np.maximum(hi, lo)
    empty = hi == lo
    lo_full = np.where(empty, np.clip(lo - 1, 0, max(len(keep) - 1, 0)), lo)
    hi_full = np.where(empty, lo_full, hi)
    if len(keep) == 0:
        return np.zeros(len(dst), np.int64), np.zeros(len(dst), np.int64)
    # Back to indices of the unfiltered source array (kept tokens are increasing).
    lo_idx = keep[np.clip(lo_full, 0, len(keep) - 1)]
    hi_idx = np.where(hi_full > lo_full, keep[np.clip(hi_full - 1, 0, len(keep) - 1)] + 1, lo_idx)
    return lo_idx, hi_idx


def pool_overlapping(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``values`` (source tokens × d) over each range ``[lo, hi)`` of :func:`overlap_ranges`;
    an empty range reads the single row ``lo``. ``keep`` (bool per source token) leaves rows out of
    the means (zero-width tokens inside a range)."""
    values = np.asarray(values, dtype=np.float64)
    weight = np.ones(len(values)) if keep is None else np.asarray(keep, dtype=np.float64)
    csum = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values * weight[:, None], axis=0)])
    count = np.concatenate([[0.0], np.cumsum(weight)])
    total, n = csum[hi] - csum[lo], count[hi] - count[lo]
    single = n == 0
    out = np.where(single[:, None], values[np.clip(lo, 0, len(values) - 1)], total / np.maximum(n, 1)[:, None])
    return out.astype(np.float32)

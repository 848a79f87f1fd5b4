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

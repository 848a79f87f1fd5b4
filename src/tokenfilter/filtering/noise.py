"""Label noise for the label-noise ablation (paper §6.1, Fig 12): which of a filter's flags flip.

``uniform`` noise flips every token's flag with the same probability r, as the authors' code does.
A real classifier does not err uniformly: it errs where the answer is unclear. ``structured`` noise
puts the same expected number of flips where the built-in world's truth says a classifier would
err, the *hard* tokens:

- the edges of forget spans: a token whose ground-truth label differs from a neighbour's (the
  first and last token of a span and the retain tokens beside it);
- ambiguous words: tokens of words whose domain depends on their context (the world marks them).

Flips fill the hard tokens first ("water-filling"): with h the hard share of the corpus, a hard
token flips with probability min(1, r/h) and an easy one with max(0, (r - h)/(1 - h)), so the
expected share of flipped tokens is r either way, and every flip is on a hard token while r <= h.
End-of-text tokens never flip (no arm hides a document boundary). Numpy only.
"""

from __future__ import annotations

import numpy as np

from tokenfilter.errors import ConfigError
from tokenfilter.filtering.draws import position_uniforms

STRUCTURES = ("uniform", "structured")


def hard_tokens(labels: np.ndarray, ambiguous: np.ndarray | None, end_of_text: np.ndarray) -> np.ndarray:
    """Boolean per token: at a forget-span edge or in an ambiguous word, never end-of-text.

    ``labels`` are the ground-truth forget labels of the whole corpus in order (uint8 or bool);
    ``ambiguous`` the world's ambiguous-word marks (None: span edges only)."""
    labels = np.asarray(labels).astype(bool)
    eot = np.asarray(end_of_text, dtype=bool)
    change = labels[1:] != labels[:-1]  # between token i and i+1
    hard = np.zeros(len(labels), dtype=bool)
    hard[1:] |= change
    hard[:-1] |= change
    if ambiguous is not None:
        hard |= np.asarray(ambiguous).astype(bool)
    return hard & ~eot


def flip_probabilities(rate: float, hard_share: float) -> tuple[float, float]:
    """(hard, easy) flip probabilities whose mean over the corpus is ``rate`` (water-filling)."""
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"filtering.noise must be in [0, 1], got {rate}")
    if not 0.0 < hard_share < 1.0:
        raise ValueError(f"structured noise needs a hard-token share in (0, 1), got {hard_share}")
    if rate <= hard_share:
        return rate / hard_share, 0.0
    return 1.0, (rate - hard_share) / (1.0 - hard_share)


def label_flips(positions: np.ndarray, seed: int, rate: float, structure: str = "uniform",
                hard: np.ndarray | None = None, hard_share: float | None = None,
                end_of_text: np.ndarray | None = None) -> np.ndarray:
    """Which tokens at ``positions`` flip their flag (bool, like ``positions``): the same tokens
    every time a position is read (a noisy classifier, not fresh noise per batch).

    ``structured`` needs ``hard`` (the hard-token marks at these positions) and ``hard_share``
    (the share of hard tokens in the whole corpus, which sets the per-class probabilities)."""
    if structure not in STRUCTURES:
        raise ConfigError(f"filtering.noise_structure must be one of {list(STRUCTURES)}, got {structure!r}")
    draws = position_uniforms(positions, seed, "label_noise")
    if structure == "uniform":
        flips = draws < rate
    else:
        if hard is None or hard_share is None:
            raise ValueError("structured label noise needs the hard-token marks and their corpus share")
        p_hard, p_easy = flip_probabilities(rate, hard_share)
        flips = draws < np.where(np.asarray(hard, dtype=bool), p_hard, p_easy)
    if end_of_text is not None:
        flips &= ~np.asarray(end_of_text, dtype=bool)
    return flips

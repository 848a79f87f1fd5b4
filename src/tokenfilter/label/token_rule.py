"""The SAE token rule (paper §5.1) and the transfer of its labels to the pretraining tokenizer.

Paper: "a token is medical if it is ≥4 SD above the mean activation on ≥2 medical latents. Then,
repeated until convergence, a token becomes medical if it has positive activation on ≥1 medical
latent and is adjacent to an already-medical token." The labels are computed in the reference
model's tokens (Gemma 2 for the paper) and carried to the pretraining tokenizer through character
spans: "any token that overlaps a labelled token's character span is labelled forget".

Choices the paper leaves open (shared/reference/paper.md, open question 3):

- The mean and SD of each latent are taken over every non-special token of a corpus sample,
  zeros included (:func:`latent_stats`); the SD is the population SD. The authors' code used a
  Neuronpedia histogram-bin threshold instead.
- A latent with SD 0 (it never varied on the sample) never makes a token "≥ k SD above", and
  neither does a zero activation: otherwise a latent that never fired would have threshold 0 and
  mark every token.
- Special tokens (BOS, EOS, padding; a mask) are never labelled and never bridge two runs of
  labelled tokens, as in the authors' code; EOS between packed documents keeps a label from
  leaking into the next document.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tokenfilter.data.alignment import token_labels_from_spans, token_spans_to_char_spans

ArrayLike = np.ndarray | torch.Tensor


# --- per-latent statistics -----------------------------------------------------------------------

@dataclass
class LatentStats:
    """Streaming mean and SD of each latent, merged batch by batch in float64 (Chan et al.'s
    parallel form of Welford's update), so a corpus sample of any size is one pass and the SD of
    a latent whose mean dwarfs its spread is not lost to cancellation."""

    count: int
    mean: np.ndarray  # (n,) float64
    m2: np.ndarray  # (n,) float64: sum of squared deviations from the mean

    @classmethod
    def empty(cls, n_latents: int) -> "LatentStats":
        return cls(0, np.zeros(n_latents), np.zeros(n_latents))

    def update(self, activations: ArrayLike) -> "LatentStats":
        """Add the rows of ``activations`` (..., n): the tokens to count, special tokens left out."""
        x = _float64(activations)
        x = x.reshape(-1, x.shape[-1])
        if x.shape[1] != len(self.mean):
            raise ValueError(f"activations have {x.shape[1]} latents, the statistics {len(self.mean)}")
        n_batch = len(x)
        if n_batch == 0:
            return self
        batch_mean = x.mean(axis=0)
        batch_m2 = ((x - batch_mean) ** 2).sum(axis=0)
        total = self.count + n_batch
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (n_batch / total)
        self.m2 = self.m2 + batch_m2 + delta**2 * (self.count * n_batch / total)
        self.count = total
        return self

    @property
    def std(self) -> np.ndarray:
        """Population SD of each latent (0 before any token is counted)."""
        return np.sqrt(self.m2 / max(self.count, 1))

    def save(self, path: str | os.PathLike) -> None:
        from tokenfilter.io import atomic_open

        with atomic_open(path, "wb") as f:
            np.savez(f, count=np.int64(self.count), mean=self.mean, m2=self.m2)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatentStats":
        with np.load(path) as data:
            return cls(int(data["count"]), data["mean"], data["m2"])


def latent_stats(batches: Iterable[ArrayLike], n_latents: int | None = None) -> LatentStats:
    """Mean and SD of each latent over the rows of every batch (..., n) of latent activations."""
    stats = None if n_latents is None else LatentStats.empty(n_latents)
    for batch in batches:
        if stats is None:
            stats = LatentStats.empty(batch.shape[-1])
        stats.update(batch)
    if stats is None:
        raise ValueError("no batches: pass n_latents to get empty statistics")
    return stats


def _float64(array: ArrayLike) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().to("cpu", torch.float64).numpy()
    return np.asarray(array, dtype=np.float64)


# --- the token rule ------------------------------------------------------------------------------

def forget_tokens(activations: ArrayLike, mean: ArrayLike, std: ArrayLike, *, k_sd: float = 4.0,
                  min_latents: int = 2, special: ArrayLike | None = None, expand: bool = True) -> torch.Tensor:
    """Forget labels (..., T) from the activations (..., T, n) of the selected forget latents.

    A token is a *seed* if it is at least ``k_sd`` SDs above the latent's mean on at least
    ``min_latents`` latents (paper: 4 SD on ≥2 latents). With ``expand``, labels then grow into
    neighbouring tokens that have a positive activation on at least one latent, until nothing
    changes (:func:`expand_to_neighbours`). ``special`` (..., T) marks tokens that are never
    labelled and never bridge. The last axis before the latents is the sequence axis; leading axes
    are independent sequences. Runs on the activations' device.
    """
    acts = torch.as_tensor(activations)
    if acts.ndim < 2:
        raise ValueError(f"activations must be (..., T, n_latents), got shape {tuple(acts.shape)}")
    acts = acts.float()
    mean_t = torch.as_tensor(_float64(mean), device=acts.device)
    std_t = torch.as_tensor(_float64(std), device=acts.device)
    if mean_t.shape != (acts.shape[-1],) or std_t.shape != (acts.shape[-1],):
        raise ValueError(f"mean and std must have one entry per latent ({acts.shape[-1]})")
    threshold = (mean_t + k_sd * std_t).float()
    hot = (acts > 0) & (acts >= threshold) & (std_t > 0)
    seeds = hot.sum(dim=-1) >= min_latents
    warm = (acts > 0).any(dim=-1)
    if special is not None:
        blocked = torch.as_tensor(special, device=acts.device).bool()
        if blocked.shape != seeds.shape:
            raise ValueError(f"special has shape {tuple(blocked.shape)}, the tokens {tuple(seeds.shape)}")
        seeds &= ~blocked
        warm &= ~blocked
    return expand_to_neighbours(seeds, warm) if expand else seeds


def expand_to_neighbours(seeds: torch.Tensor, warm: torch.Tensor) -> torch.Tensor:
    """The fixed point of "a warm token next to a labelled token becomes labelled", from ``seeds``.

    Computed in one pass instead of one step per token of growth: at the fixed point, a token is
    labelled exactly when it lies in a maximal run of consecutive (warm or seed) tokens that
    contains a seed. (From a seed the label walks along its run one neighbour per step; it cannot
    cross a token that is neither warm nor a seed.) Both masks are (..., T); runs never cross from
    one sequence (row) to the next.
    """
    if seeds.shape != warm.shape:
        raise ValueError(f"seeds {tuple(seeds.shape)} and warm {tuple(warm.shape)} differ in shape")
    if seeds.ndim < 1:
        raise ValueError("seeds and warm must have a sequence axis")
    shape = seeds.shape
    seeds, warm = seeds.bool().reshape(-1, shape[-1]), warm.bool().reshape(-1, shape[-1])
    member = warm | seeds
    if member.numel() == 0:
        return member.reshape(shape)
    previous = torch.cat([torch.zeros_like(member[:, :1]), member[:, :-1]], dim=1)
    starts = (member & ~previous).flatten()
    run = torch.cumsum(starts.long(), 0) - 1  # run index of each position (meaningful where member)
    seeded = torch.zeros(int(starts.sum()) + 1, dtype=torch.bool, device=seeds.device)
    seeded[run[seeds.flatten()]] = True
    labels = member.flatten() & seeded[run.clamp(min=0)]
    return labels.reshape(shape)


# --- carrying labels to another tokenizer --------------------------------------------------------

def retokenize(labels_src: Sequence[bool] | np.ndarray, offsets_src: ArrayLike, offsets_dst: ArrayLike,
               text: str | None = None) -> np.ndarray:
    """Labels of the destination tokens of a text, from the labels of its source tokens.

    A destination token is forget if its character span overlaps the character span of any
    labelled source token (paper §5.1), through the project's one alignment
    (:mod:`tokenfilter.data.alignment`): labels → merged character spans → labels. Both offsets
    are (T, 2) character spans of the *same text*; zero-width (special) tokens carry no label
    either way.

    With ``text``, whitespace at the edges of the labelled character spans is dropped first. A
    tokenizer that glues the space to the next word ("▁fever", " fever") would otherwise label a
    destination token that is only that space (a small BPE splits " fever" into " " + "fever"),
    and carrying labels there and back would grow them. Without ``text`` the paper's rule is
    applied as written.
    """
    labels = np.asarray(labels_src, dtype=bool).reshape(-1)
    offsets_src = np.asarray(offsets_src, dtype=np.int64).reshape(-1, 2)
    if len(labels) != len(offsets_src):
        raise ValueError(f"{len(labels)} labels for {len(offsets_src)} source tokens")
    spans = token_spans_to_char_spans(offsets_src, labels)
    if text is not None:
        spans = np.array([_strip(text, start, end) for start, end in spans], dtype=np.int64).reshape(-1, 2)
    return token_labels_from_spans(np.asarray(offsets_dst, dtype=np.int64), spans)


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) without leading or trailing whitespace (empty if it is all whitespace)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end

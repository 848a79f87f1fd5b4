"""Training windows: fixed-length token windows over the documents a run trains on.

The stream is the concatenation of the kept documents (all of them, or those the document arm
keeps), end-of-text tokens included. Window k covers stream positions [kT, kT + T + 1): T inputs
and, shifted by one, T targets. Windows are visited in a seeded permutation per epoch, and the
window a step reads is a pure function of (seed, step), so a resumed run reads exactly what the
uninterrupted run would have, without saving any sampler state.
"""

from __future__ import annotations

import numpy as np

from tokenfilter.data.shards import TokenShard


class TrainingWindows:
    def __init__(self, shard: TokenShard, kept_docs: np.ndarray | None, seq_len: int, seed: int):
        self.shard = shard
        self.seq_len = seq_len
        self.seed = seed
        docs = shard.docs
        if kept_docs is None or kept_docs.all():
            starts, lengths = np.array([0], np.int64), np.array([shard.n_tokens], np.int64)
        else:
            starts, lengths = docs["start"][kept_docs].astype(np.int64), docs["length"][kept_docs].astype(np.int64)
            # Merge runs of consecutive kept documents into one range: fewer ranges, faster lookup.
            ends = starts + lengths
            new_range = np.concatenate([[True], starts[1:] != ends[:-1]])
            group = np.cumsum(new_range) - 1
            starts = starts[new_range]
            lengths = np.bincount(group, weights=lengths).astype(np.int64)
        self.range_starts = starts
        self.range_offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self.n_stream_tokens = int(lengths.sum())
        self.n_windows = (self.n_stream_tokens - 1) // seq_len
        if self.n_windows < 1:
            raise ValueError(f"{self.n_stream_tokens} kept tokens cannot fill one window of {seq_len + 1}")
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, 7, epoch]).permutation(self.n_windows)}
        return self._orders[epoch]

    def epochs(self, n_windows_read: int) -> float:
        return n_windows_read / self.n_windows

    def positions(self, window_indices: np.ndarray) -> np.ndarray:
        """Corpus positions (B, T+1) of the windows with these global indices."""
        window_indices = np.asarray(window_indices, dtype=np.int64)
        local = np.empty_like(window_indices)
        for epoch in np.unique(window_indices // self.n_windows):
            here = window_indices // self.n_windows == epoch
            local[here] = self._order(int(epoch))[window_indices[here] % self.n_windows]
        virtual = local[:, None] * self.seq_len + np.arange(self.seq_len + 1)[None, :]
        if len(self.range_starts) == 1:
            return virtual + self.range_starts[0]
        r = np.searchsorted(self.range_offsets, virtual, side="right") - 1
        return self.range_starts[r] + (virtual - self.range_offsets[r])

    def tokens(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.shard.tokens[positions.reshape(-1)], dtype=np.int64).reshape(positions.shape)

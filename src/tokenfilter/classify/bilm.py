"""The bidirectional LM (biLM) of the token classifier (paper §5.2, Table 1; E2 and S4 of the digest).

The paper's cheapest good token classifier is a linear probe on a *biLM*: two separate GPTs,
one reading left to right and one reading right to left, with the probe on their concatenated
hidden states. The right half is an ordinary GPT trained on reversed windows of the same corpus
(the authors' ``reverse=True``), so its next-token prediction is the previous token.

Alignment (DESIGN §4 trap 3: the authors' feature extraction fed the *unreversed* tokens to the
right model, which was trained on reversed text, so its features never saw the right context):

- left feature at position t = residual stream of the left model at t on the tokens in order:
  it summarises tokens ≤ t;
- right feature at position t = residual stream of the right model on the *reversed* tokens, at
  the reversed position of t, put back in token order: it summarises tokens ≥ t.

Long token streams are read in windows (:class:`Windowing`): a left window ends at the tokens it
scores and a right window starts at them, so every token gets at least ``window − stride``
tokens of context on its side. Windows cross end-of-text tokens, as the LMs' training windows
do (:mod:`tokenfilter.train.windows`): a document's first tokens are read with the end of the
previous document as left context, exactly the situation the left model was trained in. The
windows sit on a fixed grid of the stream and are batched in fixed groups of that grid, so the
feature of a position is the same bits whatever range of the stream is asked for (annotation is
scattered over parts: :mod:`tokenfilter.classify.annotate`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from tokenfilter.data.shards import TokenShard
from tokenfilter.errors import ConfigError
from tokenfilter.model.hidden import n_blocks, residual_stream, resolve_layers
from tokenfilter.train.loop import Batch, TrainSpec, train
from tokenfilter.train.pretraining import PretrainingBatches

# Arms whose windows carry a loss on every target: reversing them reverses nothing but the order.
# (A token arm's weights and <|hidden|> inputs belong to forward targets and cannot be reversed.)
_REVERSIBLE_ARMS = ("baseline", "document")


# --- training the right half ---------------------------------------------------------------------

class ReversedBatches:
    """The windows of a :class:`PretrainingBatches` source read right to left.

    A window of T + 1 tokens ``w[0..T]`` gives the forward pair (``w[0..T-1]`` → ``w[1..T]``);
    reversed, the window is ``w[T..0]``, so the inputs are the forward targets flipped and the
    targets the forward inputs flipped: position t reads ``w[T-t]`` and predicts ``w[T-t-1]``,
    the previous token. Everything else (data order, epochs, summary) is the wrapped source's.
    """

    def __init__(self, inner: PretrainingBatches):
        if inner.arm not in _REVERSIBLE_ARMS:
            raise ConfigError(f"a right-to-left biLM half trains on unfiltered windows (arm baseline or document), "
                              f"not arm {inner.arm!r}: token-arm weights belong to forward targets")
        self.inner = inner
        self.seq_len = inner.seq_len

    @property
    def n_items(self) -> int:
        return self.inner.n_items

    def model_defaults(self) -> dict[str, Any]:
        return self.inner.model_defaults()

    def start(self, max_steps: int) -> None:
        self.inner.start(max_steps)

    def batch(self, step: int, first: int, count: int) -> Batch:
        forward = self.inner.batch(step, first, count)
        return Batch(inputs=forward.targets.flip(1), targets=forward.inputs.flip(1), weights=forward.weights.flip(1),
                     n_tokens=forward.n_tokens)

    def epochs(self, items_read: int) -> float:
        return self.inner.epochs(items_read)

    def summary(self) -> dict[str, Any]:
        return {**self.inner.summary(), "reversed": True}


def train_half(spec: TrainSpec | dict[str, Any], reverse: bool | None = None) -> dict[str, Any]:
    """Train one half of a biLM through the one training loop; returns the run's summary.

    ``spec.data`` names the token shard (``train_shard``) and optionally ``reverse`` and an arm
    whose windows carry every target (``arm`` baseline, the default, or document with its
    ``scores_dir`` and ``filtering``). ``reverse`` (argument or ``spec.data["reverse"]``) picks the
    right-to-left half; it is written into ``spec.data`` so the two halves of one biLM never share
    a checkpoint fingerprint. The left half is an ordinary baseline LM (the workflow may reuse the
    ladder's same-size baseline instead of training one).
    """
    spec = spec if isinstance(spec, TrainSpec) else TrainSpec.from_dict(spec)
    data = dict(spec.data)
    if reverse is None:
        reverse = bool(data.get("reverse", False))
    elif "reverse" in data and bool(data["reverse"]) != reverse:
        raise ConfigError(f"run {spec.run}: train_half(reverse={reverse}) contradicts "
                          f"spec.data.reverse={data['reverse']}")
    data["reverse"] = reverse
    spec = dataclasses.replace(spec, data=data)
    seq_len = _block_size(spec)
    source: Any = PretrainingBatches(data["train_shard"], data.get("arm", "baseline"), data.get("scores_dir"),
                                     data.get("filtering", {}), seq_len=seq_len, seed=spec.seed, run=spec.run)
    if reverse:
        source = ReversedBatches(source)
    return train(spec, source, extra_summary={"bilm_direction": "right" if reverse else "left"})


# --- a forget-upsampled biLM corpus (paper Table 1: "upsample PubMed") ---------------------------------

def upsampled_documents(lengths: np.ndarray, is_forget: np.ndarray, forget_share: float, seed: int) -> np.ndarray:
    """Indices of documents (repeats allowed, shuffled) in which the forget-domain documents hold
    ``forget_share`` of the tokens: every document once, then forget-domain documents again
    (whole passes, then a random subset for the remainder) until the share is reached. A share
    at or below the corpus's own keeps every document once."""
    lengths = np.asarray(lengths, dtype=np.int64)
    is_forget = np.asarray(is_forget, dtype=bool)
    if not 0 < forget_share < 1:
        raise ConfigError(f"forget_share must be in (0, 1), got {forget_share}")
    forget_tokens, retain_tokens = int(lengths[is_forget].sum()), int(lengths[~is_forget].sum())
    if forget_tokens == 0:
        raise ConfigError("forget_share: the corpus has no forget-domain documents to upsample")
    rng = np.random.default_rng(seed)
    order = [np.arange(len(lengths))]
    # forget tokens needed so that forget / (forget + retain) = share
    extra = forget_share / (1 - forget_share) * retain_tokens - forget_tokens
    forget_ids = np.nonzero(is_forget)[0]
    while extra > 0:
        pass_ids = rng.permutation(forget_ids)
        cum = np.cumsum(lengths[pass_ids])
        take = pass_ids if cum[-1] <= extra else pass_ids[:int(np.searchsorted(cum, extra)) + 1]
        order.append(take)
        extra -= int(lengths[take].sum())
    return rng.permutation(np.concatenate(order))


def upsample_shard(shard_dir: str | os.PathLike, corpus_path: str | os.PathLike, out_dir: str | os.PathLike,
                   forget_share: float, seed: int) -> dict[str, Any]:
    """Write a biLM training shard from the pretraining shard with its forget-domain documents
    (the corpus's ``domain`` column: a source's domain, e.g. PubMed for the paper) upsampled to
    ``forget_share`` of the tokens (:func:`upsampled_documents`); returns the new shard's meta."""
    from tokenfilter.data.corpus import iter_corpus
    from tokenfilter.data.shards import write_documents

    shard = TokenShard.open(shard_dir)
    domain = {int(row["doc_id"]): row["domain"] for row in iter_corpus(corpus_path, ["doc_id", "domain"])}
    missing = [int(d) for d in shard.docs["doc_id"][:1000] if int(d) not in domain]
    if missing:
        raise ConfigError(f"{corpus_path}: documents {missing[:5]} of {shard_dir} are not in the corpus")
    is_forget = np.array([domain[int(d)] == "forget" for d in shard.docs["doc_id"]], dtype=bool)
    picked = upsampled_documents(shard.docs["length"], is_forget, forget_share, seed)
    lengths = np.asarray(shard.docs["length"], dtype=np.int64)
    share_before = float(lengths[is_forget].sum() / lengths.sum())
    share_after = float(lengths[picked][is_forget[picked]].sum() / lengths[picked].sum())
    return write_documents(shard, picked, out_dir, forget_domain_share={"before": share_before, "after": share_after},
                           forget_share_target=forget_share)


def _block_size(spec: TrainSpec) -> int:
    if spec.model and "block_size" in spec.model:
        return int(spec.model["block_size"])
    if spec.init_from != "scratch":
        from tokenfilter.model.checkpoint import read_model_config

        return int(read_model_config(spec.init_from)["block_size"])
    raise ConfigError(f"run {spec.run}: the model needs a block_size")


# --- features of a batch of windows ----------------------------------------------------------------

def _layer_of(model: nn.Module, layer: int) -> int:
    return resolve_layers(layer, n_blocks(model))[0]


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def left_features(left: nn.Module, token_ids: torch.Tensor, layer: int) -> torch.Tensor:
    """(B, T, d): the left model's residual stream after block ``layer``; position t sees tokens ≤ t."""
    resolved = _layer_of(left, layer)
    return residual_stream(left, token_ids.to(_device_of(left)), resolved)[resolved]


def right_features(right: nn.Module, token_ids: torch.Tensor, layer: int) -> torch.Tensor:
    """(B, T, d): the right model's residual stream after block ``layer`` on the *reversed*
    tokens, re-reversed into token order; position t sees tokens ≥ t."""
    resolved = _layer_of(right, layer)
    reversed_ids = token_ids.to(_device_of(right)).flip(1)
    return residual_stream(right, reversed_ids, resolved)[resolved].flip(1)


def bilm_features(left: nn.Module, right: nn.Module, token_ids: torch.Tensor, layer: int) -> torch.Tensor:
    """(B, T, d_left + d_right): left and right features of each position, concatenated (paper §5.2)."""
    return torch.cat([left_features(left, token_ids, layer), right_features(right, token_ids, layer)], dim=-1)


# --- windowed features of a long token stream ----------------------------------------------------------

@dataclass(frozen=True)
class Windowing:
    """How a long token stream is read.

    The stream is cut into *blocks* of ``stride`` tokens on a fixed grid (block k holds positions
    ``[k·stride, (k+1)·stride)``). Each block's features come from windows of up to ``window``
    tokens placed so that every token of the block has at least ``window − stride`` tokens of
    context on the side(s) its model reads. Blocks are computed in groups of ``batch`` consecutive
    blocks (group g holds blocks ``[g·batch, (g+1)·batch)``), one forward pass per group and window
    length, so a position's feature never depends on which range was asked for.
    """

    window: int
    stride: int
    batch: int = 32

    def __post_init__(self) -> None:
        if not 0 < self.stride <= self.window:
            raise ConfigError(f"windowing: need 0 < stride <= window, got stride {self.stride}, window {self.window}")
        if self.batch < 1:
            raise ConfigError(f"windowing: batch must be >= 1, got {self.batch}")

    @classmethod
    def default(cls, block_size: int, window: int | None = None, stride: int | None = None,
                batch: int = 32) -> "Windowing":
        """Windows of the model's block size and half of it as stride: every token has at least
        half a block of context on its side, at twice the cost of reading the stream once."""
        window = block_size if window is None else window
        if window > block_size:
            raise ConfigError(f"windowing: window {window} exceeds the model's block size {block_size}")
        return cls(window, max(1, window // 2) if stride is None else stride, batch)


class StreamFeatures(Protocol):
    """Per-token features of a token stream, block by block on a :class:`Windowing` grid."""

    windowing: Windowing
    dim: int

    def block_features(self, tokens: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        """float32 (n, dim): the features of every position of ``blocks`` (block indices, in
        order), concatenated; the last block of the stream may be short."""


def block_bounds(n_tokens: int, stride: int, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) of grid blocks: block k holds positions [k·stride, (k+1)·stride), cut at the end."""
    starts = np.asarray(blocks, dtype=np.int64) * stride
    return starts, np.minimum(starts + stride, n_tokens)


def centred_windows(n_tokens: int, windowing: Windowing, blocks: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(starts, stops, windows) for a model that reads both sides (an encoder): each block's window
    of up to ``windowing.window`` tokens is centred on the block, so every token has at least
    (window − stride) / 2 tokens of context on each side (fewer at the ends of the stream)."""
    window, stride = windowing.window, windowing.stride
    starts, stops = block_bounds(n_tokens, stride, blocks)
    windows = []
    for lo in starts:
        w_lo = max(0, int(lo) - (window - stride) // 2)
        w_hi = min(n_tokens, w_lo + window)
        windows.append((max(0, w_hi - window), w_hi))
    return starts, stops, windows


def run_windows(model_fn: Callable[[torch.Tensor], torch.Tensor], tokens: np.ndarray,
                windows: list[tuple[int, int]]) -> list[np.ndarray]:
    """``model_fn`` on each window [lo, hi) of ``tokens``, windows of one length stacked into one
    batch (in their given order); returns one float32 (hi − lo, d) array per window."""
    out: list[np.ndarray | None] = [None] * len(windows)
    by_length: dict[int, list[int]] = {}
    for i, (lo, hi) in enumerate(windows):
        by_length.setdefault(hi - lo, []).append(i)
    for length in sorted(by_length):
        members = by_length[length]
        ids = torch.from_numpy(np.stack([np.asarray(tokens[windows[i][0]:windows[i][1]], dtype=np.int64)
                                         for i in members]))
        with torch.no_grad():
            feats = model_fn(ids).float().cpu().numpy()
        for row, i in enumerate(members):
            out[i] = feats[row]
    return out  # type: ignore[return-value]


@dataclass
class BiLM:
    """A biLM as a feature extractor: left and right GPTs, the probed layer and the windowing."""

    left: nn.Module
    right: nn.Module
    layer: int
    windowing: Windowing

    def __post_init__(self) -> None:
        if n_blocks(self.left) != n_blocks(self.right):
            raise ConfigError(f"biLM halves differ in depth ({n_blocks(self.left)} vs {n_blocks(self.right)} blocks)")
        for half in (self.left, self.right):
            block_size = getattr(half.config, "block_size", None)
            if block_size is not None and self.windowing.window > block_size:
                raise ConfigError(f"windowing: window {self.windowing.window} exceeds a biLM half's "
                                  f"block size {block_size}")
        self.left.eval()
        self.right.eval()

    @classmethod
    def load(cls, left_dir: str, right_dir: str, layer: int, window: int | None = None, stride: int | None = None,
             batch: int = 32, device: str | torch.device = "cpu") -> "BiLM":
        from tokenfilter.model.checkpoint import load_model

        left, right = load_model(left_dir, device), load_model(right_dir, device)
        block_size = min(left.config.block_size, right.config.block_size)
        return cls(left, right, layer, Windowing.default(block_size, window, stride, batch))

    @property
    def dim(self) -> int:
        return int(self.left.config.n_embd + self.right.config.n_embd)

    def features(self, token_ids: torch.Tensor) -> torch.Tensor:
        """(B, T, dim) features of a batch of windows (:func:`bilm_features`)."""
        return bilm_features(self.left, self.right, token_ids, self.layer)

    def block_features(self, tokens: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        n, (window, stride) = len(tokens), (self.windowing.window, self.windowing.stride)
        starts, stops = block_bounds(n, stride, blocks)
        # Left windows end at the block's last token; right windows start at its first token.
        left_windows = [(max(0, int(hi) - window), int(hi)) for hi in stops]
        right_windows = [(int(lo), min(n, int(lo) + window)) for lo in starts]
        left = run_windows(lambda ids: left_features(self.left, ids, self.layer), tokens, left_windows)
        right = run_windows(lambda ids: right_features(self.right, ids, self.layer), tokens, right_windows)
        parts = []
        for (lo, hi), (l_lo, _), (r_lo, _), lf, rf in zip(zip(starts, stops), left_windows, right_windows, left, right):
            parts.append(np.concatenate([lf[lo - l_lo: hi - l_lo], rf[lo - r_lo: hi - r_lo]], axis=1))
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, self.dim), np.float32)


def iter_stream_features(extractor: StreamFeatures, tokens: np.ndarray, start: int = 0, stop: int | None = None
                         ) -> Iterator[tuple[int, np.ndarray]]:
    """Features of positions ``[start, stop)`` of ``tokens``, one grid group at a time.

    Yields ``(first, features)``: the features (float32, (n, dim)) of positions
    ``first .. first + n`` of a whole group of the grid, which may begin before ``start`` and end
    after ``stop`` (callers slice). Whole groups are what make the values independent of the range.
    """
    n = len(tokens)
    stop = n if stop is None else stop
    if not 0 <= start <= stop <= n:
        raise ValueError(f"range [{start}, {stop}) is outside a stream of {n} tokens")
    if start == stop:
        return
    stride, batch = extractor.windowing.stride, extractor.windowing.batch
    n_blocks_total = -(-n // stride)
    first_group, last_group = start // stride // batch, (stop - 1) // stride // batch
    for group in range(first_group, last_group + 1):
        blocks = np.arange(group * batch, min((group + 1) * batch, n_blocks_total))
        yield int(blocks[0]) * stride, extractor.block_features(tokens, blocks)


def stream_features(extractor: StreamFeatures, tokens: np.ndarray, start: int = 0, stop: int | None = None
                    ) -> np.ndarray:
    """float32 (stop − start, dim): the features of a contiguous range (grid-exact)."""
    stop = len(tokens) if stop is None else stop
    out = np.empty((stop - start, extractor.dim), dtype=np.float32)
    for first, feats in iter_stream_features(extractor, tokens, start, stop):
        lo, hi = max(start, first), min(stop, first + len(feats))
        out[lo - start: hi - start] = feats[lo - first: hi - first]
    return out


def features_at(extractor: StreamFeatures, tokens: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """float32 (len(positions), dim): the features of arbitrary positions (e.g. a training sample).

    Only the blocks holding the positions are computed, ``windowing.batch`` blocks per forward
    pass; the values equal the grid's up to floating-point reassociation across batch shapes.
    """
    positions = np.asarray(positions, dtype=np.int64)
    out = np.empty((len(positions), extractor.dim), dtype=np.float32)
    if len(positions) == 0:
        return out
    stride, batch = extractor.windowing.stride, extractor.windowing.batch
    blocks = np.unique(positions // stride)
    for i in range(0, len(blocks), batch):
        chunk = blocks[i:i + batch]
        feats = extractor.block_features(tokens, chunk)
        starts, stops = block_bounds(len(tokens), stride, chunk)
        offsets = np.concatenate([[0], np.cumsum(stops - starts)])
        wanted = np.nonzero((positions // stride >= chunk[0]) & (positions // stride <= chunk[-1]))[0]
        k = np.searchsorted(chunk, positions[wanted] // stride)
        out[wanted] = feats[offsets[k] + positions[wanted] - starts[k]]
    return out


def features_of_shard(left: nn.Module, right: nn.Module, shard: TokenShard, layer: int,
                      positions: np.ndarray | None = None, start: int = 0, stop: int | None = None,
                      window: int | None = None, stride: int | None = None, batch: int = 32) -> np.ndarray:
    """biLM features (float32, (n, d_left + d_right)) of a token shard: of ``positions`` if given,
    else of the contiguous range ``[start, stop)``. Windows default to the models' block size
    with half of it as stride (see :class:`Windowing`); they cross end-of-text tokens, as the
    LMs' training windows do."""
    block_size = min(left.config.block_size, right.config.block_size)
    bilm = BiLM(left, right, layer, Windowing.default(block_size, window, stride, batch))
    if positions is not None:
        return features_at(bilm, shard.tokens, positions)
    return stream_features(bilm, shard.tokens, start, stop)

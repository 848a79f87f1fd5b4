"""A pretrained encoder with its own tokenizer as a probe's feature extractor (paper Table 1's
first row: ModernBERT-large, 395M, out of the box and frozen; its probe scored F1 0.794 val /
0.812 test, below the 65M RoBERTa trained on the pretraining corpus and every biLM).

The classifier stage and annotation read token streams of the *pretraining* tokenizer, and a
probe's features must sit at those positions. So each window of pretraining ids is spelled back
into text (:meth:`tokenfilter.data.tokenizer.TextTokenizer.text_with_offsets`: exact bytes, every
id's character span), encoded by the encoder's own tokenizer with its character offsets, run
through the encoder, and its hidden states are carried back to the pretraining ids: each id gets
the mean of the encoder tokens whose character spans overlap its own (the overlap rule of the
project's one span→token alignment, :func:`tokenfilter.data.alignment.overlap_ranges`). The
authors went the other way (scores in ModernBERT's token space, labels retokenised to cl100k
afterwards, authors-code §6.8); carrying features keeps one token grid for every classifier, so
Table 1, annotation and the filters treat this row like any other.

Windows are measured in pretraining tokens and centred on the blocks they score, as for the
masked-LM encoder; the encoder's text of a window must fit its positions (checked, never cut).
The model and tokenizer load from a local directory or, by hub name, from the Hugging Face cache
the download rule filled (jobs run with ``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tokenfilter.classify.bilm import Windowing, centred_windows
from tokenfilter.data.alignment import overlap_ranges, pool_overlapping
from tokenfilter.data.tokenizer import TextTokenizer, load_tokenizer
from tokenfilter.errors import ConfigError
from tokenfilter.model.hidden import n_blocks, residual_stream, resolve_layers

DEFAULT_WINDOW = 512  # pretraining tokens; ModernBERT reads 8192 positions, RoBERTa-style 512


def load_pretrained_encoder(source: str, device: str | torch.device = "cpu") -> tuple[nn.Module, Any]:
    """(encoder, its fast tokenizer) from a local directory or a hub name in the local cache."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        encoder = AutoModel.from_pretrained(source)
    except OSError as exc:
        raise ConfigError(f"classifiers: cannot load the pretrained encoder {source!r} ({exc}); a hub name is "
                          "read from the local Hugging Face cache that `snakemake downloads` fills") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"classifiers: {source!r} has no fast tokenizer; character offsets need one")
    return encoder.to(device).eval(), tokenizer


class PretrainedEncoderFeatures:
    """:class:`tokenfilter.classify.bilm.StreamFeatures` of a pretrained encoder, at the positions
    of the pretraining tokenizer (module docstring)."""

    def __init__(self, encoder: nn.Module, encoder_tokenizer: Any, tokenizer: TextTokenizer, layer: int,
                 windowing: Windowing):
        self.encoder = encoder.eval()
        self.encoder_tokenizer = encoder_tokenizer
        self.tokenizer = tokenizer
        self.layer = resolve_layers(layer, n_blocks(encoder))[0]
        self.windowing = windowing
        self.dim = int(encoder.config.hidden_size)
        self.max_positions = int(getattr(encoder.config, "max_position_embeddings", 0) or 1 << 30)

    @classmethod
    def load(cls, source: str, tokenizer_path: str, layer: int, window: int | None = None, stride: int | None = None,
             batch: int = 32, device: str | torch.device = "cpu") -> "PretrainedEncoderFeatures":
        encoder, encoder_tokenizer = load_pretrained_encoder(source, device)
        window = DEFAULT_WINDOW if window is None else window
        windowing = Windowing(window, max(1, window // 2) if stride is None else stride, batch)
        return cls(encoder, encoder_tokenizer, load_tokenizer(tokenizer_path), layer, windowing)

    def window_features(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        """float32 (len(ids), dim) per window of pretraining ids."""
        texts, spans = zip(*(self.tokenizer.text_with_offsets(ids) for ids in windows))
        encoded = self.encoder_tokenizer(list(texts), return_offsets_mapping=True, padding=True,
                                         add_special_tokens=True, return_tensors="np")
        width = encoded["input_ids"].shape[1]
        if width > self.max_positions:
            raise ConfigError(f"classifiers.windowing: a window of {max(map(len, windows))} pretraining tokens is "
                              f"{width} tokens for the encoder, over its {self.max_positions} positions; "
                              "use a smaller window")
        device = next(self.encoder.parameters()).device
        ids = torch.as_tensor(encoded["input_ids"], device=device)
        mask = torch.as_tensor(encoded["attention_mask"], device=device)
        hidden = residual_stream(self.encoder, ids, self.layer, attention_mask=mask)[self.layer].float().cpu().numpy()
        out = []
        for row, token_spans in enumerate(spans):
            real = encoded["attention_mask"][row].astype(bool)
            offsets = encoded["offset_mapping"][row][real]
            lo, hi = overlap_ranges(offsets, token_spans)
            out.append(pool_overlapping(hidden[row][real], lo, hi, keep=offsets[:, 1] > offsets[:, 0]))
        return out

    def block_features(self, tokens: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        starts, stops, windows = centred_windows(len(tokens), self.windowing, blocks)
        parts = []
        for i in range(0, len(windows), self.windowing.batch):
            group = windows[i:i + self.windowing.batch]
            feats = self.window_features([np.asarray(tokens[lo:hi], dtype=np.int64) for lo, hi in group])
            for (lo, hi), (w_lo, _), f in zip(zip(starts[i:i + len(group)], stops[i:i + len(group)]), group, feats):
                parts.append(f[lo - w_lo: hi - w_lo])
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, self.dim), np.float32)


def pretrained_depth(source: str) -> int:
    """Blocks of a pretrained encoder, from its config alone."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as exc:
        raise ConfigError(f"classifiers: cannot read the config of the pretrained encoder {source!r} ({exc})") from exc
    return int(config.num_hidden_layers)

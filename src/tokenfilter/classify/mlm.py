"""The masked-LM encoder baseline of Table 1 (paper §5.2, E2): a RoBERTa-style encoder trained
from scratch with the one training loop, and its features for probes.

Table 1's RoBERTa row is a probe on RoBERTa-base cut to 6 layers (65M parameters),
MLM-pretrained on FineWeb-Edu (100k iterations, AdamW at a constant 5e-5, β = (0.9, 0.999),
weight decay 0.01): F1 0.808 (val), above ModernBERT-large out of the box and below every biLM,
so a bidirectional encoder of similar size is not what makes the biLM's probe better.

- ``MaskedLMEncoder`` is transformers' ``RobertaForMaskedLM`` with one change: position ids
  default to 0..T−1. RoBERTa numbers positions from ``pad_token_id + 1`` and skips pad tokens,
  which ties the position table to the padding id; our windows are never padded and our
  tokenizers have no pad id, so the encoder has none (``pad_token_id`` None) and positions start
  at 0. The mask token is one id past the data's (padded) vocabulary, so it is never text.
- :class:`MLMObjective` (objective kind ``"mlm"``) masks a fixed share of each window's positions
  (default 15%), replaces 80% of them by the mask token, 10% by a random token and keeps 10%
  (BERT's 80/10/10; RoBERTa's dynamic masking: a new draw each time a window is read), and takes
  the cross-entropy on the masked positions only. Every row masks the same number of positions,
  so the step's masked count is the loop's normaliser (the step's loss-bearing positions) times a
  known ratio, and gradient accumulation still equals one big batch.
- :class:`EncoderFeatures` reads the encoder's hidden state after layer L (the residual stream
  convention of :mod:`tokenfilter.model.hidden`) from windows centred on the tokens they score.

The draws use torch's global CPU generator, which the loop checkpoints, so a resumed run masks
exactly as the uninterrupted one would have. This module is imported by
:func:`tokenfilter.train.objectives.make_objective` when a spec names ``"mlm"``; the model needs
the loop to build it for ``model.architecture: roberta`` (see :func:`build_encoder`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tokenfilter.classify.bilm import Windowing, centred_windows, run_windows
from tokenfilter.data.tokenizer import padded_vocab_size
from tokenfilter.errors import ConfigError
from tokenfilter.model.hidden import n_blocks, residual_stream, resolve_layers
from tokenfilter.train.loop import Batch
from tokenfilter.train.objectives import Objective, register_objective

if TYPE_CHECKING:
    from transformers import RobertaForMaskedLM


# --- the encoder ------------------------------------------------------------------------------------

@functools.cache
def _encoder_class() -> type:
    """``MaskedLMEncoder``: ``RobertaForMaskedLM`` whose position ids default to 0..T−1 (see the
    module docstring). Defined on first use: importing transformers costs seconds, and
    :func:`tokenfilter.train.objectives.make_objective` imports this module for any unknown kind."""
    from transformers import RobertaForMaskedLM

    class MaskedLMEncoder(RobertaForMaskedLM):
        def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                    position_ids: torch.Tensor | None = None, **kwargs: Any):
            kwargs.pop("use_cache", None)  # an encoder has no cache (residual_stream passes it)
            if position_ids is None and input_ids is not None:
                position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                   **kwargs)

    return MaskedLMEncoder


def build_encoder(model_defaults: dict[str, Any], fields: dict[str, Any]) -> "RobertaForMaskedLM":
    """A fresh encoder for a batch source's data (``model_defaults``: its padded vocabulary and
    end-of-text id) and ``fields`` of ``spec.model`` (our names: n_layer, n_embd, n_head,
    block_size; optional intermediate_size (default 4·n_embd), dropout (default 0.1, RoBERTa's),
    init_std (default 0.02)). What the training loop builds for ``architecture: roberta``."""
    from transformers import RobertaConfig

    known = {"n_layer", "n_embd", "n_head", "block_size", "intermediate_size", "dropout", "init_std"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"roberta model: unknown field(s) {unknown}; known: {sorted(known)}")
    data_vocab = int(model_defaults["vocab_size"])
    n_embd = int(fields["n_embd"])
    dropout = float(fields.get("dropout", 0.1))
    config = RobertaConfig(
        vocab_size=padded_vocab_size(data_vocab + 1), hidden_size=n_embd, num_hidden_layers=int(fields["n_layer"]),
        num_attention_heads=int(fields["n_head"]), intermediate_size=int(fields.get("intermediate_size", 4 * n_embd)),
        max_position_embeddings=int(fields["block_size"]), type_vocab_size=1,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        initializer_range=float(fields.get("init_std", 0.02)), pad_token_id=None,
        bos_token_id=model_defaults.get("bos_token_id"), eos_token_id=model_defaults.get("eos_token_id"),
        mask_token_id=data_vocab, data_vocab_size=data_vocab, block_size=int(fields["block_size"]),
        tie_word_embeddings=True,
    )
    return _encoder_class()(config)


def load_encoder(directory: str, device: str | torch.device = "cpu") -> "RobertaForMaskedLM":
    """A saved encoder (the loop's ``model/`` output), in eval mode."""
    return _encoder_class().from_pretrained(directory).to(device).eval()


# --- the objective -----------------------------------------------------------------------------------

class MLMObjective(Objective):
    """Masked-LM cross-entropy over a batch source's input windows (targets are not used)."""

    kind = "mlm"

    def __init__(self, mask_rate: float = 0.15, replace_mask: float = 0.8, replace_random: float = 0.1):
        if not 0 < mask_rate < 1:
            raise ConfigError(f"mlm: mask_rate must be in (0, 1), got {mask_rate}")
        if replace_mask < 0 or replace_random < 0 or replace_mask + replace_random > 1:
            raise ConfigError(f"mlm: replace_mask {replace_mask} and replace_random {replace_random} must be "
                              "shares summing to at most 1")
        self.mask_rate, self.replace_mask, self.replace_random = mask_rate, replace_mask, replace_random
        self.mask_id: int | None = None
        self.random_vocab: int | None = None

    @classmethod
    def from_settings(cls, settings: dict[str, Any], seed: int) -> "MLMObjective":
        known = {"mask_rate", "replace_mask", "replace_random"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"mlm objective: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**settings)

    def setup(self, model: nn.Module, device: torch.device) -> None:
        config = model.config
        self.mask_id = getattr(config, "mask_token_id", None)
        self.random_vocab = getattr(config, "data_vocab_size", None)
        if self.mask_id is None or self.random_vocab is None:
            raise ConfigError("the mlm objective trains an encoder built by build_encoder "
                              f"(model.architecture: roberta); this model ({type(model).__name__}) has no mask token")

    def corrupt(self, inputs: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(corrupted inputs, 0/1 weights of the masked positions, masked positions per row).

        Each row masks k = round(rate · T) of its loss-bearing positions (``weights`` > 0), drawn
        uniformly without replacement; 80% of them become the mask token, 10% a random token,
        10% stay. Draws come from torch's global CPU generator (checkpointed by the loop).
        """
        rows, width = inputs.shape
        k = max(1, int(round(self.mask_rate * width)))
        eligible = (weights > 0).cpu()
        keys = torch.rand(rows, width)
        keys[~eligible] = 2.0  # never chosen while an eligible position is left
        chosen = torch.zeros(rows, width, dtype=torch.bool)
        chosen.scatter_(1, keys.argsort(dim=1)[:, :k], True)
        chosen &= eligible
        kind = torch.rand(rows, width)
        random_ids = torch.randint(0, self.random_vocab, (rows, width))
        corrupted = inputs.cpu().clone()
        to_mask = chosen & (kind < self.replace_mask)
        to_random = chosen & (kind >= self.replace_mask) & (kind < self.replace_mask + self.replace_random)
        corrupted[to_mask] = self.mask_id
        corrupted[to_random] = random_ids[to_random]
        return corrupted.to(inputs.device), chosen.to(device=inputs.device, dtype=torch.float32), k

    def __call__(self, model: nn.Module, batch: Batch, normalizer: torch.Tensor) -> torch.Tensor:
        corrupted, masked, k = self.corrupt(batch.inputs, batch.weights)
        # The loop's normaliser counts the step's loss-bearing positions; each full row of T
        # masks k of them, so the step's masked count is normaliser · k / T.
        masked_normalizer = normalizer * (k / batch.inputs.shape[1])
        return super().__call__(model, Batch(corrupted, batch.inputs, masked, batch.n_tokens, batch.attention_mask),
                                masked_normalizer)


register_objective("mlm", MLMObjective.from_settings)


# --- features ----------------------------------------------------------------------------------------

class EncoderFeatures:
    """An encoder as a feature extractor (:class:`tokenfilter.classify.bilm.StreamFeatures`): the
    hidden state after layer ``layer`` of windows centred on the blocks they score, so every
    token has at least (window − stride) / 2 tokens of context on each side (fewer at the ends of
    the stream)."""

    def __init__(self, encoder: nn.Module, layer: int, windowing: Windowing):
        max_len = int(encoder.config.max_position_embeddings)
        if windowing.window > max_len:
            raise ConfigError(f"windowing: window {windowing.window} exceeds the encoder's {max_len} positions")
        self.encoder = encoder.eval()
        self.layer = resolve_layers(layer, n_blocks(encoder))[0]
        self.windowing = windowing
        self.dim = int(encoder.config.hidden_size)

    @classmethod
    def load(cls, directory: str, layer: int, window: int | None = None, stride: int | None = None, batch: int = 32,
             device: str | torch.device = "cpu") -> "EncoderFeatures":
        encoder = load_encoder(directory, device)
        positions = int(encoder.config.max_position_embeddings)
        return cls(encoder, layer, Windowing.default(positions, window, stride, batch))

    def features(self, token_ids: torch.Tensor) -> torch.Tensor:
        device = next(self.encoder.parameters()).device
        return residual_stream(self.encoder, token_ids.to(device), self.layer)[self.layer]

    def block_features(self, tokens: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        starts, stops, windows = centred_windows(len(tokens), self.windowing, blocks)
        feats = run_windows(self.features, tokens, windows)
        parts = [f[lo - w_lo: hi - w_lo] for (lo, hi), (w_lo, _), f in zip(zip(starts, stops), windows, feats)]
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, self.dim), np.float32)

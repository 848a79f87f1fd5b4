"""The model as a ``transformers`` model: ``AutoModelForCausalLM.from_pretrained``,
``generate()`` and lm-eval's ``HFLM`` work on it once this module is imported (it registers
itself with the Auto classes).

It is :class:`tokenfilter.model.gpt.GPT` with transformers' plumbing: the same modules (the
:class:`~tokenfilter.model.gpt.GPTBody` mixin), the same parameter names, the same initialisation
order and the same checkpoint files. Jobs that only train or score text use the plain
:class:`~tokenfilter.model.gpt.GPT`, which does not pay transformers' import (about 4.5 s of CPU
per job); generation and lm-eval use this class.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache, GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from tokenfilter.model.gpt import ARCHITECTURE, MODEL_TYPE, GPTBody, GPTConfig, check_config
from tokenfilter.model.loss import weighted_cross_entropy


class TokenFilterConfig(PreTrainedConfig):
    """:class:`~tokenfilter.model.gpt.GPTConfig` as a transformers config (the same fields and
    defaults; a test checks they stay the same).

    ``transformers`` turns this class into a keyword-only dataclass, so every field below is a
    constructor argument and is written to ``config.json``.
    """

    model_type = MODEL_TYPE
    # Generic HF code (DynamicCache, generate, lm-eval's max-length detection) asks for these names.
    attribute_map = {
        "hidden_size": "n_embd",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
        "max_position_embeddings": "block_size",
    }

    vocab_size: int = 100288
    n_layer: int = 7
    n_head: int = 8
    n_embd: int = 448
    block_size: int = 2048
    position_encoding: str = "rope"
    rope_theta: float = 10000.0
    mup_base_width: int | None = None
    init_std: float = 0.02
    rms_norm_eps: float = 1e-6
    kernels: str = "reference"
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs):
        check_config(self)
        super().__post_init__(**kwargs)

    head_dim = GPTConfig.head_dim
    mup_width_mult = GPTConfig.mup_width_mult


class TokenFilterForCausalLM(GPTBody, PreTrainedModel, GenerationMixin):
    config_class = TokenFilterConfig
    config: TokenFilterConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["Block"]
    _supports_sdpa = True
    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: TokenFilterConfig) -> None:
        PreTrainedModel.__init__(self, config)
        self._build(config)
        self.post_init()  # weight init (_init_weights below, children first) and tying lm_head to wte
        self.set_kernels(config.kernels)

    def _init_weights(self, module: nn.Module) -> None:
        """Called by ``post_init`` / ``from_pretrained`` on every module (children first). The
        ``transformers.initialization`` functions skip tensors already loaded from a checkpoint."""
        self._init_module(module, init)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    tie_weights = PreTrainedModel.tie_weights

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        """Logits for every position; the loss when ``labels`` is given.

        Args:
            input_ids: (B, T) token ids.
            attention_mask: (B, past + T), 1 for real tokens and 0 for padding (left padding in
                batched generation / evaluation). ``None`` means no padding.
            position_ids: (B, T) positions for RoPE. When ``None`` they count real tokens only
                (from ``attention_mask``), continuing after the cached ones.
            past_key_values: a ``transformers`` cache (``DynamicCache``) of earlier positions.
            use_cache: return the cache, creating one if needed. Off by default (training).
            labels: (B, T) targets, aligned with ``input_ids`` (the shift happens here);
                -100 marks positions without loss.
            output_hidden_states: also return the residual stream, in the transformers
                convention: entry 0 is the embedding output, entry i the output of block i − 1,
                and the last entry the final block's output *after* the final norm. So entry
                L + 1 is "layer L" for every block but the last (DESIGN §4 trap 6);
                :func:`tokenfilter.model.hidden.residual_stream` returns any block's raw output.
            kwargs: ``num_items_in_batch`` (HF Trainer) normalises the loss over a whole step;
                anything else generic HF code passes is ignored.
        """
        config = self.config
        use_cache = use_cache if use_cache is not None else past_key_values is not None
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=config)
        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else getattr(config, "output_hidden_states", False))
        logits, hidden_states = self._run(input_ids, attention_mask, position_ids, past_key_values,
                                          bool(output_hidden_states))

        loss = None
        if labels is not None:
            # Position t predicts token t+1. Shifting the labels left (and giving the last
            # position no target) rather than slicing the logits avoids copying the (B, T, V)
            # logits; -100 targets get weight 0 and a valid dummy id.
            targets = F.pad(labels[:, 1:], (0, 1), value=-100)
            weights = targets != -100
            loss, _ = weighted_cross_entropy(
                logits, targets.masked_fill(~weights, 0), weights, normalizer=kwargs.get("num_items_in_batch")
            )

        return_dict = return_dict if return_dict is not None else config.return_dict
        cache_out = past_key_values if use_cache else None
        if not return_dict:
            output = (logits, cache_out) if use_cache else (logits,)
            if hidden_states is not None:
                output += (hidden_states,)
            return (loss, *output) if loss is not None else output
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=cache_out, hidden_states=hidden_states)


assert TokenFilterForCausalLM.__name__ == ARCHITECTURE
# Importing this module is enough for AutoConfig / AutoModelForCausalLM to know the model.
# exist_ok: importing twice (e.g. importlib.reload) must not fail.
AutoConfig.register(TokenFilterConfig.model_type, TokenFilterConfig, exist_ok=True)
AutoModelForCausalLM.register(TokenFilterConfig, TokenFilterForCausalLM, exist_ok=True)

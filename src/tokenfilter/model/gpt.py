"""The decoder-only transformer trained at every size of the paper's ladder.

One file, read top to bottom (after karpathy/nanoGPT ``model.py``): config, rotary embedding,
attention, MLP, Block, then the model. It is a real ``transformers`` model, so
``save_pretrained`` / ``AutoModelForCausalLM.from_pretrained``, ``generate()`` and lm-eval's
``HFLM`` all work on it once this module is imported (it registers itself with the Auto classes).

Architecture (paper §2 and Table 2, and the authors' code):

- pre-RMSNorm blocks, ``x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))``, final RMSNorm;
- no biases anywhere; fused qkv projection; ReLU² MLP of width 4E;
- input embedding tied to the LM head;
- RoPE on queries and keys along the *sequence* axis. The authors' code rotated along the head
  axis, so their models carried no positional information at all beyond the causal mask;
  ``position_encoding="none"`` reproduces that effective NoPE model;
- optional µP (``mup_base_width``): 1/d attention scale, 1/m output multiplier, 1/sqrt(m) init
  and 1/m learning rate for the hidden matrices, m = n_embd / mup_base_width.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    DynamicCache,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast

from tokenfilter.model.loss import weighted_cross_entropy

# ---------------------------------------------------------------------------------------------
# Config


class TokenFilterConfig(PreTrainedConfig):
    """Shape and knobs of one model. Defaults are the smallest model of the paper's ladder (61M).

    ``transformers`` turns this class into a keyword-only dataclass, so every field below is a
    constructor argument and is written to ``config.json``.
    """

    model_type = "tokenfilter"
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
    block_size: int = 2048  # longest sequence the rotary tables cover
    position_encoding: str = "rope"  # "rope" | "none" (the authors' effective NoPE model)
    rope_theta: float = 10000.0
    mup_base_width: int | None = None  # None: standard parameterisation; else µP base width
    init_std: float = 0.02
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs):
        if self.position_encoding not in ("rope", "none"):
            raise ValueError(f"position_encoding must be 'rope' or 'none', got {self.position_encoding!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        if self.position_encoding == "rope" and (self.n_embd // self.n_head) % 2 != 0:
            raise ValueError("RoPE rotates pairs of channels, so the head size must be even")
        super().__post_init__(**kwargs)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mup_width_mult(self) -> float:
        """µP width multiplier m = n_embd / mup_base_width (1.0 when µP is off)."""
        return 1.0 if self.mup_base_width is None else self.n_embd / self.mup_base_width


def paper_parameter_count(vocab_size: int, n_layer: int, n_embd: int) -> int:
    """Parameters as counted in the paper's Table 2: V·E + L·(12E² + 2E) + E.

    Per block: qkv 3E² + attention output E² + MLP 2·4E² = 12E², plus two RMSNorm weights (2E);
    one final RMSNorm (E); the tied embedding / LM head counted once (V·E).
    """
    return vocab_size * n_embd + n_layer * (12 * n_embd * n_embd + 2 * n_embd) + n_embd


# ---------------------------------------------------------------------------------------------
# Rotary position embedding


def rotary_tables(head_dim: int, max_positions: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, each (max_positions, head_dim // 2), float32.

    Channel pair i of the position-p vector is rotated by p · theta^(-2i / head_dim) (RoFormer).
    """
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + d/2) of ``x`` by the angles in ``cos``/``sin``.

    ``x`` is (..., d); ``cos``/``sin`` are (..., d/2) and broadcast against ``x`` with the
    position axis lined up with the *sequence* axis of ``x``. Then <rope(q, m), rope(k, n)>
    depends only on m - n, which is what makes attention position-aware.
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


# ---------------------------------------------------------------------------------------------
# Layers


class RMSNorm(nn.Module):
    """RMSNorm with a learnable gain and no bias."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TokenFilterConfig, layer_idx: int) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.layer_idx = layer_idx  # which slot of the KV cache is ours
        # One fused matmul for q, k and v is faster than three.
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.c_proj.is_residual_projection = True  # read by _init_weights
        # µP keeps attention logits O(1) as width grows with 1/d instead of 1/sqrt(d)
        # (Yang et al. 2022, §4); None lets SDPA use the standard 1/sqrt(d).
        self.scale = 1.0 / self.head_dim if config.mup_base_width is not None else None

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None,
        is_causal: bool,
        past_key_values: Cache | None,
    ) -> torch.Tensor:
        B, T, E = x.shape
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, self.head_dim)
        qk, v = qkv[:, :, :2], qkv[:, :, 2]
        if rope is not None:
            # cos/sin are (B or 1, T, 1, 1, d/2): one angle per position along the sequence axis
            # (dim 1), shared by q and k and by every head. Rotating q and k in one call halves
            # the number of elementwise kernels.
            qk = apply_rotary(qk, *rope)
        q, k = qk.unbind(dim=2)
        # (B, T, H, d) -> (B, H, T, d), the layout of SDPA and of the KV cache.
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=self.scale)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, E))


class ReLUSquared(torch.autograd.Function):
    """relu(x)², with a hand-written backward.

    Same math as ``F.relu(x).square()``, but autograd runs that backward as a pow-backward
    chain plus threshold-backward (the latter alone profiled at ~5% of a CPU training step);
    d/dx relu(x)² = 2·relu(x) needs only one multiply by the saved relu(x).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        r = F.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> torch.Tensor:
        (r,) = ctx.saved_tensors
        return grad_out * (r + r)


class MLP(nn.Module):
    def __init__(self, config: TokenFilterConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)
        self.c_proj.is_residual_projection = True  # read by _init_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU² (So et al. 2021, "Primer"), as in the authors' code.
        return self.c_proj(ReLUSquared.apply(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: TokenFilterConfig, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = RMSNorm(config.n_embd, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        mask: torch.Tensor | None,
        is_causal: bool,
        past_key_values: Cache | None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, mask, is_causal, past_key_values)
        x = x + self.mlp(self.ln_2(x))
        return x


# ---------------------------------------------------------------------------------------------
# The model


class TokenFilterForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = TokenFilterConfig
    config: TokenFilterConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["Block"]
    _supports_sdpa = True
    _tied_weights_keys = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: TokenFilterConfig) -> None:
        super().__init__(config)
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=RMSNorm(config.n_embd, config.rms_norm_eps),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Rotary tables are computed once here, not per forward. Non-persistent: they are a
        # function of the config, so they stay out of the checkpoint (and _init_weights refills
        # them after from_pretrained, which builds the model on the meta device).
        cos, sin = rotary_tables(config.head_dim, config.block_size, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.post_init()  # weight init (_init_weights below) and tying lm_head to wte

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Called by ``post_init`` / ``from_pretrained`` on every module (children first).

        Leaf modules only: for models outside the ``transformers`` tree, modules without direct
        parameters (Block, MLP, ...) are skipped by ``transformers``. The
        ``transformers.initialization`` functions skip tensors already loaded from a checkpoint.
        """
        config = self.config
        std = config.init_std
        if isinstance(module, nn.Linear):
            if module is self.lm_head:
                if not config.tie_word_embeddings:  # tied: it is wte, initialised as an embedding
                    init.normal_(module.weight, mean=0.0, std=std)
            elif config.mup_base_width is not None:
                # µP: hidden matrices have fan-in ∝ width, so their init variance scales 1/m.
                init.normal_(module.weight, mean=0.0, std=std / math.sqrt(config.mup_width_mult))
            elif getattr(module, "is_residual_projection", False):
                # GPT-2: each of the 2·n_layer writes into the residual stream is scaled down so
                # the stream's variance does not grow with depth.
                init.normal_(module.weight, mean=0.0, std=std / math.sqrt(2 * config.n_layer))
            else:
                init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            init.ones_(module.weight)
        elif module is self.lm_head and not config.tie_word_embeddings:
            init.normal_(module.weight, mean=0.0, std=std)
        elif module is self:
            cos, sin = rotary_tables(config.head_dim, config.block_size, config.rope_theta)
            init.copy_(self.rope_cos, cos)
            init.copy_(self.rope_sin, sin)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

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
        B, T = input_ids.shape
        use_cache = use_cache if use_cache is not None else past_key_values is not None
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=config)
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0

        # A mask with no zeros carries no information; dropping it keeps the fast path
        # (generate() and lm-eval pass all-ones masks for unpadded batches).
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None

        # Which keys each query may see. Fast path: plain causal attention, no mask tensor.
        mask, is_causal = None, False
        if attention_mask is None and past_len == 0:
            is_causal = T > 1
        elif attention_mask is not None or T > 1:
            mask = self._attention_mask(attention_mask, T, past_len, input_ids.device)

        rope = None
        if config.position_encoding == "rope":
            if position_ids is None and attention_mask is not None:
                # Count only real tokens, so a left-padded sequence gets the positions it would
                # have without padding (pad slots get position 0; nobody attends to them).
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
            if position_ids is None:
                if past_len + T > config.block_size:
                    raise ValueError(f"sequence of {past_len + T} tokens exceeds block_size {config.block_size}")
                cos, sin = self.rope_cos[past_len : past_len + T], self.rope_sin[past_len : past_len + T]
            else:
                cos, sin = self.rope_cos[position_ids], self.rope_sin[position_ids]
            # -> (B or 1, T, 1 [q/k], 1 [head], d/2): angles vary along the sequence axis only.
            cos = cos.view(-1, T, 1, 1, cos.size(-1))
            sin = sin.view(-1, T, 1, 1, sin.size(-1))
            x_dtype = self.transformer.wte.weight.dtype
            if torch.is_autocast_enabled(input_ids.device.type):
                x_dtype = torch.get_autocast_dtype(input_ids.device.type)
            rope = (cos.to(x_dtype), sin.to(x_dtype))

        output_hidden_states = (output_hidden_states if output_hidden_states is not None
                                else getattr(config, "output_hidden_states", False))
        hidden_states: tuple[torch.Tensor, ...] | None = () if output_hidden_states else None
        x = self.transformer.wte(input_ids)
        for block in self.transformer.h:
            if hidden_states is not None:
                hidden_states += (x,)
            x = block(x, rope, mask, is_causal, past_key_values)
        x = self.transformer.ln_f(x)
        if hidden_states is not None:
            hidden_states += (x,)
        logits = self.lm_head(x)
        if config.mup_base_width is not None:
            # µP output multiplier 1/m keeps logits O(1) as width grows (Yang et al. 2022).
            logits = logits * (1.0 / config.mup_width_mult)

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

    @staticmethod
    def _attention_mask(
        attention_mask: torch.Tensor | None, T: int, past_len: int, device: torch.device
    ) -> torch.Tensor:
        """Boolean SDPA mask (B or 1, 1, T, past_len + T): True where a query may attend."""
        query_pos = torch.arange(past_len, past_len + T, device=device)[:, None]
        key_pos = torch.arange(past_len + T, device=device)[None, :]
        allowed = key_pos <= query_pos  # causal, offset by the cached length
        if attention_mask is not None:
            allowed = allowed & attention_mask[:, None, None, :].bool()
            # A padding query would otherwise see no key at all and SDPA would return NaN,
            # which later layers would read through V. Letting every query see itself changes
            # nothing for real tokens (they see themselves anyway).
            allowed = allowed | (key_pos == query_pos)
        else:
            allowed = allowed[None, None]
        return allowed

    # --- used by the trainer -----------------------------------------------------------------

    def optimizer_param_groups(self, weight_decay: float) -> list[dict]:
        """Parameter groups for ``torch.optim.AdamW``.

        Each group carries ``lr_scale``; the trainer sets ``lr = base_lr * lr_scale`` every step.
        Under µP the hidden matrices learn at 1/m of the base rate (Adam's update size does not
        shrink with fan-in, so the rate must). Tied parameters appear once.
        """
        hidden, embedding, norms = [], [], []
        for name, param in self.named_parameters():  # deduplicates the tied lm_head / wte
            if param.ndim < 2:
                norms.append(param)
            elif name in ("transformer.wte.weight", "lm_head.weight"):
                embedding.append(param)
            else:
                hidden.append(param)
        return [
            {"name": "hidden_matrices", "params": hidden, "weight_decay": weight_decay,
             "lr_scale": 1.0 / self.config.mup_width_mult},
            {"name": "embedding", "params": embedding, "weight_decay": weight_decay, "lr_scale": 1.0},
            {"name": "norms", "params": norms, "weight_decay": 0.0, "lr_scale": 1.0},
        ]

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6N + 12·L·E·T (PaLM appendix B; nanoGPT's estimate_mfu)."""
        n_params = sum(p.numel() for p in self.parameters())
        return 6.0 * n_params + 12.0 * self.config.n_layer * self.config.n_embd * seq_len


# Importing this module is enough for AutoConfig / AutoModelForCausalLM to know the model.
# exist_ok: importing twice (e.g. importlib.reload) must not fail.
AutoConfig.register(TokenFilterConfig.model_type, TokenFilterConfig, exist_ok=True)
AutoModelForCausalLM.register(TokenFilterConfig, TokenFilterForCausalLM, exist_ok=True)

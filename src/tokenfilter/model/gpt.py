"""The decoder-only transformer trained at every size of the paper's ladder, in plain PyTorch.

One file, read top to bottom (after karpathy/nanoGPT ``model.py``): config, rotary embedding,
attention, MLP, Block, then the model. :class:`GPT` is what every training and evaluation job
builds: importing it costs only ``torch`` (about 2 s of CPU), where a ``transformers`` model
class costs 6.5 s, paid by every job. :class:`tokenfilter.model.hf.TokenFilterForCausalLM` is the
same model as a ``transformers`` ``PreTrainedModel`` (``from_pretrained``, ``generate()``,
lm-eval's ``HFLM``), with the same modules, the same parameter names and the same checkpoint
files: either class loads what the other saved.

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

import contextlib
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from tokenfilter.model.loss import fused_weighted_cross_entropy, linear_weighted_cross_entropy, weighted_cross_entropy

MODEL_TYPE = "tokenfilter"
ARCHITECTURE = "TokenFilterForCausalLM"

# ---------------------------------------------------------------------------------------------
# Config


@dataclass
class GPTConfig:
    """Shape and knobs of one model. Defaults are the smallest model of the paper's ladder (61M).

    The fields are those of :class:`tokenfilter.model.hf.TokenFilterConfig` and of a saved
    model's ``config.json``.
    """

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
    # "reference": plain PyTorch ops; "fused": the same math with fewer passes over memory for
    # training at small widths (RoPE on contiguous head-tiled tables, a fused RMSNorm backward);
    # results agree to floating-point reassociation (docs/benchmarks.md).
    kernels: str = "reference"
    tie_word_embeddings: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        check_config(self)

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mup_width_mult(self) -> float:
        """µP width multiplier m = n_embd / mup_base_width (1.0 when µP is off)."""
        return 1.0 if self.mup_base_width is None else self.n_embd / self.mup_base_width

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GPTConfig":
        """From a ``config.json`` (keys that are not model fields, e.g. transformers', are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_config(config: Any) -> None:
    """The checks every config of this model passes (the plain and the transformers one)."""
    if config.kernels not in ("reference", "fused"):
        raise ValueError(f"kernels must be 'reference' or 'fused', got {config.kernels!r}")
    if config.position_encoding not in ("rope", "none"):
        raise ValueError(f"position_encoding must be 'rope' or 'none', got {config.position_encoding!r}")
    if config.n_embd % config.n_head != 0:
        raise ValueError(f"n_embd {config.n_embd} is not a multiple of n_head {config.n_head}")
    if config.position_encoding == "rope" and (config.n_embd // config.n_head) % 2 != 0:
        raise ValueError("RoPE rotates pairs of channels, so the head size must be even")


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


def full_width_rotary_tables(cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, d) tables for :func:`apply_rotary_full`: ``[cos, cos]`` and ``[−sin, sin]``."""
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def apply_rotary_full(x: torch.Tensor, full_cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """:func:`apply_rotary` for a contiguous ``x`` (..., T, d) with full-width (T, d) tables: the
    same values (x1·cos + x2·(−sin) equals x1·cos − x2·sin, and addition commutes, exactly in
    IEEE), computed as two multiplies and an add whose inner loops run over T·d contiguous values
    instead of d/2-wide strided pieces (the reference layout's broadcasting profiled at ~5% of a
    CPU training step at head size 20)."""
    half = x.size(-1) // 2
    swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    return x * full_cos + swapped * signed_sin


# ---------------------------------------------------------------------------------------------
# Layers


class RMSNorm(nn.Module):
    """RMSNorm with a learnable gain and no bias."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return FusedRMSNorm.apply(x, self.weight, self.eps)
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)

    fused = False  # set by the model from config.kernels


class FusedRMSNorm(torch.autograd.Function):
    """RMSNorm with a hand-written backward: y = x·r·w with r = 1/sqrt(mean(x²) + eps).

    dx = r·(g·w − x·r·mean(g·w·x·r)), dw = Σ g·x·r; autograd of the composite (pow, mean, add,
    rsqrt, two multiplies) runs about twice as many passes over the activations.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        normed = x * r
        ctx.save_for_backward(normed, r, weight)
        return normed * weight

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        normed, r, weight = ctx.saved_tensors
        grad_normed = grad * weight
        dot = (grad_normed * normed).mean(-1, keepdim=True)
        grad_x = (grad_normed - normed * dot) * r
        grad_weight = (grad * normed).reshape(-1, normed.size(-1)).sum(0)
        return grad_x, grad_weight, None


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
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
        past_key_values: Any,
    ) -> torch.Tensor:
        B, T, E = x.shape
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, self.head_dim)
        if rope is not None and rope[0].dim() == 2:
            # Fused path (full-width (T, d) tables: training, no cache, positions 0..T-1). One copy
            # puts q, k and v in SDPA's own (B, H, T, d) layout: its CPU flash kernel runs ~20%
            # faster on contiguous inputs than on transposed views, and the rotation then runs
            # over contiguous (T, d) blocks. unbind's backward stacks the three gradients into one
            # tensor, where slicing q/k and selecting v would zero-fill a qkv-sized tensor twice.
            q, k, v = qkv.permute(2, 0, 3, 1, 4).contiguous().unbind(dim=0)
            q, k = apply_rotary_full(q, *rope), apply_rotary_full(k, *rope)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=self.scale)
            return self.c_proj(y.transpose(1, 2).reshape(B, T, E))
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
        # grad·(2r) in two passes and one allocation; ×2 is exact, so this equals grad·(r + r).
        return grad_out.mul(r).mul_(2)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)
        self.c_proj.is_residual_projection = True  # read by _init_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU² (So et al. 2021, "Primer"), as in the authors' code.
        return self.c_proj(ReLUSquared.apply(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
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
        past_key_values: Any,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, mask, is_causal, past_key_values)
        x = x + self.mlp(self.ln_2(x))
        return x


# ---------------------------------------------------------------------------------------------
# The model


@dataclass
class ModelOutput:
    """What :meth:`GPT.forward` returns (named like transformers' outputs)."""

    logits: torch.Tensor | None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    past_key_values: Any = None
    loss: torch.Tensor | None = None  # when forward() was given targets


class _Init:
    """``torch.nn.init`` with the three functions the init below uses (transformers'
    ``initialization`` module has the same names and skips tensors loaded from a checkpoint)."""

    normal_ = staticmethod(nn.init.normal_)
    ones_ = staticmethod(nn.init.ones_)

    @staticmethod
    def copy_(tensor: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return tensor.copy_(other)


class GPTBody:
    """The modules, initialisation, forward pass and optimizer groups shared by :class:`GPT` and
    the transformers class; a mixin, so both have the same attributes and parameter names."""

    config: Any
    fused_loss = False  # which loss forward() computes from targets; set by set_kernels

    def _build(self, config: Any) -> None:
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=RMSNorm(config.n_embd, config.rms_norm_eps),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Rotary tables are computed once here, not per forward. Non-persistent: they are a
        # function of the config, so they stay out of the checkpoint (and the init refills them
        # after transformers' from_pretrained, which builds the model on the meta device).
        cos, sin = rotary_tables(config.head_dim, config.block_size, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def set_kernels(self, kernels: str, fused_loss: bool | None = None) -> None:
        """Switch between the reference and the fused implementations (same parameters, same math).

        ``fused_loss`` (default: ``kernels == "fused"``) chooses the loss :meth:`GPT.forward`
        computes from targets: the fused head and loss of model/loss.py, or the logits and the
        reference loss. A compiled run fuses the layers' elementwise work itself and so keeps the
        reference layers, but still gains from the fused loss (benchmarks/bench_trainer.py).
        """
        if kernels not in ("reference", "fused"):
            raise ValueError(f"kernels must be 'reference' or 'fused', got {kernels!r}")
        self.config.kernels = kernels
        self.fused_loss = kernels == "fused" if fused_loss is None else bool(fused_loss)
        for module in self.modules():
            if isinstance(module, RMSNorm):
                module.fused = kernels == "fused"

    @torch.no_grad()
    def _init_module(self, module: nn.Module, init: Any = _Init) -> None:
        """Initialise one module's own parameters; called on every module, children first.

        Modules without direct parameters (Block, MLP, ...) are left alone.
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
        elif module is self:
            cos, sin = rotary_tables(config.head_dim, config.block_size, config.rope_theta)
            init.copy_(self.rope_cos, cos)
            init.copy_(self.rope_sin, sin)

    def _run(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        past_key_values: Any,
        output_hidden_states: bool,
        head: bool = True,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """(logits, hidden states) of a batch; with ``head=False`` the final normed hidden state
        instead of the logits. ``past_key_values`` is a transformers cache (the transformers class
        makes one for ``generate()``) or None."""
        config = self.config
        B, T = input_ids.shape
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
            x_dtype = self.transformer.wte.weight.dtype
            if torch.is_autocast_enabled(input_ids.device.type):
                x_dtype = torch.get_autocast_dtype(input_ids.device.type)
            if config.kernels == "fused" and position_ids is None and past_key_values is None:
                # (T, d) tables over the full head width (apply_rotary_full).
                rope = full_width_rotary_tables(cos.to(x_dtype), sin.to(x_dtype))
            else:
                # -> (B or 1, T, 1 [q/k], 1 [head], d/2): angles vary along the sequence axis only.
                cos = cos.view(-1, T, 1, 1, cos.size(-1))
                sin = sin.view(-1, T, 1, 1, sin.size(-1))
                rope = (cos.to(x_dtype), sin.to(x_dtype))

        hidden_states: tuple[torch.Tensor, ...] | None = () if output_hidden_states else None
        x = self.transformer.wte(input_ids)
        for block in self.transformer.h:
            if hidden_states is not None:
                hidden_states += (x,)
            x = block(x, rope, mask, is_causal, past_key_values)
        x = self.transformer.ln_f(x)
        if hidden_states is not None:
            hidden_states += (x,)
        if not head:
            return x, hidden_states
        logits = self.lm_head(x)
        if config.mup_base_width is not None:
            # µP output multiplier 1/m keeps logits O(1) as width grows (Yang et al. 2022).
            logits = logits * (1.0 / config.mup_width_mult)

        return logits, hidden_states

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



    def tie_weights(self, *args: Any, **kwargs: Any) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight


class GPT(GPTBody, nn.Module):
    """The model in plain PyTorch: what training and evaluation jobs build and load."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self._build(config)
        # The same initialisation, in the same order (each module after its children), as the
        # transformers class's post_init: a seed gives the same weights in both.
        for module in _children_first(self):
            self._init_module(module)
        self.tie_weights()
        self.set_kernels(config.kernels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, output_hidden_states: bool = False,
                targets: torch.Tensor | None = None, target_weights: torch.Tensor | None = None,
                normalizer: torch.Tensor | None = None, **unused: Any) -> ModelOutput:
        """Logits (B, T, V) of every position; see :meth:`tokenfilter.model.hf.TokenFilterForCausalLM.forward`
        for the meaning of the arguments (``use_cache`` and the like are accepted and ignored).

        With ``targets`` (B, T), also the training loss of :func:`tokenfilter.model.loss.weighted_cross_entropy`
        (``target_weights`` per target, divided by ``normalizer``; both required). The loss is
        computed here, inside forward, so that a DDP-wrapped model sees the LM head used in its
        own forward pass. With the fused loss, a float32 CPU model under autograd computes the
        head and the loss together and returns no logits.
        """
        if targets is None:
            logits, hidden_states = self._run(input_ids, attention_mask, position_ids, None, output_hidden_states)
            return ModelOutput(logits=logits, hidden_states=hidden_states)
        if target_weights is None or normalizer is None:
            raise ValueError("forward(targets=...) needs target_weights and normalizer too (the training loss "
                             "divides by the whole step's loss-bearing count, which one micro-batch cannot know)")
        weight = self.lm_head.weight
        fused = self.fused_loss and torch.is_grad_enabled()  # the fused losses exist for backward
        if (fused and weight.device.type == "cpu" and weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu")):
            x, hidden_states = self._run(input_ids, attention_mask, position_ids, None, output_hidden_states,
                                         head=False)
            scale = 1.0 / self.config.mup_width_mult if self.config.mup_base_width is not None else 1.0
            loss = linear_weighted_cross_entropy(x, weight, targets, target_weights, normalizer, scale)
            return ModelOutput(logits=None, hidden_states=hidden_states, loss=loss)
        logits, hidden_states = self._run(input_ids, attention_mask, position_ids, None, output_hidden_states)
        if fused:  # GPU / mixed precision: the logits are made, the loss reuses their buffer
            loss = fused_weighted_cross_entropy(logits, targets, target_weights, normalizer)
            logits = None  # the backward overwrites them with the loss's gradient
        else:
            loss, _ = weighted_cross_entropy(logits, targets, target_weights, normalizer=normalizer)
        return ModelOutput(logits=logits, hidden_states=hidden_states, loss=loss)

    # --- the one checkpoint format: config.json + model.safetensors ------------------------------

    def save_pretrained(self, directory: str | os.PathLike, **unused: Any) -> None:
        """Write ``config.json`` and ``model.safetensors`` (the tied LM head stored once), the files
        transformers' ``save_pretrained`` writes and ``from_pretrained`` reads."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()
                 if not (k == "lm_head.weight" and self.config.tie_word_embeddings)}
        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
        config = {"architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, **self.config.to_dict()}
        (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "GPT":
        """A model saved by either class (weights loaded strictly; the tied head needs no copy)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config = GPTConfig.from_dict(json.loads((directory / "config.json").read_text()))
        # A large model is built on the meta device (no throwaway initialisation); a small one on
        # the CPU, because the meta device's function mode imports torch._dynamo, ~2 s in every job
        # that loads a model, far more than building a CPU-scale model costs.
        large = 12 * config.n_layer * config.n_embd ** 2 + config.vocab_size * config.n_embd > 20_000_000
        with torch.device("meta") if large else contextlib.nullcontext():
            model = cls.__new__(cls)
            nn.Module.__init__(model)
            model.config = config
            model._build(config)
        if large:
            model.to_empty(device="cpu")
        cos, sin = rotary_tables(config.head_dim, config.block_size, config.rope_theta)
        model.rope_cos.copy_(cos)
        model.rope_sin.copy_(sin)
        model.tie_weights()
        weights = load_file(directory / "model.safetensors")
        missing, unexpected = model.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
        if missing or unexpected:
            raise ValueError(f"{directory}: weights do not match the model (missing {missing}, unexpected {unexpected})")
        model.tie_weights()
        model.set_kernels(config.kernels)
        return model


def _children_first(module: nn.Module):
    """Every module under ``module`` (itself last), each after its children: transformers' init order."""
    for child in module.children():
        yield from _children_first(child)
    yield module

"""The residual stream after chosen blocks: the one feature extractor of probes, SAEs and RMU.

Convention (DESIGN §4 trap 6): "layer L" is the output of block L (0-based), i.e. the residual
stream after block L's attention and MLP, the *input* of block L + 1. In transformers'
``output_hidden_states`` that is entry ``L + 1`` for every block except the last, whose entry
is taken after the final norm. Gemma Scope's ``blocks.31.hook_resid_post`` is layer 31 here.

The stream is read with forward hooks on the decoder blocks, so the same function serves our
model and any transformers decoder (Llama, Gemma-2, ...), and the last block's raw output is
available too. The forward pass stops after the deepest requested block: a probe on layer 1 of
a 14-layer model pays for two blocks, not fourteen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn


class _StopForward(Exception):
    """Raised from the hook of the deepest requested block to skip the rest of the model."""


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of ``model`` (ours: ``transformer.h``; Llama / Gemma-2 / Mistral:
    ``model.layers``; GPT-2: ``transformer.h``; RoBERTa-style encoders: ``*.encoder.layer``)."""
    for path in ("transformer.h", "model.layers", "model.model.layers", "layers", "roberta.encoder.layer",
                 "encoder.layer", "bert.encoder.layer"):
        module: nn.Module | None = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(f"{type(model).__name__}: cannot find its decoder blocks (looked for transformer.h, "
                     "model.layers and encoder.layer)")


def n_blocks(model: nn.Module) -> int:
    return len(decoder_blocks(model))


def resolve_layers(layers: int | Iterable[int], depth: int) -> list[int]:
    """Layer indices as a sorted list; negative indices count from the last block (−1 = last)."""
    wanted = [layers] if isinstance(layers, int) else list(layers)
    resolved = sorted({layer + depth if layer < 0 else layer for layer in wanted})
    bad = [layer for layer in resolved if not 0 <= layer < depth]
    if bad or not resolved:
        raise ValueError(f"layers {wanted} out of range for a model with {depth} blocks (0..{depth - 1})")
    return resolved


def residual_stream(model: nn.Module, input_ids: torch.Tensor, layers: int | Sequence[int],
                    attention_mask: torch.Tensor | None = None, grad: bool = False) -> dict[int, torch.Tensor]:
    """{layer: (B, T, d) residual stream after block ``layer``} for a batch of token ids.

    ``grad=True`` keeps the autograd graph (RMU trains through it); otherwise no graph is built.
    """
    # A DDP or torch.compile wrapper runs the wrapped module: hook that one's blocks.
    inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None) or model
    blocks = decoder_blocks(inner)
    wanted = resolve_layers(layers, len(blocks))
    deepest = wanted[-1]
    out: dict[int, torch.Tensor] = {}

    def hook(index: int):
        def record(module, args, output):
            out[index] = output[0] if isinstance(output, tuple) else output
            if index == deepest:
                raise _StopForward
        return record

    handles = [blocks[i].register_forward_hook(hook(i)) for i in wanted]
    try:
        with torch.enable_grad() if grad else torch.no_grad():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return out

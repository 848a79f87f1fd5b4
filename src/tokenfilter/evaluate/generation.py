"""Sampling free-response answers from a chat-tuned model (paper E8, E12, E13).

The paper samples each question once per model with temperature 0.8, no top-k, at most 128 new
tokens, from the ChatML prompt ``<|im_start|>user\\n{q}<|im_end|>\\n<|im_start|>assistant\\n``
([C] ``sample-multimedqa.py``), and cuts the answer at ``<|im_end|>``. Here the same, batched
through ``transformers``' ``generate()`` of :class:`tokenfilter.model.hf.TokenFilterForCausalLM`
with *left* padding and an attention mask (the authors' sampler left-padded without a mask, so
their short prompts attended to padding), and a KV cache.

Sampling is deterministic given the seed and the batch size: each batch draws from a torch
generator state seeded by (seed, index of its first question), inside ``torch.random.fork_rng``
so the caller's random state is untouched. An answer stops at ``<|im_end|>`` or end-of-text
(neither is part of its text); special tokens the model emits before that stay in the text
(``<|refusal|>`` is what the token variant of refusal training is scored on).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenfilter.data.tokenizer import TextTokenizer
from tokenfilter.posttrain.formats import chat_prompt

TEMPERATURE = 0.8  # paper E8
MAX_NEW_TOKENS = 128  # paper E8, Table 5


@dataclass(frozen=True)
class Generation:
    """One sampled answer: its text (cut before the stop token), the generated ids (the same cut)
    and whether it stopped by itself (False: it ran out of new tokens)."""

    question: str
    text: str
    token_ids: tuple[int, ...]
    finished: bool


def _batch_seed(seed: int, first: int) -> int:
    """A torch seed for the batch starting at question ``first``; independent streams per batch."""
    return int(np.random.SeedSequence([seed, first]).generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))


def _left_pad(prompts: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        attention[row, width - len(prompt):] = 1
    return ids, attention


@torch.no_grad()
def generate_answers(model, tokenizer: TextTokenizer, questions: Sequence[str], seed: int,
                     temperature: float = TEMPERATURE, max_new_tokens: int = MAX_NEW_TOKENS,
                     batch_size: int = 16) -> list[Generation]:
    """Sample one answer per question from a ``transformers`` causal LM (``load_hf_model``).

    ``temperature`` 0 is greedy decoding. New tokens are also bounded by the model's context: a
    batch whose longest prompt is ``P`` tokens gets at most ``block_size - P`` of them (a prompt
    that leaves no room is an error, naming the question).
    """
    special = tokenizer.special_ids
    stop = [special["im_end"], special["eot"]]
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else special["eot"]
    context = int(getattr(model.config, "block_size", 0) or getattr(model.config, "max_position_embeddings"))
    device = next(model.parameters()).device
    prompts = [chat_prompt(tokenizer, q) for q in questions]
    for question, prompt in zip(questions, prompts):
        if len(prompt) >= context:
            raise ValueError(f"the prompt of {question[:80]!r} has {len(prompt)} tokens; the model's context is "
                             f"{context}, which leaves no room for an answer")
    sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0} if temperature > 0 \
        else {"do_sample": False}
    model.eval()
    out: list[Generation] = []
    for first in range(0, len(prompts), batch_size):
        batch = prompts[first:first + batch_size]
        ids, attention = _left_pad(batch, pad_id)
        width = ids.shape[1]
        budget = min(max_new_tokens, context - width)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(_batch_seed(seed, first))
            generated = model.generate(input_ids=ids.to(device), attention_mask=attention.to(device),
                                       max_new_tokens=budget, eos_token_id=stop, pad_token_id=pad_id,
                                       use_cache=True, **sampling)
        for row, question in enumerate(questions[first:first + batch_size]):
            new = generated[row, width:].tolist()
            cut = next((i for i, token in enumerate(new) if token in stop), None)
            kept = new if cut is None else new[:cut]
            out.append(Generation(question, tokenizer.decode(kept), tuple(kept), cut is not None))
    return out


def generate_file(model_dir: str | os.PathLike, tokenizer_path: str | os.PathLike,
                  questions_path: str | os.PathLike, out_path: str | os.PathLike, seeds: Sequence[int],
                  limit: int | None = None, temperature: float = TEMPERATURE, max_new_tokens: int = MAX_NEW_TOKENS,
                  batch_size: int = 16, device: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Answer every question of a JSON-lines file once per seed; write the answers as JSON lines.

    Each input line needs ``question`` (``prompt`` is accepted too, as in ``refusal.jsonl``); all its
    fields are kept in the output, plus ``seed``, ``response`` (the sampled answer),
    ``response_ids`` (its token ids) and ``finished``. (``response``, not ``answer``: the built-in
    free-response items already use ``answer`` for the expected object.)
    ``limit`` keeps the first questions only. Returns a summary.
    """
    from tokenfilter.data.tokenizer import load_tokenizer
    from tokenfilter.io import read_jsonl, write_jsonl
    from tokenfilter.model.checkpoint import load_hf_model

    if threads:
        torch.set_num_threads(threads)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(tokenizer_path)
    model = load_hf_model(model_dir, device)
    items = read_jsonl(questions_path)[:limit]
    questions = [item.get("question", item.get("prompt")) for item in items]
    if any(q is None for q in questions):
        raise ValueError(f"{questions_path}: every line needs a 'question' (or 'prompt') field")
    records = []
    for seed in seeds:
        for item, answer in zip(items, generate_answers(model, tokenizer, questions, seed, temperature,
                                                        max_new_tokens, batch_size)):
            fields = asdict(answer)
            records.append({**item, "question": fields["question"], "seed": int(seed), "response": fields["text"],
                            "response_ids": list(fields["token_ids"]), "finished": fields["finished"]})
    write_jsonl(out_path, records)
    return {"model": str(Path(model_dir)), "questions": len(items), "seeds": [int(s) for s in seeds],
            "answers": len(records), "finished": sum(r["finished"] for r in records)}

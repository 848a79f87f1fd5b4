"""The built-in world's post-training sets as tokenised fine-tuning examples (paper §3.3, §4.4, App A.3).

Every example is a ``(tokens, loss_mask)`` pair of equal-length int lists, the format of
:func:`tokenfilter.train.finetuning.write_examples`: the fine-tuning loop scores token ``t`` when
``loss_mask[t]`` is 1. Three kinds, one per post-training stage of the paper:

* **Instruction MCQs** (E7, App A.3). The paper tunes its 1.8B models to answer a lettered
  multiple-choice prompt with the answer letter, loss on the letter only. We use the project's
  own letter prompt, the ``prompt`` field of the built-in items
  (``"Question: <q>\\nA. <a>\\nB. <b>\\nC. <c>\\nD. <d>\\nAnswer:"``), followed by the
  ``completion`` ``" <letter>"``: it is the exact string the built-in letter task of
  :mod:`tokenfilter.evaluate.benchmarks` scores, so tuning and evaluation read the same format.
  (The paper's text format, ``Choice: <a> = A``, is a different spelling of the same idea; what
  matters is that one format is used at both ends.)
* **Chat** (E8). ChatML, as the authors' chat SFT on smol-smoltalk: every message is
  ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` with the two markers as *single* special ids,
  exactly what ``TextTokenizer.hf_tokenizer().apply_chat_template`` produces (a test checks the
  ids). Loss on assistant content and its ``<|im_end|>`` only ([C] ``chat-train.py``), so the
  model learns to answer and to stop, never to write the user's turn. Message text is encoded
  *ordinarily*: a user who types ``<|im_end|>`` gets plain tokens, not the marker.
* **Refusal** (E12, E13). Health (forget-domain) questions answered with a refusal, general
  questions answered normally. The *prose* variant's refusal is a one-sentence phrase of
  :data:`tokenfilter.data.synthetic.templates.REFUSALS`; the *token* variant's is the single
  ``<|refusal|>`` id (paper App B.4; the authors' code encoded the string as text by mistake).
  :func:`split_refusal_items` holds out half of the health questions, and as many general
  questions, for evaluating the refusal rate (the paper's held-out HealthSearchQA half and the
  next Alpaca rows).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tokenfilter.data.tokenizer import SPECIAL_TOKENS, TextTokenizer
from tokenfilter.io import read_jsonl, write_jsonl

Example = tuple[list[int], list[int]]
Message = Mapping[str, str]

KINDS = ("instruct", "chat", "refusal")
REFUSAL_VARIANTS = ("prose", "token")
REFUSAL_TOKEN = SPECIAL_TOKENS["refusal"]
ASSISTANT = "assistant"


# --- instruction MCQs --------------------------------------------------------------------------

def instruction_example(tokenizer: TextTokenizer, prompt: str, completion: str) -> Example:
    """``prompt`` then ``completion`` (e.g. ``" C"``), loss on the completion's tokens only.

    The two parts are encoded separately and concatenated, as lm-eval scores a continuation after
    its context; with the byte-level pre-tokenizer the space before the letter starts a new
    pre-token, so this equals encoding the whole string (tested).
    """
    context, answer = tokenizer.encode(prompt), tokenizer.encode(completion)
    if not answer:
        raise ValueError(f"empty completion for prompt {prompt[:60]!r}")
    return context + answer, [0] * len(context) + [1] * len(answer)


def instruction_examples(tokenizer: TextTokenizer, items: Iterable[Mapping[str, Any]]) -> list[Example]:
    """Examples of the built-in ``instruct`` items (fields ``prompt`` and ``completion``)."""
    return [instruction_example(tokenizer, item["prompt"], item["completion"]) for item in items]


# --- chat (ChatML) ------------------------------------------------------------------------------

def _split_special(text: str, allowed: Collection[str]) -> list[str]:
    """``text`` cut around occurrences of the ``allowed`` special-token strings (kept as pieces)."""
    if not allowed:
        return [text]
    pattern = "(" + "|".join(re.escape(s) for s in sorted(allowed, key=len, reverse=True)) + ")"
    return [piece for piece in re.split(pattern, text) if piece]


def encode_chat(tokenizer: TextTokenizer, messages: Sequence[Message], add_generation_prompt: bool = False,
                allowed_special: Collection[str] = ()) -> Example:
    """Token ids of a ChatML conversation and the loss mask of chat SFT.

    Args:
        messages: ``{"role", "content"}`` dicts; roles are free text (``user``, ``assistant``,
            ``system``), and only ``assistant`` turns are learnt.
        add_generation_prompt: end with ``<|im_start|>assistant\\n`` (what generation is prompted
            with; never learnt).
        allowed_special: special-token strings recognised inside message content (as tiktoken's
            ``allowed_special``), e.g. ``{"<|refusal|>"}`` for the token variant of refusal
            training. Everything else is encoded ordinarily.

    Returns:
        (tokens, mask): mask 1 on the tokens of assistant content and on the ``<|im_end|>`` that
        closes an assistant turn; 0 on markers, role headers, the newlines between messages and
        all non-assistant turns.
    """
    special = tokenizer.special_ids
    start, end = special["im_start"], special["im_end"]
    by_string = {SPECIAL_TOKENS[key]: special[key] for key in SPECIAL_TOKENS}
    unknown = set(allowed_special) - set(by_string)
    if unknown:
        raise ValueError(f"allowed_special {sorted(unknown)} are not special tokens of the tokenizer")
    newline = tokenizer.encode("\n")
    tokens: list[int] = []
    mask: list[int] = []
    for message in messages:
        role, content = message["role"], message["content"]
        learn = int(role == ASSISTANT)
        header = f"{role}\n"
        tokens.append(start)
        mask.append(0)
        # The header and the content's first text piece are one segment, as the HF tokenizer sees
        # the text between two special tokens; a token of it is content when it starts after the
        # header. (A content that starts with a special token leaves the header alone.)
        pieces = _split_special(content, allowed_special)
        if not pieces or pieces[0] in allowed_special:
            pieces.insert(0, "")
        for i, piece in enumerate(pieces):
            if i > 0 and piece in allowed_special:
                tokens.append(by_string[piece])
                mask.append(learn)
                continue
            boundary = len(header) if i == 0 else 0
            ids, offsets = tokenizer.encode_batch([header + piece if i == 0 else piece])[0]
            tokens += ids.tolist()
            mask += [learn if begin >= boundary else 0 for begin, _ in offsets.tolist()]
        tokens.append(end)
        mask.append(learn)
        tokens += newline
        mask += [0] * len(newline)
    if add_generation_prompt:
        tokens.append(start)
        mask.append(0)
        header = tokenizer.encode(f"{ASSISTANT}\n")
        tokens += header
        mask += [0] * len(header)
    return tokens, mask


def chat_prompt(tokenizer: TextTokenizer, question: str) -> list[int]:
    """The generation prompt of a one-turn chat: ``<|im_start|>user\\n{q}<|im_end|>\\n<|im_start|>assistant\\n``
    ([C] the authors' sampling prompt, paper E8)."""
    return encode_chat(tokenizer, [{"role": "user", "content": question}], add_generation_prompt=True)[0]


def chat_examples(tokenizer: TextTokenizer, items: Iterable[Mapping[str, Any]]) -> list[Example]:
    """Examples of the built-in ``chat`` items (field ``messages``)."""
    return [encode_chat(tokenizer, item["messages"]) for item in items]


# --- refusal training ---------------------------------------------------------------------------

def split_refusal_items(items: Sequence[Mapping[str, Any]], seed: int, held_out_fraction: float = 0.5,
                        balance: bool = True) -> dict[str, list[dict]]:
    """{"train": [...], "held_out": [...]} of the built-in ``refusal`` items, deterministic in ``seed``.

    ``held_out_fraction`` of the health (``refuse``) questions are held out, as the paper trains on
    one half of HealthSearchQA and evaluates on the other. With ``balance`` the general questions
    follow the paper's recipe: as many in training as health questions there, and as many held
    out as health questions held out (the next Alpaca rows); the rest are left unused. Without
    it, the same fraction of general questions is held out.
    """
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    rng = np.random.default_rng([seed, 23])
    health = [dict(item) for item in items if item["refuse"]]
    general = [dict(item) for item in items if not item["refuse"]]
    if not health or not general:
        raise ValueError("refusal items need both health (refuse) and general questions")
    health = [health[i] for i in rng.permutation(len(health))]
    general = [general[i] for i in rng.permutation(len(general))]
    n_health_held = max(1, int(round(held_out_fraction * len(health))))
    health_held, health_train = health[:n_health_held], health[n_health_held:]
    if balance:
        general_train = general[:len(health_train)]
        general_held = general[len(health_train):len(health_train) + n_health_held]
    else:
        n_general_held = max(1, int(round(held_out_fraction * len(general))))
        general_held, general_train = general[:n_general_held], general[n_general_held:]
    train = health_train + general_train
    train = [train[i] for i in rng.permutation(len(train))]
    return {"train": train, "held_out": health_held + general_held}


def refusal_messages(item: Mapping[str, Any], variant: str) -> list[dict[str, str]]:
    """The conversation of one refusal item: its prompt, then its response, where a health
    question's response is the prose refusal (``prose``) or the ``<|refusal|>`` token (``token``)."""
    if variant not in REFUSAL_VARIANTS:
        raise ValueError(f"refusal variant {variant!r} is not one of {REFUSAL_VARIANTS}")
    response = REFUSAL_TOKEN if (item["refuse"] and variant == "token") else item["response"]
    return [{"role": "user", "content": item["prompt"]}, {"role": ASSISTANT, "content": response}]


def refusal_examples(tokenizer: TextTokenizer, items: Iterable[Mapping[str, Any]], variant: str) -> list[Example]:
    """Chat examples of refusal items; in the token variant the refusal is one special id."""
    allowed = {REFUSAL_TOKEN} if variant == "token" else set()
    return [encode_chat(tokenizer, refusal_messages(item, variant), allowed_special=allowed) for item in items]


# --- files ----------------------------------------------------------------------------------

def build_examples(kind: str, tokenizer: TextTokenizer, items: Sequence[Mapping[str, Any]],
                   variant: str | None = None) -> list[Example]:
    """Examples of ``kind`` (``instruct`` | ``chat`` | ``refusal``; refusal needs ``variant``)."""
    if kind == "instruct":
        return instruction_examples(tokenizer, items)
    if kind == "chat":
        return chat_examples(tokenizer, items)
    if kind == "refusal":
        if variant is None:
            raise ValueError("refusal examples need a variant: 'prose' or 'token'")
        return refusal_examples(tokenizer, items, variant)
    raise ValueError(f"post-training kind {kind!r} is not one of {KINDS}")


def write_posttrain_examples(kind: str, items_path: str | os.PathLike, tokenizer_path: str | os.PathLike,
                             out_path: str | os.PathLike, variant: str | None = None, seed: int = 0,
                             held_out_fraction: float = 0.5, held_out_path: str | os.PathLike | None = None,
                             limit: int | None = None) -> dict[str, Any]:
    """Tokenise a built-in set (``instruct.jsonl``, ``chat.jsonl`` or ``refusal.jsonl``) into an
    examples file for :func:`tokenfilter.train.finetuning.finetune`; returns a summary.

    For ``refusal`` the items are first split by :func:`split_refusal_items` (``seed``,
    ``held_out_fraction``); only the train part becomes examples, and the held-out items are
    written to ``held_out_path`` (JSON lines of the original items) for the refusal evaluation.
    ``limit`` keeps the first items only (small runs).
    """
    from tokenfilter.data.tokenizer import load_tokenizer
    from tokenfilter.train.finetuning import write_examples

    tokenizer = load_tokenizer(tokenizer_path)
    items = read_jsonl(items_path)
    summary: dict[str, Any] = {"kind": kind, "variant": variant, "items": len(items)}
    if kind == "refusal":
        if held_out_path is None:
            raise ValueError("refusal examples need held_out_path for the held-out questions")
        parts = split_refusal_items(items, seed, held_out_fraction)
        items = parts["train"]
        summary["held_out"] = write_jsonl(held_out_path, parts["held_out"])
        summary["held_out_health"] = sum(bool(item["refuse"]) for item in parts["held_out"])
    if limit is not None:
        items = items[:limit]
    examples = build_examples(kind, tokenizer, items, variant)
    summary["examples"] = write_examples(out_path, examples)
    summary["tokens"] = sum(len(tokens) for tokens, _ in examples)
    summary["loss_tokens"] = sum(sum(mask) for _, mask in examples)
    return summary

"""Fine-tuning batches: tokenised examples with a loss mask, for training a saved model further.

Instruction, chat and refusal tuning are this source with different examples. An example is a
token sequence and a 0/1 mask saying which tokens are learnt (assistant turns only, in chat
tuning); position t reads token t and is scored on token t + 1 when that token's mask is 1.

Examples are read in a seeded permutation per epoch, so which examples a step reads is a pure
function of (seed, step) and a killed run resumes exactly. A micro-batch is right-padded to its
longest example: with causal attention no real token ever attends to a later padding token, so
no attention mask is needed and the fast causal path stays on. Examples longer than the model's
context are truncated at its end (counted in the summary).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from tokenfilter.errors import InputError
from tokenfilter.io import write_jsonl
from tokenfilter.train.loop import Batch, TrainSpec, train


class FinetuneBatches:
    def __init__(self, examples: list[tuple[np.ndarray, np.ndarray]], seq_len: int, seed: int, pad_id: int,
                 model_defaults: dict[str, Any] | None = None):
        if not examples:
            raise ValueError("fine-tuning needs at least one example")
        self.seq_len, self.seed, self.pad_id = seq_len, seed, pad_id
        self.n_truncated = sum(len(tokens) > seq_len + 1 for tokens, _ in examples)
        self.examples = [(tokens[: seq_len + 1], mask[: seq_len + 1]) for tokens, mask in examples]
        self.n_items = len(self.examples)
        self._defaults = model_defaults or {}
        self._orders: dict[int, np.ndarray] = {}

    def model_defaults(self) -> dict[str, Any]:
        return dict(self._defaults)

    def start(self, max_steps: int) -> None:
        pass

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, 11, epoch]).permutation(self.n_items)}
        return self._orders[epoch]

    def batch(self, step: int, first: int, count: int) -> Batch:
        picked = [self.examples[self._order(i // self.n_items)[i % self.n_items]] for i in range(first, first + count)]
        width = max(len(tokens) for tokens, _ in picked) - 1
        inputs = torch.full((count, width), self.pad_id, dtype=torch.long)
        targets = torch.full((count, width), self.pad_id, dtype=torch.long)
        weights = torch.zeros((count, width), dtype=torch.float32)
        n_tokens = 0
        for row, (tokens, mask) in enumerate(picked):
            n = len(tokens) - 1
            inputs[row, :n] = torch.from_numpy(tokens[:-1].astype(np.int64))
            targets[row, :n] = torch.from_numpy(tokens[1:].astype(np.int64))
            weights[row, :n] = torch.from_numpy(mask[1:].astype(np.float32))
            n_tokens += n
        return Batch(inputs, targets, weights, n_tokens=n_tokens)

    def epochs(self, items_read: int) -> float:
        return items_read / self.n_items

    def summary(self) -> dict[str, Any]:
        return {"examples": self.n_items, "truncated_examples": self.n_truncated}


def write_examples(path: str | os.PathLike, examples: list[tuple[list[int], list[int]]]) -> int:
    """Save tokenised examples (tokens, loss mask) as JSON lines."""
    return write_jsonl(path, ({"tokens": list(map(int, t)), "loss_mask": list(map(int, m))} for t, m in examples))


def read_examples(path: str | os.PathLike) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tokenised examples written by :func:`write_examples`; a malformed line names file and line."""
    import json

    examples = []
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(str(path), line, f"malformed JSON ({exc.msg})") from None
            tokens, mask = record.get("tokens"), record.get("loss_mask")
            if not isinstance(tokens, list) or not isinstance(mask, list) or len(tokens) != len(mask):
                raise InputError(str(path), line, "an example needs 'tokens' and 'loss_mask' lists of equal length")
            if len(tokens) < 2:
                raise InputError(str(path), line, "an example needs at least 2 tokens (one input, one target)")
            examples.append((np.asarray(tokens, dtype=np.int64), np.asarray(mask, dtype=np.int64)))
    return examples


def finetune(spec: TrainSpec) -> dict[str, Any]:
    """Fine-tune the model at ``spec.init_from`` on the examples file ``spec.data["examples"]``."""
    from tokenfilter.model.checkpoint import read_model_config

    config = read_model_config(spec.init_from)
    seq_len = int(spec.data.get("seq_len") or config["block_size"])
    source = FinetuneBatches(read_examples(spec.data["examples"]), seq_len, spec.seed, pad_id=config["pad_token_id"])
    return train(spec, source)

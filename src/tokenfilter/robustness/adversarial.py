"""Adversarial finetuning to baseline parity (paper §4.3, E9, Figs 7 and 26, Table 4).

An attacker finetunes a filtered (or RMU-unlearned) model on forget-domain text that no model saw
in pretraining and no eval set contains (the built-in world's attacker corpus; the paper's Common
Pile PubMed), with a constant learning rate, and measures the forget test loss every few steps.
The run stops once that loss reaches the same-size baseline model's forget loss (parity), or when
its budget, a stated share of the model's pretraining tokens, runs out: such a run reports a lower
bound, never nothing.

The baseline's forget loss is measured in the same job with the same evaluator on the same
tokens, so "parity" compares like with like. It is the one training loop, with the attacker's
windows as the batch source and a :class:`ParityEvaluator` as its evaluator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tokenfilter.data.shards import TokenShard
from tokenfilter.evaluate.text import text_loss
from tokenfilter.io import write_json
from tokenfilter.model.checkpoint import load_model, read_model_config
from tokenfilter.robustness.parity import tokens_to_parity
from tokenfilter.train.loop import TrainSpec, train
from tokenfilter.train.pretraining import PretrainingBatches


class ParityEvaluator:
    """Forget test loss every ``every`` steps; asks the loop to stop at or below ``target_loss``."""

    def __init__(self, eval_shard: str, max_tokens: int, batch_size: int, target_loss: float, every: int):
        self.shard = TokenShard.open(eval_shard)
        self.max_tokens, self.batch_size, self.target_loss, self.every = max_tokens, batch_size, target_loss, every

    def loss(self, model: torch.nn.Module) -> float:
        device = next(model.parameters()).device
        with torch.no_grad():
            return float(text_loss(model, self.shard, self.max_tokens, self.batch_size, device)["loss"])

    def __call__(self, model: torch.nn.Module, step: int, tokens: int) -> dict[str, Any]:
        loss = self.loss(model)
        return {"forget_loss": loss, "stop": loss <= self.target_loss}


def adversarial_finetune(spec: TrainSpec) -> dict[str, Any]:
    """Finetune ``spec.init_from`` on ``spec.data["attack_shard"]`` until its forget loss on
    ``spec.data["eval_shard"]`` reaches that of the baseline model ``spec.data["baseline_model"]``.

    ``spec.data`` also holds ``eval_tokens``, ``eval_batch_size``, ``eval_every`` (steps) and
    ``pretraining_tokens_per_param`` (the attacked model's pretraining tokens are that times its
    parameter count, the denominator of Fig 7's share). The summary carries the curve
    (``evals``) and ``parity`` (tokens, whether reached, % of pretraining)."""
    data = spec.data
    evaluator = ParityEvaluator(data["eval_shard"], data["eval_tokens"], data["eval_batch_size"], target_loss=0.0,
                                every=data["eval_every"])
    evaluator.target_loss = evaluator.loss(load_model(data["baseline_model"]))
    block = int(read_model_config(spec.init_from)["block_size"])
    source = PretrainingBatches(data["attack_shard"], "baseline", None, {}, seq_len=block, seed=spec.seed, run=spec.run)
    summary = train(spec, source, evaluator=evaluator, extra_summary={"baseline_forget_loss": evaluator.target_loss})
    curve = [(e["tokens"], e["forget_loss"]) for e in summary["evals"]]
    pretraining_tokens = data["pretraining_tokens_per_param"] * summary["params"]
    parity = tokens_to_parity(curve, evaluator.target_loss, pretraining_tokens)
    summary["parity"] = parity.as_dict()
    write_json(Path(spec.out_dir) / "summary.json", summary)  # the loop's summary, with the parity read off it
    return summary

"""Pretraining batches: windows of the token corpus, turned into one arm's inputs and weights.

The batch source of every pretraining run (and of any run that trains on a token shard, such as
adversarial finetuning on held-out forget text). The data order is
:class:`tokenfilter.train.windows.TrainingWindows` (a pure function of seed and window index);
what the filtering arm does to a window is :func:`tokenfilter.filtering.arms.apply_arm`, after
the filter plan has turned per-token forget scores into flags.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tokenfilter import TOKEN_ARMS
from tokenfilter.data.shards import TokenShard
from tokenfilter.data.tokenizer import padded_vocab_size
from tokenfilter.errors import ConfigError
from tokenfilter.filtering.annotation import open_scores
from tokenfilter.filtering.arms import apply_arm, filter_report, forget_flags, kept_documents, make_plan
from tokenfilter.filtering.noise import hard_tokens
from tokenfilter.train.loop import Batch, TrainSpec, train
from tokenfilter.train.windows import TrainingWindows


class PretrainingBatches:
    """Batches of ``arm`` over the token shard ``train_shard``, filtered by the scores in ``scores_dir``.

    ``filtering`` holds the run's filter settings (thresholds or fraction, noise, delay; see
    :func:`tokenfilter.filtering.arms.make_plan`). The baseline arm reads no scores.
    """

    def __init__(self, train_shard: str, arm: str, scores_dir: str | None, filtering: dict[str, Any],
                 seq_len: int, seed: int, run: str = "", document_label_share: float | None = None):
        self.shard = TokenShard.open(train_shard)
        self.arm, self.filtering, self.seq_len, self.seed, self.run = arm, filtering, seq_len, seed, run
        self.document_label_share = document_label_share
        self.special = self.shard.meta["special_ids"]
        self.token_scores = self.doc_scores = None
        if arm != "baseline":
            if scores_dir is None:
                raise ConfigError(f"run {run}: arm {arm!r} needs a filter source (scores_dir)")
            self.token_scores, self.doc_scores = open_scores(scores_dir)
            if len(self.token_scores) != self.shard.n_tokens or len(self.doc_scores) != len(self.shard.docs):
                raise ValueError(f"{scores_dir}: scores do not match the token shard {train_shard}")
        self.plan = None
        self.hard: np.ndarray | None = None
        self.windows: TrainingWindows | None = None

    def model_defaults(self) -> dict[str, Any]:
        eot = self.special["eot"]
        return {"vocab_size": padded_vocab_size(self.shard.meta["vocab_size"]), "eos_token_id": eot,
                "bos_token_id": eot, "pad_token_id": eot}

    def start(self, max_steps: int) -> None:
        """Resolve the filter plan (thresholds, delay in steps) and the windows the arm keeps."""
        doc_lengths = self.shard.docs["length"].astype(np.int64)
        scores = None if self.token_scores is None else np.asarray(self.token_scores)
        hard_share = None
        if self.arm in TOKEN_ARMS and self.filtering.get("noise", 0.0) > 0 and \
                self.filtering.get("noise_structure", "uniform") == "structured":
            if self.shard.labels is None:
                raise ConfigError(f"run {self.run}: filtering.noise_structure 'structured' puts errors where the "
                                  f"ground truth says a classifier errs; {self.shard.directory} has no labels")
            eot = np.asarray(self.shard.tokens) == self.special["eot"]
            self.hard = hard_tokens(self.shard.labels, self.shard.ambiguous, eot)
            hard_share = float(self.hard.sum() / max(1, np.count_nonzero(~eot)))
        self.plan = make_plan(self.arm, self.filtering, scores, self.doc_scores, doc_lengths, max_steps, self.seed,
                              self.document_label_share, hard_share)
        kept = kept_documents(self.plan, self.doc_scores) if self.doc_scores is not None else None
        self.windows = TrainingWindows(self.shard, kept, self.seq_len, self.seed)
        self.report = filter_report(self.plan, self.shard.tokens, self.shard.labels, self.token_scores,
                                    self.shard.docs, kept, self.special["eot"], hard=self.hard)

    @property
    def n_items(self) -> int:
        if self.windows is None:  # the budget asks before start(); all windows of the shard
            return (self.shard.n_tokens - 1) // self.seq_len
        return self.windows.n_windows

    def batch(self, step: int, first: int, count: int) -> Batch:
        positions = self.windows.positions(np.arange(first, first + count))
        tokens = torch.from_numpy(self.windows.tokens(positions))
        if self.plan.arm in TOKEN_ARMS:
            scores = np.asarray(self.token_scores[positions.reshape(-1)]).reshape(positions.shape)
            eot = tokens.numpy() == self.special["eot"]
            hard = None if self.hard is None else self.hard[positions]
            flags = torch.from_numpy(forget_flags(self.plan, scores, positions, step, eot, hard))
        else:
            flags = torch.zeros(tokens.shape, dtype=torch.bool)
        inputs, targets, weights = apply_arm(self.plan.arm, tokens, flags, self.special["hidden"])
        return Batch(inputs, targets, weights, n_tokens=inputs.numel())

    def epochs(self, items_read: int) -> float:
        return self.windows.epochs(items_read)

    def summary(self) -> dict[str, Any]:
        import dataclasses

        return {"arm": self.arm, "plan": dataclasses.asdict(self.plan),
                "filtered_fraction": self.report["filtered_fraction"], "filter_quality": self.report["quality"]}


def pretrain(spec: TrainSpec) -> dict[str, Any]:
    """One pretraining run: ``spec.data`` names the shard, the arm, its scores and filter settings."""
    data = spec.data
    source = PretrainingBatches(data["train_shard"], data["arm"], data.get("scores_dir"), data.get("filtering", {}),
                                seq_len=spec.model["block_size"], seed=spec.seed, run=spec.run,
                                document_label_share=data.get("document_label_share"))
    return train(spec, source)

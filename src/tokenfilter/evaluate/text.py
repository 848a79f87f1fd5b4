"""Text evaluation: token-mean cross-entropy of a model on each held-out text set (paper §3.3).

The eval stream (documents with their end-of-text tokens) is cut into consecutive windows of
``block_size + 1`` tokens; every target position counts once, through the project's one loss
function (:mod:`tokenfilter.model.loss`). Where ground-truth labels exist, the loss is also split by the target token's label
(as the authors' token-level analysis does: forget loss on forget targets only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from tokenfilter.data.shards import TokenShard
from tokenfilter.model.loss import token_cross_entropy


@torch.no_grad()
def text_loss(model, shard: TokenShard, max_tokens: int, batch_size: int, device: str | torch.device = "cpu") -> dict:
    """Loss of ``model`` on the first ``max_tokens`` target tokens of ``shard``.

    One cross-entropy per batch; where the shard has ground-truth labels, the split into forget
    and retain targets reads the same per-token losses (the labels are weights of one sum).
    """
    seq_len = model.config.block_size
    if shard.n_tokens < seq_len + 1:
        raise ValueError(f"{shard.directory}: {shard.n_tokens} tokens are fewer than one window of {seq_len + 1}")
    n_windows = max(1, min(max_tokens, shard.n_tokens - 1) // seq_len)
    starts = np.arange(n_windows) * seq_len
    sums = {"all": 0.0, "forget_targets": 0.0, "retain_targets": 0.0}
    counts = {"all": 0, "forget_targets": 0, "retain_targets": 0}
    model.eval()
    for i in range(0, n_windows, batch_size):
        positions = starts[i:i + batch_size, None] + np.arange(seq_len + 1)[None, :]
        tokens = torch.from_numpy(np.asarray(shard.tokens[positions.reshape(-1)], dtype=np.int64).reshape(positions.shape)).to(device)
        logits = model(tokens[:, :-1]).logits
        per_token = token_cross_entropy(logits, tokens[:, 1:]).double().cpu()
        sums["all"] += float(per_token.sum())
        counts["all"] += per_token.numel()
        if shard.labels is not None:
            forget = torch.from_numpy(np.asarray(shard.labels[positions[:, 1:].reshape(-1)]).astype(np.float64))
            sums["forget_targets"] += float((per_token * forget).sum())
            sums["retain_targets"] += float((per_token * (1.0 - forget)).sum())
            n_forget = int(forget.sum())
            counts["forget_targets"] += n_forget
            counts["retain_targets"] += per_token.numel() - n_forget
    result = {"loss": sums["all"] / counts["all"], "n_tokens": counts["all"]}
    if shard.labels is not None:
        for name in ("forget_targets", "retain_targets"):
            result[f"loss_{name}"] = sums[name] / counts[name] if counts[name] else None
            result[f"n_{name}"] = counts[name]
    return result


def evaluate_run(model_dir: str | os.PathLike, snapshots_dir: str | os.PathLike | None, summary_path: str | os.PathLike,
                 train_log_path: str | os.PathLike, eval_shards: dict[str, str | os.PathLike], max_tokens: int,
                 batch_size: int, threads: int = 1, snapshot_tokens: int | None = None) -> dict:
    """Text losses of a run's final model (and its snapshots, unless ``snapshots_dir`` is None)
    on every eval set, the snapshots on their first ``snapshot_tokens`` (default ``max_tokens``)
    target tokens; reads only the paths it is given."""
    from tokenfilter.config.experiments import Run
    from tokenfilter.io import read_json, read_jsonl
    from tokenfilter.model.checkpoint import load_model

    torch.set_num_threads(threads)
    summary = read_json(summary_path)
    tokens_at = {r["step"]: r["tokens"] for r in read_jsonl(train_log_path)}
    batch_tokens = summary["batch_tokens"]
    checkpoints = []
    if snapshots_dir is not None:
        for snap in sorted(Path(snapshots_dir).glob("step_*")):
            step = int(snap.name.split("_")[1])
            checkpoints.append((snap, step, tokens_at.get(step, step * batch_tokens), False))
    checkpoints.append((Path(model_dir), summary["steps"], summary["tokens"], True))
    shards = {name: TokenShard.open(path) for name, path in eval_shards.items()}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    evals = []
    for path, step, tokens, final in checkpoints:
        model = load_model(path, device)
        tokens_read = max_tokens if final or snapshot_tokens is None else snapshot_tokens
        losses = {name: text_loss(model, shard, tokens_read, batch_size, device) for name, shard in shards.items()}
        evals.append({"step": step, "tokens": tokens, "final": final, "losses": losses})
    Run.parse(summary["run"])  # a result's run name must parse where the tables read it
    return {
        "run": summary["run"], "arm": summary["arm"], "params": summary["params"],
        "nominal_tokens": summary["nominal_tokens"], "tokens": summary["tokens"],
        "filtered_fraction": summary["filtered_fraction"], "plan": summary["plan"], "evals": evals,
    }

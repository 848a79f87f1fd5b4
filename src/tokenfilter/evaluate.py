"""Text evaluation: token-mean cross-entropy of a model on each held-out text set (paper §3.3).

The eval stream (documents with their end-of-text tokens) is cut into consecutive windows of
``block_size + 1`` tokens; every target position counts once, through the project's one loss
function. Where ground-truth labels exist, the loss is also split by the target token's label
(as the authors' token-level analysis does: forget loss on forget targets only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from tokenfilter.loss import weighted_cross_entropy
from tokenfilter.shards import TokenShard


@torch.no_grad()
def text_loss(model, shard: TokenShard, max_tokens: int, batch_size: int, device: str | torch.device = "cpu") -> dict:
    """Loss of ``model`` on the first ``max_tokens`` target tokens of ``shard``."""
    seq_len = model.config.block_size
    n_windows = max(1, min(max_tokens, shard.n_tokens - 1) // seq_len)
    if shard.n_tokens < seq_len + 1:
        raise ValueError(f"{shard.directory}: {shard.n_tokens} tokens are fewer than one window of {seq_len + 1}")
    starts = np.arange(n_windows) * seq_len
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    by_label = {0: [0.0, 0], 1: [0.0, 0]}
    model.eval()
    for i in range(0, n_windows, batch_size):
        positions = starts[i:i + batch_size, None] + np.arange(seq_len + 1)[None, :]
        tokens = torch.from_numpy(np.asarray(shard.tokens[positions.reshape(-1)], dtype=np.int64).reshape(positions.shape)).to(device)
        logits = model(tokens[:, :-1]).logits
        per_token = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), tokens[:, 1:].reshape(-1), reduction="none"
        ).double().cpu()
        loss, n = weighted_cross_entropy(logits, tokens[:, 1:])
        total += loss.double().cpu() * n.cpu()
        count += int(n)
        if shard.labels is not None:
            labels = np.asarray(shard.labels[positions[:, 1:].reshape(-1)])
            for value in (0, 1):
                sel = torch.from_numpy(labels == value)
                by_label[value][0] += float(per_token[sel].sum())
                by_label[value][1] += int(sel.sum())
    result = {"loss": float(total / count), "n_tokens": count}
    if shard.labels is not None:
        for value, name in ((1, "forget_targets"), (0, "retain_targets")):
            s, n = by_label[value]
            result[f"loss_{name}"] = s / n if n else None
            result[f"n_{name}"] = n
    return result


def evaluate_run(run_dir: str | os.PathLike, eval_shards: dict[str, str | os.PathLike], max_tokens: int,
                 batch_size: int, include_snapshots: bool, threads: int = 1) -> dict:
    """Text losses of a run's final model (and snapshots) on every eval set."""
    import json

    from tokenfilter.checkpoint import load_model

    torch.set_num_threads(threads)
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    tokens_at = {r["step"]: r["tokens"] for r in log}
    batch_tokens = summary["batch_tokens"]
    checkpoints = []
    if include_snapshots:
        for snap in sorted((run_dir / "snapshots").glob("step_*")):
            step = int(snap.name.split("_")[1])
            checkpoints.append((snap, step, tokens_at.get(step, step * batch_tokens), False))
    checkpoints.append((run_dir / "model", summary["steps"], summary["tokens"], True))
    shards = {name: TokenShard.open(path) for name, path in eval_shards.items()}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    evals = []
    for path, step, tokens, final in checkpoints:
        model = load_model(path, device)
        losses = {name: text_loss(model, shard, max_tokens, batch_size, device) for name, shard in shards.items()}
        evals.append({"step": step, "tokens": tokens, "final": final, "losses": losses})
    return {
        "run": summary["run"], "arm": summary["arm"], "params": summary["params"],
        "nominal_tokens": summary["nominal_tokens"], "tokens": summary["tokens"],
        "filtered_fraction": summary["filtered_fraction"], "plan": summary["plan"], "evals": evals,
    }

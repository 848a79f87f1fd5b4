"""Overhead of the token arms (mask, remove) against the baseline arm, in training tokens/s.

The arms differ only in what a step does besides the model: reading the per-token forget
scores, turning them into flags, substituting <|hidden|> (remove) and weighting the loss. This
benchmark trains the same model on the same data with each arm, interleaved over several
repeats in one process, and reports median tokens/s and the overhead relative to the baseline.
The target is at most 3% (docs/benchmarks.md).

    python benchmarks/bench_arms.py --repeats 5 --json-out /tmp/arms.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_world(root: Path, n_docs: int) -> tuple[Path, Path]:
    from tokenfilter.filtering.annotation import annotate
    from tokenfilter.data.corpus import iter_corpus
    from tokenfilter.data.shards import tokenize_corpus
    from tokenfilter.data.synthetic.build import SyntheticParams, default_outputs, generate_synthetic
    from tokenfilter.data.tokenizer import build_tokenizer

    out = default_outputs(root / "data")
    generate_synthetic(SyntheticParams.from_config({"n_docs": n_docs, "n_eval_docs": 10}), seed=1, val_fraction=0.0, out=out)
    tokenizer = build_tokenizer("train", (r["text"] for r in iter_corpus(out["corpus"], ["text"])), vocab_size=1024)
    shard = root / "tokens"
    tokenize_corpus(out["corpus"], tokenizer, shard, split="train", progress=False)
    annotate({"kind": "truth", "context_window": 8, "error_rate": 0.0}, shard, root / "scores", seed=1)
    return shard, root / "scores"


def tokens_per_second(arm: str, shard: Path, scores: Path, root: Path, args) -> float:
    """Median steady-state tokens/s of one run, its spec built by the workflow's own function from
    the default config with the benchmark's shape."""
    from tokenfilter.config import load_config
    from tokenfilter.config.experiments import Run, runtime_settings, train_spec
    from tokenfilter.train.__main__ import run_spec

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "config.yaml")
    config["ladder"]["bench"] = {"n_layer": args.n_layer, "n_embd": args.n_embd, "n_head": args.n_head,
                                 "lr": 1.2e-2, "weight_decay": 0.1, "micro_batch_size": args.batch}
    config["model"]["block_size"] = args.seq
    config["training"].update(batch_tokens=args.seq * args.batch, tokens_per_param=args.tokens_per_param,
                              snapshots=0, checkpoint_every=10**9, log_every=5, threads=args.threads)
    config["filtering"]["filter"] = "truth"
    config["experiments"]["bench"] = {"kind": "ladder", "arms": ["baseline", "mask", "remove"], "sizes": ["bench"]}
    tag = f"{arm}-{time.time_ns()}"
    run = Run("bench", arm, "bench", "none" if arm == "baseline" else "default")
    spec = dict(train_spec(config, run, str(shard), None if arm == "baseline" else str(scores)),
                **runtime_settings(config), out_dir=str(root / "runs" / tag), checkpoint_dir=str(root / "ckpt" / tag),
                progress=False)
    run_spec(spec)
    log = [json.loads(line) for line in (root / "runs" / tag / "train_log.jsonl").read_text().splitlines()]
    steady = log[len(log) // 4:]  # skip warm-up intervals
    return statistics.median(r["tokens_per_s"] for r in steady)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-docs", type=int, default=6000)
    parser.add_argument("--n-layer", type=int, default=2)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens-per-param", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json-out")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shard, scores = build_world(root, args.n_docs)
        arms = ["baseline", "mask", "remove"]
        samples: dict[str, list[float]] = {arm: [] for arm in arms}
        for r in range(args.repeats):
            for arm in arms[r % 3:] + arms[: r % 3]:  # rotate the order so no arm always goes first
                samples[arm].append(tokens_per_second(arm, shard, scores, root, args))
    medians = {arm: statistics.median(v) for arm, v in samples.items()}
    result = {
        "torch": torch.__version__, "threads": args.threads, "shape": f"{args.n_embd}x{args.n_layer}",
        "seq": args.seq, "batch": args.batch, "repeats": args.repeats, "samples": samples, "median_tokens_per_s": medians,
        "overhead_pct": {arm: 100 * (1 - medians[arm] / medians["baseline"]) for arm in ("mask", "remove")},
    }
    print(f"{'arm':<10}{'median tok/s':>14}{'overhead':>10}")
    for arm in arms:
        over = "" if arm == "baseline" else f"{result['overhead_pct'][arm]:+.1f}%"
        print(f"{arm:<10}{medians[arm]:>14.0f}{over:>10}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

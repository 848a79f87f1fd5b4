"""Training throughput of tokenfilter's model vs transformers' LlamaForCausalLM.

Both models have the same hidden size, layers, heads, vocabulary and (within 1%) parameter count:
Llama's gated MLP has three E×I matrices, so I ≈ 8E/3 matches our two E×4E ReLU² matrices. One
training step is forward + backward (each model's own ``labels=`` loss) + AdamW step, fp32, in
one process; the two models alternate within every repeat after a warm-up, so drift in machine
load hits both alike. Reports median tokens/s per model and the ratio ours / llama, plus the
median of the per-repeat (paired) ratios and the ratio of the best samples, which are less
sensitive to other jobs on a shared machine.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_model_vs_llama.py \\
        --sizes 128x4 256x4 --vocab 2048 --seq 256 --batch 8 --repeats 7 --threads 2 \\
        --json-out bench_model.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from tokenfilter.model import TokenFilterConfig, TokenFilterForCausalLM


def build_models(n_embd: int, n_layer: int, n_head: int, vocab: int, seq: int):
    ours = TokenFilterForCausalLM(
        TokenFilterConfig(vocab_size=vocab, n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=seq)
    )
    llama_config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=n_embd,
        intermediate_size=round(8 * n_embd / 3),  # 3·E·I ≈ 8E², our MLP's parameter count
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_head,
        max_position_embeddings=seq,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        use_cache=False,
    )
    llama = LlamaForCausalLM._from_config(llama_config, attn_implementation="sdpa", dtype=torch.float32)
    return ours, llama


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights counted once


def make_step(model: torch.nn.Module, batch: torch.Tensor):
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)

    def step() -> None:
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def time_steps(step, n_steps: int) -> float:
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    return time.perf_counter() - start


def bench_size(n_embd: int, n_layer: int, args) -> dict:
    n_head = max(1, n_embd // 64)
    torch.manual_seed(0)
    ours, llama = build_models(n_embd, n_layer, n_head, args.vocab, args.seq)
    n_ours, n_llama = count_params(ours), count_params(llama)
    rel = abs(n_ours - n_llama) / n_ours
    assert rel < 0.01, f"parameter counts differ by {rel:.2%}"
    batch = torch.randint(0, args.vocab, (args.batch, args.seq))
    steps = {"ours": make_step(ours, batch), "llama": make_step(llama, batch)}
    tokens = args.batch * args.seq * args.steps

    for step in steps.values():
        time_steps(step, args.warmup)
    samples: dict[str, list[float]] = {"ours": [], "llama": []}
    for repeat in range(args.repeats):
        order = ["ours", "llama"] if repeat % 2 == 0 else ["llama", "ours"]
        for name in order:
            samples[name].append(tokens / time_steps(steps[name], args.steps))

    med = {name: statistics.median(values) for name, values in samples.items()}
    # Each repeat times both models back to back, so the per-repeat ratio cancels slow phases of a
    # shared machine that hit both; its median is the more robust figure.
    paired = statistics.median(o / l for o, l in zip(samples["ours"], samples["llama"]))
    best = {name: max(values) for name, values in samples.items()}  # least disturbed sample
    row = {
        "n_embd": n_embd,
        "n_layer": n_layer,
        "n_head": n_head,
        "params_ours": n_ours,
        "params_llama": n_llama,
        "llama_intermediate_size": llama.config.intermediate_size,
        "tokens_per_s_ours": med["ours"],
        "tokens_per_s_llama": med["llama"],
        "ratio_ours_over_llama": med["ours"] / med["llama"],
        "paired_ratio_median": paired,
        "best_tokens_per_s_ours": best["ours"],
        "best_tokens_per_s_llama": best["llama"],
        "best_ratio": best["ours"] / best["llama"],
        "samples_tokens_per_s": samples,
    }
    print(
        f"E={n_embd:4d} L={n_layer} H={n_head:2d} | params ours {n_ours:,} llama {n_llama:,} "
        f"({(n_llama - n_ours) / n_ours:+.3%}) | tok/s ours {med['ours']:8.0f} llama {med['llama']:8.0f} "
        f"| ratio {row['ratio_ours_over_llama']:.3f} (paired {paired:.3f}, best {row['best_ratio']:.3f})",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["128x4", "256x4"], help="n_embd x n_layer shapes")
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed sample")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--repeats", type=int, default=7, help="timed samples per model (interleaved)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json-out", default=None, help="write results here as JSON")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    env = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
    }
    print(f"torch {env['torch']}, transformers {env['transformers']}, {env['cpu_count']} CPUs, "
          f"{args.threads} threads; batch {args.batch} x seq {args.seq}, vocab {args.vocab}, "
          f"{args.steps} steps/sample, {args.repeats} repeats", flush=True)
    rows = []
    for size in args.sizes:
        n_embd, n_layer = (int(v) for v in size.lower().split("x"))
        rows.append(bench_size(n_embd, n_layer, args))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"env": env, "args": vars(args), "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()

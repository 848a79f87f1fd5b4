"""Training-step throughput per ladder rung: today's path, the fast path, and transformers' Llama.

For each rung of a config's ladder (default: ``config/config.yaml``), at its micro-batch and
context length, one process times a training step (forward, the loss, backward, AdamW step; fp32,
``--threads`` torch threads) of

- ``reference``: the model with ``kernels: reference`` and the composite cross-entropy (the
  trainer before the speed work, kept selectable for exactly this comparison);
- ``fused``: ``kernels: fused`` (head-tiled RoPE, fused RMSNorm backward, the LM head and the
  loss fused over row chunks), the default;
- ``compiled`` (``--compile``): the forward pass and the loss compiled together with
  ``torch.compile`` over the reference layers and the fused loss, as the trainer does for large
  runs (its compile time, with whatever on-disk cache exists, is reported);
- ``llama``: transformers' ``LlamaForCausalLM`` of the same width, depth, heads, vocabulary and
  (within 0.1%) parameter count, with the same loss function.

Variants alternate inside every repeat after a warm-up, so drift in machine load hits all alike;
the table gives medians. It also measures the single-thread fp32 matmul rate *at the step's own
GEMM shapes* (every linear layer's forward and both backward products, timed alone, taking its
turn in the same rotation) and reports each variant's achieved FLOP/s as a share of it (per
repeat, against the GEMM pass of the same rotation; the median), with one frozen FLOP formula: 6·N per token plus
causal attention, 6·n_layer·T·d per token (N counts the tied embedding once).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_trainer.py --repeats 7 --json-out bench_trainer.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

REPO = Path(__file__).resolve().parents[1]


def step_flops(n_params: int, n_layer: int, n_embd: int, seq: int) -> float:
    """The frozen FLOP formula per token: 6N + 6·n_layer·T·d (causal attention, fwd + bwd)."""
    return 6.0 * n_params + 6.0 * n_layer * seq * n_embd


def gemm_pass(tokens: int, n_embd: int, n_layer: int, vocab: int):
    """(closure, FLOPs): one pass over the step's GEMMs timed alone: per linear layer (K→N) the
    forward (M×K·K×N) and the two backward products (M×N·N×K and N×M·M×K), M = tokens per
    micro-batch. Its rate is the single-thread matmul peak at the model's own shapes."""
    shapes = [(n_embd, 3 * n_embd), (n_embd, n_embd), (n_embd, 4 * n_embd), (4 * n_embd, n_embd)] * n_layer
    shapes.append((n_embd, vocab))
    products = []
    for k, n in shapes:
        products += [((tokens, k), (k, n)), ((tokens, n), (n, k)), ((n, tokens), (tokens, k))]
    tensors = [(torch.randn(*a), torch.randn(*b)) for a, b in products]
    flops = sum(2.0 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in tensors)

    def run() -> None:
        for a, b in tensors:
            torch.mm(a, b)

    return run, flops


def llama_of(n_embd: int, n_layer: int, n_head: int, vocab: int, seq: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab, hidden_size=n_embd, intermediate_size=round(8 * n_embd / 3),
                         num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=n_head,
                         max_position_embeddings=seq, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         attention_bias=False, mlp_bias=False, use_cache=False)
    return LlamaForCausalLM._from_config(config, attn_implementation="sdpa", dtype=torch.float32)


def make_step(variant: str, shape: dict, batch: int, seq: int, compile_times: dict):
    """A closure running one training step of ``variant`` on fixed random data, computing the loss
    the way the trainer does for that path."""
    from tokenfilter.model.gpt import GPT, GPTConfig
    from tokenfilter.model.loss import weighted_cross_entropy

    torch.manual_seed(0)
    if variant == "llama":
        model = llama_of(shape["n_embd"], shape["n_layer"], shape["n_head"], shape["vocab_size"], seq)
        groups = model.parameters()
    else:
        model = GPT(GPTConfig(**shape, block_size=seq, kernels="fused" if variant == "fused" else "reference"))
        # As train() sets it: a compiled run keeps the reference layers and uses the fused loss.
        model.set_kernels(model.config.kernels, fused_loss=variant != "reference")
        groups = model.optimizer_param_groups(0.1)
    model.train()
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    tokens = torch.randint(0, shape["vocab_size"], (batch, seq + 1))
    weights = torch.ones(batch, seq)
    normalizer = weights.sum()

    def loss_of(inputs, targets):
        if variant == "llama":
            return weighted_cross_entropy(model(inputs).logits, targets, weights, normalizer=normalizer)[0]
        return model(inputs, targets=targets, target_weights=weights, normalizer=normalizer).loss

    if variant == "compiled":
        loss_of = torch.compile(loss_of)

    def step() -> None:
        loss = loss_of(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if variant == "compiled":
        start = time.perf_counter()
        step()
        compile_times[variant] = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    return step, n_params


def bench_rung(name: str, rung: dict, vocab: int, seq: int, batch: int, variants: list[str], repeats: int,
               steps_per_sample: int) -> dict:
    shape = {"vocab_size": vocab, "n_layer": rung["n_layer"], "n_embd": rung["n_embd"], "n_head": rung["n_head"]}
    compile_times: dict[str, float] = {}
    steps, params = {}, {}
    for variant in variants:
        steps[variant], params[variant] = make_step(variant, shape, batch, seq, compile_times)
    for step in steps.values():  # warm-up
        step()
        step()
    # The GEMM pass takes its turn in the same rotation, so the peak and the steps are timed
    # under the same machine load (on a shared VM both drift by tens of percent within minutes).
    gemm, gemm_flops = gemm_pass(batch * seq, rung["n_embd"], rung["n_layer"], vocab)
    gemm()
    timed = {**steps, "gemm": gemm}
    samples: dict[str, list[float]] = {v: [] for v in timed}
    names = list(timed)
    for r in range(repeats):
        for variant in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(steps_per_sample):
                timed[variant]()
            samples[variant].append((time.perf_counter() - start) / steps_per_sample)
    tokens = batch * seq
    gemm_times = samples.pop("gemm")
    peak = gemm_flops / statistics.median(gemm_times)
    flops_per_token = step_flops(params["reference" if "reference" in params else variants[0]], rung["n_layer"],
                                 rung["n_embd"], seq)
    out = {"rung": name, "shape": shape, "params": params, "gemm_peak_flops": peak,
           "gemm_samples_s": gemm_times, "variants": {}}
    for variant, times in samples.items():
        median = statistics.median(times)
        achieved = flops_per_token * tokens / median
        # Share of the peak per repeat (step and GEMM pass of the same rotation), then the median.
        shares = [flops_per_token * tokens / t / (gemm_flops / g) for t, g in zip(times, gemm_times)]
        out["variants"][variant] = {"step_s": median, "samples_s": times, "tokens_per_s": tokens / median,
                                    "flops_per_s": achieved, "share_of_gemm_peak": statistics.median(shares),
                                    "compile_s": compile_times.get(variant)}
    return out


def loop_tokens_per_s(rung: str, fast: bool, steps: int, threads: int, config_path: str, work: Path) -> float:
    """Steady-state tokens/s of the real trainer (``train()`` on the built-in world's windows,
    masking arm) for ``steps`` steps: today's path (reference kernels, eager) or the fast path
    (the config's kernels and compile setting). The first quarter of log intervals is dropped."""
    import json as _json
    import time as _time

    from tokenfilter.config import load_config
    from tokenfilter.config.experiments import Run, runtime_settings, train_spec
    from tokenfilter.train.__main__ import run_spec

    from tokenfilter.data.tokenizer import padded_vocab_size
    from tokenfilter.model.gpt import paper_parameter_count

    config = load_config(config_path)
    config["training"].update(log_every=max(1, steps // 8), snapshots=0, checkpoint_every=10**9, threads=threads)
    if not fast:
        config["training"].update(kernels="reference", compile=False)
    elif config["training"]["compile"] == "auto":
        # Decide as the full run would (its whole budget, not this benchmark's few steps).
        size, seq = config["ladder"][rung], config["model"]["block_size"]
        n = paper_parameter_count(padded_vocab_size(config["tokenizer"]["vocab_size"]), size["n_layer"], size["n_embd"])
        flops = config["training"]["tokens_per_param"] * n * (6 * n + 6 * size["n_layer"] * seq * size["n_embd"])
        config["training"]["compile"] = bool(flops >= config["training"]["compile_min_flops"])
    run = Run("main", "mask", rung, "default")
    tag = f"{rung}-{'fast' if fast else 'today'}-{_time.time_ns()}"
    spec = dict(train_spec(config, run, str(work / "tokens"), str(work / "scores")), **runtime_settings(config),
                out_dir=str(work / "runs" / tag), checkpoint_dir=str(work / "ckpt" / tag), progress=False)
    spec["budget"] = {"steps": steps}
    run_spec(spec)
    log = [_json.loads(line) for line in (work / "runs" / tag / "train_log.jsonl").read_text().splitlines()]
    steady = log[len(log) // 4:]
    return statistics.median(r["tokens_per_s"] for r in steady)


def prepare_world(work: Path, n_docs: int) -> None:
    from tokenfilter.data.corpus import iter_corpus
    from tokenfilter.data.shards import tokenize_corpus
    from tokenfilter.data.synthetic.build import SyntheticParams, default_outputs, generate_synthetic
    from tokenfilter.data.tokenizer import build_tokenizer
    from tokenfilter.filtering.annotation import annotate

    out = default_outputs(work / "data")
    generate_synthetic(SyntheticParams.from_config({"n_docs": n_docs, "n_eval_docs": 4, "n_attack_docs": 4}),
                       seed=1, val_fraction=0.0, out=out)
    tokenizer = build_tokenizer("train", (r["text"] for r in iter_corpus(out["corpus"], ["text"])), vocab_size=1024)
    tokenize_corpus(out["corpus"], tokenizer, work / "tokens", split="train", progress=False)
    annotate({"kind": "truth", "context_window": 8, "error_rate": 0.11}, work / "tokens", work / "scores", seed=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--rungs", nargs="*", help="ladder sizes (default: all of the config's)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps-per-sample", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time the fast path under torch.compile")
    parser.add_argument("--no-llama", action="store_true")
    parser.add_argument("--loop-steps", type=int, default=0,
                        help="also time the real trainer for this many steps per run: today's path vs the fast path")
    parser.add_argument("--loop-repeats", type=int, default=3)
    parser.add_argument("--json-out")
    args = parser.parse_args()

    from tokenfilter.config import load_config
    from tokenfilter.data.tokenizer import padded_vocab_size

    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    vocab = padded_vocab_size(config["tokenizer"]["vocab_size"])
    seq = config["model"]["block_size"]
    variants = ["reference", "fused"] + (["compiled"] if args.compile else []) + ([] if args.no_llama else ["llama"])
    results = []
    for name in args.rungs or list(config["ladder"]):
        rung = config["ladder"][name]
        batch = rung.get("micro_batch_size", config["training"]["micro_batch_size"])
        result = bench_rung(name, rung, vocab, seq, batch, variants, args.repeats, args.steps_per_sample)
        results.append(result)
        ref = result["variants"]["reference"]["tokens_per_s"]
        line = [f"{name:>5} N={result['params']['reference']:>8,} GEMM peak {result['gemm_peak_flops'] / 1e9:5.1f} GFLOP/s"]
        for variant, v in result["variants"].items():
            line.append(f"{variant} {v['tokens_per_s']:8,.0f} tok/s ({v['tokens_per_s'] / ref:4.2f}×, "
                        f"{100 * v['share_of_gemm_peak']:3.0f}% of peak)")
        print(" | ".join(line), flush=True)
    report = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "threads": args.threads, "seq": seq, "vocab": vocab, "repeats": args.repeats, "rungs": results}
    if args.loop_steps:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            prepare_world(work, n_docs=6000)
            loop = {}
            for name in args.rungs or list(config["ladder"]):
                samples = {"today": [], "fast": []}
                for r in range(args.loop_repeats):
                    for path in (["today", "fast"] if r % 2 == 0 else ["fast", "today"]):
                        samples[path].append(loop_tokens_per_s(name, path == "fast", args.loop_steps, args.threads,
                                                               args.config, work))
                medians = {k: statistics.median(v) for k, v in samples.items()}
                loop[name] = {"samples": samples, "median_tokens_per_s": medians,
                              "speedup": medians["fast"] / medians["today"]}
                print(f"{name:>5} trainer: today {medians['today']:8,.0f} tok/s | fast {medians['fast']:8,.0f} tok/s "
                      f"({medians['fast'] / medians['today']:.2f}×)", flush=True)
            report["trainer_loop"] = loop
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

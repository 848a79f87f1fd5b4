"""GPU throughput of the paper's rungs: one prepared script for a lent accelerator.

Measures, on the first CUDA device (bf16 autocast, ``torch.compile`` on and off):

1. the device's dense bf16 matmul peak (8192³ GEMMs), the denominator of MFU;
2. training tokens/s and MFU of the 61M and 224M rungs of ``config/paper.yaml`` (micro-batch 16 ×
   2048, AdamW, the fast path's fused loss), MFU = (6N + 6·n_layer·T·d)·tokens/s ÷ peak;
3. with two or more GPUs, the same step under DDP on 2 processes (``torchrun``) against 1;
4. annotation tokens/s of a 224M-per-direction biLM: two 224M models' forward passes to the
   probe layer (13 of 14, the authors' choice) over 2048-token windows.

    python benchmarks/bench_gpu.py --json-out gpu.json            # on the GPU machine
    torchrun --nproc-per-node=2 benchmarks/bench_gpu.py --ddp-only # DDP part, launched by the above

Prints one JSON document; no network. Written and dry-run on CPU (``--dry-run`` uses tiny
shapes on the CPU so the code path is checked without a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]
PAPER_RUNGS = {"61M": (7, 448, 8), "224M": (14, 896, 14)}
VOCAB, SEQ = 100288, 2048


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, n: int, repeats: int) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2.0 * n**3 * repeats / (time.perf_counter() - start)


def build(n_layer: int, n_embd: int, n_head: int, vocab: int, seq: int, device: torch.device):
    from tokenfilter.model.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, n_layer=n_layer, n_embd=n_embd, n_head=n_head, block_size=seq,
                         kernels="fused")).to(device)


def train_throughput(model, batch: int, seq: int, device: torch.device, compiled: bool, steps: int,
                     ddp: bool = False) -> dict:
    from tokenfilter.model.loss import fused_weighted_cross_entropy

    forward = torch.compile(model) if compiled else model
    if ddp:
        forward = torch.nn.parallel.DistributedDataParallel(forward, device_ids=[device.index])
    optimizer = torch.optim.AdamW(model.optimizer_param_groups(0.1), lr=3e-4, fused=device.type == "cuda")
    vocab = model.config.vocab_size
    tokens = torch.randint(0, vocab, (batch, seq + 1), device=device)
    weights = torch.ones(batch, seq, device=device)
    normalizer = weights.sum()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = forward(tokens[:, :-1]).logits
        loss = fused_weighted_cross_entropy(logits, tokens[:, 1:], weights, normalizer)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step()
    synchronize(device)
    first_step_s = time.perf_counter() - start
    for _ in range(2):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    flops_per_token = 6.0 * n_params + 6.0 * model.config.n_layer * seq * model.config.n_embd
    tokens_per_s = batch * seq * steps / elapsed
    return {"params": n_params, "tokens_per_s": tokens_per_s, "flops_per_s": flops_per_token * tokens_per_s,
            "first_step_s": first_step_s, "compiled": compiled}


@torch.no_grad()
def annotation_throughput(n_layer: int, n_embd: int, n_head: int, vocab: int, seq: int, batch: int, probe_layer: int,
                          device: torch.device, steps: int) -> float:
    from tokenfilter.model.hidden import residual_stream

    left = build(n_layer, n_embd, n_head, vocab, seq, device).eval()
    right = build(n_layer, n_embd, n_head, vocab, seq, device).eval()
    tokens = torch.randint(0, vocab, (batch, seq), device=device)

    def annotate():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            residual_stream(left, tokens, [probe_layer])
            residual_stream(right, tokens.flip(1), [probe_layer])

    annotate()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        annotate()
    synchronize(device)
    return batch * seq * steps / (time.perf_counter() - start)


def ddp_only(args) -> None:
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank()
    device = torch.device(f"cuda:{rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    n_layer, n_embd, n_head = PAPER_RUNGS["224M"] if not args.dry_run else (2, 64, 4)
    vocab, seq = (VOCAB, SEQ) if not args.dry_run else (512, 64)
    model = build(n_layer, n_embd, n_head, vocab, seq, device)
    result = train_throughput(model, args.batch, seq, device, compiled=not args.dry_run, steps=args.steps, ddp=True)
    total = torch.tensor(result["tokens_per_s"], device=device)
    dist.all_reduce(total)
    if rank == 0:
        print(json.dumps({"ddp_processes": dist.get_world_size(), "tokens_per_s_total": float(total)}))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU, to check the code path")
    parser.add_argument("--ddp-only", action="store_true")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    if args.ddp_only:
        return ddp_only(args)

    device = torch.device("cuda:0" if torch.cuda.is_available() and not args.dry_run else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    rungs = PAPER_RUNGS if not args.dry_run else {"tiny": (2, 64, 4)}
    vocab, seq = (VOCAB, SEQ) if not args.dry_run else (512, 64)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)",
              "torch": torch.__version__, "gpus": torch.cuda.device_count(), "batch": args.batch, "seq": seq}
    peak = matmul_peak(device, 8192 if device.type == "cuda" else 256, repeats=20 if device.type == "cuda" else 2)
    report["bf16_matmul_peak_flops"] = peak
    report["train"] = []
    for name, (n_layer, n_embd, n_head) in rungs.items():
        for compiled in (False, True):
            if compiled and args.dry_run:
                continue
            model = build(n_layer, n_embd, n_head, vocab, seq, device)
            result = train_throughput(model, args.batch, seq, device, compiled, args.steps)
            result.update(rung=name, mfu=result["flops_per_s"] / peak)
            report["train"].append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
    n_layer, n_embd, n_head = rungs["224M"] if "224M" in rungs else next(iter(rungs.values()))
    report["annotation_tokens_per_s_bilm"] = annotation_throughput(
        n_layer, n_embd, n_head, vocab, seq if device.type == "cuda" else 64, args.batch, max(0, n_layer - 2),
        device, args.steps)
    if torch.cuda.device_count() >= 2:
        for procs in (1, 2):
            out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc-per-node={procs}", __file__, "--ddp-only", "--batch", str(args.batch),
                                  "--steps", str(args.steps)], capture_output=True, text=True)
            report[f"ddp_{procs}"] = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else out.stderr[-2000:]
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text)


if __name__ == "__main__":
    main()

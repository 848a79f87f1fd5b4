"""Pretraining: one run of one arm at one size, in one process or under ``torchrun`` (DDP).

Reads top to bottom like nanoGPT's train.py: the run spec, then setup (devices, data, model,
filter plan, optimizer, resume), then the loop. The arms' logic lives in
:mod:`tokenfilter.filtering` (one call per micro-batch); checkpoint I/O in
:mod:`tokenfilter.checkpoint`; the loss in :mod:`tokenfilter.loss`.

Paper App A: AdamW β=(0.9, 0.95), 10% linear warm-up, cosine decay to 0.1× the peak LR, gradient
clipping, a global batch in tokens reached by gradient accumulation, D = 20·N tokens.

A run checkpoints every ``checkpoint_every`` steps into a directory outside its declared outputs,
and on SIGTERM. Restarted, it resumes from the newest checkpoint and continues exactly as the
uninterrupted run would have: the data a step reads is a function of (seed, step) alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from tokenfilter.annotate import open_scores
from tokenfilter.checkpoint import LOG_FILE, STATE_FILE, find_checkpoint, load_checkpoint, save_checkpoint, save_model
from tokenfilter.errors import ConfigError
from tokenfilter.filtering import TOKEN_ARMS, apply_arm, forget_flags, kept_documents, make_plan
from tokenfilter.io import read_json, write_json, write_jsonl
from tokenfilter.loss import weighted_cross_entropy
from tokenfilter.model import TokenFilterConfig, TokenFilterForCausalLM
from tokenfilter.shards import TokenShard
from tokenfilter.tokenizer import padded_vocab_size
from tokenfilter.windows import TrainingWindows

log = logging.getLogger("tokenfilter.train")


@dataclass
class TrainSpec:
    """Everything one run needs; written into its outputs, hashed to match checkpoints."""

    run: str  # e.g. "main/mask/m/default", for logs
    arm: str
    model: dict[str, Any]  # TokenFilterConfig fields except vocab_size
    train_shard: str
    scores_dir: str | None  # annotation directory of the filter source (None for the baseline)
    filtering: dict[str, Any] = field(default_factory=dict)
    lr: float = 3e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float | None = 1.0
    warmup_fraction: float = 0.1
    min_lr_ratio: float = 0.1
    tokens_per_param: float = 20.0
    batch_tokens: int = 8192
    micro_batch_size: int = 16
    budget: str = "processed"  # "processed" | "loss_bearing"
    precision: str = "auto"
    compile: bool = False
    seed: int = 1337
    snapshots: int = 4
    checkpoint_every: int = 200
    # Not part of the fingerprint: they do not change what is learnt.
    out_dir: str = ""
    checkpoint_dir: str = ""
    threads: int = 1
    log_every: int = 10
    keep_checkpoints: bool = False
    wandb: bool = False
    tensorboard: bool = False
    progress: bool = True

    def fingerprint(self) -> str:
        volatile = {"out_dir", "checkpoint_dir", "threads", "log_every", "keep_checkpoints", "wandb",
                    "tensorboard", "progress", "run", "checkpoint_every"}
        payload = {k: v for k, v in dataclasses.asdict(self).items() if k not in volatile}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def lr_at(step: int, max_steps: int, peak: float, warmup_fraction: float, min_lr_ratio: float) -> float:
    """Linear warm-up, cosine decay to ``min_lr_ratio·peak`` at ``max_steps``, then flat."""
    warmup = max(1, int(round(warmup_fraction * max_steps)))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return peak * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def snapshot_steps(max_steps: int, n: int) -> list[int]:
    """Steps after which an intermediate snapshot is saved: n evenly spaced, before the end."""
    return sorted({int(round(max_steps * k / (n + 1))) for k in range(1, n + 1)} - {0, max_steps})


class _Preempted(Exception):
    pass


def train(spec: TrainSpec) -> dict[str, Any]:
    # --- devices and processes ------------------------------------------------------------------
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.set_num_threads(spec.threads)
    use_bf16 = spec.precision == "bf16" or (spec.precision == "auto" and device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()
    master = rank == 0

    # --- data -------------------------------------------------------------------------------------
    shard = TokenShard.open(spec.train_shard)
    special = shard.meta["special_ids"]
    token_scores = doc_scores = None
    if spec.arm != "baseline":
        if spec.scores_dir is None:
            raise ConfigError(f"run {spec.run}: arm {spec.arm!r} needs a filter source (scores_dir)")
        token_scores, doc_scores = open_scores(spec.scores_dir)
        if len(token_scores) != shard.n_tokens or len(doc_scores) != len(shard.docs):
            raise ValueError(f"{spec.scores_dir}: scores do not match the token shard {spec.train_shard}")

    # --- model ------------------------------------------------------------------------------------
    torch.manual_seed(spec.seed)  # same initial weights on every rank
    config = TokenFilterConfig(vocab_size=padded_vocab_size(shard.meta["vocab_size"]), eos_token_id=special["eot"],
                               bos_token_id=special["eot"], pad_token_id=special["eot"], **spec.model)
    model = TokenFilterForCausalLM(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())

    # --- budget -----------------------------------------------------------------------------------
    seq_len = config.block_size
    per_step = seq_len * spec.micro_batch_size * world
    accumulation = max(1, round(spec.batch_tokens / per_step))
    batch_tokens = accumulation * per_step
    target_tokens = int(spec.tokens_per_param * n_params)
    max_steps = max(1, math.ceil(target_tokens / batch_tokens))

    # --- filter plan --------------------------------------------------------------------------------
    doc_lengths = shard.docs["length"].astype(np.int64)
    plan = make_plan(spec.arm, spec.filtering, None if token_scores is None else np.asarray(token_scores),
                     doc_scores, doc_lengths, max_steps, spec.seed)
    kept = kept_documents(plan, doc_scores) if doc_scores is not None else None
    windows = TrainingWindows(shard, kept, seq_len, spec.seed)
    filtered_fraction = _filtered_fraction(plan, token_scores, kept, doc_lengths)

    # --- optimizer ------------------------------------------------------------------------------
    groups = model.optimizer_param_groups(spec.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps,
                                  fused=device.type == "cuda")

    # --- resume -------------------------------------------------------------------------------
    ckpt_dir = Path(spec.checkpoint_dir)
    run_dir = ckpt_dir / "checkpoint"
    fingerprint = spec.fingerprint()
    state = {"step": 0, "tokens": 0, "loss_bearing": 0.0, "windows_read": 0, "resumed_from": [], "wall_time": 0.0}
    log_records: list[dict] = []
    found = find_checkpoint(run_dir)
    if found is not None:
        saved = read_json(found / STATE_FILE)
        if saved.get("fingerprint") == fingerprint:
            state, log_records = load_checkpoint(found, model, optimizer)
            torch.set_rng_state(torch.tensor(state.pop("torch_rng"), dtype=torch.uint8))
            state["resumed_from"] = state.get("resumed_from", []) + [state["step"]]
            if master:
                log.info("resuming %s from step %d", spec.run, state["step"])
        elif master:
            log.warning("ignoring checkpoint %s: it belongs to a different run spec", found)

    raw_model = model
    if spec.compile:
        model = torch.compile(model)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)

    preempted = {"flag": False}
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: preempted.update(flag=True)) if master or world == 1 else None
    trackers = _Trackers(spec, master)

    def checkpoint() -> None:
        if master:
            save_checkpoint(raw_model, optimizer, {**state, "fingerprint": fingerprint,
                                                   "torch_rng": torch.get_rng_state().tolist()}, run_dir, log_records)

    snapshots = set(snapshot_steps(max_steps, spec.snapshots))
    flops_per_token = raw_model.flops_per_token(seq_len)
    bar = tqdm(total=max_steps, initial=min(state["step"], max_steps), desc=spec.run, unit="step",
               disable=not (master and spec.progress), mininterval=2.0)
    interval_start, interval_tokens = time.time(), 0
    run_start_wall = state["wall_time"]
    t0 = time.time()

    def done() -> bool:
        if spec.budget == "processed":
            return state["step"] >= max_steps
        return state["loss_bearing"] >= target_tokens or state["step"] >= 4 * max_steps

    # --- the loop --------------------------------------------------------------------------------
    try:
        while not done():
            step = state["step"]
            lr = lr_at(step, max_steps, spec.lr, spec.warmup_fraction, spec.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]

            # Build every micro-batch first: the loss-bearing count of the whole step normalises
            # each micro-batch's loss, so accumulation equals one big batch (loss.py).
            micro = []
            for m in range(accumulation):
                first = ((step * accumulation + m) * world + rank) * spec.micro_batch_size
                positions = windows.positions(np.arange(first, first + spec.micro_batch_size))
                tokens = torch.from_numpy(windows.tokens(positions))
                if plan.arm in TOKEN_ARMS:
                    flags = torch.from_numpy(forget_flags(plan, np.asarray(token_scores[positions.reshape(-1)]).reshape(positions.shape), positions, step))
                else:
                    flags = torch.zeros(tokens.shape, dtype=torch.bool)
                inputs, targets, weights = apply_arm(plan.arm, tokens, flags, special["hidden"])
                micro.append((inputs.to(device), targets.to(device), weights.to(device)))
            step_weight = sum(w.sum() for _, _, w in micro)
            if world > 1:
                dist.all_reduce(step_weight)
            # DDP averages gradients over ranks; scale the normaliser so the result is the sum over
            # all ranks' loss-bearing targets divided by their total.
            normalizer = step_weight.clamp_min(1.0) / world

            step_loss = torch.zeros((), device=device)
            for m, (inputs, targets, weights) in enumerate(micro):
                sync = m == accumulation - 1
                ctx = model.no_sync() if (world > 1 and not sync) else nullcontext()
                with ctx:
                    with autocast:
                        logits = model(inputs).logits
                    loss, _ = weighted_cross_entropy(logits, targets, weights, normalizer=normalizer)
                    loss.backward()
                step_loss += loss.detach()
            if spec.grad_clip:
                grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), spec.grad_clip)
            else:
                grad_norm = torch.zeros(())
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if world > 1:
                dist.all_reduce(step_loss)
                step_loss /= world

            state["step"] = step + 1
            state["tokens"] += batch_tokens
            state["loss_bearing"] += float(step_weight)
            state["windows_read"] += accumulation * world * spec.micro_batch_size
            interval_tokens += batch_tokens
            bar.update(1)

            if state["step"] % spec.log_every == 0 or done():
                elapsed = max(time.time() - interval_start, 1e-9)
                record = {
                    "step": state["step"], "lr": lr, "loss": float(step_loss), "grad_norm": float(grad_norm),
                    "tokens": state["tokens"], "loss_bearing_tokens": int(state["loss_bearing"]),
                    "flops": flops_per_token * state["tokens"], "tokens_per_s": interval_tokens / elapsed,
                    "epochs": windows.epochs(state["windows_read"]),
                }
                log_records.append(record)
                trackers.log(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
                interval_start, interval_tokens = time.time(), 0
            if master and state["step"] in snapshots:
                save_model(raw_model, ckpt_dir / "snapshots" / f"step_{state['step']:07d}")
            if state["step"] % spec.checkpoint_every == 0:
                state["wall_time"] = run_start_wall + time.time() - t0
                checkpoint()
            if preempted["flag"]:
                raise _Preempted()
    except _Preempted:
        state["wall_time"] = run_start_wall + time.time() - t0
        checkpoint()
        log.warning("SIGTERM: checkpointed %s at step %d; a restart resumes from there", spec.run, state["step"])
        raise SystemExit(143)
    finally:
        bar.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        trackers.close()

    state["wall_time"] = run_start_wall + time.time() - t0
    summary = {
        "run": spec.run, "arm": spec.arm, "params": n_params, "steps": state["step"], "max_steps": max_steps,
        "batch_tokens": batch_tokens, "seq_len": seq_len, "world_size": world,
        "nominal_tokens": target_tokens, "tokens": state["tokens"], "loss_bearing_tokens": int(state["loss_bearing"]),
        # Paper compute axis: C = 6·N·D with D the nominal 20·N (every arm the same); and what ran.
        "nominal_flops": 6.0 * n_params * target_tokens, "processed_flops": 6.0 * n_params * state["tokens"],
        "flops_with_attention": flops_per_token * state["tokens"],
        "plan": dataclasses.asdict(plan), "filtered_fraction": filtered_fraction,
        "epochs": windows.epochs(state["windows_read"]), "final_loss": log_records[-1]["loss"] if log_records else None,
        "wall_time_s": state["wall_time"], "resumed_from": state["resumed_from"],
        "snapshot_steps": sorted(snapshots), "fingerprint": fingerprint,
        "spec": dataclasses.asdict(spec),
    }
    if master:
        _finish(spec, raw_model, ckpt_dir, log_records, summary)
    if world > 1:
        dist.barrier()
    return summary


def _filtered_fraction(plan, token_scores, kept, doc_lengths) -> float | None:
    """Share of the corpus's tokens the plan filters (before label noise)."""
    if plan.arm in TOKEN_ARMS:
        scores = np.asarray(token_scores)
        stride = max(1, len(scores) // 20_000_000)
        return float(np.mean(scores[::stride].astype(np.float32) >= plan.token_threshold))
    if plan.arm == "document":
        return float(doc_lengths[~kept].sum() / doc_lengths.sum())
    return 0.0


def _finish(spec: TrainSpec, model, ckpt_dir: Path, log_records: list[dict], summary: dict) -> None:
    """Write the run's declared outputs; the resumable checkpoint goes unless asked to keep it."""
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_model(model, out / "model")
    snapshot_src = ckpt_dir / "snapshots"
    snapshot_dst = out / "snapshots"
    shutil.rmtree(snapshot_dst, ignore_errors=True)
    snapshot_dst.mkdir()
    if snapshot_src.exists():
        # Only complete snapshots: a kill during a save can leave a hidden temporary directory.
        for child in sorted(snapshot_src.glob("step_*")):
            shutil.copytree(child, snapshot_dst / child.name)
    write_jsonl(out / LOG_FILE, log_records)
    write_json(out / "summary.json", summary)  # last: its presence marks a finished run
    if not spec.keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)


class _Trackers:
    """Optional experiment trackers, used only when installed and enabled."""

    def __init__(self, spec: TrainSpec, master: bool):
        self.wandb = self.tb = None
        if not master:
            return
        if spec.wandb:
            try:
                import wandb

                self.wandb = wandb.init(project="tokenfilter", name=spec.run, config=dataclasses.asdict(spec), resume="allow")
            except ImportError:
                log.warning("training.wandb is on but wandb is not installed; not logging to it")
        if spec.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(spec.checkpoint_dir) / "tensorboard"))
            except ImportError:
                log.warning("training.tensorboard is on but tensorboard is not installed; not logging to it")

    def log(self, record: dict) -> None:
        if self.wandb is not None:
            self.wandb.log(record, step=record["step"])
        if self.tb is not None:
            for key, value in record.items():
                if key != "step":
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
        if self.tb is not None:
            self.tb.close()


def main(argv: list[str] | None = None) -> None:
    """``python -m tokenfilter.train spec.json``: the entry point torchrun launches."""
    import sys

    from tokenfilter.logs import setup_job_logging

    args = argv if argv is not None else sys.argv[1:]
    setup_job_logging(None)
    spec_dict = json.loads(Path(args[0]).read_text())
    try:
        train(TrainSpec(**spec_dict))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()

"""The one training loop: pretraining, fine-tuning, RMU and masked-LM pretraining all run it.

Reads top to bottom like nanoGPT's train.py: the spec, then setup (devices, model, budget,
optimizer, resume), then the loop. What varies between stages is not here:

- a *batch source* (:class:`BatchSource`) says which (input ids, target ids, per-target
  weights) a step reads; it is a pure function of (seed, step), so a resumed run reads exactly
  what the uninterrupted run would have. Pretraining windows with a filtering arm
  (:mod:`tokenfilter.train.pretraining`) and fine-tuning examples
  (:mod:`tokenfilter.train.finetuning`) are two sources.
- an *objective* (:mod:`tokenfilter.train.objectives`) turns the model and a batch into a loss.
  The default is the weighted next-token cross-entropy; RMU and masked-LM pretraining are
  others, and an objective may select the only parameters that train.

Paper App A: AdamW β=(0.9, 0.95), 10% linear warm-up, cosine decay to 0.1× the peak LR,
gradient clipping, a global batch in tokens reached by gradient accumulation. Gradient
accumulation normalises every micro-batch by the loss-bearing count of the whole step (all-reduced
under DDP), so accumulation equals one big batch even with masked targets.

A run checkpoints every ``checkpoint_every`` steps into a directory outside its declared
outputs, and on SIGTERM. Restarted, it resumes from the newest checkpoint whose fingerprint (a
hash of everything that changes the trained model) matches, and continues exactly as the
uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from tqdm import tqdm

from tokenfilter.environment import run_environment
from tokenfilter.errors import ConfigError
from tokenfilter.io import read_json, write_json, write_jsonl
from tokenfilter.model.checkpoint import (LOG_FILE, STATE_FILE, find_checkpoint, load_checkpoint, load_model,
                                          save_checkpoint, save_model)
from tokenfilter.train.objectives import Objective, make_objective

log = logging.getLogger("tokenfilter.train")


# --- what to train ------------------------------------------------------------------------------

@dataclass
class TrainSpec:
    """Everything one training run needs. Built from the workflow config (one place for each
    default: the config schema); written into the run's outputs and hashed to match checkpoints."""

    run: str  # e.g. "main/mask/m/default", for logs
    task: str  # which batch source: "pretrain" | "finetune" (tokenfilter.train.__main__)
    init_from: str  # "scratch", or a model directory (save_pretrained format) to start from
    model: dict[str, Any] | None  # architecture of a "scratch" model (vocabulary from the data)
    data: dict[str, Any]  # the batch source's settings
    objective: dict[str, Any]  # {"kind": "lm"} or a custom objective and its settings
    lr: float
    weight_decay: float
    betas: list[float]
    eps: float
    grad_clip: float | None
    schedule: str  # "cosine": warm-up then cosine to min_lr_ratio; "constant": warm-up then flat
    warmup_fraction: float
    min_lr_ratio: float
    budget: dict[str, float]  # one of {"tokens_per_param": x}, {"tokens": n}, {"steps": n}, {"epochs": e}
    count: str  # what the budget counts: "processed" tokens or "loss_bearing" tokens
    batch_tokens: int
    micro_batch_size: int
    precision: str  # "auto" (bf16 autocast on GPU, fp32 on CPU) | "fp32" | "bf16"
    kernels: str  # "reference" | "fused": the same math with fewer passes over memory (model + loss)
    compile: bool | str  # torch.compile the objective: True, False, or "auto" (when the run is large)
    compile_min_flops: float  # "auto" compiles runs whose training FLOPs reach this
    seed: int
    snapshots: int
    # Runtime knobs: they do not change what is learnt, so they stay out of the fingerprint.
    out_dir: str
    checkpoint_dir: str  # resumable checkpoint and snapshots, outside the declared outputs
    checkpoint_every: int
    threads: int
    log_every: int
    keep_checkpoints: bool
    wandb: bool
    tensorboard: bool
    peak_flops: float | None  # device peak for MFU; None: looked up for known GPUs
    progress: bool = True  # a progress bar on stderr (tests switch it off)

    RUNTIME = ("out_dir", "checkpoint_dir", "threads", "log_every", "keep_checkpoints", "wandb", "tensorboard",
               "progress", "peak_flops", "run", "checkpoint_every")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"training spec: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def fingerprint(self) -> str:
        payload = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RUNTIME}
        if self.init_from != "scratch":
            payload["init_weights"] = _weights_identity(self.init_from)
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _weights_identity(model_dir: str) -> dict[str, Any]:
    """What identifies the starting weights of a run that does not start from scratch: a retrained
    upstream model must not let an old checkpoint resume."""
    path = Path(model_dir) / "model.safetensors"
    if not path.is_file():
        return {"path": str(model_dir), "missing": True}
    stat = path.stat()
    return {"path": str(model_dir), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


# --- what a batch source provides ----------------------------------------------------------------

@dataclass
class Batch:
    """One micro-batch: position t reads ``inputs[t]`` and is scored on ``targets[t]`` with
    ``weights[t]`` (0 = no loss). ``n_tokens`` counts processed (non-padding) positions."""

    inputs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor
    n_tokens: int
    attention_mask: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. RMU's retain inputs

    def to(self, device: torch.device) -> "Batch":
        move = (lambda t: None if t is None else t.to(device))
        return Batch(move(self.inputs), move(self.targets), move(self.weights), self.n_tokens,
                     move(self.attention_mask), {k: move(v) for k, v in self.extra.items()})


class BatchSource(Protocol):
    """Where a run's batches come from. Items (windows, examples) are read in a seeded order per
    epoch; item ``i`` of the run is a pure function of the seed and ``i``."""

    seq_len: int  # longest sequence a batch holds
    n_items: int  # items per epoch

    def model_defaults(self) -> dict[str, Any]:
        """Config fields a scratch model takes from the data (vocabulary size, special ids)."""

    def start(self, max_steps: int) -> None:
        """Called once the run's length is known (e.g. a delayed filter's start step)."""

    def batch(self, step: int, first: int, count: int) -> Batch:
        """Items ``first .. first + count`` of the run, as read at optimizer step ``step``."""

    def epochs(self, items_read: int) -> float:
        """Passes over the data after reading ``items_read`` items."""

    def summary(self) -> dict[str, Any]:
        """What the source did, for the run's summary (e.g. the filter plan)."""


# --- schedule ------------------------------------------------------------------------------------

def lr_at(step: int, max_steps: int, peak: float, warmup_fraction: float, min_lr_ratio: float,
          schedule: str = "cosine") -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio·peak`` at ``max_steps`` (then flat), or
    flat at ``peak`` for the constant schedule."""
    warmup = max(1, int(round(warmup_fraction * max_steps)))
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return peak * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def snapshot_steps(max_steps: int, n: int) -> list[int]:
    """Steps after which an intermediate snapshot is saved: n evenly spaced, before the end."""
    return sorted({int(round(max_steps * k / (n + 1))) for k in range(1, n + 1)} - {0, max_steps})


# Dense bf16 tensor-core peaks (FLOP/s) of GPUs the paper's scale runs on, for MFU. A device not
# listed gets no MFU unless ``training.peak_flops`` names its peak.
BF16_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


def device_peak_flops(device: torch.device, configured: float | None) -> float | None:
    if configured:
        return configured
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_FLOPS.items() if key in name), None)


# --- parameters that train -------------------------------------------------------------------------

def optimizer_groups(model: torch.nn.Module, weight_decay: float, trainable: set[str] | None) -> list[dict]:
    """AdamW parameter groups (with ``lr_scale``); only ``trainable`` parameter names when given.

    Parameters outside ``trainable`` are frozen (``requires_grad=False``) and left out of the
    optimizer, so weight decay cannot touch them either.
    """
    if hasattr(model, "optimizer_param_groups"):
        groups = model.optimizer_param_groups(weight_decay)
    else:  # any transformers model: decay matrices, not norms and biases
        params = dict(model.named_parameters())
        groups = [{"name": "matrices", "params": [p for p in params.values() if p.ndim >= 2],
                   "weight_decay": weight_decay, "lr_scale": 1.0},
                  {"name": "vectors", "params": [p for p in params.values() if p.ndim < 2],
                   "weight_decay": 0.0, "lr_scale": 1.0}]
    if trainable is None:
        return groups
    keep = {id(p) for name, p in model.named_parameters() if name in trainable}
    for name, param in model.named_parameters():
        param.requires_grad_(id(param) in keep)
    groups = [dict(g, params=[p for p in g["params"] if id(p) in keep]) for g in groups]
    return [g for g in groups if g["params"]]


def select_parameters(model: torch.nn.Module, patterns: list[str]) -> set[str]:
    """Names of the parameters matching any of the regular expressions (full match)."""
    compiled = [re.compile(p) for p in patterns]
    names = {name for name, _ in model.named_parameters() if any(c.fullmatch(name) for c in compiled)}
    if not names:
        raise ConfigError(f"no parameter matches {patterns}; parameters: {[n for n, _ in model.named_parameters()]}")
    return names


class Evaluator(Protocol):
    """Measures the model during training (e.g. the forget loss of adversarial finetuning) every
    ``every`` optimizer steps, and once before the first step. Its result is logged; a result with
    ``"stop": True`` ends the run early (e.g. at parity with the baseline). Evaluations are kept in
    the checkpoint, so a resumed run has them all and stops where the uninterrupted run would."""

    every: int

    def __call__(self, model: torch.nn.Module, step: int, tokens: int) -> dict[str, Any]:
        ...


class _Preempted(Exception):
    pass


# --- the loop ------------------------------------------------------------------------------------

def train(spec: TrainSpec, source: BatchSource, objective: Objective | None = None,
          extra_summary: dict[str, Any] | None = None, evaluator: Evaluator | None = None) -> dict[str, Any]:
    """Train ``spec`` on batches of ``source`` with ``objective`` (default: from ``spec.objective``),
    measured by ``evaluator`` if given; returns the run's summary (also written to
    ``out_dir/summary.json``)."""
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

    # --- model ------------------------------------------------------------------------------------
    torch.manual_seed(spec.seed)  # same initial weights on every rank
    model = _build_model(spec, source).to(device)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    objective = objective or make_objective(spec.objective, spec.seed)

    # --- budget -----------------------------------------------------------------------------------
    seq_len = source.seq_len
    per_step = seq_len * spec.micro_batch_size * world
    accumulation = max(1, round(spec.batch_tokens / per_step))
    batch_tokens = accumulation * per_step
    items_per_step = accumulation * world * spec.micro_batch_size
    target_tokens, max_steps = _budget(spec.budget, n_params, batch_tokens, items_per_step, source.n_items)
    source.start(max_steps)

    # --- kernels: compiled, or the fused eager ones -------------------------------------------------
    # torch.compile fuses every elementwise op of the forward and the loss itself, and does so
    # better on plain ops than around hand-written autograd Functions (measured: benchmarks/), so a
    # compiled run uses the reference kernels; an eager run uses the fused ones. "auto" compiles
    # only runs long enough to repay the compile time (tens of seconds cold, a few with a warm cache).
    flops_per_token = model.flops_per_token(seq_len) if hasattr(model, "flops_per_token") else 6.0 * n_params
    compiled = spec.compile is True or (spec.compile == "auto" and flops_per_token * target_tokens >= spec.compile_min_flops)
    kernels = "reference" if compiled else spec.kernels
    if hasattr(model, "set_kernels"):
        # The fused head-and-loss pays under compile too (it is matmuls and one log-softmax per
        # chunk, which compile cannot fuse across); today's path (kernels: reference, no compile)
        # keeps the reference loss.
        model.set_kernels(kernels, fused_loss=spec.kernels == "fused")
    objective.setup(model, device)
    if compiled:
        objective.compile()

    # --- optimizer ------------------------------------------------------------------------------
    trainable = objective.trainable(model)
    groups = optimizer_groups(model, spec.weight_decay, trainable)
    if device.type == "cpu" and not compiled:
        # torch's own CPU update without torch.optim's 1.7 s import of dynamo (train/optim.py)
        from tokenfilter.train.optim import AdamW

        optimizer = AdamW(groups, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps)
    else:
        optimizer = torch.optim.AdamW(groups, lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps,
                                      fused=device.type == "cuda")

    # --- resume -------------------------------------------------------------------------------
    ckpt_dir = Path(spec.checkpoint_dir)
    run_dir = ckpt_dir / "checkpoint"
    fingerprint = spec.fingerprint()
    state = {"step": 0, "tokens": 0, "loss_bearing": 0.0, "windows_read": 0, "resumed_from": [], "wall_time": 0.0,
             "evals": [], "stopped": False}
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
    peak = device_peak_flops(device, spec.peak_flops)
    bar = tqdm(total=max_steps, initial=min(state["step"], max_steps), desc=spec.run, unit="step",
               disable=not (master and spec.progress), mininterval=2.0)
    interval_start, interval_tokens = time.time(), 0
    run_start_wall = state["wall_time"]
    t0 = time.time()

    def done() -> bool:
        if state.get("stopped"):
            return True
        if spec.count == "processed":
            return state["step"] >= max_steps
        return state["loss_bearing"] >= target_tokens or state["step"] >= 4 * max_steps

    def evaluate() -> None:
        raw_model.eval()
        result = evaluator(raw_model, state["step"], state["tokens"])
        raw_model.train()
        state.setdefault("evals", []).append({"step": state["step"], "tokens": state["tokens"], **result})
        if result.get("stop"):
            state["stopped"] = True

    if evaluator is not None and not state.get("evals"):
        evaluate()  # the starting point (before any update), e.g. the loss finetuning starts from

    # --- the loop --------------------------------------------------------------------------------
    try:
        while not done():
            step = state["step"]
            lr = lr_at(step, max_steps, spec.lr, spec.warmup_fraction, spec.min_lr_ratio, spec.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]

            # Read every micro-batch first: the loss-bearing count of the whole step normalises
            # each micro-batch's loss, so accumulation equals one big batch (model/loss.py).
            micro = []
            for m in range(accumulation):
                first = ((step * accumulation + m) * world + rank) * spec.micro_batch_size
                micro.append(source.batch(step, first, spec.micro_batch_size).to(device))
            step_weight = sum(b.weights.sum() for b in micro)
            step_tokens = sum(b.n_tokens for b in micro)
            if world > 1:
                dist.all_reduce(step_weight)
                counted = torch.tensor(float(step_tokens), device=device)
                dist.all_reduce(counted)
                step_tokens = int(counted.item())
            # DDP averages gradients over ranks; scale the normaliser so the result is the sum over
            # all ranks' loss-bearing targets divided by their total.
            normalizer = step_weight.clamp_min(1.0) / world

            step_loss = torch.zeros((), device=device)
            for m, batch in enumerate(micro):
                sync = m == accumulation - 1
                ctx = model.no_sync() if (world > 1 and not sync) else nullcontext()
                with ctx:
                    with autocast:
                        loss = objective(model, batch, normalizer)
                    loss.backward()
                step_loss += loss.detach()
            if spec.grad_clip:
                grad_norm = torch.nn.utils.clip_grad_norm_([p for p in raw_model.parameters() if p.requires_grad],
                                                           spec.grad_clip)
            else:
                grad_norm = torch.zeros(())
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if world > 1:
                dist.all_reduce(step_loss)
                step_loss /= world

            state["step"] = step + 1
            state["tokens"] += step_tokens
            state["loss_bearing"] += float(step_weight)
            state["windows_read"] += items_per_step
            interval_tokens += step_tokens
            bar.update(1)
            if evaluator is not None and (state["step"] % evaluator.every == 0 or done()):
                evaluate()  # before the log line: a run that stops here still logs its last step

            if state["step"] % spec.log_every == 0 or done():
                elapsed = max(time.time() - interval_start, 1e-9)
                tokens_per_s = interval_tokens / elapsed
                record = {
                    "step": state["step"], "lr": lr, "loss": float(step_loss), "grad_norm": float(grad_norm),
                    "tokens": state["tokens"], "loss_bearing_tokens": int(state["loss_bearing"]),
                    "flops": flops_per_token * state["tokens"], "tokens_per_s": tokens_per_s,
                    "flops_per_s": flops_per_token * tokens_per_s,
                    "mfu": flops_per_token * tokens_per_s * world / peak if peak else None,
                    "epochs": source.epochs(state["windows_read"]),
                }
                log_records.append(record)
                trackers.log(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{tokens_per_s:.0f}")
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
    source_summary = source.summary()
    summary = {
        "run": spec.run, "task": spec.task, **({"arm": source_summary["arm"]} if "arm" in source_summary else {}),
        "params": n_params, "trainable_params": sum(p.numel() for p in raw_model.parameters() if p.requires_grad),
        "steps": state["step"], "max_steps": max_steps,
        "batch_tokens": batch_tokens, "seq_len": seq_len, "world_size": world,
        "nominal_tokens": target_tokens, "tokens": state["tokens"], "loss_bearing_tokens": int(state["loss_bearing"]),
        # Paper compute axis: C = 6·N·D with D the nominal 20·N (every arm the same); and what ran.
        "nominal_flops": 6.0 * n_params * target_tokens, "processed_flops": 6.0 * n_params * state["tokens"],
        "flops_with_attention": flops_per_token * state["tokens"], "compiled": compiled, "kernels": kernels,
        **{k: v for k, v in source_summary.items() if k != "arm"},
        "epochs": source.epochs(state["windows_read"]), "final_loss": log_records[-1]["loss"] if log_records else None,
        "wall_time_s": state["wall_time"], "resumed_from": state["resumed_from"],
        "snapshot_steps": sorted(snapshots), "fingerprint": fingerprint,
        **({"evals": state.get("evals", []), "stopped_early": bool(state.get("stopped"))} if evaluator is not None else {}),
        "environment": run_environment(),
        # What the objective resolved at setup (e.g. RMU's layer and steering coefficient).
        **({objective.kind: dict(objective.summary)} if isinstance(getattr(objective, "summary", None), dict) else {}),
        **(extra_summary or {}),
        "spec": dataclasses.asdict(spec),
    }
    if master:
        _finish(spec, raw_model, ckpt_dir, log_records, summary)
    if world > 1:
        dist.barrier()
    return summary


def _build_model(spec: TrainSpec, source: BatchSource) -> torch.nn.Module:
    """A fresh model of ``spec.model`` (vocabulary and special ids from the data), or the saved one."""
    if spec.init_from != "scratch":
        return load_model(spec.init_from)
    if not spec.model:
        raise ConfigError(f"run {spec.run}: init_from 'scratch' needs a model architecture (spec.model)")
    fields = dict(spec.model)
    architecture = fields.pop("architecture", "tokenfilter")
    if architecture == "tokenfilter":
        from tokenfilter.model.gpt import GPT, GPTConfig

        return GPT(GPTConfig(**source.model_defaults(), **fields))
    if architecture == "roberta":  # the masked-LM encoder baseline of the classifier stage
        from tokenfilter.classify.mlm import build_encoder

        return build_encoder(source.model_defaults(), fields)
    raise ConfigError(f"run {spec.run}: unknown model architecture {architecture!r}; known: tokenfilter, roberta")


def _budget(budget: dict[str, float], n_params: int, batch_tokens: int, items_per_step: int,
            items_per_epoch: int) -> tuple[int, int]:
    """(target tokens, optimizer steps) of a budget given in tokens per parameter, tokens, steps
    or epochs. Steps fix the schedule's length; a loss-bearing budget may run past them."""
    if len(budget) != 1:
        raise ConfigError(f"a training budget names exactly one of tokens_per_param, tokens, steps, epochs; got {budget}")
    (kind, amount), = budget.items()
    if kind == "tokens_per_param":
        target = int(amount * n_params)
    elif kind == "tokens":
        target = int(amount)
    elif kind == "steps":
        return int(amount) * batch_tokens, max(1, int(amount))
    elif kind == "epochs":
        steps = max(1, math.ceil(amount * items_per_epoch / items_per_step))
        return steps * batch_tokens, steps
    else:
        raise ConfigError(f"unknown training budget {kind!r}; allowed: tokens_per_param, tokens, steps, epochs")
    return target, max(1, math.ceil(target / batch_tokens))


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
                if key != "step" and value is not None:
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
        if self.tb is not None:
            self.tb.close()

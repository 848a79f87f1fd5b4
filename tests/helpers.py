"""Helpers shared by tests: training specs built the way the workflow builds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenfilter.config import default_of
from tokenfilter.config.experiments import RUNTIME_KEYS
from tokenfilter.train.loop import TrainSpec

MODEL = {"n_layer": 1, "n_embd": 16, "n_head": 2, "block_size": 32, "position_encoding": "rope",
         "rope_theta": 10000.0, "mup_base_width": None, "init_std": 0.02}


def runtime(out_dir: str | Path, checkpoint_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """Runtime knobs at their schema defaults (logging every step, no progress bar)."""
    knobs = {key: default_of(f"training.{key}") for key in RUNTIME_KEYS}
    knobs.update(log_every=1, out_dir=str(out_dir), checkpoint_dir=str(checkpoint_dir), progress=False)
    knobs.update(overrides)
    return knobs


def pretrain_spec(shard: str | Path, scores_dir: str | Path | None, tmp_path: Path, name: str = "run",
                  arm: str = "mask", filtering: dict | None = None, **overrides: Any) -> TrainSpec:
    """A small pretraining spec of the tiny world (the fields of ``config.experiments.train_spec``)."""
    fields: dict[str, Any] = {
        "run": f"test/{arm}/tiny/{name}", "task": "pretrain", "init_from": "scratch", "model": dict(MODEL),
        "data": {"train_shard": str(shard), "arm": arm, "scores_dir": None if scores_dir is None else str(scores_dir),
                 "filtering": filtering or {"token_threshold": 0.5, "document_threshold": 0.3, "fraction": None,
                                            "noise": 0.0, "delay": 0.0},
                 "filter_spec": {"kind": "truth", "context_window": 4, "error_rate": 0.0}},
        "objective": {"kind": "lm"}, "lr": 1e-2, "weight_decay": 0.1, "betas": [0.9, 0.95], "eps": 1e-8,
        "grad_clip": 1.0, "schedule": "cosine", "warmup_fraction": 0.1, "min_lr_ratio": 0.1,
        "budget": {"tokens_per_param": 4}, "count": "processed", "batch_tokens": 512, "micro_batch_size": 16,
        "precision": "fp32", "kernels": "fused", "compile": False, "compile_min_flops": 2.0e12, "seed": 1337, "snapshots": 2,
        **runtime(tmp_path / f"{name}_out", tmp_path / f"{name}_ckpt", checkpoint_every=10),
    }
    for key, value in overrides.items():
        if key in fields["data"]:
            fields["data"][key] = value
        else:
            fields[key] = value
    return TrainSpec.from_dict(fields)

"""Experiment series resolved into runs, and each run's training spec and job resources.

``config["experiments"]`` declares named series, each arms × sizes × variants (variants are
overrides of the ``filtering`` defaults). One generic set of rules serves every series
(pypsa-eur's scenarios-as-data): a run's identity is its path, and everything a rule needs to
know about a run comes from the functions here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

ARMS = ("baseline", "document", "mask", "remove")
BASELINE_SERIES = "baselines"  # every series shares one baseline model per size
DEFAULT_VARIANT = "default"
BASELINE_VARIANT = "none"


@dataclass(frozen=True, order=True)
class Run:
    """One pretraining run: ``results/pretrain/{series}/{arm}/{size}/{variant}/``."""

    series: str
    arm: str
    size: str
    variant: str

    @property
    def name(self) -> str:
        return f"{self.series}/{self.arm}/{self.size}/{self.variant}"

    def path(self, stage: str = "pretrain") -> str:
        return f"results/{stage}/{self.name}"


def baseline_run(size: str) -> Run:
    return Run(BASELINE_SERIES, "baseline", size, BASELINE_VARIANT)


def series_runs(config: dict[str, Any], series: str) -> Iterator[Run]:
    """The runs of a series; its baselines are the shared baseline of each size."""
    spec = config["experiments"][series]
    variants = list(spec.get("variants") or {DEFAULT_VARIANT: {}})
    for size in spec["sizes"]:
        for arm in spec["arms"]:
            if arm == "baseline":
                yield baseline_run(size)
            else:
                for variant in variants:
                    yield Run(series, arm, size, variant)


def all_runs(config: dict[str, Any]) -> list[Run]:
    return sorted({run for series in config["experiments"] for run in series_runs(config, series)})


def filtering_settings(config: dict[str, Any], run: Run) -> dict[str, Any]:
    """The filter settings a run trains with (the baseline filters nothing)."""
    if run.arm == "baseline":
        return {}
    settings = dict(config["filtering"])
    settings.update((config["experiments"][run.series].get("variants") or {}).get(run.variant, {}))
    return settings


def size_resources(config: dict[str, Any], size: str) -> dict[str, int]:
    """Job resources of a training run of ``size``: training defaults, then the size's own."""
    resources = {"gpu": 0, "cpus": 1, "mem_mb": 4000, "runtime": 60}
    resources.update(config["training"].get("resources", {}))
    resources.update(config["ladder"][size].get("resources", {}))
    return resources


def train_spec(config: dict[str, Any], run: Run, train_shard: str, scores_dir: str | None) -> dict[str, Any]:
    """The :class:`tokenfilter.train.TrainSpec` fields of ``run`` (JSON-serialisable).

    Only what changes the trained model goes in: Snakemake reruns a job when its params change,
    and an evaluation setting or a logging knob must not retrain a model. The knobs that do not
    change the model come from :func:`runtime_settings` when the job runs.
    """
    size = config["ladder"][run.size]
    training = config["training"]
    model = config["model"]
    return {
        "run": run.name,
        "arm": run.arm,
        "model": {
            "n_layer": size["n_layer"], "n_embd": size["n_embd"], "n_head": size["n_head"],
            "block_size": model["block_size"], "position_encoding": model["position_encoding"],
            "rope_theta": model["rope_theta"], "mup_base_width": model["mup_base_width"],
            "init_std": model["init_std"],
        },
        "train_shard": train_shard,
        "scores_dir": scores_dir,
        "filtering": filtering_settings(config, run),
        "lr": size["lr"],
        "weight_decay": size["weight_decay"],
        "betas": list(training["betas"]),
        "eps": training["eps"],
        "grad_clip": size.get("grad_clip", training["grad_clip"]),
        "warmup_fraction": training["warmup_fraction"],
        "min_lr_ratio": training["min_lr_ratio"],
        "tokens_per_param": training["tokens_per_param"],
        "batch_tokens": training["batch_tokens"],
        "micro_batch_size": size.get("micro_batch_size", training["micro_batch_size"]),
        "budget": training["budget"],
        "precision": training["precision"],
        "compile": training["compile"],
        "seed": config["seed"],
        "snapshots": training["snapshots"],
    }


RUNTIME_KEYS = ("checkpoint_every", "threads", "log_every", "keep_checkpoints", "wandb", "tensorboard")


def runtime_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Training knobs that do not change the trained model (threads, logging, checkpointing)."""
    return {key: config["training"][key] for key in RUNTIME_KEYS}


def filter_of(config: dict[str, Any], run: Run) -> str | None:
    """Name of the filter source a run reads (None for the baseline)."""
    return None if run.arm == "baseline" else filtering_settings(config, run)["filter"]

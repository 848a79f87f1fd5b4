"""``python -m tokenfilter.train spec.json``: run one training spec (the entry point torchrun
launches for multi-GPU runs). ``spec["task"]`` names the batch source."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch.distributed as dist


def run_spec(spec_dict: dict[str, Any]) -> dict[str, Any]:
    """Run a training spec (a :class:`tokenfilter.train.loop.TrainSpec` as a dict)."""
    from tokenfilter.errors import ConfigError
    from tokenfilter.train.loop import TrainSpec

    spec = TrainSpec.from_dict(spec_dict)
    if spec.task == "pretrain":
        from tokenfilter.train.pretraining import pretrain

        return pretrain(spec)
    if spec.task == "finetune":
        from tokenfilter.train.finetuning import finetune

        return finetune(spec)
    if spec.task == "bilm":
        from tokenfilter.classify.bilm import train_half

        return train_half(spec)
    if spec.task == "rmu":
        from tokenfilter.robustness.rmu import unlearn

        return unlearn(spec)
    if spec.task == "adversarial":
        from tokenfilter.robustness.adversarial import adversarial_finetune

        return adversarial_finetune(spec)
    raise ConfigError(f"training spec {spec.run!r}: unknown task {spec.task!r}; "
                      "known: pretrain, finetune, bilm, rmu, adversarial")


def main(argv: list[str] | None = None) -> None:
    from tokenfilter.logs import setup_job_logging

    args = argv if argv is not None else sys.argv[1:]
    setup_job_logging(None)
    try:
        run_spec(json.loads(Path(args[0]).read_text()))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()

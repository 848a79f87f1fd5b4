"""The one checkpoint format: a ``save_pretrained`` directory (config.json + model.safetensors),
plus, for resumable checkpoints, ``optimizer.pt`` and ``trainer_state.json``.

Final models, snapshots and resumable checkpoints are all this format, so anything that loads a
model (evaluation, lm-eval, generate) loads any of them, as the plain-PyTorch model
(:func:`load_model`) or as the transformers one (:func:`load_hf_model`). Optimizer state is loaded with
``torch.load(weights_only=True)``: nothing here unpickles arbitrary objects (DESIGN §8).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from tokenfilter.io import atomic_directory, read_json, read_jsonl, write_json, write_jsonl

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
LOG_FILE = "train_log.jsonl"


def save_model(model, directory: str | os.PathLike) -> None:
    """Write a loadable model directory atomically."""
    with atomic_directory(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)


def save_checkpoint(model, optimizer: torch.optim.Optimizer, state: dict[str, Any], directory: str | os.PathLike,
                    log_records: list[dict] | None = None) -> None:
    """A resumable checkpoint: model, optimizer, trainer state and the training log so far,
    replaced atomically as one unit (a log written separately could lag a checkpoint that a
    kill interrupted between the two writes)."""
    with atomic_directory(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        write_json(tmp / STATE_FILE, state)
        write_jsonl(tmp / LOG_FILE, log_records or [])


def find_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint at ``directory`` (or the copy a crash mid-swap left)."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(f".{directory.name}.old")):
        if (candidate / STATE_FILE).is_file() and (candidate / OPTIMIZER_FILE).is_file():
            return candidate
    return None


def load_checkpoint(directory: str | os.PathLike, model, optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], list[dict]]:
    """Load weights and optimizer state in place; returns the trainer state and the training log."""
    from safetensors.torch import load_file

    directory = Path(directory)
    weights = load_file(directory / "model.safetensors")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # Tied weights (the LM head, an encoder's decoder) are stored once; anything else missing
    # means a wrong checkpoint.
    tied = {"lm_head.weight", *(getattr(model, "_tied_weights_keys", None) or {})}
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"{directory}: checkpoint does not match the model (missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    optimizer.load_state_dict(torch.load(directory / OPTIMIZER_FILE, weights_only=True, map_location="cpu"))
    log = read_jsonl(directory / LOG_FILE) if (directory / LOG_FILE).exists() else []
    return read_json(directory / STATE_FILE), log


def read_model_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a saved model directory (no weights loaded)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not a saved model directory (no config.json)")
    return read_json(path)


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu"):
    """A model saved in the one format, as the plain-PyTorch :class:`tokenfilter.model.gpt.GPT`
    (what training and scoring jobs use: no transformers import), in eval mode."""
    from tokenfilter.model.gpt import GPT

    return GPT.from_pretrained(directory).to(device).eval()


def load_hf_model(directory: str | os.PathLike, device: str | torch.device = "cpu"):
    """The same model as a transformers model (``generate()``, lm-eval's ``HFLM``), in eval mode."""
    import tokenfilter.model.hf  # noqa: F401  (registers the architecture with the Auto classes)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(directory)
    return model.to(device).eval()

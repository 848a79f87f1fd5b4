"""Training objectives: what the one training loop minimises.

An objective is called with the (possibly DDP-wrapped) model, one micro-batch and the step's
normaliser (the loss-bearing count of the whole optimizer step), and returns the micro-batch's
share of the step's loss. It may keep state built from the starting model (``setup``: RMU keeps a
frozen copy) and may choose the only parameters that train (``trainable``: RMU trains a few MLPs;
everything else stays bit-identical, weight decay included).

- ``lm``: next-token cross-entropy with a weight per target, the project's one loss
  (pretraining of every arm, instruction / chat / refusal tuning, adversarial finetuning).

Stages add their own (RMU, masked-LM pretraining) with :func:`register_objective`; the loop, the
checkpoint format and resume are the same for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from tokenfilter.errors import ConfigError
from tokenfilter.model.gpt import GPT
from tokenfilter.model.loss import weighted_cross_entropy

if TYPE_CHECKING:
    from tokenfilter.train.loop import Batch


class Objective:
    """Base objective: next-token cross-entropy over every parameter."""

    kind = "lm"
    _loss = None  # the compiled loss function, once compile() ran

    def setup(self, model: torch.nn.Module, device: torch.device) -> None:
        """Called once with the starting model (after loading its weights, before resuming)."""

    def trainable(self, model: torch.nn.Module) -> set[str] | None:
        """Names of the parameters that train (None: all of them)."""
        return None

    def compile(self) -> None:
        """Compile the forward pass and the loss together (torch.compile of :meth:`loss`)."""
        self._loss = torch.compile(self.loss)

    def __call__(self, model: torch.nn.Module, batch: "Batch", normalizer: torch.Tensor) -> torch.Tensor:
        if batch.attention_mask is None and self._loss is not None:
            return self._loss(model, batch.inputs, batch.targets, batch.weights, normalizer)
        return self.loss(model, batch.inputs, batch.targets, batch.weights, normalizer, batch.attention_mask)

    def loss(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
             normalizer: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(getattr(model, "module", model), GPT):  # (DDP keeps the model as .module)
            # The model computes its own loss (the fused one when its kernels say so).
            return model(inputs, attention_mask=attention_mask, targets=targets, target_weights=weights,
                         normalizer=normalizer).loss
        loss, _ = weighted_cross_entropy(model(inputs, attention_mask=attention_mask).logits, targets, weights,
                                         normalizer=normalizer)
        return loss


_REGISTRY: dict[str, Callable[[dict[str, Any], int], Objective]] = {"lm": lambda settings, seed: Objective()}


def register_objective(kind: str, factory: Callable[[dict[str, Any], int], Objective]) -> None:
    """Make ``{"kind": kind, ...}`` objective specs buildable (``factory(settings, seed)``)."""
    _REGISTRY[kind] = factory


def make_objective(spec: dict[str, Any], seed: int) -> Objective:
    """The objective a training spec names (``spec["kind"]`` plus its settings)."""
    kind = spec.get("kind", "lm")
    if kind not in _REGISTRY:
        # Objectives of later stages register themselves when their module is imported.
        import importlib

        for module in ("tokenfilter.robustness.rmu", "tokenfilter.classify.mlm"):
            try:
                importlib.import_module(module)
            except ImportError:
                continue
    if kind not in _REGISTRY:
        raise ConfigError(f"unknown training objective {kind!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[kind]({k: v for k, v in spec.items() if k != "kind"}, seed)

"""RMU unlearning (Li et al. 2024, "The WMDP Benchmark", §5): the baseline that the paper's
filtered models are compared with under adversarial finetuning (paper §4.3, App B.3).

This is canonical RMU (DESIGN §4 trap 5), not the circuit-breaker-style loss of the authors'
``unlearn.py``:

- one control vector per run: u drawn uniformly from [0, 1)^d, unit-normalised, times the
  steering coefficient c;
- forget loss: MSE between layer ℓ's output (the residual stream after block ℓ,
  :mod:`tokenfilter.model.hidden`) on forget text and c·u, averaged over positions and channels;
- retain loss: α · MSE between layer ℓ's output on retain text under the trained model and
  under a frozen copy of the starting model;
- only the MLP weights of blocks ℓ−2..ℓ train (clipped at block 0); everything else stays
  bit-identical (the loop leaves frozen parameters out of AdamW, weight decay included).

The paper's settings: ℓ = the middle layer, α = 100, c = 20, AdamW lr 1e-4, weight decay 0.01,
1000 steps; forget = PubMed, retain = Project Gutenberg.

RMU runs in the one training loop: :class:`RMUObjective` is registered as the objective kind
``"rmu"``, :class:`RMUBatches` is its batch source (forget windows plus as many retain windows),
:func:`unlearn` runs a spec, and :func:`rmu_report` checks the result (forget loss up, retain
loss flat).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tokenfilter.data.shards import TokenShard
from tokenfilter.data.tokenizer import padded_vocab_size
from tokenfilter.errors import ConfigError
from tokenfilter.model.hidden import decoder_blocks, n_blocks, residual_stream, resolve_layers
from tokenfilter.train.loop import Batch, TrainSpec, train
from tokenfilter.train.objectives import Objective, make_objective, register_objective
from tokenfilter.train.windows import TrainingWindows

# Stream tags: the control vector and the retain order draw from streams of their own, derived
# from the run's seed, so they are independent of the forget order and of each other (DESIGN §4
# trap 8) and fixed for the run (a resumed run redraws the same values).
_CONTROL_STREAM = 0x524D55  # "RMU"
_RETAIN_STREAM = 0x524554  # "RET"

# The 7B-scale residual norm the paper's c = 20 is taken to be relative to (see
# scaled_steering_coeff): c_paper / REFERENCE_NORM = 5, a control vector five times the layer's
# typical norm.
REFERENCE_NORM = 4.0
# Forget tokens on which the norm-scaled coefficient measures the layer's mean norm.
NORM_TOKENS = 16384


# --- which layer, which parameters ----------------------------------------------------------------

def rmu_layer(n_layer: int) -> int:
    """RMU's layer ℓ for a model of ``n_layer`` blocks: the middle one (paper App B.3), (n_layer − 1) // 2.

    "Layer ℓ" is the output of block ℓ (:mod:`tokenfilter.model.hidden`): ℓ + 1 blocks run
    before the steered representation and n_layer − ℓ − 1 after it. For an even depth this is
    n_layer/2 − 1, the stream between blocks n/2 − 1 and n/2, with exactly half of the blocks on
    each side; n_layer/2 would put two blocks more before it than after. For an odd depth it is
    the middle block's output, n_layer // 2. Of the two even-depth candidates this is the earlier
    one, where a fixed c unlearns more strongly (Dang et al. 2025 find RMU weaker at later layers, whose
    activations have larger norms), and it keeps at least one frozen block after ℓ whenever
    n_layer ≥ 2. Paper ladder: 7 → 3, 10 → 4, 14 → 6, 20 → 9, 26 → 12, 32 → 15.
    """
    if n_layer < 1:
        raise ValueError(f"a model needs at least one block, got n_layer={n_layer}")
    return (n_layer - 1) // 2


def rmu_blocks(layer: int) -> list[int]:
    """Blocks whose MLP weights RMU trains: ℓ − 2 .. ℓ, clipped at block 0 (Li et al. train layers
    5, 6, 7 for ℓ = 7)."""
    if layer < 0:
        raise ValueError(f"layer must be resolved to a block index ≥ 0, got {layer}")
    return list(range(max(0, layer - 2), layer + 1))


def mlp_parameter_names(model: nn.Module, blocks: list[int]) -> set[str]:
    """Names of the MLP parameters of these decoder blocks (ours: ``transformer.h.{i}.mlp.c_fc.weight``
    and ``transformer.h.{i}.mlp.c_proj.weight``; a Llama: ``model.layers.{i}.mlp.*_proj.weight``)."""
    all_blocks = decoder_blocks(model)
    module_names = {id(module): name for name, module in model.named_modules()}
    parameter_names = [name for name, _ in model.named_parameters()]
    selected: set[str] = set()
    for i in blocks:
        prefix = f"{module_names[id(all_blocks[i])]}.mlp."
        found = {name for name in parameter_names if name.startswith(prefix)}
        if not found:
            raise ConfigError(f"RMU trains MLP weights, but block {i} has no parameters under {prefix!r}")
        selected |= found
    return selected


# --- the control vector -----------------------------------------------------------------------------

def _stream_seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0])


def control_vector(d: int, steering_coeff: float, seed: int) -> torch.Tensor:
    """c·u, float32 on the CPU: u drawn uniformly from [0, 1)^d (``torch.rand``, as Li et al.) and
    unit-normalised, so the target has norm c.

    Drawn from a generator of its own seeded from the run's seed: the same seed gives the same
    vector (a resumed run keeps it), another seed another one.
    """
    generator = torch.Generator().manual_seed(_stream_seed(seed, _CONTROL_STREAM))
    u = torch.rand(d, generator=generator, dtype=torch.float32)
    return steering_coeff * u / u.norm()


@torch.no_grad()
def mean_residual_norm(model: nn.Module, input_ids: torch.Tensor, layer: int, batch_size: int = 8) -> float:
    """Mean L2 norm per token of layer ``layer``'s output on windows ``input_ids`` (n, T).

    Each window's first position is skipped: it is the attention sink of a causal model and can
    carry outlier norms (Xiao et al. 2023; Sun et al. 2024, "Massive activations").
    """
    layer = resolve_layers(layer, n_blocks(model))[0]
    total, count = 0.0, 0
    for i in range(0, len(input_ids), batch_size):
        hidden = residual_stream(model, input_ids[i:i + batch_size], layer)[layer]
        if hidden.size(1) > 1:
            hidden = hidden[:, 1:]
        norms = hidden.float().norm(dim=-1)
        total += float(norms.sum())
        count += norms.numel()
    return total / count


def scaled_steering_coeff(model: nn.Module, forget_ids: torch.Tensor, layer: int, c_paper: float = 20.0,
                          reference_norm: float = REFERENCE_NORM) -> float:
    """The paper's steering coefficient carried over to ``model``: c = c_paper · mean‖h_ℓ‖ / reference_norm.

    Why scale: both RMU terms are squared errors of layer-ℓ activations, so multiplying every
    activation by s while multiplying c by s leaves the problem unchanged (α included); what
    matters is the ratio of c to the layer's typical norm. A fixed c is too weak where the
    layer's norm is large and needlessly strong where it is small (Dang et al. 2025, "On effects
    of steering latent representation for LLM unlearning", make the same observation across
    layers and scale c with the frozen model's activation norm in Adaptive RMU). c = 20 is the
    WMDP code's default, set for a 7B model (Zephyr-7B, layer 7); the paper used it unchanged.

    The rule keeps c / mean‖h_ℓ‖ at c_paper / reference_norm. ``reference_norm`` stands for the
    typical per-token residual norm at the layer the paper's c was set for. We take 4, an
    order-of-magnitude assumption that we could not measure here (no 7B model is available
    offline), chosen so that the control vector has five times the layer's typical norm: then
    the steered representation dominates what the blocks after ℓ add to the stream, which is
    how RMU scrambles the later layers (Li et al. §5; Dang et al.). ``mean‖h_ℓ‖`` is measured
    on forget text with the starting model (:func:`mean_residual_norm`).
    """
    if c_paper <= 0 or reference_norm <= 0:
        raise ValueError(f"c_paper and reference_norm must be > 0, got {c_paper} and {reference_norm}")
    return c_paper * mean_residual_norm(model, forget_ids, layer) / reference_norm


def forget_sample(shard: TokenShard | str | os.PathLike, n_tokens: int, seq_len: int) -> torch.Tensor:
    """The first ``n_tokens`` tokens of ``shard`` as consecutive windows (n, seq_len), at least one:
    a fixed sample, so a resumed run measures the same norm."""
    shard = shard if isinstance(shard, TokenShard) else TokenShard.open(shard)
    if shard.n_tokens < seq_len:
        raise ValueError(f"{shard.directory}: {shard.n_tokens} tokens are fewer than one window of {seq_len}")
    n_windows = max(1, min(n_tokens, shard.n_tokens) // seq_len)
    positions = np.arange(n_windows)[:, None] * seq_len + np.arange(seq_len)[None, :]
    tokens = np.asarray(shard.tokens[positions.reshape(-1)], dtype=np.int64).reshape(positions.shape)
    return torch.from_numpy(tokens)


# --- the objective ------------------------------------------------------------------------------------

def _hidden_size(model: nn.Module) -> int:
    config = model.config
    return int(getattr(config, "n_embd", None) or config.hidden_size)


def _context_length(model: nn.Module) -> int:
    config = model.config
    return int(getattr(config, "block_size", None) or getattr(config, "max_position_embeddings", 2048))


def _layer_output(model: nn.Module, input_ids: torch.Tensor, layer: int) -> torch.Tensor:
    """Layer ``layer``'s output with its autograd graph.

    Under DDP the forward must go through the wrapper and run to its end, so that DDP prepares its
    gradient all-reduce (the early stop of :func:`residual_stream` would skip that): a hook
    captures the block's output and the rest of the forward runs for nothing. Unwrapped models
    stop after block ℓ.
    """
    if not isinstance(model, nn.parallel.DistributedDataParallel):
        return residual_stream(model, input_ids, layer, grad=True)[layer]
    captured: dict[str, torch.Tensor] = {}

    def capture(module, args, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output

    handle = decoder_blocks(model.module)[layer].register_forward_hook(capture)
    try:
        model(input_ids=input_ids, use_cache=False)
    finally:
        handle.remove()
    return captured["h"]


class RMUObjective(Objective):
    """RMU's loss (Li et al. 2024, Algorithm 1) for one micro-batch of :class:`RMUBatches`.

    ``batch.inputs`` are forget windows, ``batch.extra["retain_inputs"]`` as many retain windows
    of the same length; every forget position has weight 1, so the loop's normaliser is the
    step's count of forget positions (per rank under DDP). The micro-batch's share of the step's
    loss is

        (Σ‖h_ℓ(forget) − c·u‖² + α·Σ‖h_ℓ(retain) − h_ℓ^frozen(retain)‖²) / (d · normaliser)

    with the sums over positions and channels, so the micro-batches of a step add up to
    MSE(forget) + α·MSE(retain) over the whole step, as one big batch would (retain positions
    equal forget positions in every micro-batch).

    ``layer`` None is the middle layer (:func:`rmu_layer`). ``steering_scale`` "norm" reads
    ``steering_coeff`` as the paper's c and scales it to this model (:func:`scaled_steering_coeff`,
    measured with the starting model on the first ``norm_tokens`` tokens of ``norm_shard``);
    "none" uses it as given, as the paper did for its own models. ``summary`` holds the resolved
    layer, trained blocks and coefficient once :meth:`setup` has run.
    """

    kind = "rmu"
    SETTINGS = {"layer", "alpha", "steering_coeff"}  # required
    OPTIONAL = {"steering_scale", "norm_shard", "norm_tokens", "reference_norm"}

    def __init__(self, layer: int | None, alpha: float, steering_coeff: float, seed: int,
                 steering_scale: str = "none", norm_shard: str | None = None, norm_tokens: int = NORM_TOKENS,
                 reference_norm: float = REFERENCE_NORM):
        if steering_scale not in ("none", "norm"):
            raise ConfigError(f"rmu: steering_scale must be 'none' or 'norm', got {steering_scale!r}")
        if not steering_coeff > 0 or not alpha >= 0:
            raise ConfigError(f"rmu: steering_coeff must be > 0 and alpha ≥ 0, got {steering_coeff} and {alpha}")
        if layer is not None and not isinstance(layer, int):
            raise ConfigError(f"rmu: layer must be a block index or null (the middle layer), got {layer!r}")
        self.layer_setting = layer
        self.alpha = float(alpha)
        self.steering_coeff = float(steering_coeff)
        self.seed = seed
        self.steering_scale = steering_scale
        self.norm_shard = norm_shard
        self.norm_tokens = int(norm_tokens)
        self.reference_norm = float(reference_norm)
        self.layer: int | None = None
        self.control: torch.Tensor | None = None  # c·u, on the model's device
        self.frozen: nn.Module | None = None
        self.summary: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: dict[str, Any], seed: int) -> "RMUObjective":
        """From an objective spec's settings (everything but ``kind``)."""
        missing = sorted(cls.SETTINGS - set(settings))
        unknown = sorted(set(settings) - cls.SETTINGS - cls.OPTIONAL)
        if missing or unknown:
            raise ConfigError(f"rmu objective: missing setting(s) {missing}, unknown setting(s) {unknown}; "
                              f"required {sorted(cls.SETTINGS)}, optional {sorted(cls.OPTIONAL)}")
        return cls(seed=seed, **settings)

    def resolve_layer(self, model: nn.Module) -> int:
        depth = n_blocks(model)
        if self.layer_setting is None:
            return rmu_layer(depth)
        return resolve_layers(self.layer_setting, depth)[0]

    def setup(self, model: nn.Module, device: torch.device) -> None:
        """Resolve ℓ and c, draw the control vector and keep a frozen copy of the starting model."""
        self.layer = self.resolve_layer(model)
        self.frozen = copy.deepcopy(model).eval().requires_grad_(False)
        coeff = self.steering_coeff
        if self.steering_scale == "norm":
            if self.norm_shard is None:
                raise ConfigError("rmu: steering_scale 'norm' needs norm_shard (forget text to measure the layer's norm on)")
            sample = forget_sample(self.norm_shard, self.norm_tokens, min(_context_length(model), self.norm_tokens))
            coeff = scaled_steering_coeff(self.frozen, sample.to(device), self.layer, self.steering_coeff,
                                          self.reference_norm)
        self.control = control_vector(_hidden_size(model), coeff, self.seed).to(device)
        self.summary.update(layer=self.layer, trained_blocks=rmu_blocks(self.layer), alpha=self.alpha,
                            steering_coeff=coeff, steering_scale=self.steering_scale,
                            paper_steering_coeff=self.steering_coeff)

    def trainable(self, model: nn.Module) -> set[str]:
        layer = self.layer if self.layer is not None else self.resolve_layer(model)
        return mlp_parameter_names(model, rmu_blocks(layer))

    def __call__(self, model: nn.Module, batch: Batch, normalizer: torch.Tensor) -> torch.Tensor:
        if self.control is None:
            raise RuntimeError("RMUObjective.setup must run before the objective is called")
        retain = batch.extra.get("retain_inputs")
        if retain is None:
            raise ValueError("an RMU batch carries its retain windows in extra['retain_inputs'] (RMUBatches)")
        if retain.shape != batch.inputs.shape or batch.attention_mask is not None:
            raise ValueError(f"RMU needs unpadded forget and retain windows of one shape, got {tuple(batch.inputs.shape)} "
                             f"and {tuple(retain.shape)}")
        # One forward for both halves: one DDP forward per micro-batch.
        hidden = _layer_output(model, torch.cat([batch.inputs, retain]), self.layer).float()
        forget_h, retain_h = hidden.split(len(batch.inputs))
        with torch.no_grad():
            frozen_h = residual_stream(self.frozen, retain, self.layer)[self.layer].float()
        forget_sq = (forget_h - self.control).pow(2).sum()
        retain_sq = (retain_h - frozen_h).pow(2).sum()
        return (forget_sq + self.alpha * retain_sq) / (hidden.size(-1) * normalizer)


register_objective("rmu", RMUObjective.from_settings)


# --- the batches ----------------------------------------------------------------------------------------

class RMUBatches:
    """Forget windows as ``inputs`` and as many retain windows in ``extra["retain_inputs"]``.

    Item i of the run is forget window i (the seeded window order of the forget shard, epoch
    after epoch, :class:`tokenfilter.train.windows.TrainingWindows`) and retain window i (an
    independent seeded order of the retain shard, cycling on its own): a pure function of the seed
    and i, so a resumed run reads exactly what the uninterrupted run would have. Epochs count
    passes over the forget windows. ``targets`` are the next tokens (unused by RMU) and every
    forget position has weight 1. ``n_tokens`` counts forget and retain positions: both go
    through the trained model.

    ``retain_documents`` "no_forget" keeps only the retain shard's documents without a
    ground-truth forget token (the built-in world's pretraining shard holds retain text and forget
    text; the paper's retain set, Project Gutenberg, holds no medical text); "all" keeps every
    document. The forget text should not be the forget *evaluation* text (the authors'
    ``unlearn.py`` unlearned on its test files).
    """

    def __init__(self, forget_shard: str | os.PathLike, retain_shard: str | os.PathLike, seq_len: int, seed: int,
                 retain_documents: str = "all"):
        forget, retain = TokenShard.open(forget_shard), TokenShard.open(retain_shard)
        for key in ("vocab_size", "special_ids"):
            if forget.meta.get(key) != retain.meta.get(key):
                raise ValueError(f"forget shard {forget_shard} and retain shard {retain_shard} differ in {key}: "
                                 "they must come from one tokenizer")
        self.seq_len, self.seed, self.retain_documents = seq_len, seed, retain_documents
        self.forget = TrainingWindows(forget, None, seq_len, seed)
        self.retain = TrainingWindows(retain, _retain_kept(retain, retain_documents), seq_len,
                                      _stream_seed(seed, _RETAIN_STREAM))
        self.n_items = self.forget.n_windows
        self.meta = forget.meta

    def model_defaults(self) -> dict[str, Any]:
        eot = self.meta["special_ids"]["eot"]
        return {"vocab_size": padded_vocab_size(self.meta["vocab_size"]), "eos_token_id": eot,
                "bos_token_id": eot, "pad_token_id": eot}

    def start(self, max_steps: int) -> None:
        pass

    def batch(self, step: int, first: int, count: int) -> Batch:
        items = np.arange(first, first + count)
        forget = torch.from_numpy(self.forget.tokens(self.forget.positions(items)))
        retain = torch.from_numpy(self.retain.tokens(self.retain.positions(items)))
        return Batch(forget[:, :-1].contiguous(), forget[:, 1:].contiguous(),
                     torch.ones(count, self.seq_len, dtype=torch.float32), n_tokens=2 * count * self.seq_len,
                     extra={"retain_inputs": retain[:, :-1].contiguous()})

    def epochs(self, items_read: int) -> float:
        return self.forget.epochs(items_read)

    def summary(self) -> dict[str, Any]:
        return {"forget_shard": str(self.forget.shard.directory), "retain_shard": str(self.retain.shard.directory),
                "retain_documents": self.retain_documents, "forget_windows": self.forget.n_windows,
                "retain_windows": self.retain.n_windows}


def _retain_kept(shard: TokenShard, documents: str) -> np.ndarray | None:
    """Which documents of the retain shard RMU reads (None: all)."""
    if documents == "all":
        return None
    if documents != "no_forget":
        raise ConfigError(f"retain_documents must be 'all' or 'no_forget', got {documents!r}")
    if shard.labels is None:
        raise ConfigError(f"{shard.directory}: retain_documents 'no_forget' needs ground-truth labels; "
                          "this shard has none")
    kept = shard.docs["n_forget"] == 0
    if not kept.any():
        raise ValueError(f"{shard.directory}: every document holds forget tokens; no retain document is left")
    return kept


DATA_KEYS = {"forget_shard", "retain_shard", "retain_documents", "seq_len"}


def unlearn(spec: TrainSpec) -> dict[str, Any]:
    """One RMU run: unlearn the model at ``spec.init_from``.

    ``spec.data`` names ``forget_shard`` and ``retain_shard`` (token shards of one tokenizer) and
    optionally ``retain_documents`` (:class:`RMUBatches`; default "all") and ``seq_len`` (default:
    the model's context); ``spec.objective`` is an ``rmu``
    objective. With ``steering_scale`` "norm" and no ``norm_shard``, the norm is measured on the
    forget shard. The run's summary carries the resolved layer and coefficient under ``"rmu"``.
    """
    from tokenfilter.model.checkpoint import read_model_config

    unknown = sorted(set(spec.data) - DATA_KEYS)
    if unknown or not {"forget_shard", "retain_shard"} <= set(spec.data):
        raise ConfigError(f"run {spec.run}: RMU data needs forget_shard and retain_shard (optional "
                          f"retain_documents, seq_len); got {sorted(spec.data)}")
    if spec.init_from == "scratch":
        raise ConfigError(f"run {spec.run}: RMU unlearns a trained model; init_from must be a model directory")
    seq_len = int(spec.data.get("seq_len") or read_model_config(spec.init_from)["block_size"])
    source = RMUBatches(spec.data["forget_shard"], spec.data["retain_shard"], seq_len, spec.seed,
                        spec.data.get("retain_documents", "all"))
    objective = make_objective(spec.objective, spec.seed)
    if not isinstance(objective, RMUObjective):
        raise ConfigError(f"run {spec.run}: an RMU run needs objective kind 'rmu', got {spec.objective.get('kind')!r}")
    if objective.steering_scale == "norm" and objective.norm_shard is None:
        objective.norm_shard = spec.data["forget_shard"]
    # The loop records the objective's resolved settings (objective.summary) under "rmu".
    return train(spec, source, objective)


# --- the check ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RMUReport:
    """Forget and retain text losses (nats per token) before and after RMU, and the bar they pass."""

    forget_before: float
    forget_after: float
    retain_before: float
    retain_after: float
    min_forget_increase: float
    max_retain_increase: float

    @property
    def forget_increase(self) -> float:
        return self.forget_after - self.forget_before

    @property
    def retain_increase(self) -> float:
        return self.retain_after - self.retain_before

    @property
    def passed(self) -> bool:
        return self.forget_increase >= self.min_forget_increase and self.retain_increase <= self.max_retain_increase

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "forget_increase": self.forget_increase,
                "retain_increase": self.retain_increase, "passed": self.passed}


def rmu_report(model_before: nn.Module | str | os.PathLike, model_after: nn.Module | str | os.PathLike,
               forget_shard: TokenShard | str | os.PathLike, retain_shard: TokenShard | str | os.PathLike, *,
               max_tokens: int, batch_size: int, min_forget_increase: float = 1.0,
               max_retain_increase: float = 0.05, device: str | torch.device = "cpu") -> RMUReport:
    """Did RMU work? Forget loss up by at least ``min_forget_increase`` nats and retain loss up by
    at most ``max_retain_increase`` (:func:`tokenfilter.evaluate.text.text_loss` on the first
    ``max_tokens`` tokens of each shard). Use held-out evaluation shards, not the text RMU trained on.

    Models are modules or saved model directories.
    """
    from tokenfilter.evaluate.text import text_loss
    from tokenfilter.model.checkpoint import load_model

    def as_model(model):
        return model.to(device) if isinstance(model, nn.Module) else load_model(model, device)

    def as_shard(shard):
        return shard if isinstance(shard, TokenShard) else TokenShard.open(shard)

    before, after = as_model(model_before), as_model(model_after)
    forget, retain = as_shard(forget_shard), as_shard(retain_shard)
    losses = {name: text_loss(model, shard, max_tokens, batch_size, device)["loss"]
              for name, model, shard in (("forget_before", before, forget), ("forget_after", after, forget),
                                         ("retain_before", before, retain), ("retain_after", after, retain))}
    return RMUReport(**losses, min_forget_increase=min_forget_increase, max_retain_increase=max_retain_increase)

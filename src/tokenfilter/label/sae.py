"""Sparse autoencoders for the SAE token labels (paper §5.1).

What the labelling stage needs from an SAE, whichever SAE it is:

- :func:`train_sae`: a TopK SAE trained with sae-lens's ``SAETrainer`` on activations *we* supply
  (our own model's residual stream; no TransformerLens model, nothing from the hub);
- :func:`load_sae`: that SAE from disk, or Gemma Scope (the paper's SAE) from the local Hugging Face
  cache;
- :func:`resid_post` / :func:`sae_activations` / :func:`encode`: the residual stream an SAE reads,
  and its latent activations;
- :func:`top_contexts`: each latent's top-activating contexts, as the judge's
  :class:`~tokenfilter.judge.base.LatentEvidence`.

Layer convention (DESIGN §4 trap 6). An SAE trained on ``blocks.L.hook_resid_post`` reads the
output of decoder block L. In transformers' ``output_hidden_states`` that is entry ``L + 1``
(entry 0 is the embedding output), which :func:`gemma_scope_hidden_index` spells out; the authors'
code read ``hidden_states[31]`` for the layer-31 SAE, one block too early. We do not index
``hidden_states`` at all: :func:`resid_post` reads the block's output through
:func:`tokenfilter.model.hidden.residual_stream`, which also serves the last block (whose
``hidden_states`` entry is taken after the final norm) and our own model.

sae-lens is imported inside the functions that need it: the import costs about 8 s of CPU, and
most users of this package (the token rule, retokenisation, the judge) never need it.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import torch
from torch import nn

from tokenfilter.errors import ConfigError
from tokenfilter.io import atomic_directory
from tokenfilter.judge.base import ActivationContext, LatentEvidence, Span
from tokenfilter.model.hidden import residual_stream

if TYPE_CHECKING:
    from sae_lens import SAE

# The paper's SAE (§5.1): Gemma Scope for Gemma 2 9B, residual stream, 16k latents, layer 31.
GEMMA_SCOPE_RELEASE = "gemma-scope-9b-pt-res-canonical"
GEMMA_SCOPE_SAE_ID = "layer_31/width_16k/canonical"

# Activations to train on: a tensor held in memory, a one-shot iterable of chunks, or a function
# that returns a fresh iterable of chunks on every call (one pass over a corpus that does not fit
# in memory). Chunks have shape (..., d_in); callers drop padding and special tokens first.
ActivationSource = Union[torch.Tensor, Iterable[torch.Tensor], Callable[[], Iterable[torch.Tensor]]]

_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


# --- the training data ---------------------------------------------------------------------------

def _rows(chunk: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A chunk of activations (..., d_in) as float32 rows (n, d_in)."""
    chunk = torch.as_tensor(chunk).detach()
    return chunk.reshape(-1, chunk.shape[-1]).to(torch.float32)


def endless_batches(source: ActivationSource, batch_size: int, seed: int = 0,
                    buffer_rows: int = 1 << 18) -> Iterator[torch.Tensor]:
    """Batches of exactly ``batch_size`` activation rows, forever, reshuffled on every pass.

    ``SAETrainer.fit`` calls ``next()`` until it has seen its sample budget, so the iterator must
    never run out, and its sparsity counters assume every batch holds ``train_batch_size_samples``
    rows. Rows left over at the end of a pass open the next one. A tensor (or a one-shot iterable,
    which is gathered into one, since it cannot be replayed) is permuted as a whole on every pass.
    A callable is called again for every pass and its rows are shuffled within a buffer of
    ``buffer_rows`` rows, as sae-lens's own activation store mixes its buffer.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    if isinstance(source, torch.Tensor):
        return _cycle_in_memory(_rows(source), batch_size, generator)
    if callable(source):
        return _cycle_stream(source, batch_size, generator, buffer_rows)
    chunks = [_rows(chunk) for chunk in source]
    if not chunks:
        raise ValueError("the activation source is empty")
    return _cycle_in_memory(torch.cat(chunks), batch_size, generator)


def _cycle_in_memory(data: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    if len(data) == 0:
        raise ValueError("the activation source is empty")
    order = torch.empty(0, dtype=torch.long)
    while True:
        order = torch.cat([order, torch.randperm(len(data), generator=generator)])
        while len(order) >= batch_size:
            yield data[order[:batch_size]]
            order = order[batch_size:]


def _cycle_stream(make_chunks: Callable[[], Iterable[torch.Tensor]], batch_size: int, generator: torch.Generator,
                  buffer_rows: int) -> Iterator[torch.Tensor]:
    pending: list[torch.Tensor] = []
    n_pending = 0
    while True:
        rows_this_pass = 0
        for chunk in make_chunks():
            rows = _rows(chunk)
            pending.append(rows)
            n_pending += len(rows)
            rows_this_pass += len(rows)
            if n_pending >= buffer_rows:
                batches, rest = _shuffled_batches(pending, batch_size, generator)
                yield from batches
                pending, n_pending = [rest], len(rest)
        if rows_this_pass == 0:
            raise ValueError("the activation source yielded no rows in a whole pass")
        batches, rest = _shuffled_batches(pending, batch_size, generator)
        yield from batches
        pending, n_pending = [rest], len(rest)


def _shuffled_batches(chunks: list[torch.Tensor], batch_size: int,
                      generator: torch.Generator) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The full batches of the shuffled rows of ``chunks``, and the rows left over."""
    rows = torch.cat(chunks)
    rows = rows[torch.randperm(len(rows), generator=generator)]
    n_full = len(rows) // batch_size
    batches = [rows[i * batch_size:(i + 1) * batch_size] for i in range(n_full)]
    return batches, rows[n_full * batch_size:]


# --- training, saving, loading -------------------------------------------------------------------

def train_sae(activations: ActivationSource, *, d_in: int, d_sae: int, k: int, total_samples: int,
              batch_size: int = 4096, lr: float = 3e-4, seed: int = 0, out_dir: str | os.PathLike,
              layer: int | None = None, device: str = "cpu", normalize: bool = True,
              norm_estimate_batches: int = 16, decay_fraction: float = 0.2,
              dead_feature_window: int | None = None) -> Path:
    """Train a TopK SAE on ``activations`` with sae-lens's ``SAETrainer``; save it to ``out_dir``.

    TopK rather than an L1 penalty: k fixes the number of active latents per token directly, so
    there is no sparsity coefficient to tune per model and layer, and TopK SAEs do not shrink the
    activations an L1 penalty pulls towards zero (Gao et al. 2024). sae-lens's TopK trainer also
    revives dead latents with its auxiliary loss. The paper's own SAE (Gemma Scope) is a JumpReLU
    SAE; :func:`encode` treats both alike.

    ``normalize`` scales inputs to mean norm sqrt(d_in) during training (sae-lens's
    ``expected_average_only_in``), so one learning rate serves residual streams of any scale; the
    factor is folded into the saved weights, which therefore read raw activations. It is estimated
    from ``norm_estimate_batches`` batches instead of sae-lens's default 1000, which would cost
    more than a small run's whole training. The learning rate is constant, then decays linearly
    to zero over the last ``decay_fraction`` of the steps.

    ``layer`` records ``blocks.<layer>.hook_resid_post`` as the SAE's hook, so
    :func:`sae_activations` later reads the right block (the output of block ``layer``).
    ``dead_feature_window``: steps without firing after which a latent counts as dead and the TopK
    auxiliary loss starts pulling it back (sae-lens's default, 1000 steps, is longer than a small
    run; default here: a twentieth of the steps, at least 10).
    Initialisation and data order follow ``seed``; the global RNG is left as it was.
    Returns ``out_dir``, which holds ``cfg.json`` and ``sae_weights.safetensors``.
    """
    from sae_lens import SAETrainer, TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.sae import SAEMetadata

    steps = total_samples // batch_size
    if steps < 1:
        raise ValueError(f"total_samples ({total_samples}) must cover at least one batch of {batch_size}")
    if not 1 <= k <= d_sae:
        raise ValueError(f"k must be in [1, d_sae={d_sae}], got {k}")
    metadata = SAEMetadata(hook_name=f"blocks.{layer}.hook_resid_post") if layer is not None else SAEMetadata()
    sae_cfg = TopKTrainingSAEConfig(
        d_in=d_in, d_sae=d_sae, k=k, device=device, metadata=metadata,
        normalize_activations="expected_average_only_in" if normalize else "none",
    )
    trainer_cfg = SAETrainerConfig(
        total_training_samples=steps * batch_size, train_batch_size_samples=batch_size, lr=lr,
        lr_end=lr,  # read (and asserted not None) even by the constant schedule
        lr_decay_steps=int(decay_fraction * steps), device=device,
        n_batches_for_norm_estimate=norm_estimate_batches,
        dead_feature_window=dead_feature_window or max(10, steps // 20),
        logger=LoggingConfig(log_to_wandb=False),
    )
    batches = _checked(endless_batches(activations, batch_size, seed), d_in)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sae = TopKTrainingSAE(sae_cfg)
        sae = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=batches).fit()
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        sae.save_inference_model(tmp)
    return out_dir


def _checked(batches: Iterator[torch.Tensor], d_in: int) -> Iterator[torch.Tensor]:
    for batch in batches:
        if batch.shape[-1] != d_in:
            raise ValueError(f"activations have width {batch.shape[-1]}, the SAE reads d_in={d_in}")
        yield batch


def load_sae(source: str | os.PathLike, sae_id: str | None = None, *, device: str = "cpu",
             dtype: str = "float32") -> "SAE":
    """An inference SAE: from a directory :func:`train_sae` (or sae-lens) saved, or, with ``sae_id``,
    a pretrained release such as Gemma Scope (:data:`GEMMA_SCOPE_RELEASE`, :data:`GEMMA_SCOPE_SAE_ID`).

    Pretrained weights come from the local Hugging Face cache: a download step fills it, and compute
    jobs run with ``HF_HUB_OFFLINE=1``, so a missing file is an error that says so rather than a
    download in the middle of a labelling job.
    """
    from sae_lens import SAE

    if sae_id is None:
        path = Path(source)
        if not (path / "cfg.json").is_file():
            raise FileNotFoundError(f"{path}: not an SAE directory (no cfg.json); for a pretrained release, "
                                    "pass its sae_id too")
        return SAE.load_from_disk(path, device=device, dtype=dtype)
    try:
        return SAE.from_pretrained(str(source), sae_id, device=device, dtype=dtype)
    except OSError as exc:  # offline and not cached, or no network
        raise ConfigError(f"SAE {source!r} / {sae_id!r}: its weights are not in the local Hugging Face cache "
                          f"and cannot be downloaded here ({type(exc).__name__}: {exc}); fill the cache first "
                          "(with network access), then run with HF_HUB_OFFLINE=1") from exc


# --- reading the residual stream and encoding it -------------------------------------------------

def gemma_scope_hidden_index(layer: int) -> int:
    """The transformers ``hidden_states`` entry that an SAE of ``blocks.<layer>.hook_resid_post`` reads.

    ``hidden_states[0]`` is the embedding output and ``hidden_states[i]`` the output of decoder block
    ``i - 1``, so resid_post of block ``layer`` is entry ``layer + 1``: Gemma Scope's layer-31 SAE
    reads ``hidden_states[32]`` of Gemma 2 9B, not ``hidden_states[31]`` (the input of block 31, as
    the authors' code read it). Exception: the entry of the *last* block is taken after the model's
    final norm, so it is not that block's resid_post; :func:`resid_post` has no such exception.
    """
    if layer < 0:
        raise ValueError(f"layer must be a block index >= 0, got {layer}")
    return layer + 1


def sae_layer(sae: "SAE") -> int:
    """The block whose output (resid_post) ``sae`` reads, from its hook name ``blocks.L.hook_resid_post``."""
    hook = sae.cfg.metadata.hook_name
    match = _RESID_POST.match(hook or "")
    if match is None:
        raise ValueError(f"the SAE's hook is {hook!r}, not a residual stream after a block "
                         "(blocks.<L>.hook_resid_post); pass the layer explicitly")
    return int(match.group(1))


def resid_post(model: nn.Module, input_ids: torch.Tensor, layer: int,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, d) residual stream after block ``layer`` (0-based) of our model or a transformers decoder.

    The same tensor as ``hidden_states[gemma_scope_hidden_index(layer)]`` for every block but the
    last, read with a hook instead (the forward pass stops after block ``layer``).
    """
    return residual_stream(model, input_ids, [layer], attention_mask=attention_mask)[layer]


@torch.no_grad()
def encode(sae: "SAE", activations: torch.Tensor, *, latents: Sequence[int] | torch.Tensor | None = None,
           batch_size: int = 4096) -> torch.Tensor:
    """Latent activations (..., n) of ``activations`` (..., d_in), float32, on the input's device.

    ``latents`` keeps only those columns, in that order (the labelling reads a few hundred of
    Gemma Scope's 16,384 latents; keeping all would cost 64 KiB per token). Rows are encoded
    ``batch_size`` at a time on the SAE's device, so a long document does not materialise a
    (T, d_sae) matrix for every token at once.
    """
    d_in = sae.cfg.d_in
    if activations.shape[-1] != d_in:
        raise ValueError(f"activations have width {activations.shape[-1]}, the SAE reads d_in={d_in}")
    lead = activations.shape[:-1]
    rows = activations.reshape(-1, d_in)
    index = None if latents is None else torch.as_tensor(latents, dtype=torch.long, device=sae.device)
    width = sae.cfg.d_sae if index is None else len(index)
    out = torch.empty(rows.shape[0], width, dtype=torch.float32, device=activations.device)
    for start in range(0, rows.shape[0], batch_size):
        acts = sae.encode(rows[start:start + batch_size].to(sae.device))
        if index is not None:
            acts = acts.index_select(-1, index)
        out[start:start + batch_size] = acts.to(device=out.device, dtype=torch.float32)
    return out.reshape(*lead, width)


def sae_activations(model: nn.Module, sae: "SAE", input_ids: torch.Tensor,
                    attention_mask: torch.Tensor | None = None, *, latents: Sequence[int] | None = None,
                    layer: int | None = None) -> torch.Tensor:
    """(B, T, n) latent activations of ``sae`` on the residual stream of ``model`` it was trained on.

    ``layer`` defaults to the SAE's own hook (:func:`sae_layer`), so Gemma Scope's layer 31 reads
    the output of block 31 and an SAE from :func:`train_sae` reads the block it was trained on.
    """
    layer = sae_layer(sae) if layer is None else layer
    stream = resid_post(model, input_ids, layer, attention_mask=attention_mask)
    return encode(sae, stream, latents=latents)


# --- top-activating contexts, for the judge ------------------------------------------------------

@dataclass(frozen=True)
class DocumentLatents:
    """One document's latent activations, and what a judge may use to know the document."""

    text: str
    offsets: np.ndarray  # (T, 2) character span [start, end) of each token in ``text``
    activations: np.ndarray | torch.Tensor  # (T, n): the latents ``top_contexts`` is given, in that order
    source_domain: str | None = None  # provenance judge
    forget_spans: tuple[Span, ...] | None = None  # built-in world: ground-truth forget characters


def top_contexts(documents: Iterable[DocumentLatents], latents: Sequence[int], *, n_top: int = 10,
                 window: int = 200, per_document: int = 1) -> dict[int, LatentEvidence]:
    """{latent: evidence}: each latent's ``n_top`` highest-activating tokens over ``documents``.

    Each context is ``window`` characters of text either side of the activating token, with the
    token's character span as its highlight (the world judge asks whether those characters are
    forget text; an LLM judge sees them marked). At most ``per_document`` contexts per document
    and latent, so one long document repeating a word cannot fill every slot. Only positive
    activations count, and zero-width tokens (special tokens such as BOS) are never chosen: there
    is no text to show for them. Ties go to the earlier document and token. One pass over the
    documents; a context's text is cut only when it enters a latent's top list.
    """
    if n_top < 1 or per_document < 1:
        raise ValueError("n_top and per_document must be positive")
    latents = list(latents)
    heaps: list[list[tuple[float, int, int, ActivationContext]]] = [[] for _ in latents]
    for doc_index, doc in enumerate(documents):
        acts = _numpy(doc.activations)
        offsets = np.asarray(doc.offsets, dtype=np.int64).reshape(-1, 2)
        if acts.shape != (len(offsets), len(latents)):
            raise ValueError(f"document {doc_index}: activations have shape {acts.shape}, expected "
                             f"({len(offsets)} tokens, {len(latents)} latents)")
        if len(offsets) == 0:
            continue
        acts = np.where((offsets[:, 1] > offsets[:, 0])[:, None], acts, -np.inf)
        # The document's best tokens per latent (stable, so ties keep the earlier token).
        best = np.argsort(-acts, axis=0, kind="stable")[:per_document]  # (p, n)
        for rank_tokens in best:
            values = acts[rank_tokens, np.arange(len(latents))]
            for j in np.flatnonzero(values > 0):
                token = int(rank_tokens[j])
                key = (float(values[j]), -doc_index, -token)
                heap = heaps[j]
                if len(heap) == n_top and key <= heap[0][:3]:
                    continue
                entry = (*key, _context(doc, offsets, token, key[0], window))
                if len(heap) < n_top:
                    heapq.heappush(heap, entry)
                else:
                    heapq.heapreplace(heap, entry)
    return {latent: LatentEvidence(latent, tuple(entry[3] for entry in sorted(heap, reverse=True)))
            for latent, heap in zip(latents, heaps)}


def _numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().to("cpu", torch.float32).numpy()
    return np.asarray(array, dtype=np.float32)


def _context(doc: DocumentLatents, offsets: np.ndarray, token: int, activation: float,
             window: int) -> ActivationContext:
    """The text around ``token``, with spans shifted into the window's coordinates."""
    start, end = (int(x) for x in offsets[token])
    lo, hi = max(0, start - window), min(len(doc.text), end + window)
    forget = None
    if doc.forget_spans is not None:
        forget = tuple((max(s, lo) - lo, min(e, hi) - lo) for s, e in doc.forget_spans if s < hi and e > lo)
    return ActivationContext(text=doc.text[lo:hi], highlight=((start - lo, end - lo),), activation=activation,
                             source_domain=doc.source_domain, forget_spans=forget)


"""The four filtering arms (paper §3, Fig 2), in one place the training loop calls.

- ``baseline``: no filtering.
- ``mask``: the loss at position t is dropped when its *target* token t+1 is forget; the
  model still reads forget tokens as inputs. (The authors' code keyed the mask on the input
  token, a one-token shift; DESIGN §4 trap 2.)
- ``remove``: forget tokens become ``<|hidden|>`` in the inputs and their targets are masked,
  so the model never sees nor predicts forget text.
- ``document``: documents whose score passes the threshold are dropped from the stream; the token
  budget is refilled from the remaining documents.

Modifiers: thresholds by value or by the fraction of training tokens filtered, label-flip noise
(deterministic per token position, paper §6.1) and a delayed start (paper App B.5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tokenfilter import ARMS, TOKEN_ARMS
from tokenfilter.errors import ConfigError
from tokenfilter.filtering.draws import position_uniforms


@dataclass(frozen=True)
class FilterPlan:
    """What a run does with the forget scores, with thresholds resolved to values."""

    arm: str
    token_threshold: float | None = None  # token arms: forget iff score >= threshold
    document_threshold: float | None = None  # document arm: drop iff doc score >= threshold
    noise: float = 0.0  # label flip probability
    delay_steps: int = 0  # no filtering before this optimizer step
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ConfigError(f"arm {self.arm!r} is not one of {list(ARMS)}")
        if self.arm == "document" and (self.delay_steps > 0 or self.noise > 0):
            raise ConfigError("the document arm supports neither `delay` nor `noise` (token arms only)")


def threshold_for_fraction(scores: np.ndarray, fraction: float, max_sample: int = 20_000_000) -> float:
    """The score threshold that flags ``fraction`` of tokens (scores >= threshold).

    Ties can make the exact fraction unreachable; the threshold never drops to 0 or below, so
    tokens with no forget evidence (end-of-text among them) are never flagged. Large corpora are
    estimated on an evenly strided sample.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"filtering.fraction must be in (0, 1], got {fraction}")
    scores = np.asarray(scores)
    if len(scores) > max_sample:
        scores = scores[:: int(np.ceil(len(scores) / max_sample))]
    ordered = np.sort(scores.astype(np.float32))[::-1]
    k = max(1, int(round(fraction * len(ordered))))
    threshold = float(ordered[k - 1])
    if threshold <= 0:
        positive = ordered[ordered > 0]
        threshold = float(positive[-1]) if len(positive) else float(np.inf)
    return threshold


def document_threshold_for_fraction(doc_scores: np.ndarray, doc_lengths: np.ndarray, fraction: float) -> float:
    """The document-score threshold whose dropped documents hold ``fraction`` of all tokens."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"filtering.fraction must be in (0, 1], got {fraction}")
    order = np.argsort(-doc_scores, kind="stable")
    covered = np.cumsum(doc_lengths[order]) / doc_lengths.sum()
    k = int(np.searchsorted(covered, fraction, side="left"))
    threshold = float(doc_scores[order[min(k, len(order) - 1)]])
    if threshold <= 0:
        positive = doc_scores[doc_scores > 0]
        threshold = float(positive.min()) if len(positive) else float(np.inf)
    return threshold


def make_plan(arm: str, settings: dict, token_scores: np.ndarray | None, doc_scores: np.ndarray | None,
              doc_lengths: np.ndarray | None, total_steps: int, seed: int) -> FilterPlan:
    """Resolve a run's filter settings (``filtering`` config keys) into a :class:`FilterPlan`."""
    if arm == "baseline":
        return FilterPlan("baseline")
    fraction = settings.get("fraction")
    delay_steps = int(round(settings.get("delay", 0.0) * total_steps))
    if arm == "document":
        threshold = settings["document_threshold"] if fraction is None else \
            document_threshold_for_fraction(doc_scores, doc_lengths, fraction)
        return FilterPlan("document", document_threshold=float(threshold), noise=settings.get("noise", 0.0),
                          delay_steps=delay_steps)
    threshold = settings["token_threshold"] if fraction is None else threshold_for_fraction(token_scores, fraction)
    return FilterPlan(arm, token_threshold=float(threshold), noise=settings.get("noise", 0.0),
                      delay_steps=delay_steps, noise_seed=seed)


def kept_documents(plan: FilterPlan, doc_scores: np.ndarray) -> np.ndarray:
    """Boolean mask of the documents a run trains on."""
    if plan.arm != "document":
        return np.ones(len(doc_scores), dtype=bool)
    return ~(doc_scores >= plan.document_threshold)


def forget_flags(plan: FilterPlan, scores: np.ndarray, positions: np.ndarray, step: int) -> np.ndarray:
    """Which tokens of a batch count as forget for a token arm at this step (bool, like ``scores``).

    ``positions`` are the tokens' indices in the corpus, so label noise flips the same tokens
    every time they are seen: a noisy *classifier*, not fresh noise per batch.
    """
    if plan.arm not in TOKEN_ARMS or step < plan.delay_steps:
        return np.zeros(scores.shape, dtype=bool)
    flags = np.asarray(scores, dtype=np.float32) >= plan.token_threshold
    if plan.noise > 0:
        flags ^= position_uniforms(positions, plan.noise_seed) < plan.noise
    return flags


def apply_arm(arm: str, tokens: torch.Tensor, flags: torch.Tensor, hidden_id: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn windows of T+1 tokens into (inputs, targets, loss weights), each (B, T).

    ``flags`` (B, T+1) marks forget tokens. Position t reads ``inputs[t]`` and predicts
    ``targets[t] = tokens[t+1]``; masking drops it when that *target* is forget.
    """
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    if arm in ("baseline", "document"):
        return inputs, targets, torch.ones(targets.shape, dtype=torch.float32, device=tokens.device)
    weights = (~flags[:, 1:]).to(torch.float32)
    if arm == "remove":
        inputs = torch.where(flags[:, :-1], torch.full_like(inputs, hidden_id), inputs)
    elif arm != "mask":
        raise ValueError(f"unknown arm {arm!r}")
    return inputs, targets, weights


def filtered_fraction(plan: FilterPlan, token_scores: np.ndarray | None, kept: np.ndarray | None,
                      doc_lengths: np.ndarray) -> float:
    """Share of the corpus's tokens the plan filters (before label noise)."""
    if plan.arm in TOKEN_ARMS:
        scores = np.asarray(token_scores)
        stride = max(1, len(scores) // 20_000_000)
        return float(np.mean(scores[::stride].astype(np.float32) >= plan.token_threshold))
    if plan.arm == "document":
        return float(doc_lengths[~kept].sum() / doc_lengths.sum())
    return 0.0

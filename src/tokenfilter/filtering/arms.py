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

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from tokenfilter import ARMS, TOKEN_ARMS
from tokenfilter.errors import ConfigError
from tokenfilter.filtering.draws import position_uniforms
from tokenfilter.filtering.noise import STRUCTURES, label_flips


@dataclass(frozen=True)
class FilterPlan:
    """What a run does with the forget scores, with thresholds resolved to values."""

    arm: str
    token_threshold: float | None = None  # token arms: forget iff score > threshold, or ...
    # ... score == threshold for this share of the tied tokens (picked by a per-position draw),
    # so "filter x% of tokens" flags x% exactly even when many scores tie at the threshold.
    token_tie_share: float = 1.0
    document_threshold: float | None = None  # document arm: drop iff doc score >= threshold
    noise: float = 0.0  # label flip probability
    delay_steps: int = 0  # no filtering before this optimizer step
    noise_seed: int = 0
    # Where the flips fall (tokenfilter.filtering.noise): uniformly, or on the tokens where a
    # real classifier errs, with the corpus share of those tokens fixing the per-token rates.
    noise_structure: str = "uniform"
    noise_hard_share: float | None = None
    # The forget share at which a document is a forget document in the ground truth, to measure
    # the document arm's filter against (the built-in world's document label; None without truth).
    document_label_share: float | None = None

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ConfigError(f"arm {self.arm!r} is not one of {list(ARMS)}")
        if self.arm == "document" and (self.delay_steps > 0 or self.noise > 0):
            raise ConfigError("the document arm supports neither `delay` nor `noise` (token arms only)")
        if self.noise_structure not in STRUCTURES:
            raise ConfigError(f"filtering.noise_structure must be one of {list(STRUCTURES)}, got {self.noise_structure!r}")
        if self.noise > 0 and self.noise_structure == "structured" and self.noise_hard_share is None:
            raise ConfigError("filtering.noise_structure 'structured' needs ground-truth labels (the built-in world)")


def threshold_for_fraction(scores: np.ndarray, fraction: float, max_sample: int = 20_000_000) -> tuple[float, float]:
    """(threshold, tie share) that flag ``fraction`` of tokens: every score above the threshold,
    and that share of the scores equal to it.

    Tokens with no forget evidence (score 0, end-of-text among them) are never flagged: when the
    requested fraction exceeds the positive share, every positive score is flagged and no more
    (the run records the fraction it reached). Large corpora are estimated on a strided sample.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"filtering.fraction must be in (0, 1], got {fraction}")
    scores = np.asarray(scores)
    if len(scores) > max_sample:
        scores = scores[:: int(np.ceil(len(scores) / max_sample))]
    values = scores.astype(np.float32)
    ordered = np.sort(values)[::-1]
    k = max(1, int(round(fraction * len(ordered))))
    threshold = float(ordered[k - 1])
    if threshold <= 0:
        positive = ordered[ordered > 0]
        return (float(positive[-1]), 1.0) if len(positive) else (float(np.inf), 1.0)
    above = int(np.count_nonzero(values > threshold))
    tied = int(np.count_nonzero(values == threshold))
    return threshold, (k - above) / tied


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
              doc_lengths: np.ndarray | None, total_steps: int, seed: int,
              document_label_share: float | None = None, hard_share: float | None = None) -> FilterPlan:
    """Resolve a run's filter settings (``filtering`` config keys) into a :class:`FilterPlan`.

    ``hard_share`` is the corpus share of hard tokens (:func:`tokenfilter.filtering.noise.hard_tokens`),
    which structured label noise needs."""
    if arm == "baseline":
        return FilterPlan("baseline")
    fraction = settings.get("fraction")
    delay_steps = int(round(settings.get("delay", 0.0) * total_steps))
    if arm == "document":
        threshold = settings["document_threshold"] if fraction is None else \
            document_threshold_for_fraction(doc_scores, doc_lengths, fraction)
        return FilterPlan("document", document_threshold=float(threshold), noise=settings.get("noise", 0.0),
                          delay_steps=delay_steps, document_label_share=document_label_share)
    if fraction is None:
        # A fixed threshold flags every score at or above it (the classifier's decision rule).
        threshold, tie_share = float(settings["token_threshold"]), 1.0
    else:
        threshold, tie_share = threshold_for_fraction(token_scores, fraction)
    structure = settings.get("noise_structure", "uniform")
    return FilterPlan(arm, token_threshold=float(threshold), token_tie_share=float(tie_share),
                      noise=settings.get("noise", 0.0), delay_steps=delay_steps, noise_seed=seed,
                      noise_structure=structure,
                      noise_hard_share=hard_share if structure == "structured" else None)


def kept_documents(plan: FilterPlan, doc_scores: np.ndarray) -> np.ndarray:
    """Boolean mask of the documents a run trains on."""
    if plan.arm != "document":
        return np.ones(len(doc_scores), dtype=bool)
    return ~(doc_scores >= plan.document_threshold)


def forget_flags(plan: FilterPlan, scores: np.ndarray, positions: np.ndarray, step: int,
                 end_of_text: np.ndarray | None = None, hard: np.ndarray | None = None) -> np.ndarray:
    """Which tokens of a batch count as forget for a token arm at this step (bool, like ``scores``).

    ``positions`` are the tokens' indices in the corpus, so ties at the threshold and label noise
    resolve the same way every time a token is read: a noisy *classifier*, not fresh noise per
    batch. Noise draws from its own stream (independent of a simulated classifier's errors) and
    never flips an end-of-text token (``end_of_text`` marks them), so no arm masks or hides a
    document boundary. Structured noise reads ``hard``, the hard-token marks at ``positions``.
    """
    if plan.arm not in TOKEN_ARMS or step < plan.delay_steps:
        return np.zeros(scores.shape, dtype=bool)
    values = np.asarray(scores, dtype=np.float32)
    threshold = np.float32(plan.token_threshold)
    flags = values > threshold
    if plan.token_tie_share > 0:
        tied = values == threshold
        if plan.token_tie_share < 1:
            tied &= position_uniforms(positions, plan.noise_seed, "threshold_ties") < plan.token_tie_share
        flags |= tied
    if plan.noise > 0:
        flags ^= label_flips(positions, plan.noise_seed, plan.noise, plan.noise_structure, hard,
                             plan.noise_hard_share, end_of_text)
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


def filter_report(plan: FilterPlan, tokens: np.ndarray, labels: np.ndarray | None, token_scores: np.ndarray | None,
                  docs: np.ndarray, kept: np.ndarray | None, eot_id: int, chunk: int = 1 << 22,
                  hard: np.ndarray | None = None) -> dict:
    """What a run's filter does to the whole corpus: the share of tokens it filters (before noise)
    and, where ground truth exists, the quality of the flags it trains with (after noise) against
    it. Token arms: every token's flag vs its label (end-of-text excluded). Document arm: the
    dropped documents vs the documents' truth labels, and the tokens in dropped documents vs token
    labels. ``docs`` is the shard's document index (length, n_forget); ``hard`` the corpus's
    hard-token marks (structured label noise only)."""
    report: dict = {"filtered_fraction": 0.0, "quality": None}
    if plan.arm in TOKEN_ARMS:
        n = len(tokens)
        filtered = counted = 0
        flagged_parts, label_parts = [], []
        for start in range(0, n, chunk):
            positions = np.arange(start, min(n, start + chunk))
            eot = np.asarray(tokens[start:start + chunk]) == eot_id
            scores = np.asarray(token_scores[start:start + chunk])
            clean = forget_flags(dataclasses.replace(plan, noise=0.0, delay_steps=0), scores, positions, 0, eot)
            filtered += int(np.count_nonzero(clean & ~eot))
            counted += int(np.count_nonzero(~eot))
            if labels is not None:
                trained = forget_flags(dataclasses.replace(plan, delay_steps=0), scores, positions, 0, eot,
                                       None if hard is None else hard[start:start + chunk])
                flagged_parts.append(trained[~eot])
                label_parts.append(np.asarray(labels[start:start + chunk])[~eot] == 1)
        report["filtered_fraction"] = filtered / max(1, counted)
        if labels is not None:
            report["quality"] = {"unit": "tokens", **flag_quality(np.concatenate(flagged_parts), np.concatenate(label_parts))}
    elif plan.arm == "document":
        lengths = docs["length"].astype(np.int64)
        dropped = ~kept
        report["filtered_fraction"] = float(lengths[dropped].sum() / lengths.sum())
        if labels is not None and plan.document_label_share is not None:
            forget_share = docs["n_forget"] / np.maximum(lengths - 1, 1)
            doc_truth = forget_share >= plan.document_label_share
            tokens_quality = {
                "precision": float(docs["n_forget"][dropped].sum() / max(1, (lengths[dropped] - 1).sum())),
                "recall": float(docs["n_forget"][dropped].sum() / max(1, docs["n_forget"].sum())),
            }
            report["quality"] = {"unit": "documents", **flag_quality(dropped, doc_truth),
                                 "token_precision": tokens_quality["precision"], "token_recall": tokens_quality["recall"]}
    return report


def flag_quality(flags: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 and error rate of boolean flags against boolean ground truth."""
    flags, truth = np.asarray(flags, dtype=bool), np.asarray(truth, dtype=bool)
    tp = int(np.count_nonzero(flags & truth))
    fp = int(np.count_nonzero(flags & ~truth))
    fn = int(np.count_nonzero(~flags & truth))
    n = max(1, flags.size)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1, "error_rate": (fp + fn) / n,
            "flagged_share": (tp + fp) / n, "true_share": (tp + fn) / n, "n": int(flags.size)}

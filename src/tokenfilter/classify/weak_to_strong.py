"""Weak-to-strong generalisation of classifiers (paper §6.3, Fig 15; E17).

The paper trains probes on a *weak* biLM (13M per direction; 29M in the authors' code) with
increasing amounts of labelled data, lets them label held-out data, and trains a probe on a
*strong* biLM (224M) on those weak labels. Token probes generalise weak-to-strong (the strong
student beats its weak teacher); document probes do not. The performance gap recovered,

    PGR = (strong on weak labels − weak) / (strong on true labels − weak),

is 0 when the student only matches its teacher and 1 when it matches a strong probe trained on
the truth (Burns et al. 2023).

The experiment is the same for token and document probes: only the examples differ (token
features and token labels, or mean-pooled document features and document labels:
:mod:`tokenfilter.classify.document`). Splits follow the authors' code: a teacher pool, a student
pool and a test set (40 / 40 / 20%). Every probe chooses its C and threshold on a held-out share
of its own training pool *with the labels it trains on*: the student never sees a true label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tokenfilter.classify.probe import Probe, binary_metrics, fit_probe


def performance_gap_recovered(weak: float, strong_on_weak: float, strong_on_truth: float) -> float:
    """PGR = (strong_on_weak − weak) / (strong_on_truth − weak); NaN when the strong ceiling does
    not exceed the weak teacher (there is no gap to recover)."""
    gap = strong_on_truth - weak
    if not gap > 0:
        return float("nan")
    return (strong_on_weak - weak) / gap


def split_pools(n: int, shares: Sequence[float] = (0.4, 0.4, 0.2), seed: int = 0) -> list[np.ndarray]:
    """Disjoint sorted index sets (teacher pool, student pool, test) of ``n`` examples."""
    if not math.isclose(sum(shares), 1.0):
        raise ValueError(f"split shares must sum to 1, got {shares}")
    order = np.random.default_rng([seed, 0x5717]).permutation(n)
    cuts = np.round(np.cumsum(shares)[:-1] * n).astype(int)
    return [np.sort(part) for part in np.split(order, cuts)]


@dataclass
class Examples:
    """One pool of examples: features under the weak and the strong model (rows aligned) and the
    true 0/1 labels."""

    weak: np.ndarray
    strong: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if not len(self.weak) == len(self.strong) == len(self.labels):
            raise ValueError("weak features, strong features and labels must have one row per example")

    def take(self, index: np.ndarray) -> "Examples":
        return Examples(self.weak[index], self.strong[index], np.asarray(self.labels)[index])


@dataclass
class WeakToStrongPoint:
    """One amount of weak training data: the test metric of the three probes, and the PGR."""

    amount: int  # examples the weak probe trained on (its validation share included)
    weak: float
    strong_on_weak: float
    strong_on_truth: float
    pgr: float
    weak_label_accuracy: float  # agreement of the weak labels with the truth on the student pool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fit_with_holdout(features: np.ndarray, labels: np.ndarray, val_share: float, seed: int,
                      fit_kwargs: dict[str, Any]) -> Probe:
    """A probe fitted on (1 − val_share) of the examples, C and threshold chosen on the rest."""
    order = np.random.default_rng([seed, 0x7A1]).permutation(len(labels))
    n_val = max(1, int(round(val_share * len(labels))))
    val, train = order[:n_val], order[n_val:]
    return fit_probe(features[train], labels[train], features[val], labels[val], seed=seed, **fit_kwargs)


def weak_to_strong(teacher_pool: Examples, student_pool: Examples, test: Examples, amounts: Sequence[int],
                   metric: str = "accuracy", val_share: float = 0.2, seed: int = 0,
                   **fit_kwargs: Any) -> list[WeakToStrongPoint]:
    """Run the weak-to-strong experiment for each amount of weak training data.

    For each amount n: a weak probe trains on the first n examples of a seeded order of the
    teacher pool (nested: a larger amount extends a smaller one) with true labels; it labels the
    student pool; a strong probe trains on the student pool's strong features with those weak
    labels. The ceiling, a strong probe trained on the student pool with true labels, is fitted
    once. Each probe is scored on ``test`` at its own threshold by ``metric`` (a key of
    :func:`tokenfilter.classify.probe.binary_metrics`, e.g. accuracy as Fig 15, or f1).
    """
    test_labels = np.asarray(test.labels).astype(bool)

    def score(probe: Probe, features: np.ndarray) -> float:
        return binary_metrics(probe.predict_proba(features), test_labels, probe.threshold)[metric]

    ceiling = _fit_with_holdout(student_pool.strong, np.asarray(student_pool.labels).astype(bool), val_share, seed,
                                fit_kwargs)
    strong_on_truth = score(ceiling, test.strong)
    order = np.random.default_rng([seed, 0x3EA]).permutation(len(teacher_pool.labels))
    points = []
    for amount in amounts:
        if not 0 < amount <= len(order):
            raise ValueError(f"amount {amount} is outside the teacher pool of {len(order)} examples")
        chosen = order[:amount]
        weak_probe = _fit_with_holdout(teacher_pool.weak[chosen], np.asarray(teacher_pool.labels)[chosen].astype(bool),
                                       val_share, seed, fit_kwargs)
        weak_labels = weak_probe.predict(student_pool.weak)
        student = _fit_with_holdout(student_pool.strong, weak_labels, val_share, seed, fit_kwargs)
        weak = score(weak_probe, test.weak)
        strong_on_weak = score(student, test.strong)
        points.append(WeakToStrongPoint(
            amount=int(amount), weak=weak, strong_on_weak=strong_on_weak, strong_on_truth=strong_on_truth,
            pgr=performance_gap_recovered(weak, strong_on_weak, strong_on_truth),
            weak_label_accuracy=float(np.mean(weak_labels == np.asarray(student_pool.labels).astype(bool)))))
    return points


# --- the workflow job ---------------------------------------------------------------------------------------

def token_pools(weak, strong, shard, labels: np.ndarray, max_tokens: int, seed: int) -> Examples:
    """Class-balanced token examples of ``shard`` (at most ``max_tokens``, half forget, as the
    paper's probes train), with features under both extractors
    (:class:`tokenfilter.classify.bilm.StreamFeatures`) and the labels the probes learn from."""
    from tokenfilter.classify.bilm import features_at
    from tokenfilter.classify.probe import balanced_indices, non_special

    positions = np.nonzero(non_special(np.asarray(shard.tokens), shard.meta["special_ids"].values()))[0]
    y = np.asarray(labels)[positions].astype(bool)
    keep = balanced_indices(y, seed, max(1, max_tokens // 2))
    positions, y = positions[keep], y[keep]
    return Examples(features_at(weak, shard.tokens, positions), features_at(strong, shard.tokens, positions), y)


def document_pools(weak, strong, shards: Sequence, labels: Sequence[np.ndarray], max_tokens: int) -> Examples:
    """Every document of ``shards`` as an example: mean-pooled features under both extractors and
    its document label (one label array per shard)."""
    from tokenfilter.classify.document import document_features

    def pooled(extractor) -> np.ndarray:
        return np.concatenate([document_features(extractor, shard, np.arange(len(shard.docs)), max_tokens)
                               for shard in shards])

    return Examples(pooled(weak), pooled(strong), np.concatenate([np.asarray(y, dtype=bool) for y in labels]))


def run_levels(pools: dict[str, Examples], amounts: dict[str, Sequence[int]], seed: int = 0,
               **fit_kwargs: Any) -> "pd.DataFrame":
    """The experiment at each level (``token``, ``document``): one row per level and amount.
    Amounts larger than the level's teacher pool are dropped (a small corpus has few documents);
    accuracy is the metric, as in Fig 15."""
    import pandas as pd

    rows = []
    for level, examples in pools.items():
        teacher, student, test = (examples.take(index) for index in split_pools(len(examples.labels), seed=seed))
        usable = [a for a in amounts[level] if a <= len(teacher.labels)]
        if not usable or len(set(test.labels.tolist())) < 2:
            continue
        for point in weak_to_strong(teacher, student, test, usable, metric="accuracy", seed=seed, **fit_kwargs):
            rows.append({"level": level, **point.as_dict(), "n_test": int(len(test.labels))})
    return pd.DataFrame(rows, columns=["level", "amount", "weak", "strong_on_weak", "strong_on_truth", "pgr",
                                       "weak_label_accuracy", "n_test"])

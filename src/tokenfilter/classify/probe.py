"""Linear probes on frozen features, their decision threshold and their metrics (paper §5.2, E2/S5).

The paper's token classifier is a logistic regression fitted with L-BFGS on frozen biLM features
(no finetuning), regularisation swept, the probed layer swept, and the decision threshold set to
the F1 maximum on held-out data. The authors' code balanced the classes by subsampling and left
special tokens out; it swept ``reg`` ∈ {0.01, 0.1, 1} with ``C = 1/reg`` (C ∈ {1, 10, 100}).

Here:

- features are standardised with the training sample's mean and SD (L-BFGS converges in far
  fewer iterations, and one C grid serves every layer and model width); the saved probe folds
  the standardisation into its weights when it scores;
- the training sample is balanced by subsampling the majority class (``balance``), the
  validation sample is not: the threshold is chosen where the probe will be used, on the
  natural class mix;
- C is chosen by validation log-loss (default) or validation F1 at the F1-max threshold;
- a probe is one ``.npz`` file: arrays (weights, mean, std) and scalars (bias, threshold, C,
  layer) plus a JSON string of metadata, loadable with ``allow_pickle=False``.

Special tokens are the caller's to exclude (:func:`non_special`): the feature extractors do not
know which ids are special.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tokenfilter.io import atomic_open

if TYPE_CHECKING:
    from tokenfilter.classify.bilm import StreamFeatures
    from tokenfilter.data.shards import TokenShard

# C = 1/regularisation strength (sklearn's convention, as cuML's). The paper's code used
# C ∈ {1, 10, 100}; the grid reaches two decades below for small samples.
DEFAULT_CS: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)
_MIN_STD = 1e-6


# --- metrics -----------------------------------------------------------------------------------------

def f1_max_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, F1) of the decision rule ``score >= threshold`` with the highest F1.

    Every distinct score is a candidate threshold (ties flag together, as the filtering arms flag
    every score at or above a threshold). With no positive label no threshold has F1 > 0: the
    threshold is then just above the highest score (nothing flagged).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    n_pos = int(labels.sum())
    if len(scores) == 0 or n_pos == 0:
        top = float(scores.max()) if len(scores) else 0.0
        return float(np.nextafter(top, np.inf)), 0.0
    order = np.argsort(-scores, kind="stable")
    ordered, hits = scores[order], labels[order]
    tp = np.cumsum(hits)
    flagged = np.arange(1, len(ordered) + 1)
    last_of_value = np.r_[ordered[1:] != ordered[:-1], True]  # cut only between distinct scores
    tp, flagged, cut = tp[last_of_value], flagged[last_of_value], ordered[last_of_value]
    f1 = 2 * tp / (flagged + n_pos)
    best = int(np.argmax(f1))
    return float(cut[best]), float(f1[best])


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a random positive outscores a random negative,
    ties counting half (Mann-Whitney U over average ranks). NaN with one class only."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average 1-based rank of each distinct value: the ranks it spans are (c_before + 1 .. c_before + count).
    before = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ranks = (before + (counts + 1) / 2.0)[inverse]
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1, accuracy and AUROC of ``score >= threshold`` against 0/1 labels."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(bool)
    flags = scores >= threshold
    tp = int(np.count_nonzero(flags & labels))
    n_flag, n_pos = int(flags.sum()), int(labels.sum())
    return {
        "precision": tp / n_flag if n_flag else 0.0,
        "recall": tp / n_pos if n_pos else 0.0,
        "f1": 2 * tp / (n_flag + n_pos) if n_flag + n_pos else 0.0,
        "accuracy": float(np.mean(flags == labels)) if len(labels) else float("nan"),
        "auroc": auroc(scores, labels),
        "threshold": float(threshold),
        "flagged": n_flag / len(labels) if len(labels) else 0.0,
        "positives": n_pos / len(labels) if len(labels) else 0.0,
        "n": int(len(labels)),
    }


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy (nats), probabilities clipped away from 0 and 1."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(labels).astype(bool)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


# --- samples ---------------------------------------------------------------------------------------------

def non_special(token_ids: np.ndarray, special_ids: Iterable[int]) -> np.ndarray:
    """Boolean mask of the tokens that are not special (end-of-text, <|hidden|>, ...): probes
    neither train nor are scored on them (the authors' code excluded them too)."""
    return ~np.isin(np.asarray(token_ids), np.fromiter(special_ids, dtype=np.int64))


def balanced_indices(labels: np.ndarray, seed: int, max_per_class: int | None = None) -> np.ndarray:
    """Sorted indices of a class-balanced subsample: every example of the minority class and as
    many drawn from the majority (at most ``max_per_class`` of each)."""
    labels = np.asarray(labels).astype(bool)
    rng = np.random.default_rng([seed, 0xBA1])
    pos, neg = np.nonzero(labels)[0], np.nonzero(~labels)[0]
    k = min(len(pos), len(neg))
    if max_per_class is not None:
        k = min(k, max_per_class)
    if k == 0:
        raise ValueError(f"cannot balance {len(pos)} positive and {len(neg)} negative examples")
    return np.sort(np.concatenate([rng.choice(pos, k, replace=False), rng.choice(neg, k, replace=False)]))


# --- the probe -----------------------------------------------------------------------------------------

@dataclass
class Probe:
    """A logistic-regression probe: p = σ(w · (x − mean) / std + b); flags ``p >= threshold``."""

    weights: np.ndarray  # (D,) on standardised features
    bias: float
    mean: np.ndarray  # (D,) standardisation of the features
    std: np.ndarray  # (D,)
    threshold: float  # on the probability: the F1 maximum on validation
    C: float = float("nan")
    layer: int | None = None
    info: dict[str, Any] = field(default_factory=dict)  # the sweep, validation metrics, sample sizes

    def logits(self, features: np.ndarray) -> np.ndarray:
        """float64 (n,): w·(x − mean)/std + b, computed as Σ x·(w/std) + (b − mean·w/std) with a
        row-wise reduction (not a matrix product, whose blocking may depend on the number of
        rows), so a row's value is the same bits in any batch: annotation parts must agree."""
        x = np.asarray(features, dtype=np.float64).reshape(-1, len(self.weights))
        scale = np.asarray(self.weights, dtype=np.float64) / self.std
        return (x * scale).sum(axis=1) + (self.bias - float(np.dot(self.mean, scale)))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """float64 (n,): the probability of the positive (forget) class."""
        return sigmoid(self.logits(features))

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.predict_proba(features) >= self.threshold

    def centred_scores(self, features: np.ndarray) -> np.ndarray:
        """float64 (n,): σ(logit − logit(threshold)), a monotone transform of the probability
        that is ≥ 0.5 exactly where the probe flags. Filter scores use this, so that the
        filtering arms' default threshold 0.5 is the probe's F1-optimal decision, as it is the
        ground truth for the ``truth`` filter, while "filter x%" thresholds see the same order."""
        t = float(np.clip(self.threshold, 1e-12, 1 - 1e-12))
        return sigmoid(self.logits(features) - np.log(t / (1 - t)))

    def save(self, path: str | os.PathLike) -> None:
        with atomic_open(path, "wb") as f:
            np.savez(f, weights=np.asarray(self.weights, np.float64), mean=np.asarray(self.mean, np.float64),
                     std=np.asarray(self.std, np.float64), bias=np.float64(self.bias),
                     threshold=np.float64(self.threshold), C=np.float64(self.C),
                     layer=np.int64(-1 if self.layer is None else self.layer),
                     has_layer=np.bool_(self.layer is not None),
                     info=np.array(json.dumps(self.info, sort_keys=True, default=_json_default)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Probe":
        with np.load(path, allow_pickle=False) as z:
            return cls(weights=z["weights"], bias=float(z["bias"]), mean=z["mean"], std=z["std"],
                       threshold=float(z["threshold"]), C=float(z["C"]),
                       layer=int(z["layer"]) if bool(z["has_layer"]) else None, info=json.loads(str(z["info"])))


def sigmoid(z: np.ndarray) -> np.ndarray:
    # Two branches so neither exp overflows.
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def fit_probe(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
              val_labels: np.ndarray, *, Cs: Sequence[float] = DEFAULT_CS, select: str = "log_loss",
              balance: bool = True, max_per_class: int | None = None, max_iter: int = 1000, seed: int = 0,
              layer: int | None = None) -> Probe:
    """Fit an L-BFGS logistic-regression probe for each C, keep the best on validation, and set
    its threshold to the validation F1 maximum (paper §5.2).

    ``select``: "log_loss" (lowest validation cross-entropy) or "f1" (highest validation F1 at
    each candidate's own F1-max threshold). The sweep is kept in ``probe.info["sweep"]``.
    """
    from sklearn.linear_model import LogisticRegression

    if select not in ("log_loss", "f1"):
        raise ValueError(f"select must be 'log_loss' or 'f1', got {select!r}")
    x = np.asarray(train_features)
    y = np.asarray(train_labels).astype(bool)
    if balance:
        keep = balanced_indices(y, seed, max_per_class)
        x, y = x[keep], y[keep]
    if y.all() or not y.any():
        raise ValueError("a probe needs both classes in its training sample")
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    std = np.where(std < _MIN_STD, 1.0, std)
    z = (x - mean) / std
    val_y = np.asarray(val_labels).astype(bool)
    sweep, candidates = [], []
    for C in Cs:
        model = LogisticRegression(C=float(C), solver="lbfgs", max_iter=max_iter)
        model.fit(z, y)
        probe = Probe(model.coef_[0].astype(np.float64), float(model.intercept_[0]), mean, std, 0.5, float(C), layer)
        probs = probe.predict_proba(val_features)
        threshold, f1 = f1_max_threshold(probs, val_y)
        probe.threshold = threshold
        sweep.append({"C": float(C), "val_log_loss": log_loss(probs, val_y), "val_f1": f1, "threshold": threshold,
                      "iterations": int(np.max(model.n_iter_))})
        candidates.append((probe, probs))
    key = (lambda r: r["val_log_loss"]) if select == "log_loss" else (lambda r: -r["val_f1"])
    best = min(range(len(sweep)), key=lambda i: key(sweep[i]))
    probe, probs = candidates[best]
    probe.info = {"sweep": sweep, "select": select, "n_train": int(len(y)), "n_val": int(len(val_y)),
                  "val": binary_metrics(probs, val_y, probe.threshold)}
    return probe


def sweep_layers(data_for_layer: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                 layers: Iterable[int], **fit_kwargs: Any) -> tuple[Probe, list[dict[str, Any]]]:
    """Fit a probe per layer (``data_for_layer(layer)`` → train features, train labels, val
    features, val labels) and keep the one with the best validation F1, as the paper reports the
    best layer's probe. Returns the probe and one row per layer."""
    rows, best = [], None
    for layer in layers:
        probe = fit_probe(*data_for_layer(layer), layer=layer, **fit_kwargs)
        rows.append({"layer": layer, "C": probe.C, **{f"val_{k}": v for k, v in probe.info["val"].items()}})
        if best is None or probe.info["val"]["f1"] > best.info["val"]["f1"]:
            best = probe
    if best is None:
        raise ValueError("sweep_layers needs at least one layer")
    best.info["layer_sweep"] = rows
    return best, rows


def token_examples(extractor: StreamFeatures, shard: TokenShard, ranges: Iterable[tuple[int, int]],
                   labels: np.ndarray | None = None, balance: bool = False, max_per_class: int | None = None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, positions) of the non-special tokens in the position ranges of a token
    shard: what a probe trains and is validated on.

    ``labels`` is one 0/1 value per shard position (SAE labels, coarse labels of
    :mod:`tokenfilter.classify.granularity`); default the shard's ground truth. ``balance``
    subsamples the positions to equal classes (at most ``max_per_class`` each) *before* features
    are computed, which is what keeps the paper's 8.2M-token training sample affordable.
    ``extractor`` is a :class:`tokenfilter.classify.bilm.StreamFeatures`.
    """
    from tokenfilter.classify.bilm import features_at

    labels = shard.labels if labels is None else labels
    if labels is None:
        raise ValueError(f"{shard.directory}: no labels given and the shard has no ground truth")
    special = list(shard.meta["special_ids"].values())
    positions = np.concatenate([np.zeros(0, np.int64), *(np.arange(a, b, dtype=np.int64) for a, b in ranges)])
    positions = positions[non_special(shard.tokens[positions], special)]
    y = np.asarray(labels[positions]).astype(bool)
    if balance:
        keep = balanced_indices(y, seed, max_per_class)
        positions, y = positions[keep], y[keep]
    return features_at(extractor, shard.tokens, positions), y, positions

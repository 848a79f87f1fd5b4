"""Baselines a contextual token classifier must beat (paper §5.2, Table 1).

- The *context-free* baseline labels a token by its id alone: p(forget | token id), counted on
  the training tokens, thresholded at the validation F1 maximum. Whatever a probe gains over it
  is what context buys; labels (and probes) that do no better than it are keyed on vocabulary,
  not on meaning. It is also the floor the built-in world's ambiguous words are there to test:
  a word that is medical in one context and not in another caps its F1.
- The *masked-LM encoder* baseline (Table 1's RoBERTa row) is in :mod:`tokenfilter.classify.mlm`,
  because :func:`tokenfilter.train.objectives.make_objective` imports that module by name to
  find the ``"mlm"`` objective; its names are re-exported here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokenfilter.classify.mlm import EncoderFeatures, MLMObjective, build_encoder, load_encoder
from tokenfilter.classify.probe import binary_metrics, f1_max_threshold, non_special
from tokenfilter.io import atomic_open

__all__ = ["ContextFreeBaseline", "EncoderFeatures", "MLMObjective", "build_encoder", "load_encoder"]


@dataclass
class ContextFreeBaseline:
    """p(forget | token id) with a threshold: a classifier that ignores context."""

    p_forget: np.ndarray  # (vocab,) float64
    threshold: float
    prior: float  # the training share of forget tokens (the estimate for unseen ids)
    smoothing: float
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, token_ids: np.ndarray, labels: np.ndarray, vocab_size: int, val_ids: np.ndarray,
            val_labels: np.ndarray, special_ids: Iterable[int] = (), smoothing: float = 1.0) -> "ContextFreeBaseline":
        """Count each id's forget share on the training tokens, shrunk towards the overall share by
        ``smoothing`` pseudo-counts ((forget + a·prior) / (count + a)), so a rare id does not get
        probability 0 or 1 from one sighting; special ids get 0 (and are not counted); the
        threshold is the F1 maximum on the validation tokens."""
        special = list(special_ids)
        ids = np.asarray(token_ids, dtype=np.int64)
        y = np.asarray(labels).astype(bool)
        keep = non_special(ids, special)
        ids, y = ids[keep], y[keep]
        if len(ids) == 0:
            raise ValueError("no non-special training tokens")
        counts = np.bincount(ids, minlength=vocab_size).astype(np.float64)
        forget = np.bincount(ids, weights=y.astype(np.float64), minlength=vocab_size)
        prior = float(y.mean())
        p = (forget + smoothing * prior) / (counts + smoothing) if smoothing > 0 else \
            np.divide(forget, counts, out=np.full(vocab_size, prior), where=counts > 0)
        p[np.asarray(special, dtype=np.int64)] = 0.0
        model = cls(p, 0.5, prior, smoothing)
        val_ids = np.asarray(val_ids, dtype=np.int64)
        val_keep = non_special(val_ids, special)
        val_scores, val_y = model.predict_proba(val_ids[val_keep]), np.asarray(val_labels)[val_keep].astype(bool)
        model.threshold, _ = f1_max_threshold(val_scores, val_y)
        model.info = {"n_train": int(len(ids)), "n_val": int(val_keep.sum()),
                      "val": binary_metrics(val_scores, val_y, model.threshold)}
        return model

    def predict_proba(self, token_ids: np.ndarray) -> np.ndarray:
        """float64 p(forget | id) for each id (ids beyond the table get the prior)."""
        ids = np.asarray(token_ids, dtype=np.int64)
        inside = ids < len(self.p_forget)
        return np.where(inside, self.p_forget[np.where(inside, ids, 0)], self.prior)

    def predict(self, token_ids: np.ndarray) -> np.ndarray:
        return self.predict_proba(token_ids) >= self.threshold

    def save(self, path: str | os.PathLike) -> None:
        with atomic_open(path, "wb") as f:
            np.savez(f, p_forget=self.p_forget, threshold=np.float64(self.threshold), prior=np.float64(self.prior),
                     smoothing=np.float64(self.smoothing), info=np.array(json.dumps(self.info, sort_keys=True)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ContextFreeBaseline":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["p_forget"], float(z["threshold"]), float(z["prior"]), float(z["smoothing"]),
                       json.loads(str(z["info"])))

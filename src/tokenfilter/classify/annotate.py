"""A saved classifier, and how it scores a token range of a shard (filter ``kind: classifier``).

The filtering arms read one score per token and one per document
(:mod:`tokenfilter.filtering.annotation`); annotation is scattered over contiguous token ranges.
:func:`score_range` is what a ``classifier`` filter does for one range: it reads whatever context
the range needs beyond its ends (windows before and after it, the whole of documents that start
in it), and its results are the same bits however the shard is cut into parts, because features
come from a fixed window grid (:class:`tokenfilter.classify.bilm.Windowing`).

Classifier directory layout (written by :func:`save_classifier`)::

    classifier.json        what to load, below
    token_probe.npz        the token probe (tokenfilter.classify.probe.Probe), or the
                           context-free baseline's table (features "context_free")
    document_probe.npz     optional: the document probe on mean-pooled features
    left/ right/           optional copies of the biLM halves (or paths elsewhere)
    encoder/               optional copy of a masked-LM encoder (features "encoder") or of a
                           pretrained encoder (features "pretrained")
    tokenizer/             optional copy of the pretraining tokenizer (features "pretrained":
                           spells ids back into the encoder's text)

``classifier.json``: ``{"format": 1, "features": "bilm" | "encoder" | "pretrained" | "context_free",
"left", "right" | "encoder" (+ "tokenizer"): model directories (relative to the classifier
directory, or absolute; a pretrained encoder may be a hub name read from the local cache),
"layer", "window", "stride", "batch", "token_probe", "document_probe" (file or null),
"document_max_tokens", "scores": "centred" | "probability"}``.

Scores. With ``"centred"`` (the default) a token's score is σ(logit − logit(threshold)): a
monotone transform of the probe's probability that is ≥ 0.5 exactly where the probe flags (its
validation F1 maximum), so a filter's default ``token_threshold: 0.5`` is the F1-optimal
classifier (paper S7: the main runs) and "filter x%" thresholds see the probabilities' order.
The document score is the document probe's, centred the same way; without a document probe it
is the share of the document's text tokens the token probe flags (the ``truth`` filter's
document score is the ground-truth share). Special tokens (end-of-text above all) score 0:
no threshold may mask or remove a document boundary (DESIGN §4 trap 4).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenfilter.classify.baselines import ContextFreeBaseline
from tokenfilter.classify.bilm import BiLM, StreamFeatures, iter_stream_features
from tokenfilter.classify.document import MAX_POOLED_TOKENS
from tokenfilter.classify.probe import Probe, sigmoid
from tokenfilter.data.shards import TokenShard
from tokenfilter.errors import ConfigError
from tokenfilter.io import atomic_directory, read_json, write_json

CONFIG = "classifier.json"
TOKEN_PROBE = "token_probe.npz"
DOCUMENT_PROBE = "document_probe.npz"
FEATURES = ("bilm", "encoder", "pretrained", "context_free")
# What each kind of features loads: the roles of its model paths.
MODEL_ROLES = {"bilm": ("left", "right"), "encoder": ("encoder",), "pretrained": ("encoder", "tokenizer"),
               "context_free": ()}
SCORES = ("centred", "probability")


@dataclass
class Classifier:
    """A loaded classifier: a feature extractor (None for the context-free baseline), a token
    probe, an optional document probe."""

    features: str
    extractor: StreamFeatures | None
    token_probe: Probe | ContextFreeBaseline
    document_probe: Probe | None
    document_max_tokens: int
    scores: str = "centred"

    def score_features(self, probe: Probe, features: np.ndarray) -> np.ndarray:
        return probe.centred_scores(features) if self.scores == "centred" else probe.predict_proba(features)

    def score_ids(self, token_ids: np.ndarray) -> np.ndarray:
        """Scores of the context-free baseline (a function of the id alone)."""
        baseline = self.token_probe
        p = baseline.predict_proba(token_ids)
        if self.scores == "probability":
            return p
        t = float(np.clip(baseline.threshold, 1e-12, 1 - 1e-12))
        q = np.clip(p, 1e-12, 1 - 1e-12)
        return sigmoid(np.log(q / (1 - q)) - np.log(t / (1 - t)))

    @property
    def flag_at(self) -> float:
        """The score at or above which the token probe flags a token."""
        return 0.5 if self.scores == "centred" else float(self.token_probe.threshold)


# --- saving and loading ---------------------------------------------------------------------------------

def save_classifier(directory: str | os.PathLike, token_probe: Probe | ContextFreeBaseline, *, features: str = "bilm",
                    left: str | os.PathLike | None = None, right: str | os.PathLike | None = None,
                    encoder: str | os.PathLike | None = None, tokenizer: str | os.PathLike | None = None,
                    layer: int | None = None, window: int | None = None,
                    stride: int | None = None, batch: int = 32, document_probe: Probe | None = None,
                    document_max_tokens: int = MAX_POOLED_TOKENS, copy_models: bool = False,
                    scores: str = "centred") -> dict[str, Any]:
    """Write a classifier directory (layout in the module docstring); returns its config.

    Model directories are referenced by absolute path, or copied in (``copy_models``) so the
    classifier is self-contained. ``layer`` defaults to the token probe's; ``window`` and
    ``stride`` to the models' block size and half of it.
    """
    if features not in FEATURES:
        raise ConfigError(f"classifier features must be one of {FEATURES}, got {features!r}")
    if scores not in SCORES:
        raise ConfigError(f"classifier scores must be one of {SCORES}, got {scores!r}")
    given = {"left": left, "right": right, "encoder": encoder, "tokenizer": tokenizer}
    models = {role: given[role] for role in MODEL_ROLES[features]}
    missing = [name for name, path in models.items() if path is None]
    if missing:
        raise ConfigError(f"a {features} classifier needs model directories {missing}")
    if features == "context_free" and document_probe is not None:
        raise ConfigError("a context-free classifier has no features for a document probe")
    if layer is None and features != "context_free":
        layer = getattr(token_probe, "layer", None)
        if layer is None:
            raise ConfigError("the probed layer is neither given nor recorded in the token probe")
    config: dict[str, Any] = {"format": 1, "features": features, "layer": layer, "window": window, "stride": stride,
                              "batch": batch, "token_probe": TOKEN_PROBE,
                              "document_probe": DOCUMENT_PROBE if document_probe is not None else None,
                              "document_max_tokens": int(document_max_tokens), "scores": scores}
    with atomic_directory(directory) as tmp:
        for name, path in models.items():
            local = Path(path)
            if not local.exists():  # a hub name (pretrained encoders), read from the local cache
                config[name] = str(path)
            elif copy_models:
                if local.is_dir():
                    shutil.copytree(local, tmp / name)
                else:
                    (tmp / name).mkdir()
                    shutil.copy2(local, tmp / name / local.name)
                config[name] = name
            else:
                config[name] = str(local.resolve())
        token_probe.save(tmp / TOKEN_PROBE)
        if document_probe is not None:
            document_probe.save(tmp / DOCUMENT_PROBE)
        write_json(tmp / CONFIG, config)
    return config


def save_unavailable(directory: str | os.PathLike, reason: str) -> None:
    """A classifier directory that says why no classifier could be fitted."""
    with atomic_directory(directory) as tmp:
        write_json(tmp / CONFIG, {"format": 1, "unavailable": reason})


def load_classifier(directory: str | os.PathLike, device: str | torch.device | None = None) -> Classifier:
    """Load a classifier directory; models go to ``device`` (default: the GPU if there is one)."""
    directory = Path(directory)
    config = read_json(directory / CONFIG)
    if config.get("unavailable"):
        raise ConfigError(f"{directory}: this classifier could not be fitted ({config['unavailable']}); "
                          "a filter cannot use it")
    if config.get("format") != 1:
        raise ConfigError(f"{directory}: unknown classifier format {config.get('format')!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    def model_path(key: str) -> str:
        local = directory / config[key]
        return str(local.resolve()) if local.exists() else config[key]  # else a hub name

    features = config["features"]
    if features not in FEATURES:
        raise ConfigError(f"{directory}: unknown classifier features {features!r}")
    extractor = None if features == "context_free" else extractor_for(
        features, {role: model_path(role) for role in MODEL_ROLES[features]}, config["layer"],
        {key: config[key] for key in ("window", "stride", "batch")}, device)
    token_probe: Probe | ContextFreeBaseline = (ContextFreeBaseline.load(directory / config["token_probe"])
                                                if features == "context_free" else
                                                Probe.load(directory / config["token_probe"]))
    document_probe = Probe.load(directory / config["document_probe"]) if config.get("document_probe") else None
    return Classifier(features, extractor, token_probe, document_probe, int(config["document_max_tokens"]),
                      config.get("scores", "centred"))


def extractor_for(features: str, models: dict[str, str], layer: int, windowing: dict[str, Any],
                  device: str | torch.device = "cpu") -> StreamFeatures:
    """The feature extractor of a kind of features at ``layer``; ``models``: {role: path} of
    :data:`MODEL_ROLES`; ``windowing``: window, stride (None: the models' defaults) and batch."""
    window, stride, batch = windowing.get("window"), windowing.get("stride"), int(windowing.get("batch") or 32)
    if features == "bilm":
        return BiLM.load(models["left"], models["right"], layer, window, stride, batch, device)
    if features == "encoder":
        from tokenfilter.classify.mlm import EncoderFeatures

        return EncoderFeatures.load(models["encoder"], layer, window, stride, batch, device)
    if features == "pretrained":
        from tokenfilter.classify.pretrained import PretrainedEncoderFeatures

        return PretrainedEncoderFeatures.load(models["encoder"], models["tokenizer"], layer, window, stride, batch,
                                              device)
    raise ConfigError(f"classifier features {features!r} have no extractor; known: {FEATURES[:-1]}")


def model_depth(features: str, models: dict[str, str]) -> int:
    """Blocks of a classifier's feature model (the layers a probe can read)."""
    if features == "pretrained":
        from tokenfilter.classify.pretrained import pretrained_depth

        return pretrained_depth(models["encoder"])
    from tokenfilter.model.checkpoint import read_model_config

    config = read_model_config(models["left" if features == "bilm" else "encoder"])
    return int(config.get("n_layer") or config.get("num_hidden_layers"))


# --- scoring a range ----------------------------------------------------------------------------------------

def score_range(classifier: Classifier | str | os.PathLike, shard: TokenShard, start: int, stop: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """(token scores, document scores) of one part of a shard.

    Token scores: float32, one per position of ``[start, stop)``. Document scores: float32, one
    per document whose first token lies in ``[start, stop)`` (the documents a part owns:
    :func:`tokenfilter.filtering.annotation.annotate_part`), computed from the whole document
    even where it runs past ``stop``. Identical whatever the part boundaries.
    """
    if not isinstance(classifier, Classifier):
        classifier = load_classifier(classifier)
    n = shard.n_tokens
    if not 0 <= start <= stop <= n:
        raise ValueError(f"range [{start}, {stop}) is outside a shard of {n} tokens")
    doc_starts = shard.docs["start"].astype(np.int64)
    docs = shard.docs[int(np.searchsorted(doc_starts, start, "left")): int(np.searchsorted(doc_starts, stop, "left"))]
    text_starts = docs["start"].astype(np.int64)
    text_stops = text_starts + np.maximum(docs["length"].astype(np.int64) - 1, 0)
    # What each document's score reads: its first tokens (document probe) or all its text tokens.
    pool_stops = (text_stops if classifier.document_probe is None else
                  np.minimum(text_stops, text_starts + classifier.document_max_tokens))
    need_stop = int(max(stop, pool_stops.max(initial=0)))
    special = np.fromiter(shard.meta["special_ids"].values(), dtype=np.int64)

    token_scores = np.zeros(stop - start, dtype=np.float32)
    doc_scores = np.zeros(len(docs), dtype=np.float32)
    flagged = np.zeros(len(docs), dtype=np.int64)  # the fallback document score's numerator
    pooled = _DocumentPools(text_starts, pool_stops) if classifier.document_probe is not None else None

    def chunks():
        if classifier.extractor is None:  # context-free: no features, fixed-size chunks of ids
            step = 1 << 16
            for first in range(start - start % step, need_stop, step):
                yield first, None, min(n, first + step) - first
        else:
            for first, feats in iter_stream_features(classifier.extractor, shard.tokens, start, need_stop):
                yield first, feats, len(feats)

    for first, feats, length in chunks():
        ids = np.asarray(shard.tokens[first:first + length]).astype(np.int64)
        if feats is None:
            scores = classifier.score_ids(ids)
        else:
            scores = classifier.score_features(classifier.token_probe, feats)
        scores = np.where(np.isin(ids, special), 0.0, scores).astype(np.float32)
        lo, hi = max(start, first), min(stop, first + length)
        if lo < hi:
            token_scores[lo - start: hi - start] = scores[lo - first: hi - first]
        if pooled is not None:
            done, means = pooled.add(first, feats)
            if done:
                doc_scores[done] = classifier.score_features(classifier.document_probe, means)
        else:
            _count_flagged(flagged, text_starts, pool_stops, first, scores >= classifier.flag_at)

    if pooled is not None:
        if pooled.open:
            raise AssertionError(f"documents {sorted(pooled.open)} were not read to their end")
    else:
        n_text = text_stops - text_starts
        doc_scores = np.where(n_text > 0, flagged / np.maximum(n_text, 1), 0.0).astype(np.float32)
    return token_scores, doc_scores.astype(np.float32)


def _count_flagged(flagged: np.ndarray, starts: np.ndarray, stops: np.ndarray, first: int, flags: np.ndarray) -> None:
    """Add to each document's count the flagged tokens of its text ``[start, stop)`` that fall in
    this chunk (positions ``first ..``); only the documents overlapping the chunk are touched."""
    end = first + len(flags)
    overlapping = slice(int(np.searchsorted(stops, first, "right")), int(np.searchsorted(starts, end, "left")))
    csum = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    lo = np.clip(starts[overlapping] - first, 0, len(flags))
    hi = np.clip(stops[overlapping] - first, 0, len(flags))
    flagged[overlapping] += np.where(hi > lo, csum[hi] - csum[lo], 0)


class _DocumentPools:
    """Running float64 sums of the pooled features of the documents still open, chunk by chunk in
    stream order. A document's sum is a sum of per-chunk sums over the fixed grid, so it is the
    same bits in every part that owns it; it is handed back (as a mean) the moment its pooled
    range is complete, so memory holds only the documents that span the current chunk."""

    def __init__(self, starts: np.ndarray, stops: np.ndarray):
        self.starts, self.stops = starts, stops
        self.open: dict[int, np.ndarray] = {}

    def add(self, first: int, feats: np.ndarray) -> tuple[list[int], np.ndarray]:
        """Add a chunk of features (positions ``first ..``); returns the documents completed by it
        and their mean features."""
        end = first + len(feats)
        # Documents whose pooled range overlaps this chunk (ranges are sorted and disjoint).
        lo_doc = int(np.searchsorted(self.stops, first, "right"))
        hi_doc = int(np.searchsorted(self.starts, end, "left"))
        done, means = [], []
        for d in range(lo_doc, hi_doc):
            a, b = max(first, int(self.starts[d])), min(end, int(self.stops[d]))
            if a >= b:
                continue
            part = feats[a - first: b - first].sum(axis=0, dtype=np.float64)
            total = self.open.pop(d, None)
            total = part if total is None else total + part
            if self.stops[d] <= end:
                done.append(d)
                means.append(total / (self.stops[d] - self.starts[d]))
            else:
                self.open[d] = total
        return done, (np.stack(means) if means else np.zeros((0, feats.shape[1])))

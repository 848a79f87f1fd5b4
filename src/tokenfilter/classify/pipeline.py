"""The classifier stage's jobs (paper §5.2-5.3, E2, E3, E16, E17): fit a token probe (and a document
probe) on a feature extractor, measure it against the labels it learnt from and against the
ground truth, and save it as a filter source.

Data: the labelling stage's documents in three parts (``train``, ``val``, ``test``), each a token
shard of the pretraining tokenizer, with one training label per token: the SAE labels (paper), the
ground truth (beyond the paper: how good could a probe on these features be), or sentence /
document labels from the judge (E16). The probe trains on a class-balanced sample of ``train``
(paper S3: 50/50), its regularisation and threshold (the F1 maximum) come from ``val``, and
``test`` is only scored. Layers are swept; the best validation F1 wins (paper §5.2).

Every metric is reported against the training labels (the paper's Table 1: against SAE labels)
and, where the corpus has it, against the ground truth.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tokenfilter.classify.annotate import extractor_for, model_depth, save_classifier
from tokenfilter.classify.bilm import StreamFeatures, features_at
from tokenfilter.classify.probe import binary_metrics, fit_probe, non_special, token_examples
from tokenfilter.data.alignment import token_labels_from_spans
from tokenfilter.data.corpus import iter_corpus
from tokenfilter.data.shards import TokenShard
from tokenfilter.errors import ConfigError
from tokenfilter.io import read_json, write_json
from tokenfilter.judge.base import Judge, TextItem

PARTS = ("train", "val", "test")
LABEL_SOURCES = ("sae", "truth", "sentence", "document")


@dataclass
class LabelledData:
    """The classifier's documents: one token shard per part, the labels a probe learns from and the
    ground truth (None without it), both aligned to the shard."""

    shards: dict[str, TokenShard]
    labels: dict[str, np.ndarray]
    truth: dict[str, np.ndarray | None]
    documents: dict[str, str]  # part -> the documents' corpus file (for document labels)

    @classmethod
    def load(cls, shard_dirs: dict[str, str | os.PathLike], labels: dict[str, np.ndarray],
             documents: dict[str, str]) -> "LabelledData":
        shards = {part: TokenShard.open(shard_dirs[part]) for part in PARTS}
        for part in PARTS:
            if len(labels[part]) != shards[part].n_tokens:
                raise ValueError(f"{part}: {len(labels[part])} labels for a shard of {shards[part].n_tokens} tokens")
        truth = {part: None if shards[part].labels is None else np.asarray(shards[part].labels, dtype=bool)
                 for part in PARTS}
        return cls(shards, labels, truth, documents)


def training_labels(source: str, shard_dirs: dict[str, str | os.PathLike],
                    label_files: Sequence[str | os.PathLike]) -> dict[str, np.ndarray]:
    """{part: labels} a classifier learns from: the shards' ground truth for ``source`` "truth",
    else one saved label array per part (``label_files`` in :data:`PARTS` order)."""
    if source == "truth":
        return {part: np.asarray(TokenShard.open(shard_dirs[part]).labels) for part in PARTS}
    return {part: np.load(path) for part, path in zip(PARTS, label_files)}


# --- training labels ---------------------------------------------------------------------------------------

def judged_labels(docs_path: str | os.PathLike, shard: TokenShard, tokenizer, level: str, judge: Judge
                  ) -> np.ndarray:
    """uint8 labels aligned to ``shard`` (made from ``docs_path``): every token of a sentence (or
    document) the judge calls forget-domain (paper §6.3: labels of sentences and documents,
    inherited by their tokens)."""
    from tokenfilter.classify.granularity import sentence_spans

    out = np.zeros(shard.n_tokens, dtype=np.uint8)
    rows = list(iter_corpus(docs_path, ["text", "forget_spans", "domain"]))
    if len(rows) != len(shard.docs):
        raise ValueError(f"{docs_path} has {len(rows)} documents, its shard {shard.directory} {len(shard.docs)}")
    for row, doc, (ids, offsets) in zip(rows, shard.docs, tokenizer.encode_batch([r["text"] for r in rows])):
        text, spans = row["text"], row["forget_spans"]
        start = int(doc["start"])
        if len(ids) != int(doc["length"]) - 1:
            raise ValueError(f"{docs_path}: a document's tokens do not match its shard {shard.directory}")
        pieces = sentence_spans(text) if level == "sentence" else np.array([[0, len(text)]], dtype=np.int64)
        forget = []
        for a, b in pieces:
            local = None if spans is None else tuple((max(s, a) - a, min(e, b) - a) for s, e in spans if s < b and e > a)
            item = TextItem(text[a:b], level=level, context=text if level == "sentence" else None,
                            source_domain=row["domain"], forget_spans=local)
            if judge.text_is_forget(item):
                forget.append((a, b))
        out[start:start + len(ids)] = token_labels_from_spans(offsets, np.asarray(forget, dtype=np.int64).reshape(-1, 2))
    return out


def document_labels(docs_path: str | os.PathLike, judge: Judge) -> np.ndarray:
    """bool per document: the judge's document label (paper §5.3: Claude Sonnet 4 labels)."""
    labels = []
    for row in iter_corpus(docs_path, ["text", "forget_spans", "domain"]):
        spans = row["forget_spans"]
        labels.append(judge.text_is_forget(TextItem(row["text"], level="document", source_domain=row["domain"],
                                                    forget_spans=None if spans is None else tuple(map(tuple, spans)))))
    return np.asarray(labels, dtype=bool)


def document_truth(docs_path: str | os.PathLike) -> np.ndarray | None:
    """The corpus's own document labels (the built-in world's ``doc_label``), or None."""
    labels = [row["doc_label"] for row in iter_corpus(docs_path, ["doc_label"])]
    return None if any(label is None for label in labels) else np.asarray(labels, dtype=bool)


# --- features -----------------------------------------------------------------------------------------------

def _positions(shard: TokenShard) -> np.ndarray:
    ids = np.asarray(shard.tokens)
    return np.nonzero(non_special(ids, shard.meta["special_ids"].values()))[0]


def _scored(scores: np.ndarray, threshold: float, labels: np.ndarray | None) -> dict[str, float] | None:
    return None if labels is None else binary_metrics(scores, labels, threshold)


# --- the token and document probes ------------------------------------------------------------------------

def fit_classifier(features: str, models: dict[str, str], data: LabelledData, out_dir: str | os.PathLike,
                   metrics_path: str | os.PathLike, *, layers: Sequence[int] | None, probe: dict[str, Any],
                   windowing: dict[str, Any], document: dict[str, Any] | None, judge: Judge | None,
                   seed: int) -> dict[str, Any]:
    """Fit and save one classifier (``out_dir``, layout of :mod:`tokenfilter.classify.annotate`);
    returns and writes (``metrics_path``) its validation and test metrics against the training
    labels and the truth, the layer sweep, and the document probe's metrics (``document``
    settings: fit a document probe on judge labels; None: no document probe)."""
    from tokenfilter.classify.baselines import ContextFreeBaseline

    out_dir = Path(out_dir)
    metrics: dict[str, Any] = {"features": features}
    missing = _missing_class(data)
    if missing:
        return _unavailable(out_dir, metrics_path, data, features, missing)
    if features == "context_free":
        train_pos = _positions(data.shards["train"])
        val_pos = _positions(data.shards["val"])
        shard = data.shards["train"]
        model = ContextFreeBaseline.fit(np.asarray(shard.tokens)[train_pos], data.labels["train"][train_pos],
                                        int(shard.meta["vocab_size"]), np.asarray(data.shards["val"].tokens)[val_pos],
                                        data.labels["val"][val_pos], special_ids=shard.meta["special_ids"].values())
        for part in ("val", "test"):
            pos = _positions(data.shards[part])
            scores = model.predict_proba(np.asarray(data.shards[part].tokens)[pos])
            metrics[part] = _scored(scores, model.threshold, data.labels[part][pos].astype(bool))
            metrics[f"{part}_truth"] = _scored(scores, model.threshold,
                                               None if data.truth[part] is None else data.truth[part][pos])
            if part == "test":
                _save_test_scores(metrics_path, data.shards[part], pos, scores)
        save_classifier(out_dir, model, features="context_free")
        metrics.update(layer=None, threshold=model.threshold)
        write_json(metrics_path, metrics)
        return metrics

    depth = model_depth(features, models)
    layers = list(range(depth)) if not layers else [int(layer) for layer in layers]
    bad = [layer for layer in layers if not 0 <= layer < depth]
    if bad:
        raise ConfigError(f"classifier layers {bad} are not blocks of a {depth}-block model")
    best, sweep = None, []
    for layer in layers:
        extractor = extractor_for(features, models, layer, windowing)
        x, y, _ = token_examples(extractor, data.shards["train"], [(0, data.shards["train"].n_tokens)],
                                 labels=data.labels["train"], balance=True, max_per_class=probe["max_per_class"],
                                 seed=seed)
        val_pos = _positions(data.shards["val"])
        val_x = features_at(extractor, data.shards["val"].tokens, val_pos)
        fitted = fit_probe(x, y, val_x, data.labels["val"][val_pos].astype(bool), Cs=probe["Cs"], seed=seed,
                           layer=layer, balance=False, max_iter=probe["max_iter"])
        sweep.append({"layer": layer, "C": fitted.C, **{f"val_{k}": v for k, v in fitted.info["val"].items()}})
        if best is None or fitted.info["val"]["f1"] > best[0].info["val"]["f1"]:
            best = (fitted, extractor)
    token_probe, extractor = best
    token_probe.info["layer_sweep"] = sweep
    for part in ("val", "test"):
        pos = _positions(data.shards[part])
        scores = token_probe.predict_proba(features_at(extractor, data.shards[part].tokens, pos))
        metrics[part] = _scored(scores, token_probe.threshold, data.labels[part][pos].astype(bool))
        metrics[f"{part}_truth"] = _scored(scores, token_probe.threshold,
                                           None if data.truth[part] is None else data.truth[part][pos])
        if part == "test":
            _save_test_scores(metrics_path, data.shards[part], pos, scores)
    document_probe = None
    if document is not None:
        document_probe, metrics["document"] = _fit_document(extractor, data, judge, document, probe, seed)
    save_classifier(out_dir, token_probe, features=features, left=models.get("left"), right=models.get("right"),
                    encoder=models.get("encoder"), tokenizer=models.get("tokenizer"), layer=token_probe.layer, window=windowing.get("window"),
                    stride=windowing.get("stride"), batch=int(windowing.get("batch", 32)),
                    document_probe=document_probe, document_max_tokens=document["max_tokens"] if document else 1024)
    metrics.update(layer=token_probe.layer, C=token_probe.C, threshold=token_probe.threshold, layer_sweep=sweep,
                   n_train=token_probe.info["n_train"])
    write_json(metrics_path, metrics)
    return metrics


TEST_SCORES = "test_scores.npy"


def _missing_class(data: LabelledData) -> str | None:
    """Why no probe can be fitted on these labels (a part without forget or without retain
    tokens), or None."""
    for part in ("train", "val"):
        labels = data.labels[part][_positions(data.shards[part])].astype(bool)
        if not labels.any() or labels.all():
            kind = "forget" if not labels.any() else "retain"
            return f"the {part} documents have no {kind} tokens in the training labels"
    return None


def _unavailable(out_dir: Path, metrics_path: str | os.PathLike, data: LabelledData, features: str,
                 reason: str) -> dict[str, Any]:
    """Record a classifier that cannot be fitted (e.g. SAE labels with no forget token): Table 1
    shows the reason, and a filter that names it fails with it."""
    from tokenfilter.classify.annotate import save_unavailable

    save_unavailable(out_dir, reason)
    test = data.shards["test"]
    _save_test_scores(metrics_path, test, np.zeros(0, dtype=np.int64), np.zeros(0))
    metrics = {"features": features, "unavailable": reason, "val": None, "test": None, "val_truth": None,
               "test_truth": None, "layer": None, "threshold": None}
    write_json(metrics_path, metrics)
    return metrics


def _save_test_scores(metrics_path: str | os.PathLike, shard: TokenShard, positions: np.ndarray,
                      scores: np.ndarray) -> None:
    """The test tokens' probabilities (float32 per test-shard position, NaN at special tokens),
    beside the metrics (which hold the threshold): the report's paired comparisons and example
    pages read them."""
    from tokenfilter.io import save_array

    out = np.full(shard.n_tokens, np.nan, dtype=np.float32)
    out[positions] = scores
    save_array(Path(metrics_path).with_name(TEST_SCORES), out)


def _fit_document(extractor: StreamFeatures, data: LabelledData, judge: Judge | None, document: dict[str, Any],
                  probe: dict[str, Any], seed: int):
    """The document probe (paper §5.3) on mean-pooled features, with the judge's document labels."""
    from tokenfilter.classify.document import document_features, fit_document_probe

    if judge is None:
        raise ConfigError("a document probe needs a judge for its document labels")
    labels = {part: document_labels(data.documents[part], judge) for part in PARTS}
    shards = data.shards
    every = {part: np.arange(len(shards[part].docs)) for part in PARTS}
    doc_probe = fit_probe(document_features(extractor, shards["train"], every["train"], document["max_tokens"]),
                          labels["train"],
                          document_features(extractor, shards["val"], every["val"], document["max_tokens"]),
                          labels["val"], Cs=probe["Cs"], seed=seed, max_iter=probe["max_iter"],
                          layer=extractor.layer if hasattr(extractor, "layer") else None)
    doc_probe.info["max_tokens"] = int(document["max_tokens"])
    result: dict[str, Any] = {"share_forget_train": float(labels["train"].mean())}
    for part in ("val", "test"):
        scores = doc_probe.predict_proba(document_features(extractor, shards[part], every[part], document["max_tokens"]))
        result[part] = binary_metrics(scores, labels[part], doc_probe.threshold)
        truth = document_truth(data.documents[part])
        result[f"{part}_truth"] = None if truth is None else binary_metrics(scores, truth, doc_probe.threshold)
    return doc_probe, result


# --- Table 1 -------------------------------------------------------------------------------------------------

def classifier_table(metrics_paths: dict[str, str | os.PathLike], models: dict[str, dict[str, Any]]) -> "pd.DataFrame":
    """The Table 1 analogue: per classifier, F1 (val, test) and AUROC against the training labels
    and against the truth, the probed layer, and the document probe's F1 where there is one."""
    import pandas as pd

    rows = []
    for name, path in metrics_paths.items():
        m = read_json(path)

        def get(part: str, key: str) -> float:
            block = m.get(part)
            return float("nan") if not block else float(block[key])

        doc = m.get("document") or {}
        spec = models.get(name, {})
        rows.append({"classifier": name, "description": spec.get("description", ""), "features": m["features"],
                     "size": spec.get("size") or "", "trained on": spec.get("labels", ""),
                     "note": m.get("unavailable", ""),
                     "layer": m.get("layer"), "f1_val": get("val", "f1"), "f1_test": get("test", "f1"),
                     "auroc_test": get("test", "auroc"), "f1_test_truth": get("test_truth", "f1"),
                     "auroc_test_truth": get("test_truth", "auroc"),
                     "flagged_test": get("test", "flagged"),
                     "doc_f1_val": float(doc["val"]["f1"]) if doc else float("nan"),
                     "doc_f1_test": float(doc["test"]["f1"]) if doc else float("nan"),
                     "doc_f1_test_truth": float(doc["test_truth"]["f1"]) if doc and doc.get("test_truth") else float("nan"),
                     "doc_n_test": int(doc["test"]["n"]) if doc else 0})
    return pd.DataFrame(rows)


# --- weak-to-strong (E17) -------------------------------------------------------------------------------------

def weak_to_strong_job(data: LabelledData, weak: dict[str, Any], strong: dict[str, Any], windowing: dict[str, Any],
                       settings: dict[str, Any], document_max_tokens: int, judge: Judge | None, probe: dict[str, Any],
                       out: dict[str, str], seed: int = 0) -> "pd.DataFrame":
    """Fig 15 and the E17 claims. ``weak`` / ``strong``: ``{"name", "features", "models", "metrics"}``
    of two fitted classifiers (each read at the layer its own sweep chose). Token examples come
    from the train documents with the labels the classifiers learnt from; document examples are
    every classifier document with the judge's document label."""
    from tokenfilter.classify.report import plot_weak_to_strong, weak_to_strong_claims
    from tokenfilter.classify.weak_to_strong import document_pools, run_levels, token_pools
    from tokenfilter.report.tables import write_table

    extractors = []
    for side in (weak, strong):
        metrics = read_json(side["metrics"])
        if metrics.get("unavailable") or metrics.get("layer") is None:
            raise ConfigError(f"classifiers.weak_to_strong: classifier {side['name']!r} has no fitted feature layer "
                              f"({metrics.get('unavailable') or 'context-free'})")
        extractors.append(extractor_for(side["features"], side["models"], int(metrics["layer"]), windowing))
    pools = {"token": token_pools(*extractors, data.shards["train"], data.labels["train"], settings["max_tokens"], seed)}
    if judge is not None:
        labels = [document_labels(data.documents[part], judge) for part in PARTS]
        pools["document"] = document_pools(*extractors, [data.shards[part] for part in PARTS], labels,
                                           document_max_tokens)
    table = run_levels(pools, {"token": settings["token_amounts"], "document": settings["document_amounts"]},
                       seed=seed, Cs=probe["Cs"], max_iter=probe["max_iter"])
    write_table(table, csv_path=out["csv"], html_path=out["html"], title="Weak-to-strong generalisation (paper Fig 15)",
                note=f"Weak teacher {weak['name']}, strong student {strong['name']}. Test accuracy of the weak probe, of "
                     "the strong probe trained on the weak probe's labels of a disjoint pool, and of the strong probe "
                     "trained on true labels; PGR = (student - teacher) / (ceiling - teacher).")
    plot_weak_to_strong(table, out["figure"])
    claims = weak_to_strong_claims(table, weak["name"], strong["name"])
    write_table(claims, csv_path=out["claims"])
    return claims

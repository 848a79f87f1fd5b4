"""Linear probes on a pretrained model's residual stream (paper E10, §4.4, Fig 8; E11, Fig 21).

Can a model that never trained on forget tokens still tell them apart? The paper fits linear
probes on each pretrained model's hidden states:

* **Forget vs retain tokens** (E10, Fig 8): a token-level logistic regression on a sample of
  labelled tokens (2.05M in the paper), layers swept, scored by F1 on held-out tokens. Filtered
  models turn out only marginally worse than the baseline, which is why refusal training still
  works on them (§4.4).
* **Within the forget domain** (E11, Fig 21): infectious diseases vs neurology, and each of them
  vs non-medical text. Filtered models separate medicine from non-medicine as well as the
  baseline does, but separate the two medical sub-domains much worse: what they can recognise is
  "tokens I was not trained on", not medical content.

Here the labels are the built-in world's ground truth (``labels.bin`` of a token shard; the
sub-domain of each forget eval document). Features are :func:`tokenfilter.model.hidden.residual_stream`
outputs ("layer L" = output of block L). Probes are scikit-learn ``LogisticRegression`` (lbfgs)
on standardised features. Every split keeps whole documents on one side, so a probe is never
tested on a document it was fitted on (tokens of one document share context and topic).
Features of all requested layers are held in memory: at the paper's scale (2M tokens × 2048
dimensions) sweep the layers a few at a time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tokenfilter.data.shards import TokenShard
from tokenfilter.model.hidden import n_blocks, residual_stream, resolve_layers

SUBDOMAINS = ("infectious", "neurological")


# --- token samples ------------------------------------------------------------------------------

def _special_ids(shard: TokenShard) -> np.ndarray:
    return np.asarray(sorted(set(shard.meta.get("special_ids", {}).values())), dtype=np.int64)


def sample_token_positions(shard: TokenShard, n_tokens: int, seq_len: int, seed: int, balance: bool = True,
                           per_window: int = 64) -> np.ndarray:
    """Sorted corpus positions of up to ``n_tokens`` labelled tokens, from random ``seq_len`` windows.

    At most ``per_window`` tokens per window (per class when balanced), so the sample spreads over
    many documents; special tokens (end-of-text) are never sampled. ``balance`` draws half forget,
    half retain tokens (the paper's classifier data is 50/50, §5.1), so F1 does not depend on the
    corpus's forget share.
    """
    if shard.labels is None:
        raise ValueError(f"{shard.directory}: the token probe needs ground-truth labels (labels.bin)")
    rng = np.random.default_rng([seed, 41])
    specials = _special_ids(shard)
    n_windows = shard.n_tokens // seq_len
    if n_windows == 0:
        raise ValueError(f"{shard.directory}: {shard.n_tokens} tokens are fewer than one window of {seq_len}")
    quotas = {0: n_tokens // 2, 1: n_tokens - n_tokens // 2} if balance else {None: n_tokens}
    taken: dict[Any, list[np.ndarray]] = {key: [] for key in quotas}
    counts = dict.fromkeys(quotas, 0)
    for window in rng.permutation(n_windows):
        positions = np.arange(window * seq_len, (window + 1) * seq_len)
        positions = positions[~np.isin(np.asarray(shard.tokens[positions], dtype=np.int64), specials)]
        labels = np.asarray(shard.labels[positions])
        for key, quota in quotas.items():
            candidates = positions if key is None else positions[labels == key]
            take = min(quota - counts[key], per_window, len(candidates))
            if take > 0:
                taken[key].append(rng.choice(candidates, size=take, replace=False))
                counts[key] += take
        if all(counts[key] >= quota for key, quota in quotas.items()):
            break
    chosen = np.concatenate([part for parts in taken.values() for part in parts])
    if len(np.unique(np.asarray(shard.labels[chosen]))) < 2:
        raise ValueError(f"{shard.directory}: the token sample holds only one class")
    return np.sort(chosen)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def token_features(model: torch.nn.Module, shard: TokenShard, positions: np.ndarray, layers: Sequence[int],
                   seq_len: int, batch_size: int = 8) -> dict[int, np.ndarray]:
    """{layer: (len(positions), d) float32} residual stream at each position, read in the
    ``seq_len`` window that contains it (as :func:`sample_token_positions` drew them)."""
    device = _device_of(model)
    windows = np.unique(positions // seq_len)
    features: dict[int, np.ndarray] = {}
    for first in range(0, len(windows), batch_size):
        batch = windows[first:first + batch_size]
        index = (batch[:, None] * seq_len + np.arange(seq_len)[None, :]).reshape(-1)
        ids = torch.from_numpy(np.asarray(shard.tokens[index], dtype=np.int64).reshape(len(batch), seq_len))
        stream = residual_stream(model, ids.to(device), list(layers))
        rows = np.flatnonzero(np.isin(positions // seq_len, batch))
        window_row = np.searchsorted(batch, positions[rows] // seq_len)
        offset = positions[rows] % seq_len
        for layer, hidden in stream.items():
            if layer not in features:
                features[layer] = np.zeros((len(positions), hidden.shape[-1]), dtype=np.float32)
            features[layer][rows] = hidden[window_row, offset].float().cpu().numpy()
    return features


# --- fitting ----------------------------------------------------------------------------------

def _probe(C: float, max_iter: int, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter,
                                                              random_state=seed))


def group_split(groups: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask holding out ``test_fraction`` of the groups (documents), seeded."""
    unique = np.unique(groups)
    if len(unique) < 2:
        raise ValueError("a held-out split needs at least two documents")
    n_test = min(len(unique) - 1, max(1, int(round(test_fraction * len(unique)))))
    test_groups = np.random.default_rng([seed, 43]).permutation(unique)[:n_test]
    return np.isin(groups, test_groups)


def fit_token_probes(features: dict[int, np.ndarray], labels: np.ndarray, groups: np.ndarray,
                     test_fraction: float = 0.2, seed: int = 0, C: float = 1.0,
                     max_iter: int = 1000) -> list[dict[str, Any]]:
    """One probe per layer on a document-held-out split; rows of F1 (forget = positive), precision,
    recall and accuracy on the held-out tokens."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    test = group_split(groups, test_fraction, seed)
    if len(np.unique(labels[test])) < 2 or len(np.unique(labels[~test])) < 2:
        raise ValueError("both classes must occur in the train and the held-out split; sample more tokens")
    rows = []
    for layer in sorted(features):
        x = features[layer]
        probe = _probe(C, max_iter, seed).fit(x[~test], labels[~test])
        predicted = probe.predict(x[test])
        rows.append({"layer": layer, "f1": float(f1_score(labels[test], predicted)),
                     "precision": float(precision_score(labels[test], predicted, zero_division=0)),
                     "recall": float(recall_score(labels[test], predicted)),
                     "accuracy": float(accuracy_score(labels[test], predicted)),
                     "n_train": int((~test).sum()), "n_test": int(test.sum())})
    return rows


def token_probe(model: torch.nn.Module, shard: TokenShard, layers: int | Sequence[int] | None = None,
                n_tokens: int = 20_000, seq_len: int | None = None, test_fraction: float = 0.2, seed: int = 0,
                balance: bool = True, C: float = 1.0, max_iter: int = 1000, batch_size: int = 8,
                per_window: int = 64) -> dict[str, Any]:
    """E10: forget-vs-retain token probes on every layer (default all); the rows and the best layer by F1."""
    depth = n_blocks(model)
    layers = resolve_layers(range(depth) if layers is None else layers, depth)
    seq_len = seq_len or model.config.block_size
    positions = sample_token_positions(shard, n_tokens, seq_len, seed, balance, per_window)
    labels = np.asarray(shard.labels[positions]).astype(np.int64)
    features = token_features(model, shard, positions, layers, seq_len, batch_size)
    rows = fit_token_probes(features, labels, shard.doc_index_of(positions), test_fraction, seed, C, max_iter)
    return {"task": "forget_vs_retain_tokens", "metric": "f1", "rows": rows, "best": max(rows, key=lambda r: r["f1"]),
            "n_tokens": int(len(positions)), "forget_share": float(labels.mean()), "seq_len": int(seq_len)}


# --- within the forget domain (E11) ----------------------------------------------------------------

def read_subdomains(corpus_path: str | os.PathLike, shard: TokenShard) -> list[str | None]:
    """The ``subdomain`` of every document of ``shard`` (in shard order), from the corpus it was
    tokenised from (e.g. ``eval/forget.parquet``), matched by ``doc_id``."""
    from tokenfilter.data.corpus import iter_corpus

    of_id = {row["doc_id"]: row.get("subdomain") for row in iter_corpus(corpus_path, ["doc_id", "subdomain"])}
    missing = [int(d) for d in shard.docs["doc_id"] if int(d) not in of_id]
    if missing:
        raise ValueError(f"{corpus_path}: no document with doc_id {missing[:5]} of shard {shard.directory}")
    return [of_id[int(d)] for d in shard.docs["doc_id"]]


def _document_tokens(shard: TokenShard, doc: int, seq_len: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The first ``seq_len`` tokens of document ``doc`` (its end-of-text left out) and their labels."""
    record = shard.docs[doc]
    start, length = int(record["start"]), min(int(record["length"]) - 1, seq_len)
    ids = np.asarray(shard.tokens[start:start + length], dtype=np.int64)
    labels = None if shard.labels is None else np.asarray(shard.labels[start:start + length])
    return ids, labels


@torch.no_grad()
def document_features(model: torch.nn.Module, shard: TokenShard, docs: Sequence[int], layers: Sequence[int],
                      seq_len: int, batch_size: int = 8, tokens: str = "all", per_doc: int | None = None,
                      seed: int = 0) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Features of documents of ``shard``, read from their first ``seq_len`` tokens.

    ``per_doc`` None: one mean-pooled row per document (document-level probe). Otherwise up to
    ``per_doc`` token rows per document (token-level probe). ``tokens`` chooses which tokens pool
    or are sampled: ``all``, ``forget`` (ground-truth forget tokens) or ``retain``.

    Returns ({layer: rows × d}, the document of each row).
    """
    device = _device_of(model)
    rng = np.random.default_rng([seed, 47])
    features: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
    owners: list[np.ndarray] = []
    for first in range(0, len(docs), batch_size):
        batch = list(docs[first:first + batch_size])
        parts = [_document_tokens(shard, doc, seq_len) for doc in batch]
        width = max(len(ids) for ids, _ in parts)
        ids = torch.zeros((len(batch), width), dtype=torch.long)  # right padding: causal, never attended
        for row, (doc_ids, _) in enumerate(parts):
            ids[row, :len(doc_ids)] = torch.from_numpy(doc_ids)
        stream = residual_stream(model, ids.to(device), list(layers))
        for row, (doc, (doc_ids, labels)) in enumerate(zip(batch, parts)):
            keep = np.ones(len(doc_ids), dtype=bool)
            if tokens != "all":
                if labels is None:
                    raise ValueError(f"{shard.directory}: choosing {tokens} tokens needs ground-truth labels")
                keep = labels == (1 if tokens == "forget" else 0)
            picked = np.flatnonzero(keep)
            if len(picked) == 0:
                continue
            if per_doc is not None and len(picked) > per_doc:
                picked = np.sort(rng.choice(picked, size=per_doc, replace=False))
            for layer in layers:
                hidden = stream[layer][row, torch.from_numpy(picked).to(device)].float()
                features[layer].append((hidden.mean(0, keepdim=True) if per_doc is None else hidden).cpu().numpy())
            owners.append(np.full(1 if per_doc is None else len(picked), doc, dtype=np.int64))
    if not owners:
        raise ValueError(f"{shard.directory}: no document had {tokens} tokens")
    return {layer: np.concatenate(rows) for layer, rows in features.items()}, np.concatenate(owners)


def cross_validated_accuracy(features: dict[int, np.ndarray], labels: np.ndarray, groups: np.ndarray,
                             n_splits: int = 5, seed: int = 0, C: float = 1.0,
                             max_iter: int = 1000) -> list[dict[str, Any]]:
    """Per layer: accuracy of a probe under stratified k-fold cross-validation by document (mean
    and standard deviation over folds). Folds are capped at the smaller class's document count."""
    from sklearn.model_selection import StratifiedGroupKFold

    docs_per_class = [len(np.unique(groups[labels == c])) for c in np.unique(labels)]
    if len(docs_per_class) < 2 or min(docs_per_class) < 2:
        raise ValueError(f"cross-validation needs two classes with at least two documents each: {docs_per_class}")
    folds = list(StratifiedGroupKFold(n_splits=min(n_splits, min(docs_per_class)), shuffle=True,
                                      random_state=seed).split(labels, labels, groups))
    rows = []
    for layer in sorted(features):
        x = features[layer]
        scores = [float((_probe(C, max_iter, seed).fit(x[tr], labels[tr]).predict(x[te]) == labels[te]).mean())
                  for tr, te in folds]
        rows.append({"layer": layer, "accuracy": float(np.mean(scores)), "accuracy_sd": float(np.std(scores)),
                     "folds": len(folds), "n": int(len(labels)), "documents": int(len(np.unique(groups)))})
    return rows


def subdomain_probe(model: torch.nn.Module, forget_shard: TokenShard, subdomains: Sequence[str | None],
                    layers: int | Sequence[int] | None = None, level: str = "document",
                    retain_shard: TokenShard | None = None, n_splits: int = 5, seed: int = 0, C: float = 1.0,
                    max_iter: int = 1000, seq_len: int | None = None, per_doc: int = 32, batch_size: int = 8,
                    max_docs: int | None = None) -> dict[str, Any]:
    """E11: can the residual stream tell the forget sub-domains apart, and each from non-medical text?

    ``level`` ``document``: one mean-pooled row per document (all its tokens, up to ``seq_len``);
    ``token``: up to ``per_doc`` forget tokens per forget document (non-medical documents: retain
    tokens), labelled by their document's sub-domain. Tasks: ``infectious_vs_neurological``, and
    with ``retain_shard`` (non-medical eval documents) ``<sub-domain>_vs_non_medical``; each class
    keeps as many documents as the smallest class (at most ``max_docs``), drawn by ``seed``.
    Returns per task the rows per layer, the best layer and the mean accuracy over layers (the
    paper's Fig 21 shows the average).
    """
    if level not in ("document", "token"):
        raise ValueError(f"level must be 'document' or 'token', got {level!r}")
    if len(subdomains) != len(forget_shard.docs):
        raise ValueError(f"{len(subdomains)} sub-domains for {len(forget_shard.docs)} documents")
    depth = n_blocks(model)
    layers = resolve_layers(range(depth) if layers is None else layers, depth)
    seq_len = seq_len or model.config.block_size
    rng = np.random.default_rng([seed, 53])
    classes: dict[str, tuple[TokenShard, np.ndarray, str]] = {
        name: (forget_shard, np.flatnonzero(np.asarray([s == name for s in subdomains])), "forget")
        for name in SUBDOMAINS}
    if retain_shard is not None:
        classes["non_medical"] = (retain_shard, np.arange(len(retain_shard.docs)), "retain")
    n_docs = min(len(docs) for _, docs, _ in classes.values())
    if max_docs is not None:
        n_docs = min(n_docs, max_docs)
    pooled: dict[str, tuple[dict[int, np.ndarray], np.ndarray]] = {}
    for name, (shard, docs, kind) in classes.items():
        docs = np.sort(rng.choice(docs, size=n_docs, replace=False))
        pooled[name] = document_features(model, shard, docs.tolist(), layers, seq_len, batch_size,
                                         tokens="all" if level == "document" else kind,
                                         per_doc=None if level == "document" else per_doc, seed=seed)
    tasks = [("infectious", "neurological")]
    if retain_shard is not None:
        tasks += [(name, "non_medical") for name in SUBDOMAINS]
    results = {}
    for first, second in tasks:
        (f1, g1), (f2, g2) = pooled[first], pooled[second]
        features = {layer: np.concatenate([f1[layer], f2[layer]]) for layer in layers}
        labels = np.concatenate([np.zeros(len(g1), dtype=np.int64), np.ones(len(g2), dtype=np.int64)])
        offset = len(forget_shard.docs) if second == "non_medical" else 0  # group ids unique across shards
        groups = np.concatenate([g1, g2 + offset])
        rows = cross_validated_accuracy(features, labels, groups, n_splits, seed, C, max_iter)
        results[f"{first}_vs_{second}"] = {"rows": rows, "best": max(rows, key=lambda r: r["accuracy"]),
                                          "mean_accuracy": float(np.mean([r["accuracy"] for r in rows]))}
    return {"level": level, "documents_per_class": int(n_docs), "seq_len": int(seq_len), "tasks": results}


# --- files ----------------------------------------------------------------------------------

def _load(model_dir: str | os.PathLike, device: str | None, threads: int | None) -> torch.nn.Module:
    from tokenfilter.model.checkpoint import load_model

    if threads:
        torch.set_num_threads(threads)
    return load_model(model_dir, device or ("cuda" if torch.cuda.is_available() else "cpu"))


def token_probe_file(model_dir: str | os.PathLike, shard_dir: str | os.PathLike, out_path: str | os.PathLike,
                     device: str | None = None, threads: int | None = None, **settings: Any) -> dict[str, Any]:
    """E10 for one saved model on one labelled shard; the result (:func:`token_probe`) as JSON."""
    from tokenfilter.io import write_json

    result = token_probe(_load(model_dir, device, threads), TokenShard.open(shard_dir), **settings)
    result["model"] = str(model_dir)
    write_json(out_path, result)
    return result


def subdomain_probe_file(model_dir: str | os.PathLike, forget_shard_dir: str | os.PathLike,
                         forget_corpus: str | os.PathLike, out_path: str | os.PathLike,
                         retain_shard_dir: str | os.PathLike | None = None, device: str | None = None,
                         threads: int | None = None, **settings: Any) -> dict[str, Any]:
    """E11 for one saved model: sub-domains from the forget eval corpus (``subdomain`` column)."""
    from tokenfilter.io import write_json

    forget = TokenShard.open(forget_shard_dir)
    retain = TokenShard.open(retain_shard_dir) if retain_shard_dir is not None else None
    result = subdomain_probe(_load(model_dir, device, threads), forget, read_subdomains(forget_corpus, forget),
                             retain_shard=retain, **settings)
    result["model"] = str(model_dir)
    write_json(out_path, result)
    return result

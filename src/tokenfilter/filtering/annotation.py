"""Per-token forget scores of the pretraining corpus, from a *filter source*: the one entry point.

Every filtering arm reads one float per training token (float16, aligned with the token shard)
and one per document. Only the source differs, chosen by the filter's ``kind``:

- ``truth``: the built-in world's ground truth, optionally with a simulated classifier's errors;
- ``sae`` and ``classifier``: token labels and trained probes (the label and classifier stages).

Annotation is scattered over contiguous token ranges of the shard (one job per part, so a
cluster annotates parts in parallel) and gathered into one directory: ``token_scores.bin``
(float16, one per token of the shard), ``doc_scores.npy`` (float32, one per document) and
``meta.json``. A part reads whatever context it needs beyond its own range, so the gathered
scores equal those of one unscattered pass exactly, whatever the number of parts.

The ``truth`` score is ``0.5·label + 0.5·(mean label in a ±w window)``. A threshold of 0.5
selects exactly the (possibly flipped) forget tokens, while the window term ranks tokens within
each class, as a contextual classifier's confidence would: tokens deep inside medical passages
come first, then their edges; among retain tokens, those next to medical text come first. Tokens
with equal scores are ordered by a deterministic per-position offset smaller than the step
between score levels, so "filter x% of tokens" thresholds (paper Fig 3) reach x% exactly.

``error_rate`` turns the ground truth into a simulated classifier: each token's label is flipped
with that probability (a fixed draw per token position) before scoring, the error model of the
paper's Fig 12 (its best classifier errs on 11% of tokens against its ground truth). The document
score is the document's share of ground-truth forget tokens (a perfect document classifier).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tokenfilter.data.shards import TokenShard
from tokenfilter.errors import ConfigError
from tokenfilter.filtering.draws import position_normals, position_uniforms
from tokenfilter.io import atomic_directory, read_json, save_array, write_json

TOKEN_SCORES = "token_scores.bin"
DOC_SCORES = "doc_scores.npy"
META = "meta.json"


# --- the truth source --------------------------------------------------------------------------

def truth_token_scores(labels: np.ndarray, context_window: int, error_rate: float = 0.0, seed: int = 0,
                       start: int = 0, stop: int | None = None) -> np.ndarray:
    """Scores of positions ``start .. stop`` from the 0/1 ``labels`` of the whole stream (see the
    module docstring): >= 0.5 exactly where the (possibly flipped) label is 1."""
    n = len(labels)
    stop = n if stop is None else stop
    w = context_window
    lo, hi = max(0, start - w), min(n, stop + w)  # the labels a ±w window around the range reads
    positions = np.arange(lo, hi)
    flipped = np.asarray(labels[lo:hi]).astype(bool)
    if error_rate > 0:
        flipped = flipped ^ (position_uniforms(positions, seed, "classifier_errors") < error_rate)
    flipped = flipped.astype(np.float64)
    # Zero labels stand in for positions beyond the stream's ends, as if it were padded with w
    # retain tokens on each side; the sums of 0/1 labels are exact, so every range agrees.
    left, right = w - (start - lo), w - (hi - stop)
    padded = np.concatenate([np.zeros(left + 1), flipped, np.zeros(right)])
    csum = np.cumsum(padded)
    m = stop - start
    window_mean = (csum[2 * w + 1: 2 * w + 1 + m] - csum[:m]) / (2 * w + 1)
    own = flipped[start - lo: start - lo + m]
    # Score levels are 0.5/(2w+1) apart; an offset below 0.9 of that breaks ties inside a level
    # without reordering levels or moving any token across 0.5. A token with no forget evidence at
    # all (its label and its whole window retain) keeps score 0, so no "filter x%" threshold can
    # reach it: there is nothing for a classifier to have seen.
    step = 0.5 / (2 * w + 1)
    evidence = (own + window_mean) > 0
    tie_break = np.where(evidence, 0.9 * step * position_uniforms(np.arange(start, stop), seed, "tie_break"), 0.0)
    return (0.5 * own + 0.5 * window_mean + tie_break).astype(np.float32)


def truth_document_scores(shard: TokenShard, docs: slice = slice(None), document_f1: float | None = None,
                          label_share: float | None = None, seed: int = 0) -> np.ndarray:
    """Each document's share of ground-truth forget text tokens (EOT not counted): a perfect
    document classifier; or, with ``document_f1``, that share plus Gaussian noise whose width is
    set so the documents flagged at ``label_share`` match the truth labels with that F1 (paper
    §5.3: the document probe's F1 is 0.92-0.94). Noise, unlike flipped decisions, errs where a
    real classifier does: on documents near the threshold."""
    share = shard.docs["n_forget"] / np.maximum(shard.docs["length"] - 1, 1)
    if document_f1 is not None:
        noise = position_normals(np.arange(len(share)), seed, "document_errors")
        sigma = document_noise_for_f1(share, noise, label_share, document_f1)
        share = np.clip(share + sigma * noise, 0.0, 1.0)
    return share[docs].astype(np.float32)


def document_noise_for_f1(share: np.ndarray, noise: np.ndarray, label_share: float, target_f1: float) -> float:
    """The noise width at which ``share + sigma·noise >= label_share`` has F1 ``target_f1`` against
    ``share >= label_share`` (bisection; F1 falls as the width grows)."""
    truth = share >= label_share

    def f1(sigma: float) -> float:
        flags = share + sigma * noise >= label_share
        tp = np.count_nonzero(flags & truth)
        return 2 * tp / max(1, np.count_nonzero(flags) + np.count_nonzero(truth))

    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f1(mid) > target_f1 else (lo, mid)
    return (lo + hi) / 2


# --- parts ---------------------------------------------------------------------------------------

def part_range(n_tokens: int, index: int, n_parts: int) -> tuple[int, int]:
    """Token range [start, stop) of part ``index`` (0-based) of ``n_parts`` equal parts."""
    if not 0 <= index < n_parts:
        raise ValueError(f"part {index} of {n_parts} does not exist")
    return n_tokens * index // n_parts, n_tokens * (index + 1) // n_parts


def _part_docs(shard: TokenShard, start: int, stop: int) -> slice:
    """The documents a part scores: those whose first token lies in its range."""
    starts = shard.docs["start"]
    return slice(int(np.searchsorted(starts, start, side="left")), int(np.searchsorted(starts, stop, side="left")))


def annotate_part(filter_spec: dict[str, Any], shard_dir: str | os.PathLike, index: int, n_parts: int, seed: int,
                  out_dir: str | os.PathLike, sources: dict[str, str] | None = None) -> dict[str, Any]:
    """Score part ``index`` of ``n_parts`` of the shard with the filter source ``filter_spec``.

    ``sources``: the files a trained source reads (kind ``classifier``: ``{"classifier": its
    directory}``; kind ``sae``: ``{"labeller": the labelling stage's labeller.json, "corpus": the
    corpus the shard was made from, "tokenizer": the pretraining tokenizer}``)."""
    shard = TokenShard.open(shard_dir)
    start, stop = part_range(shard.n_tokens, index, n_parts)
    docs = _part_docs(shard, start, stop)
    kind = filter_spec["kind"]
    if kind == "truth":
        if shard.labels is None:
            raise ConfigError(f"{shard_dir}: the truth filter needs ground-truth labels (built-in corpus only)")
        scores = truth_token_scores(shard.labels, filter_spec["context_window"], filter_spec["error_rate"], seed,
                                    start, stop)
        doc_scores = truth_document_scores(shard, docs, filter_spec.get("document_f1"), filter_spec.get("document_label_share"),
                                           seed)
    elif kind == "classifier":
        from tokenfilter.classify.annotate import score_range

        classifier = Path(_source(sources, "classifier", kind))
        scores, doc_scores = score_range(classifier.parent if classifier.is_file() else classifier, shard, start, stop)
    elif kind == "sae":
        from tokenfilter.label.pipeline import sae_score_range

        scores, doc_scores = sae_score_range(_source(sources, "labeller", kind), shard, _source(sources, "corpus", kind),
                                             _source(sources, "tokenizer", kind), start, stop)
    else:
        raise ConfigError(f"unknown filter kind {kind!r}; known: truth, classifier, sae")
    # End-of-text tokens are never forget text: keep their score at 0 whatever the source says,
    # so no threshold can remove or mask a document boundary (DESIGN §4 trap 4).
    scores[np.asarray(shard.tokens[start:stop]) == shard.meta["special_ids"]["eot"]] = 0.0
    meta = {"start": start, "stop": stop, "docs": [docs.start, docs.stop],
            "flagged_at_half": int(np.count_nonzero(scores >= 0.5))}
    with atomic_directory(out_dir) as tmp:
        scores.astype(np.float16).tofile(tmp / TOKEN_SCORES)
        save_array(tmp / DOC_SCORES, doc_scores)
        write_json(tmp / META, meta)
    return meta


def _source(sources: dict[str, str] | None, key: str, kind: str) -> str:
    if not sources or key not in sources:
        raise ConfigError(f"a filter of kind {kind!r} needs its {key!r} input")
    return sources[key]


def gather_parts(part_dirs: list[str | os.PathLike], shard_dir: str | os.PathLike, filter_spec: dict[str, Any],
                 out_dir: str | os.PathLike) -> dict[str, Any]:
    """Concatenate scored parts into one annotation; checks they tile the shard exactly."""
    shard = TokenShard.open(shard_dir)
    metas = [read_json(Path(d) / META) for d in part_dirs]
    order = np.argsort([m["start"] for m in metas], kind="stable")
    expected_token, expected_doc = 0, 0
    flagged = 0
    with atomic_directory(out_dir) as tmp:
        doc_parts = []
        with open(tmp / TOKEN_SCORES, "wb") as out:
            for i in order:
                meta, part = metas[i], Path(part_dirs[i])
                if meta["start"] != expected_token or meta["docs"][0] != expected_doc:
                    raise ValueError(f"{part}: annotation parts do not tile the shard (part starts at token "
                                     f"{meta['start']}, doc {meta['docs'][0]}; expected {expected_token}, {expected_doc})")
                out.write((part / TOKEN_SCORES).read_bytes())
                doc_parts.append(np.load(part / DOC_SCORES))
                expected_token, expected_doc = meta["stop"], meta["docs"][1]
                flagged += meta["flagged_at_half"]
        if expected_token != shard.n_tokens or expected_doc != len(shard.docs):
            raise ValueError(f"annotation parts cover {expected_token} of {shard.n_tokens} tokens and "
                             f"{expected_doc} of {len(shard.docs)} documents of {shard_dir}")
        save_array(tmp / DOC_SCORES, np.concatenate(doc_parts).astype(np.float32))
        meta = {
            "source": filter_spec["kind"],
            **{k: v for k, v in filter_spec.items() if k != "kind"},
            "parts": len(part_dirs),
            "flagged_at_half": flagged / max(shard.n_tokens, 1),
            "n_tokens": shard.n_tokens,
            "n_docs": int(len(shard.docs)),
        }
        if shard.labels is not None:
            meta["forget_token_fraction"] = float(np.asarray(shard.labels).mean())
        write_json(tmp / META, meta)
    return meta


def annotate(filter_spec: dict[str, Any], shard_dir: str | os.PathLike, out_dir: str | os.PathLike, seed: int,
             n_parts: int = 1, sources: dict[str, str] | None = None) -> dict[str, Any]:
    """Annotate a whole shard in this process (``n_parts`` parts, then gathered): what the
    workflow's scattered jobs do, for tests and tools."""
    out_dir = Path(out_dir)
    parts = [out_dir.with_name(f".{out_dir.name}.part{i}") for i in range(n_parts)]
    for i, part in enumerate(parts):
        annotate_part(filter_spec, shard_dir, i, n_parts, seed, part, sources)
    try:
        return gather_parts(parts, shard_dir, filter_spec, out_dir)
    finally:
        import shutil

        for part in parts:
            shutil.rmtree(part, ignore_errors=True)


def open_scores(annotation_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped token scores and the document scores of an annotation directory."""
    annotation_dir = Path(annotation_dir)
    token_scores = np.memmap(annotation_dir / TOKEN_SCORES, dtype=np.float16, mode="r")
    return token_scores, np.load(annotation_dir / DOC_SCORES)

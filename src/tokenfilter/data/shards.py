"""Token shards: a tokenised corpus as memory-mapped arrays on disk.

A shard directory holds

``tokens.bin``  token ids (uint16 if the vocabulary fits, else uint32), documents back to back,
                each followed by one end-of-text token (kept: DESIGN §4 trap 4)
``labels.bin``  uint8 per token, 1 where the token overlaps a ground-truth forget span
                (only when the truth is known, i.e. for the built-in world)
``ambiguous.bin`` uint8 per token, 1 where the token overlaps a word whose domain depends on
                context (built-in world: where a real classifier errs; the structured-error
                ablation reads it)
``docs.bin``    one record per document: doc_id, start, length (EOT included), n_forget
``meta.json``   dtypes, counts and the tokenizer's special ids

Tokenisation streams documents in batches and appends to the files, so memory stays flat in the
corpus size. The directory appears atomically: it is written beside its target and renamed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from tokenfilter.data.alignment import token_labels_from_spans
from tokenfilter.data.corpus import iter_corpus
from tokenfilter.io import atomic_directory, read_json, write_json
from tokenfilter.data.tokenizer import TextTokenizer

DOC_DTYPE = np.dtype([("doc_id", "<i8"), ("start", "<i8"), ("length", "<i8"), ("n_forget", "<i8")])


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


@dataclass
class TokenShard:
    """A read-only view of a shard directory; arrays are memory-mapped, not loaded."""

    directory: Path
    meta: dict
    tokens: np.ndarray
    docs: np.ndarray
    labels: np.ndarray | None
    ambiguous: np.ndarray | None = None

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "TokenShard":
        directory = Path(directory)
        meta = read_json(directory / "meta.json")
        n = meta["n_tokens"]
        tokens = _memmap(directory / "tokens.bin", np.dtype(meta["token_dtype"]), n)
        docs = _memmap(directory / "docs.bin", DOC_DTYPE, meta["n_docs"])
        labels = _memmap(directory / "labels.bin", np.uint8, n) if meta["has_labels"] else None
        ambiguous = _memmap(directory / "ambiguous.bin", np.uint8, n) if meta.get("has_ambiguous") else None
        return cls(directory, meta, tokens, docs, labels, ambiguous)

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    def doc_index_of(self, positions: np.ndarray) -> np.ndarray:
        """Index (into ``docs``) of the document each token position belongs to."""
        return np.searchsorted(self.docs["start"], positions, side="right") - 1

    def doc_ids_of(self, positions: np.ndarray) -> np.ndarray:
        return self.docs["doc_id"][self.doc_index_of(positions)]


def _memmap(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


def _batches(corpus_path: str | os.PathLike, split: str | None, batch_docs: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in iter_corpus(corpus_path, ["doc_id", "text", "forget_spans", "ambiguous"], split=split):
        batch.append(row)
        if len(batch) == batch_docs:
            yield batch
            batch = []
    if batch:
        yield batch


def tokenize_corpus(
    corpus_path: str | os.PathLike,
    tokenizer: TextTokenizer,
    out_dir: str | os.PathLike,
    split: str | None = None,
    max_doc_tokens: int | None = None,
    batch_docs: int = 512,
    progress: bool = True,
) -> dict:
    """Tokenise the documents of ``split`` (None: all) into a shard directory; returns its meta.

    Ground-truth labels are written if every document carries forget spans. A document longer
    than ``max_doc_tokens`` is truncated (its end-of-text token is still appended).
    """
    dtype = token_dtype(tokenizer.vocab_size)
    eot = tokenizer.eot_id
    n_tokens = n_docs = n_truncated = n_forget_total = 0
    has_labels: bool | None = None
    with atomic_directory(out_dir) as tmp_dir:
        with open(tmp_dir / "tokens.bin", "wb") as f_tokens, open(tmp_dir / "labels.bin", "wb") as f_labels, \
                open(tmp_dir / "ambiguous.bin", "wb") as f_ambiguous, open(tmp_dir / "docs.bin", "wb") as f_docs, \
                tqdm(desc=f"tokenise {Path(corpus_path).name}:{split or 'all'}", unit=" tok", unit_scale=True,
                     disable=not progress, mininterval=2.0) as bar:
            for batch in _batches(corpus_path, split, batch_docs):
                encoded = tokenizer.encode_batch([row["text"] for row in batch])
                if has_labels is None:
                    has_labels = batch[0]["forget_spans"] is not None
                for row in batch:
                    if (row["forget_spans"] is not None) != has_labels:
                        raise ValueError(f"{corpus_path}: document {row['doc_id']} has "
                                         f"{'no ' if has_labels else ''}forget_spans unlike the documents before "
                                         "it; a corpus has ground truth for all documents or for none")
                records = np.zeros(len(batch), dtype=DOC_DTYPE)
                token_parts, label_parts, ambiguous_parts = [], [], []
                for i, (row, (ids, offsets)) in enumerate(zip(batch, encoded)):
                    if max_doc_tokens is not None and len(ids) > max_doc_tokens:
                        ids, offsets = ids[:max_doc_tokens], offsets[:max_doc_tokens]
                        n_truncated += 1
                    token_parts += [ids, [eot]]
                    n_forget = 0
                    if has_labels:
                        labels = token_labels_from_spans(offsets, row["forget_spans"]).astype(np.uint8)
                        n_forget = int(labels.sum())
                        label_parts += [labels, [0]]
                        ambiguous = token_labels_from_spans(offsets, row.get("ambiguous") or []).astype(np.uint8)
                        ambiguous_parts += [ambiguous, [0]]
                    records[i] = (row["doc_id"], n_tokens, len(ids) + 1, n_forget)
                    n_tokens += len(ids) + 1
                    n_forget_total += n_forget
                f_tokens.write(np.concatenate(token_parts).astype(dtype).tobytes())
                if has_labels:
                    f_labels.write(np.concatenate(label_parts).astype(np.uint8).tobytes())
                    f_ambiguous.write(np.concatenate(ambiguous_parts).astype(np.uint8).tobytes())
                f_docs.write(records.tobytes())
                n_docs += len(batch)
                bar.update(int(sum(r["length"] for r in records)))
        if not has_labels:
            (tmp_dir / "labels.bin").unlink()
            (tmp_dir / "ambiguous.bin").unlink()
        meta = {
            "n_tokens": n_tokens,
            "n_docs": n_docs,
            "n_forget_tokens": n_forget_total,
            "token_dtype": dtype.str,
            "has_labels": bool(has_labels),
            "has_ambiguous": bool(has_labels),
            "max_doc_tokens": max_doc_tokens,
            "n_truncated": n_truncated,
            "vocab_size": tokenizer.vocab_size,
            "special_ids": tokenizer.special_ids,
            "corpus": str(corpus_path),
            "split": split,
        }
        write_json(tmp_dir / "meta.json", meta)
    return meta


def write_documents(shard: TokenShard, doc_indices: np.ndarray, out_dir: str | os.PathLike,
                    chunk_docs: int = 4096, **meta_extra) -> dict:
    """A new shard of ``shard``'s documents ``doc_indices`` (indices into ``shard.docs``, in this
    order, repeats allowed), with their tokens, labels and document records; returns its meta.
    Documents keep their doc_id (a repeated document appears under the same id)."""
    doc_indices = np.asarray(doc_indices, dtype=np.int64)
    if len(doc_indices) and not 0 <= doc_indices.min() <= doc_indices.max() < len(shard.docs):
        raise ValueError(f"document indices out of range for {shard.directory} ({len(shard.docs)} documents)")
    arrays = {"tokens.bin": shard.tokens}
    if shard.labels is not None:
        arrays["labels.bin"] = shard.labels
    if shard.ambiguous is not None:
        arrays["ambiguous.bin"] = shard.ambiguous
    n_tokens = n_forget = 0
    with atomic_directory(out_dir) as tmp_dir:
        files = {name: open(tmp_dir / name, "wb") for name in arrays}
        try:
            with open(tmp_dir / "docs.bin", "wb") as f_docs:
                for lo in range(0, len(doc_indices), chunk_docs):
                    picked = shard.docs[doc_indices[lo:lo + chunk_docs]]
                    records = np.array(picked, dtype=DOC_DTYPE)
                    records["start"] = n_tokens + np.concatenate([[0], np.cumsum(picked["length"])[:-1]])
                    for name, array in arrays.items():
                        files[name].write(np.concatenate([np.asarray(array[s:s + n]) for s, n in
                                                          zip(picked["start"], picked["length"])]).tobytes())
                    f_docs.write(records.tobytes())
                    n_tokens += int(picked["length"].sum())
                    n_forget += int(picked["n_forget"].sum())
        finally:
            for f in files.values():
                f.close()
        meta = {**shard.meta, "n_tokens": n_tokens, "n_docs": len(doc_indices), "n_forget_tokens": n_forget,
                "source_shard": str(shard.directory), **meta_extra}
        write_json(tmp_dir / "meta.json", meta)
    return meta

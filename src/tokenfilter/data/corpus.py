"""The corpus record format shared by every corpus source, and its streaming parquet I/O.

A corpus is a parquet file of documents. Every source (the built-in synthetic world, a Hugging
Face dataset, local files) writes the same columns, so later stages never care where text came
from:

=============  ==========================  ==================================================
column         type                        meaning
=============  ==========================  ==================================================
doc_id         int64                       position of the document in the corpus (stable)
source_id      string                      where it came from (``file:line``, dataset row, ...)
text           string                      the document text
domain         string                      one of ``DOCUMENT_DOMAINS``
split          string                      ``train`` or ``val`` (assigned by document)
kind           string                      document kind of the built-in world ("" otherwise)
forget_spans   list<list<int64>>, or null  ground-truth forget character spans [start, end)
doc_label      bool, or null               ground-truth document label (forget document?)
subdomain      string, or null             forget sub-domain of the document's medical text
ambiguous      list<list<int64>>, or null  character spans of words whose domain depends on
                                           context (where a real classifier errs)
=============  ==========================  ==================================================

``forget_spans``, ``doc_label``, ``subdomain`` and ``ambiguous`` are null where the truth is
unknown (real corpora).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from tokenfilter import DOMAINS
from tokenfilter.io import atomic_path

# A document's domain: one of the three eval domains, ``mixed`` (several domains in one document,
# as in the built-in world) or ``unknown`` (real web text whose domain nobody labelled).
DOCUMENT_DOMAINS = (*DOMAINS, "mixed", "unknown")

SCHEMA = pa.schema(
    [
        ("doc_id", pa.int64()),
        ("source_id", pa.string()),
        ("text", pa.string()),
        ("domain", pa.string()),
        ("split", pa.string()),
        ("kind", pa.string()),
        ("forget_spans", pa.list_(pa.list_(pa.int64()))),
        ("doc_label", pa.bool_()),
        ("subdomain", pa.string()),
        ("ambiguous", pa.list_(pa.list_(pa.int64()))),
    ]
)


def assign_split(key: str | int, val_fraction: float, seed: int) -> str:
    """Deterministic train/val assignment of one document, independent of corpus order."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64
    return "val" if u < val_fraction else "train"


def text_hash(text: str) -> str:
    """Hash of whitespace-normalised text, used to check that derived sets are disjoint."""
    normalised = " ".join(text.split()).lower()
    return hashlib.blake2b(normalised.encode("utf-8"), digest_size=12).hexdigest()


class CorpusWriter:
    """Append documents to a parquet corpus with bounded memory; the file appears atomically.

    Use as a context manager; the output only replaces ``path`` if the block exits cleanly.
    """

    def __init__(self, path: str | os.PathLike, rows_per_group: int = 2048):
        self.path = Path(path)
        self.rows_per_group = rows_per_group
        self._buffer: list[dict[str, Any]] = []
        self._atomic = None
        self._writer: pq.ParquetWriter | None = None
        self.n_docs = 0

    def __enter__(self) -> "CorpusWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(tmp, SCHEMA, compression="zstd")
        return self

    def write(self, record: dict[str, Any]) -> None:
        self._buffer.append(record)
        self.n_docs += 1
        if len(self._buffer) >= self.rows_per_group:
            self._flush()

    def write_all(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def _flush(self) -> None:
        if self._buffer:
            table = pa.Table.from_pylist(self._buffer, schema=SCHEMA)
            self._writer.write_table(table)
            self._buffer = []

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._flush()
            self._writer.close()
        finally:
            self._atomic.__exit__(exc_type, exc, tb)
        return False


def make_record(
    doc_id: int,
    text: str,
    *,
    source_id: str = "",
    domain: str = "unknown",
    split: str = "train",
    kind: str = "",
    forget_spans: Sequence[Sequence[int]] | None = None,
    doc_label: bool | None = None,
    subdomain: str | None = None,
    ambiguous: Sequence[Sequence[int]] | None = None,
) -> dict[str, Any]:
    return {
        "doc_id": int(doc_id),
        "source_id": source_id,
        "text": text,
        "domain": domain,
        "split": split,
        "kind": kind,
        "forget_spans": None if forget_spans is None else [[int(s), int(e)] for s, e in forget_spans],
        "doc_label": doc_label,
        "subdomain": subdomain,
        "ambiguous": None if ambiguous is None else [[int(s), int(e)] for s, e in ambiguous],
    }


def write_corpus(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write records to a corpus file; returns the number of documents."""
    with CorpusWriter(path) as writer:
        writer.write_all(records)
    return writer.n_docs


def iter_corpus(
    path: str | os.PathLike,
    columns: Sequence[str] | None = None,
    batch_size: int = 1024,
    split: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Stream the documents of a corpus file as dicts, optionally only one split."""
    parquet = pq.ParquetFile(path)
    wanted = list(columns) if columns is not None else None
    if wanted is not None and split is not None and "split" not in wanted:
        wanted.append("split")
    for batch in parquet.iter_batches(batch_size=batch_size, columns=wanted):
        for row in batch.to_pylist():
            if split is None or row["split"] == split:
                yield row


def read_corpus(path: str | os.PathLike, columns: Sequence[str] | None = None):
    """Read a whole (small) corpus file into a pandas DataFrame."""
    return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()

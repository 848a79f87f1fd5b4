"""Real-corpus sources: turn external text (a Hugging Face dataset, local files) into a corpus.

Two source kinds feed the same corpus parquet (see :mod:`tokenfilter.data.corpus`), so every later
stage treats real text exactly like the built-in synthetic world:

``huggingface``
    A spec dict ``{name, config, split, text_field, max_docs, domain}``. ``name`` is a hub id
    (e.g. ``HuggingFaceFW/fineweb-edu`` with config ``sample-100BT``) or a local dataset
    directory of jsonl / parquet files. The dataset is *streamed*, so a 100B-token dataset costs
    no disk and ``max_docs`` stops the download early. ``source_id`` is ``name:split:row``
    (row 0-based, as in the dataset).

``files``
    A list of ``{glob, domain, text_field}`` entries. Globs are relative to the working
    directory and their matches are sorted, so the corpus does not depend on directory order.
    ``.jsonl`` (one object per line; a record's own ``domain`` overrides the entry's),
    ``.parquet`` (a text column, optional ``domain`` column) and ``.txt`` (the whole file is one
    document) are understood. ``source_id`` is ``path:line`` (1-based line, or 1-based parquet
    row; ``path:1`` for a ``.txt`` file).

Real data is dirty. Every bad record is either a hard :class:`~tokenfilter.errors.InputError`
naming file and line (``on_bad_record="error"``, the default: a user should see the problem
before training on it) or, with ``on_bad_record="skip"``, a logged warning counted by reason
and reported in the ingest summary. Nothing is ever dropped silently.
"""

from __future__ import annotations

import collections
import dataclasses
import glob as globlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tokenfilter.data.corpus import DOCUMENT_DOMAINS, CorpusWriter, assign_split, make_record
from tokenfilter.errors import ConfigError, InputError
from tokenfilter.io import write_json

logger = logging.getLogger("tokenfilter.data.sources")

SOURCES = ("huggingface", "files")
ON_BAD_RECORD = ("error", "skip")
FILE_FORMATS = (".jsonl", ".parquet", ".txt")

_HF_KEYS = {"name", "config", "split", "text_field", "max_docs", "domain"}
_FILES_KEYS = {"glob", "domain", "text_field"}
_PARQUET_BATCH = 1024
_BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark some editors write; not part of the text


@dataclasses.dataclass(frozen=True)
class RawDocument:
    """One document as a source yields it, before it gets a doc_id and a split."""

    text: str
    domain: str
    source_id: str


@dataclasses.dataclass(frozen=True)
class _BadRecord:
    """A bad record found by a reader; the caller decides whether it is fatal or skipped.

    Readers yield these instead of raising so that, in skip mode, reading continues after the
    bad record in the same file.
    """

    path: str
    line: int | None
    reason: str  # short key counted in the summary, e.g. "malformed_json"
    problem: str  # human message, e.g. "malformed JSON: Expecting value ..."


# --------------------------------------------------------------------------------------------
# Public API


def iter_documents(
    source: str,
    spec: Any,
    *,
    on_bad_record: str = "error",
    skipped: collections.Counter | None = None,
) -> Iterator[RawDocument]:
    """Stream the documents of a source in a deterministic order.

    The spec and options are validated (and file globs resolved) *now*, not on the first
    ``next()``, so a broken config fails before any output is opened. Bad records raise
    :class:`InputError`, or with ``on_bad_record="skip"`` are logged and counted in ``skipped``
    (by reason) and reading goes on.
    """
    if source not in SOURCES:
        raise ConfigError(f"source: unknown source {source!r}; allowed: {', '.join(SOURCES)}")
    if on_bad_record not in ON_BAD_RECORD:
        raise ConfigError(
            f"on_bad_record: unknown value {on_bad_record!r}; allowed: {', '.join(ON_BAD_RECORD)}"
        )
    if source == "huggingface":
        items = _iter_huggingface(_check_hf_spec(spec))
    else:
        items = _iter_files(_resolve_files_spec(spec))
    return _handle_bad(
        items, on_bad_record, skipped if skipped is not None else collections.Counter()
    )


def ingest(
    source: str,
    spec: Any,
    out_path: str | os.PathLike,
    *,
    val_fraction: float,
    seed: int,
    on_bad_record: str = "error",
    max_doc_chars: int | None = None,
    summary_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Stream a source into a corpus parquet at ``out_path`` and return a summary.

    Memory stays bounded (documents are written in row groups as they stream by). doc_ids are
    0..n-1 in stream order and the split is a hash of the doc_id, so equal inputs give an equal
    corpus. Ground truth is unknown for real text: ``forget_spans`` and ``doc_label`` are null.
    ``max_doc_chars`` truncates longer documents (counted as ``n_truncated``) so one huge file
    cannot dominate a batch or memory downstream. The corpus and the summary appear atomically:
    if anything fails, no partial file exists and an older ``out_path`` is left untouched.
    """
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not (0.0 <= val_fraction <= 1.0)
    ):
        raise ConfigError(f"val_fraction: must be a number in [0, 1], got {val_fraction!r}")
    if max_doc_chars is not None and (
        isinstance(max_doc_chars, bool) or not isinstance(max_doc_chars, int) or max_doc_chars < 1
    ):
        raise ConfigError(
            f"max_doc_chars: must be a positive integer or null, got {max_doc_chars!r}"
        )

    skipped: collections.Counter = collections.Counter()
    documents = iter_documents(source, spec, on_bad_record=on_bad_record, skipped=skipped)
    domains: collections.Counter = collections.Counter()
    n_chars = n_train = n_val = n_truncated = 0
    with CorpusWriter(out_path) as writer:
        for doc_id, doc in enumerate(documents):
            text = doc.text
            if max_doc_chars is not None and len(text) > max_doc_chars:
                text = text[:max_doc_chars]
                n_truncated += 1
            split = assign_split(doc_id, val_fraction, seed)
            writer.write(
                make_record(
                    doc_id,
                    text,
                    source_id=doc.source_id,
                    domain=doc.domain,
                    split=split,
                    kind="",
                    forget_spans=None,
                    doc_label=None,
                )
            )
            n_chars += len(text)
            domains[doc.domain] += 1
            if split == "train":
                n_train += 1
            else:
                n_val += 1
    summary = {
        "source": source,
        "n_docs": writer.n_docs,
        "n_chars": n_chars,
        "n_train": n_train,
        "n_val": n_val,
        "n_truncated": n_truncated,
        "skipped": dict(sorted(skipped.items())),
        "domains": dict(sorted(domains.items())),
    }
    if summary_path is not None:
        write_json(summary_path, summary)
    return summary


# --------------------------------------------------------------------------------------------
# Bad-record policy


def _handle_bad(
    items: Iterable[RawDocument | _BadRecord], on_bad_record: str, skipped: collections.Counter
) -> Iterator[RawDocument]:
    for item in items:
        if isinstance(item, RawDocument):
            yield item
            continue
        if on_bad_record == "error":
            raise InputError(item.path, item.line, item.problem)
        where = f"{item.path}:{item.line}" if item.line is not None else item.path
        logger.warning("skipping bad record %s: %s", where, item.problem)
        skipped[item.reason] += 1


def _check_domain(domain: Any, where: str) -> None:
    if domain not in DOCUMENT_DOMAINS:
        raise ConfigError(
            f"{where}: unknown domain {domain!r}; allowed: {', '.join(DOCUMENT_DOMAINS)}"
        )


def _check_text(text: Any, text_field: str, path: str, line: int | None) -> _BadRecord | None:
    """Return why ``text`` is not a usable document, or None if it is."""
    if text is None:
        return _BadRecord(path, line, "missing_text", f"missing text field {text_field!r}")
    if not isinstance(text, str):
        return _BadRecord(
            path,
            line,
            "missing_text",
            f"text field {text_field!r} is not a string (got {type(text).__name__})",
        )
    if not text.strip():
        return _BadRecord(path, line, "empty_text", "empty text")
    try:
        # JSON may carry lone surrogates ("\ud800") that parquet cannot store; catch them here,
        # where the line is known, rather than as an anonymous failure at write time.
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return _BadRecord(path, line, "invalid_unicode", f"text is not valid Unicode: {e.reason}")
    return None


def _record_domain(value: Any, default: str, path: str, line: int | None) -> str | _BadRecord:
    if value is None:
        return default
    if value not in DOCUMENT_DOMAINS:
        return _BadRecord(
            path,
            line,
            "unknown_domain",
            f"unknown domain {value!r}; allowed: {', '.join(DOCUMENT_DOMAINS)}",
        )
    return value


def _check_keys(spec: Any, allowed: set[str], label: str) -> None:
    """A source spec must be a mapping with only the keys its kind knows."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{label}: must be a mapping, got {type(spec).__name__}")
    unknown = set(spec) - allowed
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


# --------------------------------------------------------------------------------------------
# Hugging Face


def _check_hf_spec(spec: Any) -> dict[str, Any]:
    _check_keys(spec, _HF_KEYS, "huggingface source: spec")
    name = spec.get("name")
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise ConfigError(
            f"huggingface source: 'name' must be a dataset id or directory, got {name!r}"
        )
    checked = {
        "name": str(name),
        "config": spec.get("config"),
        "split": spec.get("split") or "train",
        "text_field": spec.get("text_field") or "text",
        "max_docs": spec.get("max_docs"),
        "domain": spec.get("domain") or "unknown",
    }
    max_docs = checked["max_docs"]
    if max_docs is not None and (
        isinstance(max_docs, bool) or not isinstance(max_docs, int) or max_docs < 0
    ):
        raise ConfigError(
            f"huggingface source: 'max_docs' must be a non-negative integer or null, got {max_docs!r}"
        )
    _check_domain(checked["domain"], "huggingface source: domain")
    return checked


def _iter_huggingface(spec: dict[str, Any]) -> Iterator[RawDocument | _BadRecord]:
    import datasets  # heavy import; only pay for it when this source is used

    name, split, text_field = spec["name"], spec["split"], spec["text_field"]
    max_docs, domain = spec["max_docs"], spec["domain"]
    where = f"{name}:{split}"
    if max_docs == 0:
        return
    try:
        dataset = datasets.load_dataset(name, spec["config"], split=split, streaming=True)
    except Exception as e:
        raise ConfigError(
            f"huggingface source: cannot load dataset {name!r} (config {spec['config']!r}, "
            f"split {split!r}): {type(e).__name__}: {e}"
        ) from e
    n_yielded = 0
    for row_index, row in enumerate(dataset):
        bad = _check_text(row.get(text_field), text_field, where, row_index)
        if bad is not None:
            yield bad
            continue
        yield RawDocument(row[text_field], domain, f"{name}:{split}:{row_index}")
        n_yielded += 1
        if max_docs is not None and n_yielded >= max_docs:
            return


# --------------------------------------------------------------------------------------------
# Local files


def _resolve_files_spec(spec: Any) -> list[tuple[str, str, str]]:
    """Validate the entries and expand their globs into (path, domain, text_field) triples.

    Done eagerly so a glob that matches nothing, an unsupported extension or a file matched by
    two entries (which would duplicate its documents) fails before anything is written.
    """
    if isinstance(spec, Mapping) or not isinstance(spec, (list, tuple)) or not spec:
        raise ConfigError(
            "files source: spec must be a non-empty list of {glob, domain, text_field} entries"
        )
    resolved: list[tuple[str, str, str]] = []
    owner: dict[str, str] = {}
    for i, entry in enumerate(spec):
        label = f"files source: entry {i}"
        _check_keys(entry, _FILES_KEYS, label)
        pattern = entry.get("glob")
        if not isinstance(pattern, (str, os.PathLike)) or not str(pattern):
            raise ConfigError(f"{label}: 'glob' must be a non-empty string, got {pattern!r}")
        pattern = str(pattern)
        domain = entry.get("domain") or "unknown"
        _check_domain(domain, f"{label} (glob {pattern!r}): domain")
        text_field = entry.get("text_field") or "text"
        if not isinstance(text_field, str):
            raise ConfigError(f"{label}: 'text_field' must be a string, got {text_field!r}")
        paths = sorted(p for p in globlib.glob(pattern, recursive=True) if os.path.isfile(p))
        if not paths:
            raise ConfigError(
                f"{label}: glob {pattern!r} matches no file (relative to {os.getcwd()})"
            )
        for path in paths:
            if Path(path).suffix.lower() not in FILE_FORMATS:
                raise ConfigError(
                    f"{label}: glob {pattern!r} matches {path!r}, which is not one of "
                    f"{', '.join(FILE_FORMATS)}"
                )
            key = os.path.realpath(path)
            if key in owner:
                raise ConfigError(
                    f"{label}: glob {pattern!r} matches {path!r}, already matched by glob "
                    f"{owner[key]!r}; its documents would be ingested twice"
                )
            owner[key] = pattern
            resolved.append((path, domain, text_field))
    return resolved


def _iter_files(resolved: list[tuple[str, str, str]]) -> Iterator[RawDocument | _BadRecord]:
    readers = {".jsonl": _read_jsonl, ".parquet": _read_parquet, ".txt": _read_txt}
    for path, domain, text_field in resolved:
        yield from readers[Path(path).suffix.lower()](path, domain, text_field)


def _read_jsonl(path: str, domain: str, text_field: str) -> Iterator[RawDocument | _BadRecord]:
    # Binary, line by line: a bad byte is attributed to its own line and the rest of the file
    # is still readable in skip mode (a text-mode read would fail for the whole file).
    with open(path, "rb") as f:
        for line, raw in enumerate(f, start=1):
            if line == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield _BadRecord(
                    path,
                    line,
                    "not_utf8",
                    f"undecodable bytes (not UTF-8) at byte {e.start} of the line: {e.reason}",
                )
                continue
            if not decoded.strip():
                continue  # blank lines separate nothing and hold no record
            try:
                record = json.loads(decoded.strip())
            except json.JSONDecodeError as e:
                yield _BadRecord(path, line, "malformed_json", f"malformed JSON: {e}")
                continue
            if not isinstance(record, dict):
                yield _BadRecord(
                    path,
                    line,
                    "malformed_json",
                    f"malformed JSON: expected an object, got {type(record).__name__}",
                )
                continue
            bad = _check_text(record.get(text_field), text_field, path, line)
            if bad is not None:
                yield bad
                continue
            doc_domain = _record_domain(record.get("domain"), domain, path, line)
            if isinstance(doc_domain, _BadRecord):
                yield doc_domain
                continue
            yield RawDocument(record[text_field], doc_domain, f"{path}:{line}")


def _read_parquet(path: str, domain: str, text_field: str) -> Iterator[RawDocument | _BadRecord]:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as e:
        raise InputError(path, None, f"unreadable parquet file: {type(e).__name__}: {e}") from e
    names = parquet.schema_arrow.names
    # A missing column is a file-level mistake (usually a wrong text_field), not a bad row:
    # always an error, since skipping would discard the whole file row by row.
    if text_field not in names:
        raise InputError(
            path, None, f"missing text field {text_field!r} (columns: {', '.join(names)})"
        )
    columns = [text_field] + (["domain"] if "domain" in names else [])
    row = 0
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, columns=columns):
        texts = batch.column(text_field).to_pylist()
        doms = batch.column("domain").to_pylist() if "domain" in columns else [None] * len(texts)
        for text, dom in zip(texts, doms):
            row += 1
            bad = _check_text(text, text_field, path, row)
            if bad is not None:
                yield bad
                continue
            doc_domain = _record_domain(dom, domain, path, row)
            if isinstance(doc_domain, _BadRecord):
                yield doc_domain
                continue
            yield RawDocument(text, doc_domain, f"{path}:{row}")


def _read_txt(path: str, domain: str, text_field: str) -> Iterator[RawDocument | _BadRecord]:
    del text_field  # a .txt file is all text
    data = Path(path).read_bytes()
    data = data.removeprefix(_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        yield _BadRecord(path, line, "not_utf8", f"undecodable bytes (not UTF-8): {e.reason}")
        return
    if not text.strip():
        yield _BadRecord(path, 1, "empty_text", "empty text")
        return
    yield RawDocument(text, domain, f"{path}:1")

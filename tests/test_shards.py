"""Token shards: memmap round trip, labels, streaming independence, truncation, atomicity."""

from __future__ import annotations

import filecmp
import os

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import numpy as np
import pytest

from tokenfilter.data.alignment import token_labels_from_spans
from tokenfilter.data.corpus import make_record, read_corpus, write_corpus
from tokenfilter.data.shards import DOC_DTYPE, TokenShard, tokenize_corpus
from tokenfilter.data.synthetic.build import SyntheticParams, default_outputs, generate_synthetic
from tokenfilter.data.tokenizer import build_tokenizer

FILES = ("tokens.bin", "labels.bin", "docs.bin", "ambiguous.bin")

EDGE_TEXTS = [
    "A plain document.",
    "",  # an empty document still gets its end-of-text token
    "A document quoting <|endoftext|> and <|hidden|> literally.",
    "Non-ASCII: café, Zürich, 日本語のテキスト, emoji 😀🧬.",
    "Trailing whitespace and\n\nparagraphs.   ",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    out = default_outputs(root / "data")
    generate_synthetic(SyntheticParams.from_config({"n_docs": 300, "n_eval_docs": 5}), seed=11, val_fraction=0.2, out=out)
    corpus = read_corpus(out["corpus"])
    tok = build_tokenizer("train", list(corpus["text"]) + EDGE_TEXTS, vocab_size=512)
    shard_dir = root / "tokens" / "all"
    meta = tokenize_corpus(out["corpus"], tok, shard_dir, progress=False)
    return {"root": root, "corpus_path": out["corpus"], "corpus": corpus, "tok": tok, "dir": shard_dir, "meta": meta}


def _spans(row):
    spans = row["forget_spans"]
    return [] if spans is None else [list(s) for s in spans]


def test_round_trip_tokens_labels_docs(world):
    tok, corpus, meta = world["tok"], world["corpus"], world["meta"]
    shard = TokenShard.open(world["dir"])
    assert shard.meta == meta
    assert meta["has_labels"] and shard.labels is not None
    assert meta["n_docs"] == len(corpus) == len(shard.docs)
    assert shard.tokens.dtype == np.dtype("<u2")
    assert os.path.getsize(world["dir"] / "tokens.bin") == meta["n_tokens"] * 2
    assert os.path.getsize(world["dir"] / "labels.bin") == meta["n_tokens"]
    assert os.path.getsize(world["dir"] / "docs.bin") == meta["n_docs"] * DOC_DTYPE.itemsize
    docs = shard.docs
    np.testing.assert_array_equal(docs["doc_id"], corpus["doc_id"].to_numpy())
    # Documents lie back to back and fill the token stream.
    assert docs["start"][0] == 0
    np.testing.assert_array_equal(docs["start"][1:], (docs["start"] + docs["length"])[:-1])
    assert int(docs["length"].sum()) == meta["n_tokens"] == shard.n_tokens
    # The EOT id occurs exactly at the last position of every document, nowhere else.
    eot_positions = np.flatnonzero(np.asarray(shard.tokens) == tok.eot_id)
    np.testing.assert_array_equal(eot_positions, docs["start"] + docs["length"] - 1)

    encoded = tok.encode_batch(list(corpus["text"]))
    for rec, (_, row), (ids, offsets) in zip(docs, corpus.iterrows(), encoded):
        start, length = int(rec["start"]), int(rec["length"])
        body = np.asarray(shard.tokens[start:start + length - 1], dtype=np.int64)
        assert tok.decode(body) == row["text"]
        np.testing.assert_array_equal(body, ids)
        assert shard.tokens[start + length - 1] == tok.eot_id
        expected = token_labels_from_spans(offsets, _spans(row)).astype(np.uint8)
        np.testing.assert_array_equal(shard.labels[start:start + length - 1], expected)
        assert shard.labels[start + length - 1] == 0  # the EOT token is never forget
        assert rec["n_forget"] == expected.sum()
    assert meta["n_forget_tokens"] == int(docs["n_forget"].sum()) == int(np.asarray(shard.labels).sum())
    assert meta["n_forget_tokens"] > 0
    assert meta["n_truncated"] == 0 and meta["max_doc_tokens"] is None
    assert meta["special_ids"] == tok.special_ids and meta["vocab_size"] == tok.vocab_size


@pytest.mark.parametrize("batch_docs", [1, 3, 7])
def test_streaming_is_batch_size_independent(world, tmp_path, batch_docs):
    out = tmp_path / "small_batches"
    meta = tokenize_corpus(world["corpus_path"], world["tok"], out, batch_docs=batch_docs, progress=False)
    assert meta == world["meta"]
    for name in (*FILES, "meta.json"):
        assert filecmp.cmp(out / name, world["dir"] / name, shallow=False), name


def test_max_doc_tokens_truncates_and_keeps_eot(world, tmp_path):
    tok = world["tok"]
    limit = 20
    meta = tokenize_corpus(world["corpus_path"], tok, tmp_path / "trunc", max_doc_tokens=limit, progress=False)
    shard = TokenShard.open(tmp_path / "trunc")
    full = TokenShard.open(world["dir"])
    full_lengths = full.docs["length"] - 1
    assert meta["max_doc_tokens"] == limit
    assert meta["n_truncated"] == int((full_lengths > limit).sum()) > 0
    np.testing.assert_array_equal(shard.docs["length"] - 1, np.minimum(full_lengths, limit))
    assert meta["n_tokens"] == int(shard.docs["length"].sum())
    for rec, frec in zip(shard.docs, full.docs):
        s, n, fs = int(rec["start"]), int(rec["length"]), int(frec["start"])
        np.testing.assert_array_equal(shard.tokens[s:s + n - 1], full.tokens[fs:fs + n - 1])
        np.testing.assert_array_equal(shard.labels[s:s + n - 1], full.labels[fs:fs + n - 1])
        assert shard.tokens[s + n - 1] == tok.eot_id and shard.labels[s + n - 1] == 0
        assert rec["n_forget"] == int(shard.labels[s:s + n].sum())
    assert meta["n_forget_tokens"] == int(shard.docs["n_forget"].sum())


@pytest.mark.parametrize("split", ["train", "val"])
def test_split_filter(world, tmp_path, split):
    corpus = world["corpus"]
    meta = tokenize_corpus(world["corpus_path"], world["tok"], tmp_path / split, split=split, progress=False)
    shard = TokenShard.open(tmp_path / split)
    wanted = corpus.loc[corpus["split"] == split, "doc_id"].to_numpy()
    assert 0 < len(wanted) < len(corpus)
    np.testing.assert_array_equal(shard.docs["doc_id"], wanted)
    assert meta["split"] == split and meta["n_docs"] == len(wanted)
    # Each split document's tokens are the same as in the all-splits shard.
    full = TokenShard.open(world["dir"])
    index = {int(d): i for i, d in enumerate(full.docs["doc_id"])}
    for rec in shard.docs[:25]:
        f = full.docs[index[int(rec["doc_id"])]]
        assert rec["length"] == f["length"] and rec["n_forget"] == f["n_forget"]
        np.testing.assert_array_equal(shard.tokens[rec["start"]:rec["start"] + rec["length"]],
                                      full.tokens[f["start"]:f["start"] + f["length"]])


def test_unlabelled_corpus_writes_no_labels(world, tmp_path):
    tok = world["tok"]
    corpus = tmp_path / "real.parquet"
    write_corpus(corpus, (make_record(i, t, source_id=f"f:{i}") for i, t in enumerate(EDGE_TEXTS)))
    meta = tokenize_corpus(corpus, tok, tmp_path / "out", batch_docs=2, progress=False)
    assert meta["has_labels"] is False and meta["n_forget_tokens"] == 0
    assert not (tmp_path / "out" / "labels.bin").exists()
    shard = TokenShard.open(tmp_path / "out")
    assert shard.labels is None
    assert list(shard.docs["n_forget"]) == [0] * len(EDGE_TEXTS)
    # Literal special-token strings in text never become document boundaries.
    eot_positions = np.flatnonzero(np.asarray(shard.tokens) == tok.eot_id)
    np.testing.assert_array_equal(eot_positions, shard.docs["start"] + shard.docs["length"] - 1)
    assert tok.hidden_id not in set(np.asarray(shard.tokens).tolist())
    for rec, text in zip(shard.docs, EDGE_TEXTS):
        body = shard.tokens[rec["start"]:rec["start"] + rec["length"] - 1]
        assert tok.decode(np.asarray(body, dtype=np.int64)) == text
    assert shard.docs["length"][1] == 1  # the empty document: just its EOT


def test_failure_midway_leaves_nothing_behind(world, tmp_path, monkeypatch):
    tok = world["tok"]
    real = tok.encode_batch
    calls = {"n": 0}

    def flaky(texts):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("tokenizer died on batch 2")
        return real(texts)

    monkeypatch.setattr(tok, "encode_batch", flaky)
    parent = tmp_path / "tokens"
    with pytest.raises(RuntimeError, match="batch 2"):
        tokenize_corpus(world["corpus_path"], tok, parent / "train", batch_docs=3, progress=False)
    assert calls["n"] == 2
    assert not (parent / "train").exists()
    assert list(parent.iterdir()) == []  # no temporary directory either


def test_failure_keeps_previous_output(world, tmp_path, monkeypatch):
    tok = world["tok"]
    out = tmp_path / "train"
    tokenize_corpus(world["corpus_path"], tok, out, progress=False)
    before = {name: (out / name).read_bytes() for name in (*FILES, "meta.json")}

    def broken(texts):
        raise KeyboardInterrupt  # a killed job, not only an exception

    monkeypatch.setattr(tok, "encode_batch", broken)
    with pytest.raises(KeyboardInterrupt):
        tokenize_corpus(world["corpus_path"], tok, out, progress=False)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]


def test_rerun_replaces_output_directory(world, tmp_path):
    out = tmp_path / "train"
    out.mkdir()
    (out / "stale.bin").write_bytes(b"old")
    tokenize_corpus(world["corpus_path"], world["tok"], out, split="val", progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, "meta.json"])


def test_doc_ids_of_maps_positions(world):
    shard = TokenShard.open(world["dir"])
    owner = np.repeat(shard.docs["doc_id"], shard.docs["length"])
    assert len(owner) == shard.n_tokens
    rng = np.random.default_rng(0)
    positions = np.concatenate([
        rng.integers(0, shard.n_tokens, size=2000),
        shard.docs["start"],  # first token of each document
        shard.docs["start"] + shard.docs["length"] - 1,  # its EOT
        [0, shard.n_tokens - 1],
    ])
    np.testing.assert_array_equal(shard.doc_ids_of(positions), owner[positions])
    np.testing.assert_array_equal(shard.doc_index_of(shard.docs["start"]), np.arange(len(shard.docs)))


def test_empty_selection(world, tmp_path):
    meta = tokenize_corpus(world["corpus_path"], world["tok"], tmp_path / "none", split="nope", progress=False)
    assert meta["n_docs"] == 0 and meta["n_tokens"] == 0
    shard = TokenShard.open(tmp_path / "none")
    assert len(shard.tokens) == 0 and len(shard.docs) == 0


def _half_labelled_corpus(path):
    write_corpus(path, [
        make_record(0, "a medical sentence here.", forget_spans=[(2, 9)], doc_label=True),
        make_record(1, "an unlabelled web page."),
    ])


def test_mixed_label_presence_rejected_across_batches(world, tmp_path):
    _half_labelled_corpus(tmp_path / "c.parquet")
    with pytest.raises(ValueError, match="ground truth for all documents or for none"):
        tokenize_corpus(tmp_path / "c.parquet", world["tok"], tmp_path / "out", batch_docs=1, progress=False)
    assert not (tmp_path / "out").exists()


def test_mixed_label_presence_rejected_within_one_batch(world, tmp_path):
    _half_labelled_corpus(tmp_path / "c.parquet")
    with pytest.raises(ValueError, match="ground truth for all documents or for none"):
        tokenize_corpus(tmp_path / "c.parquet", world["tok"], tmp_path / "out", progress=False)

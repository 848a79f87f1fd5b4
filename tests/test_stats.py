"""Corpus statistics (paper App C.2) on shards whose figures are known exactly."""

from __future__ import annotations

import math
import os

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import numpy as np
import pandas as pd
import pytest

from tokenfilter.data.corpus import make_record, write_corpus
from tokenfilter.io import write_json
from tokenfilter.data.shards import DOC_DTYPE, TokenShard, tokenize_corpus
from tokenfilter.data.stats import PAPER_STATS, corpus_stats, forget_fractions, plot_forget_histogram, stats_table
from tokenfilter.data.tokenizer import build_tokenizer

# (text, forget spans): with a byte-alphabet-only BPE every ASCII character is one token, so the
# token counts are the character counts and the forget tokens are the characters inside spans.
DOCS = [
    ("x" * 10, []),                  # 0/10  no forget token
    ("y" * 10, [(0, 1)]),            # 1/10  exactly 10%: not "more than 10%"
    ("z" * 10, [(3, 5)]),            # 2/10  over 10%
    ("w" * 4, [(0, 4)]),             # 4/4   all forget
    ("v" * 20, []),                  # 0/20
    ("u" * 20, [(0, 6), (10, 12)]),  # 8/20  40%
]


@pytest.fixture(scope="module")
def char_shard(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    tok = build_tokenizer("train", ["xyzwvu"] * 10, vocab_size=261)  # no merges: the byte alphabet only
    for text, _ in DOCS:
        assert len(tok.encode(text)) == len(text)
    write_corpus(root / "c.parquet", (make_record(i, t, forget_spans=s) for i, (t, s) in enumerate(DOCS)))
    tokenize_corpus(root / "c.parquet", tok, root / "shard", progress=False)
    return TokenShard.open(root / "shard")


def test_shard_matches_the_hand_counts(char_shard):
    np.testing.assert_array_equal(char_shard.docs["length"], [11, 11, 11, 5, 21, 21])
    np.testing.assert_array_equal(char_shard.docs["n_forget"], [0, 1, 2, 4, 0, 8])
    np.testing.assert_allclose(forget_fractions(char_shard), [0, 0.1, 0.2, 1.0, 0, 0.4])


def test_corpus_stats_exact(char_shard):
    stats = corpus_stats(char_shard, doc_label_min_forget=0.3)
    lengths = np.array([10, 10, 10, 4, 20, 20])
    expected = {
        "n_docs": 6,
        "n_tokens": 80,  # 74 text tokens + 6 EOT
        "forget_token_pct": 100 * 15 / 80,
        "docs_without_forget_pct": 100 * 2 / 6,
        "docs_over_10pct_forget_pct": 100 * 3 / 6,
        "docs_flagged_pct": 100 * 2 / 6,  # 1.0 and 0.4 are >= 0.3; 0.2 is not
        "forget_share_in_flagged_docs_pct": 100 * 12 / 24,
        "tokens_in_flagged_docs_pct": 100 * 24 / 74,
        "doc_tokens_median": 10.0,
        "doc_tokens_p90": float(np.percentile(lengths, 90)),
        "doc_tokens_p99": float(np.percentile(lengths, 99)),
        "doc_tokens_max": 20,
        "doc_label_min_forget": 0.3,
        "ambiguous_token_pct": 0.0,  # no document here marks an ambiguous word
    }
    assert set(stats) == set(expected)
    for key, value in expected.items():
        assert stats[key] == pytest.approx(value, abs=1e-9), key


def test_flag_threshold_is_inclusive(char_shard):
    stats = corpus_stats(char_shard, doc_label_min_forget=0.2)
    assert stats["docs_flagged_pct"] == pytest.approx(100 * 3 / 6)
    assert stats["forget_share_in_flagged_docs_pct"] == pytest.approx(100 * 14 / 34)


def _raw_shard(directory, lengths, n_forget, has_labels=True):
    """A shard written directly: docs.bin plus zeroed tokens (statistics only read docs and meta)."""
    directory.mkdir(parents=True)
    docs = np.zeros(len(lengths), dtype=DOC_DTYPE)
    docs["doc_id"] = np.arange(len(lengths))
    docs["length"] = lengths
    docs["start"] = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    docs["n_forget"] = n_forget
    n_tokens = int(np.sum(lengths))
    (directory / "docs.bin").write_bytes(docs.tobytes())
    (directory / "tokens.bin").write_bytes(np.zeros(n_tokens, dtype="<u2").tobytes())
    if has_labels:
        (directory / "labels.bin").write_bytes(np.zeros(n_tokens, dtype=np.uint8).tobytes())
    write_json(directory / "meta.json", {
        "n_tokens": n_tokens, "n_docs": len(lengths), "n_forget_tokens": int(np.sum(n_forget)),
        "token_dtype": "<u2", "has_labels": has_labels,
    })
    return TokenShard.open(directory)


def test_corpus_stats_on_directly_built_docs(tmp_path):
    # 10 documents: 3 with no forget token, 4 with more than 10%, one empty (EOT only).
    lengths = [101, 101, 51, 1, 11, 11, 21, 101, 201, 41]
    n_forget = [0, 10, 0, 0, 2, 1, 21 - 1, 50, 0, 40]
    shard = _raw_shard(tmp_path / "s", lengths, n_forget)
    stats = corpus_stats(shard, doc_label_min_forget=0.5)
    fractions = [0, 0.1, 0, 0, 0.2, 0.1, 1.0, 0.5, 0, 1.0]
    np.testing.assert_allclose(forget_fractions(shard), fractions)
    assert stats["docs_without_forget_pct"] == pytest.approx(40.0)  # incl. the empty document
    assert stats["docs_over_10pct_forget_pct"] == pytest.approx(40.0)
    assert stats["docs_flagged_pct"] == pytest.approx(30.0)
    assert stats["forget_share_in_flagged_docs_pct"] == pytest.approx(100 * (20 + 50 + 40) / (20 + 100 + 40))
    assert stats["forget_token_pct"] == pytest.approx(100 * sum(n_forget) / sum(lengths))
    assert stats["doc_tokens_max"] == 200


def test_corpus_stats_needs_labels(tmp_path):
    shard = _raw_shard(tmp_path / "s", [5, 5], [0, 0], has_labels=False)
    with pytest.raises(ValueError, match="no ground-truth labels"):
        corpus_stats(shard, 0.3)


def test_stats_table_has_paper_column(char_shard):
    stats = corpus_stats(char_shard, 0.3)
    table = stats_table(stats)
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["statistic", "value", "paper"]
    assert list(table["statistic"]) == list(stats)
    by_name = table.set_index("statistic")
    for key, paper in PAPER_STATS.items():
        assert by_name.loc[key, "paper"] == paper
        assert by_name.loc[key, "value"] == pytest.approx(round(stats[key], 3))
    assert PAPER_STATS["docs_without_forget_pct"] == 23.0 and PAPER_STATS["docs_over_10pct_forget_pct"] == 37.0
    others = by_name.drop(index=list(PAPER_STATS))
    assert all(v is None or (isinstance(v, float) and math.isnan(v)) for v in others["paper"])


def test_plot_forget_histogram_writes_png(char_shard, tmp_path):
    path = tmp_path / "plots" / "forget_hist.png"
    plot_forget_histogram(char_shard, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 2000
    assert [p.name for p in path.parent.iterdir()] == ["forget_hist.png"]  # no temporary file left

"""Real-corpus sources: local files and (local-directory) Hugging Face datasets into a corpus."""

from __future__ import annotations

import collections
import json
import logging
import os

# Never reach the hub from tests; set before `datasets` is (lazily) imported.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokenfilter.data.corpus import DOCUMENT_DOMAINS, read_corpus
from tokenfilter.errors import ConfigError, InputError
from tokenfilter.data.sources import RawDocument, ingest, iter_documents


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _parquet(path, columns):
    pq.write_table(pa.table(columns), path)


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A clean working directory: file globs are relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def mixed_files(work):
    (work / "data").mkdir()
    _jsonl(
        work / "data" / "a.jsonl",
        [
            {"text": "aspirin dosage notes"},
            {"text": "cell biology", "domain": "retain_near"},
            {"text": "more medicine"},
        ],
    )
    _parquet(
        work / "data" / "b.parquet",
        {"text": ["parquet one", "parquet two"], "domain": [None, "retain_far"]},
    )
    (work / "data" / "c.txt").write_text("a whole\nplain text\nfile\n", encoding="utf-8")
    return [
        {"glob": "data/*.jsonl", "domain": "forget"},
        {"glob": "data/*.parquet", "domain": "unknown"},
        {"glob": "data/*.txt", "domain": "mixed"},
    ]


# ------------------------------------------------------------------------------------------
# files source: happy path


def test_files_source_reads_all_formats(mixed_files):
    docs = list(iter_documents("files", mixed_files))
    assert docs == [
        RawDocument("aspirin dosage notes", "forget", "data/a.jsonl:1"),
        RawDocument("cell biology", "retain_near", "data/a.jsonl:2"),
        RawDocument("more medicine", "forget", "data/a.jsonl:3"),
        RawDocument("parquet one", "unknown", "data/b.parquet:1"),
        RawDocument("parquet two", "retain_far", "data/b.parquet:2"),
        RawDocument("a whole\nplain text\nfile\n", "mixed", "data/c.txt:1"),
    ]


def test_ingest_writes_corpus_and_summary(mixed_files, work):
    summary = ingest(
        "files",
        mixed_files,
        work / "out" / "corpus.parquet",
        val_fraction=0.0,
        seed=1,
        summary_path=work / "out" / "summary.json",
    )
    df = read_corpus(work / "out" / "corpus.parquet")
    assert list(df["doc_id"]) == list(range(6))
    assert list(df["domain"]) == [
        "forget",
        "retain_near",
        "forget",
        "unknown",
        "retain_far",
        "mixed",
    ]
    assert list(df["source_id"])[3] == "data/b.parquet:1"
    assert set(df["split"]) == {"train"}
    assert set(df["kind"]) == {""}
    assert df["forget_spans"].isna().all() and df["doc_label"].isna().all()
    assert summary == {
        "source": "files",
        "n_docs": 6,
        "n_chars": int(df["text"].str.len().sum()),
        "n_train": 6,
        "n_val": 0,
        "n_truncated": 0,
        "skipped": {},
        "domains": {"forget": 2, "mixed": 1, "retain_far": 1, "retain_near": 1, "unknown": 1},
    }
    assert json.loads((work / "out" / "summary.json").read_text()) == summary


def test_ingest_is_deterministic(mixed_files, work):
    for name in ("one.parquet", "two.parquet"):
        ingest("files", mixed_files, work / name, val_fraction=0.5, seed=7)
    assert pq.read_table(work / "one.parquet").equals(pq.read_table(work / "two.parquet"))


def test_split_fraction_roughly_right(work):
    n = 4000
    _jsonl(work / "many.jsonl", [{"text": f"document number {i}"} for i in range(n)])
    summary = ingest(
        "files", [{"glob": "many.jsonl"}], work / "c.parquet", val_fraction=0.2, seed=3
    )
    df = read_corpus(work / "c.parquet", columns=["split", "domain"])
    assert summary["n_val"] == int((df["split"] == "val").sum())
    assert summary["n_train"] + summary["n_val"] == n
    assert 0.17 < summary["n_val"] / n < 0.23
    assert set(df["domain"]) == {"unknown"}  # the default domain


def test_max_doc_chars_truncates(work):
    _jsonl(work / "d.jsonl", [{"text": "x" * 50}, {"text": "short"}])
    summary = ingest(
        "files",
        [{"glob": "d.jsonl"}],
        work / "c.parquet",
        val_fraction=0.0,
        seed=0,
        max_doc_chars=10,
    )
    assert list(read_corpus(work / "c.parquet")["text"]) == ["x" * 10, "short"]
    assert summary["n_truncated"] == 1 and summary["n_chars"] == 15


def test_custom_text_field_and_blank_lines(work):
    (work / "d.jsonl").write_text('{"body": "one"}\n\n   \n{"body": "four"}\n', encoding="utf-8")
    docs = list(iter_documents("files", [{"glob": "d.jsonl", "text_field": "body"}]))
    assert [(d.text, d.source_id) for d in docs] == [("one", "d.jsonl:1"), ("four", "d.jsonl:4")]


def test_utf8_bom_is_not_an_error(work):
    (work / "d.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "bom"}\n')
    (work / "e.txt").write_bytes(b"\xef\xbb\xbfhello")
    docs = list(iter_documents("files", [{"glob": "d.jsonl"}, {"glob": "e.txt"}]))
    assert [d.text for d in docs] == ["bom", "hello"]


# ------------------------------------------------------------------------------------------
# files source: bad records

GOOD = b'{"text": "good record"}\n'

# (file name, content, line of the bad record, words in the message, reason key, good docs)
BAD_CASES = {
    "malformed_json": (
        "d.jsonl",
        GOOD + b"\n" + b'{"text": "unterminated\n' + GOOD,
        3,
        ["malformed JSON", "Unterminated string"],
        "malformed_json",
        2,
    ),
    "json_not_object": (
        "d.jsonl",
        GOOD + b"[1, 2]\n",
        2,
        ["malformed JSON", "expected an object"],
        "malformed_json",
        1,
    ),
    "not_utf8_jsonl": (
        "d.jsonl",
        GOOD + b'{"text": "caf\xe9"}\n' + GOOD,
        2,
        ["undecodable", "not UTF-8"],
        "not_utf8",
        2,
    ),
    "missing_text": (
        "d.jsonl",
        GOOD + GOOD + b'{"body": "x"}\n',
        3,
        ["missing text field 'text'"],
        "missing_text",
        2,
    ),
    "null_text": (
        "d.jsonl",
        b'{"text": null}\n' + GOOD,
        1,
        ["missing text field 'text'"],
        "missing_text",
        1,
    ),
    "non_string_text": (
        "d.jsonl",
        GOOD + b'{"text": 5}\n',
        2,
        ["text field 'text' is not a string"],
        "missing_text",
        1,
    ),
    "empty_text": ("d.jsonl", GOOD + b'{"text": " \\n\\t "}\n', 2, ["empty text"], "empty_text", 1),
    "lone_surrogate": (
        "d.jsonl",
        GOOD + b'{"text": "a\\ud800b"}\n',
        2,
        ["not valid Unicode"],
        "invalid_unicode",
        1,
    ),
    "record_domain": (
        "d.jsonl",
        GOOD + b'{"text": "x", "domain": "medicine"}\n',
        2,
        ["unknown domain 'medicine'", *DOCUMENT_DOMAINS],
        "unknown_domain",
        1,
    ),
    "not_utf8_txt": (
        "d.txt",
        b"line one\nline two\nbad \xff byte\nlast\n",
        3,
        ["undecodable", "not UTF-8"],
        "not_utf8",
        0,
    ),
    "empty_txt": ("d.txt", b"  \n\n", 1, ["empty text"], "empty_text", 0),
}


def _write_bad_case(work, case):
    name, content, *_ = BAD_CASES[case]
    (work / name).write_bytes(content)
    (work / "good.jsonl").write_bytes(GOOD)  # always one more good document elsewhere
    return [{"glob": "good.jsonl"}, {"glob": name}]


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_record_is_an_error_naming_file_and_line(work, case):
    name, _, line, words, _, _ = BAD_CASES[case]
    spec = _write_bad_case(work, case)
    with pytest.raises(InputError) as info:
        ingest("files", spec, work / "c.parquet", val_fraction=0.1, seed=0)
    message = str(info.value)
    assert message.startswith(f"{name}:{line}: "), message
    assert (info.value.path, info.value.line) == (name, line)
    for word in words:
        assert word in message
    assert not (work / "c.parquet").exists()
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_record_skipped_is_counted_and_logged(work, case, caplog):
    name, _, line, words, reason, n_good = BAD_CASES[case]
    spec = _write_bad_case(work, case)
    with caplog.at_level(logging.WARNING, logger="tokenfilter.data.sources"):
        summary = ingest(
            "files", spec, work / "c.parquet", val_fraction=0.1, seed=0, on_bad_record="skip"
        )
    assert summary["skipped"] == {reason: 1}
    assert summary["n_docs"] == 1 + n_good
    assert len(read_corpus(work / "c.parquet")) == 1 + n_good
    warnings = [r for r in caplog.records if r.name == "tokenfilter.data.sources"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert f"{name}:{line}" in warnings[0].getMessage()
    assert words[0] in warnings[0].getMessage()


def test_skipped_counter_is_filled_by_iter_documents(work):
    (work / "d.jsonl").write_bytes(b"{bad\n" + GOOD + b"{worse\n" + b'{"text": ""}\n')
    skipped = collections.Counter()
    docs = list(
        iter_documents("files", [{"glob": "d.jsonl"}], on_bad_record="skip", skipped=skipped)
    )
    assert [d.source_id for d in docs] == ["d.jsonl:2"]
    assert skipped == {"malformed_json": 2, "empty_text": 1}


PARQUET_BAD = {
    "empty": ({"text": ["ok", "  ", "ok"]}, 2, "empty text", "empty_text"),
    "null": ({"text": ["ok", "ok", None]}, 3, "missing text field 'text'", "missing_text"),
    "domain": (
        {"text": ["ok", "ok"], "domain": ["forget", "chemistry"]},
        2,
        "unknown domain 'chemistry'",
        "unknown_domain",
    ),
}


@pytest.mark.parametrize("case", sorted(PARQUET_BAD))
def test_parquet_bad_rows_are_numbered_from_one(work, case, caplog):
    columns, row, words, reason = PARQUET_BAD[case]
    _parquet(work / "p.parquet", columns)
    with pytest.raises(InputError, match=rf"^p\.parquet:{row}: .*{words}"):
        list(iter_documents("files", [{"glob": "*.parquet"}]))
    skipped = collections.Counter()
    with caplog.at_level(logging.WARNING, logger="tokenfilter.data.sources"):
        docs = list(
            iter_documents("files", [{"glob": "*.parquet"}], on_bad_record="skip", skipped=skipped)
        )
    assert skipped == {reason: 1}
    assert len(docs) == len(columns["text"]) - 1
    assert f"p.parquet:{row}" in caplog.text


def test_parquet_without_text_column_is_an_error_even_when_skipping(work):
    _parquet(work / "p.parquet", {"body": ["a", "b"]})
    with pytest.raises(
        InputError, match=r"^p\.parquet: missing text field 'text' \(columns: body\)"
    ):
        list(iter_documents("files", [{"glob": "p.parquet"}], on_bad_record="skip"))


def test_corrupt_parquet_names_the_file(work):
    (work / "p.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"^p\.parquet: unreadable parquet"):
        list(iter_documents("files", [{"glob": "p.parquet"}]))


# ------------------------------------------------------------------------------------------
# config errors


def test_unknown_domain_in_glob_entry(work):
    _jsonl(work / "d.jsonl", [{"text": "x"}])
    with pytest.raises(ConfigError) as info:
        iter_documents("files", [{"glob": "d.jsonl", "domain": "medicine"}])
    assert "'medicine'" in str(info.value) and "d.jsonl" in str(info.value)
    assert all(d in str(info.value) for d in DOCUMENT_DOMAINS)


def test_glob_matching_nothing(work):
    _jsonl(work / "d.jsonl", [{"text": "x"}])
    with pytest.raises(ConfigError, match=r"glob 'data/\*\.jsonl' matches no file"):
        iter_documents("files", [{"glob": "d.jsonl"}, {"glob": "data/*.jsonl"}])


def test_unsupported_extension_and_double_match(work):
    _jsonl(work / "d.jsonl", [{"text": "x"}])
    (work / "e.csv").write_text("text\nx\n")
    with pytest.raises(
        ConfigError, match=r"'e\.csv', which is not one of \.jsonl, \.parquet, \.txt"
    ):
        iter_documents("files", [{"glob": "*.csv"}])
    with pytest.raises(ConfigError, match="ingested twice"):
        iter_documents("files", [{"glob": "*.jsonl"}, {"glob": "d.*"}])


@pytest.mark.parametrize(
    "spec",
    [
        {"glob": "d.jsonl"},
        [],
        ["d.jsonl"],
        [{"glob": "d.jsonl", "textfield": "body"}],
        [{"domain": "forget"}],
    ],
)
def test_malformed_files_spec(work, spec):
    _jsonl(work / "d.jsonl", [{"text": "x"}])
    with pytest.raises(ConfigError, match="files source"):
        iter_documents("files", spec)


def test_unknown_source():
    with pytest.raises(ConfigError, match=r"unknown source 'web'; allowed: huggingface, files"):
        iter_documents("web", {})


def test_bad_on_bad_record(work):
    _jsonl(work / "d.jsonl", [{"text": "x"}])
    with pytest.raises(
        ConfigError, match=r"on_bad_record: unknown value 'ignore'; allowed: error, skip"
    ):
        ingest(
            "files",
            [{"glob": "d.jsonl"}],
            work / "c.parquet",
            val_fraction=0.1,
            seed=0,
            on_bad_record="ignore",
        )
    assert not (work / "c.parquet").exists()


@pytest.mark.parametrize("kwargs", [{"val_fraction": 1.5}, {"max_doc_chars": 0}])
def test_bad_ingest_options(work, kwargs):
    _jsonl(work / "d.jsonl", [{"text": "x"}])
    options = {"val_fraction": 0.1, "seed": 0, **kwargs}
    with pytest.raises(ConfigError):
        ingest("files", [{"glob": "d.jsonl"}], work / "c.parquet", **options)


# ------------------------------------------------------------------------------------------
# atomicity


def test_failed_ingest_leaves_existing_output_untouched(work):
    # Enough good rows to flush several row groups before the failure near the end.
    lines = [json.dumps({"text": f"doc {i}"}).encode() + b"\n" for i in range(5000)]
    (work / "d.jsonl").write_bytes(b"".join(lines) + b"{oops\n")
    out = work / "out" / "corpus.parquet"
    out.parent.mkdir()
    out.write_bytes(b"previous corpus")
    summary = work / "out" / "summary.json"
    with pytest.raises(InputError, match=r"^d\.jsonl:5001: malformed JSON"):
        ingest("files", [{"glob": "d.jsonl"}], out, val_fraction=0.1, seed=0, summary_path=summary)
    assert out.read_bytes() == b"previous corpus"
    assert not summary.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus.parquet"]


def test_failed_ingest_leaves_no_file(work):
    (work / "d.jsonl").write_bytes(GOOD + b'{"text": ""}\n')
    out = work / "out" / "corpus.parquet"
    with pytest.raises(InputError):
        ingest("files", [{"glob": "d.jsonl"}], out, val_fraction=0.1, seed=0)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


# ------------------------------------------------------------------------------------------
# huggingface source (local dataset directories only; needs `datasets`)


@pytest.fixture
def hf_dir(work):
    pytest.importorskip("datasets")
    root = work / "hfdata"
    root.mkdir()
    _jsonl(root / "part-0.jsonl", [{"body": f"first {i}", "text": "ignored"} for i in range(4)])
    _jsonl(root / "part-1.jsonl", [{"body": f"second {i}", "text": "ignored"} for i in range(4)])
    return root


def test_huggingface_local_dir_max_docs_and_text_field(hf_dir):
    name = str(hf_dir)
    spec = {
        "name": name,
        "config": None,
        "split": "train",
        "text_field": "body",
        "max_docs": 5,
        "domain": "retain_far",
    }
    docs = list(iter_documents("huggingface", spec))
    assert len(docs) == 5
    assert all(d.domain == "retain_far" for d in docs)
    assert all(d.text.startswith(("first", "second")) for d in docs)
    assert [d.source_id for d in docs] == [f"{name}:train:{i}" for i in range(5)]
    everything = list(iter_documents("huggingface", {**spec, "max_docs": None}))
    assert len(everything) == 8 and len({d.text for d in everything}) == 8


def test_huggingface_ingest(hf_dir, work):
    spec = {"name": str(hf_dir), "split": "train", "text_field": "body", "max_docs": 3}
    summary = ingest("huggingface", spec, work / "c.parquet", val_fraction=0.0, seed=0)
    assert summary["n_docs"] == 3 and summary["domains"] == {"unknown": 3}
    df = read_corpus(work / "c.parquet")
    assert list(df["doc_id"]) == [0, 1, 2]


def test_huggingface_missing_text_field_names_dataset_and_row(hf_dir, caplog):
    _jsonl(hf_dir / "part-2.jsonl", [{"body": "fine"}, {"text": "no body here"}])
    name = str(hf_dir)
    spec = {"name": name, "split": "train", "text_field": "body", "max_docs": None}
    with pytest.raises(InputError) as info:
        list(iter_documents("huggingface", spec))
    assert (info.value.path, info.value.line) == (f"{name}:train", 9)
    assert str(info.value) == f"{name}:train:9: missing text field 'body'"
    skipped = collections.Counter()
    with caplog.at_level(logging.WARNING, logger="tokenfilter.data.sources"):
        docs = list(iter_documents("huggingface", spec, on_bad_record="skip", skipped=skipped))
    assert len(docs) == 9 and skipped == {"missing_text": 1}
    assert f"{name}:train:9" in caplog.text


def test_huggingface_config_errors(hf_dir, work):
    with pytest.raises(ConfigError, match="unknown domain 'bio'"):
        iter_documents("huggingface", {"name": str(hf_dir), "domain": "bio"})
    with pytest.raises(ConfigError, match="unknown key"):
        iter_documents("huggingface", {"name": str(hf_dir), "column": "body"})
    with pytest.raises(ConfigError, match="max_docs"):
        iter_documents("huggingface", {"name": str(hf_dir), "max_docs": -1})
    with pytest.raises(ConfigError, match="cannot load dataset"):
        list(iter_documents("huggingface", {"name": str(work / "nowhere")}))
    with pytest.raises(ConfigError, match="cannot load dataset.*validation"):
        list(iter_documents("huggingface", {"name": str(hf_dir), "split": "validation"}))

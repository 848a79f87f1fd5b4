"""Tokenizers: special tokens, ordinary encoding of corpus text, save/load, HF compatibility."""

from __future__ import annotations

import json
import os

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from tokenfilter.errors import ConfigError
from tokenfilter.data.tokenizer import (
    META_FILE,
    SPECIAL_TOKENS,
    TextTokenizer,
    build_tokenizer,
    load_pretrained,
    load_tokenizer,
    padded_vocab_size,
    train_bpe,
)

SENTENCES = [
    "The culture of the species was grown in the laboratory.",
    "Treatment with the drug also lowers blood pressure.",
    "Merchants in the town showed resistance to the new taxes.",
    "A new strain of the species appeared in the marsh.",
    "Café owners in Zürich serve crème brûlée; 日本語のテキスト 😀.",
    "Patients with brazitis often develop fever and cough.",
]
TEXTS = [f"{s} {i}" for i in range(60) for s in SENTENCES]
SAMPLE = "Doctors prescribe tolinib for brazitis. Café 日本 😀 <|im_start|> end."


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return build_tokenizer("train", TEXTS, vocab_size=400)


def test_special_tokens_are_single_ids_that_decode_back(tok):
    assert set(tok.special_ids) == set(SPECIAL_TOKENS)
    assert len(set(tok.special_ids.values())) == len(SPECIAL_TOKENS)
    for key, token in SPECIAL_TOKENS.items():
        token_id = tok.special_ids[key]
        assert tok.tokenizer.token_to_id(token) == token_id
        # The full (non-ordinary) tokenizer turns the marker string into exactly its one id ...
        assert tok.tokenizer.encode(token, add_special_tokens=False).ids == [token_id]
        # ... and the id decodes back to the marker.
        assert tok.decode([token_id]) == token
    assert tok.eot_id == tok.special_ids["eot"]
    assert tok.hidden_id == tok.special_ids["hidden"]


def test_special_strings_in_text_are_ordinary_tokens(tok):
    specials = set(tok.special_ids.values())
    for token in SPECIAL_TOKENS.values():
        text = f"a document that quotes {token} in its text"
        ids, offsets = tok.encode_batch([text])[0]
        assert not specials & set(ids.tolist()), token
        assert len(ids) > 1
        assert tok.decode(ids) == text  # nothing lost: the marker is spelt out in ordinary pieces
        start = text.index(token)
        inside = [i for i, (s, e) in enumerate(offsets.tolist()) if s < start + len(token) and e > start]
        assert len(inside) > 1
    # A document that IS the marker string does not become a document boundary either.
    assert tok.eot_id not in tok.encode("<|endoftext|>")


def test_encode_batch_shapes_and_char_offsets(tok):
    texts = [SAMPLE, "", "plain ascii"]
    out = tok.encode_batch(texts)
    assert len(out) == 3
    for text, (ids, offsets) in zip(texts, out):
        assert ids.dtype == np.int64 and offsets.dtype == np.int64
        assert offsets.shape == (len(ids), 2)
        assert tok.decode(ids) == text
        if text:
            assert offsets[-1, 1] == len(text)  # characters, not bytes
    assert len(out[1][0]) == 0
    assert tok.encode(SAMPLE) == out[0][0].tolist()


def test_training_is_deterministic():
    a = build_tokenizer("train", TEXTS, vocab_size=400)
    b = build_tokenizer("train", TEXTS, vocab_size=400)
    assert a.tokenizer.to_str() == b.tokenizer.to_str()
    assert a.vocab_size == b.vocab_size <= 400


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "tok" / "tokenizer.json"
    tok.save(path)
    # Only the declared files, no leftover temporary directory.
    names = sorted(p.name for p in path.parent.iterdir())
    assert "tokenizer.json" in names and META_FILE in names
    assert not [n for n in names if n.startswith(".")]
    meta = json.loads((path.parent / META_FILE).read_text())
    assert meta["special_ids"] == tok.special_ids
    assert meta["vocab_size"] == tok.vocab_size
    assert meta["padded_vocab_size"] == padded_vocab_size(tok.vocab_size)

    for where in (path, path.parent):  # the file or its directory
        loaded = load_tokenizer(where)
        assert loaded.special_ids == tok.special_ids
        assert loaded.vocab_size == tok.vocab_size
        texts = [SAMPLE, *TEXTS[:20], "<|endoftext|><|hidden|>"]
        for (a_ids, a_off), (b_ids, b_off) in zip(tok.encode_batch(texts), loaded.encode_batch(texts)):
            np.testing.assert_array_equal(a_ids, b_ids)
            np.testing.assert_array_equal(a_off, b_off)


def test_autotokenizer_loads_saved_dir(tok, tmp_path):
    from transformers import AutoTokenizer

    path = tmp_path / "tok" / "tokenizer.json"
    tok.save(path)
    hf = AutoTokenizer.from_pretrained(str(path.parent))
    assert hf.eos_token == SPECIAL_TOKENS["eot"]
    assert hf.eos_token_id == tok.eot_id
    assert hf.pad_token_id == tok.eot_id
    for key in ("hidden", "refusal", "im_start", "im_end"):
        assert hf.convert_tokens_to_ids(SPECIAL_TOKENS[key]) == tok.special_ids[key]
    # Ordinary text encodes to the same ids as ours.
    text = "Treatment with the drug also lowers blood pressure."
    assert hf.encode(text, add_special_tokens=False) == tok.encode(text)

    messages = [{"role": "user", "content": "Which drug treats brazitis?"}]
    rendered = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nWhich drug treats brazitis?<|im_end|>\n<|im_start|>assistant\n"
    two = messages + [{"role": "assistant", "content": "I can't help with that."}]
    rendered = hf.apply_chat_template(two, tokenize=False)
    assert rendered == ("<|im_start|>user\nWhich drug treats brazitis?<|im_end|>\n"
                        "<|im_start|>assistant\nI can't help with that.<|im_end|>\n")
    # In chat rendering the ChatML markers are the special ids.
    ids = hf.encode(rendered, add_special_tokens=False)
    assert ids[0] == tok.special_ids["im_start"]
    assert ids.count(tok.special_ids["im_end"]) == 2


def _plain_tokenizer_file(path) -> None:
    """A byte-level BPE tokenizer.json with none of the project's special tokens."""
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    t.train_from_iterator(TEXTS, trainer=trainer)
    for token in SPECIAL_TOKENS.values():
        assert t.token_to_id(token) is None
    t.save(str(path))


def test_load_pretrained_local_file_adds_specials(tmp_path):
    _plain_tokenizer_file(tmp_path / "tokenizer.json")
    n_before = Tokenizer.from_file(str(tmp_path / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    for where in (tmp_path / "tokenizer.json", tmp_path):
        loaded = load_pretrained(str(where))
        ids = [loaded.token_to_id(t) for t in SPECIAL_TOKENS.values()]
        assert None not in ids and len(set(ids)) == len(ids)
        # The specials are appended after the existing vocabulary, as for cl100k's <|hidden|>.
        assert sorted(ids) == list(range(n_before, n_before + len(SPECIAL_TOKENS)))
        text_tok = TextTokenizer.from_tokenizer(loaded)
        assert text_tok.vocab_size == n_before + len(SPECIAL_TOKENS)
        for key, token in SPECIAL_TOKENS.items():
            assert loaded.encode(token, add_special_tokens=False).ids == [text_tok.special_ids[key]]
        # Corpus text still encodes the marker strings ordinarily.
        assert not set(text_tok.special_ids.values()) & set(text_tok.encode("x <|endoftext|> <|hidden|> y"))
    tt = build_tokenizer("pretrained", name=str(tmp_path))
    assert tt.eot_id == load_pretrained(str(tmp_path)).token_to_id(SPECIAL_TOKENS["eot"])


def test_load_pretrained_unknown_name_is_config_error():
    with pytest.raises(ConfigError, match=r"tokenizer\.name") as info:
        load_pretrained("no-such-org-tokenfilter/definitely-not-a-tokenizer")
    assert "no-such-org-tokenfilter/definitely-not-a-tokenizer" in str(info.value)


def test_build_tokenizer_unknown_kind():
    with pytest.raises(ConfigError, match=r"tokenizer\.kind.*'bpe'"):
        build_tokenizer("bpe", TEXTS, 300)


def test_from_tokenizer_requires_specials():
    t = Tokenizer(models.BPE())
    with pytest.raises(ValueError, match="special token"):
        TextTokenizer.from_tokenizer(t)


@pytest.mark.parametrize("n, expected", [
    (100277, 100288),  # cl100k_base + <|hidden|> ... (the authors' padded embedding)
    (100288, 100288),
    (100289, 100352),
    (1024, 1024),
    (1029, 1088),
    (349, 384),
    (1, 64),
    (64, 64),
    (65, 128),
])
def test_padded_vocab_size(n, expected):
    assert padded_vocab_size(n) == expected
    assert padded_vocab_size(n) % 64 == 0 and 0 <= padded_vocab_size(n) - n < 64


def test_padded_vocab_size_other_multiple():
    assert padded_vocab_size(100277, multiple=128) == 100352
    assert padded_vocab_size(1000, multiple=8) == 1000


def test_train_bpe_respects_vocab_size_and_specials_first():
    t = train_bpe(TEXTS, vocab_size=350)
    assert t.get_vocab_size(with_added_tokens=True) <= 350
    assert [t.token_to_id(s) for s in SPECIAL_TOKENS.values()] == list(range(len(SPECIAL_TOKENS)))

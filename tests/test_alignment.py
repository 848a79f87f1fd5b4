"""Property tests of the one span→token alignment (tokenfilter.data.alignment).

The rule under test: a token is forget iff its character span [start, end) overlaps a forget
character span; zero-width tokens (special tokens) never are. Every property is checked against
a brute-force per-token overlap test, on random tokenisations and on a real byte-level BPE.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenfilter.data.alignment import merge_spans, token_labels_from_spans, token_spans_to_char_spans

# Deterministic (derandomised, no example database) and moderate, so the file runs in seconds.
PROPS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


def brute_labels(offsets, spans) -> np.ndarray:
    """Token i is forget iff it has non-zero width and shares at least one character with a span."""
    out = []
    for ts, te in offsets:
        out.append(te > ts and any(max(ts, s) < min(te, e) for s, e in spans))
    return np.asarray(out, dtype=bool)


def covered(spans, n: int) -> np.ndarray:
    """Characters of [0, n) that some span covers (the set a list of spans denotes)."""
    mask = np.zeros(n, dtype=bool)
    for s, e in spans:
        if e > s:
            mask[max(s, 0):max(min(e, n), 0)] = True
    return mask


# --- strategies -----------------------------------------------------------------------------

@st.composite
def tokenisation(draw, max_len: int = 60):
    """(text length, offsets): a random partition of [0, n) into contiguous tokens, plus
    zero-width tokens inserted at random character positions (as special tokens have)."""
    n = draw(st.integers(0, max_len))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, n - 1)), max_size=n))) if n > 1 else []
    bounds = [0, *cuts, n] if n > 0 else [0]
    offsets = [(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    n_zero = draw(st.integers(0, 4))
    for _ in range(n_zero):
        p = draw(st.integers(0, n))
        i = draw(st.integers(0, len(offsets)))
        offsets.insert(i, (p, p))
    return n, offsets


@st.composite
def spans_in(draw, n: int, max_spans: int = 6):
    """Random spans over [0, n]: may overlap, touch, be empty or come in any order."""
    k = draw(st.integers(0, max_spans))
    out = []
    for _ in range(k):
        a = draw(st.integers(0, n))
        b = draw(st.integers(0, n))
        if draw(st.booleans()):
            a, b = min(a, b), max(a, b)
        out.append((a, b))  # a > b (reversed) and a == b (empty) are dropped by merge_spans
    return out


@st.composite
def case(draw):
    n, offsets = draw(tokenisation())
    spans = draw(spans_in(n))
    return n, offsets, spans


# --- token_labels_from_spans vs brute force -------------------------------------------------

@PROPS
@given(case())
def test_labels_equal_brute_force(c):
    n, offsets, spans = c
    labels = token_labels_from_spans(offsets, spans)
    assert labels.dtype == bool and labels.shape == (len(offsets),)
    np.testing.assert_array_equal(labels, brute_labels(offsets, spans))


@PROPS
@given(case())
def test_zero_width_tokens_never_labelled(c):
    n, offsets, spans = c
    labels = token_labels_from_spans(offsets, spans)
    for (s, e), lab in zip(offsets, labels):
        if s == e:
            assert not lab


@PROPS
@given(case(), st.randoms(use_true_random=False))
def test_invariant_to_span_order(c, rnd):
    n, offsets, spans = c
    shuffled = list(spans)
    rnd.shuffle(shuffled)
    np.testing.assert_array_equal(token_labels_from_spans(offsets, spans), token_labels_from_spans(offsets, shuffled))


@PROPS
@given(case(), st.data())
def test_invariant_to_splitting_and_merging_touching_spans(c, data):
    n, offsets, spans = c
    base = token_labels_from_spans(offsets, spans)
    # Split every non-empty span at a random interior point: two touching spans, same characters.
    split = []
    for s, e in spans:
        if e - s >= 2:
            m = data.draw(st.integers(s + 1, e - 1))
            split += [(s, m), (m, e)]
        else:
            split.append((s, e))
    np.testing.assert_array_equal(token_labels_from_spans(offsets, split), base)
    # The merged form denotes the same characters, so it labels the same tokens.
    np.testing.assert_array_equal(token_labels_from_spans(offsets, merge_spans(spans)), base)
    np.testing.assert_array_equal(token_labels_from_spans(offsets, merge_spans(split)), base)


def test_touching_token_is_not_labelled():
    # A span ending exactly where a token starts (or starting where it ends) shares no character.
    offsets = [(0, 3), (3, 6), (6, 9)]
    np.testing.assert_array_equal(token_labels_from_spans(offsets, [(3, 6)]), [False, True, False])
    np.testing.assert_array_equal(token_labels_from_spans(offsets, [(2, 3)]), [True, False, False])
    np.testing.assert_array_equal(token_labels_from_spans(offsets, [(6, 7)]), [False, False, True])
    np.testing.assert_array_equal(token_labels_from_spans(offsets, [(5, 5)]), [False, False, False])
    np.testing.assert_array_equal(token_labels_from_spans([], [(0, 3)]), np.zeros(0, dtype=bool))
    np.testing.assert_array_equal(token_labels_from_spans(offsets, []), [False, False, False])


# --- merge_spans ----------------------------------------------------------------------------

@PROPS
@given(st.integers(0, 80).flatmap(lambda n: spans_in(n, max_spans=10)))
def test_merge_spans_sorted_disjoint_idempotent_same_cover(spans):
    merged = merge_spans(spans)
    assert merged.shape[1] == 2 and merged.dtype == np.int64
    assert np.all(merged[:, 1] > merged[:, 0])  # non-empty
    # Sorted, disjoint and not even touching (touching spans are merged).
    assert np.all(merged[1:, 0] > merged[:-1, 1])
    np.testing.assert_array_equal(merge_spans(merged), merged)
    n = max([0] + [max(s, e) for s, e in spans])
    np.testing.assert_array_equal(covered(merged.tolist(), n), covered(spans, n))


def test_merge_spans_examples():
    np.testing.assert_array_equal(merge_spans([(5, 8), (0, 2), (2, 4), (7, 9), (3, 3), (10, 6)]),
                                  [[0, 4], [5, 9]])
    assert merge_spans([]).shape == (0, 2)
    assert merge_spans(np.zeros((0, 2), dtype=np.int64)).shape == (0, 2)


# --- round trip labels → char spans → labels ---------------------------------------------------

@PROPS
@given(tokenisation(), st.data())
def test_round_trip_labels_char_spans_labels(tok, data):
    n, offsets = tok
    # Random labels; a zero-width token has no characters to carry, so it is never labelled.
    labels = np.array([data.draw(st.booleans()) and e > s for s, e in offsets], dtype=bool)
    spans = token_spans_to_char_spans(offsets, labels)
    assert np.all(spans[1:, 0] > spans[:-1, 1])
    np.testing.assert_array_equal(token_labels_from_spans(offsets, spans), labels)


@PROPS
@given(case())
def test_round_trip_from_spans_is_stable(c):
    n, offsets, spans = c
    labels = token_labels_from_spans(offsets, spans)
    again = token_labels_from_spans(offsets, token_spans_to_char_spans(offsets, labels))
    np.testing.assert_array_equal(again, labels)
    # The carried spans cover exactly the labelled tokens' characters.
    cover = covered(token_spans_to_char_spans(offsets, labels).tolist(), n)
    expected = covered([o for o, lab in zip(offsets, labels) if lab], n)
    np.testing.assert_array_equal(cover, expected)


# --- a real byte-level BPE --------------------------------------------------------------------

ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCXYZ .,;:!?'-\n0123456789éèüöñçßøåæœ日本語学校テキスト中文😀🧬ΔΩπЖжя"


@pytest.fixture(scope="module")
def bpe():
    from tokenfilter.data.tokenizer import TextTokenizer, train_bpe

    rng = np.random.default_rng(0)
    words = ["the", "cell", "culture", "host", "strain", "café", "naïve", "über", "größe", "日本語",
             "テキスト", "中文", "😀", "🧬", "résumé", "ñandú", "Δέλτα", "жизнь", "treatment", "of", "a"]
    sentences = [" ".join(rng.choice(words, size=int(rng.integers(4, 14)))) + "." for _ in range(400)]
    return TextTokenizer.from_tokenizer(train_bpe(sentences, vocab_size=400))


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.text(alphabet=ALPHABET, max_size=80), min_size=1, max_size=4), st.data())
def test_real_bpe_labels_equal_brute_force(bpe, texts, data):
    encoded = bpe.encode_batch(texts)
    for text, (ids, offsets) in zip(texts, encoded):
        assert len(ids) == len(offsets)
        # Offsets are CHARACTER offsets (byte offsets would run past len(text) for non-ASCII text).
        assert offsets.size == 0 or (offsets.min() >= 0 and offsets.max() <= len(text))
        if text:
            assert offsets[:, 1].max() == len(text)
        assert bpe.decode(ids) == text
        spans = data.draw(spans_in(len(text)))
        labels = token_labels_from_spans(offsets, spans)
        np.testing.assert_array_equal(labels, brute_labels(offsets.tolist(), spans))
        # Every character of a forget span lies in some labelled token (no forget text escapes).
        forget_chars = covered(spans, len(text))
        labelled_chars = covered(offsets[labels].tolist(), len(text))
        assert not np.any(forget_chars & ~labelled_chars)


def test_real_bpe_multibyte_characters_label_every_piece(bpe):
    # An emoji or CJK character may be split into several byte-level tokens that share its
    # character span; a span over that character labels all of them, and nothing else.
    text = "ab 🧬 cd 日本語 ef"
    ids, offsets = bpe.encode_batch([text])[0]
    start = text.index("🧬")
    labels = token_labels_from_spans(offsets, [(start, start + 1)])
    assert labels.any()
    for (s, e), lab in zip(offsets.tolist(), labels):
        assert lab == (s <= start < e)

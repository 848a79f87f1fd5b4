"""A pretrained encoder with its own tokenizer as a classifier's features (paper Table 1's
ModernBERT-large row), offline: a tiny random ModernBERT and a word-level tokenizer built here,
read at the positions of a byte-level BPE pretraining tokenizer."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenfilter.classify.bilm import Windowing, features_at, stream_features
from tokenfilter.data.alignment import overlap_ranges, pool_overlapping
from tokenfilter.data.tokenizer import build_tokenizer
from tokenfilter.model.hidden import residual_stream

WORDS = ["the", "patient", "took", "aspirin", "daily", "river", "stone", "héllo", "naïve", "日本", "x1", "dose",
         "—", "fever", "ok."]


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 30)))) + ("\n\n" if i % 3 == 0 else "")
            for i in range(n)]


@pytest.fixture(scope="module")
def ours():
    return build_tokenizer("train", _texts(300, 0), 320)


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    """A random 3-layer ModernBERT with a whitespace-and-punctuation word-piece tokenizer: its
    tokens cut the text differently from the pretraining BPE."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("encoder")
    core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    core.normalizer = normalizers.NFKC()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    core.train_from_iterator(_texts(200, 1), trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False))
    core.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = ModernBertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                              num_attention_heads=4, max_position_embeddings=512, pad_token_id=0, cls_token_id=2,
                              sep_token_id=3, bos_token_id=2, eos_token_id=3, global_attn_every_n_layers=2,
                              local_attention=16)
    ModernBertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tokenizer_file(ours, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ours") / "tokenizer.json"
    ours.save(path)
    return path


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(string.ascii_letters + " \n.,é日本—ïü") + ["𝔘", "ﬁ"]), max_size=60))
def test_ids_spell_their_text_back_with_the_tokenizers_own_offsets(ours, text):
    ids, offsets = ours.encode_batch([text])[0]
    spelled, spans = ours.text_with_offsets(ids)
    assert spelled == text
    assert np.array_equal(spans, offsets)


def test_a_special_token_reads_as_a_paragraph_break(ours):
    ids, _ = ours.encode_batch(["the patient"])[0]
    text, spans = ours.text_with_offsets([*ids, ours.eot_id, *ids])
    assert text == "the patient\n\nthe patient"
    eot = len(ids)
    assert text[spans[eot, 0]:spans[eot, 1]] == "\n\n"


def test_overlap_ranges_pool_the_source_tokens_that_share_characters():
    # source tokens: [CLS](0,0) "ab"(0,2) "cd"(2,4) " "(4,5) "ef"(5,7) [SEP](0,0)
    src = np.array([[0, 0], [0, 2], [2, 4], [4, 5], [5, 7], [0, 0]])
    values = np.arange(6, dtype=np.float64)[:, None] * np.ones((1, 2))
    dst = np.array([[0, 3], [3, 4], [4, 7], [7, 7]])  # "abc", "d", " ef", an empty span at the end
    lo, hi = overlap_ranges(src, dst)
    pooled = pool_overlapping(values, lo, hi, keep=src[:, 1] > src[:, 0])
    assert pooled[:, 0].tolist() == [1.5, 2.0, 3.5, 4.0]  # means of {1,2}, {2}, {3,4}; the last reads "ef"


def test_features_are_the_encoders_hidden_states_carried_to_our_tokens(ours, encoder_dir, tokenizer_file):
    from tokenfilter.classify.pretrained import PretrainedEncoderFeatures

    features = PretrainedEncoderFeatures.load(str(encoder_dir), str(tokenizer_file), layer=1, window=32, stride=16,
                                              batch=4)
    text = _texts(1, 5)[0]
    ids, offsets = ours.encode_batch([text])[0]
    ours_feats = features.window_features([ids])[0]
    enc = features.encoder_tokenizer([text], return_offsets_mapping=True, return_tensors="np")
    hidden = residual_stream(features.encoder, torch.as_tensor(enc["input_ids"]), 1)[1][0].numpy()
    enc_offsets = enc["offset_mapping"][0]
    for k, (a, b) in enumerate(offsets):
        overlapping = [j for j, (s, e) in enumerate(enc_offsets) if e > s and s < b and e > a]
        if overlapping:  # whitespace tokens the word-piece tokenizer drops read their neighbour
            np.testing.assert_allclose(ours_feats[k], hidden[overlapping].mean(0), rtol=1e-4, atol=1e-5)
    assert ours_feats.shape == (len(ids), 32)


def test_pretrained_features_do_not_depend_on_the_range_asked_for(ours, encoder_dir, tokenizer_file):
    from tokenfilter.classify.pretrained import PretrainedEncoderFeatures

    features = PretrainedEncoderFeatures.load(str(encoder_dir), str(tokenizer_file), layer=2, window=24, stride=8,
                                              batch=3)
    stream = np.concatenate([np.append(ours.encode_batch([t])[0][0], ours.eot_id) for t in _texts(12, 7)])
    whole = stream_features(features, stream)
    part = stream_features(features, stream, 37, 90)
    np.testing.assert_allclose(part, whole[37:90], rtol=1e-4, atol=1e-5)
    picked = np.array([3, 50, 51, len(stream) - 1])
    np.testing.assert_allclose(features_at(features, stream, picked), whole[picked], rtol=1e-4, atol=1e-4)


def test_a_window_longer_than_the_encoder_reads_is_refused(ours, encoder_dir, tokenizer_file):
    from tokenfilter.classify.pretrained import PretrainedEncoderFeatures
    from tokenfilter.errors import ConfigError

    features = PretrainedEncoderFeatures.load(str(encoder_dir), str(tokenizer_file), layer=0)
    features.max_positions = 8
    with pytest.raises(ConfigError, match="window"):
        features.window_features([np.asarray(ours.encode_batch([_texts(1, 3)[0]])[0][0])])


def test_a_saved_pretrained_classifier_scores_like_the_features_it_was_fitted_on(ours, encoder_dir, tokenizer_file,
                                                                                tmp_path):
    from tokenfilter.classify.annotate import load_classifier, save_classifier
    from tokenfilter.classify.pretrained import PretrainedEncoderFeatures
    from tokenfilter.classify.probe import fit_probe

    features = PretrainedEncoderFeatures.load(str(encoder_dir), str(tokenizer_file), layer=1, window=32, stride=16)
    stream = np.concatenate([ours.encode_batch([t])[0][0] for t in _texts(20, 9)])
    medical = np.isin(stream, [i for w in ("patient", "aspirin", "dose", "fever") for i in ours.encode(" " + w)])
    x = stream_features(features, stream)
    probe = fit_probe(x[::2], medical[::2], x[1::2], medical[1::2], Cs=[1.0], seed=0, layer=1, balance=True,
                      max_iter=200)
    save_classifier(tmp_path / "clf", probe, features="pretrained", encoder=str(encoder_dir),
                    tokenizer=str(tokenizer_file), window=32, stride=16, copy_models=True)
    loaded = load_classifier(tmp_path / "clf", device="cpu")
    assert loaded.extractor.layer == 1 and (tmp_path / "clf" / "tokenizer" / "tokenizer.json").is_file()
    again = stream_features(loaded.extractor, stream)
    np.testing.assert_allclose(probe.predict_proba(again), probe.predict_proba(x), rtol=1e-5, atol=1e-6)


def test_a_pretrained_classifier_needs_a_name(tmp_path):
    import yaml

    from tokenfilter.config import validate_config
    from tokenfilter.errors import ConfigError

    config = yaml.safe_load((Path(__file__).parents[1] / "config" / "config.yaml").read_text())
    config["classifiers"]["models"]["frozen"] = {"features": "pretrained", "labels": "sae"}
    with pytest.raises(ConfigError, match=r"classifiers\.models\.frozen\.name"):
        validate_config(config)

"""The classifier stage (paper §5.2–5.3, Table 1, §6.3): biLM features, probes, baselines, coarse
labels, weak-to-strong, and scoring a corpus in parts.

Everything runs on a synthetic token stream built for the biLM trap (DESIGN §4 trap 3): tokens
follow an offset-2 chain (x_s = π(x_{s−2})), interrupted by marker tokens drawn independently at
each position, and a token's label is 1 iff the *next* token is a marker. The past says nothing
about the next marker, so no left-to-right feature can know the label; a right-to-left model that
learnt the chain reads its previous (= our next) token, so its features do, if it read reversed
text in training and at feature time, and its features were put back in token order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import MODEL, pretrain_spec
from tokenfilter.classify.bilm import (BiLM, ReversedBatches, Windowing, bilm_features, features_at,
                                       features_of_shard, left_features, right_features, stream_features, train_half)
from tokenfilter.classify.probe import (Probe, auroc, balanced_indices, binary_metrics, f1_max_threshold, fit_probe,
                                        sweep_layers, token_examples)
from tokenfilter.data.shards import DOC_DTYPE, TokenShard
from tokenfilter.model.gpt import GPT, GPTConfig
from tokenfilter.train.pretraining import PretrainingBatches

SPECIAL = {"eot": 0, "hidden": 1, "refusal": 2, "im_start": 3, "im_end": 4}
CHAIN = 24  # chain token ids 5 .. 28
MARKER = 5 + CHAIN
DOC_LEN = 256
BLOCK = 32
HALF = {**MODEL, "n_embd": 32, "block_size": BLOCK}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (two threads on a busy machine are many times slower);
    the setting is restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- a synthetic token shard --------------------------------------------------------------------------

def marker_stream(n: int, seed: int, marker_share: float = 0.2) -> np.ndarray:
    """Chain tokens x_s = π(x_{s−2}) (a fresh random token after a marker or a boundary), a
    marker at each position with probability ``marker_share`` drawn independently of everything,
    and an end-of-text token closing every ``DOC_LEN`` tokens."""
    rng = np.random.default_rng(seed)
    pi = np.random.default_rng(123).permutation(CHAIN)
    marker = rng.random(n) < marker_share
    fresh = rng.integers(0, CHAIN, n)
    chain = np.full(n, -1, dtype=np.int64)
    for s in range(n):
        if not marker[s]:
            chain[s] = pi[chain[s - 2]] if s >= 2 and chain[s - 2] >= 0 else fresh[s]
    tokens = np.where(chain < 0, MARKER, 5 + chain)
    tokens[DOC_LEN - 1::DOC_LEN] = SPECIAL["eot"]
    return tokens


def next_is_marker(tokens: np.ndarray) -> np.ndarray:
    """The labels of the trap: 1 iff the next token is a marker (end-of-text is never forget)."""
    return (np.r_[tokens[1:] == MARKER, False] & (tokens != SPECIAL["eot"])).astype(np.uint8)


def write_shard(directory: Path, tokens: np.ndarray, labels: np.ndarray, doc_len: int = DOC_LEN) -> TokenShard:
    """A token shard in the data stage's format (documents of ``doc_len`` tokens, EOT included)."""
    directory.mkdir(parents=True, exist_ok=True)
    n = len(tokens)
    tokens.astype("<u2").tofile(directory / "tokens.bin")
    labels.astype(np.uint8).tofile(directory / "labels.bin")
    starts = np.arange(0, n, doc_len)
    docs = np.zeros(len(starts), DOC_DTYPE)
    docs["doc_id"], docs["start"] = np.arange(len(starts)), starts
    docs["length"] = np.minimum(doc_len, n - starts)
    docs["n_forget"] = np.add.reduceat(labels.astype(np.int64), starts)
    docs.tofile(directory / "docs.bin")
    meta = {"n_tokens": n, "n_docs": len(starts), "n_forget_tokens": int(labels.sum()), "token_dtype": "<u2",
            "has_labels": True, "has_ambiguous": False, "max_doc_tokens": None, "n_truncated": 0, "vocab_size": 40,
            "special_ids": SPECIAL, "corpus": "synthetic", "split": None}
    (directory / "meta.json").write_text(json.dumps(meta))
    return TokenShard.open(directory)


@pytest.fixture(scope="module")
def marker_shard(tmp_path_factory) -> TokenShard:
    tokens = marker_stream(40_000, seed=1)
    return write_shard(tmp_path_factory.mktemp("marker") / "shard", tokens, next_is_marker(tokens))


def _random_gpt(seed: int, **overrides) -> GPT:
    torch.manual_seed(seed)
    fields = {k: v for k, v in {**HALF, **overrides}.items()}
    return GPT(GPTConfig(vocab_size=64, **fields)).eval()


@pytest.fixture(scope="module")
def trained_bilm(marker_shard, tmp_path_factory) -> dict:
    """Both halves of a tiny biLM trained on the marker stream through the one loop."""
    tmp = tmp_path_factory.mktemp("bilm")
    out = {}
    for name, reverse in (("left", False), ("right", True)):
        spec = pretrain_spec(marker_shard.directory, None, tmp, name, arm="baseline", model=dict(HALF), snapshots=0,
                             budget={"steps": 300})
        summary = train_half(spec, reverse=reverse)
        assert summary["bilm_direction"] == name and summary["spec"]["data"]["reverse"] is reverse
        out[name] = Path(spec.out_dir) / "model"
    return out


# --- the right half reads reversed text ------------------------------------------------------------

def test_reversed_batches_are_the_forward_windows_read_right_to_left(marker_shard):
    forward = PretrainingBatches(str(marker_shard.directory), "baseline", None, {}, seq_len=BLOCK, seed=3)
    reverse = ReversedBatches(PretrainingBatches(str(marker_shard.directory), "baseline", None, {}, seq_len=BLOCK,
                                                 seed=3))
    forward.start(10)
    reverse.start(10)
    f, r = forward.batch(2, 8, 4), reverse.batch(2, 8, 4)
    windows = forward.windows.tokens(forward.windows.positions(np.arange(8, 12)))  # (4, T + 1)
    flipped = torch.from_numpy(windows[:, ::-1].copy()).long()
    assert torch.equal(r.inputs, flipped[:, :-1]) and torch.equal(r.targets, flipped[:, 1:])
    assert torch.equal(r.inputs, f.targets.flip(1)) and torch.equal(r.weights, f.weights.flip(1))
    assert reverse.summary()["reversed"] is True


def test_the_right_half_refuses_token_arm_windows(marker_shard, tmp_path):
    from tokenfilter.errors import ConfigError

    class Masked:  # a token arm's source: its weights belong to forward targets
        arm, seq_len = "mask", BLOCK

    with pytest.raises(ConfigError, match="right-to-left"):
        ReversedBatches(Masked())  # type: ignore[arg-type]


# --- alignment ----------------------------------------------------------------------------------------

def test_left_features_see_the_past_and_right_features_the_future():
    """Position t: left summarises tokens ≤ t, right tokens ≥ t (right model on reversed tokens,
    re-reversed), so changing a later token moves only right features of earlier positions."""
    left, right = _random_gpt(0), _random_gpt(1)
    ids = torch.randint(5, 30, (2, 16))
    feats = bilm_features(left, right, ids, layer=0)
    d = left.config.n_embd
    assert feats.shape == (2, 16, 2 * d)
    t = 9
    changed = ids.clone()
    changed[:, t + 1:] = (changed[:, t + 1:] + 3) % 30  # the future of t
    moved = bilm_features(left, right, changed, layer=0)
    assert torch.equal(moved[:, : t + 1, :d], feats[:, : t + 1, :d])  # left of ≤ t: unchanged
    assert not torch.allclose(moved[:, t, d:], feats[:, t, d:])  # right of t reads t + 1 ..
    changed = ids.clone()
    changed[:, :t] = (changed[:, :t] + 3) % 30  # the past of t
    moved = bilm_features(left, right, changed, layer=0)
    assert torch.allclose(moved[:, t:, d:], feats[:, t:, d:], atol=1e-6)  # right of ≥ t: unchanged
    # The right feature of t is the right model's stream at the reversed position of t.
    from tokenfilter.model.hidden import residual_stream

    reversed_stream = residual_stream(right, ids.flip(1), 0)[0]
    assert torch.equal(right_features(right, ids, 0)[:, t], reversed_stream[:, 15 - t])


def test_windowed_features_do_not_depend_on_the_range_asked_for(marker_shard):
    """Grid windows: every range reads the same bits; arbitrary positions read the same values;
    each token has at least window − stride tokens of context on its side."""
    bilm = BiLM(_random_gpt(0), _random_gpt(1), 0, Windowing(window=BLOCK, stride=12, batch=3))
    tokens = marker_shard.tokens[:1000]
    whole = stream_features(bilm, tokens, 0, 1000)
    assert np.array_equal(stream_features(bilm, tokens, 137, 611), whole[137:611])
    positions = np.array([999, 3, 500, 501, 36, 0])
    assert np.allclose(features_at(bilm, tokens, positions), whole[positions], atol=1e-5)
    # Position 500 is in block 41 = [492, 504): its left window is [472, 504), its right [492, 524).
    ids = torch.from_numpy(np.asarray(tokens, dtype=np.int64))
    left = left_features(bilm.left, ids[None, 472:504], 0)[0, 500 - 472]
    right = right_features(bilm.right, ids[None, 492:524], 0)[0, 500 - 492]
    assert torch.allclose(torch.from_numpy(whole[500]), torch.cat([left, right]), atol=1e-5)
    # The shard version reads context beyond position 1000, as a part of a corpus does.
    of_shard = features_of_shard(bilm.left, bilm.right, marker_shard, 0, start=0, stop=1000, stride=12, batch=3)
    assert np.array_equal(of_shard, stream_features(bilm, marker_shard.tokens, 0, 1000))
    assert np.array_equal(of_shard[:960], whole[:960]) and not np.allclose(of_shard[-1], whole[-1])


# --- the trap (DESIGN §4 trap 3) ------------------------------------------------------------------------

def test_a_bilm_probe_reads_the_right_context_and_the_left_half_cannot(marker_shard, trained_bilm):
    from tokenfilter.model.checkpoint import load_model

    left, right = load_model(trained_bilm["left"]), load_model(trained_bilm["right"])
    bilm = BiLM(left, right, 0, Windowing.default(BLOCK, batch=64))
    train_x, train_y, _ = token_examples(bilm, marker_shard, [(0, 6000)])
    val_x, val_y, val_pos = token_examples(bilm, marker_shard, [(20_000, 24_000)])
    d = left.config.n_embd
    sample_x, sample_y, sample_pos = token_examples(bilm, marker_shard, [(0, 3000)], balance=True, max_per_class=200)
    assert sample_x.shape == (400, 2 * d) and sample_y.sum() == 200
    assert not np.isin(np.asarray(marker_shard.tokens)[sample_pos], list(SPECIAL.values())).any()
    both = fit_probe(train_x, train_y, val_x, val_y, Cs=(1.0,))
    left_only = fit_probe(train_x[:, :d], train_y, val_x[:, :d], val_y, Cs=(1.0,))
    assert both.info["val"]["f1"] > 0.9, both.info["val"]
    chance = 2 * val_y.mean() / (1 + val_y.mean())  # F1 of flagging everything
    assert left_only.info["val"]["f1"] < chance + 0.03 and abs(left_only.info["val"]["auroc"] - 0.5) < 0.05
    # The authors' extraction fed the right model unreversed tokens: its features then read the
    # past, and a probe trained on them is as blind as the left half.
    def unreversed(positions: np.ndarray, start: int, stop: int) -> np.ndarray:
        ids = torch.from_numpy(np.asarray(marker_shard.tokens[start:stop], dtype=np.int64).reshape(-1, BLOCK))
        return left_features(right, ids, 0).reshape(-1, d).numpy()[positions - start]

    _, _, train_pos = token_examples(bilm, marker_shard, [(0, 6000)])
    trap = fit_probe(np.c_[train_x[:, :d], unreversed(train_pos, 0, 6016)], train_y,
                     np.c_[val_x[:, :d], unreversed(val_pos, 20_000, 24_000)], val_y, Cs=(1.0,))
    assert trap.info["val"]["f1"] < chance + 0.05 and abs(trap.info["val"]["auroc"] - 0.5) < 0.1, trap.info["val"]


# --- probes and metrics ------------------------------------------------------------------------------

def test_the_threshold_is_the_f1_maximum_on_validation():
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0])
    # Flag ≥ 0.6: tp 4, flagged 5, positives 5 → F1 0.8; ≥ 0.3: tp 5 of 7 flagged → 0.833; ≥ 0.9: 0.571.
    threshold, f1 = f1_max_threshold(scores, labels)
    assert threshold == 0.3 and f1 == pytest.approx(2 * 5 / (7 + 5))
    assert binary_metrics(scores, labels, threshold)["f1"] == pytest.approx(f1)
    # Ties flag together: a cut between equal scores is not a candidate.
    assert f1_max_threshold(np.array([0.5, 0.5, 0.1]), np.array([1, 0, 0])) == (0.5, pytest.approx(2 / 3))
    assert f1_max_threshold(np.array([0.2, 0.4]), np.array([0, 0]))[1] == 0.0


def test_auroc_and_metrics_agree_with_hand_counts():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.random(500) < 0.3
    scores = np.round(labels * 0.3 + rng.random(500), 1)  # many ties
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    m = binary_metrics(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0]), 0.5)
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"], m["auroc"]) == (0.5, 0.5, 0.5, 0.5, 0.75)


def test_a_probe_fits_saves_and_scores_the_same(tmp_path):
    rng = np.random.default_rng(0)
    direction = rng.normal(size=8)
    x = rng.normal(size=(3000, 8)) * np.linspace(0.1, 10, 8) + 5.0  # scales and offsets: standardised
    y = (x - 5.0) / np.linspace(0.1, 10, 8) @ direction + 0.3 * rng.normal(size=3000) > 1.0
    probe = fit_probe(x[:2000], y[:2000], x[2000:], y[2000:], Cs=(0.01, 1.0), layer=4, seed=1)
    assert [row["C"] for row in probe.info["sweep"]] == [0.01, 1.0] and probe.layer == 4
    assert probe.info["val"]["f1"] > 0.9 and probe.info["n_train"] == 2 * min(y[:2000].sum(), (~y[:2000]).sum())
    assert probe.threshold == f1_max_threshold(probe.predict_proba(x[2000:]), y[2000:])[0]
    probe.save(tmp_path / "probe.npz")
    loaded = Probe.load(tmp_path / "probe.npz")
    assert np.array_equal(loaded.predict_proba(x), probe.predict_proba(x)) and loaded.info == json.loads(
        json.dumps(probe.info))
    # Centred scores cross 0.5 exactly where the probe flags.
    assert np.array_equal(probe.centred_scores(x) >= 0.5, probe.predict(x))
    # A row's score does not depend on the rows scored with it (annotation parts must agree).
    assert np.array_equal(probe.logits(x[5:6]), probe.logits(x)[5:6])
    balanced = balanced_indices(y, seed=0)
    assert y[balanced].sum() == (~y[balanced]).sum()


def test_the_layer_sweep_keeps_the_best_layer():
    rng = np.random.default_rng(1)
    y = rng.random(1200) < 0.5
    signal = {0: 0.1, 1: 2.0, 2: 0.5}  # layer 1 separates best

    def data(layer: int):
        x = rng.normal(size=(1200, 4)) + signal[layer] * y[:, None]
        return x[:800], y[:800], x[800:], y[800:]

    probe, rows = sweep_layers(data, [0, 1, 2], Cs=(1.0,))
    assert probe.layer == 1 and [r["layer"] for r in rows] == [0, 1, 2]


# --- baselines ---------------------------------------------------------------------------------------------

def test_the_context_free_baseline_learns_each_ids_forget_share(tmp_path):
    """Ids 5–6 are always forget, 7 is forget in half its contexts, 8–9 never: p(forget | id)
    recovers the shares, and its F1 is capped by the ambiguous id, which only context resolves."""
    from tokenfilter.classify.baselines import ContextFreeBaseline

    rng = np.random.default_rng(0)
    ids = rng.choice([0, 5, 6, 7, 8, 9], size=20_000)
    labels = np.isin(ids, [5, 6]) | ((ids == 7) & (rng.random(20_000) < 0.5))
    labels[ids == 0] = False
    model = ContextFreeBaseline.fit(ids[:15_000], labels[:15_000], 16, ids[15_000:], labels[15_000:],
                                    special_ids=SPECIAL.values())
    p = model.p_forget
    assert p[0] == 0.0 and p[5] > 0.99 and p[9] < 0.01 and abs(p[7] - 0.5) < 0.05
    assert p[12] == pytest.approx(model.prior)  # never seen: the prior
    # Best F1: flag 5, 6 and 7 (0.5 ≥ 2/3 of the ambiguous id's cost) → tp = all forget, fp = half of 7s.
    assert model.threshold == pytest.approx(p[7])
    val = ids[15_000:] != 0
    expected = binary_metrics(np.isin(ids[15_000:], [5, 6, 7])[val], labels[15_000:][val], 0.5)["f1"]
    assert model.info["val"]["f1"] == pytest.approx(expected)
    model.save(tmp_path / "cf.npz")
    assert np.array_equal(ContextFreeBaseline.load(tmp_path / "cf.npz").predict(ids), model.predict(ids))


# --- the masked-LM encoder baseline -----------------------------------------------------------------------

@pytest.fixture
def roberta_in_the_loop(monkeypatch):
    """The loop's ``_build_model`` with the ``architecture: roberta`` branch the classifier stage
    asks for (exactly the lines proposed for tokenfilter.train.loop)."""
    from tokenfilter.classify.mlm import build_encoder
    from tokenfilter.train import loop

    original = loop._build_model

    def build(spec, source):
        fields = dict(spec.model or {})
        if spec.init_from == "scratch" and fields.pop("architecture", None) == "roberta":
            return build_encoder(source.model_defaults(), fields)
        return original(spec, source)

    monkeypatch.setattr(loop, "_build_model", build)


def test_the_mlm_objective_trains_an_encoder_through_the_one_loop(marker_shard, tmp_path, roberta_in_the_loop):
    from tokenfilter.classify.mlm import EncoderFeatures, load_encoder
    from tokenfilter.io import read_jsonl
    from tokenfilter.train.pretraining import pretrain

    model = {"architecture": "roberta", "n_layer": 2, "n_embd": 32, "n_head": 2, "block_size": BLOCK, "dropout": 0.0}
    spec = pretrain_spec(marker_shard.directory, None, tmp_path, "mlm", arm="baseline", model=model, snapshots=0,
                         objective={"kind": "mlm"}, budget={"steps": 60}, lr=3e-3)
    summary = pretrain(spec)
    log = read_jsonl(Path(spec.out_dir) / "train_log.jsonl")
    first, last = np.mean([r["loss"] for r in log[:5]]), np.mean([r["loss"] for r in log[-5:]])
    assert last < first - 0.5, (first, last)
    encoder = load_encoder(str(Path(spec.out_dir) / "model"))
    assert encoder.config.mask_token_id == 64 and summary["steps"] == 60
    # Its features for probes: layer 1, windows centred on the tokens they score.
    features = EncoderFeatures(encoder, 1, Windowing(BLOCK, 16, 4))
    whole = stream_features(features, marker_shard.tokens[:300], 0, 300)
    assert whole.shape == (300, 32)
    assert np.array_equal(stream_features(features, marker_shard.tokens[:300], 70, 130), whole[70:130])


def test_mlm_masking_is_fifteen_percent_split_80_10_10():
    from tokenfilter.classify.mlm import MLMObjective

    objective = MLMObjective()
    objective.mask_id, objective.random_vocab = 99, 50
    torch.manual_seed(0)
    inputs = torch.randint(5, 50, (400, 100))
    corrupted, masked, k = objective.corrupt(inputs, torch.ones(400, 100))
    assert k == 15 and torch.equal(masked.sum(1), torch.full((400,), 15.0))
    chosen = masked.bool()
    assert torch.equal(corrupted[~chosen], inputs[~chosen])  # unmasked positions untouched
    as_mask = (corrupted[chosen] == 99).float().mean()
    kept = (corrupted[chosen] == inputs[chosen]).float().mean()
    assert abs(as_mask - 0.8) < 0.02 and 0.08 < kept < 0.13  # 10% kept, plus random draws of the same id


# --- document probe ----------------------------------------------------------------------------------------

def test_document_features_are_means_of_the_documents_token_features(marker_shard):
    from tokenfilter.classify.document import document_features, document_truth_labels, pooled_ranges

    bilm = BiLM(_random_gpt(0), _random_gpt(1), 0, Windowing(BLOCK, 16, 8))
    starts, stops = pooled_ranges(marker_shard, [0, 3], max_tokens=100)
    assert starts.tolist() == [0, 768] and stops.tolist() == [100, 868]
    pooled = document_features(bilm, marker_shard, [0, 3], max_tokens=100)
    tokens = stream_features(bilm, marker_shard.tokens, 0, 1024)
    assert np.allclose(pooled[1], tokens[768:868].mean(0), atol=1e-5)
    # Full documents: EOT excluded from the pool.
    assert np.allclose(document_features(bilm, marker_shard, [1])[0], tokens[256:511].mean(0), atol=1e-5)
    share = marker_shard.docs["n_forget"] / 255
    assert np.array_equal(document_truth_labels(marker_shard, 0.2), share >= 0.2)


def test_a_document_probe_learns_document_labels_from_pooled_features(marker_shard):
    from tokenfilter.classify.document import document_truth_labels, fit_document_probe

    bilm = BiLM(_random_gpt(0), _random_gpt(1), 0, Windowing(BLOCK, 16, 64))
    # Documents whose marker share is high: pooled features carry how often the marker occurs.
    share = marker_shard.docs["n_forget"] / 255
    labels = document_truth_labels(marker_shard, float(np.median(share)))
    docs = np.arange(len(labels))
    probe = fit_document_probe(bilm, marker_shard, docs[:100], labels[:100], docs[100:], labels[100:],
                               max_tokens=128, Cs=(1.0,))
    assert probe.info["level"] == "document" and probe.info["max_tokens"] == 128
    assert probe.info["val"]["auroc"] > 0.7, probe.info["val"]


# --- scoring a corpus in parts ---------------------------------------------------------------------------

def _classifier(tmp_path: Path, with_document_probe: bool):
    from tokenfilter.classify.annotate import save_classifier

    left, right = _random_gpt(0), _random_gpt(1)
    for name, model in (("left", left), ("right", right)):
        model.save_pretrained(tmp_path / name)
    rng = np.random.default_rng(0)
    probe = Probe(rng.normal(size=64), 0.1, rng.normal(size=64) * 0.1, np.ones(64), threshold=0.4, C=1.0, layer=0)
    document = Probe(rng.normal(size=64), -0.2, np.zeros(64), np.ones(64), threshold=0.6, C=1.0, layer=0)
    directory = tmp_path / ("with_doc" if with_document_probe else "token_only")
    config = save_classifier(directory, probe, left=tmp_path / "left", right=tmp_path / "right", window=BLOCK,
                             stride=10, batch=4, document_probe=document if with_document_probe else None,
                             document_max_tokens=100, copy_models=with_document_probe)
    assert (config["left"] == "left") is with_document_probe  # copied in, or referenced by absolute path
    return directory


@pytest.mark.parametrize("with_document_probe", [True, False])
def test_score_range_gives_the_same_scores_in_one_part_or_three(marker_shard, tmp_path, with_document_probe):
    from tokenfilter.classify.annotate import load_classifier, score_range

    classifier = load_classifier(_classifier(tmp_path, with_document_probe), device="cpu")
    n = 3 * DOC_LEN + 40  # four documents, the last one short; parts cut inside documents and windows
    shard = _prefix_shard(marker_shard, tmp_path / "prefix", n)
    whole_tokens, whole_docs = score_range(classifier, shard, 0, n)
    parts = [(0, 301), (301, 517), (517, n)]
    pieces = [score_range(classifier, shard, a, b) for a, b in parts]
    assert np.array_equal(np.concatenate([p[0] for p in pieces]), whole_tokens)
    assert np.array_equal(np.concatenate([p[1] for p in pieces]), whole_docs)
    assert [len(p[1]) for p in pieces] == [2, 1, 1]  # documents belong to the part of their first token
    assert whole_tokens.dtype == np.float32 and len(whole_docs) == 4
    eot = np.asarray(shard.tokens) == SPECIAL["eot"]
    assert not whole_tokens[eot].any() and whole_tokens[~eot].min() > 0
    # Scores are the probe's, centred at its threshold.
    feats = stream_features(classifier.extractor, shard.tokens, 0, n)
    expected = classifier.token_probe.centred_scores(feats).astype(np.float32)
    assert np.allclose(whole_tokens[~eot], expected[~eot], atol=1e-6)
    if with_document_probe:
        pooled = feats[256:356].mean(0)
        assert whole_docs[1] == pytest.approx(classifier.document_probe.centred_scores(pooled[None])[0], abs=1e-5)
    else:  # the share of the document's text tokens the token probe flags
        assert whole_docs[1] == pytest.approx(np.mean(whole_tokens[256:511] >= 0.5))


def _prefix_shard(shard: TokenShard, directory: Path, n: int) -> TokenShard:
    tokens = np.asarray(shard.tokens[:n]).astype(np.int64)
    return write_shard(directory, tokens, np.asarray(shard.labels[:n]))


def test_a_context_free_classifier_scores_from_ids_alone(marker_shard, tmp_path):
    from tokenfilter.classify.annotate import load_classifier, save_classifier, score_range
    from tokenfilter.classify.baselines import ContextFreeBaseline

    tokens, labels = np.asarray(marker_shard.tokens[:5000]), np.asarray(marker_shard.labels[:5000])
    baseline = ContextFreeBaseline.fit(tokens[:4000], labels[:4000], 64, tokens[4000:], labels[4000:],
                                       special_ids=SPECIAL.values())
    save_classifier(tmp_path / "cf", baseline, features="context_free")
    classifier = load_classifier(tmp_path / "cf")
    scores, docs = score_range(classifier, marker_shard, 100, 900)
    assert np.array_equal(scores >= 0.5, baseline.predict(tokens[100:900]) & (tokens[100:900] != 0))
    assert len(docs) == 3  # documents starting at 256, 512, 768


# --- label granularity (E16) -----------------------------------------------------------------------------

def test_tokens_inherit_their_sentences_and_documents_labels():
    from tokenfilter.classify.granularity import sentence_spans, token_labels

    text = "The heart pumps blood. Rivers flow to the sea! Fever follows the infection.\nBirds fly."
    assert [text[a:b] for a, b in sentence_spans(text)] == [
        "The heart pumps blood.", "Rivers flow to the sea!", "Fever follows the infection.", "Birds fly."]
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]  # one token per word
    forget = [(4, 9), (10, 15), (47, 52), (65, 75)]  # heart, pumps; Fever; infection.
    token_level = token_labels(text, words, "token", forget)
    assert [text[a:b] for (a, b), f in zip(words, token_level) if f] == ["heart", "pumps", "Fever", "infection."]
    sentence_level = token_labels(text, words, "sentence", forget, min_share=0.3)
    assert sentence_level.tolist() == [1] * 4 + [0] * 5 + [1] * 4 + [0] * 2  # "Fever … infection." is 15/28 forget
    document_level = token_labels(text, words, "document", forget, min_share=0.3)
    assert not document_level.any()  # 25 of 86 characters: below 30%
    assert token_labels(text, words, "document", forget, min_share=0.2).all()
    judged = token_labels(text, words, "sentence", is_forget=lambda s: "sea" in s)
    assert judged.tolist() == [0] * 4 + [1] * 5 + [0] * 6
    assert token_labels(text, words + [(86, 86)], "document", doc_label=True).tolist() == [True] * 15 + [False]


def test_granular_labels_for_a_shard_line_up_with_its_tokens(tiny_world):
    from tokenfilter.classify.granularity import labels_for_shard

    shard = TokenShard.open(tiny_world["shards"]["train"])
    token_level = labels_for_shard(shard, tiny_world["out"]["corpus"], tiny_world["tokenizer"], "token")
    assert np.array_equal(token_level, np.asarray(shard.labels))  # the data stage's own alignment
    sentence_level = labels_for_shard(shard, tiny_world["out"]["corpus"], tiny_world["tokenizer"], "sentence")
    document_level = labels_for_shard(shard, tiny_world["out"]["corpus"], tiny_world["tokenizer"], "document",
                                      use_doc_label=True)
    eot = np.asarray(shard.tokens) == shard.meta["special_ids"]["eot"]
    assert not sentence_level[eot].any() and not document_level[eot].any()
    # Coarser labels cover more tokens, and recall most of the token-level forget tokens.
    truth = token_level.astype(bool)
    assert truth.sum() < sentence_level.sum() and (sentence_level.astype(bool) & truth).sum() > 0.8 * truth.sum()
    assert document_level.sum() > 0


# --- weak-to-strong (E17) ----------------------------------------------------------------------------------

def test_performance_gap_recovered():
    from tokenfilter.classify.weak_to_strong import performance_gap_recovered, split_pools

    assert performance_gap_recovered(0.7, 0.8, 0.9) == pytest.approx(0.5)
    assert performance_gap_recovered(0.7, 0.7, 0.9) == 0.0
    assert performance_gap_recovered(0.7, 0.95, 0.9) == pytest.approx(1.25)  # the student beat the ceiling
    assert performance_gap_recovered(0.7, 0.65, 0.9) == pytest.approx(-0.25)  # worse than its teacher
    assert np.isnan(performance_gap_recovered(0.9, 0.8, 0.9))  # no gap to recover
    pools = split_pools(100, seed=1)
    assert [len(p) for p in pools] == [40, 40, 20] and len(np.unique(np.concatenate(pools))) == 100


def test_a_strong_student_learns_from_a_weak_teacher():
    from tokenfilter.classify.weak_to_strong import Examples, split_pools, weak_to_strong

    rng = np.random.default_rng(0)
    n = 3000
    truth = rng.random(n) < 0.5
    signal = truth * 2.0 - 1.0
    weak = np.c_[signal + 1.5 * rng.normal(size=n), rng.normal(size=(n, 3))]  # a noisy view
    strong = np.c_[signal + 0.3 * rng.normal(size=n), rng.normal(size=(n, 3))]  # a clean one
    examples = Examples(weak, strong, truth)
    teacher, student, test = (examples.take(p) for p in split_pools(n, seed=0))
    points = weak_to_strong(teacher, student, test, amounts=[40, 400], Cs=(1.0,))
    assert [p.amount for p in points] == [40, 400]
    for point in points:
        assert point.strong_on_truth > point.weak and 0.6 < point.weak_label_accuracy < 0.9
        assert point.pgr == pytest.approx((point.strong_on_weak - point.weak) / (point.strong_on_truth - point.weak))
        assert point.strong_on_weak > point.weak  # the student denoises its teacher's errors


def test_weak_to_strong_claims_read_the_gain_against_its_noise():
    """The token claim holds when the student clearly beats its teacher; the document claim (a gain
    below 0.05 accuracy) holds when the gain is below that bar by more than two standard errors,
    and is inconclusive on a handful of documents."""
    import pandas as pd

    from tokenfilter.classify.report import weak_to_strong_claims

    def rows(level, weak, student, n):
        return [{"level": level, "amount": a, "weak": weak, "strong_on_weak": student, "strong_on_truth": 0.95,
                 "pgr": (student - weak) / (0.95 - weak), "weak_label_accuracy": weak, "n_test": n} for a in (10, 100)]

    clear = pd.DataFrame(rows("token", 0.70, 0.85, 4000) + rows("document", 0.80, 0.80, 4000))
    assert weak_to_strong_claims(clear, "weak", "strong")["verdict"].tolist() == ["holds", "holds"]
    against = pd.DataFrame(rows("token", 0.85, 0.70, 4000) + rows("document", 0.70, 0.85, 4000))
    assert weak_to_strong_claims(against, "weak", "strong")["verdict"].tolist() == ["does not hold", "does not hold"]
    few = pd.DataFrame(rows("token", 0.70, 0.72, 50) + rows("document", 0.80, 0.80, 30))
    assert weak_to_strong_claims(few, "weak", "strong")["verdict"].tolist() == ["inconclusive", "inconclusive"]
    assert weak_to_strong_claims(few, None, None)["verdict"].tolist() == ["not measured", "not measured"]


def test_weak_to_strong_levels_drop_amounts_beyond_the_teacher_pool():
    from tokenfilter.classify.weak_to_strong import Examples, run_levels

    rng = np.random.default_rng(1)
    n = 500
    truth = rng.random(n) < 0.5
    weak = np.c_[truth + rng.normal(size=n)]
    strong = np.c_[truth + 0.2 * rng.normal(size=n)]
    table = run_levels({"token": Examples(weak, strong, truth)}, {"token": [50, 150, 10_000]}, Cs=(1.0,))
    assert table["amount"].tolist() == [50, 150] and set(table["level"]) == {"token"}
    assert (table["n_test"] == 100).all()

"""SAE token labels (paper §5.1): the token rule, retokenisation, the Gemma Scope layer, SAE training.

Everything runs offline on hand-built activations, tiny random models and a tiny SAE: the
paper's Gemma 2 9B and Gemma Scope weights are never needed (their loading path is exercised
with a stand-in for the download, which is all that differs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokenfilter.label.token_rule import (LatentStats, expand_to_neighbours, forget_tokens, latent_stats,
                                          retokenize)

# --- the token rule ------------------------------------------------------------------------------


def test_a_seed_needs_k_sd_on_m_latents():
    """Paper §5.1: a token is forget if it is ≥ k SD above the mean on ≥ m latents (k=4, m=2)."""
    mean = np.array([0.0, 0.5, 0.0])
    std = np.array([1.0, 1.0, 0.0])  # latent 2 never varied on the sample: it never seeds
    acts = torch.tensor([
        [4.0, 4.5, 9.0],  # exactly 4 SD on latents 0 and 1: a seed ("≥")
        [5.0, 4.4, 9.0],  # latent 1 is 3.9 SD above its mean: only one latent counts
        [0.0, 0.0, 0.0],
        [3.9, 5.0, 0.0],  # one latent
        [6.0, 6.0, 0.0],  # a seed, but special
        [6.0, 6.0, 0.0],
    ])
    special = np.array([False, False, False, False, True, False])
    seeds = forget_tokens(acts, mean, std, special=special, expand=False)
    assert seeds.tolist() == [True, False, False, False, False, True]
    assert forget_tokens(acts, mean, std, special=special, expand=False, min_latents=1).tolist() == \
        [True, True, False, True, False, True]
    assert forget_tokens(acts, mean, std, special=special, expand=False, k_sd=3.0).tolist() == \
        [True, True, False, True, False, True]
    # A latent that never fired (mean 0, SD 0) has threshold 0: zeros must not count as "≥ 0 SD above".
    assert not forget_tokens(torch.zeros(4, 3), np.zeros(3), np.zeros(3), min_latents=1).any()


def test_neighbour_expansion_runs_to_convergence_and_stops_at_special_tokens():
    """Labels grow one neighbour per step through tokens with a positive activation, until nothing
    changes; a special token is never labelled and never carries a label across."""
    # roles: c = cold (no positive activation), w = warm (positive on one latent), s = seed, x = special
    roles = "cwwwswwxwwcw"
    values = {"c": [0.0, 0.0], "w": [0.5, 0.0], "s": [5.0, 5.0], "x": [5.0, 5.0]}
    acts = torch.tensor([[values[r] for r in roles]])  # (1, T, 2)
    special = torch.tensor([[r == "x" for r in roles]])
    mean, std = np.zeros(2), np.ones(2)
    labels = forget_tokens(acts, mean, std, special=special)
    #                     c  w  w  w  s  w  w  x  w  w  c  w
    assert labels[0].tolist() == [0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]  # three steps to the left, two right
    unblocked = forget_tokens(acts, mean, std)  # the same token unmarked is a seed and bridges
    assert unblocked[0].tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    # Rows are separate sequences: a run at the end of one row does not continue into the next.
    rows = torch.stack([torch.tensor([values[r] for r in "wwws"]), torch.tensor([values[r] for r in "wwww"])])
    assert forget_tokens(rows, mean, std).tolist() == [[True] * 4, [False] * 4]

    # The one-pass fixed point equals the rule applied literally, step by step, until convergence.
    rng = np.random.default_rng(0)
    most_steps = 0
    for _ in range(200):
        seeds = rng.random(40) < 0.05
        warm = rng.random(40) < 0.7
        literal, steps = seeds.copy(), 0
        while True:
            neighbour = np.zeros_like(literal)
            neighbour[1:] |= literal[:-1]
            neighbour[:-1] |= literal[1:]
            grown = literal | (warm & neighbour)
            if (grown == literal).all():
                break
            literal, steps = grown, steps + 1
        most_steps = max(most_steps, steps)
        got = expand_to_neighbours(torch.from_numpy(seeds), torch.from_numpy(warm)).numpy()
        np.testing.assert_array_equal(got, literal)
    assert most_steps >= 5  # the comparison covered growth over many steps


def test_latent_stats_stream_in_float64():
    rng = np.random.default_rng(1)
    # A mean that dwarfs the spread: sums of squares in float32 would lose the SD entirely.
    data = 1e6 + rng.normal(0.0, 0.01, size=(1000, 3)) * np.array([1.0, 2.0, 0.0])
    parts = [data[:1], torch.from_numpy(data[1:337]), data[337:338], data[338:]]
    stats = latent_stats(parts)
    assert stats.count == 1000
    np.testing.assert_allclose(stats.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, data.std(axis=0), rtol=1e-6, atol=1e-12)
    assert stats.std[2] == 0.0
    assert latent_stats([], n_latents=3).count == 0


def test_latent_stats_save_and_load(tmp_path):
    stats = LatentStats.empty(2).update(np.array([[1.0, 2.0], [3.0, 5.0]]))
    stats.save(tmp_path / "stats.npz")
    loaded = LatentStats.load(tmp_path / "stats.npz")
    assert loaded.count == 2
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_array_equal(loaded.std, stats.std)


# --- retokenisation ------------------------------------------------------------------------------

SENTENCES = [
    "The patient took aspirin for the fever, and the infection cleared within a week.",
    "Cells divide quickly in the host tissue while the virus spreads to new cells.",
    "A dose of penicillin treats the infection; the fever breaks after two days.",
    "The market sold bread, cheese and apples to every traveller on the road.",
    "In the garden, the gardener planted beans beside the old stone wall.",
]
FORGET_WORDS = ("patient", "aspirin", "fever", "infection", "penicillin", "dose")


def _word_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for word in FORGET_WORDS:
        start = text.find(word)
        while start >= 0:
            spans.append((start, start + len(word)))
            start = text.find(word, start + 1)
    return spans


def _covered(offsets: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for (start, end), label in zip(offsets, labels):
        if label:
            mask[start:end] = True
    return mask


def test_retokenized_labels_agree_between_two_tokenizers():
    """Labels carried from one BPE to another (via character spans) equal the labels the second
    BPE gets from the same character spans directly, in both directions; under the paper's
    literal rule no labelled character is ever lost."""
    from tokenfilter.data.alignment import token_labels_from_spans
    from tokenfilter.data.tokenizer import build_tokenizer

    corpus = SENTENCES * 4
    small = build_tokenizer("train", corpus, vocab_size=300)  # few merges: words split into pieces
    large = build_tokenizer("train", corpus, vocab_size=1000)  # whole words
    any_split_differs = False
    for text in SENTENCES:
        (_, off_s), (_, off_l) = small.encode_batch([text])[0], large.encode_batch([text])[0]
        any_split_differs |= len(off_s) != len(off_l)
        spans = _word_spans(text)
        truth_s, truth_l = token_labels_from_spans(off_s, spans), token_labels_from_spans(off_l, spans)
        np.testing.assert_array_equal(retokenize(truth_s, off_s, off_l, text=text), truth_l)
        np.testing.assert_array_equal(retokenize(truth_l, off_l, off_s, text=text), truth_s)
        # The paper's rule as written: everything labelled before is still covered after.
        for labels, src, dst in ((truth_s, off_s, off_l), (truth_l, off_l, off_s)):
            carried = retokenize(labels, src, dst)
            assert (carried >= token_labels_from_spans(dst, spans)).all()
            assert (_covered(dst, carried, len(text)) >= _covered(src, labels, len(text))).all()
        # A span inside a word labels the tokens holding those characters, in either tokenizer.
        start = text.find("e", 5)
        sub_s = token_labels_from_spans(off_s, [(start, start + 1)])
        assert _covered(off_l, retokenize(sub_s, off_s, off_l, text=text), len(text))[start]
    assert any_split_differs
    with pytest.raises(ValueError, match="labels for"):
        retokenize([True], np.zeros((2, 2)), np.zeros((2, 2)))


# --- SAE plumbing --------------------------------------------------------------------------------


def test_endless_batches_cycle_and_reshuffle():
    from tokenfilter.label.sae import endless_batches

    data = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 3)
    batches = endless_batches(data, batch_size=4, seed=0)
    rows = torch.cat([next(batches) for _ in range(5)])[:, 0]  # two passes of 10 rows
    assert sorted(rows[:10].tolist()) == sorted(rows[10:].tolist()) == list(range(10))
    assert rows[:10].tolist() != rows[10:].tolist()  # reshuffled
    again = endless_batches(data, batch_size=4, seed=0)
    assert torch.equal(torch.cat([next(again) for _ in range(5)])[:, 0], rows)  # the seed fixes the order

    calls = []

    def one_pass():
        calls.append(1)
        yield data[:6].reshape(2, 3, 3)  # (batch, T, d) chunks are flattened to rows
        yield data[6:]

    stream = endless_batches(one_pass, batch_size=4, seed=0, buffer_rows=5)
    seen = torch.cat([next(stream) for _ in range(10)])[:, 0]
    assert len(calls) == 4  # the source is read again for every pass
    assert torch.bincount(seen.long()).tolist() == [4] * 10  # four passes, each row once per pass
    one_shot = endless_batches(iter([data[:3], data[3:]]), batch_size=7)
    assert len([next(one_shot) for _ in range(4)]) == 4  # a one-shot iterator is replayed from memory
    with pytest.raises(ValueError, match="no rows"):
        next(endless_batches(lambda: iter([]), batch_size=2))


def test_top_contexts_for_the_judge():
    from tokenfilter.judge.world import WorldJudge
    from tokenfilter.label.sae import DocumentLatents, top_contexts

    def doc(text, words, acts, forget):
        starts = [text.index(w) for w in words]
        offsets = np.array([[0, 0]] + [[s, s + len(w)] for s, w in zip(starts, words)])  # a BOS first
        return DocumentLatents(text, offsets, np.array(acts, dtype=np.float32), forget_spans=forget)

    text_a = "the fever rose and the bread was warm"
    text_b = "a high fever and a cough"
    docs = [
        # latents: 7 (medical), 3 (bread), 5 (never fires). BOS activates most but has no text.
        doc(text_a, ["fever", "rose", "bread"], [[9, 9, 0], [2, 0, 0], [1, 0, 0], [0, 3, 0]], ((4, 9),)),
        doc(text_b, ["high", "fever", "cough"], [[9, 9, 0], [1, 0, 0], [3, 0, 0], [2.5, 0, 0]], ((7, 12), (19, 24))),
    ]
    evidence = top_contexts(docs, [7, 3, 5], n_top=2, window=6)
    assert sorted(evidence) == [3, 5, 7]
    medical, bread, silent = evidence[7], evidence[3], evidence[5]
    assert [c.activation for c in medical.contexts] == [3.0, 2.0]  # one context per document, best first
    for context in medical.contexts:
        (start, end), = context.highlight
        assert context.text[start:end] == "fever"
        assert len(context.text) <= len("fever") + 2 * 6
    best = medical.contexts[0]
    assert best.text == " high fever and a" and best.forget_spans == ((6, 11),)  # shifted into the window
    assert [c.text[slice(*c.highlight[0])] for c in bread.contexts] == ["bread"]
    assert silent.contexts == ()
    judge = WorldJudge()
    assert judge.latent_is_forget(medical) and not judge.latent_is_forget(bread)
    two_each = top_contexts(docs, [7, 3, 5], n_top=3, per_document=2)[7]
    assert [c.activation for c in two_each.contexts] == [3.0, 2.5, 2.0]


def test_gemma_scope_reads_the_output_of_its_block(monkeypatch, tmp_path):
    """DESIGN trap 6: Gemma Scope's layer-L SAE reads resid_post of block L, transformers'
    hidden_states[L + 1]. The paper's SAE is loaded through sae-lens's own Gemma Scope path with
    only the download replaced by tiny random weights, then encodes a tiny Gemma-2's stream."""
    import huggingface_hub.constants
    from sae_lens import JumpReLUSAE
    from sae_lens.loading.pretrained_sae_loaders import NAMED_PRETRAINED_SAE_LOADERS, get_gemma_2_config_from_hf
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from tokenfilter.errors import ConfigError
    from tokenfilter.label.sae import (GEMMA_SCOPE_RELEASE, GEMMA_SCOPE_SAE_ID, encode, gemma_scope_hidden_index,
                                       load_sae, resid_post, sae_activations, sae_layer)

    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=16, attn_implementation="eager")
    model = Gemma2ForCausalLM(config).eval()
    ids = torch.randint(0, 64, (2, 9))
    with torch.no_grad():
        hidden = model(ids, output_hidden_states=True).hidden_states
    for layer in (0, 1):
        assert torch.equal(hidden[gemma_scope_hidden_index(layer)], resid_post(model, ids, layer))
    last = resid_post(model, ids, 2)  # the last entry is after the final norm, not the block's output
    assert not torch.allclose(hidden[3], last) and torch.allclose(hidden[3], model.model.norm(last))

    # Offline with an empty cache: a clear error instead of a download.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="local Hugging Face cache"):
        load_sae(GEMMA_SCOPE_RELEASE, GEMMA_SCOPE_SAE_ID)

    requested = {}
    g = torch.Generator().manual_seed(1)
    weights = {"W_enc": torch.randn(32, 64, generator=g) * 0.5, "W_dec": torch.randn(64, 32, generator=g),
               "b_enc": torch.randn(64, generator=g) * 0.1, "b_dec": torch.randn(32, generator=g),
               "threshold": torch.rand(64, generator=g)}

    def tiny_download(repo_id, folder_name, device="cpu", force_download=False, cfg_overrides=None):
        cfg = get_gemma_2_config_from_hf(repo_id, folder_name, device, force_download, cfg_overrides)
        requested.update(repo_id=repo_id, folder=folder_name, d_in=cfg["d_in"], d_sae=cfg["d_sae"])
        return {**cfg, "d_in": 32, "d_sae": 64}, {k: v.clone() for k, v in weights.items()}, None

    monkeypatch.setitem(NAMED_PRETRAINED_SAE_LOADERS, "gemma_2", tiny_download)
    sae = load_sae(GEMMA_SCOPE_RELEASE, GEMMA_SCOPE_SAE_ID)
    assert requested == {"repo_id": "google/gemma-scope-9b-pt-res", "folder": "layer_31/width_16k/average_l0_114",
                         "d_in": 3584, "d_sae": 16384}
    assert isinstance(sae, JumpReLUSAE) and sae_layer(sae) == 31 and gemma_scope_hidden_index(31) == 32

    # The tiny model has 3 blocks, so its SAE reads block 1; the code path is the paper's.
    acts = sae_activations(model, sae, ids, layer=1)
    pre = hidden[2] @ weights["W_enc"] + weights["b_enc"]  # Gemma Scope does not subtract b_dec first
    expected = torch.relu(pre) * (pre > weights["threshold"])
    assert acts.shape == (2, 9, 64) and (acts > 0).any() and (acts == 0).any()
    torch.testing.assert_close(acts, expected)
    picked = [5, 0, 17]
    torch.testing.assert_close(sae_activations(model, sae, ids, layer=1, latents=picked), expected[..., picked])
    torch.testing.assert_close(encode(sae, hidden[2], batch_size=5), expected)  # batching changes nothing
    with pytest.raises(ValueError, match="d_in"):
        encode(sae, torch.zeros(3, 31))


def test_train_a_topk_sae_on_our_own_activations(tmp_path):
    """sae-lens's SAETrainer, fed our own activations (sparse combinations of 24 directions in
    16 dimensions), learns to reconstruct them far better than at initialisation, and what
    it saves loads back as the same SAE."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    from tokenfilter.label.sae import encode, load_sae, sae_layer, train_sae

    g = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(24, 16, generator=g), dim=-1)
    codes = torch.zeros(4096, 24)
    active = torch.rand(4096, 24, generator=g).argsort(dim=-1)[:, :3]
    codes.scatter_(1, active, torch.rand(4096, 3, generator=g) * 1.5 + 0.5)
    data = codes @ directions + 0.3  # an offset, as residual streams have

    def unexplained(sae) -> float:
        with torch.no_grad():
            rec = sae.decode(encode(sae, data))
        return float(((rec - data) ** 2).sum() / ((data - data.mean(0)) ** 2).sum())

    rng_before = torch.get_rng_state()
    path = train_sae(data, d_in=16, d_sae=32, k=4, total_samples=32768, batch_size=128, lr=1e-2, seed=3,
                     out_dir=tmp_path / "sae", layer=0)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the seed is local to training
    assert {p.name for p in path.iterdir()} == {"cfg.json", "sae_weights.safetensors"}
    sae = load_sae(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)  # the initialisation train_sae started from
        initial = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=16, d_sae=32, k=4))
    trained, before = unexplained(sae), unexplained(initial)
    assert trained < 0.25 and trained < before / 4, (trained, before)
    assert sae_layer(sae) == 0 and (encode(sae, data) > 0).sum(-1).max() <= 4

    sae.save_model(tmp_path / "again")
    again = load_sae(tmp_path / "again")
    torch.testing.assert_close(encode(again, data), encode(sae, data), rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="cfg.json"):
        load_sae(tmp_path)

"""Tests of the decoder-only transformer (tokenfilter.model) on tiny configs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM

from tokenfilter.model.loss import weighted_cross_entropy
from tokenfilter.model.gpt import GPT, GPTConfig, ReLUSquared, apply_rotary, paper_parameter_count, rotary_tables
from tokenfilter.model.hf import TokenFilterConfig, TokenFilterForCausalLM

VOCAB = 97


def tiny_config(**overrides) -> TokenFilterConfig:
    kwargs = dict(vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=32, block_size=64)
    kwargs.update(overrides)
    return TokenFilterConfig(**kwargs)


def tiny_model(seed: int = 0, **overrides) -> TokenFilterForCausalLM:
    # init_std 0.2 makes attention sharp, so position effects and argmax choices are far above
    # float noise; the default 0.02 gives an almost uniform random model.
    overrides.setdefault("init_std", 0.2)
    torch.manual_seed(seed)
    return TokenFilterForCausalLM(tiny_config(**overrides)).eval()


# --- RoPE: the authors' code rotated along the head axis, i.e. had no positions at all ----------


def test_rotary_dot_product_depends_only_on_offset():
    head_dim = 16
    cos, sin = rotary_tables(head_dim, 64)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(head_dim, generator=g), torch.randn(head_dim, generator=g)

    def score(m: int, n: int) -> float:
        return float(apply_rotary(q, cos[m], sin[m]) @ apply_rotary(k, cos[n], sin[n]))

    same_offset = [score(m, m - 3) for m in (3, 10, 25, 63)]
    assert max(same_offset) - min(same_offset) < 1e-4
    assert abs(score(10, 7) - score(10, 5)) > 1e-2  # offset 3 vs offset 5
    assert abs(score(10, 10) - score(10, 7)) > 1e-2


@torch.no_grad()
def test_rope_makes_the_model_see_order_and_nope_does_not():
    ids = torch.tensor([[5, 17, 42, 8, 91, 33, 60, 2, 71, 11]])
    permuted = torch.cat([ids[:, :-1].flip(1), ids[:, -1:]], dim=1)  # reorder the prefix only

    # One layer, so that the only way order can reach the last position is the position encoding.
    rope = tiny_model(position_encoding="rope", n_layer=1)
    assert (rope(permuted).logits[0, -1] - rope(ids).logits[0, -1]).abs().max() > 1e-2

    # NoPE (the authors' effective model): the last query attends to the same set of
    # (key, value) pairs whatever their order, so its prediction cannot change.
    nope = tiny_model(position_encoding="none", n_layer=1)
    torch.testing.assert_close(nope(permuted).logits[0, -1], nope(ids).logits[0, -1], atol=1e-5, rtol=0)

    # With more layers the causal mask itself leaks order (position i only sees tokens <= i, so
    # the prefix's hidden states depend on its order): NoPE models are not strictly order-blind.
    deep_nope = tiny_model(position_encoding="none", n_layer=2)
    assert (deep_nope(permuted).logits[0, -1] - deep_nope(ids).logits[0, -1]).abs().max() > 1e-3


# --- loss -------------------------------------------------------------------------------------


def test_labels_loss_goes_through_weighted_cross_entropy_and_ignores_minus_100():
    model = tiny_model()
    torch.manual_seed(1)
    ids = torch.randint(0, VOCAB, (3, 12))
    labels = ids.clone()
    labels[0, :5] = -100
    labels[2, 7] = -100
    out = model(ids, labels=labels)

    targets = labels[:, 1:]
    weights = targets != -100
    expected, weight_sum = weighted_cross_entropy(out.logits[:, :-1], targets.masked_fill(~weights, 0), weights)
    torch.testing.assert_close(out.loss, expected)
    assert weight_sum == 3 * 11 - 4 - 1
    reference = F.cross_entropy(out.logits[:, :-1].reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, reference)
    out.loss.backward()  # differentiable


def test_relu_squared_matches_autograd_of_the_plain_formula():
    x = torch.randn(6, 10, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(ReLUSquared.apply(x), F.relu(x).square())
    assert torch.autograd.gradcheck(ReLUSquared.apply, (x,))


# --- save / load ------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{}, {"position_encoding": "none", "mup_base_width": 8}])
def test_save_pretrained_round_trip(tmp_path, overrides):
    model = tiny_model(**overrides)
    model.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "model.safetensors" in files and "config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]

    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, TokenFilterConfig)
    for key in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size", "position_encoding",
                "rope_theta", "mup_base_width", "init_std", "rms_norm_eps", "tie_word_embeddings"):
        assert getattr(config, key) == getattr(model.config, key), key

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, TokenFilterForCausalLM)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    ids = torch.randint(0, VOCAB, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)


# --- KV cache, padding, generate ----------------------------------------------------------------


@torch.no_grad()
def test_cached_forward_matches_full_forward():
    model = tiny_model()
    ids = torch.randint(0, VOCAB, (2, 16))
    full = model(ids).logits
    first = model(ids[:, :9], use_cache=True)
    second = model(ids[:, 9:15], past_key_values=first.past_key_values, use_cache=True)  # chunk after cache
    third = model(ids[:, 15:], past_key_values=second.past_key_values, use_cache=True)  # one token
    stepped = torch.cat([first.logits, second.logits, third.logits], dim=1)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=0)
    assert third.past_key_values.get_seq_length() == 16


@torch.no_grad()
def test_left_padded_batch_matches_unpadded_sequences():
    model = tiny_model()
    seqs = [torch.randint(1, VOCAB, (n,)) for n in (11, 6, 3)]
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = s
        mask[i, width - len(s):] = 1
    padded = model(ids, attention_mask=mask).logits
    assert torch.isfinite(padded).all()  # pad rows must not produce NaN that leaks through V
    for i, s in enumerate(seqs):
        alone = model(s[None]).logits[0]
        torch.testing.assert_close(padded[i, width - len(s):], alone, atol=1e-5, rtol=0)


@torch.no_grad()
def test_greedy_generate_with_and_without_cache_equals_argmax_loop():
    model = tiny_model()
    prompt = torch.randint(0, VOCAB, (2, 7))
    new = 10
    manual = prompt
    for _ in range(new):
        next_id = model(manual).logits[:, -1].argmax(-1, keepdim=True)
        manual = torch.cat([manual, next_id], dim=1)
    kwargs = dict(max_new_tokens=new, do_sample=False, pad_token_id=0)
    with_cache = model.generate(prompt, use_cache=True, **kwargs)
    without_cache = model.generate(prompt, use_cache=False, **kwargs)
    assert torch.equal(with_cache, manual)
    assert torch.equal(without_cache, manual)


@torch.no_grad()
def test_generate_left_padded_batch_matches_single_prompts():
    model = tiny_model()
    short, long = torch.randint(1, VOCAB, (4,)), torch.randint(1, VOCAB, (9,))
    ids = torch.zeros(2, 9, dtype=torch.long)
    ids[0, 5:], ids[1] = short, long
    mask = (torch.arange(9) >= torch.tensor([[5], [0]])).long()
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    batch = model.generate(ids, attention_mask=mask, **kwargs)
    for row, prompt in ((0, short), (1, long)):
        alone = model.generate(prompt[None], **kwargs)
        assert torch.equal(batch[row, 9:], alone[0, len(prompt):])


# --- µP -----------------------------------------------------------------------------------------


def test_mup_groups_scaling_and_tying():
    base, width = 8, 32
    m = width / base
    model = tiny_model(mup_base_width=base, init_std=0.02)
    assert model.lm_head.weight is model.transformer.wte.weight

    groups = model.optimizer_param_groups(weight_decay=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["hidden_matrices"]["lr_scale"] == pytest.approx(1 / m)
    assert by_name["embedding"]["lr_scale"] == by_name["norms"]["lr_scale"] == 1.0
    assert by_name["norms"]["weight_decay"] == 0.0 and by_name["hidden_matrices"]["weight_decay"] == 0.1
    assert len(by_name["hidden_matrices"]["params"]) == 4 * model.config.n_layer
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))  # tied wte / lm_head appears once
    assert set(grouped) == {id(p) for p in model.parameters()}
    torch.optim.AdamW(groups, lr=1e-3)  # the groups are valid for AdamW

    block = model.transformer.h[0]
    assert block.attn.scale == pytest.approx(1 / model.config.head_dim)
    for linear in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
        assert float(linear.weight.detach().std()) == pytest.approx(0.02 / math.sqrt(m), rel=0.1)

    captured = {}
    model.transformer.ln_f.register_forward_hook(lambda mod, inp, out: captured.update(h=out))
    with torch.no_grad():
        logits = model(torch.randint(0, VOCAB, (1, 8))).logits
        torch.testing.assert_close(logits, model.lm_head(captured["h"]) / m)

    standard = tiny_model()
    assert standard.transformer.h[0].attn.scale is None  # SDPA default 1/sqrt(d)
    assert {g["lr_scale"] for g in standard.optimizer_param_groups(0.1)} == {1.0}


# --- parameter counts -----------------------------------------------------------------------------

PAPER_LADDER = [  # (n_layer, n_embd, n_head, millions as named in the paper)
    (7, 448, 8, 61),
    (10, 640, 10, 113),
    (14, 896, 14, 224),
    (20, 1280, 10, 521),
    (26, 1664, 16, 1030),
    (32, 2048, 16, 1816),
]


@pytest.mark.parametrize("vocab,n_layer,n_embd,n_head", [(97, 2, 32, 4), (101, 3, 48, 6), (50, 1, 16, 2)])
def test_parameter_count_matches_paper_formula(vocab, n_layer, n_embd, n_head):
    model = TokenFilterForCausalLM(tiny_config(vocab_size=vocab, n_layer=n_layer, n_embd=n_embd, n_head=n_head))
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == paper_parameter_count(vocab, n_layer, n_embd)
    assert model.flops_per_token(64) == 6 * n_params + 12 * n_layer * n_embd * 64


@pytest.mark.parametrize("n_layer,n_embd,n_head,millions", PAPER_LADDER)
def test_paper_ladder_sizes(n_layer, n_embd, n_head, millions):
    count = paper_parameter_count(100288, n_layer, n_embd)
    assert count // 1_000_000 == millions
    config = TokenFilterConfig(vocab_size=100288, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
    with torch.device("meta"):  # shapes only, no memory
        model = TokenFilterForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == count


# --- lm-eval --------------------------------------------------------------------------------------


def _tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    sentences = [
        "The patient was given a dose of the medicine.",
        "Cells divide by mitosis in most tissues.",
        "The river flows past the old town to the sea.",
    ] * 5
    tokenizer.train_from_iterator(sentences, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")


@pytest.mark.slow  # importing lm_eval takes ~8 s
@torch.no_grad()
def test_lm_eval_hflm_loglikelihood():
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    tokenizer = _tiny_tokenizer()
    model = tiny_model(vocab_size=len(tokenizer))
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=2, device="cpu")
    assert lm.max_length == model.config.block_size
    pairs = [("The patient was given", " a dose of the medicine."), ("Cells divide", " by mitosis.")]
    requests = [
        Instance(request_type="loglikelihood", doc={}, arguments=pair, idx=0) for pair in pairs
    ]
    results = lm.loglikelihood(requests)

    assert len(results) == 2
    for (context, continuation), (logprob, _is_greedy) in zip(pairs, results):
        assert math.isfinite(logprob)
        context_ids = lm.tok_encode(context)
        continuation_ids = lm.tok_encode(context + continuation)[len(context_ids):]
        inputs = torch.tensor([(context_ids + continuation_ids)[:-1]])
        logprobs = model(inputs).logits[0, -len(continuation_ids):].log_softmax(-1)
        expected = logprobs.gather(-1, torch.tensor(continuation_ids)[:, None]).sum()
        assert logprob == pytest.approx(float(expected), abs=1e-4)


# --- the fused kernels (training fast path) --------------------------------------------------

def _pair(**kw):
    torch.manual_seed(0)
    cfg = TokenFilterConfig(vocab_size=128, n_layer=2, n_embd=32, n_head=2, block_size=48, **kw)
    reference = TokenFilterForCausalLM(cfg)
    fused = TokenFilterForCausalLM(TokenFilterConfig(**{**cfg.to_dict(), "kernels": "fused"}))
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def _gpt_pair(**kw):
    """The training class (plain PyTorch): a reference and a fused model with the same weights."""
    from tokenfilter.model.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    shape = dict(vocab_size=128, n_layer=2, n_embd=32, n_head=2, block_size=48, **kw)
    reference = GPT(GPTConfig(**shape))
    fused = GPT(GPTConfig(**shape, kernels="fused"))
    fused.load_state_dict(reference.state_dict())
    return reference, fused


@pytest.mark.parametrize("mup", [None, 16])
def test_fused_kernels_compute_the_same_model(mup):
    """The fast path's forward is bit-identical (RoPE and RMSNorm do the same operations in
    the same order) and its loss and gradients agree to float32 reassociation."""
    reference, fused = _gpt_pair(mup_base_width=mup)
    ids = torch.randint(0, 128, (3, 41))
    weights = (torch.rand(3, 40) > 0.3).float()
    out_r, out_f = reference(ids[:, :-1]).logits, fused(ids[:, :-1]).logits
    assert torch.equal(out_r, out_f)
    targets = dict(targets=ids[:, 1:], target_weights=weights, normalizer=weights.sum())
    loss_r = reference(ids[:, :-1], **targets).loss
    out = fused(ids[:, :-1], **targets)
    assert out.logits is None  # the fused head never materialises them
    assert abs(float(loss_r.detach()) - float(out.loss.detach())) < 1e-6
    loss_r.backward()
    out.loss.backward()
    for (name, p_r), p_f in zip(reference.named_parameters(), fused.parameters()):
        torch.testing.assert_close(p_f.grad, p_r.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_model_loss_is_the_reference_loss_of_its_logits():
    """forward(targets=...) of the reference path is weighted_cross_entropy of its own logits; without
    gradients the fused path computes the logits too (its fused head is for training only)."""
    from tokenfilter.model.loss import weighted_cross_entropy

    reference, fused = _gpt_pair()
    ids = torch.randint(0, 128, (2, 17))
    weights = (torch.rand(2, 16) > 0.5).float()
    logits = reference(ids[:, :-1]).logits
    expected, _ = weighted_cross_entropy(logits, ids[:, 1:], weights, normalizer=7.0)
    got = reference(ids[:, :-1], targets=ids[:, 1:], target_weights=weights, normalizer=torch.tensor(7.0))
    assert torch.equal(got.loss, expected) and torch.equal(got.logits, logits)
    with torch.no_grad():
        out = fused(ids[:, :-1], targets=ids[:, 1:], target_weights=weights, normalizer=torch.tensor(7.0))
    assert out.logits is not None and abs(float(out.loss.detach()) - float(expected.detach())) < 1e-6


def test_model_loss_needs_weights_and_normalizer():
    reference, _ = _gpt_pair()
    ids = torch.randint(0, 128, (1, 9))
    with pytest.raises(ValueError, match="target_weights and normalizer"):
        reference(ids[:, :-1], targets=ids[:, 1:])


@pytest.mark.parametrize("scale", [1.0, 0.25])
@pytest.mark.parametrize("rows", [None, 5])
def test_linear_cross_entropy_matches_the_composite(scale, rows):
    """The fused head and loss: the same value and gradients (hidden and weight) as the logits
    followed by weighted_cross_entropy, with masked targets, a logit scale, and chunks of 5 rows
    that do not divide the 37 rows."""
    from tokenfilter.model.loss import linear_weighted_cross_entropy, weighted_cross_entropy

    torch.manual_seed(3)
    hidden = torch.randn(37, 12, requires_grad=True)
    weight = torch.randn(50, 12, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    weights = (torch.rand(37) > 0.3).float()
    expected, _ = weighted_cross_entropy(scale * hidden @ weight.t(), targets, weights, normalizer=30.0)
    (expected * 3).backward()
    want = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    got = linear_weighted_cross_entropy(hidden, weight, targets, weights, torch.tensor(30.0), scale, chunk_rows=rows)
    (got * 3).backward()  # an upstream gradient other than 1 reaches both inputs
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(hidden.grad, want[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(weight.grad, want[1], rtol=1e-5, atol=1e-7)


def test_fused_kernels_fall_back_for_generation_with_a_cache():
    reference, fused = _pair()
    ids = torch.randint(0, 128, (2, 6))
    a = reference.generate(ids, max_new_tokens=5, do_sample=False)
    b = fused.generate(ids, max_new_tokens=5, do_sample=False)
    assert torch.equal(a, b)


# --- the plain-PyTorch model and the transformers model are one model -----------------------

def test_plain_and_transformers_models_are_the_same_model(tmp_path):
    """Same seed → same weights (same init order), same logits, and each loads what the other
    saved; the two configs have the same fields and defaults."""
    import dataclasses

    shape = dict(vocab_size=VOCAB, n_layer=2, n_embd=32, n_head=2, block_size=32)
    torch.manual_seed(11)
    hf = TokenFilterForCausalLM(TokenFilterConfig(**shape)).eval()
    torch.manual_seed(11)
    plain = GPT(GPTConfig(**shape)).eval()
    assert hf.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(hf.state_dict()[k], plain.state_dict()[k]) for k in hf.state_dict())
    ids = torch.randint(0, VOCAB, (2, 12))
    assert torch.equal(hf(ids).logits, plain(ids).logits)
    plain.save_pretrained(tmp_path / "plain")
    hf.save_pretrained(tmp_path / "hf")
    assert torch.equal(AutoModelForCausalLM.from_pretrained(tmp_path / "plain").eval()(ids).logits, plain(ids).logits)
    assert torch.equal(GPT.from_pretrained(tmp_path / "hf").eval()(ids).logits, hf(ids).logits)
    fields = {f.name: f.default for f in dataclasses.fields(GPTConfig)}
    hf_defaults = TokenFilterConfig()
    assert {name: getattr(hf_defaults, name) for name in fields} == fields


def test_importing_the_plain_model_does_not_import_transformers():
    import subprocess
    import sys

    code = ("import sys, tokenfilter.model, tokenfilter.train.pretraining, tokenfilter.evaluate.text; "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("n_embd, vocab", [(32, VOCAB), (1024, 8192)])
def test_from_pretrained_loads_the_saved_weights_small_or_large(tmp_path, n_embd, vocab):
    """Small models build on the CPU (the meta device would import torch._dynamo in every job
    that loads one), large ones on the meta device; either way the loaded model is the saved one."""
    shape = dict(vocab_size=vocab, n_layer=1, n_embd=n_embd, n_head=2, block_size=16)
    torch.manual_seed(5)
    model = GPT(GPTConfig(**shape)).eval()
    model.save_pretrained(tmp_path)
    loaded = GPT.from_pretrained(tmp_path).eval()
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], model.state_dict()[k]) for k in model.state_dict())
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()  # still tied
    ids = torch.randint(0, vocab, (1, 8))
    assert torch.equal(loaded(ids).logits, model(ids).logits)

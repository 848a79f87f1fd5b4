"""The shared training core: the one loop from a saved model, custom objectives, resume of a
fine-tune, the residual stream, and the checkpoint fingerprint."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import MODEL, pretrain_spec, runtime
from tokenfilter.io import read_jsonl
from tokenfilter.train.finetuning import FinetuneBatches, read_examples, write_examples
from tokenfilter.train.loop import TrainSpec, train
from tokenfilter.train.objectives import Objective, register_objective
from tokenfilter.train.pretraining import pretrain


@pytest.fixture(scope="module")
def base_model(tiny_world, tmp_path_factory):
    """A small baseline pretrained on the tiny world, saved in the one checkpoint format."""
    tmp = tmp_path_factory.mktemp("base")
    spec = pretrain_spec(tiny_world["shards"]["train"], None, tmp, "base", arm="baseline", snapshots=0,
                         budget={"tokens_per_param": 2})
    pretrain(spec)
    return Path(spec.out_dir) / "model"


@pytest.fixture(scope="module")
def examples(tiny_world, tmp_path_factory):
    """Chat-style examples of the tiny world: a question (not learnt) and its answer (learnt)."""
    tokenizer = tiny_world["tokenizer"]
    eot = tokenizer.eot_id
    out = []
    for record in read_jsonl(tiny_world["out"]["chat"])[:64]:
        question, answer = record["messages"][-2]["content"], record["messages"][-1]["content"]
        q, a = tokenizer.encode(question + "\n"), tokenizer.encode(answer)
        out.append((q + a + [eot], [0] * len(q) + [1] * (len(a) + 1)))
    path = tmp_path_factory.mktemp("examples") / "chat.jsonl"
    write_examples(path, out)
    return path


def finetune_spec(base_model: Path, examples: Path, tmp_path: Path, name: str = "ft", **overrides) -> TrainSpec:
    fields = {
        "run": f"test/finetune/tiny/{name}", "task": "finetune", "init_from": str(base_model), "model": None,
        "data": {"examples": str(examples)}, "objective": {"kind": "lm"}, "lr": 3e-3, "weight_decay": 0.1,
        "betas": [0.9, 0.95], "eps": 1e-8, "grad_clip": 1.0, "schedule": "constant", "warmup_fraction": 0.0,
        "min_lr_ratio": 1.0, "budget": {"epochs": 4}, "count": "processed", "batch_tokens": 256,
        "micro_batch_size": 8, "precision": "fp32", "kernels": "fused", "compile": False, "compile_min_flops": 2.0e12,
        "seed": 5, "snapshots": 0,
        **runtime(tmp_path / f"{name}_out", tmp_path / f"{name}_ckpt", checkpoint_every=4),
    }
    fields.update(overrides)
    return TrainSpec.from_dict(fields)


def _loss_on(model_dir: Path, examples: Path) -> float:
    from tokenfilter.model.checkpoint import load_model
    from tokenfilter.model.loss import weighted_cross_entropy

    model = load_model(model_dir)
    source = FinetuneBatches(read_examples(examples), 32, seed=0, pad_id=model.config.pad_token_id)
    batch = source.batch(0, 0, source.n_items)
    with torch.no_grad():
        loss, _ = weighted_cross_entropy(model(batch.inputs).logits, batch.targets, batch.weights)
    return float(loss)


def test_finetuning_a_saved_model_lowers_its_loss_on_the_data(base_model, examples, tmp_path):
    from tokenfilter.train.finetuning import finetune

    before = _loss_on(base_model, examples)
    summary = finetune(finetune_spec(base_model, examples, tmp_path))
    after = _loss_on(Path(summary["spec"]["out_dir"]) / "model", examples)
    assert summary["task"] == "finetune" and summary["examples"] == 64
    assert after < before - 0.3, (before, after)


def test_padding_and_prompts_carry_no_loss(examples):
    source = FinetuneBatches(read_examples(examples), 32, seed=0, pad_id=0)
    batch = source.batch(0, 0, 8)
    examples_read = [source.examples[i] for i in source._order(0)[:8]]
    for row, (tokens, mask) in enumerate(examples_read):
        n = len(tokens) - 1
        assert batch.weights[row, :n].tolist() == mask[1:].astype(float).tolist()
        assert not batch.weights[row, n:].any()  # right padding
    assert batch.n_tokens == sum(len(t) - 1 for t, _ in examples_read)


class _TrainOneMLP(Objective):
    """The LM loss, training only the MLP of block 0 (as RMU trains a few MLPs)."""

    kind = "test_one_mlp"

    def trainable(self, model):
        return {name for name, _ in model.named_parameters() if name.startswith("transformer.h.0.mlp.")}


register_objective("test_one_mlp", lambda settings, seed: _TrainOneMLP())


def test_a_custom_objective_trains_only_what_it_selects(base_model, examples, tmp_path):
    from tokenfilter.train.finetuning import finetune

    spec = finetune_spec(base_model, examples, tmp_path, "one_mlp", objective={"kind": "test_one_mlp"},
                         weight_decay=0.5, budget={"steps": 6})
    summary = finetune(spec)
    before = load_file(base_model / "model.safetensors")
    after = load_file(Path(spec.out_dir) / "model" / "model.safetensors")
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {"transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight"}
    assert summary["trainable_params"] == sum(before[n].numel() for n in changed)


def _wait_for_step(checkpoint_dir: Path, proc: subprocess.Popen, min_step: int) -> None:
    state = checkpoint_dir / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if json.loads(state.read_text())["step"] >= min_step:
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def test_a_killed_finetune_resumes_to_the_uninterrupted_losses(base_model, examples, tmp_path):
    from tokenfilter.train.finetuning import finetune

    reference = finetune(finetune_spec(base_model, examples, tmp_path, "reference", budget={"epochs": 8}))
    spec = finetune_spec(base_model, examples, tmp_path, "killed", budget={"epochs": 8})
    spec_path = tmp_path / "killed.json"
    spec_path.write_text(json.dumps(dataclasses.asdict(spec)))
    proc = subprocess.Popen([sys.executable, "-m", "tokenfilter.train", str(spec_path)],
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _wait_for_step(Path(spec.checkpoint_dir), proc, min_step=8)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    resumed = finetune(spec)
    assert resumed["resumed_from"] and resumed["resumed_from"][0] >= 8
    ref_log = read_jsonl(Path(reference["spec"]["out_dir"]) / "train_log.jsonl")
    log = read_jsonl(Path(spec.out_dir) / "train_log.jsonl")
    assert [r["step"] for r in log] == [r["step"] for r in ref_log]
    np.testing.assert_allclose([r["loss"] for r in log], [r["loss"] for r in ref_log], rtol=1e-5, atol=1e-6)


# --- the residual stream ---------------------------------------------------------------------

def test_layer_L_is_the_input_of_block_L_plus_one():
    from tokenfilter.model import GPT, GPTConfig
    from tokenfilter.model.hidden import residual_stream

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, **dict(MODEL, n_layer=3))).eval()
    ids = torch.randint(0, 64, (2, 12))
    inputs = {}
    hooks = [model.transformer.h[i].register_forward_pre_hook(
        lambda module, args, i=i: inputs.__setitem__(i, args[0].detach().clone())) for i in (1, 2)]
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    for h in hooks:
        h.remove()
    stream = residual_stream(model, ids, [0, 1, -1])
    assert sorted(stream) == [0, 1, 2]
    assert torch.equal(stream[0], inputs[1]) and torch.equal(stream[1], inputs[2])
    # transformers' convention: entry L + 1 is layer L, except the last entry (after the final norm).
    assert len(out.hidden_states) == 4
    assert torch.equal(out.hidden_states[1], stream[0]) and torch.equal(out.hidden_states[2], stream[1])
    assert torch.allclose(out.hidden_states[3], model.transformer.ln_f(stream[2]))
    with pytest.raises(ValueError, match="out of range"):
        residual_stream(model, ids, [3])


def test_residual_stream_of_a_transformers_llama():
    """The same function reads any transformers decoder through hooks on its blocks."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tokenfilter.model.hidden import residual_stream

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    ids = torch.randint(0, 64, (1, 8))
    with torch.no_grad():
        hf = model(ids, output_hidden_states=True).hidden_states
    stream = residual_stream(model, ids, [0, 1])
    assert torch.allclose(stream[0], hf[1]) and torch.allclose(stream[1], hf[2])


# --- what identifies a run ---------------------------------------------------------------------

def test_a_changed_filter_error_rate_does_not_resume_the_old_checkpoint(tiny_world, tmp_path):
    """The fingerprint covers the filter source's settings, not only its name: a run interrupted
    and restarted after `filters.<name>.error_rate` changed starts afresh."""
    import copy

    from tokenfilter.config import load_config
    from tokenfilter.config.experiments import Run, document_label_share, runtime_settings, train_spec
    from tokenfilter.filtering.annotation import annotate

    config = load_config(Path(__file__).resolve().parents[1] / ".test" / "config.yaml")
    run = Run("main", "mask", "a", "default")
    name = config["filtering"]["filter"] = "simulated_classifier"  # the world's truth with uniform errors
    scores = tmp_path / "scores"
    spec = {**config["filters"][name], "document_label_share": document_label_share(config)}  # as the workflow's
    annotate(spec, tiny_world["shards"]["train"], scores, seed=config["seed"])

    def spec_of(cfg, tag):
        fields = train_spec(cfg, run, str(tiny_world["shards"]["train"]), str(scores))
        fields.update(runtime_settings(cfg), out_dir=str(tmp_path / f"out_{tag}"),
                      checkpoint_dir=str(tmp_path / "ckpt"), keep_checkpoints=True, progress=False)
        fields["model"] = dict(fields["model"], block_size=32)
        return TrainSpec.from_dict(fields)

    first = spec_of(config, "first")
    changed = copy.deepcopy(config)
    changed["filters"][name]["error_rate"] = 0.2
    second = spec_of(changed, "second")
    assert first.fingerprint() != second.fingerprint()
    pretrain(first)
    assert pretrain(spec_of(config, "again"))["resumed_from"] != []  # the same spec resumes ...
    assert pretrain(second)["resumed_from"] == []  # ... a changed error rate does not

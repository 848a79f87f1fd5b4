"""Shared test setup: no network, deterministic torch, and small fixtures built on demand."""

import os

# Nothing may come from the Hugging Face hub in tests (and nothing needs to).
for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A small built-in world, its tokenizer and token shards (train + eval), built once."""
    from tokenfilter.data.corpus import iter_corpus
    from tokenfilter.data.shards import tokenize_corpus
    from tokenfilter.data.synthetic.build import SyntheticParams, default_outputs, generate_synthetic
    from tokenfilter.data.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("tiny_world")
    out = default_outputs(root / "data")
    generate_synthetic(SyntheticParams.from_config({"n_docs": 600, "n_eval_docs": 30}), seed=7, val_fraction=0.05, out=out)
    tokenizer = build_tokenizer("train", (r["text"] for r in iter_corpus(out["corpus"], ["text"])), vocab_size=384)
    tokenizer.save(root / "tokenizer" / "tokenizer.json")
    shards = {"train": root / "tokens" / "train"}
    tokenize_corpus(out["corpus"], tokenizer, shards["train"], split="train", progress=False)
    for domain in ("forget", "retain_near", "retain_far"):
        shards[f"eval_{domain}"] = root / "tokens" / f"eval_{domain}"
        tokenize_corpus(out[f"eval_{domain}"], tokenizer, shards[f"eval_{domain}"], progress=False)
    return {"root": root, "out": out, "tokenizer": tokenizer, "shards": shards}

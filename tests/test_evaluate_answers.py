"""Free-response answers: the world judge against answers built to fool it, intervals and
aggregation, refusal rates, sampling with left padding from a fine-tuned tiny model, and the
linear probes of E10 / E11."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from helpers import MODEL, pretrain_spec, runtime
from tokenfilter.io import read_jsonl
from tokenfilter.judge.base import AnswerItem


# --- the world judge ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world():
    from tokenfilter.data.synthetic.build import SyntheticParams, world_of

    return world_of(SyntheticParams.from_config({}), 7)


@pytest.fixture(scope="module")
def judge(world):
    from tokenfilter.judge.world import WorldJudge

    return WorldJudge(world)


def _fact(world, relation):
    return next(f for f in world.facts if f.relation == relation)


def _verdict(judge, fact, answer, **fields):
    question = judge.world.relations[fact.relation].question.format(s=fact.subject)
    return judge.answer_quality(AnswerItem(question, answer, subject=fact.subject, expected=fact.object,
                                           relation=fact.relation, **fields))


def test_a_correct_answer_passes_all_three(judge, world):
    fact = _fact(world, "treated_with")
    S = fact.subject[:1].upper() + fact.subject[1:]
    assert _verdict(judge, fact, f"{S} is treated with {fact.object}.") == \
        {"correct": True, "relevant": True, "coherent": True}
    # The subject may be implied rather than named; two fluent sentences are fine.
    assert _verdict(judge, fact, f"It is treated with {fact.object}. Most people are given {fact.object}.") == \
        {"correct": True, "relevant": True, "coherent": True}


def test_right_words_wrong_fact_is_not_correct(judge, world):
    fact = _fact(world, "treated_with")
    other_drug = next(d for d in world.entities["antimicrobial"] if d != fact.object)
    other_disease = next(d for d in world.entities["infection"] if d != fact.subject)
    wrong_drug = _verdict(judge, fact, f"{fact.subject} is treated with {other_drug}.")
    assert wrong_drug == {"correct": False, "relevant": True, "coherent": True}
    hedged = _verdict(judge, fact, f"{fact.subject} is treated with {fact.object} or {other_drug}.")
    assert not hedged["correct"]
    wrong_subject = _verdict(judge, fact, f"{other_disease} is treated with {fact.object}.")
    assert wrong_subject == {"correct": False, "relevant": True, "coherent": True}


def test_fluent_but_off_topic_is_coherent_only(judge, world):
    fact = _fact(world, "treated_with")
    filler = "In general, the small report was described by many people."
    assert _verdict(judge, fact, filler) == {"correct": False, "relevant": False, "coherent": True}


def test_on_topic_word_salad_and_invented_words_are_not_coherent(judge, world):
    fact = _fact(world, "treated_with")
    salad = _verdict(judge, fact, f"treated {fact.object} with is {fact.subject}. the with {fact.object} is")
    assert salad == {"correct": True, "relevant": True, "coherent": False}
    reversed_answer = " ".join(reversed(f"{fact.subject} is treated with {fact.object}".split()))
    assert not _verdict(judge, fact, reversed_answer)["coherent"]
    invented = _verdict(judge, fact, f"{fact.subject} is treated with florbazine and quexitol daily.")
    assert invented == {"correct": False, "relevant": True, "coherent": False}
    assert not _verdict(judge, fact, f"{fact.object}.")["coherent"]  # too short to judge fluency


def test_entity_names_are_read_longest_first(judge, world):
    # "<place> fever" is an infection, not the place plus the symptom "fever".
    fact = next(f for f in world.facts if f.relation == "symptom_of" and f.subject.endswith(" fever")
                and f.object != "fever")
    verdict = _verdict(judge, fact, f"A common sign of {fact.subject} is {fact.object}.")
    assert verdict == {"correct": True, "relevant": True, "coherent": True}
    # The fact is found from its id when the item carries no subject or object.
    question = world.relations[fact.relation].question.format(s=fact.subject)
    by_id = judge.answer_quality(AnswerItem(question, f"A common sign of {fact.subject} is {fact.object}.",
                                            extra={"fact_id": fact.fact_id}))
    assert by_id == verdict


def test_every_sentence_of_the_worlds_text_is_coherent(judge, tiny_world):
    from tokenfilter.data.corpus import iter_corpus
    from tokenfilter.data.synthetic.build import SyntheticParams, world_of
    from tokenfilter.judge.world import WorldJudge

    tiny_judge = WorldJudge(world_of(SyntheticParams.from_config({"n_docs": 600, "n_eval_docs": 30}), 7))
    out = tiny_world["out"]
    for path in (out["corpus"], out["eval_forget"], out["attack"]):
        for i, row in enumerate(iter_corpus(path, ["text"])):
            if i == 60:
                break
            for sentence in row["text"].replace("\n\n", " ").split(". "):
                if len(sentence.split()) >= 3:
                    assert tiny_judge._coherent(sentence), sentence
    for item in read_jsonl(out["free_response"])[:100]:
        verdict = tiny_judge.answer_quality(AnswerItem(item["question"], item["reference"], expected=item["answer"],
                                                       extra={"fact_id": item["fact_id"]}))
        assert verdict == {"correct": True, "relevant": True, "coherent": True}, item


def test_refusals_are_detected(judge, world):
    from tokenfilter.data.synthetic.templates import REFUSALS

    fact = _fact(world, "treated_with")
    for phrase in REFUSALS:
        assert judge.is_refusal(AnswerItem("q", phrase))
        assert judge.is_refusal(AnswerItem("q", phrase.upper().replace("'", "\u2019")))
    assert judge.is_refusal(AnswerItem("q", "<|refusal|>"))
    assert judge.is_refusal(AnswerItem("q", "Sorry, I cannot help with that"))
    assert not judge.is_refusal(AnswerItem("q", f"{fact.subject} is treated with {fact.object}."))
    assert not judge.is_refusal(AnswerItem("q", "Anyone with it should watch for pain."))
    assert not _verdict(judge, fact, "<|refusal|>")["relevant"]


def test_judge_errors_are_fixed_per_item(world):
    from tokenfilter.judge.world import WorldJudge

    fact = _fact(world, "treated_with")
    answer = f"{fact.subject} is treated with {fact.object}."
    flipped = WorldJudge(world, error_rate=1.0)
    assert _verdict(flipped, fact, answer) == {"correct": False, "relevant": False, "coherent": False}
    half = WorldJudge(world, error_rate=0.5, seed=2)
    assert _verdict(half, fact, answer) == _verdict(half, fact, answer)


# --- intervals and aggregation -----------------------------------------------------------------

def test_wilson_and_newcombe_intervals():
    from tokenfilter.evaluate.free_response import difference_interval, wilson_interval

    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # Newcombe (1998), example (a): 56/70 vs 48/80.
    assert difference_interval(56, 70, 48, 80) == pytest.approx((0.2, 0.0524, 0.3339), abs=1e-4)


def _judged(arm, kind, correct, n):
    return [{"arm": arm, "id": f"{kind}-{i}", "kind": kind, "seed": 0, "question": f"{kind} question {i}",
             "response": f"{arm} answer {i}", "correct": i < correct, "relevant": True, "coherent": i % 2 == 0}
            for i in range(n)]


def test_summary_reports_rates_and_differences_from_the_baseline():
    from tokenfilter.evaluate.free_response import answer_samples, summarise

    judged = (_judged("baseline", "health", 40, 50) + _judged("mask", "health", 0, 50)
              + _judged("baseline", "general", 30, 50) + _judged("mask", "general", 30, 50))
    rows = {(r["arm"], r["kind"], r["criterion"]): r for r in summarise(judged)}
    mask = rows[("mask", "health", "correct")]
    assert mask["rate"] == 0.0 and mask["ci_low"] == 0.0 and 0.0 < mask["ci_high"] < 0.1
    assert mask["diff_vs_baseline"] == pytest.approx(-0.8) and mask["diff_ci_high"] < -0.6
    assert mask["ratio_vs_baseline"] == 0.0
    same = rows[("mask", "general", "correct")]
    assert same["diff_vs_baseline"] == 0.0 and same["diff_ci_low"] < 0.0 < same["diff_ci_high"]
    samples = answer_samples(judged, k=5, seed=1)
    assert len(samples) == 5 and all(set(s) == {"id", "question", "baseline", "mask"} for s in samples)
    assert all(s["id"].startswith("health") for s in samples)
    assert samples == answer_samples(judged, k=5, seed=1)


def test_refusal_rates_over_replicates(judge):
    from tokenfilter.evaluate.refusal import refusal_verdicts, summarise_refusals

    records = [{"id": f"h{i}", "refuse": True, "question": "q", "response": "<|refusal|>" if i < 3 else "ok",
                "response_ids": [2] if i < 3 else [7]} for i in range(4)]
    records += [{"id": f"g{i}", "refuse": False, "question": "q", "response": "fine", "response_ids": [9]}
                for i in range(4)]
    verdicts = (refusal_verdicts(records, "token", "removal", replicate=0, refusal_id=2)
                + refusal_verdicts(records[:1] + records[4:], "token", "removal", replicate=1, refusal_id=2)
                + refusal_verdicts(records, "prose", "baseline", replicate=0, judge=judge))
    rows = {(r["arm"], r["kind"]): r for r in summarise_refusals(verdicts)}
    health = rows[("removal", "health")]
    assert (health["yes"], health["n"], health["replicates"]) == (4, 5, 2)
    assert health["replicate_mean"] == pytest.approx((0.75 + 1.0) / 2)
    assert rows[("removal", "general")]["rate"] == 0.0
    assert rows[("baseline", "health")]["rate"] == 0.75  # the judge reads "<|refusal|>" too
    assert health["diff_vs_baseline"] == pytest.approx(0.8 - 0.75)
    with pytest.raises(ValueError, match="judge"):
        refusal_verdicts(records, "prose", "x")


# --- generation from a fine-tuned tiny model ----------------------------------------------------

@pytest.fixture(scope="module")
def chat_model(tiny_world, tmp_path_factory):
    """A tiny baseline (context 64), pretrained on the tiny world and fine-tuned on its chat set."""
    from tokenfilter.posttrain.formats import chat_examples
    from tokenfilter.train.finetuning import finetune, write_examples
    from tokenfilter.train.loop import TrainSpec
    from tokenfilter.train.pretraining import pretrain

    tmp = tmp_path_factory.mktemp("chat_model")
    spec = pretrain_spec(tiny_world["shards"]["train"], None, tmp, "base", arm="baseline", snapshots=0,
                         model=dict(MODEL, block_size=64, n_layer=2, n_embd=32), budget={"tokens_per_param": 2})
    pretrain(spec)
    base = Path(spec.out_dir) / "model"
    examples = tmp / "chat.jsonl"
    write_examples(examples, chat_examples(tiny_world["tokenizer"], read_jsonl(tiny_world["out"]["chat"])[:96]))
    fields = {
        "run": "test/chat/tiny", "task": "finetune", "init_from": str(base), "model": None,
        "data": {"examples": str(examples)}, "objective": {"kind": "lm"}, "lr": 3e-3, "weight_decay": 0.0,
        "betas": [0.9, 0.95], "eps": 1e-8, "grad_clip": 1.0, "schedule": "constant", "warmup_fraction": 0.0,
        "min_lr_ratio": 1.0, "budget": {"epochs": 6}, "count": "processed", "batch_tokens": 512,
        "micro_batch_size": 16, "precision": "fp32", "kernels": "fused", "compile": False,
        "compile_min_flops": 2.0e12, "seed": 5, "snapshots": 0,
        **runtime(tmp / "ft_out", tmp / "ft_ckpt", checkpoint_every=1000),
    }
    finetune(TrainSpec.from_dict(fields))
    return {"base": base, "chat": tmp / "ft_out" / "model"}


def test_generation_is_seeded_left_padded_and_stops_at_the_end_marker(chat_model, tiny_world):
    from tokenfilter.evaluate.generation import generate_answers
    from tokenfilter.model.checkpoint import load_hf_model
    from tokenfilter.posttrain.formats import chat_prompt

    tokenizer = tiny_world["tokenizer"]
    model = load_hf_model(chat_model["chat"])
    questions = [item["question"] for item in read_jsonl(tiny_world["out"]["free_response"])[::40][:12]]
    questions[3] = "Hello!"  # a much shorter prompt: real left padding in its batch
    first = generate_answers(model, tokenizer, questions, seed=1, batch_size=4)
    assert first == generate_answers(model, tokenizer, questions, seed=1, batch_size=4)
    assert first != generate_answers(model, tokenizer, questions, seed=2, batch_size=4)
    stops = {tokenizer.special_ids["im_end"], tokenizer.special_ids["eot"]}
    for answer in first:
        assert not stops & set(answer.token_ids) and "<|im_end|>" not in answer.text
        assert answer.text == tokenizer.decode(answer.token_ids)
    # The fine-tuned model has learnt to end its turn.
    assert sum(a.finished for a in first) >= len(first) // 2
    # Left padding changes nothing: greedy answers in a batch equal those of each prompt alone.
    batched = generate_answers(model, tokenizer, questions, seed=0, temperature=0.0, max_new_tokens=8,
                               batch_size=12)
    alone = [generate_answers(model, tokenizer, [q], seed=0, temperature=0.0, max_new_tokens=8)[0]
             for q in questions[:6]]
    assert [a.token_ids for a in batched[:6]] == [a.token_ids for a in alone]
    # The context bounds new tokens (the batch's longest prompt leaves the room there is).
    for start in range(0, len(questions), 4):
        room = 64 - max(len(chat_prompt(tokenizer, q)) for q in questions[start:start + 4])
        assert all(len(a.token_ids) <= room for a in first[start:start + 4])
    with pytest.raises(ValueError, match="no room"):
        generate_answers(model, tokenizer, ["word " * 80], seed=0)


def test_free_response_and_refusal_files_end_to_end(chat_model, tiny_world, tmp_path, judge):
    from tokenfilter.data.synthetic.build import SyntheticParams, world_of
    from tokenfilter.evaluate.free_response import judge_file, summarise_files
    from tokenfilter.evaluate.generation import generate_file
    from tokenfilter.evaluate.refusal import refusal_file, summarise_refusal_files
    from tokenfilter.io import write_jsonl
    from tokenfilter.judge.world import WorldJudge

    items = read_jsonl(tiny_world["out"]["free_response"])
    questions = tmp_path / "questions.jsonl"
    health, general = ([i for i in items if i["kind"] == kind][:6] for kind in ("health", "general"))
    write_jsonl(questions, health + general)
    tokenizer_path = tiny_world["root"] / "tokenizer" / "tokenizer.json"
    world_judge = WorldJudge(world_of(SyntheticParams.from_config({"n_docs": 600, "n_eval_docs": 30}), 7))
    judged = {}
    for arm, model in (("baseline", chat_model["chat"]), ("mask", chat_model["base"])):
        generations = tmp_path / f"{arm}_gen.jsonl"
        summary = generate_file(model, tokenizer_path, questions, generations, seeds=[0, 1], max_new_tokens=16)
        assert summary["answers"] == 24
        records = read_jsonl(generations)
        assert {"response", "response_ids", "finished", "seed", "answer", "fact_id"} <= set(records[0])
        judged[arm] = tmp_path / f"{arm}_judged.jsonl"
        judge_file(generations, world_judge, arm, judged[arm])
        refusal_file(generations, tmp_path / f"{arm}_refusal.jsonl", "token", arm, replicate=0,
                     refusal_id=tiny_world["tokenizer"].special_ids["refusal"])
    rows = summarise_files(judged, tmp_path / "summary.csv", tmp_path / "samples.csv", k=3)
    assert {(r["arm"], r["kind"]) for r in rows} == {(a, k) for a in judged for k in ("health", "general")}
    assert all(0.0 <= r["ci_low"] <= r["rate"] <= r["ci_high"] <= 1.0 for r in rows)
    assert all(not math.isnan(r["diff_vs_baseline"]) for r in rows)
    assert (tmp_path / "samples.csv").read_text().count("\n") >= 2
    refusals = summarise_refusal_files([tmp_path / f"{a}_refusal.jsonl" for a in judged], tmp_path / "refusal.csv")
    assert {r["kind"] for r in refusals} == {"health", "general"}


# --- probes ------------------------------------------------------------------------------------

def _planted(signal: float, n_docs: int = 100, per_doc: int = 20, seed: int = 0):
    """Features with the label written into dimension 0 (``signal`` standard deviations), by document."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_docs), per_doc)
    labels = (rng.random(n_docs) < 0.5).astype(np.int64)[groups]
    x = rng.standard_normal((len(groups), 8)).astype(np.float32)
    x[:, 0] += signal * labels
    return {3: x}, labels, groups


def test_probes_find_a_planted_signal_and_not_a_missing_one():
    from tokenfilter.evaluate.probes import cross_validated_accuracy, fit_token_probes, group_split

    features, labels, groups = _planted(4.0)
    test = group_split(groups, 0.2, seed=0)
    assert not set(groups[test]) & set(groups[~test]) and 0.15 < test.mean() < 0.25
    assert fit_token_probes(features, labels, groups)[0]["f1"] > 0.95
    assert cross_validated_accuracy(features, labels, groups, n_splits=4)[0]["accuracy"] > 0.95
    features, labels, groups = _planted(0.0)
    assert fit_token_probes(features, labels, groups)[0]["accuracy"] < 0.65
    assert cross_validated_accuracy(features, labels, groups, n_splits=4)[0]["accuracy"] < 0.65


def test_token_probe_reads_the_residual_stream_of_sampled_tokens(chat_model, tiny_world):
    import torch

    from tokenfilter.data.shards import TokenShard
    from tokenfilter.evaluate.probes import sample_token_positions, token_features, token_probe
    from tokenfilter.model.checkpoint import load_model
    from tokenfilter.model.hidden import residual_stream

    model = load_model(chat_model["base"])
    shard = TokenShard.open(tiny_world["shards"]["train"])
    positions = sample_token_positions(shard, 1000, 64, seed=0, per_window=16)
    assert len(positions) == 1000 and np.asarray(shard.labels[positions]).mean() == 0.5
    assert tiny_world["tokenizer"].eot_id not in set(np.asarray(shard.tokens[positions]).tolist())
    features = token_features(model, shard, positions, [0, 1], 64)
    for p in positions[:: 97]:
        window = torch.from_numpy(np.asarray(shard.tokens[p // 64 * 64:(p // 64 + 1) * 64], dtype=np.int64))[None]
        direct = residual_stream(model, window, [1])[1][0, p % 64].numpy()
        assert np.allclose(features[1][np.searchsorted(positions, p)], direct, atol=1e-5)
    result = token_probe(model, shard, n_tokens=1000, seed=0, per_window=16)
    assert [r["layer"] for r in result["rows"]] == [0, 1] and result["forget_share"] == 0.5
    assert result["best"] == max(result["rows"], key=lambda r: r["f1"])
    assert result == token_probe(model, shard, n_tokens=1000, seed=0, per_window=16)


def test_subdomain_probe_reports_accuracy_per_layer(chat_model, tiny_world, tmp_path):
    from tokenfilter.evaluate.probes import subdomain_probe_file

    shards, out = tiny_world["shards"], tiny_world["out"]
    for level in ("document", "token"):
        result = subdomain_probe_file(chat_model["base"], shards["eval_forget"], out["eval_forget"],
                                      tmp_path / f"{level}.json", retain_shard_dir=shards["eval_retain_far"],
                                      level=level, n_splits=3, per_doc=16)
        assert result["documents_per_class"] == 15  # 30 forget eval documents, alternating sub-domains
        tasks = result["tasks"]
        assert set(tasks) == {"infectious_vs_neurological", "infectious_vs_non_medical",
                              "neurological_vs_non_medical"}
        for task in tasks.values():
            assert [r["layer"] for r in task["rows"]] == [0, 1]
            assert all(0.0 <= r["accuracy"] <= 1.0 and r["folds"] == 3 for r in task["rows"])
            assert task["mean_accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in task["rows"]]))
            # Token level: a document with no forget token in its first 64 tokens has nothing to give.
            documents = task["rows"][0]["documents"]
            assert documents == 30 if level == "document" else 25 <= documents <= 30
        assert (tmp_path / f"{level}.json").is_file()

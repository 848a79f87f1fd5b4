"""The built-in synthetic world: determinism, exact forget spans, derived sets, App C.2 statistics."""

from __future__ import annotations

import filecmp
import json
import os
import re

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")

import numpy as np
import pytest

from tokenfilter.data.corpus import assign_split, read_corpus, text_hash
from tokenfilter.io import read_json, read_jsonl
from tokenfilter.data.synthetic.build import EVAL_DOMAINS, SyntheticParams, default_outputs, generate_synthetic, world_of
from tokenfilter.data.synthetic.documents import forget_fraction

SEED = 5
N_DOCS = 600
AMBIGUOUS = ("culture", "host", "treatment", "infection", "strain", "resistance", "pressure", "cell")


def _generate(root, seed=SEED, n_docs=N_DOCS, val_fraction=0.05):
    out = default_outputs(root)
    summary = generate_synthetic(SyntheticParams.from_config({"n_docs": n_docs, "n_eval_docs": 20, "n_attack_docs": 40}),
                                 seed, val_fraction, out)
    return out, summary


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out, summary = _generate(tmp_path_factory.mktemp("world_a"))
    corpus = read_corpus(out["corpus"])
    corpus["spans"] = [[tuple(s) for s in spans] for spans in corpus["forget_spans"]]
    return {"out": out, "summary": summary, "corpus": corpus, "world": world_of(SyntheticParams.from_config({}), SEED)}


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def _render(world, fact) -> list[str]:
    """Every sentence a fact can be stated with in pretraining text."""
    def cap(x):
        return x[:1].upper() + x[1:]
    return [t.format(s=fact.subject, o=fact.object, S=cap(fact.subject), O=cap(fact.object))
            for t in world.relations[fact.relation].statements["train"]]


def _occurrences(text: str, needle: str):
    start = text.find(needle)
    while start != -1:
        yield start, start + len(needle)
        start = text.find(needle, start + 1)


def _inside(spans, a, b) -> bool:
    return any(s <= a and b <= e for s, e in spans)


def _overlaps(spans, a, b) -> bool:
    return any(max(s, a) < min(e, b) for s, e in spans)


# --- determinism ------------------------------------------------------------------------------

def test_same_seed_gives_identical_files(small, tmp_path):
    root_a = small["out"]["corpus"].parent
    out_b, summary_b = _generate(tmp_path / "world_b")
    assert summary_b == small["summary"]
    files = _files(root_a)
    assert files == _files(tmp_path / "world_b")
    assert len(files) == 13  # corpus, 3 eval, attack, 3 mcq, free_response, instruct, chat, refusal, world.json
    for rel in files:
        assert filecmp.cmp(root_a / rel, tmp_path / "world_b" / rel, shallow=False), rel


def test_different_seed_gives_different_world(small, tmp_path):
    out_c, _ = _generate(tmp_path / "world_c", seed=SEED + 1)
    other = read_corpus(out_c["corpus"])
    assert list(other["text"]) != list(small["corpus"]["text"])
    assert len(set(other["text"]) & set(small["corpus"]["text"])) < 0.05 * N_DOCS
    root_a = small["out"]["corpus"].parent
    for name in ("mcq/forget.jsonl", "instruct.jsonl", "eval/forget.parquet"):
        assert not filecmp.cmp(root_a / name, tmp_path / "world_c" / name, shallow=False), name
    default = SyntheticParams.from_config({})
    assert world_of(default, SEED).pool("disease") != world_of(default, SEED + 1).pool("disease")


# --- the pretraining corpus and its spans ---------------------------------------------------------

def _check_spans(text, spans):
    prev_end = -1
    for s, e in spans:
        assert 0 <= s < e <= len(text), (s, e, len(text))
        assert s > prev_end, "spans must be sorted, disjoint and not touching"
        assert text[s:e] == text[s:e].strip(), f"span has outer whitespace: {text[s:e]!r}"
        prev_end = e


def test_corpus_columns_and_spans(small):
    corpus = small["corpus"]
    assert len(corpus) == N_DOCS
    assert list(corpus["doc_id"]) == list(range(N_DOCS))
    assert set(corpus["kind"]) == {"pure_general", "pure_biology", "light_general", "light_biology",
                                   "mixed_general", "mixed_biology", "pure_medical"}
    for _, row in corpus.iterrows():
        _check_spans(row["text"], row["spans"])
        assert row["doc_label"] == (forget_fraction(row["text"], row["spans"]) >= 0.3)
        assert row["split"] == assign_split(row["doc_id"], 0.05, SEED)
        kind = row["kind"]
        if kind.startswith("pure_"):
            assert row["domain"] == {"pure_general": "retain_far", "pure_biology": "retain_near",
                                     "pure_medical": "forget"}[kind]
        else:
            assert row["domain"] == "mixed"
            assert row["spans"], "light and mixed documents always carry medical text"
        if kind in ("pure_general", "pure_biology"):
            assert row["spans"] == [] and not row["doc_label"]
    assert {"train", "val"} == set(corpus["split"])
    for domain in EVAL_DOMAINS:
        for _, row in read_corpus(small["out"][f"eval_{domain}"]).iterrows():
            spans = [tuple(s) for s in row["forget_spans"]]
            _check_spans(row["text"], spans)
            if domain != "forget":
                assert spans == [] and not row["doc_label"]
        if domain == "forget":  # a short medical document may, rarely, be all ordinary filler
            eval_docs = read_corpus(small["out"]["eval_forget"])
            assert np.mean([len(s) > 0 for s in eval_docs["forget_spans"]]) > 0.8


def test_medical_names_are_always_inside_forget_spans(small):
    world = small["world"]
    names = sorted(world.pool("disease") + world.pool("drug"), key=len, reverse=True)
    pattern = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, names)) + r")(?![\w])", re.IGNORECASE)
    n_found = 0
    for _, row in small["corpus"].iterrows():
        for m in pattern.finditer(row["text"]):
            n_found += 1
            assert _inside(row["spans"], m.start(), m.end()), (row["doc_id"], row["kind"], m.group())
    assert n_found > 500


def test_biology_fact_sentences_never_in_forget_spans(small):
    world, corpus = small["world"], small["corpus"]
    sentences = [s for i in world.facts_of("retain_near") for s in _render(world, world.facts[i])]
    n_pure = n_found = 0
    for _, row in corpus.iterrows():
        text = row["text"]
        for sentence in sentences:
            if sentence in text:
                for a, b in _occurrences(text, sentence):
                    n_found += 1
                    assert not _overlaps(row["spans"], a, b), (row["doc_id"], sentence)
                    n_pure += row["kind"] == "pure_biology"
    assert n_pure > 100 and n_found > n_pure


def test_ambiguous_words_occur_inside_and_outside_spans(small):
    counts = {w: [0, 0] for w in AMBIGUOUS}
    for _, row in small["corpus"].iterrows():
        lower = row["text"].lower()
        for word in AMBIGUOUS:
            for a, b in _occurrences(lower, word):
                if _inside(row["spans"], a, b):
                    counts[word][0] += 1
                elif not _overlaps(row["spans"], a, b):
                    counts[word][1] += 1
    for word, (inside, outside) in counts.items():
        assert inside > 0 and outside > 0, (word, inside, outside)


def test_mixed_only_biology_facts_never_in_pure_biology(small):
    world, corpus = small["world"], small["corpus"]
    pure = corpus.loc[corpus["kind"] == "pure_biology", "text"].tolist()
    mixed = corpus.loc[corpus["kind"] == "mixed_biology", "text"].tolist()
    assert len(pure) > 30 and len(mixed) > 30

    def mentioned(fact_ids, texts):
        return {i for i in fact_ids for s in _render(world, world.facts[i]) if any(s in t for t in texts)}

    mixed_only = world.facts_of("retain_near", True)
    assert len(mixed_only) > 0
    assert mentioned(mixed_only, pure) == set()
    # Controls: the rendering does find facts where they belong.
    assert len(mentioned(mixed_only, mixed)) > 10
    assert len(mentioned(world.facts_of("retain_near", False), pure)) > 10
    pathogen_facts = {i for i in world.facts_of("retain_near") if world.facts[i].subject in world.pathogens}
    assert pathogen_facts <= set(mixed_only.tolist())


# --- derived sets ------------------------------------------------------------------------------

def test_world_json_reports_no_drops(small):
    summary = read_json(small["out"]["summary"])
    assert summary == json.loads(json.dumps(small["summary"]))  # as returned (tuples become lists)
    assert summary["dropped_for_collision"] and all(v == 0 for v in summary["dropped_for_collision"].values())
    assert sum(summary["kinds"].values()) == N_DOCS
    for name, count in summary["derived_counts"].items():
        assert count == len(read_jsonl(small["out"][name])) > 0


def test_mcq_items(small):
    world, out = small["world"], small["out"]
    corpus_text = "\x00".join(small["corpus"]["text"])
    for domain in EVAL_DOMAINS:
        items = read_jsonl(out[f"mcq_{domain}"])
        assert items
        for item in items:
            fact = world.facts[item["fact_id"]]
            assert fact.domain == item["domain"] == domain and fact.relation == item["relation"]
            assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
            assert item["choices"][item["answer"]] == fact.object
            assert fact.subject not in item["choices"]
            assert item["question"] in item["prompt"]
            assert item["cloze_choices"] == [f" {c}." for c in item["choices"]]
            assert item["question"] not in corpus_text, item["question"]
            assert item["prompt"] not in corpus_text
    answers = np.array([i["answer"] for d in EVAL_DOMAINS for i in read_jsonl(out[f"mcq_{d}"])])
    assert set(answers.tolist()) == {0, 1, 2, 3}  # the answer letter is not a giveaway


def test_eval_documents_disjoint_from_pretraining(small):
    pretraining = {text_hash(t) for t in small["corpus"]["text"]}
    for domain in EVAL_DOMAINS:
        eval_docs = read_corpus(small["out"][f"eval_{domain}"])
        assert len(eval_docs) == 20
        assert set(eval_docs["split"]) == {"eval"} and set(eval_docs["domain"]) == {domain}
        assert not pretraining & {text_hash(t) for t in eval_docs["text"]}
    forget = read_corpus(small["out"]["eval_forget"])
    assert set(forget["subdomain"]) == {"infectious", "neurological"}  # the two sub-domains of E11


def test_held_out_text_realises_held_out_sentences(small):
    """Trap 7: eval text and the attacker's corpus state known facts in sentences pretraining
    never contains (below 1% overlap), and the attacker's text shares none with the eval text."""
    from tokenfilter.data.overlap import heldout_overlap

    out = small["out"]
    names = {f"eval_{d}": out[f"eval_{d}"] for d in EVAL_DOMAINS} | {"attack": out["attack"]}
    results = {r.name: r for r in heldout_overlap(out["corpus"], {k: str(v) for k, v in names.items()}, 0.01)}
    for name in names:
        assert results[name].sentence_overlap < 0.01 and results[name].n_sentences > 100, results[name]
        # Frames are shared with pretraining (each fact is held out in its own frame), so an 8-gram
        # of a frame's words with a common filler recurs; the trap is about whole sentences.
        assert results[name].ngram_overlap < 0.10, results[name]
    assert results["attack_vs_earlier_heldout"].sentence_overlap < 0.01


def test_the_overlap_check_fires_on_eval_text_taken_from_training(small, tmp_path):
    """The check can fail: eval documents realised from the training frames (the first world's
    mistake) overlap the training split, and the check stops the run naming the set."""
    from tokenfilter.data.corpus import make_record, write_corpus
    from tokenfilter.data.overlap import DataError, heldout_overlap
    from tokenfilter.data.synthetic.documents import DocumentWriter

    world = world_of(SyntheticParams.from_config({}), SEED)
    params = SyntheticParams.from_config({}).documents
    writer = DocumentWriter(world, params, np.random.default_rng([SEED, 2]), "train")  # the training frames
    overlapping = [make_record(i, writer.held_out_document("retain_far")[0]) for i in range(40)]
    write_corpus(tmp_path / "overlapping.parquet", overlapping)
    with pytest.raises(DataError, match="eval_retain_far: .*% of .* sentences occur in the training text"):
        heldout_overlap(small["out"]["corpus"], {"eval_retain_far": str(tmp_path / "overlapping.parquet")}, 0.01)


def test_ambiguous_words_are_marked_in_the_truth(small):
    from tokenfilter.data.synthetic.templates import AMBIGUOUS_WORDS

    corpus = read_corpus(small["out"]["corpus"])
    n = 0
    for text, spans in zip(corpus["text"], corpus["ambiguous"]):
        for s, e in spans:
            assert text[s:e].lower() in AMBIGUOUS_WORDS
            n += 1
    assert n > 1000


def test_training_sets_use_facts_disjoint_from_mcq_eval(small):
    world, out = small["world"], small["out"]
    mcq_facts = {i["fact_id"] for d in EVAL_DOMAINS for i in read_jsonl(out[f"mcq_{d}"])}
    instruct = read_jsonl(out["instruct"])
    chat = read_jsonl(out["chat"])
    refusal = read_jsonl(out["refusal"])
    for name, items in (("instruct", instruct), ("chat", chat), ("refusal", refusal)):
        facts = {i["fact_id"] for i in items}
        assert facts and not facts & mcq_facts, name
    # Instruction and chat data teach formats on non-forget facts only.
    assert {world.facts[i["fact_id"]].domain for i in instruct + chat} == {"retain_near", "retain_far"}
    for item in instruct:
        assert item["completion"] == " " + "ABCD"[item["answer"]]
        assert item["choices"][item["answer"]] == world.facts[item["fact_id"]].object
    # Refusals: exactly the forget-domain items refuse.
    assert {i["refuse"] for i in refusal} == {True, False}
    for item in refusal:
        assert item["refuse"] == (item["domain"] == "forget") == (world.facts[item["fact_id"]].domain == "forget")
    # Free-response questions are on the eval half, like the MCQs (one MCQ per eval-half fact).
    free = read_jsonl(out["free_response"])
    assert {i["fact_id"] for i in free} == mcq_facts
    assert {i["kind"] for i in free if i["domain"] == "forget"} == {"health"}
    assert {i["kind"] for i in free if i["domain"] != "forget"} == {"general"}


# --- App C.2 statistics (the acceptance criterion) --------------------------------------

def test_corpus_statistics_match_paper_app_c2(tmp_path):
    from tokenfilter.data.shards import TokenShard, tokenize_corpus
    from tokenfilter.data.stats import corpus_stats
    from tokenfilter.data.tokenizer import build_tokenizer

    out, _ = _generate(tmp_path / "big", seed=1337, n_docs=4000, val_fraction=0.01)
    texts = read_corpus(out["corpus"], ["text"])["text"].tolist()
    tok = build_tokenizer("train", texts, vocab_size=1024)
    tokenize_corpus(out["corpus"], tok, tmp_path / "tokens", progress=False)
    stats = corpus_stats(TokenShard.open(tmp_path / "tokens"), doc_label_min_forget=0.3)
    assert stats["n_docs"] == 4000
    assert abs(stats["docs_without_forget_pct"] - 23.0) <= 5, stats
    assert abs(stats["docs_over_10pct_forget_pct"] - 37.0) <= 5, stats


# --- small worlds the config schema allows -----------------------------------------------------

@pytest.mark.parametrize("override", [{"world_scale": 0.2}, {"pathogen_fraction": 0.0}],
                         ids=["world_scale_0.2", "pathogen_fraction_0"])
def test_small_worlds_allowed_by_schema_generate(tmp_path, override):
    from tokenfilter.errors import ConfigError

    params = SyntheticParams.from_config({"n_docs": 30, "n_eval_docs": 3, "n_attack_docs": 3, **override})
    try:
        summary = generate_synthetic(params, 1, 0.1, default_outputs(tmp_path))
    except ConfigError as exc:  # acceptable: a clear error naming the setting
        assert next(iter(override)) in str(exc)
    else:
        for domain in EVAL_DOMAINS:
            for item in read_jsonl(default_outputs(tmp_path)[f"mcq_{domain}"]):
                assert len(set(item["choices"])) == 4
        assert summary["n_docs"] == 30


def test_held_out_text_uses_words_pretraining_knows(small):
    """Held-out sentences are new, their words are not: a word pretraining never shows makes the
    eval loss measure surprise at that word (a former world's eval loss was ~6 nats and rose with
    training). Each fact is held out in a frame that pretraining uses for other facts."""
    import re

    from tokenfilter.data.synthetic.documents import fact_frames
    from tokenfilter.data.synthetic.templates import RELATIONS

    def words(texts):
        return [w.lower() for t in texts for w in re.findall(r"[A-Za-z]+", t)]

    known = set(words(small["corpus"]["text"]))
    for name in [f"eval_{d}" for d in EVAL_DOMAINS] + ["attack"]:
        held_out = words(read_corpus(small["out"][name])["text"])
        unseen = sum(w not in known for w in held_out) / len(held_out)
        assert unseen < 0.005, (name, unseen)
    for relation in RELATIONS:
        for fact_id in range(12):
            frames = fact_frames(relation, fact_id)
            assert frames["eval"][0] not in frames["train"] and frames["attack"][0] not in frames["train"]
            assert frames["eval"] != frames["attack"]

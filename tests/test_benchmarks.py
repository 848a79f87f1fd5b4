"""Multiple-choice benchmarks through lm-eval (tokenfilter.evaluate.benchmarks).

A tiny model whose output is rigged to prefer one letter makes accuracy exactly predictable:
on a letter-format task it scores that letter's share of the answers. Everything is offline:
the paper's datasets are written here, a few questions each, in their published formats.
"""

import csv
import json
import math

import pytest
import torch

from tokenfilter.data.synthetic.derived import letter_prompt
from tokenfilter.errors import ConfigError, InputError
from tokenfilter.evaluate import benchmarks as bm

# --- data ----------------------------------------------------------------------------------

DRUGS = ["lorinib", "maxapam", "corvil", "sendra"]
DISEASES = ["Brightitis", "Dullosis", "Fenwick fever", "Grayrot", "Hollow cough", "Inkpox", "Jadeworm", "Kelp lung"]
BUILTIN_ANSWERS = [2, 0, 2, 1, 3, 2, 0, 1]  # C is right 3 times in 8, A twice


def mcq_records(answers=BUILTIN_ANSWERS):
    """Built-in MCQ records (the fields of derived.mcq_items) with the given answer positions."""
    records = []
    for i, answer in enumerate(answers):
        disease = DISEASES[i % len(DISEASES)]
        choices = DRUGS[1:answer + 1] + [DRUGS[0]] + DRUGS[answer + 1:]  # lorinib always right
        question = f"Which drug treats {disease}?"
        records.append({"id": f"mcq-forget-{i}", "domain": "forget", "question": question, "choices": choices,
                        "answer": answer, "prompt": letter_prompt(question, choices),
                        "cloze_context": f"{disease} is treated with", "cloze_choices": [f" {c}." for c in choices]})
    return records


MEDMCQA = [  # (question, options, answer index 0-3)
    ("Which nerve supplies the deltoid?", ["Radial", "Median", "Axillary", "Ulnar"], 2),
    ("Drug of choice for absence seizures?", ["Ethosuximide", "Phenytoin", "Carbamazepine", "Lamotrigine"], 0),
    ("Vitamin deficient in scurvy?", ["A", "B12", "D", "C"], 3),
    ("Most common site of an ectopic pregnancy?", ["Ovary", "Cervix", "Ampulla", "Isthmus"], 2),
]
MEDQA = [
    ("A 30-year-old man has chest pain. What is the next step?", ["ECG", "CT", "MRI", "Biopsy"], 2),
    ("A child has a fever and a rash. What is the diagnosis?", ["Measles", "Mumps", "Rubella", "Roseola"], 0),
    ("A woman has fatigue and pallor. What is the cause?", ["Iron", "Folate", "B12", "Zinc"], 2),
    ("An old man cannot urinate. What is the treatment?", ["Catheter", "Surgery", "Diet", "Rest"], 3),
    ("A teenager has acne. What is first-line therapy?", ["Isotretinoin", "Retinoid", "Steroid", "Antibiotic"], 1),
]
MMLU = [
    ("Which bone is in the arm, near the elbow?", ["Femur", "Tibia", "Ulna", "Fibula"], 2),
    ('The "heart", with a comma, has how many\nchambers?', ["Two", "Four", "Three", "Five"], 1),
    ("Which organ makes bile?", ["Kidney", "Spleen", "Liver", "Lung"], 2),
]


def share(answers, letter):
    return sum(a == "ABCD".index(letter) for a in answers) / len(answers)


def write_medmcqa(path, rows=MEDMCQA, base=1):
    """The original release's JSON lines (cop 1-4) or, with base=0, the Hugging Face copy's."""
    with open(path, "w") as f:
        for i, (question, options, answer) in enumerate(rows):
            record = {"id": f"m{i}", "question": question, **dict(zip(("opa", "opb", "opc", "opd"), options)),
                      "cop": answer + base, "choice_type": "single", "exp": None, "subject_name": "Anatomy"}
            f.write(json.dumps(record) + "\n")


def write_medqa(path, rows=MEDQA):
    with open(path, "w") as f:
        for question, options, answer in rows:
            record = {"question": question, "answer": options[answer], "options": dict(zip("ABCD", options)),
                      "meta_info": "step1", "answer_idx": "ABCD"[answer]}
            f.write(json.dumps(record) + "\n")


def write_mmlu(path, rows=MMLU):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        for question, options, answer in rows:
            writer.writerow([question, *options, "ABCD"[answer]])


# --- tiny tokenizer and models ---------------------------------------------------------------


def corpus_texts():
    texts = [r["prompt"] + " " + "ABCD"[r["answer"]] for r in mcq_records()]
    texts += [r["cloze_context"] + r["cloze_choices"][0] for r in mcq_records()]
    for rows in (MEDMCQA, MEDQA, MMLU):
        for question, options, answer in rows:
            texts.append(f"Question: {question}\nChoices:\nA. {options[0]}\nB. {options[1]}\nC. {options[2]}\n"
                         f"D. {options[3]}\nAnswer: {'ABCD'[answer]}")
    texts += [f"The answer is {letter}. Answer: {letter}" for letter in "ABCD"]
    return texts * 10


def rig(model, token_ids, strength=5.0):
    """Make ``token_ids`` the most likely next tokens after any context.

    Every embedding row gets ``strength`` in dimension 0 and the favoured rows twice that. The
    residual stream is then dominated by dimension 0 (the blocks add little at init), so after
    the final norm it is about +4 there, and the tied LM head gives the favoured tokens a logit
    about 4·strength above every other token, whatever the context.
    """
    with torch.no_grad():
        weight = model.transformer.wte.weight
        weight[:, 0] = strength
        weight[token_ids, 0] = 2 * strength
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tokenizer, a random model and models rigged to answer A or C, saved as the workflow saves them."""
    from tokenfilter.data.tokenizer import build_tokenizer, padded_vocab_size
    from tokenfilter.model.checkpoint import save_model
    from tokenfilter.model.hf import TokenFilterConfig, TokenFilterForCausalLM

    root = tmp_path_factory.mktemp("bench_tiny")
    tokenizer = build_tokenizer("train", corpus_texts(), vocab_size=300)
    tokenizer.save(root / "tokenizer" / "tokenizer.json")
    config = TokenFilterConfig(vocab_size=padded_vocab_size(tokenizer.vocab_size), n_layer=1, n_head=2, n_embd=16,
                               block_size=512)
    models = {}
    for name, letter in (("random", None), ("always_A", "A"), ("always_C", "C")):
        torch.manual_seed(0)
        model = TokenFilterForCausalLM(config).eval()
        if letter is not None:
            rig(model, tokenizer.encode(f" {letter}"))
        models[name] = root / "models" / name
        save_model(model, models[name])
    return {"root": root, "tokenizer": root / "tokenizer" / "tokenizer.json", "models": models}


# --- built-in tasks ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin(tiny):
    from tokenfilter.io import write_jsonl

    mcq = tiny["root"] / "mcq" / "forget.jsonl"
    write_jsonl(mcq, mcq_records())
    task_dir = tiny["root"] / "tasks_builtin"
    names = bm.write_builtin_tasks({"forget": mcq}, task_dir)
    models = {k: tiny["models"][k] for k in ("always_A", "always_C")}
    results = bm.evaluate_models(models, tiny["tokenizer"], task_dir, names, batch_size=4)
    return {"mcq": mcq, "task_dir": task_dir, "names": names, "results": results}


def test_builtin_task_names(builtin):
    assert builtin["names"] == ["tokenfilter_forget_letter", "tokenfilter_forget_cloze"]
    assert sorted(p.name for p in builtin["task_dir"].glob("*.yaml")) == sorted(f"{n}.yaml" for n in builtin["names"])


@pytest.mark.parametrize("model, letter", [("always_A", "A"), ("always_C", "C")])
def test_letter_task_scores_the_rigged_letters_share(builtin, model, letter):
    row = builtin["results"][model]["tokenfilter_forget_letter"]
    n = len(BUILTIN_ANSWERS)
    p = share(BUILTIN_ANSWERS, letter)
    assert row["n"] == n and row["chance"] == 0.25
    assert row["acc"] == pytest.approx(p, abs=1e-12)
    # lm-eval's stderr of a mean: sample standard deviation / sqrt(n).
    assert row["acc_stderr"] == pytest.approx(math.sqrt(p * (1 - p) * n / (n - 1) / n))


def test_cloze_task_runs(builtin):
    for model in ("always_A", "always_C"):
        row = builtin["results"][model]["tokenfilter_forget_cloze"]
        assert row["n"] == len(BUILTIN_ANSWERS)
        for key in ("acc", "acc_norm"):
            assert 0.0 <= row[key] <= 1.0
            assert isinstance(row[f"{key}_stderr"], float) and row[f"{key}_stderr"] >= 0.0


def test_builtin_prompts_are_the_records_text(builtin):
    """The letter task scores " A".." D" after the prompt; the cloze task each option after the stem."""
    from lm_eval.tasks import TaskManager

    loaded = TaskManager(include_path=str(builtin["task_dir"]), include_defaults=False).load(builtin["names"])["tasks"]
    record = mcq_records()[0]
    letter, cloze = loaded["tokenfilter_forget_letter"], loaded["tokenfilter_forget_cloze"]
    doc = letter.eval_docs[0]
    requests = letter.construct_requests(doc, letter.fewshot_context(doc=doc, num_fewshot=0))
    assert [r.arguments for r in requests] == [(record["prompt"], f" {x}") for x in "ABCD"]
    doc = cloze.eval_docs[0]
    requests = cloze.construct_requests(doc, cloze.fewshot_context(doc=doc, num_fewshot=0))
    assert [r.arguments for r in requests] == [(record["cloze_context"], c) for c in record["cloze_choices"]]
    assert letter.doc_to_target(doc) == cloze.doc_to_target(doc) == record["answer"]


def test_builtin_tasks_of_the_worlds_mcq_files(tmp_path):
    """The MCQ files the data stage writes (derived.mcq_items) load as tasks, every record a doc."""
    import numpy as np
    from lm_eval.tasks import TaskManager

    from tokenfilter.data.synthetic import derived
    from tokenfilter.data.synthetic.build import EVAL_DOMAINS, SyntheticParams, world_of
    from tokenfilter.io import write_jsonl

    world = world_of(SyntheticParams.from_config({}), seed=7)
    halves = derived.split_facts(world, seed=7)
    rng = np.random.default_rng(0)
    files, items = {}, {}
    for domain in EVAL_DOMAINS:
        items[domain] = derived.mcq_items(world, halves[domain]["eval"], domain, rng, 5)
        files[domain] = tmp_path / "mcq" / f"{domain}.jsonl"
        write_jsonl(files[domain], items[domain])
    names = bm.write_builtin_tasks(files, tmp_path / "tasks")
    assert names == [bm.builtin_task_name(d, f) for d in EVAL_DOMAINS for f in bm.FORMATS]
    loaded = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False).load(names)["tasks"]
    for domain in EVAL_DOMAINS:
        letter, cloze = (loaded[bm.builtin_task_name(domain, f)] for f in bm.FORMATS)
        assert [letter.doc_to_text(d) for d in letter.eval_docs] == [i["prompt"] for i in items[domain]]
        assert [cloze.doc_to_choice(d) for d in cloze.eval_docs] == [i["cloze_choices"] for i in items[domain]]


# --- broken tasks raise ------------------------------------------------------------------------


@pytest.fixture
def fresh_tasks(tmp_path):
    from tokenfilter.io import write_jsonl

    mcq = tmp_path / "forget.jsonl"
    write_jsonl(mcq, mcq_records())
    names = bm.write_builtin_tasks({"forget": mcq}, tmp_path / "tasks", formats=("letter",))
    return tmp_path / "tasks", names[0], mcq


def test_broken_yaml_is_not_skipped_silently(fresh_tasks):
    task_dir, name, _ = fresh_tasks
    (task_dir / f"{name}.yaml").write_text("task: tokenfilter_forget_letter\ndoc_to_text: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{name}.*{name}\.yaml.*lm-eval skips this YAML"):
        bm.check_tasks_resolve(task_dir, [name])


def test_broken_include_is_not_skipped_silently(fresh_tasks):
    task_dir, name, _ = fresh_tasks
    (task_dir / f"{name}.yaml").write_text(f"include: /nonexistent/base.yaml\ntask: {name}\n")
    with pytest.raises(ConfigError, match=rf"{name}.*lm-eval skips this YAML.*nonexistent"):
        bm.check_tasks_resolve(task_dir, [name])


def test_missing_data_file_raises(fresh_tasks, tiny):
    task_dir, name, mcq = fresh_tasks
    mcq.unlink()
    with pytest.raises(ConfigError, match=rf"{name}.*data file of split 'test' not found: {mcq}"):
        bm.check_tasks_resolve(task_dir, [name])
    with pytest.raises(ConfigError, match="data file"):  # evaluation checks before loading any model
        bm.evaluate_models({"m": tiny["models"]["random"]}, tiny["tokenizer"], task_dir, [name], batch_size=2)


def test_unknown_task_raises(fresh_tasks):
    task_dir, _, _ = fresh_tasks
    with pytest.raises(ConfigError, match="tokenfilter_nope: no task of this name"):
        bm.check_tasks_resolve(task_dir, ["tokenfilter_nope"])


def test_bad_builtin_record_raises(tmp_path):
    from tokenfilter.io import write_jsonl

    records = mcq_records()
    records[2]["answer"] = 4
    write_jsonl(tmp_path / "forget.jsonl", records)
    with pytest.raises(InputError, match=r"forget\.jsonl:3: answer 4"):
        bm.write_builtin_tasks({"forget": tmp_path / "forget.jsonl"}, tmp_path / "tasks")
    with pytest.raises(ConfigError, match="format 'mcq'"):
        bm.write_builtin_tasks({"forget": tmp_path / "forget.jsonl"}, tmp_path / "tasks", formats=("mcq",))


# --- paper tasks ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper(tiny):
    src = tiny["root"] / "published"
    src.mkdir()
    write_medmcqa(src / "dev.json")
    write_medqa(src / "phrases_no_exclude_test.jsonl")
    write_mmlu(src / "anatomy_test.csv")
    local = {"medmcqa": src / "dev.json", "medqa_4options": src / "phrases_no_exclude_test.jsonl",
             **bm.mmlu_files(src, ["medmcqa", "mmlu_anatomy"])}
    assert local["mmlu_anatomy"] == src / "anatomy_test.csv"
    task_dir = tiny["root"] / "tasks_paper"
    names = bm.write_paper_tasks(local, task_dir)
    results = bm.evaluate_models({"always_C": tiny["models"]["always_C"]}, tiny["tokenizer"], task_dir, names,
                                 batch_size=4)
    return {"task_dir": task_dir, "names": names, "results": results["always_C"]}


PAPER = {"medmcqa": MEDMCQA, "medqa_4options": MEDQA, "mmlu_anatomy": MMLU}


@pytest.mark.parametrize("name", PAPER)
def test_paper_letter_task_scores_the_rigged_letters_share(paper, name):
    answers = [a for _, _, a in PAPER[name]]
    row = paper["results"][f"tokenfilter_{name}_letter"]
    assert row["n"] == len(answers)
    assert row["acc"] == pytest.approx(share(answers, "C"), abs=1e-12)


@pytest.mark.parametrize("name", PAPER)
def test_paper_cloze_task_runs(paper, name):
    row = paper["results"][f"tokenfilter_{name}_cloze"]
    assert row["n"] == len(PAPER[name])
    assert 0.0 <= row["acc"] <= 1.0 and 0.0 <= row["acc_norm"] <= 1.0
    assert isinstance(row["acc_stderr"], float)


def test_paper_prompts_are_lm_evals(paper):
    """Our copies give lm-eval's own prompts: its !function for MedMCQA/MedQA, its template for MMLU."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks.medmcqa.utils_medmcqa import doc_to_text as medmcqa_text
    from lm_eval.tasks.medqa.preprocess_medqa import doc_to_text as medqa_text

    loaded = TaskManager(include_path=str(paper["task_dir"]), include_defaults=False).load(paper["names"])["tasks"]

    task = loaded["tokenfilter_medmcqa_letter"]
    doc = task.eval_docs[0]
    question, options, answer = MEDMCQA[0]
    hf_doc = {"question": question, **dict(zip(("opa", "opb", "opc", "opd"), options)), "cop": answer}
    assert task.doc_to_text(doc) == medmcqa_text(hf_doc)
    assert task.doc_to_text(doc).startswith(f"Question: {question}\nChoices:\nA. Radial\n")
    assert task.doc_to_target(doc) == answer and task.doc_to_choice(doc) == list("ABCD")

    task = loaded["tokenfilter_medqa_4options_letter"]
    doc = task.eval_docs[0]
    question, options, answer = MEDQA[0]
    hf_doc = {"sent1": question, **{f"ending{i}": o for i, o in enumerate(options)}, "label": answer}
    assert task.doc_to_text(doc) == medqa_text(hf_doc)
    assert task.doc_to_target(doc) == answer

    task = loaded["tokenfilter_mmlu_anatomy_letter"]
    doc = task.eval_docs[1]
    question, options, answer = MMLU[1]
    assert task.doc_to_text(doc) == (f"{question}\nA. Two\nB. Four\nC. Three\nD. Five\nAnswer:")
    assert task.doc_to_target(doc) == answer
    assert task.config.description.startswith("The following are multiple choice questions (with answers) about anatomy")

    task = loaded["tokenfilter_mmlu_anatomy_cloze"]
    doc = task.eval_docs[0]
    assert task.doc_to_text(doc) == f"Question: {MMLU[0][0]}\nAnswer:"
    assert task.doc_to_choice(doc) == MMLU[0][1]

    task = loaded["tokenfilter_medmcqa_cloze"]
    doc = task.eval_docs[0]
    assert task.doc_to_text(doc) == f"Question: {MEDMCQA[0][0]}\nAnswer:"
    assert task.doc_to_choice(doc) == MEDMCQA[0][1] and task.doc_to_target(doc) == MEDMCQA[0][2]


def test_paper_yaml_includes_builtin_by_path(paper):
    import yaml

    config = yaml.safe_load((paper["task_dir"] / "tokenfilter_medmcqa_letter.yaml").read_text())
    assert config["include"] == str(bm.builtin_yaml_path("medmcqa", "letter"))
    assert config["include"].endswith("lm_eval/tasks/medmcqa/medmcqa.yaml")
    assert config["dataset_path"] == "json" and config["dataset_name"] is None and config["tag"] is None
    assert list(config["dataset_kwargs"]["data_files"]) == ["validation"]  # medmcqa's test_split
    config = yaml.safe_load((paper["task_dir"] / "tokenfilter_mmlu_anatomy_cloze.yaml").read_text())
    assert config["include"].endswith("lm_eval/tasks/mmlu/continuation/mmlu_anatomy.yaml")
    assert list(config["dataset_kwargs"]["data_files"]) == ["test"]


def test_medmcqa_cop_numbering(tmp_path):
    """The original release numbers cop 1-4, the Hugging Face copy 0-3: both read the same."""
    write_medmcqa(tmp_path / "original.json", base=1)
    write_medmcqa(tmp_path / "hf.json", base=0)
    original = bm.read_published("medmcqa", tmp_path / "original.json")
    assert original == bm.read_published("medmcqa", tmp_path / "hf.json")
    assert [r["cop"] for r in original] == [a for _, _, a in MEDMCQA]
    ambiguous = [row for row in MEDMCQA if row[2] in (1, 2)]  # cop 2-3 or 1-2: cannot tell
    write_medmcqa(tmp_path / "ambiguous.json", ambiguous, base=1)
    with pytest.raises(InputError, match="ambiguous.json: cannot tell"):
        bm.read_published("medmcqa", tmp_path / "ambiguous.json")
    rows = bm.read_published("medmcqa", tmp_path / "ambiguous.json", medmcqa_cop_base=1)
    assert [r["cop"] for r in rows] == [a for _, _, a in ambiguous]


def _lines(text):
    return text.strip("\n") + "\n"


BAD_ROWS = [  # (task, file name, content, line of the error, message)
    ("mmlu_anatomy", "anatomy_test.csv", 'Q1,a,b,c,d,A\n"Q2\nspans lines",a,b,c,B\n', 2, "expected 6 columns"),
    ("mmlu_anatomy", "anatomy_test.csv", "Q1,a,b,c,d,A\nQ2,a,b,c,d,A\nQ3,a,b,c,d,E\n", 3, "answer 'E'"),
    ("medmcqa", "dev.json", '{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 1}\n'
                            '{"question": "q", "opa": "a", "opb": "b", "opc": "c", "cop": 2}\n', 2, "missing field 'opd'"),
    ("medmcqa", "dev.json", '{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 4}\n\n'
                            '{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 5}\n', 3, "cop 5"),
    ("medmcqa", "dev.json", '{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0}\n'
                            '{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 4}\n', 2, "mixed"),
    ("medqa_4options", "test.jsonl", '{"question": "q", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, '
                                     '"answer_idx": "E"}\n', 1, "answer_idx 'E'"),
    ("medqa_4options", "test.jsonl", '{"question": "q", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, '
                                     '"answer_idx": "A"}\n{"question": "q", "options": {"A": "a", "B": "b", '
                                     '"C": "c", "E": "d"}, "answer_idx": "A"}\n', 2, "options should map"),
    ("medqa_4options", "test.jsonl", '{"question": "q", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, '
                                     '"answer_idx": "A"}\n{"question": "q", "options": \n', 2, "invalid JSON"),
]


@pytest.mark.parametrize("name, filename, content, line, problem", BAD_ROWS)
def test_malformed_published_row_names_file_and_line(tmp_path, name, filename, content, line, problem):
    path = tmp_path / filename
    path.write_text(content)
    with pytest.raises(InputError, match=problem) as err:
        bm.write_paper_tasks({name: path}, tmp_path / "tasks")
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert not (tmp_path / "tasks").exists()  # nothing written for a bad file


def test_paper_task_names_and_their_lm_eval_yamls():
    names = bm.paper_task_names()
    assert names[:2] == ["medmcqa", "medqa_4options"] and len(names) == 2 + 6 + 4 + 9 + 12
    assert bm.paper_task_names(["mmlu_medicine"]) == [f"mmlu_{s}" for s in bm.MMLU_SUBJECTS["medicine"]]
    with pytest.raises(ConfigError, match="unknown benchmark group"):
        bm.paper_task_names(["mmlu_everything"])
    for name in names:  # every paper task has the YAMLs we include, in both formats (fast check)
        for fmt in bm.FORMATS:
            assert bm.builtin_yaml_path(name, fmt).is_file()
    with pytest.raises(ConfigError, match="mmlu_cooking"):
        bm.builtin_yaml_path("mmlu_cooking", "letter")


@pytest.mark.slow  # builds lm-eval's full task index (~8 s)
def test_paper_tasks_resolve_in_pinned_lm_eval():
    paths = bm.check_paper_tasks_resolve(bm.paper_task_names())
    assert set(paths) == set(bm.paper_task_names())
    assert paths["medmcqa"] == str(bm.builtin_yaml_path("medmcqa", "letter"))

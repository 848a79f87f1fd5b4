"""The capability stage's glue: model lists and specs from config, task sets, pooled accuracy,
question selection, chat SFT masking through the fine-tuning batches, the claims' verdicts on
hand-made results, and the report written from hand-made tables."""

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tokenfilter.analysis.scorecard import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, SCORECARD_COLUMNS
from tokenfilter.config import load_config, validate_config
from tokenfilter.config.experiments import (benchmark_models, posttrain_models, posttrain_spec, probe_models,
                                            refusal_models)
from tokenfilter.errors import ConfigError
from tokenfilter.evaluate import capabilities as cap
from tokenfilter.evaluate import claims as cl
from tokenfilter.train.loop import TrainSpec

REPO = Path(__file__).resolve().parents[1]
ORDER = ["s", "m", "l"]


@pytest.fixture(scope="module")
def config():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["experiments"] = {"main": {"kind": "ladder", "arms": ["baseline", "document", "mask", "remove"],
                                   "sizes": ["xs", "s", "xl"], "seeds": {"s": 3}}}
    cfg["capabilities"] = {"benchmarks": {"sizes": ["xl"], "baseline_sizes": ["xs", "xl"]},
                           "posttrain": {"sizes": ["xl"]}, "refusal": {"seeds": 2, "variants": ["token"]},
                           "probes": {"sizes": ["s"], "subdomain_sizes": ["xs"]}}
    return validate_config(cfg)


# --- config ---------------------------------------------------------------------------------

def test_models_of_each_part_follow_the_config(config):
    assert benchmark_models(config) == [("baseline", "xl", 0), ("document", "xl", 0), ("mask", "xl", 0),
                                        ("remove", "xl", 0), ("baseline", "xs", 0)]
    assert posttrain_models(config) == [(a, "xl") for a in ("baseline", "document", "mask", "remove")]
    assert [m for m in refusal_models(config) if m[1] == "mask"] == [("token", "mask", "xl", 0), ("token", "mask", "xl", 1)]
    assert len(probe_models(config, "s")) == 4 * 3  # every arm and seed of the seeded size


def test_posttrain_spec_runs_through_the_one_loop(config):
    spec = posttrain_spec(config, "refusal_token", "mask", "xl", "chat/model", "ex.jsonl", replicate=1)
    assert spec["task"] == "finetune" and spec["init_from"] == "chat/model" and spec["schedule"] == "constant"
    assert spec["seed"] == config["seed"] + 1 and spec["lr"] == config["capabilities"]["refusal"]["lr"]
    # batch_size examples per step: each example is one block_size window of the batch budget.
    per_step = spec["batch_tokens"] // config["model"]["block_size"]
    assert per_step == config["capabilities"]["refusal"]["batch_size"] and per_step % spec["micro_batch_size"] == 0
    TrainSpec.from_dict({**spec, "out_dir": "o", "checkpoint_dir": "c", "checkpoint_every": 1, "threads": 1,
                         "log_every": 1, "keep_checkpoints": False, "wandb": False, "tensorboard": False,
                         "peak_flops": None})
    with pytest.raises(ConfigError, match="post-training stage"):
        posttrain_spec(config, "refusal_carrot", "mask", "xl", "m", "e")


def test_capability_sizes_must_be_main_ladder_sizes(config):
    bad = copy.deepcopy(config)
    bad["capabilities"]["probes"]["subdomain_sizes"] = ["m"]
    with pytest.raises(ConfigError, match=r"capabilities.probes.subdomain_sizes': 'm' is not a size of series 'main'"):
        validate_config(bad)
    real = copy.deepcopy(config)
    real["data"] = {"source": "files", "files": [{"glob": "x.jsonl"}],
                    "eval_text": {d: {"source": "files", "files": [{"glob": "x.jsonl"}]}
                                  for d in ("forget", "retain_near", "retain_far")}}
    real["filters"] = {"clf": {"kind": "classifier", "classifier": "c"}}
    real["filtering"]["filter"] = "clf"
    with pytest.raises(ConfigError) as error:
        validate_config(real)
    for key in ("capabilities.benchmarks.tasks", "capabilities.posttrain.sizes", "capabilities.probes.sizes",
                "judge.kind"):
        assert key in str(error.value)


def test_shipped_configs_switch_the_stage_on():
    default = load_config(REPO / "config" / "config.yaml")
    assert all(cap_part for cap_part in (benchmark_models(default), posttrain_models(default), refusal_models(default)))
    assert default["capabilities"]["refusal"]["seeds"] == 3
    paper = load_config(REPO / "config" / "paper.yaml")
    files = cap.published_files(paper["capabilities"]["benchmarks"]["tasks"], paper["capabilities"]["benchmarks"]["local"])
    assert files["medmcqa"].startswith("resources/") and files["mmlu_anatomy"] == "resources/benchmarks/mmlu/test/anatomy_test.csv"
    assert len(files) == 2 + 6 + 4 + 9 + 12


# --- task sets and accuracy -----------------------------------------------------------------

def test_task_sets_map_every_lm_eval_task_to_its_set_and_domain():
    sets = {s["set"]: s for s in cap.task_sets(["builtin", "mmlu_bio", "medqa"])}
    assert sets["forget"]["sources"] == ["forget"] and sets["mmlu_bio"]["domain"] == "retain_near"
    assert sets["medqa"]["sources"] == ["medqa_4options"] and sets["medqa"]["domain"] == "forget"
    names = cap.task_names(["builtin", "mmlu_bio"], "cloze")
    assert names["tokenfilter_forget_cloze"] == "forget"
    assert names["tokenfilter_mmlu_college_biology_cloze"] == "mmlu_bio" and len(names) == 3 + 4
    with pytest.raises(ConfigError, match="unknown task set"):
        cap.task_sets(["mmlu_cooking"])


def test_pooled_accuracy_weights_by_questions():
    pooled = cap.pooled_accuracy([{"acc": 0.5, "acc_stderr": 0.1, "n": 100}, {"acc": 1.0, "acc_stderr": 0.0, "n": 300}])
    assert pooled["acc"] == pytest.approx(0.875) and pooled["n"] == 400
    assert pooled["acc_stderr"] == pytest.approx(math.sqrt((100 * 0.1) ** 2) / 400)


def test_benchmark_table_pools_a_group_of_tasks():
    results = {"mask/xl/r0": {"a": {"acc": 0.5, "acc_stderr": 0.05, "n": 10}, "b": {"acc": 0.0, "acc_stderr": 0.0, "n": 10},
                              "tokenfilter_forget_cloze": {"acc": 0.25, "acc_stderr": 0.02, "n": 40}}}
    table = cap.benchmark_table(results, {"a": "mmlu_bio", "b": "mmlu_bio", "tokenfilter_forget_cloze": "forget"},
                                "cloze", ["builtin", "mmlu_bio"])
    row = table.set_index("set").loc["mmlu_bio"]
    assert row["acc"] == pytest.approx(0.25) and row["n"] == 20 and row["domain"] == "retain_near"
    assert row["arm"] == "mask" and row["size"] == "xl" and row["replicate"] == 0 and row["chance"] == 0.25


def test_question_limit_is_per_kind_in_file_order():
    items = [{"id": i, "kind": "health" if i % 3 else "general"} for i in range(12)]
    picked = cap.select_questions(items, 2)
    assert [p["id"] for p in picked] == [0, 1, 2, 3]
    assert len(cap.select_questions(items, None)) == 12
    refusal = [{"id": i, "refuse": i < 5} for i in range(10)]
    assert [p["id"] for p in cap.select_questions(refusal, 1)] == [0, 5]


# --- chat SFT through the one loop's batch source -------------------------------------------

def test_chat_sft_batches_learn_only_assistant_turns(tiny_world, tmp_path):
    from tokenfilter.posttrain.formats import encode_chat
    from tokenfilter.train.finetuning import FinetuneBatches, read_examples, write_examples

    tokenizer = tiny_world["tokenizer"]
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Where does the fox live?"},
                {"role": "assistant", "content": "The fox lives in the forest."},
                {"role": "user", "content": "And the owl?"}, {"role": "assistant", "content": "In the barn."}]
    path = tmp_path / "chat.jsonl"
    write_examples(path, [encode_chat(tokenizer, messages)])
    batch = FinetuneBatches(read_examples(path), 512, seed=0, pad_id=0).batch(0, 0, 1)
    weights, targets = batch.weights[0], batch.targets[0]
    learnt = [int(t) for t, w in zip(targets, weights) if w > 0]
    end = tokenizer.special_ids["im_end"]
    assert learnt.count(end) == 2  # each assistant turn's end marker, never the user's
    text = tokenizer.decode([t for t in learnt if t != end])
    assert text == "The fox lives in the forest.In the barn."  # nothing of the system or user turns


# --- claims ---------------------------------------------------------------------------------

def _mcq(rows):
    return pd.DataFrame([{"format": "cloze", "size": size, "arm": arm, "replicate": 0, "set": domain, "domain": domain,
                          "acc": acc, "acc_stderr": se, "n": 300, "chance": 0.25} for size, arm, domain, acc, se in rows])


def test_decide_se_has_three_outcomes():
    assert cl.decide_se(0.10, 0.02)[0] == HOLDS
    assert cl.decide_se(-0.10, 0.02)[0] == FAILS
    assert cl.decide_se(0.03, 0.02)[0] == INCONCLUSIVE
    assert cl.decide_se(float("nan"), 0.02)[0] == NOT_MEASURED


def test_near_chance_claim_holds_fails_or_cannot_be_read():
    rows = []
    for arm, forget in [("baseline", 0.60), ("document", 0.26), ("mask", 0.45), ("remove", 0.55)]:
        rows += [("l", arm, "forget", forget, 0.025), ("l", arm, "retain_near", 0.7, 0.025),
                 ("l", arm, "retain_far", 0.8, 0.025)]
    claims = pd.DataFrame(cl.mcq_claims(_mcq(rows), ORDER), columns=SCORECARD_COLUMNS).set_index("claim")
    cloze = [c for c in claims.index if "cloze" in c]
    near = {arm: claims.loc[[c for c in cloze if c.startswith(cl.NAMES[arm].capitalize() + " answers")][0], "verdict"]
            for arm in ("document", "mask", "remove")}
    assert near == {"document": HOLDS, "mask": FAILS, "remove": FAILS}
    token_vs_doc = claims.loc[[c for c in cloze if c.startswith("Token removal leaves more")][0]]
    assert token_vs_doc["verdict"] == HOLDS and token_vs_doc["margin"] == pytest.approx(0.55 - 0.26)
    letter = claims.loc[[c for c in claims.index if "letter format" in c and "answers" in c]]
    assert set(letter["verdict"]) == {NOT_MEASURED}  # no letter-format results at all
    # A baseline at chance leaves nothing to remove: inconclusive, not "holds".
    weak = [(s, a, d, 0.26 if d == "forget" else acc, se) for s, a, d, acc, se in rows]
    weak_claims = pd.DataFrame(cl.mcq_claims(_mcq(weak), ORDER))
    assert set(weak_claims[weak_claims["claim"].str.contains("near chance \\(cloze")]["verdict"]) == {INCONCLUSIVE}


def test_retain_claim_fails_on_a_clear_drop_only():
    rows = [("l", a, d, acc, 0.02) for a in ("baseline", "document", "mask", "remove")
            for d, acc in (("forget", 0.6), ("retain_far", 0.8))]
    rows += [("l", "baseline", "retain_near", 0.70, 0.02), ("l", "document", "retain_near", 0.55, 0.02),
             ("l", "mask", "retain_near", 0.69, 0.02), ("l", "remove", "retain_near", 0.68, 0.02)]
    claims = pd.DataFrame(cl.mcq_claims(_mcq(rows), ORDER))
    retain = claims[claims["claim"].str.startswith("Retain-domain MCQ accuracy holds") & claims["claim"].str.contains("cloze")]
    assert retain["verdict"].tolist() == [FAILS] and "document" in retain["measured"].iloc[0]
    drop = claims[claims["claim"].str.startswith("Token masking slightly lowers") & claims["claim"].str.contains("cloze")]
    assert drop["verdict"].tolist() == [INCONCLUSIVE]  # 0.01 with a standard error of 0.028


def _free(rates):
    return pd.DataFrame([{"size": "l", "arm": arm, "kind": kind, "criterion": criterion, "rate": rate, "n": 300}
                         for (arm, kind, criterion), rate in rates.items()])


def test_free_response_correctness_claim():
    rates = {}
    for arm, health, general in [("baseline", 0.5, 0.6), ("document", 0.3, 0.6), ("mask", 0.1, 0.58),
                                 ("remove", 0.45, 0.2)]:
        for criterion in ("correct", "relevant", "coherent"):
            rates[(arm, "health", criterion)] = health
            rates[(arm, "general", criterion)] = general
    claims = pd.DataFrame(cl.free_response_claims(_free(rates), ORDER))
    correct = claims[claims["claim"].str.contains("far more")]
    correct = correct.set_index(correct["claim"].str.split().str[1])
    assert correct.loc["masking", "verdict"] == HOLDS  # health −0.40, general −0.02
    assert correct.loc["removal", "verdict"] == FAILS  # general falls far more than health
    milder = claims[claims["claim"].str.startswith("Document filtering lowers")]
    assert milder["verdict"].tolist() == [HOLDS, FAILS]  # document 0.3 vs masking 0.1 / removal 0.45
    rates[("baseline", "health", "correct")] = 0.0
    weak = pd.DataFrame(cl.free_response_claims(_free(rates), ORDER))
    assert set(weak[weak["claim"].str.contains("far more")]["verdict"]) == {INCONCLUSIVE}


def _refusal(per_seed):
    rows = []
    for (arm, kind), rates in per_seed.items():
        rows.append({"variant": "prose", "size": "l", "arm": arm, "kind": kind, "rate": float(np.mean(rates)),
                     "replicate_rates": " ".join(f"{r:.4f}" for r in rates)})
    return pd.DataFrame(rows)


def test_refusal_claims_are_decided_by_seed():
    per_seed = {("baseline", "health"): [0.30, 0.32, 0.28], ("remove", "health"): [0.60, 0.65, 0.62],
                ("mask", "health"): [0.29, 0.35, 0.27], ("document", "general"): [0.30, 0.35, 0.28],
                ("baseline", "general"): [0.05, 0.06, 0.04], ("remove", "general"): [0.05, 0.05, 0.06],
                ("mask", "general"): [0.05, 0.05, 0.05], ("document", "health"): [0.4, 0.4, 0.4]}
    claims = pd.DataFrame(cl.refusal_claims(_refusal(per_seed), ORDER))
    prose = claims[claims["claim"].str.contains("prose")]
    assert prose["verdict"].tolist() == [HOLDS, INCONCLUSIVE, HOLDS]
    assert prose["margin"].iloc[0] == pytest.approx(np.mean([0.30, 0.33, 0.34]))
    assert claims[claims["claim"].str.contains("token refusals")]["verdict"].tolist() == [NOT_MEASURED]
    two_seeds = {k: v[:2] for k, v in per_seed.items()}
    assert set(pd.DataFrame(cl.refusal_claims(_refusal(two_seeds), ORDER))["verdict"]) <= {INCONCLUSIVE, NOT_MEASURED}


def test_probe_claims_read_the_seeded_size_and_the_trend():
    rows = []
    for size, gap in (("s", 0.20), ("m", 0.10), ("l", 0.01)):
        for k in range(3 if size == "m" else 1):
            rows.append({"arm": "baseline", "size": size, "replicate": k, "f1": 0.8 + 0.01 * k, "layer": 1})
            for arm in ("document", "mask", "remove"):
                rows.append({"arm": arm, "size": size, "replicate": k, "f1": 0.8 - gap + 0.01 * k, "layer": 1})
    claims = pd.DataFrame(cl.probe_claims(pd.DataFrame(rows), ORDER))
    within = claims[claims["claim"].str.contains("nearly as well")]
    assert set(within["verdict"]) == {FAILS} and within["claim"].str.contains("size m").all()  # gap 0.10 > 0.05
    trend = claims[claims["claim"].str.contains("closes with scale")].iloc[0]
    assert trend["verdict"] == HOLDS and trend["margin"] == pytest.approx(0.19)


def test_subdomain_claims_use_fold_standard_errors():
    rows = []
    for arm, accuracy in (("baseline", 0.95), ("document", 0.94), ("mask", 0.70), ("remove", 0.93)):
        rows.append({"arm": arm, "size": "s", "task": "infectious_vs_neurological", "accuracy": accuracy,
                     "accuracy_sd": 0.04, "folds": 4})
        rows.append({"arm": arm, "size": "s", "task": "infectious_vs_non_medical", "accuracy": 0.99,
                     "accuracy_sd": 0.01, "folds": 4})
    claims = pd.DataFrame(cl.subdomain_claims(pd.DataFrame(rows), ORDER))
    assert claims["verdict"].tolist() == [HOLDS, INCONCLUSIVE, HOLDS]


def test_empty_results_are_not_measured():
    empty = pd.DataFrame()
    claims = cl.capability_claims(empty, empty, empty, empty, empty, ORDER)
    assert list(claims.columns) == SCORECARD_COLUMNS and set(claims["verdict"]) == {NOT_MEASURED}


# --- the report from hand-made tables ---------------------------------------------------------

def test_report_writes_every_item(tmp_path):
    from tokenfilter.evaluate.report import write_report
    from tokenfilter.io import write_json

    mcq = tmp_path / "cloze.csv"
    _mcq([("s", arm, d, 0.5, 0.03) for arm in ("baseline", "mask") for d in ("forget", "retain_near")]).to_csv(mcq, index=False)
    free = tmp_path / "free.csv"
    rates = {(arm, kind, c): 0.5 for arm in ("baseline", "mask") for kind in ("health", "general")
             for c in ("correct", "relevant", "coherent")}
    _free(rates).assign(ci_low=0.4, ci_high=0.6).to_csv(free, index=False)
    samples = tmp_path / "samples.csv"
    pd.DataFrame([{"size": "l", "id": "q1", "question": "Q?", "baseline": "A.", "mask": "B."}]).to_csv(samples, index=False)
    refusal = tmp_path / "refusal.csv"
    _refusal({("baseline", "health"): [0.5], ("mask", "health"): [0.4], ("baseline", "general"): [0.1],
              ("mask", "general"): [0.1]}).assign(ci_low=0.0, ci_high=0.9).to_csv(refusal, index=False)
    probes = tmp_path / "probes.json"
    write_json(probes, [{"arm": arm, "size": "s", "replicate": 0, "n_tokens": 100,
                         "rows": [{"layer": layer, "f1": 0.7 + 0.05 * layer} for layer in (0, 1)]}
                        for arm in ("baseline", "mask")])
    subdomains = tmp_path / "subdomains.json"
    write_json(subdomains, [{"arm": arm, "size": "s", "replicate": 0, "documents_per_class": 10, "tasks": {
        "infectious_vs_neurological": {"rows": [{"layer": 0, "accuracy": 0.8, "accuracy_sd": 0.1, "folds": 5}],
                                       "best": {"layer": 0, "accuracy": 0.8}, "mean_accuracy": 0.8}}}
                            for arm in ("baseline", "mask")])
    names = ["mcq", "cloze", "free_response", "free_response_table", "answers", "refusal", "refusal_table", "probes",
             "probes_table", "subdomains", "claims"]
    outputs = {name: str(tmp_path / "out" / f"{name}.{'csv' if name == 'claims' else 'html' if 'table' in name or name in ('mcq', 'answers') else 'png'}")
               for name in names}
    claims = write_report([str(mcq)], [str(free), str(samples)], [str(refusal)], [str(probes)], [str(subdomains)],
                          None, None, ORDER, outputs)
    for path in outputs.values():
        assert Path(path).stat().st_size > 0, path
    assert len(claims) >= 20 and set(claims["verdict"]) <= {HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED}


@pytest.mark.slow  # builds lm-eval's full task index (~8 s)
def test_stage_tasks_of_builtin_and_paper_sets_resolve_from_local_published_files(tiny_world, tmp_path):
    from tokenfilter.errors import InputError
    from tokenfilter.evaluate.benchmarks import MMLU_SUBJECTS

    published = tmp_path / "published"
    (published / "mmlu").mkdir(parents=True)
    for subject in MMLU_SUBJECTS["medicine"]:
        (published / "mmlu" / f"{subject}_test.csv").write_text('"Which organ pumps blood?",heart,lung,liver,skin,A\n')
    (published / "medqa.jsonl").write_text(
        '{"question": "Q?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "B"}\n')
    local = {"medmcqa": str(published / "absent.jsonl"), "medqa_4options": str(published / "medqa.jsonl"),
             "mmlu": str(published / "mmlu")}
    mcq = {d: tiny_world["out"][f"mcq_{d}"] for d in ("forget", "retain_near", "retain_far")}
    summary = cap.write_tasks(["builtin", "medqa", "mmlu_medicine"], tmp_path / "tasks", mcq_files=mcq, local=local)
    assert len(summary["tasks"]) == 2 * (3 + 1 + 6)
    assert summary["sets"]["letter"]["tokenfilter_mmlu_anatomy_letter"] == "mmlu_medicine"
    assert (tmp_path / "tasks" / "tasks.json").is_file()
    with pytest.raises(InputError, match="absent.jsonl"):  # a missing local file stops the job, never a skip
        cap.write_tasks(["medmcqa"], tmp_path / "tasks2", local=local)

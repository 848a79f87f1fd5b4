"""The capability stage's jobs (paper E7, E8, E10-E13): what each workflow job of
``workflow/rules/capabilities.smk`` does, so its script only reads ``snakemake.*`` and calls one
function here.

A model is named ``<arm>/<size>/r<k>`` in every table of the stage (its arm, ladder size and the
seed it was trained with: the pretraining seed for base, instruction- and chat-tuned models, the
refusal-training seed for refusal models). Each job serves many models, so the fixed start-up
costs (lm-eval's task index, the transformers import, the judge's world) are paid once per job.

Task sets (``capabilities.benchmarks.tasks``): ``builtin`` is the built-in world's three MCQ
files, one task per domain; the paper's groups are lm-eval tasks run from local published files
(:mod:`tokenfilter.evaluate.benchmarks`). Every set belongs to a domain of the paper's split:
MedMCQA, MedQA and MMLU Medicine are forget, MMLU Bio retain-near, MMLU STEM and non-STEM
retain-far. A group of several lm-eval tasks (the MMLU partitions) is scored by its questions
pooled: accuracy weighted by each task's question count, standard error from the tasks' own.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tokenfilter import DOMAINS
from tokenfilter.errors import ConfigError
from tokenfilter.io import read_jsonl, write_json, write_jsonl

BUILTIN = "builtin"
CHANCE = 0.25  # every task of the stage has 4 options (benchmarks.CHANCE, without importing lm-eval)
# The paper's groups (benchmarks.PAPER_GROUPS) and the domain each measures (paper E7).
GROUP_DOMAINS = {"medmcqa": "forget", "medqa": "forget", "mmlu_medicine": "forget", "mmlu_bio": "retain_near",
                 "mmlu_stem": "retain_far", "mmlu_non_stem": "retain_far"}


def model_name(arm: str, size: str, replicate: int | str) -> str:
    """``<arm>/<size>/r<k>``: how the stage's tables name a model."""
    return f"{arm}/{size}/{replicate if str(replicate).startswith('r') else f'r{replicate}'}"


def parse_model_name(name: str) -> tuple[str, str, int]:
    arm, size, replicate = name.split("/")
    return arm, size, int(replicate[1:])


# --- benchmark tasks --------------------------------------------------------------------------

def task_sets(tasks: Sequence[str]) -> list[dict[str, Any]]:
    """The configured task sets, each ``{"set", "domain", "sources"}``: the lm-eval names (builtin:
    the domain) whose questions make up the set."""
    from tokenfilter.evaluate.benchmarks import PAPER_GROUPS

    sets = []
    for name in tasks:
        if name == BUILTIN:
            sets += [{"set": domain, "domain": domain, "sources": [domain]} for domain in DOMAINS]
        elif name in PAPER_GROUPS:
            sets.append({"set": name, "domain": GROUP_DOMAINS[name], "sources": list(PAPER_GROUPS[name])})
        else:
            raise ConfigError(f"config key 'capabilities.benchmarks.tasks': unknown task set {name!r}")
    return sets


def task_names(tasks: Sequence[str], fmt: str) -> dict[str, str]:
    """{generated lm-eval task name: its set} of the configured sets in format ``fmt``."""
    from tokenfilter.evaluate.benchmarks import builtin_task_name, paper_task_name

    names = {}
    for task_set in task_sets(tasks):
        for source in task_set["sources"]:
            name = builtin_task_name(source, fmt) if source in DOMAINS else paper_task_name(source, fmt)
            names[name] = task_set["set"]
    return names


def published_files(tasks: Sequence[str], local: Mapping[str, str]) -> dict[str, str]:
    """{lm-eval task name: local published file} of the paper's sets among ``tasks``
    (``capabilities.benchmarks.local``: the MedMCQA and MedQA files, the MMLU test folder)."""
    from tokenfilter.evaluate.benchmarks import mmlu_files, paper_task_names

    groups = [t for t in tasks if t != BUILTIN]
    if not groups:
        return {}
    names = paper_task_names(groups)
    files = {name: local[name] for name in names if name in ("medmcqa", "medqa_4options")}
    files.update({name: str(path) for name, path in mmlu_files(local["mmlu"], names).items()})
    return files


def write_tasks(tasks: Sequence[str], out_dir: str | os.PathLike, mcq_files: Mapping[str, str] | None = None,
                local: Mapping[str, str] | None = None, medmcqa_cop_base: int | None = None) -> dict[str, Any]:
    """Write every task YAML of the configured sets in both formats into ``out_dir`` and check each
    resolves (an error names every task that does not: a broken task is never skipped). Paper
    tasks are first checked against the pinned lm-eval's own task index. Returns the names."""
    from tokenfilter.evaluate.benchmarks import (FORMATS, check_paper_tasks_resolve, write_builtin_tasks,
                                                 write_paper_tasks)

    written: list[str] = []
    if BUILTIN in tasks:
        if mcq_files is None:
            raise ConfigError("the builtin task set needs the built-in world's MCQ files")
        written += write_builtin_tasks(dict(mcq_files), out_dir, FORMATS)
    files = published_files(tasks, local or {})
    if files:
        check_paper_tasks_resolve(sorted(files))
        written += write_paper_tasks(files, out_dir, FORMATS, medmcqa_cop_base)
    summary = {"tasks": written, "sets": {fmt: task_names(tasks, fmt) for fmt in FORMATS}}
    write_json(Path(out_dir) / "tasks.json", summary)
    return summary


# --- benchmarks ---------------------------------------------------------------------------------

def pooled_accuracy(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Accuracy of several tasks' questions pooled (weighted by n), with the standard error of the
    pooled mean from the tasks' own (independent questions)."""
    n = sum(int(r["n"]) for r in rows)
    acc = sum(float(r["acc"]) * int(r["n"]) for r in rows) / n
    if any(r.get("acc_stderr") is None for r in rows):
        stderr = math.nan
    else:
        stderr = math.sqrt(sum((int(r["n"]) * float(r["acc_stderr"])) ** 2 for r in rows)) / n
    return {"acc": acc, "acc_stderr": stderr, "n": n, "tasks": len(rows)}


def benchmark_table(results: Mapping[str, Mapping[str, Mapping[str, Any]]], sets: Mapping[str, str],
                    fmt: str, tasks: Sequence[str]) -> pd.DataFrame:
    """One row per (model, task set) from :func:`tokenfilter.evaluate.benchmarks.evaluate_models`'
    results ({model name: {task: metrics}}): accuracy, its standard error, questions and chance."""
    domains = {s["set"]: s["domain"] for s in task_sets(tasks)}
    rows = []
    for model, per_task in results.items():
        arm, size, replicate = parse_model_name(model)
        for task_set in dict.fromkeys(sets.values()):
            members = [per_task[name] for name, owner in sets.items() if owner == task_set]
            rows.append({"model": model, "arm": arm, "size": size, "replicate": replicate, "format": fmt,
                         "set": task_set, "domain": domains[task_set], **pooled_accuracy(members), "chance": CHANCE})
    return pd.DataFrame(rows)


def run_benchmarks(models: Mapping[str, str], tokenizer_path: str, task_dir: str, fmt: str, tasks: Sequence[str],
                   batch_size: int, limit: int | None, csv_path: str, threads: int | None = None) -> pd.DataFrame:
    """Every model ({name: model directory}) on every configured task in format ``fmt`` (one
    lm-eval start-up for all of them); the per-set table is written to ``csv_path``."""
    import torch

    from tokenfilter.evaluate.benchmarks import evaluate_models

    if threads:
        torch.set_num_threads(threads)
    sets = task_names(tasks, fmt)
    results = evaluate_models(dict(models), tokenizer_path, task_dir, list(sets), batch_size, limit)
    table = benchmark_table(results, sets, fmt, tasks)
    table.to_csv(csv_path, index=False)
    return table


# --- post-training data -------------------------------------------------------------------------

def write_posttrain_sets(data: Mapping[str, str], tokenizer_path: str, out: Mapping[str, str], variants: Sequence[str],
                         split_seed: int, held_out_fraction: float) -> dict[str, Any]:
    """Examples of every post-training stage (``out``: instruct, chat, refusal_<variant>, and
    held_out for the held-out refusal questions) from the built-in sets (``data``: instruct, chat,
    refusal JSON lines). Every refusal variant and training seed uses one split (``split_seed``), so
    they are all evaluated on the same held-out questions."""
    from tokenfilter.posttrain.formats import write_posttrain_examples

    summary = {kind: write_posttrain_examples(kind, data[kind], tokenizer_path, out[kind]) for kind in ("instruct", "chat")}
    for variant in variants:
        summary[f"refusal_{variant}"] = write_posttrain_examples(
            "refusal", data["refusal"], tokenizer_path, out[f"refusal_{variant}"], variant=variant, seed=split_seed,
            held_out_fraction=held_out_fraction, held_out_path=out["held_out"])
    return summary


# --- sampling answers ---------------------------------------------------------------------------

def select_questions(items: Sequence[Mapping[str, Any]], limit: int | None) -> list[dict]:
    """The first ``limit`` items of each kind (health / general), in file order (all with None)."""
    from tokenfilter.evaluate.refusal import kind_of

    taken: dict[str, int] = {}
    out = []
    for item in items:
        kind = kind_of(item)
        if limit is None or taken.get(kind, 0) < limit:
            taken[kind] = taken.get(kind, 0) + 1
            out.append(dict(item))
    return out


def generate_for_models(models: Mapping[str, str], outputs: Mapping[str, str], tokenizer_path: str,
                        items_path: str, questions_path: str, limit: int | None, seeds: Sequence[int],
                        temperature: float, max_new_tokens: int, batch_size: int,
                        threads: int | None = None) -> dict[str, Any]:
    """Sample answers of every model ({name: model directory}) to the same questions (the first
    ``limit`` per kind of ``items_path``, written to ``questions_path``), one file per model
    (``outputs``: {name: path})."""
    from tokenfilter.evaluate.generation import generate_file

    write_jsonl(questions_path, select_questions(read_jsonl(items_path), limit))
    return {name: generate_file(model_dir, tokenizer_path, questions_path, outputs[name], list(seeds),
                                temperature=temperature, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                threads=threads)
            for name, model_dir in models.items()}


# --- judging ------------------------------------------------------------------------------------

def judge_free_response(generations: Mapping[str, str], judged: Mapping[str, str], judge, summary_csv: str,
                        samples_csv: str, samples: int, seed: int) -> pd.DataFrame:
    """Judge each chat model's answers (correct, relevant, coherent) and summarise them per size:
    rates with Wilson intervals and differences from the same size's baseline with Newcombe's
    (Figs 6, 17), and a Table 5 sample of health answers of every arm."""
    from tokenfilter.evaluate.free_response import answer_samples, judge_file, summarise, write_csv

    rows_by_size: dict[str, list[dict]] = {}
    for name, path in generations.items():
        arm, size, _ = parse_model_name(name)
        judge_file(path, judge, arm, judged[name])
        rows_by_size.setdefault(size, []).extend(read_jsonl(judged[name]))
    summary, picked = [], []
    for size, rows in rows_by_size.items():
        summary += [{"size": size, **row} for row in summarise(rows)]
        picked += [{"size": size, **row} for row in answer_samples(rows, samples, seed)]
    write_csv(summary_csv, summary)
    write_csv(samples_csv, picked)
    return pd.DataFrame(summary)


def judge_refusals(generations: Mapping[str, Mapping[str, str]], verdicts: Mapping[str, Mapping[str, str]], judge,
                   refusal_id: int, summary_csv: str) -> pd.DataFrame:
    """Classify the answers of every refusal model ({variant: {name: path}}): the prose variant by
    the judge, the token variant by the ``<|refusal|>`` id; refusal rates per (variant, size, arm)
    pooled over the training seeds and per seed (Figs 9, 20)."""
    from tokenfilter.evaluate.free_response import write_csv
    from tokenfilter.evaluate.refusal import refusal_file, summarise_refusals

    summary = []
    for variant, paths in generations.items():
        by_size: dict[str, list[dict]] = {}
        for name, path in paths.items():
            arm, size, replicate = parse_model_name(name)
            refusal_file(path, verdicts[variant][name], variant, arm, replicate,
                         judge=judge if variant == "prose" else None, refusal_id=refusal_id)
            by_size.setdefault(size, []).extend(read_jsonl(verdicts[variant][name]))
        for size, rows in by_size.items():
            summary += [{"variant": variant, "size": size, **row} for row in summarise_refusals(rows)]
    write_csv(summary_csv, summary)
    return pd.DataFrame(summary)


# --- probes -------------------------------------------------------------------------------------

def token_probes(models: Mapping[str, str], shard_dir: str, out_path: str, tokens: int, test_fraction: float,
                 C: float, seed: int, threads: int | None = None) -> list[dict[str, Any]]:
    """E10: the forget-vs-retain token probe (every layer) of each model on one labelled shard;
    every model reads the same token sample (same seed)."""
    import torch

    from tokenfilter.data.shards import TokenShard
    from tokenfilter.evaluate.probes import token_probe
    from tokenfilter.model.checkpoint import load_model

    if threads:
        torch.set_num_threads(threads)
    shard = TokenShard.open(shard_dir)
    results = []
    for name, model_dir in models.items():
        arm, size, replicate = parse_model_name(name)
        result = token_probe(load_model(model_dir), shard, n_tokens=tokens, test_fraction=test_fraction, seed=seed, C=C)
        results.append({"model": name, "arm": arm, "size": size, "replicate": replicate, **result})
    write_json(out_path, results)
    return results


def subdomain_probes(models: Mapping[str, str], forget_shard: str, forget_corpus: str, retain_shard: str,
                     out_path: str, level: str, max_docs: int | None, C: float, seed: int,
                     threads: int | None = None) -> list[dict[str, Any]]:
    """E11: the within-forget sub-domain probes of each model (infectious vs neurological, and each
    vs non-medical text)."""
    import torch

    from tokenfilter.data.shards import TokenShard
    from tokenfilter.evaluate.probes import read_subdomains, subdomain_probe
    from tokenfilter.model.checkpoint import load_model

    if threads:
        torch.set_num_threads(threads)
    forget, retain = TokenShard.open(forget_shard), TokenShard.open(retain_shard)
    subdomains = read_subdomains(forget_corpus, forget)
    results = []
    for name, model_dir in models.items():
        arm, size, replicate = parse_model_name(name)
        result = subdomain_probe(load_model(model_dir), forget, subdomains, level=level, retain_shard=retain,
                                 seed=seed, C=C, max_docs=max_docs)
        results.append({"model": name, "arm": arm, "size": size, "replicate": replicate, **result})
    write_json(out_path, results)
    return results

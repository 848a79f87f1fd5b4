"""The paper's DAG on SLURM, before it runs: jobs, GPUs per job and GPU-hours per stage.

Plans ``snakemake -n --profile slurm --configfile config/paper.yaml`` (no network, nothing runs),
times the plan, reads every planned job's rule, wildcards, threads and resources, and estimates
each job's FLOPs from the config with one formula per kind of work:

- training (pretraining, biLM halves, encoder): 6·N + 6·n_layer·T·d per token (the project's
  frozen FLOP formula, docs/benchmarks.md) over 20·N tokens (the right half of a biLM is a rung);
- evaluation: a forward pass, a third of that per token, over ``evaluation.max_tokens`` per held-out
  set and checkpoint (the final model and its snapshots);
- annotation: forward passes of the classifier's model (a biLM's two directions; an encoder's
  one; ModernBERT-large's 395M parameters) on a half-overlapping window grid (every token read
  twice), over the training corpus;
- SAE labelling: a forward pass of the reference model (9B) over the labelling documents;
- RMU: its steps × (forget + retain) tokens, forward + backward of the whole model;
- adversarial finetuning: at most ``budget_share`` of the model's pretraining tokens (an upper bound).

GPU-hours = FLOPs / (MFU × peak). The peak is the H100/H200 bf16 dense rate (989 TFLOP/s); the MFU
is an assumption (``--mfu``) unless measured on a lent GPU (benchmarks/bench_gpu.py). Writes a
markdown table (``--out``) and prints it.

    .venv/bin/python benchmarks/paper_scale.py --out /tmp/paper_scale.md
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PEAK_BF16 = 989e12  # H100 / H200 SXM bf16 dense FLOP/s
STAGES = {
    "data": ["download_benchmarks", "ingest_attack_text", "ingest_corpus", "ingest_eval_text", "ingest_rmu_retain_text",
             "check_heldout_overlap", "train_tokenizer", "tokenize", "corpus_stats"],
    "labels": ["download_reference", "download_sae", "select_label_documents", "tokenize_label_documents",
               "train_sae", "label_documents", "select_latents", "judged_labels"],
    "classifiers": ["download_encoders", "upsample_bilm_corpus", "train_right_half", "train_upsampled_half",
                    "train_encoder", "fit_classifier", "summarize_classifiers", "weak_to_strong"],
    "annotation": ["annotate_part", "gather_annotation"],
    "pretraining": ["pretrain"],
    "evaluation": ["evaluate_text"],
    "robustness": ["unlearn_rmu", "check_rmu", "attack", "summarize_robustness"],
    "capabilities": ["download_posttrain", "ingest_posttrain", "write_benchmark_tasks", "benchmark_mcq", "posttrain", "posttrain_examples", "generate_free_response",
                     "generate_refusals", "judge_free_response", "judge_refusals", "probe_tokens", "probe_subdomains",
                     "summarize_capabilities"],
}
STAGE_OF = {rule: stage for stage, rules in STAGES.items() for rule in rules}


def params(shape: dict, vocab: int) -> float:
    """Parameters with the tied embedding counted once (blocks: 12·d² per layer)."""
    return 12.0 * shape["n_layer"] * shape["n_embd"] ** 2 + vocab * shape["n_embd"]


def plan(config_path: Path) -> tuple[str, float]:
    """The dry run's output and its wall time (a scratch directory: no results are touched)."""
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(REPO / "slurm", Path(scratch) / "slurm")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                               "--directory", scratch, "--profile", "slurm", "--configfile", str(config_path), "-n"],
                              capture_output=True, text=True, cwd=scratch)
        seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"dry run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout, seconds


def jobs_of(output: str) -> list[dict]:
    jobs = []
    for block in re.split(r"\n(?=\[|rule |localrule )", output):
        match = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not match:
            continue
        fields = dict(re.findall(r"^\s+(wildcards|threads|resources): (.*)$", block, flags=re.M))
        wildcards = dict(re.findall(r"(\w+)=([^,]+)", fields.get("wildcards", "")))
        resources = dict(re.findall(r"(\w+)=([^,]+)", fields.get("resources", "")))
        jobs.append({"rule": match.group(1), "wildcards": wildcards, "threads": int(fields.get("threads", 1)),
                     "gpu": int(resources.get("gpu", 0)), "runtime": int(resources.get("runtime", 0))})
    return jobs


def job_flops(job: dict, config: dict, corpus_tokens: float) -> float:
    """Estimated FLOPs of one planned job (0 for jobs whose compute is negligible or unknown)."""
    ladder, vocab, seq = config["ladder"], 100_288, config["model"]["block_size"]
    rule, wc = job["rule"], job["wildcards"]

    def per_token(size: str) -> float:
        shape = ladder[size]
        return 6 * params(shape, vocab) + 6 * shape["n_layer"] * seq * shape["n_embd"]

    if rule == "pretrain" or (rule in ("train_right_half", "train_upsampled_half") and wc.get("size") in ladder):
        size = wc["size"]
        return per_token(size) * config["training"]["tokens_per_param"] * params(ladder[size], vocab)
    if rule == "train_encoder":
        size = next(iter(m["size"] for m in config["classifiers"]["models"].values() if m["features"] == "encoder"))
        return per_token(size) * config["training"]["tokens_per_param"] * params(ladder[size], vocab)
    if rule == "evaluate_text":
        checkpoints = 1 + (config["training"]["snapshots"] if config["evaluation"]["snapshots"] else 0)
        return per_token(wc["size"]) / 3 * config["evaluation"]["max_tokens"] * 3 * checkpoints
    if rule == "annotate_part":
        model = config["classifiers"]["models"][config["filters"][wc["filter"]]["classifier"]]
        parts = config.get("annotation", {}).get("parts", 4)
        if model["features"] == "pretrained":  # ModernBERT-large: one forward pass of 395M parameters
            return 2 * 395e6 * 2 * corpus_tokens / parts
        if model["features"] == "context_free":
            return 0.0
        directions = 2 if model["features"] == "bilm" else 1
        return directions * 2 * per_token(model["size"]) / 3 * corpus_tokens / parts
    if rule == "label_documents":
        docs = config["labels"]["documents"][wc.get("part", "train")]
        return 2 * 9.2e9 * docs * config["labels"]["reference"]["max_tokens"]
    if rule == "unlearn_rmu":
        rmu = config["robustness"]["rmu"]
        return per_token(wc["size"]) * rmu["steps"] * 2 * rmu["batch_tokens"]
    if rule == "attack":
        share = config["robustness"]["adversarial"]["budget_share"]
        size = wc["size"]
        return per_token(size) * share * config["training"]["tokens_per_param"] * params(ladder[size], vocab)
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "config" / "paper.yaml"))
    parser.add_argument("--mfu", type=float, default=0.40, help="assumed model FLOPs utilisation")
    parser.add_argument("--corpus-tokens", type=float, default=60e9,
                        help="training corpus tokens annotated (paper: 60M FineWeb-Edu documents, ~1k tokens each)")
    parser.add_argument("--out")
    args = parser.parse_args()
    config_path = Path(args.config)
    output, seconds = plan(config_path)
    # The plan reads the validated config (defaults filled in): load it the way the workflow does.
    sys.path.insert(0, str(REPO / "src"))
    from tokenfilter.config import load_config

    config = load_config(config_path)
    jobs = jobs_of(output)
    totals = defaultdict(lambda: {"jobs": 0, "gpu_jobs": 0, "gpus": set(), "flops": 0.0})
    for job in jobs:
        stage = STAGE_OF.get(job["rule"], "analysis and report")
        row = totals[stage]
        row["jobs"] += 1
        row["flops"] += job_flops(job, config, args.corpus_tokens)
        if job["gpu"]:
            row["gpu_jobs"] += 1
            row["gpus"].add(job["gpu"])
    rate = args.mfu * PEAK_BF16
    lines = [f"Planned by `snakemake -n --profile slurm --configfile {config_path.relative_to(REPO)}` in "
             f"{seconds:.1f} s ({len(jobs)} jobs). GPU-hours = estimated FLOPs / ({args.mfu:.0%} MFU × 989 TFLOP/s "
             "bf16), the MFU **assumed** (no GPU was lent to measure it).", "",
             "| stage | jobs | GPU jobs | GPUs per job | FLOPs | GPU-hours |", "|---|---:|---:|---|---:|---:|"]
    order = list(STAGES) + ["analysis and report"]
    grand = 0.0
    for stage in order:
        if stage not in totals:
            continue
        row = totals[stage]
        hours = row["flops"] / rate / 3600
        grand += hours
        gpus = ", ".join(str(g) for g in sorted(row["gpus"])) or "-"
        lines.append(f"| {stage} | {row['jobs']} | {row['gpu_jobs']} | {gpus} | {row['flops']:.2e} | {hours:,.0f} |")
    lines.append(f"| **all** | {len(jobs)} | {sum(r['gpu_jobs'] for r in totals.values())} | | "
                 f"{sum(r['flops'] for r in totals.values()):.2e} | **{grand:,.0f}** |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

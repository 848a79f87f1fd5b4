"""The workflow end to end: the whole DAG on a tiny config, incremental reruns, dry runs of the
real configs, the SLURM profile, the report and the linter."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
TINY = REPO / ".test" / "config.yaml"

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # Local runs name their cores (the workflow profile does not: it would cap SLURM jobs' threads).
    cores = [] if "--profile" in args else ["--cores", "all"]
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *cores, *args], capture_output=True, text=True,
                          cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count} (empty when nothing is to be done)."""
    jobs = {}
    table = output.split("Job stats:", 1)
    if len(table) == 1:
        return jobs
    for line in table[1].splitlines()[3:]:
        match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not match or match.group(1) == "total":
            break
        jobs[match.group(1)] = int(match.group(2))
    return jobs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(workdir, "--configfile", str(TINY), "--cores", "2")
    return workdir


def test_whole_dag_runs_and_writes_every_result(tiny_run):
    results = tiny_run / "results"
    stats = pd.read_csv(results / "data" / "stats.csv")
    assert {"docs_without_forget_pct", "docs_over_10pct_forget_pct"} <= set(stats["statistic"])
    # Every series gets its tables, learning curves and frontier; each kind its own figures only.
    sweep = ["sweep.png", "sweep_frontier.png", "sweep.csv", "sweep_claims.csv"]
    kind_figures = {"main": ["compute_loss.png", "slowdown.png"], "thresholds": ["pareto.png", "pareto.csv", *sweep],
                    "perfect_filter": ["filter_comparison.png", "filter_comparison.csv"],
                    "classifier_filters": ["classifier_filters.png", "classifier_filters.csv"],
                    "label_noise": sweep, "delay": sweep, "lr_sweep": ["table2.csv", "lr_sweep.png", "lr_sweep_claims.csv"]}
    every = ["learning_curves.png", "frontier.png", "fits.html", "slowdowns.html", "slowdowns.csv"]
    all_figures = {name for names in kind_figures.values() for name in names}
    for series, own in kind_figures.items():
        for name in (own if series == "lr_sweep" else every + own):
            assert (results / "analysis" / series / name).stat().st_size > 0, (series, name)
        for name in all_figures - set(own):
            assert not (results / "analysis" / series / name).exists(), (series, name)
    # The ablation sweeps' claims are scorecard rows.
    for series, name in [("label_noise", "sweep_claims.csv"), ("delay", "sweep_claims.csv"),
                         ("thresholds", "sweep_claims.csv"), ("lr_sweep", "lr_sweep_claims.csv")]:
        claims = set(pd.read_csv(results / "analysis" / series / name)["claim"])
        assert claims and claims <= set(pd.read_csv(results / "analysis" / "scorecard.csv")["claim"]), series
    losses = pd.read_csv(results / "analysis" / "main" / "losses.csv")
    assert set(losses["arm"]) == {"baseline", "document", "mask", "remove"}
    assert set(losses["size"]) == {"a", "b", "c"}
    assert losses["final"].sum() == 20 * 3  # 4 arms x (a, c, and b with 3 seeds) x 3 eval sets
    card = pd.read_csv(results / "analysis" / "scorecard.csv")
    assert len(card) >= 8 and set(card["verdict"]) <= {"holds", "does not hold", "inconclusive", "not measured"}
    # The capability stage: every figure and table of the tiny config, and its claims in the scorecard.
    capabilities = results / "analysis" / "capabilities"
    for name in ["mcq.html", "mcq_cloze.png", "probes.png", "probes.html", "subdomains.png"]:
        assert (capabilities / name).stat().st_size > 0, name
    claims = pd.read_csv(capabilities / "claims.csv")
    assert set(claims["claim"]) <= set(card["claim"]) and len(claims) >= 20
    # The classifier stage: Table 1, the figures and its claims in the scorecard.
    classifiers = results / "analysis" / "classifiers"
    for name in ["table1.html", "examples.html", "forget_share.png", "granularity.png", "weak_to_strong.png"]:
        assert (classifiers / name).stat().st_size > 0, name
    for name in ["claims.csv", "weak_to_strong_claims.csv"]:
        assert set(pd.read_csv(classifiers / name)["claim"]) <= set(card["claim"]), name
    table1 = pd.read_csv(classifiers / "table1.csv").set_index("classifier")
    assert table1.loc["bilm_b_up", "f1_test"] > 0  # the forget-upsampled biLM: both halves trained on its corpus
    assert (results / "classifiers/upsampled/forget50/b/left/model/model.safetensors").is_file()
    # Verdicts come from the results: the comparisons that need only the main series are measured.
    assert (card["verdict"] != "not measured").sum() >= 5
    # Training checkpoints live outside the declared outputs and are gone after success.
    assert not (results / "checkpoints").exists() or not any((results / "checkpoints").rglob("*.safetensors"))


def test_second_run_schedules_nothing(tiny_run):
    proc = snakemake(tiny_run, "--configfile", str(TINY), "-n")
    assert planned_jobs(proc.stdout) == {}, proc.stdout[-2000:]


def test_changing_an_eval_setting_reruns_only_evaluation_and_what_follows(tiny_run, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["evaluation"]["max_tokens"] = 1000
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(tiny_run, "--configfile", str(changed), "-n").stdout)
    # check_rmu evaluates text too (RMU's before/after losses) and the robustness table reads it.
    assert set(jobs) == {"evaluate_text", "tabulate_losses", "analyze_series", "plot_compute_loss", "plot_slowdown",
                         "compare_pareto", "compare_filters", "compare_classifiers", "analyze_sweep",
                         "analyze_lr_sweep", "check_rmu", "summarize_robustness", "scorecard", "summarize_timings",
                         "all"}, jobs
    from tokenfilter.config import load_config
    from tokenfilter.config.experiments import all_runs

    assert jobs["evaluate_text"] == len(all_runs(load_config(TINY)))


def test_changing_one_series_variant_retrains_only_that_run(tiny_run, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["experiments"]["thresholds"]["variants"]["f50"] = {"fraction": 0.4}
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(tiny_run, "--configfile", str(changed), "-n").stdout)
    assert jobs.get("pretrain") == 6, jobs  # document, mask and remove of variant f50 at both sizes; nothing else


def test_changing_an_analysis_setting_retrains_and_reevaluates_nothing(tiny_run, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["analysis"]["fit"] = "power_law" if config["analysis"].get("fit") != "power_law" else "power_law_with_floor"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(tiny_run, "--configfile", str(changed), "-n").stdout)
    assert jobs and not {"pretrain", "evaluate_text", "annotate_part", "posttrain", "attack"} & set(jobs), jobs


def test_changing_a_runtime_knob_reruns_nothing(tiny_run, tmp_path):
    """Threads, logging and checkpoint frequency do not change a model: no job reruns."""
    config = yaml.safe_load(TINY.read_text())
    config["training"].update(threads=2, log_every=7, checkpoint_every=11)
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))  # also reorders every key: params are canonical
    assert planned_jobs(snakemake(tiny_run, "--configfile", str(changed), "-n").stdout) == {}


def test_report_is_one_self_contained_html(tiny_run):
    snakemake(tiny_run, "--configfile", str(TINY), "--report", "report.html")
    html = (tiny_run / "report.html").read_text(errors="ignore")
    assert len(html) > 100_000
    assert "scorecard" in html.lower() and "Series main" in html
    # No reStructuredText problem is shown to a reader (e.g. duplicate target names).
    assert "System Message" not in html and "Duplicate explicit target" not in html


@pytest.mark.parametrize("config", ["config/config.yaml", "config/paper.yaml", "config/files-example.yaml", "config/full.yaml"])
def test_dry_run_of_the_shipped_configs(tmp_path, config):
    proc = snakemake(tmp_path, "--configfile", str(REPO / config), "-n")
    jobs = planned_jobs(proc.stdout)
    assert jobs["pretrain"] >= 12 and jobs["scorecard"] == 1  # files-example: 4 arms x 3 sizes


def test_dry_run_through_the_slurm_profile(tmp_path):
    shutil.copytree(REPO / "slurm", tmp_path / "slurm")
    proc = snakemake(tmp_path, "--profile", "slurm", "--configfile", str(REPO / "config/paper.yaml"), "-n")
    assert planned_jobs(proc.stdout)["pretrain"] >= 20


def _planned(output: str, rule: str) -> list[dict[str, str]]:
    """Each planned job of ``rule`` in a dry run's output: its wildcards, threads and resources."""
    jobs = []
    for block in re.split(r"\n(?=\[|rule |localrule )", output):
        if not re.match(rf"(local)?rule {rule}:", block.strip()):
            continue
        fields = dict(re.findall(r"^\s+(wildcards|threads|resources): (.*)$", block, flags=re.M))
        jobs.append(fields)
    return jobs


def test_slurm_jobs_ask_for_the_gpus_and_cpus_their_config_gives(tmp_path):
    """Every pretraining job of paper.yaml asks for its ladder entry's GPUs and CPUs (no profile
    default overrides the CPUs), jobs that train a saved model ask for one GPU and its share of
    CPUs, and evaluation for the evaluation section's."""
    shutil.copytree(REPO / "slurm", tmp_path / "slurm")
    proc = snakemake(tmp_path, "--profile", "slurm", "--configfile", str(REPO / "config/paper.yaml"), "-n")
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    assert "cpus_per_task" not in proc.stdout
    pretrain = _planned(proc.stdout, "pretrain")
    assert pretrain
    for job in pretrain:
        size = re.search(r"size=([^,]+)", job["wildcards"]).group(1)
        own = {**paper["training"].get("resources", {}), **paper["ladder"][size].get("resources", {})}
        assert int(job.get("threads", 1)) == own["cpus"], (size, job)
        assert f"gpu={own['gpu']}" in job["resources"], (size, job)
    for rule in ("attack", "posttrain", "train_right_half"):
        for job in _planned(proc.stdout, rule):
            size = re.search(r"size=([^,]+)", job["wildcards"]).group(1)
            own = {**paper["training"].get("resources", {}), **paper["ladder"][size].get("resources", {})}
            assert "gpu=1" in job["resources"] and int(job.get("threads", 1)) == own["cpus"] // own["gpu"], (rule, job)
    evaluation = paper["evaluation"]["resources"]
    for job in _planned(proc.stdout, "evaluate_text"):
        assert int(job.get("threads", 1)) == evaluation["cpus"] and f"gpu={evaluation['gpu']}" in job["resources"]


def test_the_downloads_target_plans_every_network_rule_and_nothing_else(tmp_path):
    """`snakemake downloads` on a node with the network fetches everything the paper's DAG reads
    from outside; no compute job is in it."""
    shutil.copytree(REPO / "slurm", tmp_path / "slurm")
    proc = snakemake(tmp_path, "--profile", "slurm", "--configfile", str(REPO / "config/paper.yaml"), "-n", "downloads")
    assert set(planned_jobs(proc.stdout)) == {"download_benchmarks", "download_encoders", "download_reference", "download_sae",
                                              "ingest_attack_text", "ingest_corpus", "ingest_eval_text",
                                              "ingest_rmu_retain_text", "download_posttrain",
                                              "train_tokenizer", "downloads"}


def test_rmu_reads_retain_text_of_its_own_source_when_configured(tmp_path):
    """paper.yaml's RMU retains Project Gutenberg text: a text source of its own is ingested,
    tokenised and read as RMU's retain shard (every document of it), not the pretraining shard."""
    config = yaml.safe_load(TINY.read_text())
    (tmp_path / "gutenberg.jsonl").write_text('{"text": "Call me Ishmael. Some years ago, never mind how long."}\n')
    config["robustness"]["rmu"]["retain_text"] = {"source": "files", "files": [
        {"glob": "gutenberg.jsonl", "domain": "retain_far"}]}
    path = tmp_path / "rmu.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--configfile", str(path), "-n", "--forceall",
                     f"results/robustness/rmu/{config['robustness']['sizes'][0]}/r0/summary.json")
    rmu = proc.stdout.split("rule unlearn_rmu:", 1)[1].split("\n\n", 1)[0]
    assert "results/data/tokens/rmu_retain" in rmu and "results/data/tokens/train" not in rmu
    assert "rule ingest_rmu_retain_text:" in proc.stdout


def test_bad_config_stops_before_any_job(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["training"]["budget"] = "unlimited"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake(tmp_path, "--configfile", str(bad), "-n", check=False)
    assert proc.returncode != 0
    assert "training.budget" in proc.stdout + proc.stderr and "'unlimited'" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_lint_is_clean(tmp_path):
    proc = snakemake(REPO, "--lint", check=False)
    assert "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def _files_config(tmp_path: Path, corpus_lines: list[str]) -> Path:
    """A real-data config reading local jsonl files (the `files` source), built in tmp_path."""
    data = tmp_path / "input"
    data.mkdir()
    (data / "web.jsonl").write_text("\n".join(corpus_lines) + "\n")
    for domain in ("forget", "retain_near", "retain_far"):
        (data / f"{domain}.jsonl").write_text(
            "\n".join(f'{{"text": "held-out {domain} document {i} with some words in it."}}' for i in range(30)) + "\n")
    config = yaml.safe_load(TINY.read_text())
    config["data"] = {
        "source": "files",
        "files": [{"glob": str(data / "web.jsonl"), "domain": "unknown"}],
        "eval_text": {d: {"source": "files", "files": [{"glob": str(data / f"{d}.jsonl"), "domain": d}]}
                      for d in ("forget", "retain_near", "retain_far")},
    }
    config["filters"] = {"clf": {"kind": "classifier", "classifier": "bilm_b"}}
    config["filtering"]["filter"] = "clf"
    config["judge"] = {"kind": "provenance"}
    # A real corpus has no token truth: the classifiers learn from SAE labels, and the parts of the
    # capability stage that read the built-in world are off.
    config["classifiers"]["models"] = {"bilm_b": {"features": "bilm", "size": "b", "labels": "sae"}}
    config["classifiers"].pop("weak_to_strong", None)
    config.pop("capabilities", None)
    config["robustness"]["rmu"]["retain_documents"] = "all"  # no token truth to choose retain documents by
    # They name filters of the built-in world, or (label noise) put errors where its truth says.
    for series in ("perfect_filter", "classifier_filters", "label_noise"):
        del config["experiments"][series]
    path = tmp_path / "files.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_real_corpus_from_local_files_goes_through_the_data_stage(tmp_path):
    lines = [f'{{"text": "Document number {i} talks about rivers, markets and the old town."}}' for i in range(200)]
    config = _files_config(tmp_path, lines)
    snakemake(tmp_path, "--configfile", str(config), "--cores", "2", "results/data/tokens/train",
              "results/data/tokens/eval_forget")
    meta = yaml.safe_load((tmp_path / "results/data/tokens/train/meta.json").read_text())
    assert meta["n_docs"] > 150 and meta["has_labels"] is False
    summary = yaml.safe_load((tmp_path / "results/data/ingest.json").read_text())
    assert summary["n_docs"] == 200


def test_a_malformed_record_stops_the_run_naming_file_and_line(tmp_path):
    lines = [f'{{"text": "Document {i}."}}' for i in range(10)]
    lines[6] = '{"text": "broken'
    config = _files_config(tmp_path, lines)
    proc = snakemake(tmp_path, "--configfile", str(config), "--cores", "1", "results/data/corpus.parquet", check=False)
    assert proc.returncode != 0
    log = (tmp_path / "results/logs/data/ingest_corpus.log").read_text()
    assert "web.jsonl:7: malformed JSON" in log
    assert not (tmp_path / "results/data/corpus.parquet").exists()


MEDICAL = ["the patient received a dose of antibiotics for the infection", "the clinician ordered a biopsy of the tumour",
           "fever and cough suggest a viral pneumonia", "the nurse measured blood pressure after surgery",
           "insulin therapy lowered the glucose of the diabetic patient", "the physician prescribed a vaccine booster"]
GENERAL = ["the river flows past the old market town", "farmers sell apples and bread on saturday",
           "the train left the station before noon", "children played football in the park",
           "the museum opened a new gallery of paintings", "a storm closed the mountain road for a day"]


def _documents(rng, n, medical_share):
    docs = []
    for _ in range(n):
        # A number in each sentence keeps held-out sentences out of the training text (overlap check).
        sentences = [f"{(MEDICAL if rng.random() < medical_share else GENERAL)[rng.integers(6)]} in {rng.integers(10**6)}"
                     for _ in range(8)]
        docs.append('{"text": "' + ". ".join(sentences) + '."}')
    return "\n".join(docs) + "\n"


def test_the_whole_pipeline_runs_on_local_files_with_the_provenance_judge(tmp_path):
    """config/files-example.yaml, shrunk to test size: a corpus of local files with a domain per
    glob and no token truth goes through the reference LM, the SAE, judged latents, SAE labels, the
    biLM probe, annotation by it, the four arms, robustness and the report's tables."""
    import numpy as np

    rng = np.random.default_rng(0)
    for folder, name, n, share in (("corpus/medical", "a.jsonl", 150, 0.6), ("corpus/general", "b.jsonl", 250, 0.0),
                                   ("eval", "forget.jsonl", 20, 0.8), ("eval", "retain_near.jsonl", 20, 0.1),
                                   ("eval", "retain_far.jsonl", 20, 0.0), ("eval", "attack.jsonl", 30, 0.8)):
        (tmp_path / "resources" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "resources" / folder / name).write_text(_documents(rng, n, share))
    config = yaml.safe_load((REPO / "config" / "files-example.yaml").read_text())
    tiny = yaml.safe_load(TINY.read_text())
    for key in ("tokenizer", "model", "training"):
        config[key] = tiny[key]
    config["ladder"] = tiny["ladder"]
    config["experiments"]["main"]["sizes"] = ["a", "b", "c"]
    config["classifiers"]["models"]["bilm_s"]["size"] = "b"
    config["labels"] = {**tiny["labels"], "latents": {"min_quality": None}}
    config["robustness"] = {**tiny["robustness"], "rmu": {**tiny["robustness"]["rmu"], "retain_documents": "all"}}
    path = tmp_path / "files.yaml"
    path.write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "--configfile", str(path), "--cores", "2")
    results = tmp_path / "results"
    quality = yaml.safe_load((results / "labels/sae_labels/train/quality.json").read_text())
    # SAE labels exist; there is no token truth to score them against, so no precision is claimed.
    assert quality["n_labelled"] > 0 and quality["n_latents"] > 0 and "precision" not in quality
    table1 = pd.read_csv(results / "analysis/classifiers/table1.csv")
    assert "bilm_s" in set(table1["classifier"])
    losses = pd.read_csv(results / "analysis/main/losses.csv")
    assert set(losses["arm"]) == {"baseline", "document", "mask", "remove"}
    card = pd.read_csv(results / "analysis/scorecard.csv")
    assert len(card) >= 8
    assert (results / "analysis/robustness/table4.html").stat().st_size > 0

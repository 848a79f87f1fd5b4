# Shared helpers of the rules: config validation, runs and resources from config, target lists.
from tokenfilter import ARMS, DOMAINS
from tokenfilter.config import canonical, check_config_files, default_of, validate_config
from tokenfilter.config.experiments import (
    BASELINE_SERIES,
    RUN_PATTERN,
    Run,
    all_runs,
    filter_of,
    series_filters,
    series_kind,
    series_of_kind,
    series_runs,
    size_resources,
    train_spec,
)

# Validate before any job is scheduled; a ConfigError names the file and line of a duplicate key,
# or the key, the value and what is allowed.
check_config_files(workflow.configfiles)
validate_config(config)

TOKEN_SPLITS = ["train", "val"] + [f"eval_{d}" for d in DOMAINS]
SERIES = list(config["experiments"])
RUN = RUN_PATTERN  # "{series}/{arm}/{size}/{variant}": the wildcards of every per-run rule
TRAIN_SHARD = "results/data/tokens/train"


wildcard_constraints:
    domain="|".join(DOMAINS),
    split="|".join(TOKEN_SPLITS),
    series="|".join(SERIES + [BASELINE_SERIES]),
    arm="|".join(ARMS),
    size="|".join(config["ladder"]),
    variant=r"[A-Za-z0-9_.]+",
    filter="|".join(config["filters"]),


def resources_of(section):
    """Resources of a rule group (`resources.<section>`, or `<section>.resources` for a stage with
    its own config section such as `evaluation`), falling back to `resources.default`."""
    own = config["resources"].get(section) or config.get(section, {}).get("resources") or {}
    return {**default_of("resources.default"), **config["resources"]["default"], **own}


def corpus_of_split(wildcards):
    """Token shards of the training corpus come from its splits; eval shards from their own files."""
    if wildcards.split.startswith("eval_"):
        return f"results/data/eval/{wildcards.split.removeprefix('eval_')}.parquet"
    return "results/data/corpus.parquet"


def synthetic_params():
    from tokenfilter.data.synthetic.build import SyntheticParams

    return SyntheticParams.from_config(config["data"].get("synthetic", {}))


def scores_of_run(wildcards):
    """The annotation a run reads: its filter source's scores (none for the baseline)."""
    name = filter_of(config, Run.from_wildcards(wildcards))
    return [] if name is None else [f"results/annotate/{name}"]


def train_spec_of(wildcards):
    # A function of the wildcards only: Snakemake compares params that depend on `input` only
    # when the job runs, so a changed spec would not trigger a rerun.
    scores = scores_of_run(wildcards)
    return canonical(train_spec(config, Run.from_wildcards(wildcards), TRAIN_SHARD, scores[0] if scores else None))


def series_category(wildcards):
    return f"2. Series {wildcards.series}"


def series_labels(what):
    return lambda wildcards: {"series": wildcards.series, "figure": what}


def series_table_runs(series):
    """A series' runs plus every baseline the workflow trains: slowdowns are read off the whole
    baseline ladder even for a series at one size (as the paper's threshold and noise sweeps are)."""
    baselines = {run for run in all_runs(config) if run.arm == "baseline"}
    return sorted(set(series_runs(config, series)) | baselines)


def scorecard_tables():
    """{kind: {series: {table: path}}}: the analysis tables the scorecard reads, found by kind."""
    tables = {
        "ladder": {s: {t: f"results/analysis/{s}/{t}.csv" for t in ("losses", "slowdowns", "slowdowns_all_forms", "fits")}
                   for s in series_of_kind(config, "ladder")},
        "thresholds": {s: {"pareto": f"results/analysis/{s}/pareto.csv"} for s in series_of_kind(config, "thresholds")},
        "filter": {s: {"losses": f"results/analysis/{s}/losses.csv"} for s in series_of_kind(config, "filter")},
    }
    return tables


def scorecard_inputs(wildcards):
    return sorted({path for by_series in scorecard_tables().values() for paths in by_series.values()
                   for path in paths.values()})


# Figures each kind of series draws besides the common ones (rules in analysis.smk).
KIND_FIGURES = {
    "ladder": ["compute_loss.png", "slowdown.png"],
    "thresholds": ["pareto.png"],
    "filter": ["filter_comparison.png"],
}


def used_filters():
    return sorted({filter_of(config, run) for run in all_runs(config)} - {None})


def benchmark_files():
    """The `benchmark:` file of every job the workflow runs (the timings table reads them)."""
    from tokenfilter.config.experiments import series_kind

    bench = "results/benchmarks"
    files = []
    if config["data"]["source"] == "synthetic":
        files += [f"{bench}/data/generate_world.tsv", f"{bench}/data/corpus_stats.tsv"]
    else:
        files += [f"{bench}/data/ingest_corpus.tsv"] + [f"{bench}/data/ingest_eval_text_{d}.tsv" for d in DOMAINS]
    files += [f"{bench}/data/train_tokenizer.tsv"] + [f"{bench}/data/tokenize_{s}.tsv" for s in TOKEN_SPLITS if s != "val"]
    n_parts = config["annotation"]["parts"]
    for name in used_filters():
        files += [f"{bench}/annotate/{name}/{i}-of-{n_parts}.tsv" for i in range(1, n_parts + 1)]
        files.append(f"{bench}/annotate/{name}/gather.tsv")
    for run in all_runs(config):
        files += [f"{bench}/pretrain/{run.name}.tsv", f"{bench}/evaluate/{run.name}.tsv"]
    kind_rules = {"ladder": ["plot_compute_loss", "plot_slowdown"], "thresholds": ["compare_pareto"],
                  "filter": ["compare_filters"]}
    for series in SERIES:
        for rule_name in ["tabulate_losses", "analyze_series"] + kind_rules[series_kind(config, series)]:
            files.append(f"{bench}/analysis/{series}/{rule_name}.tsv")
    files.append(f"{bench}/analysis/scorecard.tsv")
    return files


def all_targets():
    targets = []
    if config["data"]["source"] == "synthetic":
        targets.append("results/data/stats.json")
    for series in SERIES:
        targets += [f"results/analysis/{series}/{name}" for name in ["slowdowns.html", "frontier.png",
                                                                      "learning_curves.png"]]
        targets += [f"results/analysis/{series}/{name}" for name in KIND_FIGURES[series_kind(config, series)]]
    targets += ["results/analysis/scorecard.html", "results/analysis/findings.html", "results/analysis/timings.html"]
    return targets

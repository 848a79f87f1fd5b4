# Shared helpers of the rules: config validation, runs and resources from config, target lists.
import tokenfilter
from tokenfilter.config import canonical, load_schema, validate_config
from tokenfilter.experiments import (
    ARMS,
    BASELINE_SERIES,
    all_runs,
    filter_of,
    series_runs,
    size_resources,
    train_spec,
    Run,
)

# Validate before any job is scheduled; a ConfigError names the key, the value and what is allowed.
validate_config(config, load_schema(workflow.source_path("../schemas/config.schema.yaml")))

DOMAINS = list(tokenfilter.DOMAINS)
TOKEN_SPLITS = ["train", "val"] + [f"eval_{d}" for d in DOMAINS]
SERIES = list(config["experiments"])


wildcard_constraints:
    domain="|".join(DOMAINS),
    split="|".join(TOKEN_SPLITS),
    series="|".join(SERIES + [BASELINE_SERIES]),
    arm="|".join(ARMS),
    size="|".join(config["ladder"]),
    variant=r"[A-Za-z0-9_.]+",
    filter="|".join(config["filters"]),


def resources_of(section):
    """Resources of a rule group (`resources.<section>`, falling back to `resources.default`)."""
    merged = {"gpu": 0, "cpus": 1, "mem_mb": 4000, "runtime": 60}
    merged.update(config["resources"].get("default", {}))
    merged.update(config["resources"].get(section, {}))
    return merged


def corpus_of_split(wildcards):
    """Token shards of the training corpus come from its splits; eval shards from their own files."""
    if wildcards.split.startswith("eval_"):
        return f"results/data/eval/{wildcards.split.removeprefix('eval_')}.parquet"
    return "results/data/corpus.parquet"


def synthetic_params():
    from tokenfilter.synthetic.build import SyntheticParams

    return SyntheticParams.from_config(config["data"].get("synthetic", {}))


def run_of(wildcards):
    return Run(wildcards.series, wildcards.arm, wildcards.size, wildcards.variant)


def scores_of_run(wildcards):
    """The annotation a run reads: its filter source's scores (none for the baseline)."""
    name = filter_of(config, run_of(wildcards))
    return [] if name is None else [f"results/annotate/{name}"]


TRAIN_SHARD = "results/data/tokens/train"


def train_spec_of(wildcards):
    # A function of the wildcards only: Snakemake compares params that depend on `input` only
    # when the job runs, so a changed spec would not trigger a rerun.
    scores = scores_of_run(wildcards)
    return canonical(train_spec(config, run_of(wildcards), TRAIN_SHARD, scores[0] if scores else None))


def series_category(wildcards):
    return f"2. Pretraining: {wildcards.series}"


def series_labels(what):
    return lambda wildcards: {"series": wildcards.series, "figure": what}


def scorecard_inputs(wildcards):
    roles = config["analysis"]["scorecard"]
    inputs = {}
    for role in ("main", "thresholds", "ablation"):
        series = roles.get(role)
        if series:
            inputs[f"{role}_losses"] = f"results/analysis/{series}/losses.csv"
    return inputs


def series_table_runs(series):
    """A series' runs plus every baseline the workflow trains: slowdowns are read off the whole
    baseline ladder even for a series at one size (as the paper's threshold and noise sweeps are)."""
    baselines = {run for run in all_runs(config) if run.arm == "baseline"}
    return sorted(set(series_runs(config, series)) | baselines)


def series_filter(role):
    """The filter the runs of the series in a scorecard role use (None if no such series)."""
    series = config["analysis"]["scorecard"].get(role)
    if not series:
        return None
    names = {filter_of(config, run) for run in series_runs(config, series)} - {None}
    return ", ".join(sorted(names)) or None


def all_targets():
    targets = []
    if config["data"]["source"] == "synthetic":
        targets.append("results/data/stats.json")
    for series in SERIES:
        targets.append(f"results/analysis/{series}/slowdown.png")
    targets += ["results/analysis/scorecard.html", "results/analysis/findings.html"]
    return targets

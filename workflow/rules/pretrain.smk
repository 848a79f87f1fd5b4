# Pretraining stage (DESIGN §3 annotate.smk + pretrain.smk): per-token forget scores from a filter
# source, then one generic training rule for every (series, arm, size, variant) of every series.


rule annotate:
    input:
        shard="results/data/tokens/train",
    output:
        scores=directory("results/annotate/{filter}"),
    params:
        spec=lambda wc: canonical(config["filters"][wc.filter]),
        seed=config["seed"],
    log:
        "results/logs/annotate/{filter}.log",
    resources:
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/annotate.py"


rule pretrain:
    input:
        shard=TRAIN_SHARD,
        scores=scores_of_run,
    output:
        model="results/pretrain/{series}/{arm}/{size}/{variant}/model/model.safetensors",
        snapshots=directory("results/pretrain/{series}/{arm}/{size}/{variant}/snapshots"),
        train_log="results/pretrain/{series}/{arm}/{size}/{variant}/train_log.jsonl",
        summary="results/pretrain/{series}/{arm}/{size}/{variant}/summary.json",
    params:
        spec=train_spec_of,
        checkpoint_dir=lambda wc: f"results/checkpoints/{wc.series}/{wc.arm}/{wc.size}/{wc.variant}",
        gpus=lambda wc: size_resources(config, wc.size)["gpu"],
    log:
        "results/logs/pretrain/{series}/{arm}/{size}/{variant}.log",
    threads: lambda wc: size_resources(config, wc.size)["cpus"]
    resources:
        gpu=lambda wc: size_resources(config, wc.size)["gpu"],
        mem_mb=lambda wc: size_resources(config, wc.size)["mem_mb"],
        runtime=lambda wc, attempt: size_resources(config, wc.size)["runtime"] * attempt,
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/pretrain.py"

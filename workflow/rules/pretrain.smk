# Pretraining stage (DESIGN §3 pretrain.smk): one generic training rule for every
# (series, arm, size, variant) of every series; the arm reads its filter source's annotation.


rule pretrain:
    input:
        shard=TRAIN_SHARD,
        scores=scores_of_run,
        hparams=hparams_of_run,
    output:
        model=f"results/pretrain/{RUN}/model/model.safetensors",
        snapshots=directory(f"results/pretrain/{RUN}/snapshots"),
        train_log=f"results/pretrain/{RUN}/train_log.jsonl",
        summary=f"results/pretrain/{RUN}/summary.json",
    params:
        spec=train_spec_of,
        checkpoint_dir=lambda wc: f"results/checkpoints/{Run.from_wildcards(wc).name}",
        gpus=lambda wc: size_resources(config, wc.size)["gpu"],
    log:
        f"results/logs/pretrain/{RUN}.log",
    benchmark:
        f"results/benchmarks/pretrain/{RUN}.tsv"
    threads: lambda wc: size_resources(config, wc.size)["cpus"]
    resources:
        gpu=lambda wc: size_resources(config, wc.size)["gpu"],
        mem_mb=lambda wc: size_resources(config, wc.size)["mem_mb"],
        runtime=lambda wc, attempt: size_resources(config, wc.size)["runtime"] * attempt,
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/pretrain.py"

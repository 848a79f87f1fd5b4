# Evaluation stage (DESIGN §3 evaluate.smk): text losses of every model on the held-out text sets.


rule evaluate_text:
    input:
        summary=f"results/pretrain/{RUN}/summary.json",
        model=f"results/pretrain/{RUN}/model/model.safetensors",
        snapshots=f"results/pretrain/{RUN}/snapshots",
        train_log=f"results/pretrain/{RUN}/train_log.jsonl",
        eval_shards=expand("results/data/tokens/eval_{domain}", domain=DOMAINS),
    output:
        losses=f"results/evaluate/{RUN}/text_loss.json",
    params:
        domains=DOMAINS,
        max_tokens=config["evaluation"]["max_tokens"],
        snapshot_tokens=config["evaluation"]["snapshot_tokens"],
        batch_size=config["evaluation"]["batch_size"],
        snapshots=config["evaluation"]["snapshots"],
    log:
        f"results/logs/evaluate/{RUN}.log",
    benchmark:
        f"results/benchmarks/evaluate/{RUN}.tsv"
    threads: resources_of("evaluation")["cpus"]
    resources:
        gpu=resources_of("evaluation")["gpu"],
        mem_mb=resources_of("evaluation")["mem_mb"],
        runtime=resources_of("evaluation")["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/evaluate_text.py"

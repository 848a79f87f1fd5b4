# Evaluation stage (DESIGN §3 evaluate.smk): text losses of every model on the held-out text sets.

EVAL_RESOURCES = resources_of("evaluation")


rule evaluate_text:
    input:
        summary="results/pretrain/{series}/{arm}/{size}/{variant}/summary.json",
        model="results/pretrain/{series}/{arm}/{size}/{variant}/model/model.safetensors",
        snapshots="results/pretrain/{series}/{arm}/{size}/{variant}/snapshots",
        eval_shards=expand("results/data/tokens/eval_{domain}", domain=DOMAINS),
    output:
        losses="results/evaluate/{series}/{arm}/{size}/{variant}/text_loss.json",
    params:
        run_dir=lambda wc: f"results/pretrain/{wc.series}/{wc.arm}/{wc.size}/{wc.variant}",
        domains=DOMAINS,
        max_tokens=config["evaluation"]["max_tokens"],
        batch_size=config["evaluation"]["batch_size"],
        snapshots=config["evaluation"]["snapshots"],
    log:
        "results/logs/evaluate/{series}/{arm}/{size}/{variant}.log",
    resources:
        gpu=EVAL_RESOURCES["gpu"],
        mem_mb=EVAL_RESOURCES["mem_mb"],
        runtime=EVAL_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/evaluate_text.py"

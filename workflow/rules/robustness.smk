# Robustness stage (DESIGN §3 robustness.smk, paper E9): RMU unlearning of each attacked size's
# baseline, then adversarial finetuning of every filtered arm and of the RMU model to parity with
# the baseline's forget loss.

wildcard_constraints:
    target="|".join(ATTACK_TARGETS),
    setting=r"lr[0-9.e+-]+_wd[0-9.e+-]+",


rule unlearn_rmu:
    input:
        model=lambda wc: weights(ladder_model("baseline", wc.size, wc.replicate)),
        forget=ATTACK_SHARD,
        retain=RMU_RETAIN_SHARD,
    output:
        model=f"{RMU}/model/model.safetensors",
        summary=f"{RMU}/summary.json",
    params:
        spec=lambda wc: canonical(rmu_spec(config, wc.size, ladder_model("baseline", wc.size, wc.replicate),
                                           ATTACK_SHARD, RMU_RETAIN_SHARD, int(wc.replicate[1:]))),
        checkpoint_dir=lambda wc: f"results/checkpoints/robustness/rmu/{wc.size}/{wc.replicate}",
    log:
        "results/logs/robustness/rmu/{size}/{replicate}.log",
    benchmark:
        "results/benchmarks/robustness/rmu/{size}/{replicate}.tsv"
    threads: lambda wc: finetune_resources(wc.size)["cpus"]
    resources:
        gpu=lambda wc: finetune_resources(wc.size)["gpu"],
        mem_mb=lambda wc: size_resources(config, wc.size)["mem_mb"],
        runtime=lambda wc, attempt: size_resources(config, wc.size)["runtime"] * attempt,
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/train_spec.py"


rule check_rmu:
    input:
        before=lambda wc: weights(ladder_model("baseline", wc.size, wc.replicate)),
        after=f"{RMU}/model/model.safetensors",
        forget=FORGET_EVAL,
        retain="results/data/tokens/eval_retain_far",
    output:
        report=f"{RMU}/report.json",
    params:
        min_forget_increase=ROBUSTNESS["rmu"]["min_forget_increase"],
        max_retain_increase=ROBUSTNESS["rmu"]["max_retain_increase"],
        max_tokens=config["evaluation"]["max_tokens"],
        batch_size=config["evaluation"]["batch_size"],
    log:
        "results/logs/robustness/rmu/{size}/{replicate}.check.log",
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/check_rmu.py"


rule attack:
    input:
        model=lambda wc: weights(attacked_model(wc)),
        baseline=lambda wc: weights(ladder_model("baseline", wc.size, wc.replicate)),
        attack=ATTACK_SHARD,
        eval=FORGET_EVAL,
    output:
        summary=f"{ATTACK}/summary.json",
    params:
        spec=lambda wc: canonical(adversarial_spec(config, wc.target, wc.size, wc.setting, attacked_model(wc),
                                                   ladder_model("baseline", wc.size, wc.replicate), ATTACK_SHARD, FORGET_EVAL,
                                                   int(wc.replicate[1:]))),
        checkpoint_dir=lambda wc: f"results/checkpoints/robustness/attack/{wc.target}/{wc.size}/{wc.setting}/{wc.replicate}",
    log:
        "results/logs/robustness/attack/{target}/{size}/{setting}/{replicate}.log",
    benchmark:
        "results/benchmarks/robustness/attack/{target}/{size}/{setting}/{replicate}.tsv"
    threads: lambda wc: finetune_resources(wc.size)["cpus"]
    resources:
        gpu=lambda wc: finetune_resources(wc.size)["gpu"],
        mem_mb=lambda wc: size_resources(config, wc.size)["mem_mb"],
        runtime=lambda wc, attempt: size_resources(config, wc.size)["runtime"] * attempt,
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/train_spec.py"


rule summarize_robustness:
    input:
        attacks=attack_summaries(),
        rmu=[f"{rmu_dir(size, r)}/report.json" for size, r in rmu_models()],
        rmu_runs=[f"{rmu_dir(size, r)}/summary.json" for size, r in rmu_models()],
    output:
        parity="results/analysis/robustness/parity.csv",
        table4=report("results/analysis/robustness/table4.html", caption="../report/table4.rst", category="4. Robustness", labels={"table": "attacker settings (Table 4)"}),
        rmu=report("results/analysis/robustness/rmu.html", caption="../report/rmu.rst", category="4. Robustness", labels={"table": "RMU against its bar"}),
        fig7=report("results/analysis/robustness/parity.png", caption="../report/fig7.rst", category="4. Robustness", labels={"figure": "tokens to parity (Fig 7)"}),
        fig26=report("results/analysis/robustness/curves.png", caption="../report/fig26.rst", category="4. Robustness", labels={"figure": "finetuning curves (Fig 26)"}),
        claims="results/analysis/robustness/claims.csv",
    log:
        "results/logs/analysis/summarize_robustness.log",
    benchmark:
        "results/benchmarks/analysis/summarize_robustness.tsv"
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/summarize_robustness.py"

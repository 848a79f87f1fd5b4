# Robustness stage (DESIGN §3 robustness.smk, paper E9): RMU unlearning of each attacked size's
# baseline, then adversarial finetuning of every filtered arm and of the RMU model to parity with
# the baseline's forget loss.

ROBUSTNESS = config["robustness"]
ATTACK_SHARD = "results/data/tokens/attack"
FORGET_EVAL = "results/data/tokens/eval_forget"
ATTACK = "results/robustness/attack/{target}/{size}/{setting}/{replicate}"


wildcard_constraints:
    target="|".join(ATTACK_TARGETS),
    setting=r"lr[0-9.e+-]+_wd[0-9.e+-]+",


RMU = "results/robustness/rmu/{size}/{replicate}"


def ladder_model(arm, size, replicate):
    """The pretrained model of ``arm`` at ``size``, seed ``replicate`` ("r0", ...), of the main series."""
    return f"{ladder_run(config, arm, size, int(replicate[1:])).path('pretrain')}/model"


def attacked_model(wildcards):
    if wildcards.target == "rmu":
        return RMU.format(size=wildcards.size, replicate=wildcards.replicate) + "/model"
    return ladder_model(wildcards.target, wildcards.size, wildcards.replicate)


def weights(model_dir):
    """A model directory's weights file: the input that stands for the model (a directory input
    would not be rebuilt when its producer reruns)."""
    return f"{model_dir}/model.safetensors"


def attack_summaries():
    return [f"results/robustness/attack/{target}/{size}/{setting}/r{k}/summary.json"
            for target, size, setting, k in attack_runs(config)]


def rmu_models():
    """(size, replicate) of every RMU model the attacks read."""
    return sorted({(size, f"r{k}") for target, size, _, k in attack_runs(config) if target == "rmu"})


rule unlearn_rmu:
    input:
        model=lambda wc: weights(ladder_model("baseline", wc.size, wc.replicate)),
        forget=ATTACK_SHARD,
        retain=TRAIN_SHARD,
    output:
        model=f"{RMU}/model/model.safetensors",
        summary=f"{RMU}/summary.json",
    params:
        spec=lambda wc: canonical(rmu_spec(config, wc.size, ladder_model("baseline", wc.size, wc.replicate),
                                           ATTACK_SHARD, TRAIN_SHARD, int(wc.replicate[1:]))),
        checkpoint_dir=lambda wc: f"results/checkpoints/robustness/rmu/{wc.size}/{wc.replicate}",
    log:
        "results/logs/robustness/rmu/{size}/{replicate}.log",
    benchmark:
        "results/benchmarks/robustness/rmu/{size}/{replicate}.tsv"
    resources:
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
    resources:
        mem_mb=lambda wc: size_resources(config, wc.size)["mem_mb"],
        runtime=lambda wc, attempt: size_resources(config, wc.size)["runtime"] * attempt,
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/train_spec.py"


rule summarize_robustness:
    input:
        attacks=attack_summaries(),
        rmu=[RMU.format(size=size, replicate=r) + "/report.json" for size, r in rmu_models()],
        rmu_runs=[RMU.format(size=size, replicate=r) + "/summary.json" for size, r in rmu_models()],
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

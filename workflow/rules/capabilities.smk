# Capability stage (paper §4.2, §4.4; E7, E8, E10-E13): MCQ benchmarks through lm-eval (cloze on
# base models, letter after instruction tuning), chat tuning, refusal training, free-response
# answers and refusals through the judge, linear probes, and the stage's claims. The models are the
# main ladder series' (capabilities.* sizes); every evaluation job serves many models.

CAP_RESOURCES = resources_of("capabilities")
CAP_TASKS = f"{CAP}/tasks"


if paper_benchmark_files():

    rule download_benchmarks:
        output:
            files=list(paper_benchmark_files().values()),
        params:
            files=canonical(paper_benchmark_files()),
        log:
            "results/logs/capabilities/download_benchmarks.log",
        conda:
            "../envs/tokenfilter.yaml"
        script:
            "../scripts/download_benchmarks.py"


if POSTTRAIN_DATA and config["data"]["source"] != "synthetic":

    if posttrain_downloads():

        rule download_posttrain:
            output:
                [directory(path) if not path.endswith(POSTTRAIN_TABLE_SUFFIXES) else path for path in posttrain_downloads()],
            params:
                sets=canonical({name: spec for name, spec in POSTTRAIN_DATA.items() if spec.get("download")}),
            log:
                "results/logs/capabilities/download_posttrain.log",
            conda:
                "../envs/tokenfilter.yaml"
            script:
                "../scripts/download_posttrain.py"

    rule ingest_posttrain:
        input:
            [spec["path"] for spec in POSTTRAIN_DATA.values()],
        output:
            instruct="results/data/instruct.jsonl",
            chat="results/data/chat.jsonl",
            refusal="results/data/refusal.jsonl",
            free_response="results/data/free_response.jsonl",
            summary="results/data/posttrain.ingest.json",
        params:
            data=canonical(POSTTRAIN_DATA),
        log:
            "results/logs/capabilities/ingest_posttrain.log",
        benchmark:
            "results/benchmarks/capabilities/ingest_posttrain.tsv"
        threads: CAP_RESOURCES["cpus"]
        resources:
            gpu=0,
            mem_mb=CAP_RESOURCES["mem_mb"],
            runtime=CAP_RESOURCES["runtime"],
        conda:
            "../envs/tokenfilter.yaml"
        script:
            "../scripts/ingest_posttrain.py"


rule write_benchmark_tasks:
    input:
        mcq=expand("results/data/mcq/{domain}.jsonl", domain=DOMAINS) if "builtin" in CAPABILITIES["benchmarks"]["tasks"] else [],
        published=list(paper_benchmark_files().values()),
    output:
        tasks=directory(CAP_TASKS),
    params:
        tasks=CAPABILITIES["benchmarks"]["tasks"],
        local=canonical(CAPABILITIES["benchmarks"]["local"]),
        medmcqa_cop_base=CAPABILITIES["benchmarks"]["medmcqa_cop_base"],
    log:
        "results/logs/capabilities/write_benchmark_tasks.log",
    benchmark:
        "results/benchmarks/capabilities/write_benchmark_tasks.tsv"
    threads: CAP_RESOURCES["cpus"]
    resources:
        gpu=CAP_RESOURCES["gpu"],
        mem_mb=CAP_RESOURCES["mem_mb"],
        runtime=CAP_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/write_benchmark_tasks.py"


rule benchmark_mcq:
    input:
        tasks=CAP_TASKS,
        tokenizer="results/data/tokenizer/tokenizer.json",
        models=lambda wc: [weights(d) for d in capability_models(wc.format).values()],
    output:
        csv=f"{CAP}/benchmarks/{{format}}.csv",
    wildcard_constraints:
        format="cloze|letter",
    params:
        models=lambda wc: canonical(capability_models(wc.format)),
        tasks=CAPABILITIES["benchmarks"]["tasks"],
        batch_size=CAPABILITIES["benchmarks"]["batch_size"],
        limit=CAPABILITIES["benchmarks"]["limit"],
    log:
        "results/logs/capabilities/benchmark_{format}.log",
    benchmark:
        "results/benchmarks/capabilities/benchmark_{format}.tsv"
    threads: CAP_RESOURCES["cpus"]
    resources:
        gpu=CAP_RESOURCES["gpu"],
        mem_mb=CAP_RESOURCES["mem_mb"],
        runtime=CAP_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/benchmark_mcq.py"


rule posttrain_examples:
    input:
        instruct="results/data/instruct.jsonl",
        chat="results/data/chat.jsonl",
        refusal="results/data/refusal.jsonl",
        tokenizer="results/data/tokenizer/tokenizer.json",
    output:
        instruct=f"{EXAMPLES}/instruct.jsonl",
        chat=f"{EXAMPLES}/chat.jsonl",
        **{f"refusal_{v}": f"{EXAMPLES}/refusal_{v}.jsonl" for v in CAPABILITIES["refusal"]["variants"]},
        held_out=f"{EXAMPLES}/refusal_held_out.jsonl",
        summary=f"{EXAMPLES}/summary.json",
    params:
        variants=CAPABILITIES["refusal"]["variants"],
        split_seed=config["seed"],
        held_out_fraction=CAPABILITIES["refusal"]["held_out_fraction"],
    log:
        "results/logs/capabilities/posttrain_examples.log",
    benchmark:
        "results/benchmarks/capabilities/posttrain_examples.tsv"
    threads: CAP_RESOURCES["cpus"]
    resources:
        gpu=CAP_RESOURCES["gpu"],
        mem_mb=CAP_RESOURCES["mem_mb"],
        runtime=CAP_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/posttrain_examples.py"


rule posttrain:
    input:
        model=lambda wc: weights(posttrain_init(wc)),
        examples=f"{EXAMPLES}/{{stage}}.jsonl",
    output:
        model=f"{POSTTRAINED}/model/model.safetensors",
        summary=f"{POSTTRAINED}/summary.json",
    wildcard_constraints:
        stage="|".join(POSTTRAIN_STAGES),
    params:
        spec=lambda wc: canonical(posttrain_spec(config, wc.stage, wc.arm, wc.size, posttrain_init(wc),
                                                 f"{EXAMPLES}/{wc.stage}.jsonl", int(wc.replicate[1:]))),
        checkpoint_dir=lambda wc: f"results/checkpoints/capabilities/{wc.stage}/{wc.arm}/{wc.size}/{wc.replicate}",
    log:
        "results/logs/capabilities/posttrain/{stage}/{arm}/{size}/{replicate}.log",
    benchmark:
        "results/benchmarks/capabilities/posttrain/{stage}/{arm}/{size}/{replicate}.tsv"
    threads: lambda wc: finetune_resources(wc.size)["cpus"]
    resources:
        gpu=lambda wc: finetune_resources(wc.size)["gpu"],
        mem_mb=lambda wc: size_resources(config, wc.size)["mem_mb"],
        runtime=lambda wc, attempt: size_resources(config, wc.size)["runtime"] * attempt,
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/train_spec.py"


rule generate_free_response:
    input:
        models=[weights(d) for d in flat(answer_models("free_response"))],
        questions_from="results/data/free_response.jsonl",
        tokenizer="results/data/tokenizer/tokenizer.json",
    output:
        questions=f"{CAP}/free_response/questions.jsonl",
        generations=flat(answer_files("free_response", "generations.jsonl")),
    params:
        models=canonical(answer_models("free_response")),
        outputs=canonical(answer_files("free_response", "generations.jsonl")),
        sampling=canonical(CAPABILITIES["free_response"]),
        seed=config["seed"],
    log:
        "results/logs/capabilities/generate_free_response.log",
    benchmark:
        "results/benchmarks/capabilities/generate_free_response.tsv"
    threads: CAP_RESOURCES["cpus"]
    resources:
        gpu=CAP_RESOURCES["gpu"],
        mem_mb=CAP_RESOURCES["mem_mb"],
        runtime=CAP_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/generate_answers.py"


rule generate_refusals:
    input:
        models=[weights(d) for d in flat(answer_models("refusal"))],
        questions_from=f"{EXAMPLES}/refusal_held_out.jsonl",
        tokenizer="results/data/tokenizer/tokenizer.json",
    output:
        questions=f"{CAP}/refusal/questions.jsonl",
        generations=flat(answer_files("refusal", "generations.jsonl")),
    params:
        models=canonical(answer_models("refusal")),
        outputs=canonical(answer_files("refusal", "generations.jsonl")),
        # One answer per held-out question and model (the models' training seeds vary).
        sampling=canonical({**CAPABILITIES["free_response"], "seeds": 1, "limit": CAPABILITIES["refusal"]["limit"]}),
        seed=config["seed"],
    log:
        "results/logs/capabilities/generate_refusals.log",
    benchmark:
        "results/benchmarks/capabilities/generate_refusals.tsv"
    threads: CAP_RESOURCES["cpus"]
    resources:
        gpu=CAP_RESOURCES["gpu"],
        mem_mb=CAP_RESOURCES["mem_mb"],
        runtime=CAP_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/generate_answers.py"


rule judge_free_response:
    input:
        generations=flat(answer_files("free_response", "generations.jsonl")),
    output:
        judged=flat(answer_files("free_response", "judged.jsonl")),
        summary=f"{CAP}/free_response/summary.csv",
        samples=f"{CAP}/free_response/samples.csv",
    params:
        generations=canonical(answer_files("free_response", "generations.jsonl")["chat"]),
        judged=canonical(answer_files("free_response", "judged.jsonl")["chat"]),
        judge=canonical(config["judge"]),
        samples=CAPABILITIES["free_response"]["samples"],
        seed=config["seed"],
    log:
        "results/logs/capabilities/judge_free_response.log",
    benchmark:
        "results/benchmarks/capabilities/judge_free_response.tsv"
    threads: CAP_RESOURCES["cpus"]
    resources:
        gpu=CAP_RESOURCES["gpu"],
        mem_mb=CAP_RESOURCES["mem_mb"],
        runtime=CAP_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/judge_free_response.py"


rule judge_refusals:
    input:
        generations=flat(answer_files("refusal", "generations.jsonl")),
        tokenizer="results/data/tokenizer/tokenizer.json",
    output:
        verdicts=flat(answer_files("refusal", "verdicts.jsonl")),
        summary=f"{CAP}/refusal/summary.csv",
    params:
        generations=canonical(answer_files("refusal", "generations.jsonl")),
        verdicts=canonical(answer_files("refusal", "verdicts.jsonl")),
        judge=canonical(config["judge"]),
    log:
        "results/logs/capabilities/judge_refusals.log",
    benchmark:
        "results/benchmarks/capabilities/judge_refusals.tsv"
    threads: CAP_RESOURCES["cpus"]
    resources:
        gpu=CAP_RESOURCES["gpu"],
        mem_mb=CAP_RESOURCES["mem_mb"],
        runtime=CAP_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/judge_refusals.py"


rule probe_tokens:
    input:
        models=lambda wc: [weights(d) for d in capability_models(f"probe_{wc.size}").values()],
        shard="results/data/tokens/val",
    output:
        json=f"{CAP}/probes/tokens/{{size}}.json",
    params:
        models=lambda wc: canonical(capability_models(f"probe_{wc.size}")),
        probes=canonical(CAPABILITIES["probes"]),
        seed=config["seed"],
    log:
        "results/logs/capabilities/probe_tokens_{size}.log",
    benchmark:
        "results/benchmarks/capabilities/probe_tokens_{size}.tsv"
    threads: CAP_RESOURCES["cpus"]
    resources:
        gpu=CAP_RESOURCES["gpu"],
        mem_mb=CAP_RESOURCES["mem_mb"],
        runtime=CAP_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/probe_tokens.py"


rule probe_subdomains:
    input:
        models=lambda wc: [weights(d) for d in capability_models(f"subdomain_{wc.size}").values()],
        forget="results/data/tokens/eval_forget",
        forget_corpus="results/data/eval/forget.parquet",
        retain="results/data/tokens/eval_retain_far",
    output:
        json=f"{CAP}/probes/subdomains/{{size}}.json",
    params:
        models=lambda wc: canonical(capability_models(f"subdomain_{wc.size}")),
        probes=canonical(CAPABILITIES["probes"]),
        seed=config["seed"],
    log:
        "results/logs/capabilities/probe_subdomains_{size}.log",
    benchmark:
        "results/benchmarks/capabilities/probe_subdomains_{size}.tsv"
    threads: CAP_RESOURCES["cpus"]
    resources:
        gpu=CAP_RESOURCES["gpu"],
        mem_mb=CAP_RESOURCES["mem_mb"],
        runtime=CAP_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/probe_subdomains.py"


rule summarize_capabilities:
    input:
        benchmarks=expand(f"{CAP}/benchmarks/{{format}}.csv", format=benchmark_formats()),
        free_response=[f"{CAP}/free_response/{name}.csv" for name in ("summary", "samples")] if capability_parts()["free_response"] else [],
        refusal=[f"{CAP}/refusal/summary.csv"] if capability_parts()["refusal"] else [],
        probes=expand(f"{CAP}/probes/tokens/{{size}}.json", size=CAPABILITIES["probes"]["sizes"]),
        subdomains=expand(f"{CAP}/probes/subdomains/{{size}}.json", size=CAPABILITIES["probes"]["subdomain_sizes"]),
        filter_quality="results/analysis/filter_quality.csv",
    output:
        claims=f"{CAP_REPORT}/claims.csv",
        **{name: report(f"{CAP_REPORT}/{item[0]}", caption=f"../report/{item[1]}.rst", category="5. Capabilities",
                        labels={item[2]: item[3]}) for name, item in capability_report().items()},
    params:
        # In ladder order (a list keeps its order; the ladder mapping's keys may be reordered).
        sizes=config["experiments"][series_of_kind(config, "ladder")[0]]["sizes"] if series_of_kind(config, "ladder") else [],
        main_series=series_of_kind(config, "ladder")[0] if series_of_kind(config, "ladder") else None,
    log:
        "results/logs/analysis/summarize_capabilities.log",
    benchmark:
        "results/benchmarks/capabilities/summarize_capabilities.tsv"
    threads: ANALYSIS["cpus"]
    resources:
        gpu=ANALYSIS["gpu"],
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/summarize_capabilities.py"

# Data stage (DESIGN §3 data.smk): corpus, held-out sets, tokenizer, token shards, statistics.

DATA_RESOURCES = resources_of("data")

if config["data"]["source"] == "synthetic":

    rule generate_world:
        output:
            corpus="results/data/corpus.parquet",
            eval_forget="results/data/eval/forget.parquet",
            eval_retain_near="results/data/eval/retain_near.parquet",
            eval_retain_far="results/data/eval/retain_far.parquet",
            attack="results/data/attack.parquet",
            mcq_forget="results/data/mcq/forget.jsonl",
            mcq_retain_near="results/data/mcq/retain_near.jsonl",
            mcq_retain_far="results/data/mcq/retain_far.jsonl",
            free_response="results/data/free_response.jsonl",
            instruct="results/data/instruct.jsonl",
            chat="results/data/chat.jsonl",
            refusal="results/data/refusal.jsonl",
            summary="results/data/world.json",
        params:
            synthetic=canonical(config["data"]["synthetic"]),
            seed=config["seed"],
            val_fraction=config["data"]["val_fraction"],
        log:
            "results/logs/data/generate_world.log",
        benchmark:
            "results/benchmarks/data/generate_world.tsv"
        threads: DATA_RESOURCES["cpus"]
        resources:
            gpu=DATA_RESOURCES["gpu"],
            mem_mb=DATA_RESOURCES["mem_mb"],
            runtime=DATA_RESOURCES["runtime"],
        conda:
            "../envs/tokenfilter.yaml"
        script:
            "../scripts/generate_world.py"

else:

    rule ingest_corpus:
        output:
            corpus="results/data/corpus.parquet",
            summary="results/data/ingest.json",
        params:
            source=config["data"]["source"],
            spec=canonical(config["data"].get(config["data"]["source"])),
            seed=config["seed"],
            val_fraction=config["data"]["val_fraction"],
            on_bad_record=config["data"]["on_bad_record"],
        log:
            "results/logs/data/ingest_corpus.log",
        benchmark:
            "results/benchmarks/data/ingest_corpus.tsv"
        threads: DATA_RESOURCES["cpus"]
        resources:
            gpu=DATA_RESOURCES["gpu"],
            mem_mb=DATA_RESOURCES["mem_mb"],
            runtime=DATA_RESOURCES["runtime"],
        conda:
            "../envs/tokenfilter.yaml"
        script:
            "../scripts/ingest.py"

    rule ingest_attack_text:
        output:
            corpus="results/data/attack.parquet",
            summary="results/data/attack.ingest.json",
        params:
            source=heldout_text_spec("attack")[0] if "attack_text" in config["data"] else None,
            spec=heldout_text_spec("attack")[1] if "attack_text" in config["data"] else None,
            seed=config["seed"],
            val_fraction=0.0,
            on_bad_record=config["data"]["on_bad_record"],
        log:
            "results/logs/data/ingest_attack_text.log",
        benchmark:
            "results/benchmarks/data/ingest_attack_text.tsv"
        threads: DATA_RESOURCES["cpus"]
        resources:
            gpu=DATA_RESOURCES["gpu"],
            mem_mb=DATA_RESOURCES["mem_mb"],
            runtime=DATA_RESOURCES["runtime"],
        conda:
            "../envs/tokenfilter.yaml"
        script:
            "../scripts/ingest.py"

    rule ingest_eval_text:
        output:
            corpus="results/data/eval/{domain}.parquet",
            summary="results/data/eval/{domain}.ingest.json",
        params:
            source=lambda wc: heldout_text_spec(wc.domain)[0],
            spec=lambda wc: heldout_text_spec(wc.domain)[1],
            seed=config["seed"],
            val_fraction=0.0,
            on_bad_record=config["data"]["on_bad_record"],
        log:
            "results/logs/data/ingest_eval_text_{domain}.log",
        benchmark:
            "results/benchmarks/data/ingest_eval_text_{domain}.tsv"
        threads: DATA_RESOURCES["cpus"]
        resources:
            gpu=DATA_RESOURCES["gpu"],
            mem_mb=DATA_RESOURCES["mem_mb"],
            runtime=DATA_RESOURCES["runtime"],
        conda:
            "../envs/tokenfilter.yaml"
        script:
            "../scripts/ingest.py"


if RMU_RETAIN_TEXT:

    rule ingest_rmu_retain_text:
        output:
            corpus="results/data/rmu_retain.parquet",
            summary="results/data/rmu_retain.ingest.json",
        params:
            source=heldout_text_spec("rmu_retain")[0],
            spec=heldout_text_spec("rmu_retain")[1],
            seed=config["seed"],
            val_fraction=0.0,
            on_bad_record=config["data"]["on_bad_record"],
        log:
            "results/logs/data/ingest_rmu_retain_text.log",
        benchmark:
            "results/benchmarks/data/ingest_rmu_retain_text.tsv"
        threads: DATA_RESOURCES["cpus"]
        resources:
            gpu=DATA_RESOURCES["gpu"],
            mem_mb=DATA_RESOURCES["mem_mb"],
            runtime=DATA_RESOURCES["runtime"],
        conda:
            "../envs/tokenfilter.yaml"
        script:
            "../scripts/ingest.py"


rule train_tokenizer:
    input:
        corpus="results/data/corpus.parquet",
    output:
        tokenizer="results/data/tokenizer/tokenizer.json",
    params:
        tokenizer=canonical(config["tokenizer"]),
    log:
        "results/logs/data/train_tokenizer.log",
    benchmark:
        "results/benchmarks/data/train_tokenizer.tsv"
    threads: DATA_RESOURCES["cpus"]
    resources:
        gpu=DATA_RESOURCES["gpu"],
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/train_tokenizer.py"


rule tokenize:
    input:
        corpus=corpus_of_split,
        tokenizer="results/data/tokenizer/tokenizer.json",
    output:
        shard=directory("results/data/tokens/{split}"),
    params:
        split=lambda wc: wc.split if wc.split in ("train", "val") else None,
        max_doc_tokens=config["data"]["max_doc_tokens"],
    log:
        "results/logs/data/tokenize_{split}.log",
    benchmark:
        "results/benchmarks/data/tokenize_{split}.tsv"
    threads: DATA_RESOURCES["cpus"]
    resources:
        gpu=DATA_RESOURCES["gpu"],
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/tokenize.py"


rule check_heldout_overlap:
    input:
        corpus="results/data/corpus.parquet",
        eval=expand("results/data/eval/{domain}.parquet", domain=DOMAINS),
        attack=HELDOUT_ATTACK,
    output:
        json="results/data/overlap.json",
        html=report("results/data/overlap.html", caption="../report/overlap.rst", category="1. Data", labels={"table": "held-out text vs training text"}),
    params:
        max_overlap=config["data"]["max_heldout_overlap"],
        names=[f"eval_{d}" for d in DOMAINS] + (["attack"] if HELDOUT_ATTACK else []),
    log:
        "results/logs/data/check_heldout_overlap.log",
    benchmark:
        "results/benchmarks/data/check_heldout_overlap.tsv"
    threads: DATA_RESOURCES["cpus"]
    resources:
        gpu=DATA_RESOURCES["gpu"],
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/check_heldout_overlap.py"


rule corpus_stats:
    input:
        shard="results/data/tokens/train",
        overlap="results/data/overlap.json",
    output:
        json="results/data/stats.json",
        csv=report("results/data/stats.csv", caption="../report/stats.rst", category="1. Data", labels={"table": "corpus statistics (CSV)"}),
        html=report("results/data/stats.html", caption="../report/stats.rst", category="1. Data", labels={"table": "corpus statistics"}),
        histogram=report("results/data/forget_histogram.png", caption="../report/forget_histogram.rst", category="1. Data", labels={"figure": "forget share per document (Fig 24)"}),
    params:
        doc_label_min_forget=synthetic_params().documents.doc_label_min_forget,
    log:
        "results/logs/data/corpus_stats.log",
    benchmark:
        "results/benchmarks/data/corpus_stats.tsv"
    threads: DATA_RESOURCES["cpus"]
    resources:
        gpu=DATA_RESOURCES["gpu"],
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/corpus_stats.py"

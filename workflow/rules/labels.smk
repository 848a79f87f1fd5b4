# Labelling stage (DESIGN §3 labels.smk, paper §5.1, E1): the classifier's documents, a reference LM
# with its own tokenizer, an SAE on its residual stream, judged latents and the SAE token labels.

wildcard_constraints:
    part="train|val|test",


rule select_label_documents:
    input:
        corpus="results/data/corpus.parquet",
    output:
        **{part: f"{LABELS}/docs/{part}.parquet" for part in ("train", "val", "test")},
    params:
        n_docs=canonical(LABEL_CFG["documents"]),
        seed=config["seed"],
    log:
        "results/logs/labels/select_label_documents.log",
    benchmark:
        "results/benchmarks/labels/select_label_documents.tsv"
    threads: DATA_RESOURCES["cpus"]
    resources:
        gpu=DATA_RESOURCES["gpu"],
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/select_label_documents.py"


rule tokenize_label_documents:
    input:
        corpus=f"{LABELS}/docs/{{part}}.parquet",
        tokenizer="results/data/tokenizer/tokenizer.json",
    output:
        shard=directory(f"{LABELS}/tokens/{{part}}"),
    params:
        split=None,
        max_doc_tokens=config["data"]["max_doc_tokens"],
    log:
        "results/logs/labels/tokenize_{part}.log",
    threads: DATA_RESOURCES["cpus"]
    resources:
        gpu=DATA_RESOURCES["gpu"],
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/tokenize.py"


rule train_reference_tokenizer:
    input:
        corpus="results/data/corpus.parquet",
    output:
        tokenizer=f"{REFERENCE}/tokenizer/tokenizer.json",
    params:
        tokenizer=canonical({"kind": "train", "vocab_size": LABEL_CFG["reference"]["vocab_size"], "name": None,
                             "train_max_docs": config["tokenizer"]["train_max_docs"]}),
    log:
        "results/logs/labels/train_reference_tokenizer.log",
    benchmark:
        "results/benchmarks/labels/train_reference_tokenizer.tsv"
    threads: DATA_RESOURCES["cpus"]
    resources:
        gpu=DATA_RESOURCES["gpu"],
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/train_tokenizer.py"


rule tokenize_reference_corpus:
    input:
        corpus="results/data/corpus.parquet",
        tokenizer=f"{REFERENCE}/tokenizer/tokenizer.json",
    output:
        shard=directory(f"{REFERENCE}/tokens"),
    params:
        split="train",
        max_doc_tokens=config["data"]["max_doc_tokens"],
    log:
        "results/logs/labels/tokenize_reference_corpus.log",
    benchmark:
        "results/benchmarks/labels/tokenize_reference_corpus.tsv"
    threads: DATA_RESOURCES["cpus"]
    resources:
        gpu=DATA_RESOURCES["gpu"],
        mem_mb=DATA_RESOURCES["mem_mb"],
        runtime=DATA_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/tokenize.py"


rule train_reference_lm:
    input:
        shard=f"{REFERENCE}/tokens",
    output:
        model=f"{REFERENCE}/lm/model/model.safetensors",
        summary=f"{REFERENCE}/lm/summary.json",
    params:
        spec=canonical(reference_spec(config, f"{REFERENCE}/tokens")),
        checkpoint_dir="results/checkpoints/labels/reference",
    log:
        "results/logs/labels/train_reference_lm.log",
    benchmark:
        "results/benchmarks/labels/train_reference_lm.tsv"
    threads: TRAIN_DEFAULTS["cpus"]
    resources:
        gpu=TRAIN_DEFAULTS["gpu"],
        mem_mb=TRAIN_DEFAULTS["mem_mb"],
        runtime=lambda wc, attempt: TRAIN_DEFAULTS["runtime"] * attempt,
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/train_spec.py"


rule download_reference:
    output:
        marker="resources/reference/download.json",
    params:
        repos=[LABEL_CFG["reference"]["name"]],
    log:
        "results/logs/labels/download_reference.log",
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/download_hf.py"


rule download_sae:
    output:
        marker="resources/sae/download.json",
    params:
        sae=[LABEL_CFG["sae"]["release"], LABEL_CFG["sae"]["sae_id"]],
    log:
        "results/logs/labels/download_sae.log",
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/download_hf.py"


rule train_sae:
    input:
        **reference_inputs(),
        docs=f"{LABELS}/docs/train.parquet",
    output:
        sae=f"{LABELS}/sae/cfg.json",
        summary=f"{LABELS}/sae_training.json",
    params:
        reference=canonical(reference_settings()),
        layer=LABEL_CFG["sae"]["layer"],
        sae=canonical(LABEL_CFG["sae"]),
        seed=config["seed"],
    log:
        "results/logs/labels/train_sae.log",
    benchmark:
        "results/benchmarks/labels/train_sae.tsv"
    threads: resources_of("labels")["cpus"]
    resources:
        gpu=resources_of("labels")["gpu"],
        mem_mb=resources_of("labels")["mem_mb"],
        runtime=resources_of("labels")["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/train_sae.py"


rule select_latents:
    input:
        **reference_inputs(),
        sae=sae_inputs(),
        docs=f"{LABELS}/docs/train.parquet",
    output:
        selection=f"{LABELS}/latents.json",
        stats=f"{LABELS}/latent_stats.npz",
        labeller=f"{LABELS}/labeller.json",
    params:
        reference=canonical(reference_settings()),
        sae=canonical(sae_settings()),
        layer=LABEL_CFG["sae"]["layer"],
        latents=canonical(LABEL_CFG["latents"]),
        rule=canonical(LABEL_CFG["rule"]),
        judge=canonical(config["judge"]),
    log:
        "results/logs/labels/select_latents.log",
    benchmark:
        "results/benchmarks/labels/select_latents.tsv"
    threads: resources_of("labels")["cpus"]
    resources:
        gpu=resources_of("labels")["gpu"],
        mem_mb=resources_of("labels")["mem_mb"],
        runtime=resources_of("labels")["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/select_latents.py"


rule label_documents:
    input:
        **reference_inputs(),
        sae=sae_inputs(),
        labeller=f"{LABELS}/labeller.json",
        docs=f"{LABELS}/docs/{{part}}.parquet",
        shard=f"{LABELS}/tokens/{{part}}",
        pretraining_tokenizer="results/data/tokenizer/tokenizer.json",
    output:
        labels=f"{LABELS}/sae_labels/{{part}}/sae_labels.npy",
        quality=f"{LABELS}/sae_labels/{{part}}/quality.json",
    log:
        "results/logs/labels/label_documents_{part}.log",
    benchmark:
        "results/benchmarks/labels/label_documents_{part}.tsv"
    threads: resources_of("labels")["cpus"]
    resources:
        gpu=resources_of("labels")["gpu"],
        mem_mb=resources_of("labels")["mem_mb"],
        runtime=resources_of("labels")["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/label_documents.py"

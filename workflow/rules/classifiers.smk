# Classifier stage (DESIGN §3 classifiers.smk, paper §5.2-5.3, E2, E3, E16, E17): the biLM's right
# halves and the masked-LM encoder, trained with the one loop; probes on their features, fitted on
# the labelling stage's documents; Table 1 and the classifier figures.

wildcard_constraints:
    name="|".join(CLASSIFIER_NAMES) or "^$",
    tag="forget[0-9]+",
    direction="left|right",
    level="sentence|document",


rule train_right_half:
    input:
        shard=TRAIN_SHARD,
    output:
        model="results/classifiers/bilm/{size}/right/model/model.safetensors",
        summary="results/classifiers/bilm/{size}/right/summary.json",
    params:
        spec=lambda wc: canonical(right_half_spec(config, wc.size, TRAIN_SHARD)),
        checkpoint_dir=lambda wc: f"results/checkpoints/classifiers/bilm/{wc.size}/right",
    log:
        "results/logs/classifiers/train_right_half_{size}.log",
    benchmark:
        "results/benchmarks/classifiers/right_half/{size}.tsv"
    threads: lambda wc: finetune_resources(wc.size)["cpus"]
    resources:
        gpu=lambda wc: finetune_resources(wc.size)["gpu"],
        mem_mb=lambda wc: size_resources(config, wc.size)["mem_mb"],
        runtime=lambda wc, attempt: size_resources(config, wc.size)["runtime"] * attempt,
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/train_spec.py"


rule upsample_bilm_corpus:
    input:
        shard=TRAIN_SHARD,
        corpus="results/data/corpus.parquet",
    output:
        shard=directory("results/classifiers/upsampled/{tag}/tokens"),
    params:
        forget_share=lambda wc: upsampled_share(config, wc.tag),
        seed=config["seed"],
    log:
        "results/logs/classifiers/upsample_bilm_corpus_{tag}.log",
    threads: CLASSIFIER_RESOURCES["cpus"]
    resources:
        gpu=0,
        mem_mb=CLASSIFIER_RESOURCES["mem_mb"],
        runtime=CLASSIFIER_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/upsample_bilm_corpus.py"


rule train_upsampled_half:
    input:
        shard="results/classifiers/upsampled/{tag}/tokens",
    output:
        model="results/classifiers/upsampled/{tag}/{size}/{direction}/model/model.safetensors",
        summary="results/classifiers/upsampled/{tag}/{size}/{direction}/summary.json",
    params:
        spec=lambda wc: canonical(bilm_half_spec(config, wc.size, f"results/classifiers/upsampled/{wc.tag}/tokens",
                                                 wc.direction, f"classifiers/upsampled/{wc.tag}/{wc.size}/{wc.direction}/r0")),
        checkpoint_dir=lambda wc: f"results/checkpoints/classifiers/upsampled/{wc.tag}/{wc.size}/{wc.direction}",
    log:
        "results/logs/classifiers/train_upsampled_half_{tag}_{size}_{direction}.log",
    benchmark:
        "results/benchmarks/classifiers/upsampled/{tag}/{size}/{direction}.tsv"
    threads: lambda wc: finetune_resources(wc.size)["cpus"]
    resources:
        gpu=lambda wc: finetune_resources(wc.size)["gpu"],
        mem_mb=lambda wc: size_resources(config, wc.size)["mem_mb"],
        runtime=lambda wc, attempt: size_resources(config, wc.size)["runtime"] * attempt,
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/train_spec.py"


rule train_encoder:
    input:
        shard=TRAIN_SHARD,
    output:
        model="results/classifiers/encoder/{size}/model/model.safetensors",
        summary="results/classifiers/encoder/{size}/summary.json",
    params:
        spec=lambda wc: canonical(encoder_spec(config, wc.size, TRAIN_SHARD)),
        checkpoint_dir=lambda wc: f"results/checkpoints/classifiers/encoder/{wc.size}",
    log:
        "results/logs/classifiers/train_encoder_{size}.log",
    benchmark:
        "results/benchmarks/classifiers/encoder/{size}.tsv"
    threads: lambda wc: finetune_resources(wc.size)["cpus"]
    resources:
        gpu=lambda wc: finetune_resources(wc.size)["gpu"],
        mem_mb=lambda wc: size_resources(config, wc.size)["mem_mb"],
        runtime=lambda wc, attempt: size_resources(config, wc.size)["runtime"] * attempt,
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/train_spec.py"


rule download_encoders:
    output:
        marker="resources/encoders/download.json",
    params:
        repos=downloaded_encoders(),
    log:
        "results/logs/classifiers/download_encoders.log",
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/download_hf.py"


rule judged_labels:
    input:
        docs=f"{LABELS}/docs/{{part}}.parquet",
        shard=f"{LABELS}/tokens/{{part}}",
        tokenizer="results/data/tokenizer/tokenizer.json",
    output:
        labels="results/classifiers/labels/{level}/{part}.npy",
    params:
        judge=canonical(config["judge"]),
    log:
        "results/logs/classifiers/judged_labels_{level}_{part}.log",
    threads: CLASSIFIER_RESOURCES["cpus"]
    resources:
        gpu=CLASSIFIER_RESOURCES["gpu"],
        mem_mb=CLASSIFIER_RESOURCES["mem_mb"],
        runtime=CLASSIFIER_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/judged_labels.py"


rule fit_classifier:
    input:
        docs=expand(f"{LABELS}/docs/{{part}}.parquet", part=("train", "val", "test")),
        shards=expand(f"{LABELS}/tokens/{{part}}", part=("train", "val", "test")),
        labels=lambda wc: training_label_files(wc.name),
        models=lambda wc: classifier_model_inputs(wc.name),
    output:
        classifier="results/classifiers/models/{name}/classifier/classifier.json",
        metrics="results/classifiers/models/{name}/metrics.json",
        test_scores="results/classifiers/models/{name}/test_scores.npy",
    params:
        spec=lambda wc: canonical(classifier_model(config, wc.name)),
        models=lambda wc: canonical(classifier_models(wc.name)),
        probe=canonical(CLASSIFIERS["probe"]),
        windowing=canonical(CLASSIFIERS["windowing"]),
        document_max_tokens=CLASSIFIERS["document_max_tokens"],
        judge=canonical(config["judge"]),
        seed=config["seed"],
    log:
        "results/logs/classifiers/fit_{name}.log",
    benchmark:
        "results/benchmarks/classifiers/fit/{name}.tsv"
    threads: CLASSIFIER_RESOURCES["cpus"]
    resources:
        gpu=CLASSIFIER_RESOURCES["gpu"],
        mem_mb=CLASSIFIER_RESOURCES["mem_mb"],
        runtime=CLASSIFIER_RESOURCES["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/fit_classifier.py"


rule summarize_classifiers:
    input:
        metrics=expand("results/classifiers/models/{name}/metrics.json", name=CLASSIFIER_NAMES),
        test_scores=expand("results/classifiers/models/{name}/test_scores.npy", name=CLASSIFIER_NAMES),
        label_quality=expand(f"{LABELS}/sae_labels/{{part}}/quality.json", part=("train", "val", "test")),
        selection=f"{LABELS}/latents.json",
        test_shard=f"{LABELS}/tokens/test",
        main_labels=main_test_labels(),
        tokenizer="results/data/tokenizer/tokenizer.json",
        train_shard=TRAIN_SHARD,
        annotation=main_filter_annotation(),
    output:
        table1_csv="results/analysis/classifiers/table1.csv",
        table1=report("results/analysis/classifiers/table1.html", caption="../report/table1.rst", category="1b. Labels and classifiers", labels={"table": "token classifiers (Table 1)"}),
        label_quality=report("results/analysis/classifiers/sae_label_quality.html", caption="../report/sae_labels.rst", category="1b. Labels and classifiers", labels={"table": "SAE labels against the truth"}),
        examples=report("results/analysis/classifiers/examples.html", caption="../report/examples.rst", category="1b. Labels and classifiers", labels={"table": "example documents (Figs 10, 11)"}),
        histogram=report("results/analysis/classifiers/forget_share.png", caption="../report/fig24.rst", category="1b. Labels and classifiers", labels={"figure": "forget share per document (Fig 24)"}),
        c2=report("results/analysis/classifiers/c2.html", caption="../report/c2.rst", category="1b. Labels and classifiers", labels={"table": "how much text is filtered (App C.2)"}),
        granularity=report("results/analysis/classifiers/granularity.png", caption="../report/fig25.rst", category="1b. Labels and classifiers", labels={"figure": "label granularity (Fig 25)"}),
        claims="results/analysis/classifiers/claims.csv",
    params:
        models=canonical(CLASSIFIERS["models"]),
        main=main_classifier(),
        seed=config["seed"],
    log:
        "results/logs/analysis/summarize_classifiers.log",
    benchmark:
        "results/benchmarks/analysis/summarize_classifiers.tsv"
    threads: ANALYSIS["cpus"]
    resources:
        gpu=ANALYSIS["gpu"],
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/summarize_classifiers.py"


if weak_to_strong_outputs():

    rule weak_to_strong:
        input:
            docs=expand(f"{LABELS}/docs/{{part}}.parquet", part=("train", "val", "test")),
            shards=expand(f"{LABELS}/tokens/{{part}}", part=("train", "val", "test")),
            labels=training_label_files(CLASSIFIERS["weak_to_strong"]["strong"]),
            metrics=[f"results/classifiers/models/{CLASSIFIERS['weak_to_strong'][side]}/metrics.json" for side in ("weak", "strong")],
            models=[f for side in ("weak", "strong") for f in classifier_model_inputs(CLASSIFIERS["weak_to_strong"][side])],
        output:
            figure=report("results/analysis/classifiers/weak_to_strong.png", caption="../report/fig15.rst", category="1b. Labels and classifiers", labels={"figure": "weak-to-strong (Fig 15)"}),
            html=report("results/analysis/classifiers/weak_to_strong.html", caption="../report/fig15.rst", category="1b. Labels and classifiers", labels={"table": "weak-to-strong (Fig 15)"}),
            csv="results/analysis/classifiers/weak_to_strong.csv",
            claims="results/analysis/classifiers/weak_to_strong_claims.csv",
        params:
            sides={side: canonical({"name": CLASSIFIERS["weak_to_strong"][side], "features": classifier_model(config, CLASSIFIERS["weak_to_strong"][side])["features"],
                                    "models": classifier_models(CLASSIFIERS["weak_to_strong"][side])}) for side in ("weak", "strong")},
            labels=classifier_model(config, CLASSIFIERS["weak_to_strong"]["strong"])["labels"],
            settings=canonical(CLASSIFIERS["weak_to_strong"]),
            probe=canonical(CLASSIFIERS["probe"]),
            windowing=canonical(CLASSIFIERS["windowing"]),
            document_max_tokens=CLASSIFIERS["document_max_tokens"],
            judge=canonical(config["judge"]),
            seed=config["seed"],
        log:
            "results/logs/classifiers/weak_to_strong.log",
        benchmark:
            "results/benchmarks/classifiers/weak_to_strong.tsv"
        threads: CLASSIFIER_RESOURCES["cpus"]
        resources:
            gpu=CLASSIFIER_RESOURCES["gpu"],
            mem_mb=CLASSIFIER_RESOURCES["mem_mb"],
            runtime=CLASSIFIER_RESOURCES["runtime"],
        conda:
            "../envs/tokenfilter.yaml"
        script:
            "../scripts/weak_to_strong.py"

# Annotation stage (DESIGN §3 annotate.smk): every training token gets a forget score from a filter
# source, scattered over contiguous token ranges of the corpus and gathered into one directory
# aligned exactly with the token shard.


scattergather:
    annotate=config["annotation"]["parts"],


rule annotate_part:
    input:
        unpack(filter_source_inputs),
        shard=TRAIN_SHARD,
    output:
        part=temp(directory("results/annotate_parts/{filter}/{scatteritem}")),
    params:
        spec=lambda wc: annotation_spec(wc.filter),
        seed=config["seed"],
    log:
        "results/logs/annotate/{filter}/{scatteritem}.log",
    benchmark:
        "results/benchmarks/annotate/{filter}/{scatteritem}.tsv"
    threads: resources_of("annotation")["cpus"]
    resources:
        gpu=resources_of("annotation")["gpu"],
        mem_mb=resources_of("annotation")["mem_mb"],
        runtime=resources_of("annotation")["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/annotate_part.py"


rule gather_annotation:
    input:
        shard=TRAIN_SHARD,
        parts=gather.annotate("results/annotate_parts/{{filter}}/{scatteritem}"),
    output:
        scores=directory("results/annotate/{filter}"),
    params:
        spec=lambda wc: annotation_spec(wc.filter),
    log:
        "results/logs/annotate/{filter}/gather.log",
    benchmark:
        "results/benchmarks/annotate/{filter}/gather.tsv"
    threads: resources_of("annotation")["cpus"]
    resources:
        gpu=resources_of("annotation")["gpu"],
        mem_mb=resources_of("annotation")["mem_mb"],
        runtime=resources_of("annotation")["runtime"],
    conda:
        "../envs/tokenfilter.yaml"
    script:
        "../scripts/gather_annotation.py"

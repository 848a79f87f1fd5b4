"""Forget-vs-retain token probes (every layer) of every model of one size (paper E10, Fig 8)."""

from tokenfilter.evaluate.capabilities import token_probes
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
probes = sm.params.probes
results = token_probes(sm.params.models, sm.input.shard, sm.output.json, probes["tokens"], probes["test_fraction"],
                       probes["C"], sm.params.seed, threads=sm.config["training"]["threads"])
for result in results:
    log.info("%s: best layer %d, F1 %.3f", result["model"], result["best"]["layer"], result["best"]["f1"])

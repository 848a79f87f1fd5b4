"""Within-forget-domain sub-domain probes of every arm at one size (paper E11, Fig 21)."""

from tokenfilter.evaluate.capabilities import subdomain_probes
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
probes = sm.params.probes
results = subdomain_probes(sm.params.models, sm.input.forget, sm.input.forget_corpus, sm.input.retain, sm.output.json,
                           probes["subdomain_level"], probes["max_docs"], probes["C"], sm.params.seed,
                           threads=sm.config["training"]["threads"])
for result in results:
    log.info("%s: %s", result["model"], {t: round(v["mean_accuracy"], 3) for t, v in result["tasks"].items()})

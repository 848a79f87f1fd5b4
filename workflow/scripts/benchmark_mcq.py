"""Zero-shot MCQ accuracy of every model of one format (one lm-eval start-up for all of them)."""

from tokenfilter.evaluate.capabilities import run_benchmarks
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
table = run_benchmarks(sm.params.models, sm.input.tokenizer, sm.input.tasks, sm.wildcards.format, sm.params.tasks,
                       sm.params.batch_size, sm.params.limit, sm.output.csv, threads=sm.config["training"]["threads"])
log.info("\n%s", table[["model", "set", "acc", "acc_stderr", "n"]].to_string())

"""The learning-rate sweep: Table 2 analogue, loss vs learning rate, the µP transfer claim."""

from tokenfilter.analysis.lr_sweep import write_lr_sweep
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
claims = write_lr_sweep(sm.wildcards.series, sm.input.table, sm.input.main or None, sm.params.variants,
                        sm.params.ladder, sm.params.default_mup, dict(sm.output.items()))
log.info("\n%s", claims[["claim", "verdict"]].to_string())

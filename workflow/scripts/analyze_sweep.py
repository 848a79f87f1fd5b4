"""Ablation sweeps (label noise, thresholds across sizes, delay): table, Figs 12/13/22/23, claims."""

from tokenfilter.analysis.sweeps import write_sweep
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
claims = write_sweep(sm.params.kind, sm.wildcards.series, sm.input.table, sm.input.slowdowns, sm.input.main,
                     list(sm.input.summaries), sm.params.variants, dict(sm.output.items()))
log.info("\n%s", claims[["claim", "verdict"]].to_string())

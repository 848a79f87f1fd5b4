"""Collect a series' evaluation results into one tidy loss table."""

from tokenfilter.logs import setup_job_logging
from tokenfilter.analysis.tables import loss_table
from tokenfilter.io import atomic_open

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
table = loss_table(sm.input.losses, sm.params.series)
with atomic_open(sm.output.table, "w", newline="") as f:
    table.to_csv(f, index=False)
log.info("%d rows", len(table))

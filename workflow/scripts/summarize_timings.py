"""Wall and CPU time per stage and per rung, from the jobs' benchmark files."""

from tokenfilter.analysis.timings import timings_table
from tokenfilter.logs import setup_job_logging
from tokenfilter.report.tables import write_table

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
table = timings_table(list(sm.input.benchmarks))
write_table(table, csv_path=sm.output.csv, html_path=sm.output.html,
            title="Run time per stage and rung (from the jobs' benchmark files)",
            note="wall: seconds a job ran; cpu: its CPU seconds (user + system); core-minutes sum the CPU time.")
log.info("\n%s", table.to_string())

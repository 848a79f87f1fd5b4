"""The quality of every filtered run's filter against the ground truth (where it is known)."""

from tokenfilter.analysis.tables import filter_quality_table
from tokenfilter.logs import setup_job_logging
from tokenfilter.report.tables import write_table

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
table = filter_quality_table(sm.input.summaries)
write_table(table, csv_path=sm.output.csv, html_path=sm.output.html,
            title="The filter each run trained with, measured against the ground truth",
            note="Token arms: every token's flag (after label noise) against its ground-truth label, end-of-text "
                 "excluded. Document arm: the dropped documents against the documents' truth labels, and the "
                 "share of the dropped tokens that are forget text (token precision) and of all forget text "
                 "dropped (token recall). Empty where the corpus has no ground truth.")
log.info("\n%s", table.to_string())

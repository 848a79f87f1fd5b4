"""The claims scorecard, computed from the main and threshold series' results."""

from tokenfilter.logs import setup_job_logging
from tokenfilter.tables import write_scorecard

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
card = write_scorecard(sm.input.get("main_losses"), sm.input.get("thresholds_losses"), sm.params.fit_sizes, sm.params.fit_form,
                       csv_path=sm.output.csv, html_path=sm.output.html)
log.info("\n%s", card[["claim", "verdict"]].to_string())

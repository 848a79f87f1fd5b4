"""The claims scorecard, computed from the main and threshold series' results."""

from tokenfilter.logs import setup_job_logging
from tokenfilter.tables import write_findings, write_scorecard

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
card = write_scorecard(sm.input.get("main_losses"), sm.input.get("thresholds_losses"), sm.params.fit_sizes, sm.params.fit_form,
                       csv_path=sm.output.csv, html_path=sm.output.html)
write_findings(sm.input.get("main_losses"), sm.input.get("ablation_losses"), card, sm.params.fit_sizes, sm.params.fit_form,
               sm.params.main_filter, sm.params.ablation_filter, sm.params.filter_specs, sm.output.findings)
log.info("\n%s", card[["claim", "verdict"]].to_string())

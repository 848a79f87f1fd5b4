"""The claims scorecard and the findings page, from the analysis tables of each kind of series."""

from tokenfilter.analysis.tables import write_findings, write_scorecard
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
tables = sm.params.tables  # {kind: {series: {table: path}}}, every path an input of this job
card = write_scorecard(tables["ladder"], {s: t["pareto"] for s, t in tables["thresholds"].items()},
                       sm.params.fit_form, csv_path=sm.output.csv, html_path=sm.output.html,
                       stage_claims=list(sm.input.stage_claims))
write_findings(tables["ladder"], {s: t["losses"] for s, t in tables["filter"].items()}, card, sm.params.fit_form,
               sm.params.main_filter, sm.params.filter_names, sm.params.filter_specs, sm.output.findings,
               filter_quality_path=sm.input.filter_quality)
log.info("\n%s", card[["claim", "verdict"]].to_string())

"""Classifiers as filters: frontier gain per classifier and against its AUROC (paper Figs 14, 27, 28)."""

from tokenfilter.analysis.classifier_filters import write_classifier_filters
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
claims = write_classifier_filters(sm.input.table, sm.input.main, sm.input.table1 or None, sm.params.filters,
                                  sm.wildcards.series, dict(sm.output.items()))
log.info("\n%s", claims[["claim", "verdict"]].to_string())

"""Fits, slowdowns and the figures every series gets."""

import pandas as pd

from tokenfilter.analysis.tables import series_analysis
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
losses = pd.read_csv(sm.input.table)
series_analysis(losses, sm.params.fit_sizes, sm.params.fit_form, dict(sm.output.items()))

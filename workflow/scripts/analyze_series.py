"""Fits, slowdowns and figures of one series."""

import pandas as pd

from tokenfilter.logs import setup_job_logging
from tokenfilter.tables import series_analysis

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
losses = pd.read_csv(sm.input.table)
series_analysis(losses, sm.params.fit_sizes, sm.params.fit_form, dict(sm.output.items()))

"""Compute-loss curves of a ladder series with its baseline fit (paper Fig 16)."""

import pandas as pd

from tokenfilter.analysis.tables import compute_loss_figure
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
compute_loss_figure(pd.read_csv(sm.input.table), pd.read_csv(sm.input.fits), sm.params.fit_form, sm.output.figure)

"""Loss-matched compute slowdown vs compute of a ladder series (paper Figs 1, 19)."""

import pandas as pd

from tokenfilter.analysis.plots import plot_slowdown
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
plot_slowdown(pd.read_csv(sm.input.slowdowns), sm.output.figure)

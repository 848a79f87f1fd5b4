"""A filter series against the main ladder: each arm with both filters."""

import pandas as pd

from tokenfilter.analysis.tables import filter_comparison_outputs
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
filter_comparison_outputs(pd.read_csv(sm.input.main), pd.read_csv(sm.input.table), sm.params.main_filter,
                          sm.params.series_filter, sm.output.table, sm.output.figure)

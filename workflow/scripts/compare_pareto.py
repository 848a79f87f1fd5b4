"""Token vs document filtering across thresholds: the Pareto table and figure (paper Fig 3)."""

import pandas as pd

from tokenfilter.analysis.tables import pareto_outputs
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
pareto_outputs(pd.read_csv(sm.input.table), sm.output.points, sm.output.figure)

"""Fetch the paper's benchmarks once, in each dataset's published format (run where the network is)."""

from tokenfilter.evaluate.downloads import download_published
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
log.info("downloaded %s", download_published(dict(sm.params.files)))

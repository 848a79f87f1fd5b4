"""Gather the scored parts of the training shard into one annotation aligned with it."""

from tokenfilter.filtering.annotation import gather_parts
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
meta = gather_parts(list(sm.input.parts), sm.input.shard, sm.params.spec, sm.output.scores)
log.info("%s", meta)

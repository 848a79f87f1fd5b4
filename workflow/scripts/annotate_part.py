"""Forget scores of one part (a contiguous token range) of the training shard, from one filter source."""

from tokenfilter.filtering.annotation import annotate_part
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
index, n_parts = (int(x) for x in sm.wildcards.scatteritem.split("-of-"))
meta = annotate_part(sm.params.spec, sm.input.shard, index - 1, n_parts, sm.params.seed, sm.output.part)
log.info("%s", meta)

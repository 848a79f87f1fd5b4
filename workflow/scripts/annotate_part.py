"""Forget scores of one part (a contiguous token range) of the training shard, from one filter source."""

from tokenfilter.filtering.annotation import annotate_part
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
index, n_parts = (int(x) for x in sm.wildcards.scatteritem.split("-of-"))
# A trained filter source's files (a classifier directory; the SAE labeller) come in as named inputs.
sources = {name: str(getattr(sm.input, name)) for name in sm.input.keys() if name != "shard"}
meta = annotate_part(sm.params.spec, sm.input.shard, index - 1, n_parts, sm.params.seed, sm.output.part, sources)
log.info("%s", meta)

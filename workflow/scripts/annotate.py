"""Per-token forget scores of the training shard from one filter source."""

from tokenfilter.annotate import annotate_truth
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
spec = sm.params.spec
if spec["kind"] != "truth":
    raise ValueError(f"filter kind {spec['kind']!r} has no annotator yet")
meta = annotate_truth(sm.input.shard, sm.output.scores, spec["context_window"])
log.info("%s", meta)

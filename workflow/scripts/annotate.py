"""Per-token forget scores of the training shard from one filter source."""

from tokenfilter.annotate import annotate_truth
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
spec = sm.params.spec
if spec["kind"] != "truth":
    raise NotImplementedError(
        f"filter {sm.wildcards.filter!r} is of kind {spec['kind']!r}: trained-classifier filters come with the "
        "classifier stage, which this version of the workflow does not have; only kind 'truth' (the built-in "
        "world's ground truth) can annotate a corpus today"
    )
meta = annotate_truth(sm.input.shard, sm.output.scores, spec["context_window"], spec["error_rate"], sm.params.seed)
log.info("%s", meta)

"""Read the paper's post-training sets from local copies into the capability stage's item files."""

from tokenfilter.io import write_json
from tokenfilter.logs import setup_job_logging
from tokenfilter.posttrain.sources import write_posttrain_sets

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
counts = write_posttrain_sets(sm.params.data, {name: sm.output[name] for name in
                                               ("instruct", "chat", "refusal", "free_response")})
write_json(sm.output.summary, counts)
log.info("%s", counts)

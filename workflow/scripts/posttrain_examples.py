"""Tokenised examples of instruction tuning, chat tuning and refusal training (one held-out split)."""

from tokenfilter.evaluate.capabilities import write_posttrain_sets
from tokenfilter.io import write_json
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
summary = write_posttrain_sets({k: sm.input[k] for k in ("instruct", "chat", "refusal")}, sm.input.tokenizer,
                               dict(sm.output.items()), sm.params.variants, sm.params.split_seed,
                               sm.params.held_out_fraction)
write_json(sm.output.summary, summary)
log.info("%s", summary)

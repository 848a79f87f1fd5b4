"""Sentence or document labels from the judge, inherited by their tokens (paper §6.3, E16)."""

from tokenfilter.classify.pipeline import judged_labels
from tokenfilter.data.shards import TokenShard
from tokenfilter.data.tokenizer import load_tokenizer
from tokenfilter.io import save_array
from tokenfilter.judge import make_judge
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
labels = judged_labels(sm.input.docs, TokenShard.open(sm.input.shard), load_tokenizer(sm.input.tokenizer),
                       sm.wildcards.level, make_judge(sm.config))
save_array(sm.output.labels, labels)
log.info("%s labels: %.3f of tokens forget", sm.wildcards.level, labels.mean())

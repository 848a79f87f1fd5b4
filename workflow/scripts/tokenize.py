"""Tokenise one corpus split (or one eval text set) into a memory-mapped token shard."""

from tokenfilter.logs import setup_job_logging
from tokenfilter.data.shards import tokenize_corpus
from tokenfilter.data.tokenizer import load_tokenizer

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
meta = tokenize_corpus(
    sm.input.corpus,
    load_tokenizer(sm.input.tokenizer),
    sm.output.shard,
    split=sm.params.split,
    max_doc_tokens=sm.params.max_doc_tokens,
)
log.info("%d documents, %d tokens (%d truncated)", meta["n_docs"], meta["n_tokens"], meta["n_truncated"])

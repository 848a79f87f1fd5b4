"""Write the forget-upsampled biLM training shard (paper Table 1: 'upsample PubMed')."""

from tokenfilter.classify.bilm import upsample_shard
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
meta = upsample_shard(sm.input.shard, sm.input.corpus, sm.output.shard, sm.params.forget_share, sm.params.seed)
log.info("%d documents, %d tokens; forget-domain share of tokens %.3f -> %.3f", meta["n_docs"], meta["n_tokens"],
         meta["forget_domain_share"]["before"], meta["forget_domain_share"]["after"])

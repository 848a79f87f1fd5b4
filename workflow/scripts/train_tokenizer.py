"""Train the BPE tokenizer on the corpus, or load a named one, and save it."""

from itertools import islice

from tokenfilter.data.corpus import iter_corpus
from tokenfilter.logs import setup_job_logging
from tokenfilter.data.tokenizer import build_tokenizer

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
cfg = sm.params.tokenizer
texts = (row["text"] for row in islice(iter_corpus(sm.input.corpus, ["text"], split="train"), cfg["train_max_docs"]))
tokenizer = build_tokenizer(cfg["kind"], texts=texts, vocab_size=cfg["vocab_size"], name=cfg["name"])
tokenizer.save(sm.output.tokenizer)
log.info("tokenizer with %d ids; special ids %s", tokenizer.vocab_size, tokenizer.special_ids)

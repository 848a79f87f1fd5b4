"""Draw the classifier's documents (train / val / test) from the corpus."""

from tokenfilter.label.pipeline import select_documents
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
counts = select_documents(sm.input.corpus, {part: getattr(sm.output, part) for part in ("train", "val", "test")},
                          sm.params.n_docs, sm.params.seed)
log.info("documents per part: %s", counts)

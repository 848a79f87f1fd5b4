"""Ingest a real corpus (Hugging Face dataset or local files) into the corpus format."""

from tokenfilter.logs import setup_job_logging
from tokenfilter.data.sources import ingest

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
summary = ingest(
    sm.params.source,
    sm.params.spec,
    sm.output.corpus,
    val_fraction=sm.params.val_fraction,
    seed=sm.params.seed,
    on_bad_record=sm.params.on_bad_record,
    summary_path=sm.output.summary,
)
log.info("ingested %d documents (skipped: %s)", summary["n_docs"], summary["skipped"])

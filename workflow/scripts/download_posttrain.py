"""Fetch the paper's post-training sets (Table 3 mix, smol-smoltalk, HealthSearchQA, Alpaca) once."""

from tokenfilter.logs import setup_job_logging
from tokenfilter.posttrain.sources import download_posttrain_set

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
for name, spec in sm.params.sets.items():
    files = download_posttrain_set(spec["download"], spec["path"])
    log.info("%s: %d file(s) into %s", name, len(files), spec["path"])

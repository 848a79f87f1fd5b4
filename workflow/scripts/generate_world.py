"""Generate the built-in synthetic world: pretraining corpus and held-out sets."""

from tokenfilter.logs import setup_job_logging
from tokenfilter.data.synthetic.build import SyntheticParams, generate_synthetic

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
summary = generate_synthetic(
    SyntheticParams.from_config(sm.params.synthetic),
    seed=sm.params.seed,
    val_fraction=sm.params.val_fraction,
    out=dict(sm.output.items()),
)
log.info("generated %d documents; derived sets %s", summary["n_docs"], summary["derived_counts"])

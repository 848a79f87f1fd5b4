"""Train a TopK SAE (sae-lens) on the reference LM's residual stream after one block."""

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # sae-lens draws progress bars into the job log

from tokenfilter.io import write_json
from tokenfilter.label.pipeline import load_reference, reference_layer, train_reference_sae
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
reference = load_reference(**sm.params.reference)
layer = reference_layer(sm.params.layer, reference.n_layer)
summary = train_reference_sae(reference, sm.input.docs, layer, sm.params.sae, sm.output.sae.rsplit("/", 1)[0],
                              sm.params.seed)
write_json(sm.output.summary, summary)
log.info("SAE: %s", summary)

"""Fill the local Hugging Face cache with a model's files, or an SAE release's, once (login node);
compute jobs then load them with HF_HUB_OFFLINE=1."""

from tokenfilter.io import write_json
from tokenfilter.label.download import download_model, download_sae
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
if "repos" in sm.params.keys():
    record = {"models": [download_model(name) for name in sm.params.repos]}
else:
    release, sae_id = sm.params.sae
    record = {"sae": download_sae(release, sae_id)}
write_json(sm.output.marker, record)
log.info("%s", record)

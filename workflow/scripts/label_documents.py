"""SAE token labels of one part of the classifier's documents, in the pretraining tokenizer's tokens."""

from pathlib import Path

from tokenfilter.data.tokenizer import load_tokenizer
from tokenfilter.label.pipeline import label_documents, load_labeller
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
reference, sae, layer, latents, stats, rule = load_labeller(sm.input.labeller)
labeller = Path(sm.input.labeller)
result = label_documents(reference, sae, labeller.with_name("latents.json"), labeller.with_name("latent_stats.npz"),
                         sm.input.docs, sm.input.shard, load_tokenizer(sm.input.pretraining_tokenizer),
                         k_sd=rule["k_sd"], min_latents=rule["min_latents"], expand=rule["expand"],
                         out_dir=Path(sm.output.labels).parent)
log.info("%s", result)

"""Judge every SAE latent from its top-activating contexts and keep the forget-domain ones."""

from tokenfilter.judge import make_judge
from tokenfilter.label.pipeline import load_reference, reference_layer, select_latents, write_labeller
from tokenfilter.label.sae import load_sae
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
reference = load_reference(**sm.params.reference)
sae = load_sae(sm.params.sae["path"], sm.params.sae["sae_id"])
layer = reference_layer(sm.params.layer, reference.n_layer)
settings = sm.params.latents
summary = select_latents(reference, sae, sm.input.docs, layer, make_judge(sm.config), n_top=settings["n_top"],
                         min_quality=settings["min_quality"], out_json=sm.output.selection, stats_path=sm.output.stats,
                         limit=settings["max_docs"])
write_labeller(sm.output.labeller, sm.params.reference, sm.params.sae, sm.output.selection, sm.output.stats,
               sm.params.rule)
log.info("%d of %d latents judged forget, %d selected", summary["n_judged_forget"], summary["d_sae"],
         summary["n_selected"])

"""Sample answers of many chat-format models to the same questions (free response or refusal)."""

from tokenfilter.evaluate.capabilities import generate_for_models
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
sampling = sm.params.sampling
for group, models in sm.params.models.items():
    summary = generate_for_models(models, sm.params.outputs[group], sm.input.tokenizer, sm.input.questions_from,
                                  sm.output.questions, sampling["limit"],
                                  [sm.params.seed + k for k in range(sampling["seeds"])], sampling["temperature"],
                                  sampling["max_new_tokens"], sampling["batch_size"],
                                  threads=sm.config["training"]["threads"])
    log.info("%s: %s", group, summary)

"""Judge every chat model's free-response answers (correct, relevant, coherent) and summarise them."""

from tokenfilter.evaluate.capabilities import judge_free_response
from tokenfilter.judge import make_judge
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
summary = judge_free_response(sm.params.generations, sm.params.judged, make_judge(sm.config), sm.output.summary,
                              sm.output.samples, sm.params.samples, sm.params.seed)
log.info("\n%s", summary[["size", "arm", "kind", "criterion", "rate"]].to_string())

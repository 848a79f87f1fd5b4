"""Refusal verdicts of every refusal-trained model (prose: the judge; token: the <|refusal|> id)."""

from tokenfilter.data.tokenizer import load_tokenizer
from tokenfilter.evaluate.capabilities import judge_refusals
from tokenfilter.judge import make_judge
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
judge = make_judge(sm.config) if "prose" in sm.params.generations else None
summary = judge_refusals(sm.params.generations, sm.params.verdicts, judge,
                         load_tokenizer(sm.input.tokenizer).special_ids["refusal"], sm.output.summary)
log.info("\n%s", summary[["variant", "size", "arm", "kind", "rate", "replicate_rates"]].to_string())

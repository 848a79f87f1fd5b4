"""lm-eval task YAMLs of the configured MCQ sets in both formats, each checked to resolve."""

from tokenfilter import DOMAINS
from tokenfilter.evaluate.capabilities import write_tasks
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
mcq = dict(zip(DOMAINS, sm.input.mcq)) if sm.input.mcq else None
summary = write_tasks(sm.params.tasks, sm.output.tasks, mcq_files=mcq, local=sm.params.local,
                      medmcqa_cop_base=sm.params.medmcqa_cop_base)
log.info("wrote %d tasks: %s", len(summary["tasks"]), summary["tasks"])

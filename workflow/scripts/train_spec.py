"""Run one training spec (RMU, an attacker's finetuning, post-training) in this process."""

from pathlib import Path

from tokenfilter.config.experiments import runtime_settings
from tokenfilter.logs import setup_job_logging
from tokenfilter.train.__main__ import run_spec

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
# Knobs that do not change the model are read here, not passed as params (a change must not retrain).
spec = dict(sm.params.spec, **runtime_settings(sm.config), out_dir=str(Path(sm.output.summary).parent),
            checkpoint_dir=sm.params.checkpoint_dir)
summary = run_spec(spec)
log.info("finished %s: %d steps, %d tokens, %.0f s", summary["run"], summary["steps"], summary["tokens"],
         summary["wall_time_s"])

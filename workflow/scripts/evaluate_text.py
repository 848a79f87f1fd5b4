"""Text losses of one run's final model and snapshots on every held-out text set."""

from pathlib import Path

from tokenfilter.evaluate.text import evaluate_run
from tokenfilter.io import write_json
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
result = evaluate_run(
    model_dir=Path(sm.input.model).parent,
    snapshots_dir=sm.input.snapshots if sm.params.snapshots else None,
    summary_path=sm.input.summary,
    train_log_path=sm.input.train_log,
    eval_shards=dict(zip(sm.params.domains, sm.input.eval_shards)),
    max_tokens=sm.params.max_tokens,
    snapshot_tokens=sm.params.snapshot_tokens,
    batch_size=sm.params.batch_size,
    threads=sm.config["training"]["threads"],  # not a param: a thread count must not rerun evaluation
)
write_json(sm.output.losses, result)
log.info("%s: %s", result["run"], {k: round(v["loss"], 4) for k, v in result["evals"][-1]["losses"].items()})

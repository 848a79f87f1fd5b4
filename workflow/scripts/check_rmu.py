"""Measure an RMU model against its bar: held-out forget and retain-far loss before and after."""

from pathlib import Path

from tokenfilter.io import write_json
from tokenfilter.logs import setup_job_logging
from tokenfilter.robustness.rmu import rmu_report

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
before, after = (str(Path(path).parent) for path in (sm.input.before, sm.input.after))  # the model directories
report = rmu_report(before, after, sm.input.forget, sm.input.retain,
                    max_tokens=sm.params.max_tokens, batch_size=sm.params.batch_size,
                    min_forget_increase=sm.params.min_forget_increase,
                    max_retain_increase=sm.params.max_retain_increase)
write_json(sm.output.report, report.as_dict())
log.info("RMU %s: forget +%.3f nats, retain-far %+.3f nats: %s", after, report.forget_increase,
         report.retain_increase, "passes its bar" if report.passed else "misses its bar")

"""Tables, figures and claims of the capability stage (Figs 5, 6, 8, 9, 17, 18, 20, 21; Table 5)."""

from tokenfilter.evaluate.report import write_report
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
claims = write_report(sm.input.benchmarks, sm.input.free_response, sm.input.refusal, sm.input.probes,
                      sm.input.subdomains, sm.input.filter_quality, sm.params.main_series, sm.params.sizes,
                      dict(sm.output.items()))
log.info("\n%s", claims[["claim", "verdict"]].to_string())

"""Held-out text (eval sets, the attacker's corpus) against the training split: sentence and 8-gram
overlap; the job fails when a set's sentence overlap exceeds the configured share."""

import pandas as pd

from tokenfilter.data.overlap import heldout_overlap
from tokenfilter.io import write_json
from tokenfilter.logs import setup_job_logging
from tokenfilter.report.tables import write_table

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
paths = list(sm.input.eval) + list(sm.input.attack)
results = heldout_overlap(sm.input.corpus, dict(zip(sm.params.names, paths)), sm.params.max_overlap)
write_json(sm.output.json, {r.name: r.as_dict() for r in results})
write_table(pd.DataFrame([r.as_dict() for r in results]), html_path=sm.output.html,
            title="Held-out text against the training split (shares of sentences and word 8-grams seen in training)",
            note=f"The run stops when a held-out set's sentence overlap exceeds {sm.params.max_overlap:.1%} "
                 "(config data.max_heldout_overlap).")
log.info("%s", [r.as_dict() for r in results])

"""Weak-to-strong generalisation of token and document probes (paper Fig 15, E17)."""

from tokenfilter.classify.pipeline import PARTS, LabelledData, training_labels, weak_to_strong_job
from tokenfilter.judge import make_judge
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
shards = dict(zip(PARTS, sm.input.shards))
labels = training_labels(sm.params.labels, shards, sm.input.labels)
data = LabelledData.load(shards, labels, dict(zip(PARTS, sm.input.docs)))
sides = {side: dict(sm.params.sides[side], metrics=path) for side, path in zip(("weak", "strong"), sm.input.metrics)}
claims = weak_to_strong_job(data, sides["weak"], sides["strong"], sm.params.windowing, sm.params.settings,
                            sm.params.document_max_tokens, make_judge(sm.config), sm.params.probe,
                            dict(sm.output.items()), seed=sm.params.seed)
log.info("\n%s", claims[["claim", "verdict"]].to_string())

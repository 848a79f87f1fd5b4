"""Weak-to-strong generalisation of token and document probes (paper Fig 15, E17)."""

import numpy as np

from tokenfilter.classify.pipeline import PARTS, LabelledData, weak_to_strong_job
from tokenfilter.data.shards import TokenShard
from tokenfilter.judge import make_judge
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
shards = dict(zip(PARTS, sm.input.shards))
if sm.params.labels == "truth":
    labels = {part: np.asarray(TokenShard.open(shards[part]).labels) for part in PARTS}
else:
    labels = {part: np.load(path) for part, path in zip(PARTS, sm.input.labels)}
data = LabelledData.load(shards, labels, dict(zip(PARTS, sm.input.docs)))
sides = {side: dict(sm.params.sides[side], metrics=path) for side, path in zip(("weak", "strong"), sm.input.metrics)}
claims = weak_to_strong_job(data, sides["weak"], sides["strong"], sm.params.windowing, sm.params.settings,
                            sm.params.document_max_tokens, make_judge(sm.config), sm.params.probe,
                            dict(sm.output.items()), seed=sm.params.seed)
log.info("\n%s", claims[["claim", "verdict"]].to_string())

"""Fit one classifier of Table 1 (token probe, and document probe) and measure it."""

from pathlib import Path


from tokenfilter.classify.pipeline import PARTS, LabelledData, fit_classifier, training_labels
from tokenfilter.judge import make_judge
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
spec = sm.params.spec
shards = dict(zip(PARTS, sm.input.shards))
labels = training_labels(spec["labels"], shards, sm.input.labels)
data = LabelledData.load(shards, labels, dict(zip(PARTS, sm.input.docs)))
document = {"max_tokens": sm.params.document_max_tokens} if spec["document_probe"] and spec["features"] != "context_free" else None
metrics = fit_classifier(spec["features"], sm.params.models, data, Path(sm.output.classifier).parent, sm.output.metrics,
                         layers=spec["layers"], probe=sm.params.probe, windowing=sm.params.windowing, document=document,
                         judge=make_judge(sm.config) if document else None, seed=sm.params.seed)
if metrics.get("unavailable"):
    log.warning("not fitted: %s", metrics["unavailable"])
else:
    log.info("test F1 %.3f (vs truth %s), layer %s", metrics["test"]["f1"],
             "n/a" if metrics["test_truth"] is None else f"{metrics['test_truth']['f1']:.3f}", metrics.get("layer"))

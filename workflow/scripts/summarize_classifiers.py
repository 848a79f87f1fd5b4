"""Table 1, SAE-label quality, example pages, Figs 24 and 25, App C.2 and the classifier claims."""

from pathlib import Path

from tokenfilter.classify.report import write_classifier_report
from tokenfilter.logs import setup_job_logging

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
names = [Path(path).parent.name for path in sm.input.metrics]  # results/classifiers/models/<name>/metrics.json
parts = ("train", "val", "test")
claims = write_classifier_report(
    models=sm.params.models, main=sm.params.main, metrics=dict(zip(names, sm.input.metrics)),
    test_scores=dict(zip(names, sm.input.test_scores)), label_quality=dict(zip(parts, sm.input.label_quality)),
    selection=sm.input.selection, test_shard=sm.input.test_shard,
    main_test_labels=sm.input.main_labels[0] if sm.input.main_labels else None, tokenizer_path=sm.input.tokenizer,
    train_shard=sm.input.train_shard, annotation=sm.input.annotation[0] if sm.input.annotation else None,
    out=dict(sm.output.items()), seed=sm.params.seed)
log.info("\n%s", claims[["claim", "verdict"]].to_string())

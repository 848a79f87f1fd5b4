"""Corpus statistics against the paper's App C.2 figures, and the forget-share histogram."""

from tokenfilter.io import read_json, write_json
from tokenfilter.logs import setup_job_logging
from tokenfilter.report.tables import write_table
from tokenfilter.data.shards import TokenShard
from tokenfilter.data.stats import corpus_stats, plot_forget_histogram, stats_table

sm = snakemake  # noqa: F821 (injected by Snakemake)
log = setup_job_logging(sm.log[0])
shard = TokenShard.open(sm.input.shard)
stats = corpus_stats(shard, sm.params.doc_label_min_forget, read_json(sm.input.overlap))
write_json(sm.output.json, stats)
write_table(stats_table(stats), csv_path=sm.output.csv, html_path=sm.output.html,
            title="Built-in corpus statistics against the paper's App C.2")
plot_forget_histogram(shard, sm.output.histogram)
log.info("%s", stats)

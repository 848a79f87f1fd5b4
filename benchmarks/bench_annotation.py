"""Cost of the filter pipeline: annotation, SAE labelling and probe fitting, measured and computed.

Measured (from a finished run's ``benchmark:`` files and shard sizes, so the numbers are the
workflow's own jobs, side by side in one run):

- annotation throughput of every filter source (training tokens scored per second of job time,
  all parts of the scattered annotation together);
- SAE labelling throughput (reference LM + SAE + token rule + retokenisation, per label part);
- probe fitting time per classifier (features of the classifier documents, layer sweep, probes).

Computed (one frozen formula): annotation FLOPs as a share of each ladder rung's pretraining
FLOPs. Scoring a token with a biLM costs a forward pass of both halves, 2·N_half FLOPs each, times
the window overlap (window / stride = 2 by default); pretraining costs 6·N·D. The annotation of a
corpus is paid once for every rung, so the table gives it against each rung's own training tokens
D = tokens_per_param · N (the tokens that rung reads), for the run's config and for the paper's
(224M biLM per direction, Table 2 ladder).

    .venv/bin/python benchmarks/bench_annotation.py --results results --json-out bench_annotation.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

OVERLAP = 2.0  # window / stride of the classifier's grid (classifiers.windowing default)
PAPER_BILM_HALF = 224e6
PAPER_LADDER = {"61M": 61e6, "113M": 113e6, "224M": 224e6, "521M": 521e6, "1030M": 1030e6, "1816M": 1816e6}


def seconds(path: Path) -> float:
    with open(path) as f:
        return float(next(csv.DictReader(f, delimiter="\t"))["s"])


def n_tokens(shard: Path) -> int:
    return int(json.loads((shard / "meta.json").read_text())["n_tokens"])


def annotation_share(classifier_half_params: float, ladder: dict[str, float], tokens_per_param: float = 20.0
                     ) -> dict[str, float]:
    """Annotation FLOPs of one rung's training tokens as a percentage of that rung's pretraining FLOPs."""
    per_token = OVERLAP * 2 * 2 * classifier_half_params
    return {size: 100.0 * per_token / (6 * n) for size, n in ladder.items()}


def measured(results: Path) -> dict:
    bench = results / "benchmarks"
    train_tokens = n_tokens(results / "data/tokens/train")
    out: dict = {"train_tokens": train_tokens, "annotation": {}, "labelling": {}, "probes": {}}
    for folder in sorted((bench / "annotate").glob("*")):
        parts = [p for p in folder.glob("*-of-*.tsv")]
        if parts:
            total = sum(seconds(p) for p in parts)
            out["annotation"][folder.name] = {"job_s": total, "tokens_per_s": train_tokens / total}
    for part in ("train", "val", "test"):
        path = bench / f"labels/label_documents_{part}.tsv"
        shard = results / f"labels/tokens/{part}"
        if path.exists() and shard.exists():
            out["labelling"][part] = {"job_s": seconds(path), "tokens_per_s": n_tokens(shard) / seconds(path)}
    for path in sorted((bench / "classifiers/fit").glob("*.tsv")):
        out["probes"][path.stem] = {"job_s": seconds(path)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    from tokenfilter.config import load_config
    from tokenfilter.model.gpt import paper_parameter_count

    config = load_config(args.config)
    vocab = json.loads((args.results / "data/tokens/train/meta.json").read_text())["vocab_size"]
    ladder = {size: paper_parameter_count(vocab, s["n_layer"], s["n_embd"]) for size, s in config["ladder"].items()}
    main_filter = config["filters"][config["filtering"]["filter"]]
    half = ladder[config["classifiers"]["models"][main_filter["classifier"]]["size"]]
    report = {"measured": measured(args.results),
              "annotation_pct_of_pretraining": {"this_config": annotation_share(half, ladder,
                                                                               config["training"]["tokens_per_param"]),
                                                "paper": annotation_share(PAPER_BILM_HALF, PAPER_LADDER)}}
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Corpus statistics, compared with the paper's App C.2 figures for FineWeb-Edu."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from tokenfilter.data.shards import TokenShard

# paper App C.2 / Fig 24 (FineWeb-Edu, SAE labels): share of documents with no medical token,
# share with more than 10% medical tokens, share flagged by the document classifier, and the
# medical share of tokens inside flagged documents.
PAPER_STATS = {
    "docs_without_forget_pct": 23.0,
    "docs_over_10pct_forget_pct": 37.0,
    "docs_flagged_pct": 18.0,
    "forget_share_in_flagged_docs_pct": 50.0,
}


def forget_fractions(shard: TokenShard) -> np.ndarray:
    """Per-document share of forget tokens (the end-of-text token is not counted as text)."""
    text_tokens = np.maximum(shard.docs["length"] - 1, 1)
    return shard.docs["n_forget"] / text_tokens


def corpus_stats(shard: TokenShard, doc_label_min_forget: float, overlap: dict | None = None) -> dict:
    """Statistics of a labelled shard; documents at ``doc_label_min_forget`` count as flagged.

    ``overlap`` (the held-out overlap check's result) adds, per held-out set, the share of its
    sentences and word 8-grams that occur in the training split."""
    if not shard.meta["has_labels"]:
        raise ValueError(f"{shard.directory}: no ground-truth labels; corpus statistics need them")
    fractions = forget_fractions(shard)
    lengths = shard.docs["length"] - 1
    flagged = fractions >= doc_label_min_forget
    return {
        "n_docs": int(len(fractions)),
        "n_tokens": shard.n_tokens,
        "forget_token_pct": 100.0 * shard.meta["n_forget_tokens"] / max(1, shard.n_tokens),
        "docs_without_forget_pct": 100.0 * float(np.mean(fractions == 0)),
        "docs_over_10pct_forget_pct": 100.0 * float(np.mean(fractions > 0.10)),
        "docs_flagged_pct": 100.0 * float(np.mean(flagged)),
        "forget_share_in_flagged_docs_pct": 100.0 * float(
            shard.docs["n_forget"][flagged].sum() / max(1, lengths[flagged].sum())
        ),
        "tokens_in_flagged_docs_pct": 100.0 * float(lengths[flagged].sum() / max(1, lengths.sum())),
        "doc_tokens_median": float(np.median(lengths)),
        "doc_tokens_p90": float(np.percentile(lengths, 90)),
        "doc_tokens_p99": float(np.percentile(lengths, 99)),
        "doc_tokens_max": int(lengths.max()),
        "doc_label_min_forget": doc_label_min_forget,
        "ambiguous_token_pct": (100.0 * float(np.asarray(shard.ambiguous).mean())
                                if shard.ambiguous is not None else float("nan")),
        **{f"{name}_{unit}_overlap_pct": 100.0 * result[f"{unit}_overlap"]
           for name, result in (overlap or {}).items() for unit in ("sentence", "ngram")},
    }


def stats_table(stats: dict) -> pd.DataFrame:
    """One row per statistic, with the paper's value where it has one."""
    rows = [{"statistic": k, "value": round(float(v), 3), "paper": PAPER_STATS.get(k)} for k, v in stats.items()]
    return pd.DataFrame(rows)


def plot_forget_histogram(shard: TokenShard, path: str | os.PathLike) -> None:
    """Histogram of the per-document forget share (the analogue of paper Fig 24)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokenfilter.io import atomic_path

    fractions = 100 * forget_fractions(shard)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(fractions, bins=np.linspace(0, 100, 41), color="#4c72b0")
    ax.axvline(10, color="k", ls="--", lw=1)
    ax.set_xlabel("forget tokens in document (%)")
    ax.set_ylabel("documents")
    ax.set_title(f"{np.mean(fractions == 0):.0%} of documents hold no forget token; "
                 f"{np.mean(fractions > 10):.0%} are >10% forget", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=str(path).rsplit(".", 1)[-1], dpi=120)
    plt.close(fig)

"""Classifiers as filters (E16, E20): the frontier gain, the rank test and the claims."""

import math

import numpy as np
import pandas as pd
import pytest

from tokenfilter.analysis.classifier_filters import (
    classifier_filter_claims,
    classifier_filter_table,
    frontier_auc,
    spearman_critical,
)


def test_frontier_gain_is_the_mean_gap_over_the_shared_retain_range():
    baseline = pd.DataFrame({"retain_near": [1.0, 2.0], "forget": [1.0, 2.0]})
    # Parallel and 0.5 nats above over the shared retain range [1.5, 2.0].
    variant = pd.DataFrame({"retain_near": [1.5, 2.5], "forget": [2.0, 3.0]})
    assert frontier_auc(variant, baseline, "retain_near") == pytest.approx(0.5)
    # Crossing frontiers average their gaps: +0.5 at one end, -0.5 at the other.
    crossing = pd.DataFrame({"retain_near": [1.0, 2.0], "forget": [1.5, 1.5]})
    assert frontier_auc(crossing, baseline, "retain_near") == pytest.approx(0.0, abs=1e-9)
    disjoint = pd.DataFrame({"retain_near": [3.0, 4.0], "forget": [1.0, 1.0]})
    assert math.isnan(frontier_auc(disjoint, baseline, "retain_near"))


def test_the_spearman_critical_value_is_exact():
    # n = 4: only the perfect ranking (1 of 24 orders, p = 0.042) is significant at one-sided 5%.
    assert spearman_critical(4) == pytest.approx(1.0)
    assert 0.8 < spearman_critical(5) <= 0.9  # tables: 0.900 (p = 0.042)
    assert spearman_critical(2) == math.inf  # nothing can be significant


def _losses(rows):
    out = []
    for series, arm, size, variant, params, forget, near, far in rows:
        for domain, loss in (("forget", forget), ("retain_near", near), ("retain_far", far)):
            out.append({"series": series, "arm": arm, "size": size, "variant": variant, "replicate": 0,
                        "params": params, "step": 10, "tokens": 100, "final": True, "compute": params * 600.0,
                        "domain": domain, "loss": loss, "filtered_fraction": 0.2 if arm != "baseline" else np.nan})
    return pd.DataFrame(out)


def test_better_classifiers_make_better_filters_when_gains_rank_with_auroc():
    rows = [("c", "baseline", "a", "none", 1000, 2.0, 2.0, 2.0), ("c", "baseline", "b", "none", 2000, 1.5, 1.5, 1.5)]
    gains = {"v1": 0.1, "v2": 0.2, "v3": 0.3, "v4": 0.4, "v5": 0.5}
    for variant, gain in gains.items():
        rows += [("c", "mask", "a", variant, 1000, 2.0 + gain, 2.0, 2.0), ("c", "mask", "b", variant, 2000, 1.5 + gain, 1.5, 1.5)]
    filters = {v: {"filter": f"f_{v}", "classifier": f"clf_{v}", "labels": "truth"} for v in gains}
    filters["v5"]["labels"] = "sentence"
    table1 = pd.DataFrame({"classifier": [f"clf_{v}" for v in gains], "auroc_test": np.nan,
                           "auroc_test_truth": [0.80, 0.85, 0.90, 0.92, 0.95]})
    table = classifier_filter_table(_losses(rows), filters, table1)
    assert table.set_index("variant")["auc_retain_near"].to_dict() == pytest.approx(gains)
    claims = classifier_filter_claims(table, noise=0.05, series="c").set_index("source")["verdict"]
    assert list(claims.loc["Fig 28"]) == ["holds", "holds"]
    assert list(claims.loc["Fig 14"]) == ["holds", "not measured"]  # a sentence-label variant, no document one
    reversed_table = table.assign(auroc=table["auroc"].to_numpy()[::-1])
    assert list(classifier_filter_claims(reversed_table, 0.05, "c").set_index("source").loc["Fig 28", "verdict"]) == \
        ["does not hold", "does not hold"]
    # A gain inside the baselines' seed spread decides nothing.
    assert classifier_filter_claims(table, noise=1.0, series="c").set_index("source").loc["Fig 14", "verdict"].iloc[0] \
        == "inconclusive"

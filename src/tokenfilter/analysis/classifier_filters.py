"""Classifiers as filters (paper E16 Fig 14, E20 App C.3 Figs 27-28): a series of kind
``classifiers`` masks the corpus with a different classifier in each variant (at its own
threshold, or at a fixed fraction of tokens flagged) across sizes.

A variant's **normalised frontier AUC** is how far its forget-vs-retain frontier (one point per
size, final checkpoints, seeds averaged) lies above the baseline's: the mean vertical gap in nats
of forget loss over the retain-loss range both frontiers cover, the two frontiers linearly
interpolated between sizes. Positive: more forget loss at equal retain loss, a better filter.
(The paper normalises the area between the frontiers by the baseline's; ours is that area over
the shared retain range, in nats, which stays defined when frontiers cross.) A variant whose
frontier does not share a retain-loss range with the baseline's has no AUC, and says so.

Claims are read against run-to-run noise: the spread of the main ladder's baseline forget loss
over its seeds at the sizes of the series (the main series is where seeds are trained).
"""

from __future__ import annotations

import math
import os
from itertools import permutations

import numpy as np
import pandas as pd

from tokenfilter.analysis.fits import final_losses, replicate_means
from tokenfilter.analysis.scorecard import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, _row

RETAIN = ("retain_near", "retain_far")


def frontier_auc(variant: pd.DataFrame, baseline: pd.DataFrame, retain: str) -> float:
    """Mean gap (nats) between the variant's forget-loss frontier and the baseline's over their
    shared retain-loss range; NaN without a shared range of positive width."""
    v = variant.sort_values(retain)
    b = baseline.sort_values(retain)
    low = max(v[retain].min(), b[retain].min())
    high = min(v[retain].max(), b[retain].max())
    if not high > low:
        return math.nan
    grid = np.linspace(low, high, 201)
    gap = np.interp(grid, v[retain], v["forget"]) - np.interp(grid, b[retain], b["forget"])
    return float(np.mean(gap))


def classifier_filter_table(losses: pd.DataFrame, filters: dict[str, dict], table1: pd.DataFrame | None
                            ) -> pd.DataFrame:
    """Per variant: its filter and classifier, the classifier's test AUROC (against the truth where
    the corpus has one, else against its training labels), the mean flagged fraction and the
    normalised frontier AUC against retain-near and retain-far loss."""
    wide = replicate_means(final_losses(losses))
    baseline = wide[wide["arm"] == "baseline"]
    info = table1.set_index("classifier") if table1 is not None and not table1.empty else None
    rows = []
    for (arm, variant), runs in wide[wide["arm"] != "baseline"].groupby(["arm", "variant"], sort=True):
        name = filters.get(variant, {}).get("filter")
        classifier = filters.get(variant, {}).get("classifier")
        auroc = math.nan
        if info is not None and classifier in info.index:
            row = info.loc[classifier]
            auroc = float(row["auroc_test_truth"]) if np.isfinite(row["auroc_test_truth"]) else float(row["auroc_test"])
        shared = baseline[baseline["size"].isin(runs["size"])]
        rows.append({"arm": arm, "variant": variant, "filter": name, "classifier": classifier,
                     "labels": filters.get(variant, {}).get("labels"), "auroc": auroc,
                     "sizes": len(runs),
                     "filtered_fraction": float(runs["filtered_fraction"].mean()) if "filtered_fraction" in runs else math.nan,
                     **{f"auc_{r}": frontier_auc(runs, shared, r) if r in runs else math.nan for r in RETAIN}})
    return pd.DataFrame(rows, columns=["arm", "variant", "filter", "classifier", "labels", "auroc", "sizes", "filtered_fraction",
                                       *(f"auc_{r}" for r in RETAIN)])


def plot_auc_vs_auroc(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Fig 28: normalised frontier AUC against the classifier's AUROC, one panel per retain domain."""
    from tokenfilter.analysis.plots import _figure, _save

    fig, axes = _figure(1, len(RETAIN), 4.8 * len(RETAIN), 3.8)
    points = table.dropna(subset=["auroc"])
    for ax, retain in zip(axes[0], RETAIN):
        ax.axhline(0, color="0.6", lw=0.8)
        ax.scatter(points["auroc"], points[f"auc_{retain}"])
        for _, r in points.iterrows():
            ax.annotate(str(r["variant"]), (r["auroc"], r[f"auc_{retain}"]), xytext=(3, 3),
                        textcoords="offset points", fontsize=7)
        ax.set_xlabel("classifier test AUROC")
        ax.set_ylabel("frontier gain over the baseline (nats)")
        ax.set_title(f"vs {retain.replace('_', '-')} loss", fontsize=10)
    if points.empty:
        axes[0][0].text(0.5, 0.5, "no classifier variants", ha="center", transform=axes[0][0].transAxes)
    fig.suptitle("Are better classifiers better filters? (paper Fig 28)", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if np.std(rx) == 0 or np.std(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def spearman_critical(n: int, alpha: float = 0.05) -> float:
    """The one-sided critical Spearman ρ of ``n`` untied pairs under independence (exact, by
    enumerating the permutations; n ≤ 8): ρ at or above it has p ≤ alpha."""
    ranks = np.arange(n, dtype=float)
    rhos = np.round([_spearman(ranks, np.asarray(p, dtype=float)) for p in permutations(range(n))], 9)
    for value in np.unique(rhos):  # ascending: the first value whose upper tail is small enough
        if np.mean(rhos >= value) <= alpha:
            return float(value)
    return math.inf


def classifier_filter_claims(table: pd.DataFrame, noise: float, series: str) -> pd.DataFrame:
    """E20: the frontier gain rises with classifier AUROC (Spearman ρ against its exact one-sided
    5% critical value); E16: filters trained on sentence and document labels still beat the
    baseline (frontier gain against ``noise``, the baseline's seed spread of forget loss)."""
    rows = []
    for retain in RETAIN:
        claim = f"Better classifiers are better filters: frontier gain over the baseline rises with classifier AUROC (vs {retain.replace('_', '-')})"
        paper = "higher AUROC gives higher normalised AUC (Fig 28)"
        points = table.dropna(subset=["auroc", f"auc_{retain}"])
        n = len(points)
        if n < 3 or n > 8:
            missing = sorted(set(table["variant"]) - set(points["variant"]))
            rows.append(_row(claim, paper, "Fig 28", NOT_MEASURED,
                             f"{n} classifier variants of series {series} have an AUROC and a frontier gain (need 3-8)"
                             + (f"; without: {', '.join(missing)} (no classifier, or no retain-loss range shared "
                                "with the baseline)" if missing else "")))
            continue
        rho = _spearman(points["auroc"].to_numpy(), points[f"auc_{retain}"].to_numpy())
        critical = spearman_critical(n)
        measured = "; ".join(f"{r.variant} AUROC {r.auroc:.3f} gain {getattr(r, f'auc_{retain}'):+.3f}"
                             for r in points.itertuples())
        if not np.isfinite(rho):
            verdict, why = INCONCLUSIVE, "ties in AUROC or gain: no ranking to correlate"
        elif rho >= critical:
            verdict, why = HOLDS, f"Spearman ρ {rho:+.2f} ≥ {critical:.2f} (one-sided 5%, n = {n})"
        elif rho <= -critical:
            verdict, why = FAILS, f"Spearman ρ {rho:+.2f} ≤ -{critical:.2f} (one-sided 5%, n = {n})"
        else:
            verdict, why = INCONCLUSIVE, f"Spearman ρ {rho:+.2f} inside ±{critical:.2f} (one-sided 5%, n = {n})"
        rows.append(_row(claim, paper, "Fig 28", verdict, f"ρ {rho:+.2f}: {measured}", rho, critical, why,
                         f"ρ {critical:.2f}"))
    for level in ("sentence", "document"):
        claim = f"Filters trained on {level} labels are still effective: masking with them beats the baseline's frontier"
        paper = "coarse-label filters are marginally worse but still effective (Fig 14)"
        variants = table[table["labels"] == level]
        if variants.empty:
            rows.append(_row(claim, paper, "Fig 14", NOT_MEASURED, f"no {level}-label variant in series {series}"))
            continue
        gain = float(variants["auc_retain_near"].mean())
        if not np.isfinite(gain) or not np.isfinite(noise):
            rows.append(_row(claim, paper, "Fig 14", NOT_MEASURED, "no frontier gain or no seed spread to read it against"))
            continue
        verdict = HOLDS if gain > noise else FAILS if gain < -noise else INCONCLUSIVE
        rows.append(_row(claim, paper, "Fig 14", verdict,
                         f"frontier gain vs retain-near {gain:+.3f} nats ({', '.join(variants['variant'])})", gain, noise,
                         f"gain {gain:+.3f} against the baseline's seed spread {noise:.3f} nats", f"{noise:.3f} nats"))
    return pd.DataFrame(rows)


def baseline_seed_spread(main_losses: pd.DataFrame, sizes: list[str]) -> float:
    """The largest range over seeds of the main series' baseline forget loss at ``sizes`` (NaN
    where no size has several seeds)."""
    wide = final_losses(main_losses)
    wide = wide[(wide["arm"] == "baseline") & wide["size"].isin(sizes)]
    if "replicate" not in wide.columns:
        return math.nan
    ranges = wide.groupby("size")["forget"].agg(lambda x: x.max() - x.min() if len(x) > 1 else math.nan)
    return float(ranges.max()) if ranges.notna().any() else math.nan


def write_classifier_filters(losses_csv: str | os.PathLike, main_losses_csv: str | os.PathLike,
                             table1_csv: str | os.PathLike | None, filters: dict[str, dict], series: str,
                             out: dict[str, str]) -> pd.DataFrame:
    """The series' table, Fig 28 and its claims (written atomically); returns the claims."""
    from tokenfilter.report.tables import write_table

    losses = pd.read_csv(losses_csv)
    table1 = pd.read_csv(table1_csv) if table1_csv else None
    table = classifier_filter_table(losses, filters, table1)
    write_table(table, csv_path=out["csv"], html_path=out["html"], title=f"Classifiers as filters (series {series})",
                note="Per variant: the classifier's test AUROC (Table 1), the flagged fraction, and the normalised "
                     "frontier AUC: the mean gap in forget loss (nats) between its forget-vs-retain frontier across "
                     "sizes and the baseline's, over the retain-loss range both cover. Positive: a better filter.")
    plot_auc_vs_auroc(table, out["figure"])
    sizes = sorted(set(losses["size"]))
    claims = classifier_filter_claims(table, baseline_seed_spread(pd.read_csv(main_losses_csv), sizes), series)
    write_table(claims, csv_path=out["claims"])
    return claims

"""The report's findings page: what the investigation of the scorecard found, with every number
computed from this run's results (nothing typed in by hand).

Three questions, each answered by a table:

1. How well does each form of the baseline's compute-loss law fit? (the slowdowns depend on it)
2. What do the filter's errors change? The main series' filter against the ablation series'
   (by default ground truth with and without the paper's 11% token error rate), per arm.
3. How much do extrapolated slowdowns depend on the fit form? Slowdowns at the largest size
   under both forms.
"""

from __future__ import annotations

import html
import numpy as np
import pandas as pd

from tokenfilter.analysis import fits as analysis
from tokenfilter.report.tables import _STYLE, to_html

ARM_LABELS = {"baseline": "baseline", "document": "document filter", "mask": "token masking",
              "remove": "token removal"}


def _table_html(df: pd.DataFrame) -> str:
    page = to_html(df, "")
    return page[page.index("<table>"):page.index("</table>") + len("</table>")]


def fit_quality(fits: pd.DataFrame) -> pd.DataFrame:
    """Both fit forms per domain, from the ladder's fits table."""
    if fits is None or fits.empty:
        return pd.DataFrame()
    return fits[["domain", "form", "r2", "b", "floor", "n"]].rename(
        columns={"r2": "R² (ln L)", "b": "slope b", "floor": "floor E", "n": "baseline sizes"})


def filter_error_table(main: pd.DataFrame, ablation: pd.DataFrame, main_filter: str, ablation_filter: str) -> pd.DataFrame:
    """Final losses at the ablation's sizes: each arm with the main filter and with the ablation's."""
    rows = []
    wide_main = analysis.final_losses(main)
    wide_abl = analysis.final_losses(ablation)
    trained = wide_abl[wide_abl["arm"] != "baseline"]  # the table also carries every baseline size
    for size in sorted(set(trained["size"]), key=lambda s: trained.loc[trained["size"] == s, "params"].iloc[0]):
        for source, wide, name in (("main", wide_main, main_filter), ("ablation", wide_abl, ablation_filter)):
            for rec in wide[wide["size"] == size].to_dict("records"):
                if source == "ablation" and rec["arm"] == "baseline":
                    continue  # the same shared baseline model as in the main series
                rows.append({
                    "size": size, "arm": ARM_LABELS.get(rec["arm"], rec["arm"]),
                    "filter": "none" if rec["arm"] == "baseline" else (name if rec["arm"] != "document" else f"{name} (documents)"),
                    "forget loss": rec.get("forget", np.nan), "retain-near loss": rec.get("retain_near", np.nan),
                    "retain-far loss": rec.get("retain_far", np.nan),
                    "tokens filtered": rec.get("filtered_fraction", np.nan),
                })
    return pd.DataFrame(rows)


def fit_sensitivity(all_forms: pd.DataFrame) -> pd.DataFrame:
    """Forget-domain slowdowns at the largest size under both fit forms (the ladder's
    slowdowns table of every form)."""
    rows = []
    if all_forms is None or all_forms.empty:
        return pd.DataFrame(rows)
    for form in analysis.FIT_FORMS:
        slow = all_forms[(all_forms["fit_form"] == form) & (all_forms["domain"] == "forget")]
        if slow.empty:
            continue
        largest = slow["params"].max()
        for rec in slow[slow["params"] == largest].to_dict("records"):
            rows.append({"fit form": form, "size": rec["size"], "arm": ARM_LABELS.get(rec["arm"], rec["arm"]),
                         "forget loss": rec["loss"], "slowdown": rec["slowdown"],
                         "extrapolated": "yes" if rec["extrapolated"] else "no"})
    return pd.DataFrame(rows)


def seed_spread_table(main: pd.DataFrame) -> pd.DataFrame:
    """Final losses over seeds where a size has several: mean and range per arm and domain."""
    wide = analysis.final_losses(main)
    if "replicate" not in wide.columns:
        return pd.DataFrame()
    rows = []
    for (arm, size), group in wide.groupby(["arm", "size"], sort=False):
        if group["replicate"].nunique() < 2:
            continue
        for domain in [d for d in analysis.DOMAINS if d in group.columns]:
            values = group[domain].astype(float)
            rows.append({"size": size, "arm": ARM_LABELS.get(arm, arm), "domain": domain, "seeds": len(values),
                         "mean loss": values.mean(), "range": values.max() - values.min()})
    return pd.DataFrame(rows)


def _reading(text: str) -> str:
    """A paragraph of interpretation, marked as ours (the numbers around it are computed)."""
    return f"<p class='note'><b>Our reading</b> (not computed from this run): {text}</p>"


def findings_html(main: pd.DataFrame | None, fits: pd.DataFrame | None, all_forms: pd.DataFrame | None,
                  ablation: pd.DataFrame | None, scorecard: pd.DataFrame, fit_form: str, main_filter: str | None,
                  ablation_filter: str | None, filter_specs: dict, filter_quality: pd.DataFrame | None = None) -> str:
    """The findings page (HTML): every statement with a number is computed from this run; the
    interpretation paragraphs are marked as ours."""
    parts = ["<h2>Findings</h2>"]
    counts = scorecard["verdict"].value_counts()
    parts.append(f"<p>Of the {len(scorecard)} scorecard claims, {int(counts.get('holds', 0))} hold on this run, "
                 f"{int(counts.get('does not hold', 0))} do not, {int(counts.get('inconclusive', 0))} are inconclusive "
                 f"(noise or the choice of fit could decide them) and {int(counts.get('not measured', 0))} were not "
                 "measured.</p>")
    for verdict in ("does not hold", "inconclusive"):
        rows = scorecard[scorecard["verdict"] == verdict]
        if not rows.empty:
            parts.append(f"<p>Claims that {'do not hold' if verdict == 'does not hold' else 'are inconclusive'}:</p><ul>"
                         + "".join(f"<li>{html.escape(r['claim'])}: {html.escape(str(r['why']))}</li>"
                                   for _, r in rows.iterrows()) + "</ul>")

    if main is not None and not main.empty:
        spread = seed_spread_table(main)
        if not spread.empty:
            forget = spread[spread["domain"] == "forget"]
            parts.append(
                "<h3>1. Run-to-run spread</h3>"
                f"<p>At the seeded size, the forget loss of an arm varies by up to {forget['range'].max():.4f} nats "
                f"between seeds (mean range {forget['range'].mean():.4f}). Ordering claims are decided against this "
                "spread: a difference smaller than it is not called a result.</p>" + _table_html(spread))

    if main is not None and not main.empty:
        quality = fit_quality(fits)
        if not quality.empty:
            forget_fits = fits[fits["domain"] == "forget"]
            loo = ", ".join(f"{r['form'].replace('_', ' ')} {r['loo_rmse']:.4f}" for _, r in forget_fits.iterrows()
                            if np.isfinite(r["loo_rmse"]))
            parts.append("<h3>2. The baseline's compute-loss law</h3>"
                         "<p>Loss-matched slowdowns read the compute a baseline needs for a given loss off a law "
                         "through the baseline ladder, so they are only as good as that law. The table gives every "
                         "form: the paper's pure power law, a power law with a fitted floor, and the paper's in-range "
                         "interpolation of the log-log curve, with the number of baseline sizes per fitted parameter "
                         f"and the leave-one-out error in ln L (forget: {html.escape(loo) or 'n/a'}). This run quotes "
                         f"<b>{html.escape(fit_form.replace('_', ' '))}</b> (config <code>analysis.fit</code>); slowdown "
                         "claims are read under every form.</p>" + _table_html(quality.join(fits[["loo_rmse", "points_per_parameter"]])))

    if filter_quality is not None and not filter_quality.empty:
        summary = (filter_quality.groupby(["series", "arm", "filter", "unit"], dropna=False)
                   [["filtered_fraction", "precision", "recall", "f1", "error_rate"]].mean().reset_index())
        parts.append("<h3>3. The filters the arms trained with</h3>"
                     "<p>Every run's flags measured against the ground truth (mean over its series' runs; per run in "
                     "the filter-quality table). Arms are compared with filters of stated quality: the token arms "
                     "with the token filter's error rate, the document arm with its F1 on document labels.</p>"
                     + _table_html(summary))

    if main is not None and ablation is not None and not ablation.empty and main_filter and ablation_filter:
        table = filter_error_table(main, ablation, main_filter, ablation_filter)
        spec_text = "; ".join(f"<code>{html.escape(k)}</code>: {html.escape(str(v))}" for k, v in filter_specs.items())
        parts.append(
            "<h3>4. What the filter's errors change</h3>"
            f"<p>The same arms trained with the main series' filter (<code>{html.escape(main_filter)}</code>) and with "
            f"the filter series' (<code>{html.escape(ablation_filter)}</code>); filters: {spec_text}.</p>"
            + _table_html(table)
            + _reading("a forget token the filter misses is trained on as an ordinary target. Under masking the model "
                       "still reads the surrounding forget text as input, so a missed token is learnt in full forget "
                       "context; under removal its context is mostly <code>&lt;|hidden|&gt;</code>. Where facts recur "
                       "many times in the corpus (as in the built-in world), a small share of missed mentions can be "
                       "enough to learn them."))

    if main is not None and not main.empty:
        sens = fit_sensitivity(all_forms)
        if not sens.empty:
            n_extra = int((sens["extrapolated"] == "yes").sum())
            parts.append(
                "<h3>5. Slowdowns under each form of the law</h3>"
                f"<p>At the largest size, {n_extra} of the {len(sens)} forget-domain slowdowns below lie outside the "
                "baseline ladder's losses (the interpolation cannot read those; the fitted laws extrapolate).</p>"
                + _table_html(sens)
                + _reading("extrapolated slowdowns say more about the ordering of arms than about their size; where "
                           "the forms disagree, no magnitude claim is made."))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{_STYLE}</style></head><body>"
            + "".join(parts) + "</body></html>\n")

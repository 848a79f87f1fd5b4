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


def findings_html(main: pd.DataFrame | None, fits: pd.DataFrame | None, all_forms: pd.DataFrame | None,
                  ablation: pd.DataFrame | None, scorecard: pd.DataFrame, fit_form: str, main_filter: str | None,
                  ablation_filter: str | None, filter_specs: dict) -> str:
    """The findings page (HTML)."""
    parts = ["<h2>Findings</h2>"]
    failing = scorecard[scorecard["verdict"] == "does not hold"]["claim"].tolist()
    unmeasured = scorecard[scorecard["verdict"] == "not measured"]["claim"].tolist()
    held = int((scorecard["verdict"] == "holds").sum())
    parts.append(f"<p>Of the {len(scorecard)} scorecard claims, {held} hold on this run, {len(failing)} "
                 f"{'does' if len(failing) == 1 else 'do'} not, and {len(unmeasured)} "
                 f"{'was' if len(unmeasured) == 1 else 'were'} not measured.</p>")
    if failing:
        parts.append("<p>Claims that do not hold:</p><ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in failing) + "</ul>")

    if main is not None and not main.empty:
        quality = fit_quality(fits)
        if not quality.empty:
            parts.append("<h3>1. The baseline's compute-loss law</h3>"
                         "<p>Loss-matched slowdowns read the compute a baseline needs for a given loss off a "
                         "law fitted to the baseline ladder, so they are only as good as that fit. The table gives "
                         "the fit of both forms (R² of ln L over the baseline sizes). This run's slowdowns use "
                         f"<b>{html.escape(fit_form.replace('_', ' '))}</b> (config <code>analysis.fit</code>). A "
                         "ladder whose losses approach the data's irreducible entropy bends away from a pure power "
                         "law; a fitted floor E then describes it, as the R² shows.</p>" + _table_html(quality))

    if main is not None and ablation is not None and not ablation.empty and main_filter and ablation_filter:
        table = filter_error_table(main, ablation, main_filter, ablation_filter)
        spec_text = "; ".join(f"<code>{html.escape(k)}</code>: {html.escape(str(v))}" for k, v in filter_specs.items())
        parts.append(
            "<h3>2. What the filter's errors change</h3>"
            f"<p>The same arms trained with the main series' filter (<code>{html.escape(main_filter)}</code>) and with "
            f"the ablation series' (<code>{html.escape(ablation_filter)}</code>); filters: {spec_text}. "
            "A forget token the filter misses is trained on as an ordinary target. Under masking the model "
            "still reads the surrounding forget text as input, so a missed token is learnt in full forget "
            "context; under removal its context is mostly <code>&lt;|hidden|&gt;</code>. Comparing each arm's "
            "forget loss between the two filters shows how much of the arm's effect survives the filter's "
            "errors. Where facts recur many times in the corpus (as in the built-in world), even a small share "
            "of missed mentions can be enough to learn them.</p>" + _table_html(table))

    if main is not None and not main.empty:
        sens = fit_sensitivity(all_forms)
        if not sens.empty:
            n_extra = int((sens["extrapolated"] == "yes").sum())
            parts.append(
                "<h3>3. Extrapolated slowdowns depend on the fit form</h3>"
                f"<p>At the largest size, {n_extra} of the {len(sens)} forget-domain slowdowns below lie outside "
                "the baseline ladder's losses: the law is extended beyond its data, and the two forms can "
                "disagree by orders of magnitude there. Read extrapolated slowdowns for their ordering across "
                "arms and sizes, not their size; interpolated ones agree between forms when both fit well.</p>"
                + _table_html(sens))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{_STYLE}</style></head><body>"
            + "".join(parts) + "</body></html>\n")

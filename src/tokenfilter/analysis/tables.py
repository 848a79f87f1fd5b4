"""From evaluation results to the report: the tidy loss table of a series, the analysis tables
every series gets (fits, slowdowns), the figures of each series kind, and the claims scorecard,
which reads those tables rather than refitting them."""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from tokenfilter.analysis import fits as analysis
from tokenfilter.analysis import plots
from tokenfilter.config.experiments import Run
from tokenfilter.io import atomic_open, read_json
from tokenfilter.report.tables import write_table

LOSS_COLUMNS = ["series", "arm", "size", "variant", "replicate", "params", "step", "tokens", "final", "compute",
                "domain", "loss", "filtered_fraction"]


def loss_table(result_paths: Iterable[str | os.PathLike], series: str) -> pd.DataFrame:
    """One row per (run, checkpoint, eval domain) of a series' ``text_loss.json`` files.

    Compute is 6·N·tokens processed so far (paper §3.2: C = 6ND).
    """
    rows = []
    for path in result_paths:
        result = read_json(path)
        run = Run.parse(result["run"])
        fraction = result.get("filtered_fraction")
        for ev in result["evals"]:
            for domain, losses in ev["losses"].items():
                rows.append({
                    "series": series, "arm": run.arm, "size": run.size, "variant": run.variant,
                    "replicate": run.replicate,
                    "params": result["params"], "step": ev["step"], "tokens": ev["tokens"], "final": ev["final"],
                    "compute": 6.0 * result["params"] * ev["tokens"], "domain": domain, "loss": losses["loss"],
                    "filtered_fraction": np.nan if run.arm == "baseline" else fraction,
                })
    return pd.DataFrame(rows, columns=LOSS_COLUMNS)


def _write_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_open(path, "w", newline="") as f:
        df.to_csv(f, index=False)


def _fit_sizes(losses: pd.DataFrame, fit_sizes: Sequence[str] | None) -> list[str] | None:
    return [s for s in fit_sizes if s in set(losses["size"])] if fit_sizes else None


def fits_from_table(fits_csv: pd.DataFrame, form: str) -> dict[str, analysis.PowerLawFit]:
    """The fits of ``form`` back from the fits table, one per domain."""
    fields = [f for f in analysis.PowerLawFit.__dataclass_fields__]
    rows = fits_csv[fits_csv["form"] == form] if "form" in fits_csv.columns else fits_csv.iloc[0:0]
    return {rec["domain"]: analysis.PowerLawFit(**{k: rec[k] for k in fields}) for rec in rows.to_dict("records")}


def series_analysis(losses: pd.DataFrame, fit_sizes: Sequence[str] | None, fit_form: str, out: dict[str, str]) -> None:
    """The tables and figures every series gets (keys as in the ``analyze_series`` rule): both
    fit forms, slowdowns under the configured form and under both, learning curves, frontier."""
    sizes = _fit_sizes(losses, fit_sizes)
    note = (f"Slowdowns use the {fit_form.replace('_', ' ')} (config analysis.fit); both forms are shown. "
            "L = E + exp(a)·C^b, E = 0 for the pure power law; R² is that of ln L.")
    both = analysis.fit_comparison(losses, sizes)
    if both.empty:
        both = pd.DataFrame(columns=["domain", "form", "a", "b", "floor", "r2", "n"])
    all_forms = []
    slow = None
    for form in analysis.FIT_FORMS:
        try:
            form_slow = analysis.slowdowns(losses, analysis.baseline_fits(losses, sizes, form))
        except ValueError as exc:  # too few baseline sizes: no fit, no slowdowns
            if form == fit_form:
                note = str(exc)
            form_slow = analysis.slowdowns(losses.iloc[0:0], {})
        if form == fit_form:
            slow = form_slow
        all_forms.append(form_slow.assign(fit_form=form))
    write_table(both, csv_path=out["fits_csv"], html_path=out["fits"],
                title="Baseline compute-loss fits: L = E + exp(a)·C^b", note=note)
    shown = slow[["arm", "size", "variant", "params", "domain", "loss", "baseline_loss_at_compute", "slowdown",
                  "extrapolated", "note"]] if not slow.empty else slow
    write_table(shown, csv_path=None, html_path=out["slowdowns"],
                title="Loss-matched compute slowdown of every filtered run (final checkpoints)", note=note)
    _write_csv(slow, out["slowdowns_csv"])
    _write_csv(pd.concat(all_forms, ignore_index=True), out["slowdowns_all_forms"])
    plots.plot_learning_curves(losses, out["learning_curves"])
    plots.plot_frontier(losses, out["frontier"])


def compute_loss_figure(losses: pd.DataFrame, fits_csv: pd.DataFrame, fit_form: str, path: str) -> None:
    """Fig 16 of a ladder series, with the configured baseline fit drawn through the baselines."""
    plots.plot_compute_loss(losses, path, fits_from_table(fits_csv, fit_form))


def pareto_table(losses: pd.DataFrame) -> pd.DataFrame:
    """Per document point of a thresholds series and per token arm: what the token arm reaches at
    no more retain-near loss (paper Fig 3), one row each."""
    rows = []
    present = set(losses["arm"])
    for arm in analysis.TOKEN_ARMS:
        if "document" not in present or arm not in present:
            continue
        result = analysis.pareto_comparison(losses, arm, "document", x="retain_near", y="forget")
        for point in result["points"]:
            rows.append({"token_arm": arm, **point})
    columns = ["token_arm", "size", "variant", "retain_near", "forget", "token_forget", "margin", "comparable",
               "token_wins"]
    return pd.DataFrame(rows, columns=columns)


def pareto_outputs(losses: pd.DataFrame, csv_path: str, png_path: str) -> None:
    _write_csv(pareto_table(losses), csv_path)
    plots.plot_threshold_pareto(losses, png_path)


def filter_comparison_outputs(main_losses: pd.DataFrame, series_losses: pd.DataFrame, main_filter: str,
                              series_filter: str, csv_path: str, png_path: str) -> None:
    """A filter series against the main ladder: each arm's final losses with both filters."""
    from tokenfilter.analysis.findings import filter_error_table

    table = filter_error_table(main_losses, series_losses, main_filter, series_filter)
    _write_csv(table, csv_path)
    plots.plot_filter_comparison(table, png_path)


def write_scorecard(ladders: dict[str, dict[str, str]], pareto: dict[str, str], fit_form: str, csv_path: str,
                    html_path: str, stage_claims: list[str] | None = None) -> pd.DataFrame:
    """The claims scorecard from the analysis tables of the ladder and thresholds series, followed
    by the claims each later stage decided itself (``stage_claims``: CSV files with the scorecard's
    columns, e.g. the robustness stage's)."""
    from tokenfilter.analysis.scorecard import SCORECARD_COLUMNS, _ROW_CLASS, evaluate_claims

    main = next(iter(ladders.values()), None)
    main_losses = pd.read_csv(main["losses"]) if main else None
    slow = pd.read_csv(main["slowdowns_all_forms"]) if main else None
    if slow is not None and "note" in slow.columns:
        slow["note"] = slow["note"].fillna("")
    thresholds = next(iter(pareto.values()), None)
    pareto_points = pd.read_csv(thresholds) if thresholds else None
    card = evaluate_claims(main_losses, slow, pareto_points, fit_form)
    for path in stage_claims or []:
        rows = pd.read_csv(path, keep_default_na=False, na_values=[""])
        missing = sorted(set(SCORECARD_COLUMNS) - {"row_class"} - set(rows.columns))
        if missing:
            raise ValueError(f"{path}: a stage's claims table lacks the scorecard columns {missing}")
        rows["row_class"] = rows["verdict"].map(_ROW_CLASS)
        card = pd.concat([card, rows[SCORECARD_COLUMNS]], ignore_index=True)
    write_table(card, csv_path=csv_path, html_path=html_path, row_class="row_class",
                title="Claims scorecard: the paper's claims, checked against this run's results",
                note="Every verdict is computed from this workflow's results. Ordering claims are decided in nats "
                     "at equal compute, paired by seed: 'holds' needs the margin to exceed its spread over seeds "
                     "(the smallest effect the claim can detect), 'inconclusive' means noise could decide it. "
                     "Slowdown claims are read under every form of the baseline law and are inconclusive when the "
                     "forms disagree or every point is extrapolated. 'not measured': an input was not part of this run.")
    return card


def write_findings(ladders: dict[str, dict[str, str]], filter_series: dict[str, str], scorecard: pd.DataFrame,
                   fit_form: str, main_filter: str | None, filter_names: dict[str, str], filter_specs: dict,
                   html_path: str, filter_quality_path: str | None = None) -> None:
    """The report's findings page (see :mod:`tokenfilter.analysis.findings`)."""
    from tokenfilter.analysis.findings import findings_html

    main = next(iter(ladders.values()), None)
    main_losses = pd.read_csv(main["losses"]) if main else None
    fits = pd.read_csv(main["fits"]) if main else None
    all_forms = pd.read_csv(main["slowdowns_all_forms"]) if main else None
    name, path = next(iter(filter_series.items()), (None, None))
    ablation = pd.read_csv(path) if path else None
    ablation_filter = filter_names.get(name) if name else None
    specs = {n: filter_specs[n] for n in (main_filter, ablation_filter) if n in filter_specs}
    quality = pd.read_csv(filter_quality_path) if filter_quality_path else None
    with atomic_open(html_path, "w", encoding="utf-8") as f:
        f.write(findings_html(main_losses, fits, all_forms, ablation, scorecard, fit_form, main_filter,
                              ablation_filter, specs, quality))


def filter_quality_table(summary_paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Per filtered run: the share of tokens its filter removes or masks and, where the ground
    truth is known, the precision, recall, F1 and error rate of the flags it trained with (token
    arms: tokens; document arm: dropped documents, plus the token precision and recall of what
    they drop), so every arm is compared with a filter of stated quality."""
    rows = []
    for path in summary_paths:
        summary = read_json(path)
        run = Run.parse(summary["run"])
        if run.arm == "baseline":
            continue
        quality = summary.get("filter_quality") or {}
        plan = summary.get("plan") or {}
        rows.append({"series": run.series, "arm": run.arm, "size": run.size, "variant": run.variant,
                     "replicate": run.replicate, "filter": (summary["spec"]["data"].get("filtering") or {}).get("filter"),
                     "filtered_fraction": summary.get("filtered_fraction"), "noise": plan.get("noise"),
                     "noise_structure": plan.get("noise_structure"), "delay_steps": plan.get("delay_steps"),
                     "unit": quality.get("unit"), "precision": quality.get("precision"),
                     "recall": quality.get("recall"), "f1": quality.get("f1"), "error_rate": quality.get("error_rate"),
                     "token_precision": quality.get("token_precision", quality.get("precision")),
                     "token_recall": quality.get("token_recall", quality.get("recall"))})
    return pd.DataFrame(rows)

"""From evaluation results to the report: the tidy loss table of a series, its analysis outputs
(fits, slowdowns, figures) and the claims scorecard."""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from tokenfilter import analysis, plots
from tokenfilter.io import atomic_open, read_json
from tokenfilter.report_tables import write_table
from tokenfilter.scorecard import evaluate_claims

LOSS_COLUMNS = ["series", "arm", "size", "variant", "params", "step", "tokens", "final", "compute",
                "domain", "loss", "filtered_fraction"]


def loss_table(result_paths: Iterable[str | os.PathLike], series: str) -> pd.DataFrame:
    """One row per (run, checkpoint, eval domain) of a series' ``text_loss.json`` files.

    Compute is 6·N·tokens processed so far (paper §3.2: C = 6ND).
    """
    rows = []
    for path in result_paths:
        result = read_json(path)
        _, arm, size, variant = result["run"].split("/")
        fraction = result.get("filtered_fraction")
        for ev in result["evals"]:
            for domain, losses in ev["losses"].items():
                rows.append({
                    "series": series, "arm": arm, "size": size, "variant": variant,
                    "params": result["params"], "step": ev["step"], "tokens": ev["tokens"], "final": ev["final"],
                    "compute": 6.0 * result["params"] * ev["tokens"], "domain": domain, "loss": losses["loss"],
                    "filtered_fraction": np.nan if arm == "baseline" else fraction,
                })
    return pd.DataFrame(rows, columns=LOSS_COLUMNS)


def _fits(losses: pd.DataFrame, fit_sizes: Sequence[str] | None, form: str) -> dict:
    fit_sizes = [s for s in fit_sizes if s in set(losses["size"])] if fit_sizes else None
    return analysis.baseline_fits(losses, fit_sizes, form)


def series_analysis(losses: pd.DataFrame, fit_sizes: Sequence[str] | None, fit_form: str, out: dict[str, str]) -> None:
    """Write every analysis output of one series (keys as in the ``analyze_series`` rule)."""
    try:
        fits = _fits(losses, fit_sizes, fit_form)
        slow = analysis.slowdowns(losses, fits)
        both = analysis.fit_comparison(losses, [s for s in fit_sizes if s in set(losses["size"])] if fit_sizes else None)
        note = (f"Slowdowns use the {fit_form.replace('_', ' ')} (config analysis.fit); both forms are shown. "
                "L = E + exp(a)·C^b, E = 0 for the pure power law; R² is that of ln L.")
    except ValueError as exc:  # too few baseline sizes: no fit, no slowdowns
        fits, both = {}, pd.DataFrame(columns=["domain", "form", "a", "b", "floor", "r2", "n"])
        slow = analysis.slowdowns(losses.iloc[0:0], {})
        note = str(exc)
    write_table(both, csv_path=out["fits_csv"], html_path=out["fits"],
                title="Baseline compute-loss fits: L = E + exp(a)·C^b", note=note)
    shown = slow[["arm", "size", "variant", "params", "domain", "loss", "baseline_loss_at_compute", "slowdown",
                  "extrapolated", "note"]] if not slow.empty else slow
    write_table(shown, csv_path=None, html_path=out["slowdowns"],
                title="Loss-matched compute slowdown of every filtered run (final checkpoints)", note=note)
    with atomic_open(out["slowdowns_csv"], "w", newline="") as f:
        slow.to_csv(f, index=False)
    plots.plot_compute_loss(losses, out["compute_loss"], fits)
    plots.plot_learning_curves(losses, out["learning_curves"])
    plots.plot_frontier(losses, out["frontier"])
    plots.plot_slowdown(slow, out["slowdown"])
    plots.plot_threshold_pareto(losses, out["pareto"])


def write_scorecard(main_losses_path: str | None, threshold_losses_path: str | None,
                    fit_sizes: Sequence[str] | None, fit_form: str, csv_path: str, html_path: str) -> pd.DataFrame:
    """Compute the claims scorecard from the results and write it as CSV and HTML."""
    main = pd.read_csv(main_losses_path) if main_losses_path else None
    thresholds = pd.read_csv(threshold_losses_path) if threshold_losses_path else None
    slow = None
    if main is not None:
        try:
            slow = analysis.slowdowns(main, _fits(main, fit_sizes, fit_form))
        except ValueError:
            slow = None
    card = evaluate_claims(main, slow, thresholds)
    write_table(card, csv_path=csv_path, html_path=html_path, row_class="row_class",
                title="Claims scorecard: the paper's claims, checked against this run's results",
                note="Every verdict is computed from this workflow's results; 'not measured' means an input "
                     "it needs was not part of this run.")
    return card


def write_findings(main_losses_path: str | None, ablation_losses_path: str | None, scorecard: pd.DataFrame,
                   fit_sizes: Sequence[str] | None, fit_form: str, main_filter: str | None,
                   ablation_filter: str | None, filter_specs: dict, html_path: str) -> None:
    """The report's findings page (see :mod:`tokenfilter.findings`)."""
    from tokenfilter.findings import findings_html

    main = pd.read_csv(main_losses_path) if main_losses_path else None
    ablation = pd.read_csv(ablation_losses_path) if ablation_losses_path else None
    if main is not None and fit_sizes:
        fit_sizes = [s for s in fit_sizes if s in set(main["size"])]
    specs = {name: filter_specs[name] for name in (main_filter, ablation_filter) if name in filter_specs}
    with atomic_open(html_path, "w", encoding="utf-8") as f:
        f.write(findings_html(main, ablation, scorecard, fit_sizes or None, fit_form, main_filter, ablation_filter, specs))

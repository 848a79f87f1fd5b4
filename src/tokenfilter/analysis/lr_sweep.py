"""The learning-rate / weight-decay sweep (paper E0, Table 2) and the µP decision.

A series of kind ``lr_sweep`` trains baselines at several widths, each variant with its own peak
learning rate, weight decay and parametrisation (standard, or µP with a base width). Each run is
scored by its mean final loss over the held-out text sets (forget, retain-near, retain-far: the
pretraining mixture's domains, equally weighted); per depth, width and parametrisation the best
(lr, weight decay) is the Table 2 row. ``training.hparams_from`` makes the ladder train with it.

The paper sweeps with µP at a small width and transfers the optimum to every width. Whether that
is safe here is measured: per parametrisation, the loss at the larger width when trained with the
smaller width's best learning rate, against the larger width's own best. Under µP the gap should
be inside run-to-run noise; under the standard parametrisation it need not be.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd

from tokenfilter.analysis.fits import final_losses
from tokenfilter.analysis.scorecard import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, _row

DOMAINS = ("forget", "retain_near", "retain_far")
TABLE_COLUMNS = ["n_layer", "parametrisation", "n_embd", "size", "lr", "weight_decay", "mup_base_width", "loss",
                 "runs"]


def _parametrisation(base: Any) -> str:
    return "SP" if base is None or (isinstance(base, float) and math.isnan(base)) else f"µP (base {int(base)})"


def sweep_runs(losses: pd.DataFrame, series: str, variants: dict[str, dict[str, Any]], ladder: dict[str, dict[str, Any]],
               default_mup: int | None) -> pd.DataFrame:
    """One row per run of the sweep: its size's shape, the variant's hyperparameters, final losses
    and their mean (the selection score)."""
    # The series' table also holds the shared baselines (variant "none"): keep the sweep's own runs.
    wide = final_losses(losses[losses["variant"].isin(list(variants))])
    rows = []
    for rec in wide.to_dict("records"):
        shape = ladder[rec["size"]]
        hp = {**{k: shape[k] for k in ("lr", "weight_decay")}, "mup_base_width": default_mup,
              **variants.get(rec["variant"], {})}
        row = {"size": rec["size"], "variant": rec["variant"], "replicate": int(rec.get("replicate", 0)),
               "n_layer": shape["n_layer"], "n_embd": shape["n_embd"], "params": rec["params"],
               "lr": float(hp["lr"]), "weight_decay": float(hp["weight_decay"]),
               "mup_base_width": hp["mup_base_width"], "parametrisation": _parametrisation(hp["mup_base_width"]),
               **{d: float(rec[d]) for d in DOMAINS if d in rec}}
        row["loss"] = float(np.mean([row[d] for d in DOMAINS if d in row]))
        rows.append(row)
    return pd.DataFrame(rows)


def best_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (depth, parametrisation, width): the (lr, weight decay) of the lowest mean loss."""
    if runs.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    means = runs.groupby(["n_layer", "parametrisation", "n_embd", "size", "lr", "weight_decay"], dropna=False) \
        .agg(loss=("loss", "mean"), runs=("loss", "size"), mup_base_width=("mup_base_width", "first")).reset_index()
    best = means.loc[means.groupby(["n_layer", "parametrisation", "n_embd"])["loss"].idxmin()]
    return best[TABLE_COLUMNS].sort_values(["n_layer", "parametrisation", "n_embd"]).reset_index(drop=True)


def transfer_gaps(runs: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per (depth, parametrisation, weight decay): the larger width's loss at the smallest width's
    best learning rate minus its own best at that weight decay (0 = the optimum transfers)."""
    rows = []
    for (n_layer, param), best in table.groupby(["n_layer", "parametrisation"]):
        widths = sorted(best["n_embd"])
        if len(widths) < 2:
            continue
        # The transfer is read along the learning-rate curve of the weight decay swept most (a
        # weight decay tried at one rate has no curve), at the small width's best rate on it.
        group = runs[(runs["n_layer"] == n_layer) & (runs["parametrisation"] == param)]
        wd = group.groupby("weight_decay")["lr"].nunique().idxmax()
        on_curve = group[np.isclose(group["weight_decay"], wd) & (group["n_embd"] == widths[0])]
        small = on_curve.groupby("lr")["loss"].mean()
        small = pd.Series({"lr": float(small.idxmin()), "weight_decay": float(wd)})
        for width in widths[1:]:
            at = runs[(runs["n_layer"] == n_layer) & (runs["parametrisation"] == param) & (runs["n_embd"] == width)
                      & np.isclose(runs["weight_decay"], small["weight_decay"])]
            curve = at.groupby("lr")["loss"].mean()
            if curve.empty or not np.isclose(curve.index, small["lr"]).any():
                continue
            transferred = float(curve[np.isclose(curve.index, small["lr"])].iloc[0])
            small_curve = runs[(runs["n_layer"] == n_layer) & (runs["parametrisation"] == param)
                               & (runs["n_embd"] == widths[0]) & np.isclose(runs["weight_decay"], small["weight_decay"])]
            grid = sorted(set(curve.index) | set(small_curve["lr"]))
            edge = small["lr"] in (grid[0], grid[-1]) or float(curve.idxmin()) in (grid[0], grid[-1])
            rows.append({"n_layer": n_layer, "parametrisation": param, "small_width": widths[0], "width": width,
                         "lrs": min(len(curve), small_curve["lr"].nunique()), "at_grid_edge": edge,
                         "small_best_lr": small["lr"], "own_best_lr": float(curve.idxmin()),
                         "loss_at_transferred_lr": transferred, "own_best_loss": float(curve.min()),
                         "gap": transferred - float(curve.min())})
    return pd.DataFrame(rows, columns=["n_layer", "parametrisation", "small_width", "width", "lrs", "at_grid_edge",
                                       "small_best_lr", "own_best_lr", "loss_at_transferred_lr", "own_best_loss", "gap"])


def transfer_claims(gaps: pd.DataFrame, spread: float, seeds: int) -> list[dict]:
    """E0: under µP the small width's optimum transfers (gap inside the noise); reported beside SP."""
    claim = "Under µP the best learning rate found at a small width transfers to a larger width"
    paper = "every model trained with µP; hyperparameters swept at small width (Table 2)"
    mup = gaps[gaps["parametrisation"].str.startswith("µP")] if not gaps.empty else gaps
    if mup.empty or (mup["lrs"] < 3).any():
        return [_row(claim, paper, "Table 2", NOT_MEASURED, "needs µP variants at two widths with at least three "
                     "learning rates at each (an optimum needs a rate on either side)")]
    sp = gaps[gaps["parametrisation"] == "SP"]
    worst = float(mup["gap"].max())
    measured = "; ".join(f"{r.parametrisation}: width {r.small_width}→{r.width}, best lr {r.small_best_lr:g} → "
                         f"{r.own_best_lr:g}, {r.gap:+.3f} nats at the transferred lr"
                         + (" (an optimum at the grid's edge)" if r.at_grid_edge else "")
                         for r in pd.concat([mup, sp]).itertuples())
    if not np.isfinite(spread):
        return [_row(claim, paper, "Table 2", INCONCLUSIVE, measured, -worst, spread,
                     "no seeded baseline in the main series to measure run-to-run noise with")]
    margin = spread - worst
    if mup["at_grid_edge"].any():
        return [_row(claim, paper, "Table 2", INCONCLUSIVE, measured, margin, spread,
                     "a best rate lies at the edge of the grid, so the optimum is not bracketed and its move "
                     "cannot be read (config/full.yaml sweeps a wider grid)", f"{spread:.3f} nats")]
    if worst <= spread:
        verdict, why = HOLDS, f"the transfer costs {worst:+.3f} nats, inside the baseline's seed spread {spread:.3f}"
    elif worst > 2 * spread:
        verdict, why = FAILS, f"the transfer costs {worst:+.3f} nats, over twice the baseline's seed spread {spread:.3f}"
    else:
        verdict, why = INCONCLUSIVE, f"the transfer costs {worst:+.3f} nats, within 1-2x the seed spread {spread:.3f}"
    return [_row(claim, paper, "Table 2", verdict, measured, margin, spread,
                 why + f" ({seeds} seeds; mean loss over the three held-out sets)", f"{spread:.3f} nats")]


def baseline_mean_loss_spread(main_losses: pd.DataFrame) -> tuple[float, int]:
    """Range over seeds of the main series' baseline mean held-out loss at its seeded size."""
    wide = final_losses(main_losses)
    wide = wide[wide["arm"] == "baseline"].copy()
    if wide.empty or "replicate" not in wide.columns:
        return math.nan, 0
    wide["mean"] = wide[[d for d in DOMAINS if d in wide.columns]].mean(axis=1)
    counts = wide.groupby("size")["mean"].agg(["max", "min", "count"])
    counts = counts[counts["count"] >= 2]
    if counts.empty:
        return math.nan, 0
    row = counts.iloc[int(np.argmax(counts["count"].to_numpy()))]
    return float(row["max"] - row["min"]), int(row["count"])


def plot_lr_sweep(runs: pd.DataFrame, path: str | os.PathLike) -> None:
    """Mean held-out loss against learning rate, one line per width, parametrisation and weight decay."""
    from tokenfilter.analysis.plots import _empty_note, _figure, _save

    params = sorted(runs["parametrisation"].unique()) if not runs.empty else []
    fig, axes = _figure(1, max(1, len(params)), 5.0 * max(1, len(params)), 3.8)
    for ax, param in zip(axes[0], params):
        for (width, wd), curve in runs[runs["parametrisation"] == param].groupby(["n_embd", "weight_decay"]):
            curve = curve.groupby("lr")["loss"].mean()
            ax.plot(curve.index, curve.values, marker="o", label=f"width {width}, wd {wd:g}")
            ax.scatter([curve.idxmin()], [curve.min()], marker="*", s=120, color="k", zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate")
        ax.set_ylabel("mean held-out loss (nats)")
        ax.set_title(param, fontsize=10)
        ax.legend(fontsize=7)
    if not params:
        _empty_note(axes[0][0], "no sweep runs")
    fig.suptitle("Learning-rate sweep (paper E0, Table 2); stars: each line's best", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def write_lr_sweep(series: str, losses_csv: str, main_losses_csv: str | None, variants: dict[str, dict[str, Any]],
                   ladder: dict[str, dict[str, Any]], default_mup: int | None, out: dict[str, str]) -> pd.DataFrame:
    """The sweep's runs, its Table 2, the transfer table, the figure and the claim; returns the claims."""
    from tokenfilter.report.tables import write_table

    runs = sweep_runs(pd.read_csv(losses_csv), series, variants, ladder, default_mup)
    table = best_table(runs)
    gaps = transfer_gaps(runs, table)
    write_table(table, csv_path=out["table"], html_path=out["html"], title=f"Table 2 analogue: best hyperparameters (series {series})",
                note="Per depth, parametrisation and width: the learning rate and weight decay of the lowest mean "
                     "final loss over the held-out forget, retain-near and retain-far text. `training.hparams_from: "
                     f"{series}` trains the ladder with them. Transfer: the larger width's loss at the smallest "
                     "width's best learning rate minus its own best.\n\n" + gaps.to_string(index=False))
    plot_lr_sweep(runs, out["figure"])
    spread, seeds = baseline_mean_loss_spread(pd.read_csv(main_losses_csv)) if main_losses_csv else (math.nan, 0)
    claims = pd.DataFrame(transfer_claims(gaps, spread, seeds))
    claims["claim"] = claims["claim"] + f" [series {series}]"
    write_table(claims, csv_path=out["claims"])
    return claims


def hparams_for(table: pd.DataFrame, n_layer: int, n_embd: int, mup_base_width: int | None) -> dict[str, float]:
    """The (lr, weight decay) a ladder size trains with under ``training.hparams_from``: the row of
    its depth and parametrisation; under µP the smallest width's (its optimum transfers), under SP
    the nearest swept width's. Raises ValueError when the sweep has no row for them."""
    param = _parametrisation(mup_base_width)
    rows = table[(table["n_layer"] == n_layer) & (table["parametrisation"] == param)]
    if rows.empty:
        raise ValueError(f"the learning-rate sweep has no row for depth {n_layer} with {param}; rows: "
                         f"{sorted(set(zip(table['n_layer'], table['parametrisation'])))}")
    if param == "SP":
        row = rows.iloc[int(np.argmin(np.abs(np.log(rows["n_embd"].to_numpy(dtype=float) / n_embd))))]
    else:
        row = rows.sort_values("n_embd").iloc[0]
    return {"lr": float(row["lr"]), "weight_decay": float(row["weight_decay"])}


def sweep_hparams_for(table_csv: str | os.PathLike, model: dict[str, Any]) -> dict[str, float]:
    """:func:`hparams_for` of a training spec's ``model`` from the sweep's ``table2.csv``."""
    table = pd.read_csv(table_csv)
    table["mup_base_width"] = table["mup_base_width"].astype(object).where(table["mup_base_width"].notna(), None)
    try:
        return hparams_for(table, int(model["n_layer"]), int(model["n_embd"]), model.get("mup_base_width"))
    except ValueError as exc:
        raise ValueError(f"{table_csv}: {exc}") from None

"""The paper's loss and slowdown figures (Figs 1/19, 3, 4, 16), drawn from our tables.

Each function draws one figure and writes it as a PNG atomically (temporary file + rename, via
:func:`tokenfilter.io.atomic_path`). Figures are built on an explicit Agg canvas rather than
through pyplot, so drawing never touches matplotlib's global backend or figure registry and is
safe in any process (Snakemake jobs, notebooks, tests).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from tokenfilter.analysis.fits import (
    ARMS,
    BASELINE,
    DOMAINS,
    baseline_fits,
    final_checkpoints,
    final_losses,
    require_columns,
)
from tokenfilter.io import atomic_path

# One colour and one name per arm in every figure; names as in the paper's legends.
ARM_COLORS = {"baseline": "black", "document": "tab:orange", "mask": "tab:blue", "remove": "tab:green"}
ARM_LABELS = {"baseline": "Baseline", "document": "Document filter", "mask": "Token (masking)",
              "remove": "Token (removal)"}
ARM_MARKERS = {"baseline": "o", "document": "s", "mask": "^", "remove": "D"}
DOMAIN_LABELS = {"forget": "Forget (medical)", "retain_near": "Retain-near (biology)",
                 "retain_far": "Retain-far (general)"}

_DPI = 120


# --- shared helpers --------------------------------------------------------------------------

def _figure(nrows: int, ncols: int, width: float, height: float) -> tuple[Any, np.ndarray]:
    """A figure on its own Agg canvas (no pyplot state) and a 2-D array of its axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Any, path: str | os.PathLike) -> None:
    """Write ``fig`` as PNG atomically (the temporary name has no suffix, so name the format)."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)


def _arm_order(arms) -> list[str]:
    present = list(dict.fromkeys(arms))
    return [a for a in ARMS if a in present] + sorted(a for a in present if a not in ARMS)


def _label(arm: str, variant: str | None = None) -> str:
    name = ARM_LABELS.get(arm, arm)
    if variant is not None and variant not in ("none", "default"):
        name += f" [{variant}]"
    return name


def _empty_note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")


def _plain_log_yticks(ax: Any, suffix: str = "") -> None:
    """Plain tick labels ("8", "1.5×") on a log axis instead of 8×10⁰. Minor ticks are labelled
    only when the axis spans less than a decade (loss axes usually do), where they are the only
    ticks; across decades they would crowd the axis."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}{suffix}")
    lo, hi = sorted(ax.get_ylim())  # get_ylim applies pending autoscaling first
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain if lo > 0 and hi / lo < 10 else NullFormatter())


def _domains(df: pd.DataFrame) -> list[str]:
    present = set(df["domain"]) if "domain" in df.columns else set()
    return [d for d in DOMAINS if d in present] + sorted(present - set(DOMAINS))


# --- Fig 16: loss vs compute at the final checkpoints ----------------------------------------

def _loss_axes(ax: Any, domain: str, empty: bool, xlabel: str, empty_text: str) -> None:
    """Log-log loss-vs-compute axes of one eval domain."""
    if empty:
        _empty_note(ax, empty_text)
    else:
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_yticks(ax)
    ax.set_title(f"{DOMAIN_LABELS.get(domain, domain)} loss", fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss (nats/token)")
    ax.legend(fontsize=7)


def plot_compute_loss(df: pd.DataFrame, path: str | os.PathLike, fits: dict | None = None) -> None:
    """Fig 16: final loss vs pretraining compute (log-log), one panel per eval domain, one line
    per arm across the ladder; the dashed line is the baseline fit the slowdowns use (``fits``,
    by default the paper's pure power law over every baseline size)."""
    require_columns(df, ["arm", "size", "variant", "params", "final", "compute", "domain", "loss"], "loss table")
    fin = final_checkpoints(df)
    domains = _domains(fin) or list(DOMAINS)
    fig, axes = _figure(1, len(domains), 4.2 * len(domains), 3.8)
    if fits is None:
        try:
            fits = baseline_fits(fin)
        except ValueError:
            fits = {}  # fewer than 2 baseline sizes: no fit line to draw
    for ax, domain in zip(axes[0], domains):
        sub = fin[(fin["domain"] == domain) & (fin["compute"] > 0)]
        for arm in _arm_order(sub["arm"]):
            for variant, run in sub[sub["arm"] == arm].groupby("variant", sort=True):
                run = run.groupby("size").agg(compute=("compute", "mean"), loss=("loss", "mean")).sort_values("compute")
                ax.plot(run["compute"], run["loss"], marker=ARM_MARKERS.get(arm, "o"), ms=4,
                        color=ARM_COLORS.get(arm), label=_label(arm, variant))
        fit = fits.get(domain)
        if fit is not None and len(sub):
            c = np.geomspace(sub["compute"].min(), sub["compute"].max(), 50)
            ax.plot(c, fit.loss_at(c), ls="--", lw=1, color=ARM_COLORS["baseline"], alpha=0.6,
                    label=f"Baseline fit (b={fit.b:.3f}{f', E={fit.floor:.3f}' if fit.floor else ''}, R²={fit.r2:.3f})")
        _loss_axes(ax, domain, sub.empty, "pretraining compute C = 6·N·D (FLOPs)", "no final checkpoints")
    fig.suptitle("Loss vs compute at the end of training (paper Fig 16)", fontsize=11)
    _save(fig, path)


def plot_learning_curves(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Learning curves: loss vs training compute so far (6·N·tokens) at every checkpoint, one
    panel per domain; one line per run, coloured by arm, thicker for larger models."""
    require_columns(df, ["arm", "size", "variant", "params", "step", "compute", "domain", "loss"], "loss table")
    domains = _domains(df) or list(DOMAINS)
    fig, axes = _figure(1, len(domains), 4.2 * len(domains), 3.8)
    params = sorted(df["params"].unique()) if len(df) else []
    # Line width grows with model size so the ladder reads at a glance.
    width = {p: 0.8 + 1.6 * i / max(1, len(params) - 1) for i, p in enumerate(params)}
    for ax, domain in zip(axes[0], domains):
        sub = df[(df["domain"] == domain) & (df["compute"] > 0)]  # step 0 has no place on a log axis
        labelled = set()
        for (arm, variant, size), run in sub.groupby(["arm", "variant", "size"], sort=True):
            run = run.groupby("step").agg(compute=("compute", "mean"), loss=("loss", "mean"),
                                          params=("params", "max")).sort_values("compute")
            label = _label(arm, variant)
            ax.plot(run["compute"], run["loss"], color=ARM_COLORS.get(arm), alpha=0.8,
                    lw=width.get(run["params"].iloc[0], 1.0),
                    label=None if label in labelled else label)
            labelled.add(label)
        _loss_axes(ax, domain, sub.empty, "training compute so far, 6·N·tokens (FLOPs)",
                   "no checkpoints with compute > 0")
    fig.suptitle("Learning curves (every checkpoint; thicker line = larger model)", fontsize=11)
    _save(fig, path)


# --- Fig 4: forget vs retain frontier --------------------------------------------------------

def _better_arrow(ax: Any) -> None:
    """Mark the better corner: higher forget loss at lower retain loss (top-left)."""
    ax.annotate("better", xy=(0.04, 0.96), xytext=(0.2, 0.8), xycoords="axes fraction",
                textcoords="axes fraction", fontsize=8, color="0.3", ha="center",
                arrowprops={"arrowstyle": "->", "color": "0.3"})


def _forget_retain_axes(ax: Any, x: str, empty: bool) -> None:
    """Forget loss (y) against a retain loss (x), top-left better."""
    if empty:
        _empty_note(ax, f"no final forget and {x} losses")
    else:
        ax.legend(fontsize=7, loc="lower right")
    _better_arrow(ax)
    ax.set_xlabel(f"{DOMAIN_LABELS.get(x, x)} loss (nats/token)")
    ax.set_ylabel(f"{DOMAIN_LABELS['forget']} loss (nats/token)")


def plot_frontier(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Fig 4: forget loss vs retain loss at the final checkpoints, one line per arm through its
    ladder sizes (annotated); panels for retain-near and retain-far."""
    wide = final_losses(df)
    panels = ["retain_near", "retain_far"]
    fig, axes = _figure(1, len(panels), 5.0 * len(panels), 4.2)
    for ax, x in zip(axes[0], panels):
        have = x in wide.columns and "forget" in wide.columns
        pts = wide.dropna(subset=[x, "forget"]) if have else wide.iloc[0:0]
        for arm in _arm_order(pts["arm"]):
            for variant, run in pts[pts["arm"] == arm].groupby("variant", sort=True):
                run = run.sort_values("params")
                ax.plot(run[x], run["forget"], marker=ARM_MARKERS.get(arm, "o"), ms=5,
                        color=ARM_COLORS.get(arm), label=_label(arm, variant))
                for _, r in run.iterrows():
                    ax.annotate(str(r["size"]), (r[x], r["forget"]), xytext=(3, 3),
                                textcoords="offset points", fontsize=7, color=ARM_COLORS.get(arm))
        _forget_retain_axes(ax, x, pts.empty)
        ax.set_title(f"Forget vs {DOMAIN_LABELS.get(x, x).lower()} loss across sizes", fontsize=10)
    fig.suptitle("Forget–retain frontier (paper Fig 4); top-left is better", fontsize=11)
    _save(fig, path)


# --- Figs 1 / 19: loss-matched compute slowdown ----------------------------------------------

def plot_slowdown(slowdown_df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Figs 1/19: loss-matched compute slowdown vs pretraining compute (log-log) per arm, panels
    forget and retain-near. Hollow markers: the slowdown extrapolates the baseline power law."""
    require_columns(slowdown_df, ["arm", "variant", "compute", "domain", "slowdown", "extrapolated"],
                    "slowdown table")
    panels = ["forget", "retain_near"]
    fig, axes = _figure(1, 2, 10.0, 4.0)
    for ax, domain in zip(axes[0], panels):
        sub = slowdown_df[(slowdown_df["domain"] == domain) & np.isfinite(slowdown_df["slowdown"].astype(float))
                          & (slowdown_df["slowdown"] > 0)]
        for arm in _arm_order(sub["arm"]):
            for variant, run in sub[sub["arm"] == arm].groupby("variant", sort=True):
                run = run.sort_values("compute")
                color = ARM_COLORS.get(arm)
                ax.plot(run["compute"], run["slowdown"], color=color, lw=1.2, label=_label(arm, variant))
                extra = run["extrapolated"].astype(bool)
                marker = ARM_MARKERS.get(arm, "o")
                ax.plot(run.loc[~extra, "compute"], run.loc[~extra, "slowdown"], ls="none", marker=marker,
                        ms=6, color=color)
                ax.plot(run.loc[extra, "compute"], run.loc[extra, "slowdown"], ls="none", marker=marker,
                        ms=6, markerfacecolor="none", markeredgecolor=color)
                last = run.iloc[-1]
                ax.annotate(f"{last['slowdown']:.3g}×", (last["compute"], last["slowdown"]), xytext=(4, 0),
                            textcoords="offset points", fontsize=7, color=color, va="center")
        ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
        if sub.empty:
            _empty_note(ax, "no finite slowdowns (see the slowdown table's note column)")
        else:
            ax.set_xscale("log")
            ax.set_yscale("log")
            _plain_log_yticks(ax, suffix="×")
            ax.legend(fontsize=7, title="hollow = extrapolated", title_fontsize=7)
        ax.set_xlabel("pretraining compute of the filtered model (FLOPs)")
        ax.set_ylabel("loss-matched compute slowdown (×)")
        ax.set_title(f"{DOMAIN_LABELS.get(domain, domain)}: compute slowdown vs baseline", fontsize=10)
    fig.suptitle("Loss-matched compute slowdown (paper Figs 1, 19); > 1 = learns as if with less compute",
                 fontsize=11)
    _save(fig, path)


# --- Fig 3: thresholds series Pareto plot ----------------------------------------------------

def _point_label(row: pd.Series) -> str:
    frac = row.get("filtered_fraction")
    if frac is not None and np.isfinite(frac):
        return f"{100 * frac:.3g}%"
    return str(row.get("variant", ""))


def plot_threshold_pareto(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Fig 3: forget loss vs retain loss of the thresholds series (one row of panels per size:
    retain-near, retain-far); token arms vs document filtering, points labelled by the fraction
    of training tokens filtered, plus the baseline of that size (star)."""
    wide = final_losses(df)
    # One row of panels per size with filtered runs (the table may carry baselines of other sizes).
    filtered = wide[wide["arm"] != BASELINE]
    sizes = list(dict.fromkeys(filtered.sort_values("params")["size"])) or ["(none)"]
    panels = ["retain_near", "retain_far"]
    fig, axes = _figure(len(sizes), len(panels), 10.0, 4.2 * len(sizes))
    for row_axes, size in zip(axes, sizes):
        at = wide[wide["size"] == size]
        for ax, x in zip(row_axes, panels):
            have = x in at.columns and "forget" in at.columns
            pts = at.dropna(subset=[x, "forget"]) if have else at.iloc[0:0]
            for arm in _arm_order(pts["arm"]):
                run = pts[pts["arm"] == arm]
                color = ARM_COLORS.get(arm)
                if arm == BASELINE:
                    ax.plot(run[x], run["forget"], ls="none", marker="*", ms=12, color=color,
                            label=ARM_LABELS[BASELINE])
                    continue
                order = "filtered_fraction" if "filtered_fraction" in run.columns else x
                run = run.sort_values(order)
                ax.plot(run[x], run["forget"], marker=ARM_MARKERS.get(arm, "o"), ms=5, color=color,
                        label=_label(arm))
                for _, r in run.iterrows():
                    ax.annotate(_point_label(r), (r[x], r["forget"]), xytext=(3, 3),
                                textcoords="offset points", fontsize=7, color=color)
            _forget_retain_axes(ax, x, pts.empty)
            ax.set_title(f"size {size}: forget vs {DOMAIN_LABELS.get(x, x).lower()} "
                         "(labels: % of tokens filtered)", fontsize=9)
    fig.suptitle("Token vs document filtering across thresholds (paper Fig 3); top-left is better",
                 fontsize=11)
    _save(fig, path)


# --- filter series: the same arms with another filter ---------------------------------------

def plot_filter_comparison(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Final losses of each arm with the main series' filter and with a filter series' (the table
    of :func:`tokenfilter.analysis.findings.filter_error_table`), one panel per eval domain."""
    panels = [c for c in ("forget loss", "retain-near loss", "retain-far loss") if c in table.columns]
    fig, axes = _figure(1, max(1, len(panels)), 4.2 * max(1, len(panels)), 4.0)
    if table.empty or not panels:
        _empty_note(axes[0][0], "no runs of the filter series")
        _save(fig, path)
        return
    from tokenfilter.analysis.findings import ARM_LABELS as PROSE_LABELS

    arm_of_label = {label: arm for arm, label in PROSE_LABELS.items()}
    labels = [f"{r['arm']}\n{r['filter']} ({r['size']})" for _, r in table.iterrows()]
    colors = [ARM_COLORS.get(arm_of_label.get(r["arm"], ""), "0.5") for _, r in table.iterrows()]
    for ax, column in zip(axes[0], panels):
        ax.barh(np.arange(len(table)), table[column].astype(float), color=colors)
        ax.set_yticks(np.arange(len(table)))
        ax.set_yticklabels(labels if ax is axes[0][0] else [], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(f"{column} (nats/token)")
        ax.set_title(column, fontsize=10)
    fig.suptitle("Each arm with the main filter and with the filter series' filter", fontsize=11)
    _save(fig, path)

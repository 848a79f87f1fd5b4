"""Ablation sweeps of one filtering setting (paper §6.1, §6.2, App B.5): label noise (E14, Fig 12),
filtered fraction across sizes (E15, Fig 13) and delayed filtering (E18, Figs 22, 23).

A sweep series trains the token arms at one setting per variant. Each run is read against the
baseline of its own size and seed:

- ``d_forget``: how much higher its forget loss is than the baseline's, in nats (the effect of
  filtering at equal compute; no fit involved);
- ``slowdown``: the loss-matched compute slowdown on forget text against the whole baseline
  ladder (the series' ``slowdowns.csv``), flagged where it extrapolates the baseline law, which is
  where a strong filter at a small size sends it.

The swept quantity on the x axis is *measured*, not configured: a noise run's error rate is its
flags' error against the ground truth (the filter's own errors and the flips together, as the
paper computes it, 1 - a(1-r) - r(1-a)), a threshold run's is the fraction of tokens it filtered.

Sweep series have one seed; their claims are read against run-to-run noise measured where seeds
are trained: the range over seeds of the main series' masking run at its seeded size (the same
filter, the same arm), in the domain the claim reads. The spread of a difference of two runs is
larger than that of one run, so the verdicts here are, if anything, generous to "holds"; each row
says which spread it used.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd

from tokenfilter.analysis.fits import final_losses
from tokenfilter.analysis.scorecard import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, _row
from tokenfilter.config.experiments import Run
from tokenfilter.io import read_json

SWEEP_COLUMNS = ["series", "kind", "arm", "size", "params", "variant", "replicate", "filter", "structure", "setting",
                 "x", "forget", "retain_near", "retain_far", "baseline_forget", "baseline_retain_near",
                 "baseline_retain_far", "d_forget", "d_retain_near", "d_retain_far", "slowdown", "extrapolated"]
X_LABELS = {"noise": "error rate of the flags against the truth", "delay": "delay (fraction of training unfiltered)",
            "thresholds": "fraction of training tokens filtered"}
DELAY_READ = 0.4  # the paper's "delaying filtering by 40% makes it ~10x less effective"
DELAY_RATIO = 3.0  # half an order of magnitude: what "about 10x less effective" must at least mean here


def sweep_table(kind: str, losses: pd.DataFrame, slowdowns: pd.DataFrame, summaries: list[dict[str, Any]],
                variants: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per filtered run of the series (final checkpoint): its setting, the measured x,
    its losses and those of the same-size, same-seed baseline, the differences and the forget
    slowdown."""
    wide = final_losses(losses)
    if "replicate" not in wide.columns:
        wide = wide.assign(replicate=0)
    base = wide[wide["arm"] == "baseline"].set_index(["size", "replicate"])
    quality = {}
    for summary in summaries:
        run = Run.parse(summary["run"])
        quality[(run.arm, run.size, run.variant, run.replicate)] = summary
    slow = slowdowns[slowdowns["domain"] == "forget"] if not slowdowns.empty else slowdowns
    slow_at = {(r.arm, r.size, r.variant, int(r.replicate)): r for r in slow.itertuples()} if not slow.empty else {}
    rows = []
    for rec in wide[wide["arm"] != "baseline"].to_dict("records"):
        key = (rec["arm"], rec["size"], rec["variant"], int(rec["replicate"]))
        settings = variants.get(rec["variant"], {})
        summary = quality.get(key, {})
        filter_quality = summary.get("filter_quality") or {}
        if kind == "noise":
            x = filter_quality.get("error_rate", math.nan)
            setting = settings.get("noise", 0.0)
        elif kind == "delay":
            x = setting = settings.get("delay", 0.0)
        else:
            x = summary.get("filtered_fraction", rec.get("filtered_fraction", math.nan))
            setting = settings.get("fraction")
        row = {"series": rec["series"], "kind": kind, "arm": rec["arm"], "size": rec["size"], "params": rec["params"],
               "variant": rec["variant"], "replicate": int(rec["replicate"]),
               "filter": settings.get("filter") or ((summary.get("spec") or {}).get("data", {}).get("filtering") or {}).get("filter")
               or "main filter",
               "structure": settings.get("noise_structure", "uniform") if kind == "noise" else "",
               "setting": setting, "x": float(x) if x is not None else math.nan}
        for domain in ("forget", "retain_near", "retain_far"):
            value = float(rec.get(domain, math.nan))
            reference = float(base.loc[(rec["size"], rec["replicate"]), domain]) \
                if (rec["size"], rec["replicate"]) in base.index else math.nan
            row.update({domain: value, f"baseline_{domain}": reference, f"d_{domain}": value - reference})
        s = slow_at.get(key)
        row["slowdown"] = float(s.slowdown) if s is not None else math.nan
        row["extrapolated"] = bool(s.extrapolated) if s is not None else False
        rows.append(row)
    out = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    return out.sort_values(["arm", "filter", "structure", "params", "x"], kind="stable").reset_index(drop=True)


def seed_spread(main_losses: pd.DataFrame, arm: str, domain: str) -> tuple[float, int, str | None]:
    """(range over seeds, seeds, size) of the main series' ``arm`` in ``domain`` at the largest
    size with at least two seeds; NaN where none has."""
    wide = final_losses(main_losses)
    if "replicate" not in wide.columns:
        return math.nan, 0, None
    rows = wide[wide["arm"] == arm]
    by_size = rows.groupby("size")[domain].agg(["max", "min", "count"])
    by_size = by_size[by_size["count"] >= 2]
    if by_size.empty:
        return math.nan, 0, None
    params = rows.groupby("size")["params"].max()
    size = max(by_size.index, key=lambda s: params[s])
    return float(by_size.loc[size, "max"] - by_size.loc[size, "min"]), int(by_size.loc[size, "count"]), str(size)


def power_law(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least-squares ln y = a + b ln x over positive pairs: exponent b, its standard error, R²."""
    ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    n = int(ok.sum())
    if n < 3 or np.ptp(lx) == 0:
        return {"n": n, "a": math.nan, "b": math.nan, "b_se": math.nan, "r2": math.nan}
    b, a = np.polyfit(lx, ly, 1)
    resid = ly - (a + b * lx)
    r2 = 1 - float(resid @ resid) / float(((ly - ly.mean()) ** 2).sum()) if np.ptp(ly) > 0 else math.nan
    b_se = math.sqrt(float(resid @ resid) / (n - 2) / float(((lx - lx.mean()) ** 2).sum())) if n > 2 else math.nan
    return {"n": n, "a": float(a), "b": float(b), "b_se": b_se, "r2": r2}


def _spread_text(spread: float, seeds: int, size: str | None, domain: str) -> str:
    return f"{spread:.3f} nats ({domain.replace('_', '-')} range over {seeds} seeds of main-series masking at {size})"


def _decided(claim: str, paper: str, source: str, margin: float, spread: float, seeds: int, size: str | None,
             domain: str, measured: str) -> dict:
    if not np.isfinite(margin):
        return _row(claim, paper, source, NOT_MEASURED, measured or "the margin could not be computed")
    if not np.isfinite(spread):
        return _row(claim, paper, source, INCONCLUSIVE, measured, margin, spread,
                    "no seeded masking run in the main series to measure run-to-run noise with")
    text = _spread_text(spread, seeds, size, domain)
    if margin > spread:
        verdict, why = HOLDS, f"margin {margin:+.3f} exceeds the spread {text}"
    elif margin < -spread:
        verdict, why = FAILS, f"margin {margin:+.3f} is below minus the spread {text}"
    else:
        verdict, why = INCONCLUSIVE, f"margin {margin:+.3f} is inside the spread {text}"
    return _row(claim, paper, source, verdict, measured, margin, spread, why, f"{spread:.3f} nats")


def noise_claims(table: pd.DataFrame, spread: tuple[float, int, str | None]) -> list[dict]:
    """E14: effectiveness falls steeply as error rises (a power law in the paper); and, beyond the
    paper, whether errors where a classifier errs cost as much as uniform ones."""
    rows = []
    claim = "Slowdown falls as a power law of the classifier's error rate (label noise)"
    paper = "a power law: at low error a little more error sharply cuts effectiveness (Fig 12)"
    uniform = table[(table["structure"] == "uniform") & (table["arm"] == "mask")]
    largest = uniform[uniform["params"] == uniform["params"].max()] if not uniform.empty else uniform
    points = largest.dropna(subset=["x", "d_forget"]).sort_values("x")
    if len(points) < 3:
        rows.append(_row(claim, paper, "Fig 12", NOT_MEASURED, f"{len(points)} uniform-noise masking runs at one size (need 3)"))
    else:
        fit = power_law(points["x"].to_numpy(), points["slowdown"].to_numpy())
        low, high = points.iloc[0], points.iloc[-1]
        margin = float(low["d_forget"] - high["d_forget"])
        extrapolated = int(points["extrapolated"].sum())
        measured = (f"at {low['size']}: forget-loss gain over the baseline {low['d_forget']:+.2f} nats at error "
                    f"{low['x']:.1%} vs {high['d_forget']:+.2f} at {high['x']:.1%}; slowdown ∝ error^{fit['b']:.2f} "
                    f"(± {fit['b_se']:.2f}, R² {fit['r2']:.2f}, n {fit['n']}; {extrapolated} of {len(points)} slowdowns "
                    "extrapolate the baseline law)")
        rows.append(_decided(claim, paper, "Fig 12", margin, spread[0], spread[1], spread[2], "forget", measured))
    claim = "Errors where a real classifier errs (span edges, ambiguous words) weaken masking less than uniform errors at the same rate"
    paper = "not in the paper (it flips uniformly); docs/findings.md §4 asks whether the errors' structure decides"
    structured = table[(table["structure"] == "structured") & (table["arm"] == "mask")]
    pairs = []
    for s in structured.itertuples():
        match = uniform[(uniform["size"] == s.size) & (uniform["filter"] == s.filter) &
                        (np.isclose(uniform["setting"], s.setting)) & (uniform["replicate"] == s.replicate)]
        if s.setting > 0 and len(match):
            pairs.append((s.setting, float(s.d_forget) - float(match.iloc[0]["d_forget"])))
    if not pairs:
        rows.append(_row(claim, paper, "Fig 12", NOT_MEASURED, "no structured-noise run with a uniform twin at its rate"))
    else:
        margin = float(np.mean([d for _, d in pairs]))
        measured = "forget-loss gain, structured minus uniform: " + ", ".join(f"{d:+.2f} nats at r {r:g}" for r, d in pairs)
        rows.append(_decided(claim, paper, "Fig 12", margin, spread[0], spread[1], spread[2], "forget", measured))
    return rows


def threshold_claims(table: pd.DataFrame, forget_spread: tuple, retain_spread: tuple) -> list[dict]:
    """E15: more aggressive thresholds raise forget loss and retain loss at every size, and the
    forget gain from filtering more grows with scale."""
    rows = []
    mask = table[table["arm"] == "mask"].dropna(subset=["x"])
    sizes = [s for s in mask.sort_values("params")["size"].unique() if mask[mask["size"] == s]["x"].nunique() >= 2]
    ends = {}
    for size in sizes:
        runs = mask[mask["size"] == size].sort_values("x")
        ends[size] = (runs.iloc[0], runs.iloc[-1])
    specs = [("forget", "More aggressive thresholds raise forget loss at every size (masking)",
              "more aggressive filtering pushes the trend toward high medical loss (Fig 13)", forget_spread),
             ("retain_near", "More aggressive thresholds raise retain loss across the board (masking)",
              "but raise non-medical loss across the board (Fig 13)", retain_spread)]
    for domain, claim, paper, spread in specs:
        if not ends:
            rows.append(_row(claim, paper, "Fig 13", NOT_MEASURED, "no size with two thresholds of masking"))
            continue
        gains = {s: float(hi[domain] - lo[domain]) for s, (lo, hi) in ends.items()}
        margin = min(gains.values())
        measured = "; ".join(f"{s}: {gains[s]:+.2f} nats from {ends[s][0]['x']:.0%} to {ends[s][1]['x']:.0%} filtered"
                             for s in gains)
        rows.append(_decided(claim, paper, "Fig 13", margin, spread[0], spread[1], spread[2], domain, measured))
    claim = "Filtering more aggressively gains more forget loss at larger scale (masking)"
    paper = "with enough scale, aggressive filtering moves the trend toward high medical, low non-medical loss (Fig 13)"
    if len(ends) < 2:
        rows.append(_row(claim, paper, "Fig 13", NOT_MEASURED, "needs two sizes with two thresholds each"))
    else:
        first, last = sizes[0], sizes[-1]
        gain = {s: float(ends[s][1]["forget"] - ends[s][0]["forget"]) for s in (first, last)}
        margin = gain[last] - gain[first]
        measured = f"forget gain from the lowest to the highest fraction: {first} {gain[first]:+.2f}, {last} {gain[last]:+.2f} nats"
        rows.append(_decided(claim, paper, "Fig 13", margin, forget_spread[0], forget_spread[1], forget_spread[2],
                             "forget", measured))
    return rows


def delay_claims(table: pd.DataFrame, spread: tuple) -> list[dict]:
    """E18 at the largest size of the series: a 40% delay keeps at most a third of the forget-loss
    gain (the paper's ~10x, read as a ratio of the gains, or of log-slowdowns); filtering late is
    much worse than filtering early."""
    rows = []
    mask = table[table["arm"] == "mask"]
    if mask.empty:
        return [_row("Delaying filtering by 40% makes it about an order of magnitude less effective",
                     "delaying filtering by 40% makes it ~10x less effective (Fig 22)", "Fig 22", NOT_MEASURED,
                     "no masking runs in the series")]
    largest = mask[mask["params"] == mask["params"].max()].sort_values("setting")
    size = largest.iloc[0]["size"]
    at = {round(float(r.setting), 6): r for r in largest.itertuples()}
    claim = f"Delaying filtering by {DELAY_READ:.0%} makes it about an order of magnitude less effective"
    paper = "delaying filtering by 40% makes it ~10x less effective (Fig 22)"
    if 0.0 not in at or DELAY_READ not in at:
        rows.append(_row(claim, paper, "Fig 22", NOT_MEASURED, f"needs delays 0 and {DELAY_READ} at one size"))
    else:
        g0, g40 = float(at[0.0].d_forget), float(at[DELAY_READ].d_forget)
        s0, s40 = float(at[0.0].slowdown), float(at[DELAY_READ].slowdown)
        log_ratio = math.log(s0) / math.log(s40) if s0 > 1 and s40 > 1 else math.nan
        margin = g0 - DELAY_RATIO * g40
        measured = (f"at {size}: forget-loss gain {g0:+.2f} nats undelayed vs {g40:+.2f} at {DELAY_READ:.0%} delay "
                    f"(ratio {g0 / g40 if g40 else math.inf:.1f}); slowdown {s0:.3g}× vs {s40:.3g}× "
                    f"(ratio of log-slowdowns {log_ratio:.2f}); holds if the gain falls at least {DELAY_RATIO:g}×")
        rows.append(_decided(claim, paper, "Fig 22", margin, spread[0], spread[1], spread[2], "forget", measured))
    claim = "Most of filtering's effect is won early: filtering only near the end is much worse"
    paper = "filtering only near the end is 'exponentially worse'; most gains are won early (Fig 22)"
    if len(at) < 2:
        rows.append(_row(claim, paper, "Fig 22", NOT_MEASURED, "needs at least two delays at one size"))
    else:
        first, last = min(at), max(at)
        margin = float(at[first].d_forget - at[last].d_forget)
        measured = f"at {size}: forget-loss gain {at[first].d_forget:+.2f} nats at delay {first:.0%} vs {at[last].d_forget:+.2f} at {last:.0%}"
        rows.append(_decided(claim, paper, "Fig 22", margin, spread[0], spread[1], spread[2], "forget", measured))
    return rows


def plot_sweep(table: pd.DataFrame, kind: str, path: str | os.PathLike) -> None:
    """Fig 12 / 13 / 22: slowdown (left, log; hollow = extrapolated) and forget-loss gain over the
    same-size baseline (right) against the measured setting, one line per size and error model."""
    from tokenfilter.analysis.plots import _empty_note, _figure, _save

    fig, axes = _figure(1, 2, 10.5, 3.9)
    left, right = axes[0]
    groups = table[table["arm"] == "mask"] if (table["arm"] == "mask").any() else table
    keys = ["size", "filter", "structure"]
    for (size, filt, structure), runs in groups.groupby(keys, sort=False, dropna=False):
        runs = runs.sort_values("x")
        label = " ".join(str(v) for v in (size, filt, structure) if isinstance(v, str) and v)
        line, = right.plot(runs["x"], runs["d_forget"], marker="o", label=label)
        ok = runs[np.isfinite(runs["slowdown"])]
        left.plot(ok["x"], ok["slowdown"], color=line.get_color(), lw=1)
        inside, outside = ok[~ok["extrapolated"]], ok[ok["extrapolated"]]
        left.scatter(inside["x"], inside["slowdown"], color=line.get_color())
        left.scatter(outside["x"], outside["slowdown"], facecolors="none", edgecolors=line.get_color())
    if groups.empty:
        _empty_note(left, "no runs")
    left.set_yscale("log")
    if kind == "noise" and (groups["x"] > 0).any():
        left.set_xscale("log")
    for ax in (left, right):
        ax.set_xlabel(X_LABELS[kind])
    left.set_ylabel("forget slowdown (× compute; hollow: extrapolated)")
    right.set_ylabel("forget loss minus the same-size baseline's (nats)")
    right.axhline(0, color="0.6", lw=0.8)
    right.legend(fontsize=7)
    titles = {"noise": "Label noise (paper Fig 12)", "thresholds": "Thresholds across sizes (paper Fig 13)",
              "delay": "Delayed filtering (paper Fig 22)"}
    fig.suptitle(titles[kind], fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def plot_sweep_frontier(table: pd.DataFrame, kind: str, path: str | os.PathLike) -> None:
    """Fig 23 (and its analogue for the other sweeps): forget vs retain-near loss, one line per
    setting across sizes, with the baselines."""
    from tokenfilter.analysis.plots import _figure, _save

    fig, axes = _figure(1, 1, 5.6, 4.2)
    ax = axes[0][0]
    base = table.drop_duplicates(["size", "replicate"]).sort_values("params")
    ax.plot(base["baseline_retain_near"], base["baseline_forget"], "k--", marker="s", label="baseline")
    for (setting, structure), runs in table[table["arm"] == "mask"].groupby(["setting", "structure"], sort=True, dropna=False):
        runs = runs.sort_values("params")
        ax.plot(runs["retain_near"], runs["forget"], marker="o", label=f"{setting:g} {structure}".strip())
    ax.set_xlabel("retain-near loss (nats)")
    ax.set_ylabel("forget loss (nats)")
    ax.legend(fontsize=7, title={"noise": "flip rate", "delay": "delay", "thresholds": "fraction"}[kind])
    ax.set_title({"noise": "Frontier by label noise", "delay": "Frontier by delay (paper Fig 23)",
                  "thresholds": "Frontier by threshold"}[kind], fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def write_sweep(kind: str, series: str, losses_csv: str, slowdowns_csv: str, main_losses_csv: str,
                summary_paths: list[str], variants: dict[str, dict[str, Any]], out: dict[str, str]) -> pd.DataFrame:
    """The sweep table, its figures and its claims (each written atomically); returns the claims."""
    from tokenfilter.report.tables import write_table

    losses = pd.read_csv(losses_csv)
    slowdowns = pd.read_csv(slowdowns_csv)
    table = sweep_table(kind, losses, slowdowns, [read_json(p) for p in summary_paths], variants)
    write_table(table, csv_path=out["csv"], html_path=out["html"], title=f"{X_LABELS[kind].capitalize()}: series {series}",
                note="Per run: its setting, the measured x, final losses, the same-size same-seed baseline's, the "
                     "differences (nats) and the loss-matched forget slowdown against the whole baseline ladder "
                     "(extrapolated where the filtered loss lies outside the baselines').")
    plot_sweep(table, kind, out["figure"])
    plot_sweep_frontier(table, kind, out["frontier"])
    main = pd.read_csv(main_losses_csv)
    forget_spread = seed_spread(main, "mask", "forget")
    if kind == "noise":
        rows = noise_claims(table, forget_spread)
    elif kind == "delay":
        rows = delay_claims(table, forget_spread)
    else:
        rows = threshold_claims(table, forget_spread, seed_spread(main, "mask", "retain_near"))
    claims = pd.DataFrame(rows)
    claims["claim"] = claims["claim"] + f" [series {series}]"
    write_table(claims, csv_path=out["claims"])
    return claims

"""Compute–loss fits, loss-matched compute slowdowns and Pareto comparisons (pure functions).

Input is the tidy loss table the workflow builds, one row per (run, checkpoint, domain):
``series, arm, size, variant, params, step, tokens, final, compute, domain, loss`` (and
``filtered_fraction`` in the thresholds series). Nothing here plots or writes files; the figures
live in :mod:`tokenfilter.analysis.plots` and the claims scorecard in :mod:`tokenfilter.analysis.scorecard`.

The slowdown follows the authors' ``analysis/scaling.py`` (paper §4.2, Figs 1 and 19, App B.1):
fit ln L = a + b·ln C by least squares over the baseline ladder's final checkpoints, separately
for each eval domain; a filtered model with compute C_f and loss L_f reaches the loss the
baseline fit reaches at C_b* = exp((ln L_f − a)/b), and its slowdown is C_f / C_b*.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from tokenfilter import ARMS, DOMAINS, TOKEN_ARMS

BASELINE = "baseline"

# Columns every analysis needs from the tidy loss table.
_LOSS_COLUMNS = ("arm", "size", "variant", "params", "final", "compute", "domain", "loss")
# Run identity inside one table (the series column is the same on every row of a table).
_RUN_KEYS = ["series", "arm", "size", "variant"]

# Losses are compared with the baseline range with this relative slack, so that a filtered loss
# equal to a baseline loss up to float rounding is not called an extrapolation.
_RANGE_RTOL = 1e-9


# --- checks and small helpers ----------------------------------------------------------------

def require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """Raise ValueError naming the columns ``df`` lacks (``what`` says which table it is)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; has {list(df.columns)}")


def final_checkpoints(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the end-of-training checkpoints only (the paper's ladder points)."""
    require_columns(df, ["final"], "loss table")
    return df[df["final"].astype(bool)]


def size_order(df: pd.DataFrame) -> list[str]:
    """Ladder size names from smallest to largest parameter count (names like 'xs' do not sort)."""
    require_columns(df, ["size", "params"], "table")
    by_size = df.groupby("size", sort=False)["params"].max()
    return list(by_size.sort_values(kind="stable").index)


def final_losses(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run at its final checkpoint, one loss column per domain (wide format).

    Keeps ``series, arm, size, variant, params, compute`` and ``filtered_fraction`` where present.
    Duplicate rows of one run, checkpoint and domain are averaged (they are copies of one
    evaluation).
    """
    require_columns(df, _LOSS_COLUMNS, "loss table")
    fin = final_checkpoints(df)
    keys = [k for k in _RUN_KEYS if k in fin.columns]
    extra = [c for c in ("filtered_fraction",) if c in fin.columns]
    wide = (fin.groupby(keys + ["params", "compute", "domain"])["loss"].mean()
            .unstack("domain").reset_index())
    wide.columns.name = None
    if extra:
        frac = fin.groupby(keys, dropna=False)["filtered_fraction"].mean().reset_index()
        wide = wide.merge(frac, on=keys, how="left")
    return wide.sort_values(["params", "arm", "variant"], kind="stable").reset_index(drop=True)


# --- power-law fit ---------------------------------------------------------------------------

FIT_FORMS = ("power_law", "power_law_with_floor")


@dataclass(frozen=True)
class PowerLawFit:
    """L = E + exp(a)·C^b fitted by least squares in ln L; ranges are those of the fitted points.

    ``floor`` E is 0 for the paper's pure power law (ln L = a + b·ln C). With
    ``power_law_with_floor`` E is the irreducible loss the ladder approaches, fitted too: small
    models on the built-in world come close to its entropy floor, where a pure power law bends
    away from the data. ``b`` is the log-log slope of the reducible loss (negative when loss
    falls with compute; the paper's exponent α is −b). ``r2`` is the R² of ln L (NaN when all
    losses are equal), comparable between the two forms.
    """

    a: float
    b: float
    r2: float
    n: int
    loss_min: float
    loss_max: float
    compute_min: float
    compute_max: float
    floor: float = 0.0
    form: str = "power_law"

    @property
    def decreasing(self) -> bool:
        """Whether loss falls with compute, the only case in which a loss-matched compute exists."""
        return self.b < 0

    def loss_at(self, compute: float | np.ndarray) -> float | np.ndarray:
        """Loss the fitted baseline reaches at ``compute``."""
        return self.floor + np.exp(self.a + self.b * np.log(compute))

    def compute_at(self, loss: float | np.ndarray) -> float | np.ndarray:
        """Compute at which the fitted baseline reaches ``loss`` (C_b* of paper §4.2).

        NaN when the fit does not decrease (b ≥ 0): then more compute does not buy lower loss
        and "the compute that reaches this loss" is undefined or meaningless; and NaN for a
        loss at or below the fitted floor, which no baseline reaches.
        """
        loss = np.asarray(loss, dtype=float)
        if not self.decreasing:
            out = np.full(loss.shape, np.nan)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                out = np.exp((np.log(loss - self.floor) - self.a) / self.b)
        return float(out) if out.ndim == 0 else out

    def in_loss_range(self, loss: float) -> bool:
        """Whether ``loss`` lies inside the fitted baseline losses (else C_b* is extrapolated)."""
        slack = _RANGE_RTOL * max(abs(self.loss_min), abs(self.loss_max))
        return self.loss_min - slack <= loss <= self.loss_max + slack


def fit_power_law(compute: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray,
                  form: str = "power_law") -> PowerLawFit:
    """Least-squares fit of the baseline's compute-loss law.

    ``power_law``: ln L = a + b·ln C (the authors' natural-log OLS, analysis/scaling.py).
    ``power_law_with_floor``: L = E + exp(a)·C^b, minimising the squared error in ln L; for each
    floor E on a fine grid in [0, min L) the line through ln(L − E) is OLS, and the E with the
    smallest ln L error wins. Needs at least 3 points (one more than the pure law).

    Raises ValueError when the points cannot define the law: too few points, fewer than 2
    distinct compute values, non-positive / non-finite values, or an unknown form.
    """
    if form not in FIT_FORMS:
        raise ValueError(f"fit_power_law: unknown form {form!r}; allowed: {list(FIT_FORMS)}")
    c = np.asarray(compute, dtype=float).ravel()
    losses = np.asarray(loss, dtype=float).ravel()
    if c.shape != losses.shape:
        raise ValueError(f"fit_power_law: {c.size} compute values but {losses.size} losses")
    if c.size < 2:
        raise ValueError(f"fit_power_law: need at least 2 (compute, loss) points, got {c.size}")
    bad = ~(np.isfinite(c) & np.isfinite(losses) & (c > 0) & (losses > 0))
    if bad.any():
        raise ValueError(f"fit_power_law: compute and loss must be positive and finite; "
                         f"bad points: {list(zip(c[bad].tolist(), losses[bad].tolist()))}")
    x, y = np.log(c), np.log(losses)
    if np.ptp(x) == 0:
        raise ValueError(f"fit_power_law: all {c.size} points have the same compute {c[0]:.4g}; "
                         "a slope needs at least 2 distinct compute values")
    floor = 0.0
    b, a = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - (a + b * x)) ** 2))
    if form == "power_law_with_floor":
        if c.size < 3:
            raise ValueError(f"fit_power_law: a power law with a floor needs at least 3 points, got {c.size}")
        def fit_with_floor(e: float) -> tuple[float, float, float]:
            bb, aa = np.polyfit(x, np.log(losses - e), 1)
            return float(np.sum((y - np.log(e + np.exp(aa + bb * x))) ** 2)), aa, bb

        grid = np.linspace(0.0, losses.min(), 2001)[1:-1]
        errors = [fit_with_floor(e)[0] for e in grid]
        i = int(np.argmin(errors))
        # Golden-section refinement between the best grid point's neighbours.
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        ratio = (math.sqrt(5) - 1) / 2
        for _ in range(60):
            m1, m2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
            if fit_with_floor(m1)[0] < fit_with_floor(m2)[0]:
                hi = m2
            else:
                lo = m1
        best = (lo + hi) / 2
        residual, aa, bb = fit_with_floor(best)
        if residual < ss_res:
            floor, a, b, ss_res = float(best), aa, bb, residual
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    return PowerLawFit(a=float(a), b=float(b), r2=r2, n=int(c.size),
                       loss_min=float(losses.min()), loss_max=float(losses.max()),
                       compute_min=float(c.min()), compute_max=float(c.max()), floor=floor, form=form)


def baseline_fits(df: pd.DataFrame, fit_sizes: Sequence[str] | None = None,
                  form: str = "power_law") -> dict[str, PowerLawFit]:
    """One compute-loss fit (of ``form``) per eval domain over the baseline runs' final checkpoints.

    ``fit_sizes`` restricts the fit to those ladder sizes (config ``analysis.fit_sizes``; the
    authors excluded their two smallest rungs); None uses every baseline size in ``df``.
    Raises ValueError when a requested size has no baseline run, or when a domain has fewer than
    2 baseline sizes. A fit whose slope is ≥ 0 is returned as is; :func:`slowdowns` then gives NaN
    with a note.
    """
    require_columns(df, _LOSS_COLUMNS, "loss table")
    base = final_checkpoints(df)
    base = base[base["arm"] == BASELINE]
    if fit_sizes is not None:
        missing = sorted(set(fit_sizes) - set(base["size"]))
        if missing:
            raise ValueError(f"baseline_fits: fit size(s) {missing} have no final baseline checkpoint; "
                             f"baseline sizes present: {size_order(base) if len(base) else []}")
        base = base[base["size"].isin(list(fit_sizes))]
    if base.empty:
        raise ValueError("baseline_fits: no final baseline checkpoints in the loss table; the "
                         "compute-loss power law needs baseline runs at ≥ 2 sizes")
    fits: dict[str, PowerLawFit] = {}
    domains = [d for d in DOMAINS if d in set(base["domain"])] + sorted(set(base["domain"]) - set(DOMAINS))
    for domain in domains:
        # One point per size: duplicates (the shared baselines in a concatenated table) are copies.
        points = base[base["domain"] == domain].groupby("size")[["compute", "loss"]].mean()
        if len(points) < 2:
            raise ValueError(f"baseline_fits: domain {domain!r} has final baseline checkpoints at "
                             f"{len(points)} size(s) {list(points.index)}; the compute-loss power "
                             "law needs at least 2 baseline sizes")
        fits[domain] = fit_power_law(points["compute"], points["loss"], form)
    return fits


def fit_table(fits: dict[str, PowerLawFit]) -> pd.DataFrame:
    """The fits as a table (one row per domain), with the paper's exponent α = −b."""
    rows = [{"domain": d, **asdict(f), "alpha": -f.b} for d, f in fits.items()]
    return pd.DataFrame(rows)


def fit_comparison(df: pd.DataFrame, fit_sizes: Sequence[str] | None = None) -> pd.DataFrame:
    """Both fit forms side by side per domain, so a reader sees how well each describes the
    baseline ladder (the floor form needs ≥ 3 sizes and is left out with fewer)."""
    tables = []
    for form in FIT_FORMS:
        try:
            tables.append(fit_table(baseline_fits(df, fit_sizes, form)))
        except ValueError:
            continue
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


# --- loss-matched compute slowdown -----------------------------------------------------------

_SLOWDOWN_COLUMNS = ["series", "arm", "size", "variant", "params", "compute", "domain", "loss",
                     "baseline_loss_at_compute", "matched_baseline_compute", "slowdown",
                     "log10_slowdown", "extrapolated", "fit_b", "fit_r2", "note"]


def loss_matched_slowdown(fit: PowerLawFit, compute: float, loss: float) -> tuple[float, bool, str]:
    """(slowdown, extrapolated, note) of one filtered model against one baseline fit.

    slowdown = C_f / C_b* with C_b* = fit.compute_at(L_f): > 1 means the filtered model learnt
    the domain as if it had 1/slowdown of its compute (paper: ~7000× for removal on medicine at
    1.8B). NaN with a note when the fit does not decrease or the inputs are unusable.
    """
    if not fit.decreasing:
        note = (f"baseline fit slope b={fit.b:.3g} ≥ 0 (loss does not fall with compute): "
                "no loss-matched baseline compute exists")
        return math.nan, False, note
    if not (np.isfinite(compute) and compute > 0 and np.isfinite(loss) and loss > 0):
        return math.nan, False, f"compute {compute!r} or loss {loss!r} is not positive and finite"
    if loss <= fit.floor:
        return math.nan, False, (f"loss {loss:.4g} is at or below the fitted irreducible loss "
                                 f"{fit.floor:.4g}: no baseline compute reaches it")
    matched = fit.compute_at(loss)
    extrapolated = not fit.in_loss_range(loss)
    note = ""
    if extrapolated:
        note = (f"loss {loss:.4g} outside the baseline fit's losses [{fit.loss_min:.4g}, "
                f"{fit.loss_max:.4g}]: the {fit.form.replace('_', ' ')} is extrapolated")
    return compute / matched, extrapolated, note


def slowdowns(df: pd.DataFrame, fits: dict[str, PowerLawFit]) -> pd.DataFrame:
    """Loss-matched compute slowdown of every filtered run (final checkpoint) in every domain.

    Baseline rows are not included (their slowdown is only the fit's residual). Columns:
    series, arm, size, variant, params, compute, domain, loss, baseline_loss_at_compute,
    matched_baseline_compute, slowdown, log10_slowdown, extrapolated, fit_b, fit_r2, note.
    ``compute`` is the table's 6·N·tokens of the filtered run's final checkpoint.
    """
    require_columns(df, _LOSS_COLUMNS, "loss table")
    fin = final_checkpoints(df)
    fin = fin[fin["arm"] != BASELINE]
    rows = []
    for rec in fin.to_dict("records"):
        domain, compute, loss = rec["domain"], float(rec["compute"]), float(rec["loss"])
        row = {k: rec.get(k) for k in ("series", "arm", "size", "variant", "params")}
        row.update(compute=compute, domain=domain, loss=loss)
        fit = fits.get(domain)
        if fit is None:
            row.update(baseline_loss_at_compute=math.nan, matched_baseline_compute=math.nan,
                       slowdown=math.nan, extrapolated=False, fit_b=math.nan, fit_r2=math.nan,
                       note=f"no baseline fit for domain {domain!r}")
        else:
            slow, extrapolated, note = loss_matched_slowdown(fit, compute, loss)
            row.update(baseline_loss_at_compute=float(fit.loss_at(compute)) if compute > 0 else math.nan,
                       matched_baseline_compute=compute / slow if np.isfinite(slow) else math.nan,
                       slowdown=slow, extrapolated=extrapolated, fit_b=fit.b, fit_r2=fit.r2, note=note)
        row["log10_slowdown"] = math.log10(row["slowdown"]) if np.isfinite(row["slowdown"]) else math.nan
        rows.append(row)
    out = pd.DataFrame(rows, columns=_SLOWDOWN_COLUMNS)
    if out.empty:
        return out
    out["extrapolated"] = out["extrapolated"].astype(bool)
    domain_rank = {d: i for i, d in enumerate(DOMAINS)}
    arm_rank = {a: i for i, a in enumerate(ARMS)}
    out = out.assign(_d=out["domain"].map(domain_rank).fillna(len(DOMAINS)),
                     _a=out["arm"].map(arm_rank).fillna(len(ARMS)))
    out = out.sort_values(["_d", "_a", "params", "variant"], kind="stable").drop(columns=["_d", "_a"])
    return out.reset_index(drop=True)


# --- Pareto comparison (paper Fig 3) ---------------------------------------------------------

def _points(df_points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Final-checkpoint points with columns x and y from either the tidy table or a wide one."""
    if "domain" in df_points.columns:
        wide = final_losses(df_points)
    else:
        wide = df_points
    require_columns(wide, ["arm", x, y], "Pareto points")
    return wide.dropna(subset=[x, y])


def _frontier(points: pd.DataFrame, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    """Token-arm frontier as piecewise-linear nodes sorted by x; at tied x the higher y (the
    better point: more forget loss for the same retain loss) is kept."""
    nodes = points.groupby(x)[y].max().sort_index()
    return nodes.index.to_numpy(dtype=float), nodes.to_numpy(dtype=float)


def pareto_comparison(df_points: pd.DataFrame, token_arm: str, document_arm: str = "document",
                      x: str = "retain_near", y: str = "forget") -> dict:
    """Does the token arm Pareto-dominate the document arm's points (paper §4.1, Fig 3)?

    Higher forget loss (y) and lower retain loss (x) are better. For each document point
    (r_d, f_d), the token arm's points of the same size, joined piecewise-linearly in x (a
    threshold between two measured ones), give what the token arm attains. The best it reaches
    at a retain loss no higher than r_d is the larger of (a) the forget loss of any token point
    with x ≤ r_d and (b) the interpolated frontier at r_d, where r_d lies inside the token
    points' x range. The token arm wins at that point if that best is ≥ f_d; it cannot win if
    every token point costs more retain loss than r_d.

    ``df_points`` is the tidy loss table (final checkpoints are used) or a wide table with
    columns ``arm``, ``x``, ``y`` (and optionally ``size``, ``variant``).

    Returns a dict: token_arm, document_arm, x, y, n_document_points, n_token_points,
    n_comparable (document points with a token point of the same size), n_token_wins,
    mean_margin (mean over comparable points of best − f_d where defined; > 0 favours the token
    arm), dominates (True iff ≥ 1 comparable point and the token arm wins at all of them), and
    points (one dict per document point).
    """
    pts = _points(df_points, x, y)
    group_key = "size" if "size" in pts.columns else None
    doc = pts[pts["arm"] == document_arm]
    tok = pts[pts["arm"] == token_arm]
    details = []
    for rec in doc.to_dict("records"):
        same = tok if group_key is None else tok[tok[group_key] == rec[group_key]]
        r_d, f_d = float(rec[x]), float(rec[y])
        entry = {"size": rec.get("size"), "variant": rec.get("variant"), x: r_d, y: f_d,
                 "token_" + y: math.nan, "margin": math.nan, "comparable": not same.empty, "token_wins": False}
        if not same.empty:
            xs, ys = _frontier(same, x, y)
            candidates = list(ys[xs <= r_d])
            if xs[0] <= r_d <= xs[-1]:
                candidates.append(float(np.interp(r_d, xs, ys)))
            if candidates:
                best = float(max(candidates))
                margin = best - f_d
                # Ties count as wins (≥); the slack only absorbs float rounding.
                entry.update({"token_" + y: best, "margin": margin,
                              "token_wins": margin >= -1e-12 * max(1.0, abs(f_d))})
        details.append(entry)
    comparable = [e for e in details if e["comparable"]]
    wins = sum(e["token_wins"] for e in comparable)
    margins = [e["margin"] for e in comparable if np.isfinite(e["margin"])]
    return {
        "token_arm": token_arm,
        "document_arm": document_arm,
        "x": x,
        "y": y,
        "n_document_points": len(details),
        "n_token_points": len(tok),
        "n_comparable": len(comparable),
        "n_token_wins": wins,
        "mean_margin": float(np.mean(margins)) if margins else math.nan,
        "dominates": bool(comparable) and wins == len(comparable),
        "points": details,
    }


# --- statistics ------------------------------------------------------------------------------

def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with < 2 points or a constant."""
    xs, ys = pd.Series(x, dtype=float), pd.Series(y, dtype=float)
    if len(xs) < 2:
        return math.nan
    rx, ry = xs.rank().to_numpy(), ys.rank().to_numpy()
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])

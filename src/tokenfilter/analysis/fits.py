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
_RUN_KEYS = ["series", "arm", "size", "variant", "replicate"]

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
    return wide.sort_values([k for k in ("params", "arm", "variant", "replicate") if k in wide.columns],
                            kind="stable").reset_index(drop=True)


def replicate_means(wide: pd.DataFrame) -> pd.DataFrame:
    """A wide final-loss table with replicates of one run averaged (what figures plot)."""
    if "replicate" not in wide.columns:
        return wide
    keys = [k for k in ("series", "arm", "size", "variant", "params", "compute") if k in wide.columns]
    values = [c for c in wide.columns if c not in keys and c != "replicate"]
    return wide.groupby(keys, dropna=False, sort=False)[values].mean().reset_index()


# --- power-law fit ---------------------------------------------------------------------------

FIT_FORMS = ("power_law", "power_law_with_floor", "interpolation")
# Fitted parameters of each form: a fit needs at least two baseline sizes per parameter to be
# read without its leave-one-out error (the interpolation has none: it only reads inside the data).
FORM_PARAMETERS = {"power_law": 2, "power_law_with_floor": 3, "interpolation": 0}


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


@dataclass(frozen=True)
class InterpolatedLaw:
    """The paper's in-range estimator (§4.2, "linearly interpolating the log-log plot"): ln L as a
    piecewise-linear function of ln C through the baseline points. It reads only between the
    smallest and largest baseline: a loss outside the baseline losses has no matched compute
    (NaN), where the fitted laws would extrapolate."""

    log_compute: tuple[float, ...]
    log_loss: tuple[float, ...]
    n: int
    loss_min: float
    loss_max: float
    compute_min: float
    compute_max: float
    form: str = "interpolation"
    a: float = math.nan
    b: float = math.nan
    r2: float = 1.0
    floor: float = 0.0

    @property
    def decreasing(self) -> bool:
        return self.log_loss[-1] < self.log_loss[0]

    def loss_at(self, compute: float | np.ndarray) -> float | np.ndarray:
        x = np.log(np.asarray(compute, dtype=float))
        y = np.interp(x, self.log_compute, self.log_loss, left=np.nan, right=np.nan)
        out = np.exp(y)
        return float(out) if np.ndim(out) == 0 else out

    def compute_at(self, loss: float | np.ndarray) -> float | np.ndarray:
        """The smallest baseline compute at which the interpolated loss reaches ``loss`` (the
        first crossing, should the baseline losses not fall monotonically); NaN outside."""
        losses = np.atleast_1d(np.log(np.asarray(loss, dtype=float)))
        xs, ys = np.asarray(self.log_compute), np.asarray(self.log_loss)
        out = np.full(losses.shape, np.nan)
        for i, target in enumerate(losses):
            for j in range(len(xs) - 1):
                lo, hi = sorted((ys[j], ys[j + 1]))
                if lo <= target <= hi:
                    t = 0.0 if ys[j + 1] == ys[j] else (target - ys[j]) / (ys[j + 1] - ys[j])
                    out[i] = math.exp(xs[j] + t * (xs[j + 1] - xs[j]))
                    break
        return float(out[0]) if np.ndim(loss) == 0 else out

    def in_loss_range(self, loss: float) -> bool:
        slack = _RANGE_RTOL * max(abs(self.loss_min), abs(self.loss_max))
        return self.loss_min - slack <= loss <= self.loss_max + slack


def interpolated_law(compute: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray) -> InterpolatedLaw:
    c, losses = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    if c.size < 2:
        raise ValueError(f"interpolated_law: need at least 2 (compute, loss) points, got {c.size}")
    order = np.argsort(c)
    c, losses = c[order], losses[order]
    return InterpolatedLaw(tuple(np.log(c)), tuple(np.log(losses)), int(c.size), float(losses.min()),
                           float(losses.max()), float(c.min()), float(c.max()))


def fit_law(compute: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray, form: str):
    """The baseline compute-loss law of ``form``: a fitted power law or the in-range interpolation."""
    if form == "interpolation":
        return interpolated_law(compute, loss)
    return fit_power_law(compute, loss, form)


def leave_one_out_error(compute: Sequence[float] | np.ndarray, loss: Sequence[float] | np.ndarray, form: str) -> float:
    """RMS error in ln L of predicting each baseline point from a law fitted to the others (NaN
    when too few points remain; the interpolation predicts only interior points)."""
    c, losses = np.asarray(compute, dtype=float), np.asarray(loss, dtype=float)
    errors = []
    for i in range(len(c)):
        keep = np.arange(len(c)) != i
        try:
            law = fit_law(c[keep], losses[keep], form)
        except ValueError:
            continue
        predicted = law.loss_at(c[i])
        if np.isfinite(predicted) and predicted > 0:
            errors.append(math.log(predicted) - math.log(losses[i]))
    return float(np.sqrt(np.mean(np.square(errors)))) if errors else math.nan


def baseline_points(df: pd.DataFrame, fit_sizes: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
    """Per eval domain, one (compute, loss) point per baseline size: the mean over replicates."""
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
    domains = [d for d in DOMAINS if d in set(base["domain"])] + sorted(set(base["domain"]) - set(DOMAINS))
    return {d: base[base["domain"] == d].groupby("size")[["compute", "loss"]].mean().sort_values("compute")
            for d in domains}


def baseline_fits(df: pd.DataFrame, fit_sizes: Sequence[str] | None = None,
                  form: str = "power_law") -> dict[str, PowerLawFit]:
    """One compute-loss fit (of ``form``) per eval domain over the baseline runs' final checkpoints.

    ``fit_sizes`` restricts the fit to those ladder sizes (config ``analysis.fit_sizes``; the
    authors excluded their two smallest rungs); None uses every baseline size in ``df``.
    Raises ValueError when a requested size has no baseline run, or when a domain has fewer than
    2 baseline sizes. A fit whose slope is ≥ 0 is returned as is; :func:`slowdowns` then gives NaN
    with a note.
    """
    fits = {}
    for domain, points in baseline_points(df, fit_sizes).items():
        # One point per size: replicates (and the shared baselines of a concatenated table) averaged.
        if len(points) < 2:
            raise ValueError(f"baseline_fits: domain {domain!r} has final baseline checkpoints at "
                             f"{len(points)} size(s) {list(points.index)}; the compute-loss power "
                             "law needs at least 2 baseline sizes")
        fits[domain] = fit_law(points["compute"], points["loss"], form)
    return fits


FIT_TABLE_COLUMNS = ["domain", "form", "a", "b", "floor", "r2", "n", "parameters", "points_per_parameter",
                     "loo_rmse", "loss_min", "loss_max", "compute_min", "compute_max", "alpha"]


def fit_comparison(df: pd.DataFrame, fit_sizes: Sequence[str] | None = None) -> pd.DataFrame:
    """Every law form side by side per domain, with its number of baseline points per fitted
    parameter and its leave-one-out error in ln L, so a reader sees how well each describes the
    baseline ladder and how far to trust it (a form that cannot be fitted is left out)."""
    rows = []
    for form in FIT_FORMS:
        try:
            fits = baseline_fits(df, fit_sizes, form)
        except ValueError:
            continue
        points = baseline_points(df, fit_sizes)
        for domain, law in fits.items():
            k = FORM_PARAMETERS[form]
            rows.append({"domain": domain, "form": form, "a": law.a, "b": law.b, "floor": law.floor, "r2": law.r2,
                         "n": law.n, "parameters": k, "points_per_parameter": law.n / k if k else math.nan,
                         "loo_rmse": leave_one_out_error(points[domain]["compute"], points[domain]["loss"], form),
                         "loss_min": law.loss_min, "loss_max": law.loss_max, "compute_min": law.compute_min,
                         "compute_max": law.compute_max, "alpha": -law.b})
    return pd.DataFrame(rows, columns=FIT_TABLE_COLUMNS)


# --- loss-matched compute slowdown -----------------------------------------------------------

_SLOWDOWN_COLUMNS = ["series", "arm", "size", "variant", "replicate", "params", "compute", "domain", "loss",
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
    if fit.form == "interpolation" and not fit.in_loss_range(loss):
        return math.nan, True, (f"loss {loss:.4g} outside the baseline losses [{fit.loss_min:.4g}, "
                                f"{fit.loss_max:.4g}]: the interpolation reads only inside them")
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
        row = {k: rec.get(k) for k in ("series", "arm", "size", "variant", "replicate", "params")}
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


def _frontier(points: pd.DataFrame, x: str, y: str) -> list[tuple[float, float]]:
    """The token arm's frontier: its points joined in *threshold order* (by the fraction of tokens
    filtered), each point the mean over replicates. Retain loss need not rise monotonically with
    the threshold, so ordering by retain loss would join points no threshold between them gives."""
    has_fraction = "filtered_fraction" in points.columns and points["filtered_fraction"].notna().all()
    columns = [x, y] + (["filtered_fraction"] if has_fraction else [])
    if "variant" in points.columns:
        points = points.groupby("variant", sort=False)[columns].mean().reset_index()
    points = points.sort_values("filtered_fraction" if has_fraction else x, kind="stable")
    return list(zip(points[x].astype(float), points[y].astype(float)))


def _best_at_most(frontier: list[tuple[float, float]], limit: float) -> float:
    """Highest y the piecewise-linear frontier reaches at x ≤ ``limit`` (NaN if nowhere)."""
    best = math.nan
    for x0, y0 in frontier:
        if x0 <= limit:
            best = y0 if math.isnan(best) else max(best, y0)
    for (x0, y0), (x1, y1) in zip(frontier, frontier[1:]):
        if min(x0, x1) <= limit <= max(x0, x1) and x0 != x1:
            y_at = y0 + (limit - x0) * (y1 - y0) / (x1 - x0)
            best = y_at if math.isnan(best) else max(best, y_at)
    return best


def pareto_comparison(df_points: pd.DataFrame, token_arm: str, document_arm: str = "document",
                      x: str = "retain_near", y: str = "forget") -> dict:
    """Does the token arm Pareto-dominate the document arm's points (paper §4.1, Fig 3)?

    Higher forget loss (y) and lower retain loss (x) are better. For each document point
    (r_d, f_d) (mean over replicates), the token arm's points of the same size joined in threshold
    order give what the token arm attains (a threshold between two measured ones lies on the
    segment between them); the best it reaches at a retain loss no higher than r_d is the largest
    y of that polyline at x ≤ r_d. The margin is that best minus f_d; it is NaN (and the token arm
    cannot win) when every token point costs more retain loss than r_d.

    ``df_points`` is the tidy loss table (final checkpoints are used) or a wide table with
    columns ``arm``, ``x``, ``y`` (and optionally ``size``, ``variant``, ``filtered_fraction``).

    Returns a dict: token_arm, document_arm, x, y, n_document_points, n_token_points,
    n_comparable, n_token_wins, mean_margin, dominates, and points (one dict per document point).
    """
    pts = _points(df_points, x, y)
    group_key = "size" if "size" in pts.columns else None
    doc = pts[pts["arm"] == document_arm]
    tok = pts[pts["arm"] == token_arm]
    doc_keys = [k for k in ("size", "variant") if k in doc.columns]
    doc_means = doc.groupby(doc_keys, sort=False)[[x, y]].mean().reset_index() if doc_keys else doc
    details = []
    for rec in doc_means.to_dict("records"):
        same = tok if group_key is None else tok[tok[group_key] == rec[group_key]]
        r_d, f_d = float(rec[x]), float(rec[y])
        entry = {"size": rec.get("size"), "variant": rec.get("variant"), x: r_d, y: f_d,
                 "token_" + y: math.nan, "margin": math.nan, "comparable": not same.empty, "token_wins": False}
        if not same.empty:
            best = _best_at_most(_frontier(same, x, y), r_d)
            if not math.isnan(best):
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

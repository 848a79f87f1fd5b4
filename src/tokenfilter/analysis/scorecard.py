"""The claims scorecard: the paper's headline claims, each checked against our own numbers.

Every verdict is computed from the analysis tables and has three outcomes plus "not measured"
(DESIGN §4 trap 9):

- an **ordering** claim ("arm A slows forget learning more than arm B") is decided in nats, on
  the final losses of the two arms at the same size (equal compute), paired by seed: the
  *margin* is the mean difference and the *spread* its range over the seeds. It **holds** when
  the margin exceeds the spread, **does not hold** when it is below minus the spread, and is
  **inconclusive** in between, or when the size it reads has fewer than 3 seeds (no spread to
  compare with). The spread is the smallest effect the claim can detect.
- a **magnitude or trend** claim read off loss-matched slowdowns is read under every form of the
  baseline law (the pure power law, the law with a floor, and the paper's in-range
  interpolation); it is inconclusive when the forms disagree or when every point it reads lies
  outside the baseline losses (an extrapolation).

A claim reads the largest size at which every arm it compares has at least
:data:`MIN_SEEDS` seeds; with none, the largest size with all arms (and the verdict is
inconclusive). The paper's figure stands beside ours in every row.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tokenfilter.analysis.fits import BASELINE, FIT_FORMS, TOKEN_ARMS, final_losses, spearman

HOLDS = "holds"
FAILS = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_MEASURED = "not measured"
_ROW_CLASS = {HOLDS: "holds", FAILS: "fails", INCONCLUSIVE: "unsure", NOT_MEASURED: "na"}
MIN_SEEDS = 3

SCORECARD_COLUMNS = ["claim", "paper", "measured", "margin", "spread", "detectable", "verdict", "why", "source",
                     "row_class"]

ARM_NAMES = {"baseline": "baseline", "document": "document", "mask": "masking", "remove": "removal"}

# Claim 5: "costs little" made testable. The paper's Fig 1 retain panel shows ≈1×; 2× leaves room
# for noise at small scale while still failing a filter that halves the retain-domain efficiency.
RETAIN_COST_THRESHOLD = 2.0


# --- formatting ------------------------------------------------------------------------------

def _x(value: float) -> str:
    """A slowdown as text: 7,214× / 31.2× / 0.93×."""
    if not np.isfinite(value):
        return "NaN"
    if value >= 100:
        return f"{value:,.0f}×"
    if value >= 1:
        return f"{value:.3g}×"
    return f"{value:.2g}×"


def _row(claim: str, paper: str, source: str, verdict: str, measured: str, margin: float = math.nan,
         spread: float = math.nan, why: str = "", detectable: str = "") -> dict:
    return {"claim": claim, "paper": paper, "measured": measured, "margin": margin, "spread": spread,
            "detectable": detectable, "verdict": verdict, "why": why, "source": source,
            "row_class": _ROW_CLASS[verdict]}


def decide(margin: float, spread: float, n_seeds: int) -> tuple[str, str]:
    """(verdict, why) of a quantity whose positive sign supports the claim."""
    if not np.isfinite(margin):
        return NOT_MEASURED, "the margin could not be computed"
    if n_seeds < MIN_SEEDS:
        return INCONCLUSIVE, (f"{n_seeds} seed(s) at the size read (fewer than {MIN_SEEDS}): no spread to "
                              "compare the margin with")
    if margin > spread:
        return HOLDS, f"margin {margin:+.4f} exceeds the spread {spread:.4f} over {n_seeds} seeds"
    if margin < -spread:
        return FAILS, f"margin {margin:+.4f} is below minus the spread {spread:.4f} over {n_seeds} seeds"
    return INCONCLUSIVE, f"margin {margin:+.4f} is inside the spread {spread:.4f} over {n_seeds} seeds"


# --- final losses by seed --------------------------------------------------------------------

class Losses:
    """Final losses of a series by (arm, size, replicate) and domain, for paired comparisons."""

    def __init__(self, tidy: pd.DataFrame):
        wide = final_losses(tidy)
        if "variant" in wide.columns and (wide["variant"] == "default").any():
            wide = wide[wide["variant"].isin(["default", "none"]) | (wide["arm"] == BASELINE)]
        if "replicate" not in wide.columns:
            wide = wide.assign(replicate=0)
        self.wide = wide
        self.params = wide.groupby("size")["params"].max().sort_values()

    def seeds(self, arm: str, size: str) -> set[int]:
        rows = self.wide[(self.wide["arm"] == arm) & (self.wide["size"] == size)]
        return set(rows["replicate"].astype(int))

    def read_size(self, arms: list[str]) -> tuple[str, int] | None:
        """(size, seeds): the largest size where every arm has ≥ MIN_SEEDS common seeds, else the
        largest size where every arm has any."""
        best_any = None
        for size in reversed(list(self.params.index)):
            common = None
            for arm in arms:
                seeds = self.seeds(arm, size)
                common = seeds if common is None else common & seeds
            if common:
                if len(common) >= MIN_SEEDS:
                    return str(size), len(common)
                best_any = best_any or (str(size), len(common))
        return best_any

    def values(self, arm: str, size: str, domain: str) -> pd.Series:
        rows = self.wide[(self.wide["arm"] == arm) & (self.wide["size"] == size)]
        return rows.set_index(rows["replicate"].astype(int))[domain].astype(float)

    def paired(self, arm_a: str, arm_b: str | list[str], size: str, domain: str, best_of_b: str = "min") -> np.ndarray:
        """L_a − L_b per common seed (B a list: its min or max per seed)."""
        a = self.values(arm_a, size, domain)
        bs = [self.values(b, size, domain) for b in ([arm_b] if isinstance(arm_b, str) else arm_b)]
        common = sorted(set(a.index).intersection(*[set(b.index) for b in bs]))
        b = pd.concat([x.loc[common] for x in bs], axis=1)
        b = b.min(axis=1) if best_of_b == "min" else b.max(axis=1)
        return (a.loc[common] - b).to_numpy()

    def size_text(self, size: str, seeds: int) -> str:
        return f"size {size} ({self.params[size]:.3g} params, {seeds} seed{'s' if seeds != 1 else ''})"


def _spread(values: np.ndarray) -> float:
    return float(np.max(values) - np.min(values)) if len(values) else math.nan


# --- slowdowns under every law form ----------------------------------------------------------

def _slowdown_summary(slowdowns: pd.DataFrame | None, arm: str, size: str, domain: str, form: str) -> tuple[float, bool]:
    """(geometric-mean slowdown over seeds, any extrapolated) of one arm and size under one form."""
    if slowdowns is None or slowdowns.empty:
        return math.nan, False
    rows = slowdowns[(slowdowns["arm"] == arm) & (slowdowns["size"] == size) & (slowdowns["domain"] == domain)
                     & (slowdowns["fit_form"] == form)]
    if "variant" in rows.columns and (rows["variant"] == "default").any():
        rows = rows[rows["variant"] == "default"]
    values = rows["slowdown"].astype(float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.empty:
        return math.nan, bool(rows["extrapolated"].astype(bool).any()) if not rows.empty else False
    return float(10 ** np.log10(values).mean()), bool(rows["extrapolated"].astype(bool).any())


def _slowdown_text(slowdowns: pd.DataFrame | None, arms: list[str], size: str, domain: str, form: str) -> str:
    parts = []
    for arm in arms:
        value, extrapolated = _slowdown_summary(slowdowns, arm, size, domain, form)
        parts.append(f"{ARM_NAMES[arm]} {_x(value)}{' (extrapolated)' if extrapolated else ''}")
    return f"loss-matched slowdown on {domain} at {size} ({form.replace('_', ' ')}): " + ", ".join(parts)


# --- claims ----------------------------------------------------------------------------------

def _ordering_claim(losses: Losses | None, slowdowns: pd.DataFrame | None, fit_form: str, arm_a: str,
                    arm_b: str | list[str], domain: str, sign: int, claim: str, paper: str, source: str) -> dict:
    """An ordering decided in nats: sign·(L_a − L_b) > 0 supports the claim (sign −1: a lower loss
    of A supports it)."""
    arms = [arm_a] + ([arm_b] if isinstance(arm_b, str) else list(arm_b))
    if losses is None:
        return _row(claim, paper, source, NOT_MEASURED, "no ladder-series loss table")
    missing = [a for a in arms if a not in set(losses.wide["arm"])]
    if missing:
        return _row(claim, paper, source, NOT_MEASURED, f"no {', '.join(ARM_NAMES[a] for a in missing)} runs")
    found = losses.read_size(arms)
    if found is None:
        return _row(claim, paper, source, NOT_MEASURED, f"no size has every one of {[ARM_NAMES[a] for a in arms]}")
    size, seeds = found
    diffs = sign * losses.paired(arm_a, arm_b, size, domain, best_of_b="min" if sign > 0 else "max")
    margin, spread = float(np.mean(diffs)), _spread(diffs)
    verdict, why = decide(margin, spread, seeds)
    a_mean = losses.values(arm_a, size, domain).mean()
    b_names = ARM_NAMES[arm_b] if isinstance(arm_b, str) else " / ".join(ARM_NAMES[b] for b in arm_b)
    b_mean = np.mean([losses.values(b, size, domain).mean() for b in ([arm_b] if isinstance(arm_b, str) else arm_b)])
    measured = (f"{domain} loss {ARM_NAMES[arm_a]} {a_mean:.4f} vs {b_names} {b_mean:.4f} nats at "
                f"{losses.size_text(size, seeds)}; " + _slowdown_text(slowdowns, arms, size, domain, fit_form))
    return _row(claim, paper, source, verdict, measured, margin, spread, why,
                f"{spread:.4f} nats" if np.isfinite(spread) else "")


def _scale_claim(losses: Losses | None, slowdowns: pd.DataFrame | None) -> dict:
    """Claim 4: the forget slowdown of removal (masking if no removal runs) rises with model size,
    under every law form that can read it."""
    claim = ("Token filtering becomes more effective with scale: the forget-domain slowdown of token "
             "removal (masking if no removal runs) rises with compute under every form of the baseline law")
    paper = "slowdown grows with compute for every arm, to ≈7000× (removal) at 1.8B (Fig 1)"
    source = "Fig 1"
    if slowdowns is None or slowdowns.empty:
        return _row(claim, paper, source, NOT_MEASURED, "no slowdown table")
    arm = "remove" if (slowdowns["arm"] == "remove").any() else "mask"
    rows = slowdowns[(slowdowns["arm"] == arm) & (slowdowns["domain"] == "forget")]
    if rows.empty:
        return _row(claim, paper, source, NOT_MEASURED, "no removal or masking slowdowns on forget")
    per_form, texts, all_extrapolated = {}, [], True
    for form in FIT_FORMS:
        sizes = losses.params.index if losses is not None else sorted(set(rows["size"]))
        points = [(s, *_slowdown_summary(slowdowns, arm, s, "forget", form)) for s in sizes]
        finite = [(s, v, e) for s, v, e in points if np.isfinite(v)]
        if form != "interpolation":
            all_extrapolated &= all(e for _, _, e in finite) if finite else True
        if len(finite) < 2:
            texts.append(f"{form.replace('_', ' ')}: {len(finite)} readable size(s)")
            continue
        rho = spearman(np.arange(len(finite)), np.log10([v for _, v, _ in finite]))
        rising = bool(np.isfinite(rho) and rho > 0 and finite[-1][1] > finite[0][1])
        per_form[form] = rising
        texts.append(f"{form.replace('_', ' ')}: " + ", ".join(f"{s} {_x(v)}{'*' if e else ''}" for s, v, e in finite)
                     + f" (ρ = {rho:.2f})")
    measured = f"{ARM_NAMES[arm]} forget slowdown by size — " + "; ".join(texts) + " (* extrapolated)"
    if not per_form:
        return _row(claim, paper, source, NOT_MEASURED, measured)
    if all_extrapolated:
        return _row(claim, paper, source, INCONCLUSIVE, measured, why="every slowdown it reads lies outside the "
                    "baseline losses (extrapolated by the fitted laws; the interpolation cannot read them)")
    if all(per_form.values()):
        return _row(claim, paper, source, HOLDS, measured, why=f"rises under every readable form ({', '.join(per_form)})")
    if not any(per_form.values()):
        return _row(claim, paper, source, FAILS, measured, why=f"does not rise under any form ({', '.join(per_form)})")
    return _row(claim, paper, source, INCONCLUSIVE, measured,
                why="the forms disagree: " + ", ".join(f"{f} {'rises' if r else 'does not rise'}" for f, r in per_form.items()))


def _retain_cost_claim(losses: Losses | None, slowdowns: pd.DataFrame | None) -> dict:
    """Claim 5: the token arms' retain-near slowdown stays below the threshold, under every form."""
    claim = (f"Token filtering costs little on the retain-near domain (retain-near slowdown of masking and "
             f"removal < {RETAIN_COST_THRESHOLD:g}× at the size read, under every form of the baseline law)")
    paper = "retain (biology) slowdown ≈1× at every size (Fig 1, retain panel; values only in the figure)"
    source = "Fig 1"
    if losses is None or slowdowns is None or slowdowns.empty:
        return _row(claim, paper, source, NOT_MEASURED, "no slowdown table")
    arms = [a for a in TOKEN_ARMS if a in set(losses.wide["arm"])]
    found = losses.read_size(arms + [BASELINE]) if arms else None
    if found is None:
        return _row(claim, paper, source, NOT_MEASURED, "no token-arm runs")
    size, seeds = found
    verdicts, texts = {}, []
    for form in FIT_FORMS:
        rows = slowdowns[(slowdowns["size"] == size) & (slowdowns["domain"] == "retain_near")
                         & (slowdowns["fit_form"] == form) & slowdowns["arm"].isin(arms)]
        values = rows["slowdown"].astype(float)
        if values.empty or not np.isfinite(values).all():
            texts.append(f"{form.replace('_', ' ')}: not readable")
            continue
        worst = float(values.max())
        verdicts[form] = worst < RETAIN_COST_THRESHOLD
        texts.append(f"{form.replace('_', ' ')}: largest {_x(worst)}")
    diffs = np.concatenate([losses.paired(a, BASELINE, size, "retain_near") for a in arms])
    measured = (f"token arms' retain-near slowdown at {losses.size_text(size, seeds)} over seeds — " + "; ".join(texts)
                + f"; retain-near loss minus the baseline's: {np.mean(diffs):+.4f} nats (range {_spread(diffs):.4f})")
    if not verdicts:
        return _row(claim, paper, source, NOT_MEASURED, measured)
    if seeds < MIN_SEEDS:
        return _row(claim, paper, source, INCONCLUSIVE, measured, why=f"{seeds} seed(s) at the size read")
    if all(verdicts.values()):
        return _row(claim, paper, source, HOLDS, measured, why=f"below {RETAIN_COST_THRESHOLD:g}× under every readable form and seed")
    if not any(verdicts.values()):
        return _row(claim, paper, source, FAILS, measured, why=f"at or above {RETAIN_COST_THRESHOLD:g}× under every form")
    return _row(claim, paper, source, INCONCLUSIVE, measured, why="the forms disagree")


def _pareto_claims(pareto_points: pd.DataFrame | None, losses: Losses | None) -> list[dict]:
    """Claim 7, one row per token arm: at every document point of the thresholds series the token
    arm's frontier (joined in threshold order) reaches more forget loss at no more retain-near
    loss, by more than the forget-loss spread over seeds."""
    rows = []
    for arm in TOKEN_ARMS:
        claim = (f"Token filtering ({ARM_NAMES[arm]}) Pareto-dominates document filtering on forget vs "
                 "retain-near loss (thresholds series): at every document-filter point, token filtering reaches "
                 "more forget loss at no more retain-near loss")
        paper = "token filtering is a Pareto improvement over document filtering at 521M, 3–50% of tokens filtered (Fig 3)"
        source = "Fig 3"
        if pareto_points is None:
            rows.append(_row(claim, paper, source, NOT_MEASURED, "no thresholds-series Pareto table"))
            continue
        points = pareto_points[pareto_points["token_arm"] == arm]
        comparable = points[points["comparable"].astype(bool)] if not points.empty else points
        if points.empty or comparable.empty:
            rows.append(_row(claim, paper, source, NOT_MEASURED,
                             f"no {ARM_NAMES[arm]} and document runs of one size in the thresholds series"))
            continue
        # A thresholds series across sizes (Fig 13) is read where seeds measure the noise.
        sizes = list(dict.fromkeys(comparable["size"].astype(str)))
        size = max(sizes, key=lambda s: (_noise_at(losses, [arm, "document"], s)[1],
                                         float(losses.params.get(s, 0)) if losses is not None else 0.0))
        comparable = comparable[comparable["size"].astype(str) == size]
        noise, seeds = _noise_at(losses, [arm, "document"], size)
        margins = comparable["margin"].astype(float).to_numpy()
        details = ", ".join(f"{v}: {m:+.4f}" if np.isfinite(m) else f"{v}: unreachable"
                            for v, m in zip(comparable["variant"], margins))
        measured = (f"forget-loss margin of {ARM_NAMES[arm]} at each document point (size {size}): {details}; "
                    f"forget-loss spread over {seeds} seeds at this size: {noise:.4f} nats")
        if seeds < MIN_SEEDS or not np.isfinite(noise):
            rows.append(_row(claim, paper, source, INCONCLUSIVE, measured, float(np.nanmean(margins)), noise,
                             f"{seeds} seed(s) at size {size}: no spread to compare the margins with"))
            continue
        unreachable = ~np.isfinite(margins)
        beaten = margins > noise
        lost = margins < -noise
        if unreachable.any() or lost.any():
            verdict, why = FAILS, (f"{int(lost.sum() + unreachable.sum())} of {len(margins)} document points beat "
                                   "the token arm by more than the spread, or lie where no token threshold reaches")
        elif beaten.all():
            verdict, why = HOLDS, f"every margin exceeds the spread {noise:.4f}"
        else:
            verdict, why = INCONCLUSIVE, (f"{int((~beaten).sum())} of {len(margins)} margins are inside the spread "
                                          f"{noise:.4f}")
        rows.append(_row(claim, paper, source, verdict, measured, float(np.nanmin(margins)), noise, why,
                         f"{noise:.4f} nats"))
    return rows


def _noise_at(losses: Losses | None, arms: list[str], size: str) -> tuple[float, int]:
    """The largest forget-loss range over seeds among ``arms`` at ``size`` (from the ladder)."""
    if losses is None or size not in losses.params.index:
        return math.nan, 0
    spreads, seeds = [], []
    for arm in arms:
        values = losses.values(arm, size, "forget") if arm in set(losses.wide["arm"]) else pd.Series(dtype=float)
        if len(values):
            spreads.append(_spread(values.to_numpy()))
            seeds.append(len(values))
    return (max(spreads), min(seeds)) if spreads else (math.nan, 0)


def _forget_above_baseline_claim(losses: Losses | None) -> dict:
    """Claim 8 (sanity): every filtered run's forget loss exceeds the same-size baseline's by more
    than the spread (paired by seed; sizes with one seed borrow the spread measured where there
    are several)."""
    claim = "Filtered models' forget loss is higher than the baseline's at every size (every arm)"
    paper = "all filtered arms sit above the baseline on medical loss at every size (Fig 16)"
    source = "Fig 16"
    if losses is None:
        return _row(claim, paper, source, NOT_MEASURED, "no ladder-series loss table")
    arms = [a for a in ("document", *TOKEN_ARMS) if a in set(losses.wide["arm"])]
    results = []
    for arm in arms:
        for size in losses.params.index:
            diffs = losses.paired(arm, BASELINE, size, "forget")
            if len(diffs):
                results.append((arm, size, float(np.mean(diffs)), _spread(diffs), len(diffs)))
    if not results:
        return _row(claim, paper, source, NOT_MEASURED, "no size with both a baseline and a filtered run")
    seeded = [r for r in results if r[4] >= MIN_SEEDS]
    borrowed = max((r[3] for r in seeded), default=math.nan)
    above = below = unsure = 0
    smallest = min(results, key=lambda r: r[2])
    for arm, size, margin, spread, n in results:
        noise = spread if n >= MIN_SEEDS else borrowed
        if not np.isfinite(noise):
            unsure += 1
        elif margin > noise:
            above += 1
        elif margin < -noise:
            below += 1
        else:
            unsure += 1
    measured = (f"{above}/{len(results)} filtered runs above the same-size baseline by more than the spread, "
                f"{below} below, {unsure} inside it; smallest margin {smallest[2]:+.4f} nats "
                f"({ARM_NAMES[smallest[0]]}, {smallest[1]}); spread borrowed for single-seed sizes: {borrowed:.4f}")
    if below:
        verdict, why = FAILS, f"{below} run(s) below the baseline by more than the spread"
    elif unsure:
        verdict, why = INCONCLUSIVE, f"{unsure} run(s) inside the spread (or no seeds to measure it)"
    else:
        verdict, why = HOLDS, "every run is above by more than the spread"
    return _row(claim, paper, source, verdict, measured, smallest[2], borrowed, why, f"{borrowed:.4f} nats")


def evaluate_claims(main_losses: pd.DataFrame | None, slowdowns: pd.DataFrame | None,
                    pareto_points: pd.DataFrame | None, fit_form: str = "power_law") -> pd.DataFrame:
    """The scorecard: one row per claim (columns :data:`SCORECARD_COLUMNS`).

    ``main_losses``: the ladder series' tidy loss table; ``slowdowns``: its slowdowns under every
    law form (column ``fit_form``); ``pareto_points``: the thresholds series' Pareto table;
    ``fit_form``: the configured form, whose slowdowns the rows quote beside the paper's. Any may be
    None, which turns the claims that need it into "not measured".
    """
    losses = Losses(main_losses) if main_losses is not None and not main_losses.empty else None
    if slowdowns is not None and "fit_form" not in slowdowns.columns:
        slowdowns = slowdowns.assign(fit_form=fit_form)
    rows = [
        _ordering_claim(losses, slowdowns, fit_form, "remove", "document", "forget", +1,
                        "Token removal slows forget-domain learning more than document filtering (forget loss at equal compute)",
                        "removal ≈7000×, document ≈30× loss-matched compute slowdown at 1.8B (Fig 1)", "Fig 1"),
        _ordering_claim(losses, slowdowns, fit_form, "mask", "document", "forget", +1,
                        "Token masking slows forget-domain learning more than document filtering (forget loss at equal compute)",
                        "masking ≈400×, document ≈30× at 1.8B (Fig 19 annotations)", "Fig 19"),
        _ordering_claim(losses, slowdowns, fit_form, "remove", "mask", "forget", +1,
                        "Token removal slows forget-domain learning more than masking (forget loss at equal compute)",
                        "removal ≈7000× vs masking ≈400× at 1.8B (Fig 19 annotations)", "Fig 19"),
        _scale_claim(losses, slowdowns),
        _retain_cost_claim(losses, slowdowns),
        _ordering_claim(losses, slowdowns, fit_form, "document", list(TOKEN_ARMS), "retain_near", +1,
                        "Document filtering costs more retain-near loss than token filtering (retain-near loss at equal compute)",
                        "document filtering also drops biology that co-occurs with medicine; token filtering is more "
                        "precise (§4.1, Figs 1 and 3; values only in the figures)", "Figs 1, 3"),
        *_pareto_claims(pareto_points, losses),
        _forget_above_baseline_claim(losses),
    ]
    return pd.DataFrame(rows, columns=SCORECARD_COLUMNS)

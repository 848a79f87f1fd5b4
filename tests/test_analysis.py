"""Analysis layer: power-law fits, loss-matched slowdowns, Pareto comparison, scorecard, plots.

The slowdown math is checked on synthetic power laws where the answer is known exactly: the
baseline follows L = A·C^b, and a filtered model whose loss equals the baseline law at C/k
must come out with slowdown k (paper §4.2, the authors' analysis/scaling.py).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tokenfilter.analysis.fits import (
    PowerLawFit,
    baseline_fits,
    final_losses,
    fit_power_law,
    pareto_comparison,
    slowdowns,
    spearman,
)
from tokenfilter.analysis.plots import (
    plot_compute_loss,
    plot_frontier,
    plot_learning_curves,
    plot_slowdown,
    plot_threshold_pareto,
)
from tokenfilter.analysis.scorecard import SCORECARD_COLUMNS, evaluate_claims
from tokenfilter.analysis.tables import pareto_table

SIZES = {"xs": 1_000_000, "s": 2_000_000, "m": 4_000_000, "l": 8_000_000}
# Baseline law per domain: L = A·C^B (B < 0: loss falls with compute).
LAW = {"forget": (60.0, -0.06), "retain_near": (40.0, -0.05), "retain_far": (30.0, -0.04)}


def _law(domain: str, compute: float) -> float:
    a, b = LAW[domain]
    return a * compute ** b


def _rows(series, arm, size, variant, domain_loss, fraction=math.nan, checkpoints=True):
    """Tidy rows of one run: a mid-training checkpoint (optional) and the final one (D = 20N)."""
    n = SIZES[size]
    rows = []
    points = [(0.5, False), (1.0, True)] if checkpoints else [(1.0, True)]
    for share, final in points:
        tokens = int(20 * n * share)
        compute = 6.0 * n * tokens
        for domain in LAW:
            loss = domain_loss(domain, compute)
            if not final:
                loss *= 1.05  # intermediate checkpoints must be ignored by the ladder analyses
            rows.append({"series": series, "arm": arm, "size": size, "variant": variant, "params": n,
                         "step": int(1000 * share), "tokens": tokens, "final": final,
                         "compute": compute, "domain": domain, "loss": loss,
                         "filtered_fraction": fraction})
    return rows


def main_table(k: dict[str, dict[str, list[float]]], sizes=tuple(SIZES)) -> pd.DataFrame:
    """Main series: exact baseline law; filtered arm ``arm`` at size i has loss law(C / k[arm][domain][i])."""
    rows = []
    for i, size in enumerate(sizes):
        rows += _rows("main", "baseline", size, "none", _law)
        for arm, by_domain in k.items():
            def loss(domain, c, arm=arm, i=i, by_domain=by_domain):
                return _law(domain, c / by_domain.get(domain, [1.0] * len(sizes))[i])
            rows += _rows("main", arm, size, "default", loss)
    return pd.DataFrame(rows)


HOLDING_K = {
    "remove": {"forget": [10, 30, 100, 300], "retain_near": [1.1, 1.1, 1.1, 1.1]},
    "mask": {"forget": [5, 10, 20, 40], "retain_near": [1.05, 1.05, 1.05, 1.05]},
    "document": {"forget": [2, 3, 4, 5], "retain_near": [1.5, 1.5, 1.5, 1.5]},
}
FAILING_K = {
    "remove": {"forget": [50, 20, 10, 3], "retain_near": [3, 3, 3, 3]},
    "mask": {"forget": [4, 4, 4, 4], "retain_near": [1.5, 1.5, 1.5, 1.5]},
    "document": {"forget": [0.5, 5, 5, 5], "retain_near": [1.0, 1.0, 1.0, 1.0]},
}


def threshold_table(document_points, token_points, size="m") -> pd.DataFrame:
    """Thresholds series from (retain_near, forget) points; retain_far is a fixed offset."""
    rows = []
    n = SIZES[size]

    def add(arm, variant, r, f, frac):
        def loss(domain, c):
            return {"forget": f, "retain_near": r, "retain_far": r + 0.5}[domain]
        rows.extend(_rows("thresholds", arm, size, variant, loss, frac, checkpoints=False))

    add("baseline", "none", 1.98, 2.8, math.nan)
    for i, (r, f) in enumerate(document_points):
        add("document", f"f{i}", r, f, [0.03, 0.06, 0.12, 0.25, 0.5][i])
    for arm, pts in token_points.items():
        for i, (r, f) in enumerate(pts):
            add(arm, f"f{i}", r, f, [0.03, 0.06, 0.12, 0.25, 0.5][i])
    assert n  # the size exists in the ladder
    return pd.DataFrame(rows)


TOKEN_FRONTIER = [(2.00, 3.0), (2.02, 3.3), (2.05, 3.6), (2.10, 4.0)]
DOC_DOMINATED = [(2.01, 3.05), (2.04, 3.3), (2.08, 3.5), (2.20, 3.9)]  # last: beaten by (2.10, 4.0)
DOC_BETTER = [(2.01, 3.05), (2.04, 3.6)]  # token frontier at 2.04 is 3.5 < 3.6
DOC_RIGHT = [(2.3, 3.0), (2.4, 3.5)]  # costlier than every token point and forgets less: beaten
DOC_LEFT = [(1.9, 2.5)]  # cheaper than every token point: the token arm cannot match it


# --- power-law fit and slowdowns -------------------------------------------------------------

def test_fit_recovers_exact_power_law():
    c = np.array([1e15, 4e15, 1.6e16, 6.4e16])
    fit = fit_power_law(c, 60.0 * c ** -0.06)
    assert fit.b == pytest.approx(-0.06, rel=1e-9)
    assert math.exp(fit.a) == pytest.approx(60.0, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.n == 4 and fit.compute_min == 1e15 and fit.compute_max == 6.4e16
    assert fit.compute_at(fit.loss_at(3e15)) == pytest.approx(3e15, rel=1e-9)


def test_slowdown_recovers_known_factor_on_synthetic_power_laws():
    df = main_table(HOLDING_K)
    fits = baseline_fits(df)
    assert set(fits) == set(LAW)
    for fit in fits.values():
        assert fit.r2 == pytest.approx(1.0, abs=1e-12)
        assert fit.n == 4
    sd = slowdowns(df, fits)
    # 3 filtered arms × 4 sizes × 3 domains, final checkpoints only, no baseline rows.
    assert len(sd) == 36 and set(sd["arm"]) == {"document", "mask", "remove"}
    for _, row in sd.iterrows():
        k = HOLDING_K[row["arm"]].get(row["domain"], [1.0] * 4)[list(SIZES).index(row["size"])]
        assert row["slowdown"] == pytest.approx(k, rel=1e-6)
        assert row["log10_slowdown"] == pytest.approx(math.log10(k), abs=1e-6)
        assert row["matched_baseline_compute"] == pytest.approx(row["compute"] / k, rel=1e-6)
        assert row["baseline_loss_at_compute"] == pytest.approx(_law(row["domain"], row["compute"]), rel=1e-9)
        assert row["fit_r2"] == pytest.approx(1.0, abs=1e-12)


def test_extrapolation_flag_when_loss_outside_baseline_range():
    df = main_table(HOLDING_K)
    sd = slowdowns(df, baseline_fits(df))
    c_min = 6.0 * SIZES["xs"] * 20 * SIZES["xs"]
    c_max = 6.0 * SIZES["l"] * 20 * SIZES["l"]
    for _, row in sd.iterrows():
        # The matched compute lies outside the fitted baseline computes exactly when the loss lies
        # outside the fitted baseline losses (the law is monotone).
        matched = row["matched_baseline_compute"]
        outside = matched < c_min * (1 - 1e-9) or matched > c_max * (1 + 1e-9)
        assert bool(row["extrapolated"]) == outside, row.to_dict()
        assert ("extrapolated" in row["note"]) == outside
    # Known cases: removal at l (k=300 > 64 = C_l/C_xs) extrapolates; removal at l on retain-near does not.
    r = sd.set_index(["arm", "size", "domain"])
    assert r.loc[("remove", "l", "forget"), "extrapolated"]
    assert not r.loc[("remove", "l", "retain_near"), "extrapolated"]


def test_non_decreasing_fit_gives_nan_slowdowns_with_note():
    rows = []
    for size in SIZES:
        rows += _rows("main", "baseline", size, "none", lambda d, c: 0.5 * c ** 0.01)
        rows += _rows("main", "remove", size, "default", lambda d, c: 0.6 * c ** 0.01)
    df = pd.DataFrame(rows)
    fits = baseline_fits(df)
    assert all(f.b > 0 and not f.decreasing for f in fits.values())
    assert math.isnan(fits["forget"].compute_at(3.0))
    sd = slowdowns(df, fits)
    assert sd["slowdown"].isna().all() and sd["log10_slowdown"].isna().all()
    assert sd["note"].str.contains("≥ 0").all()
    card = evaluate_claims(df, sd, None).set_index("claim")
    assert (card["verdict"].iloc[:6] == "not measured").all()


def test_fit_needs_two_baseline_sizes():
    df = main_table(HOLDING_K, sizes=("xs",))
    with pytest.raises(ValueError, match="at least 2 baseline sizes"):
        baseline_fits(df)
    with pytest.raises(ValueError, match="no final baseline checkpoint"):
        baseline_fits(main_table(HOLDING_K), fit_sizes=["s", "xxl"])
    with pytest.raises(ValueError, match="distinct compute"):
        fit_power_law([1e15, 1e15], [3.0, 2.9])


def test_fit_sizes_restricts_the_fit():
    df = main_table(HOLDING_K)
    # Perturb the smallest baseline so that only the restricted fit is exact.
    df.loc[(df["arm"] == "baseline") & (df["size"] == "xs"), "loss"] *= 1.2
    assert baseline_fits(df)["forget"].r2 < 0.999
    fit = baseline_fits(df, fit_sizes=["s", "m", "l"])["forget"]
    assert fit.n == 3 and fit.r2 == pytest.approx(1.0, abs=1e-12)


def test_final_losses_is_wide_and_ignores_intermediate_checkpoints():
    wide = final_losses(main_table(HOLDING_K))
    assert len(wide) == 16 and {"forget", "retain_near", "retain_far"} <= set(wide.columns)
    base_l = wide[(wide["arm"] == "baseline") & (wide["size"] == "l")].iloc[0]
    assert base_l["forget"] == pytest.approx(_law("forget", base_l["compute"]))


# --- Pareto comparison -----------------------------------------------------------------------

def test_pareto_token_dominates():
    res = pareto_comparison(threshold_table(DOC_DOMINATED, {"remove": TOKEN_FRONTIER}), "remove")
    assert res["n_document_points"] == 4
    assert res["n_comparable"] == 4 and res["n_token_wins"] == 4 and res["dominates"]
    # Interpolated frontier at 2.01, 2.04, 2.08; beyond the token range the best token point.
    assert res["mean_margin"] == pytest.approx((0.1 + 0.2 + 0.34 + 0.1) / 4)


def test_pareto_token_does_not_dominate():
    res = pareto_comparison(threshold_table(DOC_BETTER, {"mask": TOKEN_FRONTIER}), "mask")
    assert res["n_comparable"] == 2 and res["n_token_wins"] == 1 and not res["dominates"]
    assert res["mean_margin"] == pytest.approx((0.1 - 0.1) / 2, abs=1e-12)


def test_pareto_outside_the_token_range_and_ties():
    # Document points costlier than every token point are beaten by a token point directly.
    res = pareto_comparison(threshold_table(DOC_RIGHT, {"remove": TOKEN_FRONTIER}), "remove")
    assert res["n_comparable"] == 2 and res["dominates"]
    assert res["mean_margin"] == pytest.approx((1.0 + 0.5) / 2)
    # A document point cheaper than every token point cannot be matched: no dominance.
    res = pareto_comparison(threshold_table(DOC_LEFT, {"remove": TOKEN_FRONTIER}), "remove")
    assert res["n_comparable"] == 1 and res["n_token_wins"] == 0 and not res["dominates"]
    assert math.isnan(res["mean_margin"])
    # A document point lying exactly on the token frontier counts as a token win (≥).
    wide = pd.DataFrame({"arm": ["remove", "remove", "document"], "retain_near": [1.0, 2.0, 1.5],
                         "forget": [3.0, 4.0, 3.5]})
    tie = pareto_comparison(wide, "remove")
    assert tie["n_comparable"] == 1 and tie["dominates"]


def test_spearman():
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1], [2]))


# --- scorecard -------------------------------------------------------------------------------

def seeded_table(k, seeds: dict[str, int], jitter: float) -> pd.DataFrame:
    """``main_table`` with several seeds at some sizes: seed r of a run has its losses scaled by
    (1 + jitter·(r − 1)), so the spread over seeds of a difference between arms is known."""
    base = main_table(k)
    frames = [base.assign(replicate=0)]
    arm_sign = {"baseline": 0.0, "document": 1.0, "mask": -1.0, "remove": 0.5}
    for size, n in seeds.items():
        for r in range(1, n):
            extra = base[base["size"] == size].assign(replicate=r)
            # Arms move in different directions from seed to seed, as independent runs do.
            scale = 1 + jitter * r * extra["arm"].map(arm_sign) * (-1) ** r
            frames.append(extra.assign(loss=extra["loss"] * scale))
    return pd.concat(frames, ignore_index=True)


def all_forms(df: pd.DataFrame) -> pd.DataFrame:
    from tokenfilter.analysis.fits import FIT_FORMS

    return pd.concat([slowdowns(df, baseline_fits(df, None, form)).assign(fit_form=form) for form in FIT_FORMS],
                     ignore_index=True)


def _scorecard(k, doc_points, token_points, seeds=None, jitter=0.0):
    df = seeded_table(k, seeds or {"l": 3, "m": 3}, jitter)
    return evaluate_claims(df, all_forms(df), pareto_table(threshold_table(doc_points, token_points)))


def test_scorecard_claims_hold_when_margins_exceed_the_seed_spread():
    card = _scorecard(HOLDING_K, DOC_DOMINATED, {"mask": TOKEN_FRONTIER, "remove": TOKEN_FRONTIER}, jitter=1e-5)
    assert list(card.columns) == SCORECARD_COLUMNS
    assert len(card) == 9
    verdicts = dict(zip(card["claim"], card["verdict"]))
    ordering = [c for c in verdicts if "(forget loss at equal compute)" in c]
    assert len(ordering) == 3 and all(verdicts[c] == "holds" for c in ordering), card[["claim", "why"]].to_string()
    first = card.iloc[0]
    assert first["margin"] > first["spread"] > 0 and "3 seeds" in first["measured"]
    assert "removal 300×" in first["measured"]  # the configured form's slowdown beside the paper's
    assert card.iloc[3]["verdict"] in ("holds", "inconclusive")  # scale: depends on extrapolation


CLOSE_K = {  # arms that differ by a few percent of compute at every size
    "remove": {"forget": [1.3, 1.3, 1.3, 1.3], "retain_near": [1.0, 1.0, 1.0, 1.0]},
    "mask": {"forget": [1.2, 1.2, 1.2, 1.2], "retain_near": [1.0, 1.0, 1.0, 1.0]},
    "document": {"forget": [1.1, 1.1, 1.1, 1.1], "retain_near": [1.02, 1.02, 1.02, 1.02]},
}


def test_a_margin_inside_the_spread_is_inconclusive_never_holds():
    # Seed-to-seed noise of a few percent of the loss dwarfs the arms' differences at the size read.
    card = _scorecard(CLOSE_K, DOC_DOMINATED, {"mask": TOKEN_FRONTIER, "remove": TOKEN_FRONTIER}, jitter=0.05)
    ordering = card[card["claim"].str.contains("at equal compute")]
    assert (ordering["verdict"] == "inconclusive").all(), ordering[["claim", "margin", "spread"]].to_string()
    assert (ordering["margin"].abs() <= ordering["spread"]).all()
    assert ordering["why"].str.contains("inside the spread").all()


def test_one_seed_gives_no_spread_and_no_verdict():
    df = main_table(HOLDING_K)  # no replicate column: every size has one seed
    card = evaluate_claims(df, all_forms(df), None)
    ordering = card[card["claim"].str.contains("at equal compute")]
    assert (ordering["verdict"] == "inconclusive").all()
    assert ordering["why"].str.contains("fewer than 3").all()


def test_scorecard_claims_fail_beyond_the_spread():
    card = _scorecard(FAILING_K, DOC_BETTER, {"mask": TOKEN_FRONTIER, "remove": TOKEN_FRONTIER}, jitter=1e-5)
    verdicts = card.set_index("claim")["verdict"]
    assert verdicts[[c for c in verdicts.index if "removal slows forget-domain learning more than document" in c][0]] \
        == "does not hold"
    assert (card[card["claim"].str.contains("Pareto")]["verdict"] == "does not hold").all()
    assert card.iloc[-1]["verdict"] == "does not hold"  # document at xs sits below the baseline


def test_a_trend_that_flips_between_law_forms_is_inconclusive():
    from tokenfilter.analysis.scorecard import _scale_claim

    rows = []
    for form, values in (("power_law", [10, 20, 40]), ("power_law_with_floor", [40, 20, 10]),
                         ("interpolation", [15, 25, 35])):
        for size, v in zip(("s", "m", "l"), values):
            rows.append({"arm": "remove", "size": size, "variant": "default", "domain": "forget", "slowdown": v,
                         "extrapolated": False, "fit_form": form})
    row = _scale_claim(None, pd.DataFrame(rows))
    assert row["verdict"] == "inconclusive" and "disagree" in row["why"]
    extrapolated = pd.DataFrame([dict(r, extrapolated=True, fit_form=f) for r in rows
                                 for f in ("power_law",) if r["fit_form"] == "power_law"])
    assert _scale_claim(None, extrapolated)["verdict"] == "inconclusive"


def test_scorecard_not_measured_on_missing_inputs():
    card = evaluate_claims(None, None, None)
    assert len(card) == 9
    assert (card["verdict"] == "not measured").all() and (card["row_class"] == "na").all()
    thr = pareto_table(threshold_table(DOC_DOMINATED, {"remove": TOKEN_FRONTIER}))
    card = evaluate_claims(None, None, thr)
    assert "no masking and document runs" in card.iloc[6]["measured"]
    # Without a ladder there is no seed spread at the thresholds size: inconclusive, never holds.
    assert card.iloc[7]["verdict"] == "inconclusive"


def test_pareto_joins_token_points_in_threshold_order_not_by_retain_loss():
    """Retain-near loss is not monotone in the threshold here: joined by retain loss the frontier
    would pass through (2.05, 4.0), a point between the 6% and 12% runs no threshold gives."""
    wide = pd.DataFrame({
        "arm": ["mask"] * 3 + ["document"],
        "variant": ["f03", "f06", "f12", "d"],
        "filtered_fraction": [0.03, 0.06, 0.12, 0.1],
        "retain_near": [2.0, 2.1, 2.05, 2.06],
        "forget": [3.0, 4.0, 3.2, 3.5],
    })
    res = pareto_comparison(wide, "mask")
    (point,) = res["points"]
    # In threshold order the segments are (2.0, 3.0)-(2.1, 4.0) and (2.1, 4.0)-(2.05, 3.2): at
    # retain 2.06 the first gives 3.6, the second 3.2 + (2.06-2.05)/(0.05)·0.8 = 3.36.
    assert point["token_forget"] == pytest.approx(3.6)
    assert point["margin"] == pytest.approx(0.1)
    # Sorted by retain loss instead, (2.05, 3.2)-(2.1, 4.0) would give 3.36 at 2.06 and the
    # (2.0, 3.0)-(2.05, 3.2) segment never reaches 2.06: a different, invented frontier.


# --- plots -----------------------------------------------------------------------------------

def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers


def test_plots_write_png_atomically(tmp_path):
    df = main_table(HOLDING_K)
    sd = slowdowns(df, baseline_fits(df))
    thr = threshold_table(DOC_DOMINATED, {"mask": TOKEN_FRONTIER, "remove": TOKEN_FRONTIER})
    calls = [
        (plot_compute_loss, df, "compute_loss.png"),
        (plot_learning_curves, df, "learning_curves.png"),
        (plot_frontier, df, "frontier.png"),
        (plot_slowdown, sd, "slowdown.png"),
        (plot_threshold_pareto, thr, "threshold_pareto.png"),
    ]
    for func, table, name in calls:
        func(table, tmp_path / name)
        _assert_png(tmp_path / name)


def test_plot_slowdown_with_only_nan_values(tmp_path):
    rows = []
    for size in SIZES:
        rows += _rows("main", "baseline", size, "none", lambda d, c: 0.5 * c ** 0.01)
        rows += _rows("main", "mask", size, "default", lambda d, c: 0.6 * c ** 0.01)
    df = pd.DataFrame(rows)
    plot_slowdown(slowdowns(df, baseline_fits(df)), tmp_path / "nan.png")
    _assert_png(tmp_path / "nan.png")


def test_power_law_fit_is_a_plain_dataclass():
    fit = PowerLawFit(a=1.0, b=-0.1, r2=1.0, n=2, loss_min=1.0, loss_max=2.0, compute_min=1.0, compute_max=10.0)
    assert fit.in_loss_range(1.5) and not fit.in_loss_range(2.5)


# --- power law with an irreducible floor -------------------------------------------------------

def test_floor_fit_recovers_an_exact_law_and_the_slowdown():
    """L = E + A·C^b exactly: the floor form recovers E and b, R² = 1, and a filtered model
    whose loss is the law's at C/k gets slowdown k; the pure power law fits such data worse."""
    E, A, b = 1.03, 40.0, -0.3
    compute = np.geomspace(1e11, 1e13, 5)
    loss = E + A * compute**b
    fit = fit_power_law(compute, loss, "power_law_with_floor")
    assert fit.floor == pytest.approx(E, abs=2e-3) and fit.b == pytest.approx(b, rel=0.02)
    assert fit.r2 == pytest.approx(1.0, abs=1e-6)
    assert fit_power_law(compute, loss).r2 < fit.r2
    from tokenfilter.analysis.fits import loss_matched_slowdown

    c_f = 3e12
    slow, extrapolated, _ = loss_matched_slowdown(fit, c_f, E + A * (c_f / 20) ** b)
    assert slow == pytest.approx(20, rel=0.02) and not extrapolated
    below, _, note = loss_matched_slowdown(fit, c_f, E * 0.99)
    assert math.isnan(below) and "irreducible" in note


def test_floor_fit_needs_three_points_and_a_known_form():
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_power_law([1e11, 1e12], [2.0, 1.5], "power_law_with_floor")
    with pytest.raises(ValueError, match="unknown form"):
        fit_power_law([1e11, 1e12], [2.0, 1.5], "spline")


# --- run time ----------------------------------------------------------------------------------

def test_timings_sum_per_stage_and_rung(tmp_path):
    from tokenfilter.analysis.timings import timings_table

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    jobs = {"data/generate_world.tsv": (10.0, 9.0), "pretrain/main/mask/s/default/r0.tsv": (60.0, 58.0),
            "pretrain/baselines/baseline/s/none/r0.tsv": (50.0, 49.0), "pretrain/main/mask/l/default/r0.tsv": (300.0, 290.0),
            "evaluate/main/mask/l/default/r0.tsv": (5.0, 4.0)}
    paths = []
    for rel, (wall, cpu) in jobs.items():
        path = tmp_path / "results" / "benchmarks" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{wall}\t0:00:{int(wall)}\t100.0\t200\t90\t95\t0\t0\t90\t{cpu}\n")
        paths.append(path)
    table = timings_table(paths).set_index(["stage", "rung"])
    assert table.loc[("pretrain", "s"), "jobs"] == 2 and table.loc[("pretrain", "s"), "wall_s"] == 110.0
    assert table.loc[("pretrain", "(all)"), "core_minutes"] == pytest.approx((58 + 49 + 290) / 60)
    assert table.loc[("data", ""), "wall_s"] == 10.0
    assert table.loc[("(all)", ""), "jobs"] == 5 and table.loc[("(all)", ""), "wall_s"] == 425.0

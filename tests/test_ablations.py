"""Ablation sweeps (issue 13): label noise, thresholds across sizes, delay (E14, E15, E18) and the
learning-rate sweep with its µP decision (E0): tables, claims and the runs each series trains."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tokenfilter.analysis.lr_sweep import best_table, hparams_for, sweep_runs, transfer_claims, transfer_gaps
from tokenfilter.analysis.sweeps import delay_claims, noise_claims, power_law, sweep_table, threshold_claims
from tokenfilter.config import load_config
from tokenfilter.config.experiments import Run, series_runs, train_spec

TINY = Path(__file__).resolve().parents[1] / ".test" / "config.yaml"

SPREAD = (0.1, 3, "s")  # a seed spread of 0.1 nats over 3 seeds


def _tidy(rows):
    """Final-checkpoint loss rows (series, arm, size, variant, params, forget, retain_near, retain_far)."""
    out = []
    for series, arm, size, variant, params, forget, near, far in rows:
        for domain, loss in (("forget", forget), ("retain_near", near), ("retain_far", far)):
            out.append({"series": series, "arm": arm, "size": size, "variant": variant, "replicate": 0,
                        "params": params, "step": 10, "tokens": 20 * params, "final": True,
                        "compute": 6.0 * params * 20 * params, "domain": domain, "loss": loss,
                        "filtered_fraction": math.nan})
    return pd.DataFrame(out)


def _noise_table():
    variants = {"r00": {"filter": "truth"}, "u05": {"filter": "truth", "noise": 0.05},
                "s05": {"filter": "truth", "noise": 0.05, "noise_structure": "structured"},
                "u40": {"filter": "truth", "noise": 0.4}}
    losses = _tidy([("n", "baseline", "xs", "none", 100, 3.0, 2.0, 2.5),
                    ("n", "mask", "xs", "r00", 100, 6.0, 1.9, 2.5),
                    ("n", "mask", "xs", "u05", 100, 4.0, 2.0, 2.5),
                    ("n", "mask", "xs", "s05", 100, 5.5, 2.0, 2.5),
                    ("n", "mask", "xs", "u40", 100, 3.2, 2.1, 2.5)])
    summaries = [{"run": f"n/mask/xs/{v}/r0", "filter_quality": {"error_rate": e}}
                 for v, e in (("r00", 0.0), ("u05", 0.05), ("s05", 0.05), ("u40", 0.4))]
    slowdowns = pd.DataFrame([{"arm": "mask", "size": "xs", "variant": v, "replicate": 0, "domain": "forget",
                               "slowdown": s, "extrapolated": False} for v, s in (("r00", 100.0), ("u05", 8.0),
                                                                                  ("s05", 50.0), ("u40", 1.5))])
    return sweep_table("noise", losses, slowdowns, summaries, variants)


def test_a_sweep_reads_each_run_against_its_own_sizes_baseline_and_its_measured_error():
    table = _noise_table()
    row = table.set_index("variant").loc["u05"]
    assert row["x"] == pytest.approx(0.05) and row["structure"] == "uniform" and row["filter"] == "truth"
    assert row["d_forget"] == pytest.approx(1.0) and row["slowdown"] == pytest.approx(8.0)
    assert table.set_index("variant").loc["s05", "structure"] == "structured"


def test_noise_claims_read_the_fall_with_error_and_the_structured_vs_uniform_gap():
    rows = {r["claim"].split(" (")[0]: r for r in noise_claims(_noise_table(), SPREAD)}
    falls = rows["Slowdown falls as a power law of the classifier's error rate"]
    assert falls["verdict"] == "holds" and falls["margin"] == pytest.approx(3.0 - 0.2)  # 0% vs 40% error
    structured = next(r for c, r in rows.items() if c.startswith("Errors where a real classifier errs"))
    assert structured["verdict"] == "holds" and structured["margin"] == pytest.approx(1.5)
    # Inside the noise: inconclusive, never a verdict.
    wide = {r["claim"][:20]: r["verdict"] for r in noise_claims(_noise_table(), (5.0, 3, "s"))}
    assert set(wide.values()) == {"inconclusive"}


def test_power_law_fit_recovers_its_exponent():
    x = np.array([0.05, 0.1, 0.2, 0.4])
    fit = power_law(x, 3.0 * x ** -1.5)
    assert fit["b"] == pytest.approx(-1.5) and fit["r2"] == pytest.approx(1.0)
    assert math.isnan(power_law(x[:2], x[:2])["b"])  # two points fit nothing


def test_delay_claims_compare_the_forget_gain_at_40_percent_with_the_undelayed():
    variants = {"d00": {"delay": 0.0}, "d40": {"delay": 0.4}, "d80": {"delay": 0.8}}
    losses = _tidy([("d", "baseline", "xs", "none", 100, 3.0, 2.0, 2.5),
                    ("d", "mask", "xs", "d00", 100, 5.0, 2.0, 2.5),  # +2.0
                    ("d", "mask", "xs", "d40", 100, 3.5, 2.0, 2.5),  # +0.5: a 4x smaller gain
                    ("d", "mask", "xs", "d80", 100, 3.1, 2.0, 2.5)])
    table = sweep_table("delay", losses, pd.DataFrame(columns=["domain"]), [], variants)
    rows = delay_claims(table, SPREAD)
    assert rows[0]["verdict"] == "holds" and rows[0]["margin"] == pytest.approx(2.0 - 3 * 0.5)
    assert rows[1]["verdict"] == "holds" and rows[1]["margin"] == pytest.approx(1.9)
    losses.loc[(losses["variant"] == "d40") & (losses["domain"] == "forget"), "loss"] = 4.5  # keeps 3/4
    table = sweep_table("delay", losses, pd.DataFrame(columns=["domain"]), [], variants)
    assert delay_claims(table, SPREAD)[0]["verdict"] == "does not hold"


def test_threshold_claims_need_every_size_to_rise_and_read_scale():
    variants = {"f03": {"fraction": 0.03}, "f50": {"fraction": 0.5}}
    losses = _tidy([("t", "baseline", "xxs", "none", 50, 4.0, 3.0, 3.0), ("t", "baseline", "s", "none", 200, 3.0, 2.0, 2.0),
                    ("t", "mask", "xxs", "f03", 50, 4.2, 3.0, 3.0), ("t", "mask", "xxs", "f50", 50, 5.0, 3.5, 3.0),
                    ("t", "mask", "s", "f03", 200, 3.5, 2.0, 2.0), ("t", "mask", "s", "f50", 200, 5.5, 2.05, 2.0)])
    summaries = [{"run": f"t/mask/{s}/{v}/r0", "filtered_fraction": f}
                 for s in ("xxs", "s") for v, f in (("f03", 0.03), ("f50", 0.5))]
    table = sweep_table("thresholds", losses, pd.DataFrame(columns=["domain"]), summaries, variants)
    forget, retain, scale = threshold_claims(table, SPREAD, SPREAD)
    assert forget["verdict"] == "holds" and forget["margin"] == pytest.approx(0.8)  # the smaller rise
    assert retain["verdict"] == "inconclusive" and retain["margin"] == pytest.approx(0.05)  # s: +0.05 only
    assert scale["verdict"] == "holds" and scale["margin"] == pytest.approx(2.0 - 0.8)


# --- the learning-rate sweep -------------------------------------------------------------------

LADDER = {"a": {"n_layer": 2, "n_embd": 16, "n_head": 2, "lr": 0.02, "weight_decay": 0.1},
          "b": {"n_layer": 2, "n_embd": 32, "n_head": 2, "lr": 0.02, "weight_decay": 0.1}}
SWEEP = {f"{p}_{lr}": {"lr": lr, **({"mup_base_width": 16} if p == "mup" else {})}
         for p in ("sp", "mup") for lr in (0.01, 0.02, 0.04)}


def _sweep_losses():
    # Loss curves in ln(lr): SP's optimum moves from 0.04 (width 16) to 0.01 (width 32); µP's stays at 0.02.
    best = {("sp", "a"): 0.04, ("sp", "b"): 0.01, ("mup", "a"): 0.02, ("mup", "b"): 0.02}
    rows = [("lr", "baseline", "a", "none", 50, 9.0, 9.0, 9.0)]  # a shared baseline: not a sweep run
    for name, hp in SWEEP.items():
        p = name.split("_")[0]
        for size, params in (("a", 50), ("b", 200)):
            loss = 3.0 + 0.1 * math.log(hp["lr"] / best[(p, size)]) ** 2
            rows.append(("lr", "baseline", size, name, params, loss, loss, loss))
    return _tidy(rows)


def test_the_sweep_table_picks_each_widths_best_and_measures_the_transfer():
    runs = sweep_runs(_sweep_losses(), "lr", SWEEP, LADDER, None)
    assert len(runs) == 12 and not (runs["variant"] == "none").any()
    table = best_table(runs).set_index(["parametrisation", "n_embd"])
    assert table.loc[("SP", 16), "lr"] == 0.04 and table.loc[("SP", 32), "lr"] == 0.01
    assert table.loc[("µP (base 16)", 16), "lr"] == table.loc[("µP (base 16)", 32), "lr"] == 0.02
    gaps = transfer_gaps(runs, best_table(runs)).set_index("parametrisation")
    assert gaps.loc["µP (base 16)", "gap"] == pytest.approx(0.0)
    assert gaps.loc["SP", "gap"] == pytest.approx(0.1 * math.log(4.0) ** 2)
    claim = transfer_claims(gaps.reset_index(), spread=0.05, seeds=3)[0]
    assert claim["verdict"] == "holds"
    # An optimum at the grid's edge is not bracketed: no verdict.
    edge = gaps.reset_index().assign(at_grid_edge=True)
    assert transfer_claims(edge, spread=0.05, seeds=3)[0]["verdict"] == "inconclusive"
    # Were µP's optimum to move as SP's does, the claim would fail.
    moved = gaps.reset_index().assign(gap=lambda d: np.where(d["parametrisation"] == "SP", d["gap"], 0.5))
    assert transfer_claims(moved, spread=0.05, seeds=3)[0]["verdict"] == "does not hold"


def test_hparams_from_a_sweep_gives_each_size_its_row():
    table = best_table(sweep_runs(_sweep_losses(), "lr", SWEEP, LADDER, None))
    assert hparams_for(table, 2, 64, None) == {"lr": 0.01, "weight_decay": 0.1}  # SP: the nearest width (32)
    assert hparams_for(table, 2, 512, 16) == {"lr": 0.02, "weight_decay": 0.1}  # µP: transfers
    with pytest.raises(ValueError, match="depth 3"):
        hparams_for(table, 3, 64, None)


def test_an_lr_sweep_trains_its_own_baselines_with_each_variants_hparams():
    config = load_config(TINY)
    config["experiments"] = {**config["experiments"], "sweep": {
        "kind": "lr_sweep", "arms": ["baseline"], "sizes": ["a"], "seeds": 1,
        "variants": {"fast": {"lr": 0.05, "weight_decay": 0.0}, "mup": {"lr": 0.01, "mup_base_width": 8}}}}
    runs = list(series_runs(config, "sweep"))
    assert runs == [Run("sweep", "baseline", "a", "fast"), Run("sweep", "baseline", "a", "mup")]
    fast = train_spec(config, runs[0], "shard", None)
    mup = train_spec(config, runs[1], "shard", None)
    assert (fast["lr"], fast["weight_decay"]) == (0.05, 0.0) and fast["model"]["mup_base_width"] is None
    assert mup["lr"] == 0.01 and mup["model"]["mup_base_width"] == 8
    assert mup["weight_decay"] == config["ladder"]["a"]["weight_decay"]


@pytest.mark.parametrize("bad, message", [
    ({"training": {"hparams_from": "main"}}, "training.hparams_from"),
    ({"experiments": {"lr_sweep": {"arms": ["baseline", "mask"]}}}, "trains baselines only"),
    ({"experiments": {"thresholds": {"variants": {"f12": {"fraction": 0.12, "lr": 0.1}}}}}, "only series of kind"),
])
def test_misplaced_hyperparameters_are_refused_naming_the_key(tmp_path, bad, message):
    import yaml

    from tokenfilter.errors import ConfigError

    config = yaml.safe_load(TINY.read_text())
    for section, value in bad.items():
        for key, sub in value.items():
            if isinstance(sub, dict) and isinstance(config[section].get(key), dict):
                config[section][key].update(sub)
            else:
                config[section][key] = sub
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    with pytest.raises(ConfigError, match=message):
        load_config(path)

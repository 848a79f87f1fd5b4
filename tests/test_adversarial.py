"""Adversarial finetuning to baseline parity through the one training loop (paper §4.3, E9), and the
robustness stage's tables and claims."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import MODEL, pretrain_spec, runtime
from tokenfilter.analysis.scorecard import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED
from tokenfilter.config.experiments import adversarial_settings, attack_runs, parse_setting, setting_name
from tokenfilter.io import read_json, write_json
from tokenfilter.robustness.adversarial import ParityEvaluator, adversarial_finetune
from tokenfilter.robustness.report import chosen_settings, parity_table, robustness_claims
from tokenfilter.train.loop import TrainSpec


@pytest.fixture(scope="module")
def attack_shard(tiny_world):
    from tokenfilter.data.shards import tokenize_corpus

    out = tiny_world["root"] / "tokens" / "attack"
    if not out.exists():
        tokenize_corpus(tiny_world["out"]["attack"], tiny_world["tokenizer"], out, progress=False)
    return out


@pytest.fixture(scope="module")
def models(tiny_world, tmp_path_factory):
    """A baseline and a forget-masked model of the tiny world (same size, same seed)."""
    from tokenfilter.filtering.annotation import annotate
    from tokenfilter.train.pretraining import pretrain

    tmp = tmp_path_factory.mktemp("attacked")
    shard = tiny_world["shards"]["train"]
    truth = tmp / "truth"
    annotate({"kind": "truth", "context_window": 4, "error_rate": 0.0}, shard, truth, seed=0)
    out = {}
    for arm, scores in (("baseline", None), ("mask", truth)):
        spec = pretrain_spec(shard, scores, tmp, arm, arm=arm, snapshots=0, model=dict(MODEL, n_embd=32))
        pretrain(spec)
        out[arm] = Path(spec.out_dir) / "model"
    return out


def attack_spec(models, tiny_world, attack_shard, tmp_path, name="attack", budget_share=2.0, **overrides) -> TrainSpec:
    """The masked model attacked with the attacker's corpus. The loss is measured on that corpus too:
    these tests check the mechanics (stop at parity, lower bounds, resume), and tiny models of the
    tiny world do not transfer from the attacker's templates to the held-out eval templates well
    enough to reach the baseline there within a test's budget."""
    fields = {
        "run": f"robustness/mask/tiny/{name}/r0", "task": "adversarial", "init_from": str(models["mask"]),
        "model": None,
        "data": {"attack_shard": str(attack_shard), "eval_shard": str(attack_shard),
                 "baseline_model": str(models["baseline"]), "eval_tokens": 2048, "eval_batch_size": 16,
                 "eval_every": 2, "pretraining_tokens_per_param": 4},
        "objective": {"kind": "lm"}, "lr": 1e-2, "weight_decay": 0.01, "betas": [0.9, 0.95], "eps": 1e-8,
        "grad_clip": 1.0, "schedule": "constant", "warmup_fraction": 0.0, "min_lr_ratio": 1.0,
        "budget": {"tokens_per_param": budget_share * 4}, "count": "processed", "batch_tokens": 512,
        "micro_batch_size": 16, "precision": "fp32", "kernels": "fused", "compile": False, "compile_min_flops": 2.0e12, "seed": 5,
        "snapshots": 0,
        **runtime(tmp_path / f"{name}_out", tmp_path / f"{name}_ckpt", checkpoint_every=3),
    }
    fields.update(overrides)
    return TrainSpec.from_dict(fields)


def test_the_attack_stops_at_parity_and_reports_the_interpolated_tokens(models, tiny_world, attack_shard, tmp_path):
    summary = adversarial_finetune(attack_spec(models, tiny_world, attack_shard, tmp_path))
    evals, parity = summary["evals"], summary["parity"]
    assert evals[0]["step"] == 0 and evals[0]["tokens"] == 0  # the model before any update
    assert evals[0]["forget_loss"] > summary["baseline_forget_loss"]  # masking raised the forget loss
    assert parity["reached"] and summary["stopped_early"]
    assert evals[-1]["forget_loss"] <= summary["baseline_forget_loss"] < evals[-2]["forget_loss"]
    assert evals[-2]["tokens"] < parity["tokens"] <= evals[-1]["tokens"]
    assert summary["steps"] == evals[-1]["step"]  # nothing trained after parity
    assert parity["percent_of_pretraining"] == pytest.approx(100 * parity["tokens"] / (4 * summary["params"]))
    assert read_json(tmp_path / "attack_out" / "summary.json")["parity"] == parity


def test_a_budget_too_small_for_parity_gives_a_lower_bound(models, tiny_world, attack_shard, tmp_path):
    spec = attack_spec(models, tiny_world, attack_shard, tmp_path, "short", budget_share=0.05, lr=1e-4)
    summary = adversarial_finetune(spec)
    assert not summary["parity"]["reached"] and not summary["stopped_early"]
    assert summary["parity"]["tokens"] == summary["evals"][-1]["tokens"] == summary["tokens"]  # evaluated at the end


def test_a_preempted_attack_resumes_with_its_evaluations(models, tiny_world, attack_shard, tmp_path, monkeypatch):
    """Evaluations live in the checkpoint: a resumed attack has the same curve and stops at the same step."""
    whole = adversarial_finetune(attack_spec(models, tiny_world, attack_shard, tmp_path, "whole"))
    spec = attack_spec(models, tiny_world, attack_shard, tmp_path, "cut")
    evaluate = ParityEvaluator.__call__

    def preempted_at_step_4(self, model, step, tokens):  # SIGTERM arrives during the step-4 evaluation
        if step == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return evaluate(self, model, step, tokens)

    monkeypatch.setattr(ParityEvaluator, "__call__", preempted_at_step_4)
    with pytest.raises(SystemExit):
        adversarial_finetune(spec)
    monkeypatch.setattr(ParityEvaluator, "__call__", evaluate)
    resumed = adversarial_finetune(spec)
    assert resumed["resumed_from"], "the second call should resume the checkpoint of the first"
    assert [(e["step"], round(e["forget_loss"], 6)) for e in resumed["evals"]] == \
        [(e["step"], round(e["forget_loss"], 6)) for e in whole["evals"]]
    assert resumed["parity"] == whole["parity"]


# --- settings and runs from config ------------------------------------------------------------------

def _config(sizes=("s", "l"), seeds=None, sweep_size="s"):
    return {"seed": 1, "ladder": {"s": {"n_embd": 32, "n_layer": 2}, "l": {"n_embd": 64, "n_layer": 2}},
            "experiments": {"main": {"kind": "ladder", "arms": ["baseline", "document", "mask", "remove"],
                                     "sizes": ["s", "l"], "seeds": seeds or {"s": 3}}},
            "robustness": {"sizes": list(sizes), "adversarial": {"lr": 3e-3, "lr_by_size": {"l": 1e-3},
                                                                 "weight_decay": 0.01, "sweep_size": sweep_size,
                                                                 "sweep_lrs": [1e-3, 1e-2],
                                                                 "sweep_weight_decays": [0.01, 0.1]}}}


def test_settings_round_trip_and_the_sweep_includes_the_chosen_setting():
    assert parse_setting(setting_name(3e-4, 0.01)) == (3e-4, 0.01)
    config = _config()
    swept = adversarial_settings(config, "s")
    assert (3e-3, 0.01) in swept and len(swept) == 5  # 2 lrs x 2 wds + the configured setting
    assert adversarial_settings(config, "l") == [(1e-3, 0.01)]


def test_attacks_follow_the_ladder_seeds():
    runs = attack_runs(_config())
    at_s = [r for r in runs if r[1] == "s"]
    # every target: 5 settings at seed 0, and the chosen setting at seeds 1 and 2
    assert len(at_s) == 4 * (5 + 2)
    assert {(t, k) for t, _, setting, k in at_s if k > 0 and setting == "lr0.003_wd0.01"} == \
        {(t, k) for t in ("document", "mask", "remove", "rmu") for k in (1, 2)}
    assert {r for r in runs if r[1] == "l"} == {(t, "l", "lr0.001_wd0.01", 0) for t in ("document", "mask", "remove", "rmu")}
    assert attack_runs(_config(sizes=())) == []


# --- tables and claims --------------------------------------------------------------------------------

def _summary(path, target, size, setting, k, tokens, reached, start=5.0, params=1000):
    pretraining = 20 * params
    write_json(path, {"run": f"robustness/{target}/{size}/{setting}/r{k}", "params": params,
                      "evals": [{"tokens": 0, "forget_loss": start}, {"tokens": tokens, "forget_loss": 3.0}],
                      "parity": {"tokens": tokens, "reached": reached, "baseline_loss": 3.0, "final_loss": 3.0,
                                 "pretraining_tokens": pretraining,
                                 "percent_of_pretraining": 100 * tokens / pretraining}})
    return path


def _table(tmp_path, rmu_tokens, arm_tokens, reached=True, rmu_start=9.0):
    return parity_table(_table_paths(tmp_path, rmu_tokens, arm_tokens, reached, rmu_start))


def _table_paths(tmp_path, rmu_tokens, arm_tokens, reached=True, rmu_start=9.0):
    paths = []
    for k, (r, a) in enumerate(zip(rmu_tokens, arm_tokens)):
        paths.append(_summary(tmp_path / f"rmu{k}.json", "rmu", "s", "lr0.001_wd0.01", k, r, True, rmu_start))
        for target in ("document", "mask", "remove"):
            paths.append(_summary(tmp_path / f"{target}{k}.json", target, "s", "lr0.001_wd0.01", k, a, reached))
    return paths


def test_claims_hold_when_every_seed_agrees_and_are_inconclusive_inside_the_spread(tmp_path):
    clear = robustness_claims(_table(tmp_path, [100, 110, 90], [1000, 1300, 900]), pd.DataFrame())
    ordering = clear[clear["claim"].str.startswith("RMU is recovered")]
    assert set(ordering["verdict"]) == {HOLDS}
    assert np.allclose(ordering["margin"], np.log([10, 1300 / 110, 10]).mean())
    noisy = robustness_claims(_table(tmp_path, [100, 500, 90], [150, 200, 80]), pd.DataFrame())
    assert set(noisy[noisy["claim"].str.startswith("RMU is recovered")]["verdict"]) == {INCONCLUSIVE}
    reverse = robustness_claims(_table(tmp_path, [1000, 1100, 900], [100, 120, 95]), pd.DataFrame())
    assert set(reverse[reverse["claim"].str.startswith("RMU is recovered")]["verdict"]) == {FAILS}


def test_an_rmu_that_missed_its_bar_decides_nothing(tmp_path):
    """Recovering an unlearning that did not unlearn says nothing about robustness: the ordering
    claims are inconclusive however clear the tokens to parity are."""
    rmu = pd.DataFrame({"size": ["s"] * 3, "replicate": [0, 1, 2], "passes_bar": [False, True, True]})
    claims = robustness_claims(_table(tmp_path, [100, 110, 90], [1000, 1300, 900]), rmu)
    ordering = claims[claims["claim"].str.startswith("RMU is recovered")]
    assert set(ordering["verdict"]) == {INCONCLUSIVE}
    assert ordering["why"].str.contains("missed its bar").all()


def test_claims_pair_seeds_on_the_setting_every_seed_ran(tmp_path):
    """The sweep runs seed 0 at several settings and the other seeds at the configured one; the
    claims read the configured setting over all seeds, not the sweep's fastest on seed 0 alone."""
    paths = _table_paths(tmp_path, [100, 110, 90], [1000, 1300, 900])
    for target in ("document", "mask", "remove", "rmu"):  # a faster sweep setting, seed 0 only
        paths.append(_summary(tmp_path / f"fast_{target}.json", target, "s", "lr0.01_wd0.01", 0, 50, True))
    claims = robustness_claims(parity_table(paths), pd.DataFrame())
    ordering = claims[claims["claim"].str.startswith("RMU is recovered")]
    assert ordering["measured"].str.contains("over 3 seeds").all(), ordering["measured"].tolist()
    assert set(ordering["verdict"]) == {HOLDS}


def test_lower_bounds_are_kept_and_said(tmp_path):
    table = _table(tmp_path, [100, 110, 90], [1000, 1300, 900], reached=False)
    assert len(table) == 12 and not table[table["target"] == "mask"]["reached"].any()
    claims = robustness_claims(table, pd.DataFrame())
    row = claims[claims["claim"].str.contains("masking")].iloc[0]
    assert row["verdict"] == HOLDS and "lower bound" in row["why"]


def test_one_seed_is_inconclusive_and_no_runs_is_not_measured(tmp_path):
    one = robustness_claims(_table(tmp_path, [100], [1000]), pd.DataFrame())
    assert set(one[one["claim"].str.startswith("RMU is recovered")]["verdict"]) == {INCONCLUSIVE}
    none = robustness_claims(pd.DataFrame(), pd.DataFrame())
    assert set(none["verdict"]) == {NOT_MEASURED}


def test_the_chosen_setting_is_the_fastest_of_the_sweep(tmp_path):
    paths = [_summary(tmp_path / "a.json", "mask", "s", "lr0.001_wd0.01", 0, 500, True),
             _summary(tmp_path / "b.json", "mask", "s", "lr0.01_wd0.01", 0, 200, True),
             _summary(tmp_path / "c.json", "mask", "s", "lr0.1_wd0.01", 0, 100, False)]
    chosen = chosen_settings(parity_table(paths))
    assert chosen.iloc[0]["lr"] == 0.01 and chosen.iloc[0]["tokens_to_parity"] == 200
    assert math.isclose(chosen.iloc[0]["percent_of_pretraining"], 1.0)

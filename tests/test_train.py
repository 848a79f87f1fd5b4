"""The trainer: schedule, accounting, gradient accumulation, and exact resume after a kill."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import MODEL, pretrain_spec
from tokenfilter.filtering.annotation import annotate
from tokenfilter.io import read_jsonl
from tokenfilter.train.loop import TrainSpec, lr_at, snapshot_steps
from tokenfilter.train.pretraining import pretrain as train


@pytest.fixture(scope="module")
def scores_dir(tiny_world):
    out = tiny_world["root"] / "annotate" / "truth"
    if not out.exists():
        annotate({"kind": "truth", "context_window": 4, "error_rate": 0.0}, tiny_world["shards"]["train"], out, seed=0)
    return out


def _spec(tiny_world, scores_dir, tmp_path, name="run", **overrides) -> TrainSpec:
    if "tokens_per_param" in overrides:
        overrides["budget"] = {"tokens_per_param": overrides.pop("tokens_per_param")}
    if "budget" in overrides and isinstance(overrides["budget"], str):
        overrides["count"] = overrides.pop("budget")
    return pretrain_spec(tiny_world["shards"]["train"], scores_dir, tmp_path, name, **overrides)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    lrs = [lr_at(s, 100, 1.0, 0.1, 0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:100], lrs[10:100]))
    assert lrs[100] == pytest.approx(0.1) and lrs[119] == pytest.approx(0.1)
    assert snapshot_steps(100, 3) == [25, 50, 75]


def test_run_writes_outputs_and_accounts_tokens(tiny_world, scores_dir, tmp_path):
    spec = _spec(tiny_world, scores_dir, tmp_path)
    summary = train(spec)
    out = Path(spec.out_dir)
    assert (out / "model" / "model.safetensors").is_file() and (out / "summary.json").is_file()
    assert len(list((out / "snapshots").iterdir())) == 2
    assert summary["tokens"] == summary["steps"] * 512
    assert summary["tokens"] >= summary["nominal_tokens"]
    # Masking drops the loss-bearing count by about the forget share of training tokens.
    masked = 1 - summary["loss_bearing_tokens"] / summary["tokens"]
    assert abs(masked - summary["filtered_fraction"]) < 0.08
    assert not Path(spec.checkpoint_dir).exists()  # the resumable checkpoint is cleaned up
    log = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(1, summary["steps"] + 1))
    assert log[-1]["loss"] < log[0]["loss"]


def test_loss_bearing_budget_trains_longer_for_masked_runs(tiny_world, scores_dir, tmp_path):
    processed = train(_spec(tiny_world, scores_dir, tmp_path, "p", snapshots=0))
    bearing = train(_spec(tiny_world, scores_dir, tmp_path, "b", snapshots=0, budget="loss_bearing"))
    assert bearing["steps"] > processed["steps"]
    assert bearing["loss_bearing_tokens"] >= bearing["nominal_tokens"]


def test_gradient_accumulation_equals_one_big_batch(tiny_world, scores_dir, tmp_path):
    """Micro-batches are normalised by the whole step's loss-bearing count (loss.py), so two
    micro-batches of 8 update exactly like one of 16, even with masked targets."""
    one = train(_spec(tiny_world, scores_dir, tmp_path, "one", snapshots=0, tokens_per_param=1))
    two = train(_spec(tiny_world, scores_dir, tmp_path, "two", snapshots=0, tokens_per_param=1, micro_batch_size=8))
    losses_one = [r["loss"] for r in read_jsonl(Path(tmp_path / "one_out" / "train_log.jsonl"))]
    losses_two = [r["loss"] for r in read_jsonl(Path(tmp_path / "two_out" / "train_log.jsonl"))]
    assert one["steps"] == two["steps"]
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-4, atol=1e-5)


def _launch(spec: TrainSpec, tmp_path: Path) -> subprocess.Popen:
    spec_path = tmp_path / f"{Path(spec.out_dir).name}.json"
    spec_path.write_text(json.dumps(dataclasses.asdict(spec)))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "tokenfilter.train", str(spec_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_checkpoint(spec: TrainSpec, proc: subprocess.Popen, min_step: int) -> None:
    state = Path(spec.checkpoint_dir) / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if state.is_file():
            try:
                if json.loads(state.read_text())["step"] >= min_step:
                    return
            except (json.JSONDecodeError, KeyError):
                pass
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_the_uninterrupted_losses(tiny_world, scores_dir, tmp_path, how):
    """A run killed mid-way (SIGKILL: no warning; SIGTERM: checkpoints and exits 143) and then
    restarted reproduces the uninterrupted run's per-step losses."""
    reference = train(_spec(tiny_world, scores_dir, tmp_path, "reference", tokens_per_param=8))
    ref_log = read_jsonl(tmp_path / "reference_out" / "train_log.jsonl")

    spec = _spec(tiny_world, scores_dir, tmp_path, "killed", tokens_per_param=8)
    proc = _launch(spec, tmp_path)
    _wait_for_checkpoint(spec, proc, min_step=20)
    proc.send_signal(how)
    code = proc.wait(timeout=60)
    if code == 0:
        pytest.skip("the run finished before the signal arrived")
    if how == signal.SIGTERM:
        assert code == 143
        state = json.loads((Path(spec.checkpoint_dir) / "checkpoint" / "trainer_state.json").read_text())
        assert state["step"] >= 20

    resumed = train(spec)
    assert resumed["resumed_from"] and resumed["resumed_from"][0] >= 20
    assert resumed["steps"] == reference["steps"]
    log = read_jsonl(Path(spec.out_dir) / "train_log.jsonl")
    assert [r["step"] for r in log] == [r["step"] for r in ref_log]
    np.testing.assert_allclose([r["loss"] for r in log], [r["loss"] for r in ref_log], rtol=1e-5, atol=1e-6)
    assert sorted(os.listdir(Path(spec.out_dir) / "snapshots")) == sorted(os.listdir(tmp_path / "reference_out" / "snapshots"))


def test_checkpoint_of_a_different_spec_is_not_resumed(tiny_world, scores_dir, tmp_path):
    spec = _spec(tiny_world, scores_dir, tmp_path, "a", tokens_per_param=2, keep_checkpoints=True)
    train(spec)
    other = _spec(tiny_world, scores_dir, tmp_path, "a", tokens_per_param=2, lr=3e-3)  # same dirs, new lr
    assert other.fingerprint() != spec.fingerprint()
    summary = train(other)
    assert summary["resumed_from"] == []


@pytest.mark.slow
def test_ddp_on_two_processes_matches_one_process(tiny_world, scores_dir, tmp_path):
    """torchrun with 2 CPU processes (gloo) reads the same windows per step as one process with
    twice the micro-batch, and trains to the same losses."""
    single = _spec(tiny_world, scores_dir, tmp_path, "single", tokens_per_param=2, snapshots=0)
    train(single)
    ddp = _spec(tiny_world, scores_dir, tmp_path, "ddp", tokens_per_param=2, snapshots=0, micro_batch_size=8)
    spec_path = tmp_path / "ddp.json"
    spec_path.write_text(json.dumps(dataclasses.asdict(ddp)))
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "tokenfilter.train",
                           str(spec_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((Path(ddp.out_dir) / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["batch_tokens"] == 512
    ref = [r["loss"] for r in read_jsonl(Path(single.out_dir) / "train_log.jsonl")]
    got = [r["loss"] for r in read_jsonl(Path(ddp.out_dir) / "train_log.jsonl")]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_checkpoint_and_its_log_are_replaced_as_one_unit(tmp_path, monkeypatch):
    """A save that dies part-way (as under SIGKILL) leaves the previous checkpoint and the log of
    exactly its steps: a resumed run never sees a log that lags or leads its weights."""
    import torch

    from tokenfilter.model import checkpoint as ckpt
    from tokenfilter.model import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=64, **MODEL))
    optimizer = torch.optim.AdamW(model.parameters())
    directory = tmp_path / "checkpoint"
    ckpt.save_checkpoint(model, optimizer, {"step": 10}, directory, [{"step": s} for s in range(1, 11)])

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ckpt, "write_jsonl", die)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(model, optimizer, {"step": 20}, directory, [{"step": s} for s in range(1, 21)])

    state, log = ckpt.load_checkpoint(ckpt.find_checkpoint(directory), model, optimizer)
    assert state["step"] == 10 and [r["step"] for r in log] == list(range(1, 11))

"""The CPU AdamW (train/optim.py) is torch.optim.AdamW's CPU update bit for bit, shares its
checkpoint layout, and spares training jobs the import of torch._dynamo."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import torch

from tokenfilter.train.optim import AdamW


def _params(seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(6, 4, generator=g, requires_grad=True), torch.randn(4, generator=g, requires_grad=True),
            torch.randn(3, generator=g, requires_grad=True)]


def _groups(params: list[torch.Tensor]) -> list[dict]:
    return [{"params": params[:1], "weight_decay": 0.1, "lr_scale": 1.0},
            {"params": params[1:], "weight_decay": 0.0, "lr_scale": 0.5}]


def _steps(optimizers, param_sets, steps: range) -> None:
    for step in steps:
        g = torch.Generator().manual_seed(100 + step)
        grads = [torch.randn(p.shape, generator=g) for p in param_sets[0]]
        for params, optimizer in zip(param_sets, optimizers):
            for k, (p, grad) in enumerate(zip(params, grads)):
                p.grad = None if (k == 2 and step % 3 == 0) else grad.clone()  # a parameter that skips steps
            for group in optimizer.param_groups:
                group["lr"] = 0.02 * (1 + step % 4) * group["lr_scale"]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def test_the_update_is_torchs_bit_for_bit():
    ours, theirs = _params(), _params()
    optimizers = [AdamW(_groups(ours), lr=0.02, betas=(0.9, 0.95), eps=1e-7),
                  torch.optim.AdamW(_groups(theirs), lr=0.02, betas=(0.9, 0.95), eps=1e-7, fused=False)]
    _steps(optimizers, [ours, theirs], range(9))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_checkpoints_load_into_either_optimizer_and_continue_identically():
    ours, theirs = _params(), _params()
    a = AdamW(_groups(ours), lr=0.02, betas=(0.9, 0.95), eps=1e-7)
    b = torch.optim.AdamW(_groups(theirs), lr=0.02, betas=(0.9, 0.95), eps=1e-7, fused=False)
    _steps([a, b], [ours, theirs], range(4))
    assert a.state_dict()["param_groups"][1]["params"] == b.state_dict()["param_groups"][1]["params"] == [1, 2]
    # Swap: torch's state goes into ours and ours into torch's, then both continue.
    ours2, theirs2 = [p.detach().clone().requires_grad_() for p in ours], [p.detach().clone().requires_grad_() for p in theirs]
    a2 = AdamW(_groups(ours2), lr=0.02, betas=(0.9, 0.95), eps=1e-7)
    b2 = torch.optim.AdamW(_groups(theirs2), lr=0.02, betas=(0.9, 0.95), eps=1e-7, fused=False)
    a2.load_state_dict(b.state_dict())
    b2.load_state_dict(a.state_dict())
    _steps([a2, b2], [ours2, theirs2], range(4, 9))
    assert all(torch.equal(x, y) for x, y in zip(ours2, theirs2))


def test_a_cpu_training_run_never_imports_dynamo(tiny_world, tmp_path):
    """The point of it: a CPU training job (no compile) leaves torch._dynamo unimported."""
    from helpers import pretrain_spec

    spec = pretrain_spec(tiny_world["shards"]["train"], None, tmp_path, arm="baseline")
    (tmp_path / "spec.json").write_text(json.dumps(dataclasses.asdict(spec)))
    code = ("import json, sys; from tokenfilter.train.__main__ import run_spec; "
            f"run_spec(json.load(open({str(tmp_path / 'spec.json')!r}))); "
            "print('DYNAMO', 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent)
    assert "DYNAMO False" in out.stdout, out.stdout + out.stderr[-2000:]

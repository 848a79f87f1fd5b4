"""AdamW for CPU jobs without ``torch.optim``'s start-up cost.

``torch.optim.Optimizer`` wraps its methods with ``torch._disable_dynamo``, whose first call imports
``torch._dynamo``: 1.7 s in every training job on this machine (measured: a 5-second `xxs`
pretraining run spent 1.66 s of its 9.5 s there), about 150 jobs per default run. :class:`AdamW`
is torch's own single-tensor AdamW update (what ``torch.optim.AdamW`` runs on CPU tensors: neither
fused nor foreach), step for step and op for op, so its parameters are *bit-identical* to
torch's (tests check several steps with weight decay, groups and resumption); its
``state_dict`` has torch's layout, so checkpoints load into either. The training loop uses it
on CPU without compilation; GPU runs (fused AdamW) and compiled runs (which import dynamo anyway)
keep ``torch.optim.AdamW``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

# What torch.optim.AdamW keeps in every param group (its state_dict's keys), with its defaults.
_TORCH_GROUP_DEFAULTS = {"amsgrad": False, "foreach": None, "maximize": False, "capturable": False,
                         "differentiable": False, "fused": None, "decoupled_weight_decay": True}


class AdamW:
    """Decoupled-weight-decay Adam (Loshchilov & Hutter), torch's CPU arithmetic; the subset of
    the ``torch.optim.Optimizer`` interface the training loop uses."""

    def __init__(self, params: Iterable[dict[str, Any]] | Iterable[torch.Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        self.defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                         **_TORCH_GROUP_DEFAULTS}
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = [{**self.defaults, **group, "params": list(group["params"])} for group in groups]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state.get(param)
                if state is None:
                    state = self.state[param] = {
                        "step": torch.tensor(0.0, dtype=torch.float32),
                        "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format)}
                exp_avg, exp_avg_sq, step_t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                step_t += 1
                if weight_decay != 0:
                    param.mul_(1 - lr * weight_decay)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = step_t.item()
                bias_correction1 = 1 - beta1 ** step
                bias_correction2 = 1 - beta2 ** step
                step_size = lr / bias_correction1
                denom = (exp_avg_sq.sqrt() / bias_correction2 ** 0.5).add_(eps)
                param.addcdiv_(exp_avg, denom, value=-step_size)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if set_to_none:
                    param.grad = None
                elif param.grad is not None:
                    param.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: parameters by their index over the groups, in order."""
        index: dict[torch.Tensor, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for param in group["params"]:
                ids.append(index.setdefault(param, len(index)))
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[p]: {k: v.clone() for k, v in s.items()} for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(saved, self.param_groups)):
            raise ValueError("loaded optimizer state does not match this optimizer's parameter groups")
        params = [p for group in self.param_groups for p in group["params"]]
        for group, saved_group in zip(self.param_groups, saved):
            group.update({k: (tuple(v) if k == "betas" else v) for k, v in saved_group.items() if k != "params"})
        self.state = {}
        for key, value in state_dict["state"].items():
            param = params[int(key)]
            self.state[param] = {"step": torch.as_tensor(value["step"], dtype=torch.float32).clone(),
                                 "exp_avg": value["exp_avg"].to(param.device, param.dtype).clone(),
                                 "exp_avg_sq": value["exp_avg_sq"].to(param.device, param.dtype).clone()}

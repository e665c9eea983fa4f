"""Adam and the one-cycle learning-rate schedule, without ``torch.optim``.

Why our own: the first use of any ``torch.optim`` optimizer imports ``torch._dynamo`` and sympy
(``Optimizer.add_param_group`` and ``Adam.step`` are wrapped for the compiler), ≈ 145 MB
resident in every training process, for a compiler these loops never call. That was a fifth of
the training step's peak memory at the SHD recipe (``benchmarks/train_speed.py``).

The arithmetic is ``torch.optim.Adam``'s single-tensor path (L2 weight decay added to the
gradient, no AMSGrad) op for op, and :class:`OneCycleLR` is ``torch.optim.lr_scheduler
.OneCycleLR``'s cosine schedule with momentum cycling, so runs give bit-identical parameters
(``tests/train/test_optim.py`` steps both side by side). ``state_dict`` has torch's layout, and
checkpoints written while training used ``torch.optim`` load unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

ParamGroups = Iterable[Tensor] | Iterable[dict[str, Any]]


class Adam:
    """Adam (Kingma & Ba) with L2 weight decay, as ``torch.optim.Adam(amsgrad=False)``.

    ``param_groups`` is a list of dicts (``params``, ``lr``, ``betas``, ``eps``,
    ``weight_decay`` and any extra keys a schedule keeps there), as in torch.
    """

    def __init__(self, params: ParamGroups, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        self.defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        groups = list(params)
        if not groups:
            raise ValueError("Adam got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Tensor]] = {}
        for group in groups:
            params_of = list(group["params"])
            self.param_groups.append({**self.defaults, **group, "params": params_of})

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (torch's operation order)."""
        for group in self.param_groups:
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {
                        "step": torch.tensor(0.0, dtype=torch.float32),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                    }
                grad, exp_avg, exp_avg_sq = p.grad, state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                if weight_decay != 0:
                    grad = grad.add(p, alpha=weight_decay)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = state["step"].item()
                step_size = lr / (1 - beta1 ** step)
                bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)

    # -- checkpoints (torch's layout: state by parameter index over the groups) -----------------
    def state_dict(self) -> dict[str, Any]:
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                ids.append(index.setdefault(id(p), len(index)))
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        params = [p for group in self.param_groups for p in group["params"]]
        state = {index[id(p)]: dict(self.state[p]) for p in params if p in self.state}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (ours, or a ``torch.optim.Adam`` one); raises
        ``ValueError`` naming the mismatch if it belongs to other parameters."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(f"the saved optimizer has {len(saved)} parameter groups, "
                             f"this one {len(self.param_groups)}")
        by_index = {}
        for i, (ours, theirs) in enumerate(zip(self.param_groups, saved, strict=True)):
            if len(ours["params"]) != len(theirs["params"]):
                raise ValueError(f"parameter group {i} holds {len(theirs['params'])} tensors "
                                 f"in the saved optimizer, {len(ours['params'])} here")
            by_index.update(zip(theirs["params"], ours["params"], strict=True))
        states = {int(k): v for k, v in state_dict["state"].items()}
        new_state: dict[Tensor, dict[str, Tensor]] = {}
        for key, value in states.items():
            if key not in by_index:
                raise ValueError(f"the saved optimizer has state for parameter {key}, "
                                 "which no group holds")
            p = by_index[key]
            entry = {}
            for name, tensor in value.items():
                if name == "step":
                    entry[name] = torch.as_tensor(tensor, dtype=torch.float32).detach().clone()
                    continue
                if tuple(tensor.shape) != tuple(p.shape):
                    raise ValueError(f"saved {name} of parameter {key} has shape "
                                     f"{tuple(tensor.shape)}, the parameter {tuple(p.shape)}")
                entry[name] = tensor.detach().to(device=p.device, dtype=p.dtype).clone()
            new_state[p] = entry
        for ours, theirs in zip(self.param_groups, saved, strict=True):
            ours.update({k: v for k, v in theirs.items() if k != "params"})
            if isinstance(ours.get("betas"), list):
                ours["betas"] = tuple(ours["betas"])
        self.state = new_state


class OneCycleLR:
    """The one-cycle policy (Smith & Topin), as ``torch.optim.lr_scheduler.OneCycleLR`` with
    cosine annealing and ``cycle_momentum`` (β₁ of Adam cycles inversely to the rate).

    ``step()`` once per unit of ``total_steps`` (the training loop: once per epoch). Per group
    the rate rises from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of
    the steps, then falls to ``initial_lr / final_div_factor``.
    """

    def __init__(self, optimizer: Adam, max_lr: float, total_steps: int,
                 pct_start: float = 0.3, base_momentum: float = 0.85,
                 max_momentum: float = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4) -> None:
        if not isinstance(total_steps, int) or total_steps <= 0:
            raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
        if not 0.0 <= pct_start <= 1.0:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.phases = [  # (end step, lr from, lr to, momentum from, momentum to)
            (float(pct_start * total_steps) - 1, "initial_lr", "max_lr",
             "max_momentum", "base_momentum"),
            (total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
        ]
        for group in optimizer.param_groups:
            group["initial_lr"] = max_lr / div_factor
            group["max_lr"] = max_lr
            group["min_lr"] = group["initial_lr"] / final_div_factor
            group["betas"] = (max_momentum, *group["betas"][1:])
            group["max_momentum"] = max_momentum
            group["base_momentum"] = base_momentum
        self.last_epoch = -1
        self.step()

    @staticmethod
    def _cos(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def step(self) -> None:
        """Advance one step and set every group's ``lr`` and ``betas[0]``."""
        self.last_epoch += 1
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(f"Tried to step {step_num} times. The specified number of total "
                             f"steps is {self.total_steps}")
        for group in self.optimizer.param_groups:
            start_step = 0.0
            for i, (end_step, lr0, lr1, m0, m1) in enumerate(self.phases):
                if step_num <= end_step or i == len(self.phases) - 1:
                    pct = (step_num - start_step) / (end_step - start_step)
                    group["lr"] = self._cos(group[lr0], group[lr1], pct)
                    group["betas"] = (self._cos(group[m0], group[m1], pct),
                                      *group["betas"][1:])
                    break
                start_step = end_step

    def state_dict(self) -> dict[str, Any]:
        return {"total_steps": self.total_steps, "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore ``last_epoch`` (ours, or a torch ``OneCycleLR`` state); the rates and
        momenta themselves live in the optimizer's groups."""
        if int(state_dict["total_steps"]) != self.total_steps:
            raise ValueError(f"the saved schedule spans {state_dict['total_steps']} steps, "
                             f"this run {self.total_steps}")
        self.last_epoch = int(state_dict["last_epoch"])

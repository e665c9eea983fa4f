"""Our Adam and one-cycle schedule against torch.optim's, step for step, bit for bit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from spikedelay.train.optim import Adam, OneCycleLR


def _params(seed: int) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (5,), (2, 2, 3), (7,)]
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]


def _groups(params):
    """The layout of build_optimizers: several groups, weight decay on one, extra keys."""
    return [{"params": params[:2], "weight_decay": 1e-3},
            {"params": params[2:3], "weight_decay": 0.0},
            {"params": params[3:], "weight_decay": 0.0, "base_lr": 0.05}]


def _fake_grads(params, step: int, skip: int | None = None) -> None:
    gen = torch.Generator().manual_seed(100 + step)
    for i, p in enumerate(params):
        p.grad = None if i == skip else torch.randn(p.shape, generator=gen) * (1 + step)


def _torch_pair(params, total):
    opt = torch.optim.Adam(_groups(params), lr=0.01)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=total)


def _our_pair(params, total):
    opt = Adam(_groups(params), lr=0.01)
    return opt, OneCycleLR(opt, max_lr=0.01, total_steps=total)


def _step_both(pairs, params_of, n_steps: int, first: int = 0) -> None:
    for k in range(first, first + n_steps):
        for (opt, sched), params in zip(pairs, params_of, strict=True):
            _fake_grads(params, k, skip=1 if k % 3 == 2 else None)  # a tensor without grad
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)


def _assert_same(theirs, ours, torch_opt, our_opt) -> None:
    for a, b in zip(theirs, ours, strict=True):
        assert torch.equal(a, b), (a - b).abs().max()
    for ga, gb in zip(torch_opt.param_groups, our_opt.param_groups, strict=True):
        assert ga["lr"] == gb["lr"]
        assert tuple(ga["betas"]) == tuple(gb["betas"])


def _resumed(pair, params, fresh, total):
    """Our optimizer and schedule over ``fresh`` (given ``params``' values), restored from the
    state dicts of ``pair``: what a resume from a checkpoint does."""
    with torch.no_grad():
        for src, dst in zip(params, fresh, strict=True):
            dst.copy_(src)
    ours = _our_pair(fresh, total)
    ours[0].load_state_dict(pair[0].state_dict())
    ours[1].load_state_dict(pair[1].state_dict())
    return ours


def test_adam_and_one_cycle_match_torch_bit_for_bit():
    total = 8
    theirs, ours = _params(0), _params(0)
    torch_pair, our_pair = _torch_pair(theirs, total), _our_pair(ours, total)
    _assert_same(theirs, ours, torch_pair[0], our_pair[0])  # the schedule's first rate
    _step_both([torch_pair, our_pair], [theirs, ours], total)
    _assert_same(theirs, ours, torch_pair[0], our_pair[0])
    assert our_pair[1].last_epoch == torch_pair[1].last_epoch == total


def test_a_torch_optim_checkpoint_resumes_exactly():
    """A run checkpointed under torch.optim (earlier releases) continues as if never stopped."""
    total = 10
    theirs, ours = _params(1), _params(1)
    torch_pair = _torch_pair(theirs, total)
    _step_both([torch_pair], [theirs], 4)
    our_pair = _resumed(torch_pair, theirs, ours, total)
    _assert_same(theirs, ours, torch_pair[0], our_pair[0])
    _step_both([torch_pair, our_pair], [theirs, ours], 5, first=4)
    _assert_same(theirs, ours, torch_pair[0], our_pair[0])


def test_our_state_dict_round_trips_into_a_fresh_optimizer():
    total = 6
    a, b = _params(2), _params(2)
    pair_a = _our_pair(a, total)
    _step_both([pair_a], [a], 3)
    pair_b = _resumed(pair_a, a, b, total)
    _step_both([pair_a, pair_b], [a, b], 3, first=3)
    _assert_same(a, b, pair_a[0], pair_b[0])


def test_mismatched_states_are_refused():
    opt, sched = _our_pair(_params(3), 5)
    state = opt.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict({**state, "param_groups": state["param_groups"][:2]})
    groups = [dict(g) for g in state["param_groups"]]
    groups[0]["params"] = groups[0]["params"][:1]
    with pytest.raises(ValueError, match="group 0 holds 1 tensors"):
        opt.load_state_dict({**state, "param_groups": groups})
    with pytest.raises(ValueError, match="spans 9 steps"):
        sched.load_state_dict({"total_steps": 9, "last_epoch": 2})
    with pytest.raises(ValueError, match="Tried to step"):
        for _ in range(6):
            sched.step()


def test_training_never_imports_the_compiler():
    """The point of our own Adam: torch.optim's first use imports torch._dynamo (≈ 145 MB)."""
    code = textwrap.dedent("""
        import sys, torch
        from spikedelay.config import load_config
        from spikedelay.model import DelaySNN
        from spikedelay.train.loop import train_epoch
        from spikedelay.train.setup import build_optimizers
        cfg = load_config("quick", ["model.in_features=6", "model.hidden=[8]", "model.n_classes=3",
                                 "model.max_delay=5"])
        net = DelaySNN(cfg.model)
        optim = build_optimizers(net, cfg)
        x = (torch.rand(4, 12, 6) < 0.3).float()
        train_epoch(net, [(x, torch.full((4,), 12), torch.tensor([0, 1, 2, 0]))], optim.all())
        optim.schedule.step()
        print("torch._dynamo" in sys.modules, "sympy" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False", "False"]

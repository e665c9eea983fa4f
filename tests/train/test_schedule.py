"""Schedules against the reference's iterative updates and PyTorch's own scheduler."""

import math

import pytest
import torch

from spikedelay.train.schedule import position_lr_at, sigma_at, sigma_epochs


@pytest.mark.parametrize("epochs,max_delay", [(150, 25), (30, 25), (60, 31), (3, 25), (1, 7)])
def test_sigma_matches_iterative_reference(epochs, max_delay):
    sig0 = max_delay // 2
    n = max(1, epochs // 4)
    alpha = (0.23 / sig0) ** (1 / n)
    sig, expected = float(sig0), []
    for epoch in range(epochs):  # σ used during each epoch, decreased at its end
        expected.append(sig)
        sig = sig * alpha if epoch < n - 1 else 0.23
    got = [sigma_at(e, max_delay=max_delay, epochs=epochs) for e in range(epochs)]
    assert got == pytest.approx(expected, rel=1e-9)
    assert sigma_epochs(epochs, 0.25) == n
    if epochs > n:
        assert got[n] == pytest.approx(0.23)


def test_position_lr_matches_cosine_annealing_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
    for epoch in range(20):
        assert math.isclose(position_lr_at(epoch, base_lr=0.1, epochs=20),
                            opt.param_groups[0]["lr"], rel_tol=1e-9, abs_tol=1e-12)
        opt.step()
        sched.step()

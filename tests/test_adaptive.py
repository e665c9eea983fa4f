"""Adaptive neurons: parameter ranges, clamps, surrogates (kernels: tests/test_recurrent.py)."""

import math

import pytest
import torch

from spikedelay.adaptive import AdLIFParameters, SEAdLIFParameters
from spikedelay.neurons import arctan_surrogate_grad
from spikedelay.surrogates import spike


def test_adlif_initialises_inside_and_clamps_to_the_sparch_ranges():
    p = AdLIFParameters(1000)
    lo_hi = {"alpha": (math.exp(-1 / 5), math.exp(-1 / 25)),
             "beta": (math.exp(-1 / 30), math.exp(-1 / 120)), "a": (-1, 1), "b": (0, 2)}
    for name, (lo, hi) in lo_hi.items():
        t = getattr(p, name).detach()
        assert lo <= float(t.min()) and float(t.max()) <= hi
    with torch.no_grad():
        for name in lo_hi:
            getattr(p, name).mul_(10)
    p.clamp_()
    for name, (lo, hi) in lo_hi.items():
        t = getattr(p, name).detach()
        assert float(t.min()) >= lo - 1e-7 and float(t.max()) <= hi + 1e-7
        assert (t == lo).any() or (t == hi).any()


def test_se_adlif_time_constants_come_from_kappa():
    p = SEAdLIFParameters(3)
    with torch.no_grad():
        p.kappa_u.copy_(torch.tensor([0.0, 0.5, 1.0]))
        p.kappa_w.copy_(torch.tensor([0.0, 0.5, 1.0]))
    alpha, beta, _, _ = p.coefficients()
    torch.testing.assert_close(alpha, torch.exp(-1 / torch.tensor([5.0, 15.0, 25.0])))
    torch.testing.assert_close(beta, torch.exp(-1 / torch.tensor([60.0, 180.0, 300.0])))
    with torch.no_grad():
        p.kappa_u.fill_(1.7)
        p.a.fill_(-0.3)
    p.clamp_()
    assert float(p.kappa_u.detach().max()) == 1.0 and float(p.a.detach().min()) == 0.0
    assert p.q == 120.0


@pytest.mark.parametrize("kind,p1,p2,formula", [
    ("atan", 5.0, 0.0, lambda x: arctan_surrogate_grad(x, 5.0)),
    ("triangle", 1.0, 0.0, lambda x: torch.clamp(1 - x.abs(), min=0)),
    ("slayer", 5.0, 0.4, lambda x: 0.4 * 5.0 / (2 * torch.exp(5.0 * x.abs()))),
])
def test_spike_is_heaviside_with_the_named_surrogate(kind, p1, p2, formula):
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    s = spike(x, kind, p1, p2)
    assert s.tolist() == [1.0 if v >= 0 else 0.0 for v in x.tolist()]
    (g,) = torch.autograd.grad(s.sum(), x)
    torch.testing.assert_close(g, formula(x.detach()))


def test_triangle_surrogate_integrates_to_one():
    # its antiderivative is a smoothed step: the area under the surrogate is 1 for any γ
    for gamma in (0.5, 1.0, 2.0):
        x = torch.linspace(-3, 3, 60001, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(spike(x, "triangle", gamma).sum(), x)
        assert float(g.sum() * (x[1] - x[0]).detach()) == pytest.approx(1.0, abs=1e-3)

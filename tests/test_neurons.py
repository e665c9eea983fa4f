"""LIF / LI / masked BatchNorm / sequence dropout against hand-written references.

Runtime: ~1 s on 2 cores.
"""

from __future__ import annotations

import math

import pytest
import torch
from reference_loops import lif_spikes_loop
from torch import nn

from spikedelay.neurons import (
    LI,
    LIF,
    LIFParameters,
    LIFState,
    MaskedBatchNorm1d,
    SequenceDropout,
    arctan_surrogate_grad,
    li_sequence,
    lif_sequence,
    lif_step,
    spike_fn,
)

DT = torch.float64


@pytest.mark.parametrize("tau", [1.005, 1.5, 2.0, 10.0])
def test_lif_forward_matches_python_loop(tau):
    torch.manual_seed(0)
    x = torch.rand(3, 40, 5, dtype=DT) * 1.1  # some steps cross alone, most must integrate
    s = LIF(tau=tau, threshold=1.0)(x)
    assert s.shape == x.shape
    assert 0 < s.sum() < s.numel()  # the test must see both spikes and silence
    torch.testing.assert_close(s, lif_spikes_loop(x, tau, 1.0), rtol=0, atol=0)


def test_lif_threshold_is_inclusive_and_reset_hard():
    p = LIFParameters(tau=2.0, threshold=1.0)
    s, st = lif_step(torch.tensor([[1.0, 0.999, 3.0]]), LIFState(torch.zeros(1, 3)), p)
    assert s.tolist() == [[1.0, 0.0, 1.0]]
    assert st.v[0].tolist() == pytest.approx([0.0, 0.999, 0.0])  # hard reset to 0, not subtract
    s, st = lif_step(torch.zeros(1, 3), st, p)
    assert st.v[0].tolist() == pytest.approx([0.0, 0.4995, 0.0])  # no input decay, V/τ leak


class _IndependentATan(torch.autograd.Function):
    """A second ArcTan surrogate, written from the formula, for the gradient reference."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return torch.heaviside(x, torch.ones_like(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return g * a / 2 / (1 + (math.pi / 2 * a * x).pow(2)), None


def _lif_autograd_reference(x, tau, thr, alpha):
    v = torch.zeros_like(x[:, 0])
    out = []
    for t in range(x.shape[1]):
        h = v * (1 - 1 / tau) + x[:, t]
        s = _IndependentATan.apply(h - thr, alpha)
        v = h - h * s.detach()
        out.append(s)
    return torch.stack(out, 1)


@pytest.mark.parametrize("tau,alpha", [(1.005, 5.0), (2.0, 5.0), (1.5, 2.0)])
def test_lif_gradient_matches_independent_loop(tau, alpha):
    torch.manual_seed(1)
    x = (torch.rand(2, 30, 4, dtype=DT) * 1.2).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    w = torch.randn(2, 30, 4, dtype=DT)
    s = lif_sequence(x, LIFParameters(tau, 1.0, alpha))
    (s * w).sum().backward()
    s2 = _lif_autograd_reference(x2, tau, 1.0, alpha)
    (s2 * w).sum().backward()
    torch.testing.assert_close(s, s2)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-10, atol=1e-12)
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("alpha", [1.0, 2.0, 5.0])
def test_surrogate_is_derivative_of_arctan_by_finite_differences(alpha):
    x = torch.linspace(-2, 2, 81, dtype=DT)

    def sigma(z):
        return torch.atan(math.pi / 2 * alpha * z) / math.pi + 0.5

    eps = 1e-6
    fd = (sigma(x + eps) - sigma(x - eps)) / (2 * eps)
    torch.testing.assert_close(arctan_surrogate_grad(x, alpha), fd, rtol=1e-7, atol=1e-9)
    xr = x.clone().requires_grad_(True)
    spike_fn(xr, alpha).sum().backward()
    torch.testing.assert_close(xr.grad, fd, rtol=1e-7, atol=1e-9)
    assert spike_fn(torch.tensor([-1e-9, 0.0, 1e-9]), alpha).tolist() == [0.0, 1.0, 1.0]


def test_li_matches_loop_and_never_spikes():
    torch.manual_seed(2)
    x = torch.randn(2, 20, 3, dtype=DT) * 5
    v = LI(tau=1.5)(x)
    ref = torch.zeros_like(x)
    prev = torch.zeros(2, 3, dtype=DT)
    for t in range(20):
        prev = prev - prev / 1.5 + x[:, t]
        ref[:, t] = prev
    torch.testing.assert_close(v, ref)
    torch.testing.assert_close(li_sequence(x, LI(tau=1.5).p), ref)


def test_lif_module_repr_and_validation():
    assert "tau=1.005" in repr(LIF(tau=1.005))
    with pytest.raises(ValueError):
        LIF(tau=0.5)


# -- masked batch norm --------------------------------------------------------------------------
def _pair(C=4):
    torch.manual_seed(3)
    mbn, bn = MaskedBatchNorm1d(C).double(), nn.BatchNorm1d(C).double()
    with torch.no_grad():
        mbn.weight.uniform_(0.5, 1.5)
        mbn.bias.uniform_(-1, 1)
    bn.load_state_dict(mbn.state_dict())
    return mbn, bn


@pytest.mark.parametrize("use_mask", [False, True])
def test_masked_bn_equals_batchnorm_without_padding(use_mask):
    mbn, bn = _pair()
    for step in range(3):
        x = (torch.randn(3, 11, 4, dtype=DT) * 2 + step).requires_grad_(True)
        x2 = x.detach().clone().requires_grad_(True)
        mask = torch.ones(3, 11, dtype=torch.bool) if use_mask else None
        y = mbn.train()(x, mask=mask)
        y2 = bn.train()(x2.transpose(1, 2)).transpose(1, 2)
        torch.testing.assert_close(y, y2)
        g = torch.randn_like(y)
        (y * g).sum().backward()
        (y2 * g).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad)
        torch.testing.assert_close(mbn.weight.grad, bn.weight.grad)
    torch.testing.assert_close(mbn.running_mean, bn.running_mean)
    torch.testing.assert_close(mbn.running_var, bn.running_var)
    assert int(mbn.num_batches_tracked) == int(bn.num_batches_tracked) == 3
    x = torch.randn(2, 5, 4, dtype=DT)
    torch.testing.assert_close(mbn.eval()(x), bn.eval()(x.transpose(1, 2)).transpose(1, 2))


def test_masked_bn_ignores_padded_values_and_matches_concatenated_valid_steps():
    mbn, bn = _pair()
    lengths = torch.tensor([7, 3, 10])
    x = torch.randn(3, 10, 4, dtype=DT)
    y = mbn.train()(x, lengths=lengths)
    # reference: BatchNorm1d on the valid steps only, laid side by side as one sequence
    valid = torch.cat([x[b, : lengths[b]] for b in range(3)])  # (20, 4)
    ref = bn.train()(valid.T.unsqueeze(0)).squeeze(0).T
    got = torch.cat([y[b, : lengths[b]] for b in range(3)])
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(mbn.running_mean, bn.running_mean)
    torch.testing.assert_close(mbn.running_var, bn.running_var)
    # changing padded values changes nothing on valid steps, nor the running statistics
    mbn2, _ = _pair()
    x_junk = x.clone()
    for b in range(3):
        x_junk[b, lengths[b]:] = 1e3 * torch.randn_like(x_junk[b, lengths[b]:])
    mask = torch.arange(10)[None] < lengths[:, None]
    y2 = mbn2.train()(x_junk, mask=mask)
    torch.testing.assert_close(y2[mask], y[mask])
    torch.testing.assert_close(mbn2.running_var, mbn.running_var)


def test_masked_bn_batch_size_one():
    mbn, bn = _pair()
    x = torch.randn(1, 6, 4, dtype=DT)
    y = mbn.train()(x, lengths=torch.tensor([6]))
    torch.testing.assert_close(y, bn.train()(x.transpose(1, 2)).transpose(1, 2))
    assert mbn.eval()(x).shape == (1, 6, 4)


# -- sequence dropout ---------------------------------------------------------------------------
def test_sequence_dropout_mask_constant_over_time():
    torch.manual_seed(4)
    drop = SequenceDropout(0.4).train()
    x = torch.ones(8, 50, 64)
    y = drop(x)
    assert torch.all(y == y[:, :1])  # same mask at every step
    kept = y[:, 0] != 0
    torch.testing.assert_close(y[:, 0][kept], torch.full_like(y[:, 0][kept], 1 / 0.6))
    frac = kept.double().mean().item()
    assert 0.5 < frac < 0.7  # 512 draws, keep prob 0.6
    assert not torch.equal(y[0, 0], y[1, 0])  # independent per sequence
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError):
        SequenceDropout(1.0)


@pytest.mark.parametrize("fused_norm", [False, True])
def test_sequence_dropout_in_place_on_fused_spikes_gives_the_same_gradients(fused_norm):
    """HiddenLayer scales the fused kernels' spikes in place: same values and gradients as
    ``x * keep`` (autograd would refuse if the kernel had saved its spikes)."""
    torch.manual_seed(5)
    x = torch.randn(6, 30, 16, dtype=DT) * 1.5
    norm = MaskedBatchNorm1d(16).to(DT).train()
    weights = torch.randn(6, 30, 16, dtype=DT)
    results = []
    for inplace in (False, True):
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(9)  # the same mask both times
        drop = SequenceDropout(0.4).train()
        if fused_norm:
            from spikedelay.neurons import norm_then_fire

            s = norm_then_fire(norm, LIF(tau=2.0), xi)
        else:
            s = LIF(tau=2.0)(xi)
        y = drop(s, inplace=inplace)
        results.append((y.detach(), *torch.autograd.grad((y * weights).sum(), xi)))
    (y0, g0), (y1, g1) = results
    assert torch.equal(y0, y1) and torch.equal(g0, g1)
    assert 0 < (y0 != 0).sum() < y0.numel() and g0.abs().sum() > 0

"""Axonal and dendritic delays against a naive per-channel shift loop (float64), finite
differences, and the synaptic layer with the same delays on every synapse of a channel.

The loop reference knows nothing of conv1d or gather: it builds each channel's bump from the
dcls formulas written out here and sums shifted copies of the input step by step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikedelay.channel_delays import ChannelDelay, ChannelDelayedLinear, delay_layer
from spikedelay.delays import DelayedLinear

DT = torch.float64
K = 5


def bump(position: float, sigma: float, taps: int, interpolation: str) -> np.ndarray:
    """dcls 'gauss' / 'max' kernel of one delay over ``taps`` taps, normalised (+1e-7)."""
    centre = position + taps // 2
    k = np.arange(taps)
    if interpolation == "gaussian":
        g = np.exp(-0.5 * ((k - centre) / (abs(sigma) + 0.27)) ** 2)
    else:
        g = np.maximum(0.0, abs(sigma) + 1.0 - np.abs(k - centre))
    return g / (g.sum() + 1e-7)


def shift_loop(x: np.ndarray, kernels: np.ndarray, left: int, right: int) -> np.ndarray:
    """y[b, t, c] = Σ_k kernels[c, k] · x[b, t + k - left, c] (zero outside the input), for
    T + left + right - K + 1 output steps."""
    n_b, n_t, n_c = x.shape
    taps = kernels.shape[1]
    n_out = n_t + left + right - taps + 1
    y = np.zeros((n_b, n_out, n_c))
    for c in range(n_c):
        for t in range(n_out):
            for k in range(taps):
                src = t + k - left
                if 0 <= src < n_t:
                    y[:, t, c] += kernels[c, k] * x[:, src, c]
    return y


def integer_loop(x: np.ndarray, delays: np.ndarray, n_out: int) -> np.ndarray:
    """y[b, t, c] = x[b, t - d_c, c]: the plain integer shift."""
    y = np.zeros((x.shape[0], n_out, x.shape[2]))
    for c, d in enumerate(delays):
        for t in range(n_out):
            if 0 <= t - d < x.shape[1]:
                y[:, t, c] = x[:, t - d, c]
    return y


def _x(batch=3, steps=9, channels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, steps, channels, generator=g, dtype=DT)


@pytest.mark.parametrize("interpolation", ["gaussian", "triangle"])
@pytest.mark.parametrize("sigma", [2.0, 0.23, 0.0])
@pytest.mark.parametrize("padding", ["reference", "causal"])
def test_fractional_shift_equals_loop(interpolation, sigma, padding):
    torch.manual_seed(1)
    layer = ChannelDelay(4, K, interpolation=interpolation, padding=padding, dtype=DT).train()
    layer.set_sigma(sigma)
    x = _x()
    kernels = np.stack([bump(float(p), sigma, K, interpolation) for p in layer.position.detach()])
    ref = shift_loop(x.numpy(), kernels, layer.left_pad, layer.right_pad)
    np.testing.assert_allclose(layer(x).detach().numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("delays", ["learned", "fixed"])
def test_integer_shift_equals_loop(delays):
    torch.manual_seed(2)
    layer = ChannelDelay(6, K, delays=delays, dtype=DT).eval()
    x = _x(channels=6)
    d = layer.integer_delays().numpy()
    # independent rounding of the positions: K//2 - round-half-even(p), clamped to 0 … K-1
    if delays == "learned":
        expect = np.clip(K // 2 - np.round(layer.position.detach().numpy()), 0, K - 1)
        np.testing.assert_array_equal(d, expect)
    y = layer(x)
    ref = integer_loop(x.numpy(), d, layer.output_length(x.shape[1]))
    np.testing.assert_array_equal(y.detach().numpy(), ref)


@pytest.mark.parametrize("kind", ["axonal", "dendritic"])
@pytest.mark.parametrize("training", [True, False])
def test_layer_equals_loop_then_linear(kind, training):
    torch.manual_seed(3)
    layer = ChannelDelayedLinear(4, 3, K, kind=kind, dtype=DT).train(training)
    layer.set_sigma(1.3)
    x = _x()
    w = layer.weight.detach().numpy()
    if training:
        kernels = np.stack([bump(float(p), 1.3, K, "gaussian") for p in layer.position.detach()])
        def shift(z):
            return shift_loop(z, kernels, K - 1, (K - 1) // 2)
    else:
        d = layer.integer_delays().numpy()
        def shift(z):
            return integer_loop(z, d, z.shape[1] + (K - 1) // 2)
    xn = x.numpy()
    ref = shift(xn) @ w.T if kind == "axonal" else shift(xn @ w.T)
    np.testing.assert_allclose(layer(x).detach().numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["axonal", "dendritic"])
@pytest.mark.parametrize("interpolation", ["gaussian", "triangle"])
def test_gradients_match_finite_differences(kind, interpolation):
    torch.manual_seed(4)
    layer = ChannelDelayedLinear(3, 2, K, kind=kind, interpolation=interpolation,
                                 dtype=DT).train()
    layer.set_sigma(0.7)
    with torch.no_grad():  # away from the triangle's kinks (integer offsets from a tap)
        n = layer.position.numel()
        layer.position.copy_(torch.linspace(-1.7, 1.6, n, dtype=DT) + 0.13)
    x = _x(batch=2, steps=6, channels=3).requires_grad_()
    from torch.func import functional_call

    def f(x_, w_, p_):  # the layer as a function of its input and both parameters
        return functional_call(layer, {"linear.weight": w_, "shift.position": p_}, (x_,))

    w = layer.weight.detach().clone().requires_grad_()
    p = layer.position.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x, w, p), eps=1e-6, atol=1e-7)


def test_gradient_equals_loop_gradient():
    """∂/∂position of the depthwise conv vs autograd through an explicit loop of the same sum."""
    torch.manual_seed(5)
    layer = ChannelDelay(3, K, dtype=DT).train()
    layer.set_sigma(0.9)
    x = _x(channels=3)
    y = layer(x)
    (gp,) = torch.autograd.grad((y * y).sum(), layer.position)
    pos = layer.position.detach().clone().requires_grad_()
    taps = torch.arange(K, dtype=DT)
    out = []
    for c in range(3):
        gk = torch.exp(-0.5 * ((taps - (pos[c] + K // 2)) / (0.9 + 0.27)) ** 2)
        gk = gk / (gk.sum() + 1e-7)
        xp = torch.nn.functional.pad(x[:, :, c], (K - 1, (K - 1) // 2))
        out.append(torch.stack([(xp[:, t:t + K] * gk).sum(-1)
                                for t in range(xp.shape[1] - K + 1)], 1))
    yl = torch.stack(out, -1)
    (gl,) = torch.autograd.grad((yl * yl).sum(), pos)
    torch.testing.assert_close(gp, gl, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["axonal", "dendritic"])
@pytest.mark.parametrize("training", [True, False])
def test_equals_synaptic_layer_with_shared_delays(kind, training):
    """A synaptic layer whose synapses share their channel's position computes the same."""
    torch.manual_seed(6)
    ch = ChannelDelayedLinear(5, 4, K, kind=kind, dtype=DT).train(training)
    syn = DelayedLinear(5, 4, K, dtype=DT).train(training)
    for layer in (ch, syn):
        layer.set_sigma(1.1)
    with torch.no_grad():
        syn.weight.copy_(ch.weight.unsqueeze(-1))
        pos = ch.position.view(1, -1) if kind == "axonal" else ch.position.view(-1, 1)
        syn.position.copy_(pos.expand(4, 5).unsqueeze(-1))
    x = _x(channels=5)
    torch.testing.assert_close(ch(x), syn(x), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ch.kernel(), syn.kernel(), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(ch.synapse_delays().numpy(), syn.integer_delays().numpy())


def test_parameter_layout_and_cost():
    layer = ChannelDelayedLinear(140, 512, 31, kind="axonal")
    assert layer.position.shape == (140,) and layer.weight.shape == (512, 140)
    assert sum(p.numel() for p in layer.parameters()) == 140 * 512 + 140
    bound = math.sqrt(6 / 140)  # Kaiming-uniform, ReLU gain
    assert float(layer.weight.detach().abs().max()) <= bound
    dend = ChannelDelayedLinear(512, 35, 31, kind="dendritic")
    assert dend.position.shape == (35,)
    # the depthwise kernel is (C, K): never a dense (out, in, K) one in the forward pass
    assert layer.shift.kernel().shape == (140, 31)


def test_none_delays_only_pad():
    layer = ChannelDelayedLinear(3, 2, K, kind="axonal", delays="none", dtype=DT)
    x = _x(channels=3)
    y = layer(x)
    ref = x.numpy() @ layer.weight.detach().numpy().T
    np.testing.assert_allclose(y[:, :9].detach().numpy(), ref, atol=1e-12)
    assert y.shape[1] == 9 + (K - 1) // 2 and not y[:, 9:].any()
    assert layer.position is None and layer.active_delays() == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="kernel_count"):
        delay_layer(3, 2, K, kind="axonal", kernel_count=2)
    with pytest.raises(ValueError, match="kind"):
        delay_layer(3, 2, K, kind="somatic")
    with pytest.raises(ValueError, match="interpolation"):
        ChannelDelay(3, K, interpolation="cubic")
    with pytest.raises(ValueError, match="sparsity"):
        ChannelDelay(3, K, delays="none", sparsity=0.5)
    with pytest.raises(ValueError, match=r"\(B, T, 3\)"):
        ChannelDelay(3, K)(torch.zeros(2, 4, 5))

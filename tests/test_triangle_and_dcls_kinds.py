"""Triangle interpolation against dcls' ``version="max"`` and ``"v1"`` kernels, and the
per-channel delay against dcls' depthwise ``Dcls1d(groups=C)`` (how AxDenSynDelaySNN builds its
axonal and dendritic delays: unit weights, frozen). All in float64.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikedelay.channel_delays import ChannelDelay
from spikedelay.delays import DelayedLinear, position_range, triangle_kernel

DCLS = pytest.importorskip("DCLS.construct.modules")

DT = torch.float64


def _dcls(layer: DelayedLinear, version: str, sigma: float):
    ref = DCLS.Dcls1d(layer.in_features, layer.out_features, kernel_count=layer.kernel_count,
                      dilated_kernel_size=layer.max_delay, bias=False, version=version).to(DT)
    with torch.no_grad():
        ref.weight.copy_(layer.weight)
        ref.P.copy_(layer.position.unsqueeze(0))
        if ref.SIG is not None:
            ref.SIG.fill_(sigma)
            ref.SIG.requires_grad_(False)
    return ref


@pytest.mark.parametrize("version,sigma", [("max", 6.0), ("max", 1.5), ("max", 0.23),
                                           ("v1", 0.0)])
@pytest.mark.parametrize("kernel_count", [1, 2])
def test_triangle_layer_matches_dcls(version, sigma, kernel_count):
    torch.manual_seed(int(sigma * 10) + kernel_count)
    k = 13
    layer = DelayedLinear(5, 4, k, kernel_count=kernel_count, interpolation="triangle",
                          dtype=DT).train()
    with torch.no_grad():
        lo, hi = position_range(k)
        layer.position[0, 0, 0], layer.position[1, 0, 0] = lo, hi  # the clamp bounds too
    layer.set_sigma(sigma)
    ref = _dcls(layer, version, sigma)
    x = torch.randn(3, 20, 5, dtype=DT, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    y = layer(x)
    y_ref = ref(F.pad(x_ref.transpose(1, 2), (k - 1, (k - 1) // 2))).transpose(1, 2)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(layer.position.grad, ref.P.grad[0], rtol=1e-9, atol=1e-11)
    assert layer.position.grad.abs().sum() > 0


def test_triangle_is_linear_interpolation_at_sigma_zero():
    """σ = 0: two taps, weights 1 - frac and frac (dcls v1), e.g. p = 0.25 → taps 2, 3 of K 5."""
    w = torch.ones(1, 1, 1, dtype=DT)
    kern = triangle_kernel(w, torch.full((1, 1, 1), 0.25, dtype=DT), 0.0, 5)[0, 0]
    expect = torch.tensor([0, 0, 0.75, 0.25, 0], dtype=DT) / (1 + 1e-7)
    torch.testing.assert_close(kern, expect, rtol=0, atol=1e-15)


@pytest.mark.parametrize("interpolation,version", [("gaussian", "gauss"), ("triangle", "max")])
@pytest.mark.parametrize("sigma", [7.0, 0.23])
def test_channel_delay_matches_depthwise_dcls(interpolation, version, sigma):
    torch.manual_seed(3)
    c, k = 6, 15
    layer = ChannelDelay(c, k, interpolation=interpolation, dtype=DT).train()
    layer.set_sigma(sigma)
    ref = DCLS.Dcls1d(c, c, kernel_count=1, dilated_kernel_size=k, groups=c, bias=False,
                      version=version).to(DT)
    with torch.no_grad():
        ref.weight.fill_(1.0)
        ref.P.copy_(layer.position.view(1, c, 1, 1))
        ref.SIG.fill_(sigma)
    ref.weight.requires_grad_(False)
    ref.SIG.requires_grad_(False)
    x = torch.randn(2, 25, c, dtype=DT)
    y = layer(x)
    y_ref = ref(F.pad(x.transpose(1, 2), (k - 1, (k - 1) // 2))).transpose(1, 2)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(layer.position.grad, ref.P.grad.view(c), rtol=1e-9, atol=1e-11)

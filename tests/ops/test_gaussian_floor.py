"""The Gaussian kernel builder makes no subnormal numbers, and what it drops is below its bound.

At the final σ (0.23, σ_eff = 0.5) the far taps of a bump, e^-87 … e^-103, used to be float32
subnormals (≈ 4 % of the kernel), which cost the numba kernels ≈ 60 cycles per operation.
"""

from __future__ import annotations

import pytest
import torch

from spikedelay.delays import gaussian_kernel
from spikedelay.ops._gaussian_torch import tap_floor
from spikedelay.ops.gaussian import fused_gaussian_kernel


def _subnormals(t: torch.Tensor) -> int:
    return int(((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)).sum())


def _synapses(dtype: torch.dtype, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(16, 12, 1, generator=g, dtype=torch.float64) * 0.1).to(dtype)
    p = (torch.rand(16, 12, 1, generator=g, dtype=torch.float64) * 24 - 12).to(dtype)
    return w, p


@pytest.mark.usefixtures("kernel_backend")  # numba, torch, Triton (interpreted)
@pytest.mark.parametrize("sigma", [0.0, 0.23, 1.0])
def test_float32_kernel_and_gradients_have_no_subnormals(sigma):
    """The plain formula has subnormal taps here (checked, so the test can fail); ours none."""
    w, p = _synapses(torch.float32)
    plain = gaussian_kernel(w, p, sigma, 25, fused=False)
    assert _subnormals(plain) > 0
    w.requires_grad_()
    p.requires_grad_()
    kernel = fused_gaussian_kernel(w, p, sigma + 0.27, 25)
    assert _subnormals(kernel) == 0
    grad_w, grad_p = torch.autograd.grad(kernel, (w, p), torch.randn(kernel.shape))
    assert _subnormals(grad_w) == 0 and _subnormals(grad_p) == 0


@pytest.mark.usefixtures("kernel_backend")
@pytest.mark.parametrize("sigma", [0.0, 0.23, 1.0, 12.0])
def test_dropped_taps_are_below_the_stated_floor(sigma):
    """Against the float64 formula (no floor): every kernel value differs by at most its rounding
    plus K taps below the floor, and a value is 0 only where the formula is below the floor."""
    w, p = _synapses(torch.float64)
    ref = gaussian_kernel(w, p, sigma, 25, fused=False)  # autograd formula, float64, no floor
    got = fused_gaussian_kernel(w, p, sigma + 0.27, 25)
    scale = w.abs().expand_as(ref)  # |w| of each tap's synapse (one copy)
    floor = tap_floor(torch.float64)
    assert ((got - ref).abs() <= 1e-13 * scale + 25 * floor * scale).all()
    zeroed = (got == 0) & (ref != 0)
    assert zeroed.any() == (sigma < 1.0)  # the narrow bumps have taps below the floor
    # a zeroed tap's kernel value is |w| · g / G with g below the floor and G ≥ 0.36 (σ_eff ≥ 0.27)
    assert (ref[zeroed].abs() < 3 * floor * scale[zeroed]).all()
    w32, p32 = w.float(), p.float()
    got32 = fused_gaussian_kernel(w32, p32, sigma + 0.27, 25).double()
    assert (got32 - ref).abs().max() <= 1e-5 * ref.abs().max()

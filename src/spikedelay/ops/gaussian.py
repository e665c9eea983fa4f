"""Fused Gaussian delay-kernel builder (dcls ``version="gauss"``) with a closed-form backward.

Same maths as :func:`spikedelay.delays.gaussian_kernel`: per synapse copy a normalised Gaussian
over the ``K`` taps centred on ``c = p + K//2``, scaled by the weight::

    g_k = exp(-½ ((k - c)/σ)²),   G = Σ_k g_k + 1e-7,   kernel[k] = Σ_copies w · g_k / G

Autograd through the plain version keeps ~6 tensors of (out, in, kc, K) and runs ~25 passes over
them per step. Here the forward writes the kernel once (a block of taps per input feature, so
the tap-major writes are contiguous; the numba kernels (CPU) get the taps of a bump from a
recurrence, 4 exps per synapse instead of K, see ``_gaussian_numba.bump``; the Triton kernels
(CUDA) evaluate each tap), and the backward recomputes ``g`` per synapse and accumulates
(``δ_k`` the incoming gradient)::

    ∂L/∂w = A / G,   ∂L/∂p = w/σ² · (Σ_k δ_k g_k (k - c) / G - A · Σ_k g_k (k - c) / G²),
    A = Σ_k δ_k g_k

The kernel is stored tap-major, (K, in, out), and returned as the (out, in, K) view the callers
expect, so that the DFT convolution reads it as a (K, in·out) matrix without a copy.
σ is a constant here (the plain version also differentiates σ).

No subnormal numbers: every backend sets a bump tap ``g_k`` below ``tap_floor(dtype)`` (the
smallest normal number × 2⁶⁴: 2.2e-19 in float32, 4.1e-289 in float64) and a kernel value below
the smallest normal number to 0. Why: at the final σ (σ_eff = 0.5) ≈ 3.6 % of the float32
kernel values were subnormal (e⁻⁸⁷ … e⁻¹⁰³, 6.6–7.2 taps from the centre), and the numba kernels'
operations with subnormal results (≈ 60 cycles each) made the Gaussian kernel ≈ 1.6× slower
than at σ = 12. The dropped taps weigh at most K × 2.2e-19 of a synapse's weight, 10¹¹ below
float32 rounding (6e-8); ``tests/ops/test_gaussian_floor.py`` bounds the difference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikedelay.ops import dispatch

NORM_EPS = 1e-7  # dcls' epsilon in the normalisation of the Gaussian


class _GaussianKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: Tensor, position: Tensor, sigma_eff: float, taps: int) -> Tensor:
        weight = weight.contiguous()
        position = position.contiguous()
        ctx.impl = dispatch.select("gaussian", weight)
        out = ctx.impl.gaussian_forward(weight, position, sigma_eff, taps, NORM_EPS)
        ctx.save_for_backward(weight, position)
        ctx.sigma = sigma_eff
        return out.permute(2, 1, 0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, position = ctx.saved_tensors
        grad_tm = grad.permute(2, 1, 0).contiguous()  # free when grad is stored tap-major
        grad_w, grad_p = ctx.impl.gaussian_backward(weight, position, ctx.sigma, grad_tm,
                                                     NORM_EPS)
        return grad_w, grad_p, None, None


def fused_gaussian_kernel(
    weight: Tensor, position: Tensor, sigma_eff: float, max_delay: int
) -> Tensor:
    """Dense kernel (out, in, K) — a view of (K, in, out) memory — from weights and positions.

    Shapes: weight (out, in, kc), position (out, in, kc) → (out, in, K). ``sigma_eff`` is the
    effective width ``|σ| + 0.27``. Differentiable in ``weight`` and ``position``; any backend
    of :mod:`spikedelay.ops.dispatch`.
    """
    if weight.shape != position.shape or weight.dim() != 3:
        raise ValueError(
            f"weight and position must both be (out, in, kc), got {tuple(weight.shape)} and "
            f"{tuple(position.shape)}"
        )
    return _GaussianKernel.apply(weight, position.to(weight.dtype), float(sigma_eff), max_delay)


__all__ = ["fused_gaussian_kernel"]

"""Fused Gaussian delay-kernel builder (dcls ``version="gauss"``) with a closed-form backward.

Same maths as :func:`spikedelay.delays.gaussian_kernel`: per synapse copy a normalised Gaussian
over the ``K`` taps centred on ``c = p + K//2``, scaled by the weight::

    g_k = exp(-½ ((k - c)/σ)²),   G = Σ_k g_k + 1e-7,   kernel[k] = Σ_copies w · g_k / G

Autograd through the plain version keeps ~6 tensors of (out, in, kc, K) and runs ~25 passes over
them per step. Here the forward writes the kernel once (a block of taps per input feature, so
the tap-major writes are contiguous), the taps of a bump come from a recurrence (4 exps per
synapse instead of K, see ``bump``), and the backward recomputes ``g`` per synapse and
accumulates (``δ_k`` the incoming gradient)::

    ∂L/∂w = A / G,   ∂L/∂p = w/σ² · (Σ_k δ_k g_k (k - c) / G - A · Σ_k g_k (k - c) / G²),
    A = Σ_k δ_k g_k

The kernel is stored tap-major, (K, in, out), and returned as the (out, in, K) view the callers
expect, so that the DFT convolution reads it as a (K, in·out) matrix without a copy.
CPU only (numba); σ is a constant here (the plain version also differentiates σ).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikedelay.ops._interop import as_numpy as _np
from spikedelay.ops._interop import scalar_like as _scalar


def _kernels():
    """The compiled kernels' module (numba is imported on first use, not with spikedelay)."""
    from spikedelay.ops import _gaussian_kernels

    return _gaussian_kernels


class _GaussianKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: Tensor, position: Tensor, sigma_eff: float, taps: int) -> Tensor:
        weight = weight.contiguous()
        position = position.contiguous()
        out = weight.new_empty(taps, weight.shape[1], weight.shape[0])
        s = _scalar(sigma_eff, weight)
        _kernels().forward(_np(weight), _np(position), s, taps, _np(out))
        ctx.save_for_backward(weight, position)
        ctx.sigma = s
        return out.permute(2, 1, 0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, position = ctx.saved_tensors
        grad_tm = grad.permute(2, 1, 0).contiguous()  # free when grad is stored tap-major
        grad_w = torch.empty_like(weight)
        grad_p = torch.empty_like(position)
        _kernels().backward(
            _np(weight), _np(position), ctx.sigma, _np(grad_tm), _np(grad_w), _np(grad_p)
        )
        return grad_w, grad_p, None, None


def fused_gaussian_kernel(
    weight: Tensor, position: Tensor, sigma_eff: float, max_delay: int
) -> Tensor:
    """Dense kernel (out, in, K) — a view of (K, in, out) memory — from weights and positions.

    Shapes: weight (out, in, kc), position (out, in, kc) → (out, in, K). ``sigma_eff`` is the
    effective width ``|σ| + 0.27``. Differentiable in ``weight`` and ``position``; CPU tensors
    of float32/float64 only.
    """
    if weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.float64):
        raise ValueError("fused_gaussian_kernel runs on CPU float32/float64 tensors")
    if weight.shape != position.shape or weight.dim() != 3:
        raise ValueError(
            f"weight and position must both be (out, in, kc), got {tuple(weight.shape)} and "
            f"{tuple(position.shape)}"
        )
    return _GaussianKernel.apply(weight, position.to(weight.dtype), float(sigma_eff), max_delay)


__all__ = ["fused_gaussian_kernel"]

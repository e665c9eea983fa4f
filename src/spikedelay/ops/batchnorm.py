"""Fused masked batch normalisation over (batch, time) with a closed-form backward.

Same maths as :meth:`spikedelay.neurons.MaskedBatchNorm1d._masked_train_forward`: statistics over
the valid steps only (``n`` of them), every step normalised with them::

    μ = Σ_valid x / n,   σ² = Σ_valid (x - μ)² / n,   x̂ = (x - μ)/√(σ² + ε),   y = γ x̂ + β

Backward, with sums over *all* steps (padded outputs depend on μ and σ² too)::

    ∂L/∂β = Σ g,   ∂L/∂γ = Σ g x̂,
    ∂L/∂x = γ/√(σ² + ε) · (g - [valid] · (Σ g + x̂ Σ g x̂) / n)

Autograd through the plain version runs ~10 passes over (B, T, C) forward and ~20 backward; the
numba kernels (CPU, ``_batchnorm_numba``) make three forward and two backward, parallel over the
batch with per-sample partial sums accumulated in float64; the Triton kernels (CUDA,
``_batchnorm_triton``) do the same with per-block partial sums; ``_batchnorm_torch`` is the
reference in torch ops. :mod:`spikedelay.ops.dispatch` picks one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikedelay.ops import dispatch


class _MaskedBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask, weight, bias, eps):
        x = x.contiguous()
        mask_u8 = mask.contiguous().to(torch.uint8)
        ctx.impl = dispatch.select("batchnorm", x)
        y, mean, var = ctx.impl.masked_bn_forward(x, mask_u8, weight, bias, eps)
        ctx.save_for_backward(x, mask_u8, weight, mean, var)
        ctx.eps = float(eps)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        x, mask_u8, weight, mean, var = ctx.saved_tensors
        grad_x, grad_w, grad_b = ctx.impl.masked_bn_backward(
            grad.contiguous(), x, mask_u8, weight, mean, var, ctx.eps)
        return grad_x, None, grad_w, grad_b, None


class _BatchNormLIF(torch.autograd.Function):
    """Masked BatchNorm then LIF, keeping only the BatchNorm input for the backward."""

    @staticmethod
    def forward(ctx, x, mask, weight, bias, eps, tau, threshold, alpha):
        x = x.contiguous()
        mask_u8 = mask.contiguous().to(torch.uint8)
        ctx.impl = dispatch.select("batchnorm", x)
        spikes, mean, var, rstd, n = ctx.impl.bn_lif_forward(
            x, mask_u8, weight.detach(), bias.detach(), eps, tau, threshold)
        ctx.save_for_backward(x, mask_u8, weight, bias, mean, rstd)
        ctx.constants = (tau, threshold, alpha, n)
        ctx.mark_non_differentiable(mean, var)
        return spikes, mean, var

    @staticmethod
    def backward(ctx, grad_s, _grad_mean, _grad_var):
        x, mask_u8, weight, bias, mean, rstd = ctx.saved_tensors
        tau, threshold, alpha, n = ctx.constants
        grad_x, grad_w, grad_b = ctx.impl.bn_lif_backward(
            grad_s.contiguous(), x, mask_u8, weight, bias, mean, rstd, tau, threshold, alpha, n)
        return grad_x, None, grad_w, grad_b, None, None, None, None


def fused_batch_norm_lif(
    x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor, eps: float, tau: float,
    threshold: float = 1.0, alpha: float = 5.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Masked BatchNorm (batch statistics) followed by a LIF population, fused.

    The same numbers as ``lif_sequence(masked_batch_norm(x))`` with
    :func:`fused_masked_batch_norm` and :func:`spikedelay.ops.lif.fused_lif_sequence`, but only
    ``x`` is kept for the backward (the normalised input and the LIF charge are recomputed
    there, one cheap pass), instead of ``x`` *and* the charge. Returns ``(spikes, mean, var)``
    (``var`` biased; no gradient through ``mean``/``var``).

    Shapes: x (B, T, C), mask (B, T) bool, weight and bias (C,) → spikes (B, T, C), (C,), (C,).
    Any backend of :mod:`spikedelay.ops.dispatch`; at least one valid step.
    """
    return _BatchNormLIF.apply(x, mask, weight.to(x.dtype), bias.to(x.dtype), float(eps),
                               float(tau), float(threshold), float(alpha))


def fused_masked_batch_norm(
    x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalise ``x`` with the statistics of its valid steps; returns ``(y, mean, var)``.

    ``var`` is the biased variance (what normalises); ``mean`` and ``var`` carry no gradient
    (for the running estimates). Shapes: x (B, T, C), mask (B, T) bool, weight and bias (C,)
    → y (B, T, C), mean (C,), var (C,). Any backend; at least one valid step.
    """
    return _MaskedBatchNorm.apply(x, mask, weight.to(x.dtype), bias.to(x.dtype), eps)


__all__ = ["fused_batch_norm_lif", "fused_masked_batch_norm"]

"""Fused masked batch normalisation over (batch, time) with a closed-form backward (CPU, numba).

Same maths as :meth:`spikedelay.neurons.MaskedBatchNorm1d._masked_train_forward`: statistics over
the valid steps only (``n`` of them), every step normalised with them::

    μ = Σ_valid x / n,   σ² = Σ_valid (x - μ)² / n,   x̂ = (x - μ)/√(σ² + ε),   y = γ x̂ + β

Backward, with sums over *all* steps (padded outputs depend on μ and σ² too)::

    ∂L/∂β = Σ g,   ∂L/∂γ = Σ g x̂,
    ∂L/∂x = γ/√(σ² + ε) · (g - [valid] · (Σ g + x̂ Σ g x̂) / n)

Autograd through the plain version runs ~10 passes over (B, T, C) forward and ~20 backward; here
three forward and two backward, parallel over the batch with per-sample partial sums
(accumulated in float64).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from spikedelay.ops._interop import as_numpy as _np
from spikedelay.ops._interop import scalar_like as _scalar


def _kernels():
    """The compiled kernels' module (numba is imported on first use, not with spikedelay)."""
    from spikedelay.ops import _batchnorm_kernels

    return _batchnorm_kernels


class _MaskedBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask, weight, bias, eps):
        x = x.contiguous()
        mask_u8 = mask.contiguous().to(torch.uint8)
        y = torch.empty_like(x)
        mean = x.new_empty(x.shape[2])
        var = x.new_empty(x.shape[2])
        _kernels().forward(
            _np(x), _np(mask_u8), _np(weight), _np(bias), float(eps), _np(y), _np(mean), _np(var)
        )
        ctx.save_for_backward(x, mask_u8, weight, mean, var)
        ctx.eps = float(eps)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        x, mask_u8, weight, mean, var = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = torch.empty_like(x)
        grad_w = torch.empty_like(weight)
        grad_b = torch.empty_like(weight)
        _kernels().backward(
            _np(grad), _np(x), _np(mask_u8), _np(weight), _np(mean), _np(var), ctx.eps,
            _np(grad_x), _np(grad_w), _np(grad_b),
        )
        return grad_x, None, grad_w, grad_b, None


class _BatchNormLIF(torch.autograd.Function):
    """Masked BatchNorm then LIF, keeping only the BatchNorm input for the backward."""

    @staticmethod
    def forward(ctx, x, mask, weight, bias, eps, tau, threshold, alpha):
        x = x.contiguous()
        mask_u8 = mask.contiguous().to(torch.uint8)
        k = _kernels()
        mean_np, var_np, n = k.stats(_np(x), _np(mask_u8))
        with np.errstate(over="ignore"):  # a diverging run gives inf; the NaN guard reports it
            var_np = var_np.astype(mean_np.dtype)
        mean, var = torch.from_numpy(mean_np), torch.from_numpy(var_np)
        rstd = torch.rsqrt(var.double() + eps).to(x.dtype)
        scale = weight.detach() * rstd
        spikes = torch.empty_like(x)
        k.bn_lif_forward(_np(x), _np(scale), mean_np, _np(bias), _scalar(tau, x),
                            _scalar(threshold, x), _np(spikes))
        ctx.save_for_backward(x, mask_u8, weight, bias, mean, rstd)
        ctx.constants = (tau, threshold, alpha, n)
        ctx.mark_non_differentiable(mean, var)
        return spikes, mean, var

    @staticmethod
    def backward(ctx, grad_s, _grad_mean, _grad_var):
        x, mask_u8, weight, bias, mean, rstd = ctx.saved_tensors
        tau, threshold, alpha, n = ctx.constants
        grad_s = grad_s.contiguous()
        grad_x = torch.empty_like(x)
        grad_w = torch.empty_like(weight)
        grad_b = torch.empty_like(weight)
        _kernels().bn_lif_backward(
            _np(grad_s), _np(x), _np(mask_u8), _np(weight), _np(mean), _np(rstd), _np(bias),
            _scalar(tau, x), _scalar(threshold, x), float(alpha), float(n), _np(grad_x),
            _np(grad_w), _np(grad_b),
        )
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
    CPU float32/float64; at least one valid step.
    """
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        raise ValueError("fused_batch_norm_lif runs on CPU float32/float64 tensors")
    return _BatchNormLIF.apply(x, mask, weight.to(x.dtype), bias.to(x.dtype), float(eps),
                               float(tau), float(threshold), float(alpha))


def fused_masked_batch_norm(
    x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor, eps: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalise ``x`` with the statistics of its valid steps; returns ``(y, mean, var)``.

    ``var`` is the biased variance (what normalises); ``mean`` and ``var`` carry no gradient
    (for the running estimates). Shapes: x (B, T, C), mask (B, T) bool, weight and bias (C,)
    → y (B, T, C), mean (C,), var (C,). CPU float32/float64; at least one valid step.
    """
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        raise ValueError("fused_masked_batch_norm runs on CPU float32/float64 tensors")
    return _MaskedBatchNorm.apply(x, mask, weight.to(x.dtype), bias.to(x.dtype), eps)


__all__ = ["fused_batch_norm_lif", "fused_masked_batch_norm"]

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

import math

import numpy as np
import torch
from torch import Tensor

_KERNELS: dict[str, object] = {}


def _kernels() -> dict[str, object]:
    if _KERNELS:
        return _KERNELS
    import numba

    @numba.njit(parallel=True, cache=True)
    def stats(x, mask):  # pragma: no cover - compiled
        """Mean (in x's dtype), biased variance (float64) and count over the valid steps."""
        batch, steps, channels = x.shape
        part = np.zeros((batch, channels), dtype=np.float64)
        counts = np.zeros(batch, dtype=np.float64)
        for b in numba.prange(batch):
            for t in range(steps):
                if mask[b, t]:
                    counts[b] += 1.0
                    for c in range(channels):
                        part[b, c] += x[b, t, c]
        n = counts.sum()
        mean = part.sum(axis=0) / n
        mean_x = mean.astype(x.dtype)
        for b in numba.prange(batch):
            for c in range(channels):
                part[b, c] = 0.0
            for t in range(steps):
                if mask[b, t]:
                    for c in range(channels):
                        d = np.float64(x[b, t, c] - mean_x[c])
                        part[b, c] += d * d
        var = part.sum(axis=0) / n
        return mean_x, var, n

    @numba.njit(parallel=True, cache=True)
    def forward(x, mask, weight, bias, eps, y, mean_out, var_out):  # pragma: no cover
        channels = x.shape[2]
        dt = x.dtype.type
        mean_x, var, _ = stats(x, mask)
        scale = np.empty(channels, dtype=x.dtype)
        for c in range(channels):
            scale[c] = dt(1.0 / math.sqrt(var[c] + eps)) * weight[c]
            mean_out[c] = mean_x[c]
            var_out[c] = dt(var[c])
        for b in numba.prange(x.shape[0]):
            for t in range(x.shape[1]):
                for c in range(channels):
                    y[b, t, c] = (x[b, t, c] - mean_x[c]) * scale[c] + bias[c]

    @numba.njit(parallel=True, cache=True)
    def backward(grad, x, mask, weight, mean, var, eps, grad_x, grad_w, grad_b):  # pragma: no cover
        batch, steps, channels = x.shape
        dt = x.dtype.type
        rstd = np.empty(channels, dtype=x.dtype)
        for c in range(channels):
            rstd[c] = dt(1.0 / math.sqrt(np.float64(var[c]) + eps))
        part_g = np.zeros((batch, channels), dtype=np.float64)
        part_gx = np.zeros((batch, channels), dtype=np.float64)
        counts = np.zeros(batch, dtype=np.float64)
        for b in numba.prange(batch):
            for t in range(steps):
                if mask[b, t]:
                    counts[b] += 1.0
                for c in range(channels):
                    g = grad[b, t, c]
                    part_g[b, c] += g
                    part_gx[b, c] += g * ((x[b, t, c] - mean[c]) * rstd[c])
        n = counts.sum()
        sum_g = np.zeros(channels, dtype=np.float64)
        sum_gx = np.zeros(channels, dtype=np.float64)
        for b in range(batch):
            for c in range(channels):
                sum_g[c] += part_g[b, c]
                sum_gx[c] += part_gx[b, c]
        a = np.empty(channels, dtype=x.dtype)
        k = np.empty(channels, dtype=x.dtype)
        s_g = np.empty(channels, dtype=x.dtype)
        s_gx = np.empty(channels, dtype=x.dtype)
        for c in range(channels):
            a[c] = weight[c] * rstd[c]
            s_g[c] = dt(sum_g[c] / n)
            s_gx[c] = dt(sum_gx[c] / n)
            grad_w[c] = dt(sum_gx[c])
            grad_b[c] = dt(sum_g[c])
            k[c] = rstd[c]
        for b in numba.prange(batch):
            for t in range(steps):
                if mask[b, t]:
                    for c in range(channels):
                        xh = (x[b, t, c] - mean[c]) * k[c]
                        grad_x[b, t, c] = a[c] * (grad[b, t, c] - s_g[c] - xh * s_gx[c])
                else:
                    for c in range(channels):
                        grad_x[b, t, c] = a[c] * grad[b, t, c]

    @numba.njit(parallel=True, cache=True)
    def bn_lif_forward(x, scale, shift_mean, bias, tau, threshold, s_out):  # pragma: no cover
        """z = (x - μ)·scale + β, then LIF over time; writes spikes only."""
        batch, steps, channels = x.shape
        dt = x.dtype.type
        for b in numba.prange(batch):
            v = np.zeros(channels, dtype=x.dtype)
            for t in range(steps):
                for c in range(channels):
                    z = (x[b, t, c] - shift_mean[c]) * scale[c] + bias[c]
                    h = v[c] - v[c] / tau + z
                    if h - threshold >= dt(0.0):
                        s_out[b, t, c] = dt(1.0)
                        v[c] = dt(0.0)
                    else:
                        s_out[b, t, c] = dt(0.0)
                        v[c] = h

    @numba.njit(parallel=True, cache=True)
    def bn_lif_backward(grad_s, x, mask, weight, mean, rstd, bias, tau, threshold, alpha, n,
                        grad_x, grad_w, grad_b):  # pragma: no cover - compiled
        batch, steps, channels = x.shape
        dt = x.dtype.type
        half_alpha = dt(alpha / 2.0)
        slope = dt(math.pi / 2.0 * alpha)
        scale = weight * rstd
        part_g = np.zeros((batch, channels), dtype=np.float64)
        part_gx = np.zeros((batch, channels), dtype=np.float64)
        for b in numba.prange(batch):
            h = np.empty((steps, channels), dtype=x.dtype)
            v = np.zeros(channels, dtype=x.dtype)
            for t in range(steps):  # recompute the LIF charge H from the saved input
                for c in range(channels):
                    z = (x[b, t, c] - mean[c]) * scale[c] + bias[c]
                    hv = v[c] - v[c] / tau + z
                    h[t, c] = hv
                    v[c] = dt(0.0) if hv - threshold >= dt(0.0) else hv
            g_next = np.zeros(channels, dtype=x.dtype)
            for t in range(steps - 1, -1, -1):  # LIF backward: gradient w.r.t. z
                for c in range(channels):
                    u = h[t, c] - threshold
                    w = slope * u
                    g = grad_s[b, t, c] * (half_alpha / (dt(1.0) + w * w))
                    if u < dt(0.0):
                        g += g_next[c] - g_next[c] / tau
                    g_next[c] = g
                    grad_x[b, t, c] = g
                    part_g[b, c] += g
                    part_gx[b, c] += g * ((x[b, t, c] - mean[c]) * rstd[c])
        sum_g = part_g.sum(axis=0)
        sum_gx = part_gx.sum(axis=0)
        s_g = (sum_g / n).astype(x.dtype)
        s_gx = (sum_gx / n).astype(x.dtype)
        for c in range(channels):
            grad_w[c] = dt(sum_gx[c])
            grad_b[c] = dt(sum_g[c])
        for b in numba.prange(batch):  # BatchNorm backward, in place on grad_x
            for t in range(steps):
                if mask[b, t]:
                    for c in range(channels):
                        xh = (x[b, t, c] - mean[c]) * rstd[c]
                        grad_x[b, t, c] = scale[c] * (grad_x[b, t, c] - s_g[c] - xh * s_gx[c])
                else:
                    for c in range(channels):
                        grad_x[b, t, c] = scale[c] * grad_x[b, t, c]

    _KERNELS.update(forward=forward, backward=backward, stats=stats,
                    bn_lif_forward=bn_lif_forward, bn_lif_backward=bn_lif_backward)
    return _KERNELS


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


class _MaskedBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask, weight, bias, eps):
        x = x.contiguous()
        mask_u8 = mask.contiguous().to(torch.uint8)
        y = torch.empty_like(x)
        mean = x.new_empty(x.shape[2])
        var = x.new_empty(x.shape[2])
        _kernels()["forward"](
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
        _kernels()["backward"](
            _np(grad), _np(x), _np(mask_u8), _np(weight), _np(mean), _np(var), ctx.eps,
            _np(grad_x), _np(grad_w), _np(grad_b),
        )
        return grad_x, None, grad_w, grad_b, None


def _scalar(value: float, like: Tensor) -> np.generic:
    return np.dtype(str(like.dtype).removeprefix("torch.")).type(value)


class _BatchNormLIF(torch.autograd.Function):
    """Masked BatchNorm then LIF, keeping only the BatchNorm input for the backward."""

    @staticmethod
    def forward(ctx, x, mask, weight, bias, eps, tau, threshold, alpha):
        x = x.contiguous()
        mask_u8 = mask.contiguous().to(torch.uint8)
        k = _kernels()
        mean_np, var_np, n = k["stats"](_np(x), _np(mask_u8))
        with np.errstate(over="ignore"):  # a diverging run gives inf; the NaN guard reports it
            var_np = var_np.astype(mean_np.dtype)
        mean, var = torch.from_numpy(mean_np), torch.from_numpy(var_np)
        rstd = torch.rsqrt(var.double() + eps).to(x.dtype)
        scale = weight.detach() * rstd
        spikes = torch.empty_like(x)
        k["bn_lif_forward"](_np(x), _np(scale), mean_np, _np(bias), _scalar(tau, x),
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
        _kernels()["bn_lif_backward"](
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

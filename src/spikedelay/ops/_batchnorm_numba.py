"""Masked BatchNorm (→ LIF) of :mod:`spikedelay.ops.batchnorm` for CPU tensors (numba).

Imported on first use (numba is heavy). Module-level kernels, so that numba's on-disk cache
also works for the kernels that call others (``forward`` calls ``stats``, both backwards call
``input_grad``). Parallel over the batch with per-sample partial sums (accumulated in float64).
"""

import math

import numba
import numpy as np
import torch
from torch import Tensor

from spikedelay.ops._interop import as_numpy as _np
from spikedelay.ops._interop import scalar_like as _scalar
from spikedelay.ops.buffers import pooled_empty


@numba.njit(parallel=True, cache=True)
def input_grad(grad, x, mask, mean, rstd, scale, s_g, s_gx, grad_x):
    """∂L/∂x = γ/√(σ² + ε) · (g - [valid] · (mean g + x̂ · mean g x̂)); may run in place."""
    batch, steps, channels = x.shape
    for b in numba.prange(batch):
        for t in range(steps):
            if mask[b, t]:
                for c in range(channels):
                    xh = (x[b, t, c] - mean[c]) * rstd[c]
                    grad_x[b, t, c] = scale[c] * (grad[b, t, c] - s_g[c] - xh * s_gx[c])
            else:
                for c in range(channels):
                    grad_x[b, t, c] = scale[c] * grad[b, t, c]


@numba.njit(parallel=True, cache=True)
def stats(x, mask):
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
def forward(x, mask, weight, bias, eps, y, mean_out, var_out):
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
def backward(grad, x, mask, weight, mean, var, eps, grad_x, grad_w, grad_b):
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
    s_g = np.empty(channels, dtype=x.dtype)
    s_gx = np.empty(channels, dtype=x.dtype)
    for c in range(channels):
        a[c] = weight[c] * rstd[c]
        s_g[c] = dt(sum_g[c] / n)
        s_gx[c] = dt(sum_gx[c] / n)
        grad_w[c] = dt(sum_gx[c])
        grad_b[c] = dt(sum_g[c])
    input_grad(grad, x, mask, mean, rstd, a, s_g, s_gx, grad_x)


@numba.njit(parallel=True, cache=True)
def bn_lif_forward_kernel(x, scale, shift_mean, bias, tau, threshold, s_out):
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
def bn_lif_backward_kernel(grad_s, x, mask, weight, mean, rstd, bias, tau, threshold, alpha,
                           n, grad_x, grad_w, grad_b):
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
    input_grad(grad_x, x, mask, mean, rstd, scale, s_g, s_gx, grad_x)  # in place


# -- the backend's entry points (torch tensors in and out) ---------------------------------------
def masked_bn_forward(x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor,
                      eps: float) -> tuple[Tensor, Tensor, Tensor]:
    y = pooled_empty(x.shape, x)
    mean, var = x.new_empty(x.shape[2]), x.new_empty(x.shape[2])
    forward(_np(x), _np(mask), _np(weight), _np(bias), float(eps), _np(y), _np(mean), _np(var))
    return y, mean, var


def masked_bn_backward(grad: Tensor, x: Tensor, mask: Tensor, weight: Tensor, mean: Tensor,
                       var: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    grad_x = pooled_empty(x.shape, x)
    grad_w, grad_b = torch.empty_like(weight), torch.empty_like(weight)
    backward(_np(grad), _np(x), _np(mask), _np(weight), _np(mean), _np(var), float(eps),
             _np(grad_x), _np(grad_w), _np(grad_b))
    return grad_x, grad_w, grad_b


def bn_lif_forward(x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor, eps: float, tau: float,
                   threshold: float) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """Spikes, mean, biased variance, 1/√(σ² + ε) and the count of valid steps."""
    mean_np, var_np, n = stats(_np(x), _np(mask))
    with np.errstate(over="ignore"):  # a diverging run gives inf; the NaN guard reports it
        var_np = var_np.astype(mean_np.dtype)
    mean, var = torch.from_numpy(mean_np), torch.from_numpy(var_np)
    rstd = torch.rsqrt(var.double() + eps).to(x.dtype)
    scale = weight.detach() * rstd
    spikes = pooled_empty(x.shape, x)
    bn_lif_forward_kernel(_np(x), _np(scale), mean_np, _np(bias), _scalar(tau, x),
                          _scalar(threshold, x), _np(spikes))
    return spikes, mean, var, rstd, n


def bn_lif_backward(grad_s: Tensor, x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor,
                    mean: Tensor, rstd: Tensor, tau: float, threshold: float, alpha: float,
                    n: float) -> tuple[Tensor, Tensor, Tensor]:
    grad_x = pooled_empty(x.shape, x)
    grad_w, grad_b = torch.empty_like(weight), torch.empty_like(weight)
    bn_lif_backward_kernel(
        _np(grad_s), _np(x), _np(mask), _np(weight), _np(mean), _np(rstd), _np(bias),
        _scalar(tau, x), _scalar(threshold, x), float(alpha), float(n), _np(grad_x),
        _np(grad_w), _np(grad_b),
    )
    return grad_x, grad_w, grad_b

"""The Gaussian kernel builder of :mod:`spikedelay.ops.gaussian` for CPU tensors (numba).

Imported on first use (numba is heavy). Module-level functions, so that numba's on-disk cache
works for ``forward_kernel`` and ``backward_kernel``, which call ``bump`` (a kernel that calls a
closure cannot be cached: it would be recompiled in every process, ~5 s and ~80 MB).
"""

import math

import numba
import numpy as np
import torch
from torch import Tensor

from spikedelay.ops._gaussian_torch import FLOOR_MARGIN, tap_floor
from spikedelay.ops._interop import as_numpy as _np
from spikedelay.ops._interop import scalar_like as _scalar
from spikedelay.ops.buffers import pooled_empty


@numba.njit(cache=True)
def bump(centre, sigma, eps, floor, g):
    # g[k] = exp(-½((k - centre)/σ)²) for every tap, 0 below ``floor``; returns Σ g + eps.
    # Why a recurrence: without SVML an exp costs ~10 ns and dominated this kernel. Between
    # neighbouring taps g[k±1] = g[k] · r with r = exp(∓((k - c) ± ½)/σ²), and r itself
    # changes by q = exp(-1/σ²) per tap, so a synapse needs 4 exps instead of K. Walking
    # outward from the tap nearest the centre keeps every ratio ≤ 1, so once a tap falls below
    # ``floor`` (``_gaussian_torch.tap_floor``) the rest of that tail does too: they are 0, and
    # no subnormal number arises (see :mod:`spikedelay.ops.gaussian`). Float32 rounding: 1e-7
    # (σ ≤ 1) to 4e-6 (σ = 100) relative.
    taps = g.shape[0]
    dt = g.dtype.type
    inv_var = dt(1.0) / (sigma * sigma)
    k0 = min(taps - 1, max(0, int(round(centre))))
    d = dt(k0) - centre
    q = math.exp(-inv_var)
    value = math.exp(dt(-0.5) * d * d * inv_var)
    g[k0] = value if value >= floor else dt(0.0)
    total = g[k0]
    ratio = math.exp(-(d + dt(0.5)) * inv_var)
    total = _tail(g, k0 + 1, 1, value, ratio, q, floor, total)
    ratio = math.exp((d - dt(0.5)) * inv_var)
    total = _tail(g, k0 - 1, -1, value, ratio, q, floor, total)
    return total + dt(eps)


@numba.njit(cache=True)
def _tail(g, start, step, value, ratio, q, floor, total):
    # g[start], g[start + step], ... to the end: value *= ratio, ratio *= q per tap, each added
    # to ``total`` (returned; the sums run in the walk's order). Below ``floor`` a tap is 0, and
    # once the ratio is ≤ 1 the rest are 0 without more arithmetic. Why: an operation with a
    # subnormal result costs ~60 cycles here; at σ_eff = 0.5 they made a 256 × 256 kernel's
    # forward 7.7 ms instead of 4.7 (single thread), the floor 5.3.
    end = g.shape[0] if step > 0 else -1
    dt = g.dtype.type
    for k in range(start, end, step):
        value *= ratio
        ratio *= q
        if value >= floor:
            g[k] = value
            total += value
        elif ratio <= dt(1.0):
            for j in range(k, end, step):
                g[j] = dt(0.0)
            return total
        else:
            g[k] = dt(0.0)
    return total


@numba.njit(parallel=True, cache=True)
def forward_kernel(weight, position, sigma, eps, floor, taps, out):
    n_out, n_in, copies = weight.shape
    dt = weight.dtype.type
    half = taps // 2
    tiny = floor / dt(FLOOR_MARGIN)  # the smallest normal number: the kernel has no subnormals
    for i in numba.prange(n_in):
        g = np.empty(taps, dtype=weight.dtype)
        block = np.zeros((taps, n_out), dtype=weight.dtype)  # out[:, i, :], written once
        for o in range(n_out):
            for c in range(copies):
                total = bump(position[o, i, c] + dt(half), sigma, eps, floor, g)
                w = weight[o, i, c]
                for k in range(taps):
                    block[k, o] += w * (g[k] / total)
        for k in range(taps):
            for o in range(n_out):
                v = block[k, o]
                out[k, i, o] = v if abs(v) >= tiny else dt(0.0)


@numba.njit(parallel=True, cache=True)
def backward_kernel(weight, position, sigma, eps, floor, grad, grad_w, grad_p):
    n_out, n_in, copies = weight.shape
    taps = grad.shape[0]
    dt = weight.dtype.type
    half = taps // 2
    inv_var = dt(1.0) / (sigma * sigma)
    for i in numba.prange(n_in):
        g = np.empty(taps, dtype=weight.dtype)
        block = np.empty((n_out, taps), dtype=weight.dtype)  # grad[:, i, :], read once
        for k in range(taps):
            for o in range(n_out):
                block[o, k] = grad[k, i, o]
        for o in range(n_out):
            for c in range(copies):
                centre = position[o, i, c] + dt(half)
                total = bump(centre, sigma, eps, floor, g)
                a = dt(0.0)
                b = dt(0.0)
                m = dt(0.0)
                for k in range(taps):
                    d = dt(k) - centre
                    gd = block[o, k] * g[k]
                    a += gd
                    b += gd * d
                    m += g[k] * d
                grad_w[o, i, c] = a / total
                slope = b / total - a * m / (total * total)
                grad_p[o, i, c] = weight[o, i, c] * inv_var * slope


def gaussian_forward(weight: Tensor, position: Tensor, sigma: float, taps: int,
                     eps: float) -> Tensor:
    out = pooled_empty((taps, weight.shape[1], weight.shape[0]), weight)
    forward_kernel(_np(weight), _np(position), _scalar(sigma, weight), _scalar(eps, weight),
                   _scalar(tap_floor(weight.dtype), weight), taps, _np(out))
    return out


def gaussian_backward(weight: Tensor, position: Tensor, sigma: float, grad_tm: Tensor,
                      eps: float) -> tuple[Tensor, Tensor]:
    grad_w, grad_p = torch.empty_like(weight), torch.empty_like(position)
    backward_kernel(_np(weight), _np(position), _scalar(sigma, weight), _scalar(eps, weight),
                    _scalar(tap_floor(weight.dtype), weight), _np(grad_tm), _np(grad_w),
                    _np(grad_p))
    return grad_w, grad_p

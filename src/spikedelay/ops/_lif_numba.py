"""LIF / LI kernels of :mod:`spikedelay.ops.lif` for CPU tensors (numba; imported on first use).

Parallel over the batch, vectorised over channels; the forward evaluates ``v - v/τ + x`` in the
tensor's dtype in the reference's order, so spikes match it bit for bit.
"""

import math

import numba
import numpy as np
from torch import Tensor

from spikedelay.ops._interop import as_numpy as _np
from spikedelay.ops._interop import scalar_like as _scalar
from spikedelay.ops.buffers import pooled_empty


@numba.njit(parallel=True, cache=True)
def _lif_forward(x, tau, threshold, h_out, s_out):  # pragma: no cover - compiled
    batch, steps, channels = x.shape
    one = x.dtype.type(1.0)
    zero = x.dtype.type(0.0)
    for b in numba.prange(batch):
        v = np.zeros(channels, dtype=x.dtype)
        for t in range(steps):
            for c in range(channels):
                h = v[c] - v[c] / tau + x[b, t, c]
                h_out[b, t, c] = h
                if h - threshold >= zero:
                    s_out[b, t, c] = one
                    v[c] = zero
                else:
                    s_out[b, t, c] = zero
                    v[c] = h


@numba.njit(parallel=True, cache=True)
def _lif_backward(grad_s, h, tau, threshold, alpha, grad_x):  # pragma: no cover - compiled
    batch, steps, channels = h.shape
    zero = h.dtype.type(0.0)
    half_alpha = h.dtype.type(alpha / 2.0)
    slope = h.dtype.type(math.pi / 2.0 * alpha)
    one = h.dtype.type(1.0)
    for b in numba.prange(batch):
        g_next = np.zeros(channels, dtype=h.dtype)  # gH[t+1]
        for t in range(steps - 1, -1, -1):
            for c in range(channels):
                u = h[b, t, c] - threshold
                z = slope * u
                g = grad_s[b, t, c] * (half_alpha / (one + z * z))
                if u < zero:  # no spike: V[t] = H[t], so the future flows back
                    g += g_next[c] - g_next[c] / tau
                grad_x[b, t, c] = g
                g_next[c] = g


@numba.njit(parallel=True, cache=True)
def _li_forward(x, tau, v_out):  # pragma: no cover - compiled
    batch, steps, channels = x.shape
    for b in numba.prange(batch):
        v = np.zeros(channels, dtype=x.dtype)
        for t in range(steps):
            for c in range(channels):
                v[c] = v[c] - v[c] / tau + x[b, t, c]
                v_out[b, t, c] = v[c]


@numba.njit(parallel=True, cache=True)
def _li_backward(grad_v, tau, grad_x):  # pragma: no cover - compiled
    batch, steps, channels = grad_v.shape
    for b in numba.prange(batch):
        g_next = np.zeros(channels, dtype=grad_v.dtype)
        for t in range(steps - 1, -1, -1):
            for c in range(channels):
                g = grad_v[b, t, c] + (g_next[c] - g_next[c] / tau)
                grad_x[b, t, c] = g
                g_next[c] = g


def lif_forward(x: Tensor, tau: float, threshold: float) -> tuple[Tensor, Tensor]:
    h, s = pooled_empty(x.shape, x), pooled_empty(x.shape, x)
    _lif_forward(_np(x), _scalar(tau, x), _scalar(threshold, x), _np(h), _np(s))
    return h, s


def lif_backward(grad_s: Tensor, h: Tensor, tau: float, threshold: float, alpha: float) -> Tensor:
    grad_x = pooled_empty(h.shape, h)
    _lif_backward(_np(grad_s), _np(h), _scalar(tau, h), _scalar(threshold, h), float(alpha),
                  _np(grad_x))
    return grad_x


def li_forward(x: Tensor, tau: float) -> Tensor:
    v = pooled_empty(x.shape, x)
    _li_forward(_np(x), _scalar(tau, x), _np(v))
    return v


def li_backward(grad_v: Tensor, tau: float) -> Tensor:
    grad_x = pooled_empty(grad_v.shape, grad_v)
    _li_backward(_np(grad_v), _scalar(tau, grad_v), _np(grad_x))
    return grad_x

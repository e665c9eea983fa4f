"""The per-channel delay of :mod:`spikedelay.ops.channel_delay` for CPU tensors (numba).

Why not torch's depthwise convolution: on CPU it runs several times slower per multiply-add
than a matrix product, so a (C, K) delay cost about as much as the (C, C) linear map beside it.
Here the ``(B, T, C)`` layout is walked as it lies: for each output step and tap one contiguous
row of ``C`` channels is multiplied and added (a SIMD loop with no reduction in it, so no
fastmath is needed). (Splitting the rows into blocks of channels, to keep the K input rows in
L1, stopped numba vectorising the loop and was slower.) Threads split the batch; one backward
pass computes both gradients, the kernel's summed per thread and the partial sums added at the
end in a fixed order (deterministic for a given thread count).

Taps whose kernel column is zero in every channel are skipped in the forward and in the input
gradient (exactly: they add ``0 · x``; only a non-finite input would differ, and spikes and
activations are finite). Module-level kernels, so that numba's on-disk cache works.
"""

import numba
import numpy as np
import torch
from torch import Tensor

from spikedelay.ops._interop import as_numpy as _np


@numba.njit(cache=True)
def _live_taps(wt):
    # Which taps have a non-zero kernel value in some channel.
    taps, n_c = wt.shape
    live = np.zeros(taps, dtype=np.bool_)
    for k in range(taps):
        for c in range(n_c):
            if wt[k, c] != 0:
                live[k] = True
                break
    return live


@numba.njit(parallel=True, cache=True)
def forward_kernel(x, wt, left, out):
    # out[b, t, c] = Σ_k wt[k, c] · x[b, t + k - left, c]  (x zero outside 0 … T-1)
    n_b, n_t, n_c = x.shape
    taps = wt.shape[0]
    n_out = out.shape[1]
    live = _live_taps(wt)
    for b in numba.prange(n_b):
        for t in range(n_out):
            row = out[b, t]
            row[:] = 0
            for k in range(max(0, left - t), min(taps, n_t + left - t)):
                if live[k]:
                    w = wt[k]
                    src = x[b, t + k - left]
                    for c in range(n_c):
                        row[c] += w[c] * src[c]


@numba.njit(parallel=True, cache=True)
def backward_kernel(x, wt, grad, left, want_x, gx, gw_parts):
    # gx[b, s, c] = Σ_k wt[k, c] · grad[b, s + left - k, c];
    # gw_parts[p, k, c] = Σ_{b of part p, t} grad[b, t, c] · x[b, t + k - left, c].
    n_b, n_t, n_c = x.shape
    taps = wt.shape[0]
    n_out = grad.shape[1]
    parts = gw_parts.shape[0]
    live = _live_taps(wt)
    for p in numba.prange(parts):
        gw = gw_parts[p]
        gw[:] = 0
        for b in range(p * n_b // parts, (p + 1) * n_b // parts):
            if want_x:
                gx[b] = 0
            for t in range(n_out):
                g = grad[b, t]
                for k in range(max(0, left - t), min(taps, n_t + left - t)):
                    s = t + k - left
                    src = x[b, s]
                    acc = gw[k]
                    for c in range(n_c):
                        acc[c] += g[c] * src[c]
                    if want_x and live[k]:
                        w = wt[k]
                        dst = gx[b, s]
                        for c in range(n_c):
                            dst[c] += w[c] * g[c]


def channel_delay_forward(x: Tensor, kernel: Tensor, left: int, right: int) -> Tensor:
    taps = kernel.shape[1]
    out = x.new_empty(x.shape[0], x.shape[1] + left + right - taps + 1, x.shape[2])
    forward_kernel(_np(x), _np(kernel.t().contiguous()), left, _np(out))
    return out


def channel_delay_backward(x: Tensor, kernel: Tensor, grad: Tensor, left: int, right: int,
                           want_x: bool, want_kernel: bool) -> tuple[Tensor | None, Tensor | None]:
    # One pass computes both gradients (the kernel's is needed whenever positions are learned).
    del right, want_kernel  # the output length fixes the right padding; the kernel's is cheap
    parts = max(1, min(numba.get_num_threads(), x.shape[0]))
    gx = torch.empty_like(x) if want_x else x.new_empty(0, 0, 0)
    gw_parts = x.new_empty(parts, kernel.shape[1], kernel.shape[0])
    backward_kernel(_np(x), _np(kernel.t().contiguous()), _np(grad), left, want_x, _np(gx),
                    _np(gw_parts))
    return (gx if want_x else None), gw_parts.sum(0).t()

"""The per-channel delay of :mod:`spikedelay.ops.channel_delay` in Triton (CUDA; CPU interpreted).

Forward and input gradient are one kernel, a correlation over time with a shift: one program
per sample, block of steps and block of channels holds a (steps × channels) tile and adds one
shifted, masked input tile per tap (the padding is never materialised). The input gradient is
the same correlation of the output gradient with the kernel flipped in time. The kernel
gradient is a partial sum per sample and tap (one program per tap, block of channels and
sample), added by torch over the samples in a fixed order: deterministic, no atomics.
"""

import triton
import triton.language as tl
from torch import Tensor

STEP_BLOCK = 32
CHANNEL_BLOCK = 64


@triton.jit
def _correlate_kernel(x_ptr, w_ptr, out_ptr, n_in, n_out, channels, taps, left,
                      TB: tl.constexpr, CB: tl.constexpr):
    # out[b, t, c] = Σ_k w[k, c] · x[b, t + k - left, c]  (x zero outside 0 … n_in-1)
    b = tl.program_id(0)
    t = tl.program_id(1) * TB + tl.arange(0, TB)
    c = tl.program_id(2) * CB + tl.arange(0, CB)
    keep_c = c < channels
    acc = tl.zeros((TB, CB), dtype=x_ptr.dtype.element_ty)
    for k in range(0, taps):
        w = tl.load(w_ptr + k * channels + c, mask=keep_c, other=0.0)
        s = t + k - left
        keep = ((s >= 0) & (s < n_in))[:, None] & keep_c[None, :]
        src = tl.load(x_ptr + (b * n_in + s)[:, None] * channels + c[None, :], mask=keep,
                      other=0.0)
        acc += w[None, :] * src
    tl.store(out_ptr + (b * n_out + t)[:, None] * channels + c[None, :], acc,
             mask=(t < n_out)[:, None] & keep_c[None, :])


@triton.jit
def _kernel_grad_kernel(x_ptr, g_ptr, part_ptr, n_in, n_out, channels, taps, left,
                        TB: tl.constexpr, CB: tl.constexpr):
    # part[b, k, c] = Σ_t g[b, t, c] · x[b, t + k - left, c]
    k = tl.program_id(0)
    c = tl.program_id(1) * CB + tl.arange(0, CB)
    b = tl.program_id(2)
    keep_c = c < channels
    acc = tl.zeros((TB, CB), dtype=x_ptr.dtype.element_ty)
    for t0 in range(0, n_out, TB):
        t = t0 + tl.arange(0, TB)
        s = t + k - left
        keep_t = (t < n_out) & (s >= 0) & (s < n_in)
        keep = keep_t[:, None] & keep_c[None, :]
        g = tl.load(g_ptr + (b * n_out + t)[:, None] * channels + c[None, :], mask=keep,
                    other=0.0)
        src = tl.load(x_ptr + (b * n_in + s)[:, None] * channels + c[None, :], mask=keep,
                      other=0.0)
        acc += g * src
    tl.store(part_ptr + (b * taps + k) * channels + c, tl.sum(acc, axis=0), mask=keep_c)


def _correlate(x: Tensor, wt: Tensor, left: int, n_out: int) -> Tensor:
    n_b, n_in, channels = x.shape
    out = x.new_empty(n_b, n_out, channels)
    grid = (n_b, triton.cdiv(n_out, STEP_BLOCK), triton.cdiv(channels, CHANNEL_BLOCK))
    _correlate_kernel[grid](x, wt, out, n_in, n_out, channels, wt.shape[0], left,
                            TB=STEP_BLOCK, CB=CHANNEL_BLOCK)
    return out


def channel_delay_forward(x: Tensor, kernel: Tensor, left: int, right: int) -> Tensor:
    n_out = x.shape[1] + left + right - kernel.shape[1] + 1
    return _correlate(x, kernel.t().contiguous(), left, n_out)


def channel_delay_backward(x: Tensor, kernel: Tensor, grad: Tensor, left: int, right: int,
                           want_x: bool, want_kernel: bool) -> tuple[Tensor | None, Tensor | None]:
    del right  # the output gradient's length fixes it
    taps = kernel.shape[1]
    grad_x = grad_kernel = None
    if want_x:  # the flipped kernel, shifted by K-1-left
        grad_x = _correlate(grad, kernel.flip(1).t().contiguous(), taps - 1 - left, x.shape[1])
    if want_kernel:
        n_b, n_in, channels = x.shape
        part = x.new_empty(n_b, taps, channels)
        grid = (taps, triton.cdiv(channels, CHANNEL_BLOCK), n_b)
        _kernel_grad_kernel[grid](x, grad, part, n_in, grad.shape[1], channels, taps, left,
                                  TB=STEP_BLOCK, CB=CHANNEL_BLOCK)
        grad_kernel = part.sum(0).t()
    return grad_x, grad_kernel

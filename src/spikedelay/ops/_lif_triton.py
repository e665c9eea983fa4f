"""LIF / LI kernels of :mod:`spikedelay.ops.lif` in Triton (CUDA; CPU under its interpreter).

One program per sample and block of channels walks the time axis, keeping the membrane in
registers: one launch per sequence instead of ~30 torch ops per step. ``div_exact``
(IEEE division; Triton's ``/`` on float32 is an approximation on GPUs) keeps the charge
``v - v/τ + x`` bit for bit equal to the numba and torch kernels, so the spikes are too.
"""

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from spikedelay.ops._triton_common import TIME_LOOP_WARPS, channel_block, constants


@triton.jit
def div_exact(a, b):
    """IEEE-rounded ``a / b``: ``div_rn`` for float32 (float64 division is exact already)."""
    if a.dtype == tl.float32:
        return tl.math.div_rn(a, b)
    else:
        return a / b


@triton.jit
def _lif_forward_kernel(x_ptr, h_ptr, s_ptr, p_ptr, steps, channels, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    keep = c < channels
    tau = tl.load(p_ptr)
    threshold = tl.load(p_ptr + 1)
    base = b * steps * channels + c
    v = tl.zeros((BLOCK,), dtype=x_ptr.dtype.element_ty)
    for t in range(0, steps):
        x = tl.load(x_ptr + base + t * channels, mask=keep, other=0.0)
        h = v - div_exact(v, tau) + x
        spike = h - threshold >= 0
        tl.store(h_ptr + base + t * channels, h, mask=keep)
        tl.store(s_ptr + base + t * channels, tl.where(spike, 1.0, 0.0).to(h.dtype), mask=keep)
        v = tl.where(spike, 0.0, h).to(h.dtype)


@triton.jit
def _lif_backward_kernel(gs_ptr, h_ptr, gx_ptr, p_ptr, steps, channels, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    keep = c < channels
    tau = tl.load(p_ptr)
    threshold = tl.load(p_ptr + 1)
    half_alpha = tl.load(p_ptr + 2)
    slope = tl.load(p_ptr + 3)
    base = b * steps * channels + c
    g_next = tl.zeros((BLOCK,), dtype=h_ptr.dtype.element_ty)
    for i in range(0, steps):
        t = steps - 1 - i
        u = tl.load(h_ptr + base + t * channels, mask=keep, other=0.0) - threshold
        z = slope * u
        g = tl.load(gs_ptr + base + t * channels, mask=keep, other=0.0) * div_exact(
            half_alpha, 1.0 + z * z)
        g = tl.where(u < 0, g + (g_next - div_exact(g_next, tau)), g)
        tl.store(gx_ptr + base + t * channels, g, mask=keep)
        g_next = g


@triton.jit
def _li_forward_kernel(x_ptr, v_ptr, p_ptr, steps, channels, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    keep = c < channels
    tau = tl.load(p_ptr)
    base = b * steps * channels + c
    v = tl.zeros((BLOCK,), dtype=x_ptr.dtype.element_ty)
    for t in range(0, steps):
        v = v - div_exact(v, tau) + tl.load(x_ptr + base + t * channels, mask=keep,
                                                   other=0.0)
        tl.store(v_ptr + base + t * channels, v, mask=keep)


@triton.jit
def _li_backward_kernel(gv_ptr, gx_ptr, p_ptr, steps, channels, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    keep = c < channels
    tau = tl.load(p_ptr)
    base = b * steps * channels + c
    g = tl.zeros((BLOCK,), dtype=gv_ptr.dtype.element_ty)
    for i in range(0, steps):
        t = steps - 1 - i
        g = tl.load(gv_ptr + base + t * channels, mask=keep, other=0.0) + (
            g - div_exact(g, tau))
        tl.store(gx_ptr + base + t * channels, g, mask=keep)


def _grid(x: Tensor) -> tuple[tuple[int, int], int]:
    block = channel_block(x.shape[2])
    return (x.shape[0], triton.cdiv(x.shape[2], block)), block


def lif_forward(x: Tensor, tau: float, threshold: float) -> tuple[Tensor, Tensor]:
    h, s = torch.empty_like(x), torch.empty_like(x)
    if x.numel():
        grid, block = _grid(x)
        _lif_forward_kernel[grid](x, h, s, constants(x, tau, threshold), x.shape[1], x.shape[2],
                                  BLOCK=block, num_warps=TIME_LOOP_WARPS)
    return h, s


def lif_backward(grad_s: Tensor, h: Tensor, tau: float, threshold: float, alpha: float) -> Tensor:
    grad_x = torch.empty_like(h)
    if h.numel():
        grid, block = _grid(h)
        p = constants(h, tau, threshold, alpha / 2.0, math.pi / 2.0 * alpha)
        _lif_backward_kernel[grid](grad_s, h, grad_x, p, h.shape[1], h.shape[2], BLOCK=block,
                                   num_warps=TIME_LOOP_WARPS)
    return grad_x


def li_forward(x: Tensor, tau: float) -> Tensor:
    v = torch.empty_like(x)
    if x.numel():
        grid, block = _grid(x)
        _li_forward_kernel[grid](x, v, constants(x, tau), x.shape[1], x.shape[2], BLOCK=block,
                                 num_warps=TIME_LOOP_WARPS)
    return v


def li_backward(grad_v: Tensor, tau: float) -> Tensor:
    grad_x = torch.empty_like(grad_v)
    if grad_v.numel():
        grid, block = _grid(grad_v)
        _li_backward_kernel[grid](grad_v, grad_x, constants(grad_v, tau), grad_v.shape[1],
                                  grad_v.shape[2], BLOCK=block, num_warps=TIME_LOOP_WARPS)
    return grad_x

"""Masked BatchNorm (→ LIF) of :mod:`spikedelay.ops.batchnorm` in Triton (CUDA; CPU interpreted).

The statistics are sums over (batch × time) rows: each program reduces a tile of ``ROWS`` rows ×
a block of channels to one float64 partial sum per channel, and torch adds the partials in a
fixed order (deterministic, no atomics). BatchNorm → LIF walks time per sample and block of
channels as :mod:`._lif_triton` does; its backward first recomputes the LIF charge into the
gradient buffer, then runs the LIF recursion backwards over it, then applies the BatchNorm
input gradient in place. Partial sums in float64, as in the numba kernels.
"""

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from spikedelay.ops._lif_triton import div_exact
from spikedelay.ops._triton_common import TIME_LOOP_WARPS, channel_block, constants

ROWS = 32  # (batch × time) rows per program of the reductions


@triton.jit
def _masked_sum_kernel(x_ptr, mask_ptr, mean_ptr, part_ptr, rows, channels, CENTRED: tl.constexpr,
                       ROWS: tl.constexpr, BLOCK: tl.constexpr):
    # part[program row block, c] = Σ_valid rows x (or (x - mean)², CENTRED), in float64
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    valid = (r < rows) & (tl.load(mask_ptr + r, mask=r < rows, other=0) != 0)
    keep = valid[:, None] & (c < channels)[None, :]
    x = tl.load(x_ptr + r[:, None] * channels + c[None, :], mask=keep, other=0.0)
    if CENTRED:
        mean = tl.load(mean_ptr + c, mask=c < channels, other=0.0)
        d = (x - mean[None, :]).to(tl.float64)
        v = d * d
    else:
        v = x.to(tl.float64)
    v = tl.where(keep, v, 0.0)
    tl.store(part_ptr + tl.program_id(0) * channels + c, tl.sum(v, axis=0), mask=c < channels)


@triton.jit
def _grad_sums_kernel(g_ptr, x_ptr, mean_ptr, rstd_ptr, part_g_ptr, part_gx_ptr, rows, channels,
                      ROWS: tl.constexpr, BLOCK: tl.constexpr):
    # partial Σ g and Σ g·x̂ over every row (padded ones too), in float64
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    keep = (r < rows)[:, None] & (c < channels)[None, :]
    offs = r[:, None] * channels + c[None, :]
    g = tl.load(g_ptr + offs, mask=keep, other=0.0)
    mean = tl.load(mean_ptr + c, mask=c < channels, other=0.0)
    rstd = tl.load(rstd_ptr + c, mask=c < channels, other=0.0)
    xh = (tl.load(x_ptr + offs, mask=keep, other=0.0) - mean[None, :]) * rstd[None, :]
    out = tl.program_id(0) * channels + c
    tl.store(part_g_ptr + out, tl.sum(g.to(tl.float64), axis=0), mask=c < channels)
    tl.store(part_gx_ptr + out, tl.sum((g * xh).to(tl.float64), axis=0), mask=c < channels)


@triton.jit
def _input_grad_kernel(g_ptr, x_ptr, mask_ptr, mean_ptr, rstd_ptr, scale_ptr, sg_ptr, sgx_ptr,
                       out_ptr, rows, channels, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    # ∂L/∂x = γ/√(σ² + ε) · (g - [valid] · (mean g + x̂ · mean g x̂)); out may be g (in place)
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    cm = c < channels
    keep = (r < rows)[:, None] & cm[None, :]
    valid = tl.load(mask_ptr + r, mask=r < rows, other=0) != 0
    offs = r[:, None] * channels + c[None, :]
    g = tl.load(g_ptr + offs, mask=keep, other=0.0)
    mean = tl.load(mean_ptr + c, mask=cm, other=0.0)
    rstd = tl.load(rstd_ptr + c, mask=cm, other=0.0)
    scale = tl.load(scale_ptr + c, mask=cm, other=0.0)
    s_g = tl.load(sg_ptr + c, mask=cm, other=0.0)
    s_gx = tl.load(sgx_ptr + c, mask=cm, other=0.0)
    xh = (tl.load(x_ptr + offs, mask=keep, other=0.0) - mean[None, :]) * rstd[None, :]
    centred = g - s_g[None, :] - xh * s_gx[None, :]
    out = scale[None, :] * tl.where(valid[:, None], centred, g)
    tl.store(out_ptr + offs, out, mask=keep)


@triton.jit
def _bn_lif_forward_kernel(x_ptr, mean_ptr, scale_ptr, bias_ptr, p_ptr, s_ptr, steps, channels,
                           BLOCK: tl.constexpr):
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    cm = c < channels
    tau = tl.load(p_ptr)
    threshold = tl.load(p_ptr + 1)
    mean = tl.load(mean_ptr + c, mask=cm, other=0.0)
    scale = tl.load(scale_ptr + c, mask=cm, other=0.0)
    bias = tl.load(bias_ptr + c, mask=cm, other=0.0)
    base = b * steps * channels + c
    v = tl.zeros((BLOCK,), dtype=x_ptr.dtype.element_ty)
    for t in range(0, steps):
        z = (tl.load(x_ptr + base + t * channels, mask=cm, other=0.0) - mean) * scale + bias
        h = v - div_exact(v, tau) + z
        spike = h - threshold >= 0
        tl.store(s_ptr + base + t * channels, tl.where(spike, 1.0, 0.0).to(h.dtype), mask=cm)
        v = tl.where(spike, 0.0, h).to(h.dtype)


@triton.jit
def _bn_lif_backward_kernel(gs_ptr, x_ptr, mean_ptr, rstd_ptr, scale_ptr, bias_ptr, p_ptr, gz_ptr,
                            part_g_ptr, part_gx_ptr, steps, channels, BLOCK: tl.constexpr):
    # gz ← ∂L/∂z (z the BatchNorm output), and per-sample partial Σ gz, Σ gz·x̂ in float64
    b = tl.program_id(0)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    cm = c < channels
    tau = tl.load(p_ptr)
    threshold = tl.load(p_ptr + 1)
    half_alpha = tl.load(p_ptr + 2)
    slope = tl.load(p_ptr + 3)
    mean = tl.load(mean_ptr + c, mask=cm, other=0.0)
    rstd = tl.load(rstd_ptr + c, mask=cm, other=0.0)
    scale = tl.load(scale_ptr + c, mask=cm, other=0.0)
    bias = tl.load(bias_ptr + c, mask=cm, other=0.0)
    base = b * steps * channels + c
    v = tl.zeros((BLOCK,), dtype=x_ptr.dtype.element_ty)
    for t in range(0, steps):  # recompute the charge H, parked in the gradient buffer
        z = (tl.load(x_ptr + base + t * channels, mask=cm, other=0.0) - mean) * scale + bias
        h = v - div_exact(v, tau) + z
        tl.store(gz_ptr + base + t * channels, h, mask=cm)
        v = tl.where(h - threshold >= 0, 0.0, h).to(h.dtype)
    g_next = tl.zeros((BLOCK,), dtype=x_ptr.dtype.element_ty)
    sum_g = tl.zeros((BLOCK,), dtype=tl.float64)
    sum_gx = tl.zeros((BLOCK,), dtype=tl.float64)
    for i in range(0, steps):
        t = steps - 1 - i
        u = tl.load(gz_ptr + base + t * channels, mask=cm, other=0.0) - threshold
        w = slope * u
        g = tl.load(gs_ptr + base + t * channels, mask=cm, other=0.0) * div_exact(
            half_alpha, 1.0 + w * w)
        g = tl.where(u < 0, g + (g_next - div_exact(g_next, tau)), g)
        g_next = g
        tl.store(gz_ptr + base + t * channels, g, mask=cm)
        xh = (tl.load(x_ptr + base + t * channels, mask=cm, other=0.0) - mean) * rstd
        sum_g += g.to(tl.float64)
        sum_gx += (g * xh).to(tl.float64)
    tl.store(part_g_ptr + b * channels + c, sum_g, mask=cm)
    tl.store(part_gx_ptr + b * channels + c, sum_gx, mask=cm)


def _tiles(rows: int, channels: int) -> tuple[tuple[int, int], int]:
    block = channel_block(channels)
    return (triton.cdiv(rows, ROWS), triton.cdiv(channels, block)), block


def stats(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean (x's dtype), biased variance (float64) and count (float64 tensor: no host sync)."""
    batch, steps, channels = x.shape
    rows = batch * steps
    grid, block = _tiles(rows, channels)
    part = torch.empty(grid[0], channels, dtype=torch.float64, device=x.device)
    n = mask.sum(dtype=torch.float64)
    _masked_sum_kernel[grid](x, mask, x, part, rows, channels, CENTRED=False, ROWS=ROWS,
                             BLOCK=block)
    mean = (part.sum(0) / n).to(x.dtype)
    _masked_sum_kernel[grid](x, mask, mean, part, rows, channels, CENTRED=True, ROWS=ROWS,
                             BLOCK=block)
    return mean, part.sum(0) / n, n


def _input_grad(grad: Tensor, x: Tensor, mask: Tensor, mean: Tensor, rstd: Tensor, scale: Tensor,
                sum_g: Tensor, sum_gx: Tensor, n: Tensor, out: Tensor) -> Tensor:
    batch, steps, channels = x.shape
    grid, block = _tiles(batch * steps, channels)
    s_g, s_gx = (sum_g / n).to(x.dtype), (sum_gx / n).to(x.dtype)
    _input_grad_kernel[grid](grad, x, mask, mean, rstd, scale, s_g, s_gx, out, batch * steps,
                             channels, ROWS=ROWS, BLOCK=block)
    return out


def masked_bn_forward(x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor,
                      eps: float) -> tuple[Tensor, Tensor, Tensor]:
    mean, var, _ = stats(x, mask)
    scale = torch.rsqrt(var + eps).to(x.dtype) * weight.detach()
    y = torch.addcmul(bias.detach(), x - mean, scale)
    return y, mean, var.to(x.dtype)


def masked_bn_backward(grad: Tensor, x: Tensor, mask: Tensor, weight: Tensor, mean: Tensor,
                       var: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    batch, steps, channels = x.shape
    rstd = torch.rsqrt(var.double() + eps).to(x.dtype)
    grid, block = _tiles(batch * steps, channels)
    part_g = torch.empty(grid[0], channels, dtype=torch.float64, device=x.device)
    part_gx = torch.empty_like(part_g)
    _grad_sums_kernel[grid](grad, x, mean, rstd, part_g, part_gx, batch * steps, channels,
                            ROWS=ROWS, BLOCK=block)
    sum_g, sum_gx = part_g.sum(0), part_gx.sum(0)
    n = mask.sum(dtype=torch.float64)
    grad_x = _input_grad(grad, x, mask, mean, rstd, weight * rstd, sum_g, sum_gx, n,
                         torch.empty_like(x))
    return grad_x, sum_gx.to(weight.dtype), sum_g.to(weight.dtype)


def bn_lif_forward(x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor, eps: float, tau: float,
                   threshold: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    batch, steps, channels = x.shape
    mean, var, n = stats(x, mask)
    rstd = torch.rsqrt(var + eps).to(x.dtype)
    spikes = torch.empty_like(x)
    block = channel_block(channels)
    _bn_lif_forward_kernel[(batch, triton.cdiv(channels, block))](
        x, mean, weight * rstd, bias, constants(x, tau, threshold), spikes, steps, channels,
        BLOCK=block, num_warps=TIME_LOOP_WARPS)
    return spikes, mean, var.to(x.dtype), rstd, n


def bn_lif_backward(grad_s: Tensor, x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor,
                    mean: Tensor, rstd: Tensor, tau: float, threshold: float, alpha: float,
                    n: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    batch, steps, channels = x.shape
    block = channel_block(channels)
    scale = weight.detach() * rstd
    grad_x = torch.empty_like(x)
    part_g = torch.empty(batch, channels, dtype=torch.float64, device=x.device)
    part_gx = torch.empty_like(part_g)
    p = constants(x, tau, threshold, alpha / 2.0, math.pi / 2.0 * alpha)
    _bn_lif_backward_kernel[(batch, triton.cdiv(channels, block))](
        grad_s, x, mean, rstd, scale, bias.detach(), p, grad_x, part_g, part_gx, steps, channels,
        BLOCK=block, num_warps=TIME_LOOP_WARPS)
    sum_g, sum_gx = part_g.sum(0), part_gx.sum(0)
    _input_grad(grad_x, x, mask, mean, rstd, scale, sum_g, sum_gx, n, grad_x)  # in place
    return grad_x, sum_gx.to(weight.dtype), sum_g.to(weight.dtype)

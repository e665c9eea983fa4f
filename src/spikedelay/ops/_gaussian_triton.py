"""The Gaussian kernel builder of :mod:`spikedelay.ops.gaussian` in Triton (CUDA; CPU interpreted).

One program per block of synapses (input feature ``i``, output ``o``, numbered ``i·out + o`` so
that the tap-major (K, in, out) writes of a block are contiguous) holds a (synapses × taps)
tile: every bump is evaluated directly (``exp`` is cheap on a GPU), normalised, and accumulated
over the copies; the backward recomputes the same tile and reduces it over the taps.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

from spikedelay.ops._gaussian_torch import tap_floor
from spikedelay.ops._triton_common import constants

SYNAPSES = 32  # synapses per program


@triton.jit
def _bump(position, half, sigma, eps, floor, k, taps):
    # g (S, KP) over the taps (0 past the last tap and below ``floor``, as in the numba
    # kernels), G = Σ g + eps (S,), and k - c (S, KP)
    d = k[None, :].to(position.dtype) - (position + half)[:, None]
    z = d / sigma
    g = tl.exp(-0.5 * z * z)
    g = tl.where((k < taps)[None, :] & (g >= floor), g, 0.0)
    return g, tl.sum(g, axis=1) + eps, d


@triton.jit
def _forward_kernel(w_ptr, p_ptr, c_ptr, out_ptr, n_out, n_in, copies, taps,
                    SYN: tl.constexpr, KP: tl.constexpr):
    s = tl.program_id(0) * SYN + tl.arange(0, SYN)  # s = i·out + o
    keep = s < n_out * n_in
    i = s // n_out
    o = s - i * n_out
    k = tl.arange(0, KP)
    sigma = tl.load(c_ptr)
    eps = tl.load(c_ptr + 1)
    floor = tl.load(c_ptr + 2)
    tiny = tl.load(c_ptr + 3)
    half = taps // 2
    acc = tl.zeros((SYN, KP), dtype=w_ptr.dtype.element_ty)
    for c in range(0, copies):
        src = (o * n_in + i) * copies + c
        w = tl.load(w_ptr + src, mask=keep, other=0.0)
        pos = tl.load(p_ptr + src, mask=keep, other=0.0)
        g, total, _ = _bump(pos, half, sigma, eps, floor, k, taps)
        acc += w[:, None] * (g / total[:, None])
    acc = tl.where(tl.abs(acc) >= tiny, acc, 0.0)
    dst = k[None, :] * (n_out * n_in) + s[:, None]
    tl.store(out_ptr + dst, acc, mask=keep[:, None] & (k < taps)[None, :])


@triton.jit
def _backward_kernel(w_ptr, p_ptr, c_ptr, g_ptr, gw_ptr, gp_ptr, n_out, n_in, copies, taps,
                     SYN: tl.constexpr, KP: tl.constexpr):
    s = tl.program_id(0) * SYN + tl.arange(0, SYN)
    keep = s < n_out * n_in
    i = s // n_out
    o = s - i * n_out
    k = tl.arange(0, KP)
    sigma = tl.load(c_ptr)
    eps = tl.load(c_ptr + 1)
    floor = tl.load(c_ptr + 2)
    half = taps // 2
    delta = tl.load(g_ptr + k[None, :] * (n_out * n_in) + s[:, None],
                    mask=keep[:, None] & (k < taps)[None, :], other=0.0)
    for c in range(0, copies):
        src = (o * n_in + i) * copies + c
        w = tl.load(w_ptr + src, mask=keep, other=0.0)
        pos = tl.load(p_ptr + src, mask=keep, other=0.0)
        g, total, d = _bump(pos, half, sigma, eps, floor, k, taps)
        gd = delta * g
        a = tl.sum(gd, axis=1)
        b = tl.sum(gd * d, axis=1)
        m = tl.sum(g * d, axis=1)
        tl.store(gw_ptr + src, a / total, mask=keep)
        slope = b / total - a * m / (total * total)
        tl.store(gp_ptr + src, w / (sigma * sigma) * slope, mask=keep)


def _constants(weight: Tensor, sigma: float, eps: float) -> Tensor:
    """σ, eps, the bumps' tap floor and the smallest normal number of the dtype."""
    return constants(weight, sigma, eps, tap_floor(weight.dtype), torch.finfo(weight.dtype).tiny)


def _geometry(weight: Tensor, taps: int) -> tuple[tuple[int], int]:
    n_out, n_in, _ = weight.shape
    return (triton.cdiv(n_out * n_in, SYNAPSES),), max(1, 1 << max(0, taps - 1).bit_length())


def gaussian_forward(weight: Tensor, position: Tensor, sigma: float, taps: int,
                     eps: float) -> Tensor:
    n_out, n_in, copies = weight.shape
    out = weight.new_empty(taps, n_in, n_out)
    grid, kp = _geometry(weight, taps)
    _forward_kernel[grid](weight, position, _constants(weight, sigma, eps), out, n_out, n_in,
                          copies, taps, SYN=SYNAPSES, KP=kp)
    return out


def gaussian_backward(weight: Tensor, position: Tensor, sigma: float, grad_tm: Tensor,
                      eps: float) -> tuple[Tensor, Tensor]:
    n_out, n_in, copies = weight.shape
    taps = grad_tm.shape[0]
    grad_w, grad_p = torch.empty_like(weight), torch.empty_like(position)
    grid, kp = _geometry(weight, taps)
    _backward_kernel[grid](weight, position, _constants(weight, sigma, eps), grad_tm, grad_w,
                           grad_p, n_out, n_in, copies, taps, SYN=SYNAPSES, KP=kp)
    return grad_w, grad_p

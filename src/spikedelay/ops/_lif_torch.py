"""LIF / LI of :mod:`spikedelay.ops.lif` in plain torch ops: any device and dtype, the reference.

A loop over time of in-place-free torch ops under ``no_grad`` (the autograd Function supplies
the closed-form backward), same arithmetic order as the numba and Triton kernels.
"""

import math

import torch
from torch import Tensor


@torch.no_grad()
def lif_forward(x: Tensor, tau: float, threshold: float) -> tuple[Tensor, Tensor]:
    h_all = torch.empty_like(x)
    s_all = torch.empty_like(x)
    v = torch.zeros_like(x[:, 0])
    for t in range(x.shape[1]):
        h = v - v / tau + x[:, t]
        s = (h - threshold >= 0).to(x.dtype)
        h_all[:, t] = h
        s_all[:, t] = s
        v = h * (1.0 - s)
    return h_all, s_all


@torch.no_grad()
def lif_backward(grad_s: Tensor, h: Tensor, tau: float, threshold: float, alpha: float) -> Tensor:
    grad_x = torch.empty_like(h)
    g_next = torch.zeros_like(h[:, 0])
    for t in range(h.shape[1] - 1, -1, -1):
        u = h[:, t] - threshold
        g = grad_s[:, t] * ((alpha / 2) / (1 + (math.pi / 2 * alpha * u) ** 2))
        g = g + (g_next - g_next / tau) * (u < 0).to(h.dtype)
        grad_x[:, t] = g
        g_next = g
    return grad_x


@torch.no_grad()
def li_forward(x: Tensor, tau: float) -> Tensor:
    v_all = torch.empty_like(x)
    v = torch.zeros_like(x[:, 0])
    for t in range(x.shape[1]):
        v = v - v / tau + x[:, t]
        v_all[:, t] = v
    return v_all


@torch.no_grad()
def li_backward(grad_v: Tensor, tau: float) -> Tensor:
    grad_x = torch.empty_like(grad_v)
    g_next = torch.zeros_like(grad_v[:, 0])
    for t in range(grad_v.shape[1] - 1, -1, -1):
        g_next = grad_v[:, t] + (g_next - g_next / tau)
        grad_x[:, t] = g_next
    return grad_x

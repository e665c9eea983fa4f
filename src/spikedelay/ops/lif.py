"""Fused multi-step LIF and leaky-integrator (LI) sequences with an analytic backward.

Same maths as :func:`spikedelay.neurons.lif_sequence` / :func:`~spikedelay.neurons.li_sequence`
(SpikingJelly ``LIFNode(decay_input=False, v_reset=0, detach_reset=True)``, ArcTan surrogate)::

    H[t] = V[t-1] - V[t-1]/τ + X[t],   S[t] = Θ(H[t] - ϑ),   V[t] = H[t]·(1 - S[t])

Autograd through a Python loop keeps ~5 tensors per step and walks T·5 graph nodes backwards;
SpikingJelly's loop also indexes ``x_seq[t]``, whose backward writes a zero tensor of the whole
sequence per step (O(T²) memory traffic). Here the forward stores only ``H`` (B, T, C) and the
backward is the closed-form recursion (``β = 1 - 1/τ``)::

    gH[t] = gS[t]·σ'(H[t] - ϑ) + β·(1 - S[t])·gH[t+1],     gX[t] = gH[t]

(for the LI readout, ``gH[t] = gV[t] + β·gH[t+1]``). The loops run in the backend
:mod:`spikedelay.ops.dispatch` picks: numba on CPU (``_lif_numba``), Triton on CUDA
(``_lif_triton``), or a loop of torch ops (``_lif_torch``). Each evaluates ``v - v/τ + x`` in the
tensor's dtype in the reference's order, so spikes match it bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikedelay.ops import dispatch


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, tau: float, threshold: float, alpha: float) -> Tensor:
        x = x.contiguous()
        impl = dispatch.select("lif", x)
        h, s = impl.lif_forward(x, tau, threshold)
        ctx.save_for_backward(h)
        ctx.impl = impl  # the backward runs in the forward's backend
        ctx.constants = (tau, threshold, alpha)
        return s

    @staticmethod
    def backward(ctx, grad_s: Tensor):
        (h,) = ctx.saved_tensors
        tau, threshold, alpha = ctx.constants
        grad_x = ctx.impl.lif_backward(grad_s.contiguous(), h, tau, threshold, alpha)
        return grad_x, None, None, None


class _FusedLI(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, tau: float) -> Tensor:
        x = x.contiguous()
        ctx.impl = dispatch.select("lif", x)
        ctx.tau = tau
        return ctx.impl.li_forward(x, tau)

    @staticmethod
    def backward(ctx, grad_v: Tensor):
        return ctx.impl.li_backward(grad_v.contiguous(), ctx.tau), None


def fused_lif_sequence(
    x: Tensor, tau: float, threshold: float = 1.0, alpha: float = 5.0
) -> Tensor:
    """LIF spikes from ``V = 0`` with the ArcTan surrogate backward, fused over time.

    Shapes: x (B, T, C) → spikes (B, T, C) in {0, 1} (same dtype). Memory kept for backward:
    one (B, T, C) tensor.
    """
    if x.dim() != 3:
        raise ValueError(f"fused_lif_sequence expects (B, T, C), got shape {tuple(x.shape)}")
    return _FusedLIF.apply(x, float(tau), float(threshold), float(alpha))


def fused_li_sequence(x: Tensor, tau: float) -> Tensor:
    """Leaky-integrator membrane potential ``V[t] = V[t-1] - V[t-1]/τ + X[t]`` from ``V = 0``.

    Shapes: x (B, T, C) → v (B, T, C). Nothing is kept for backward.
    """
    if x.dim() != 3:
        raise ValueError(f"fused_li_sequence expects (B, T, C), got shape {tuple(x.shape)}")
    return _FusedLI.apply(x, float(tau))


def warmup() -> None:
    """Compile (or load from numba's cache) the CPU kernels now instead of in the first step."""
    x = torch.zeros(1, 2, 1, requires_grad=True)
    for dtype in (torch.float32,):
        xd = x.detach().to(dtype).requires_grad_()
        (fused_lif_sequence(xd, 2.0).sum() + fused_li_sequence(xd, 2.0).sum()).backward()


__all__ = ["fused_li_sequence", "fused_lif_sequence", "warmup"]

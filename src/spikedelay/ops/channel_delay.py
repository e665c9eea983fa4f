"""Per-channel fractional delay: a depthwise ``(C, K)`` correlation over time, with its backward.

The delay of an axonal or dendritic layer (one learned delay per channel, issue 13)::

    y[b, t', c] = Σ_k kernel[c, k] · xpad[b, t' + k, c]

``xpad`` = ``x`` with ``left`` zero steps before and ``right`` after (the padding is never
materialised by the CPU kernel). ``C·K`` multiply-adds per step: next to the (C, C) linear map
beside it, ~6 % of the arithmetic for C = 512, K = 31 — so it must not cost as much as that map.
Differentiable in ``x`` and ``kernel`` (the positions' gradient reaches the kernel through the
kernel builder, which stays in torch autograd: it is (C, K), tiny). Backends: ``numba`` (CPU),
``triton`` (CUDA; tested in Triton's CPU interpreter, not yet timed on a GPU) and ``torch`` (any
device; torch's depthwise convolution, the reference).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikedelay.ops import dispatch


class _ChannelDelay(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, kernel: Tensor, left: int, right: int) -> Tensor:
        x, kernel = x.contiguous(), kernel.contiguous()
        ctx.impl = dispatch.select("channel_delay", x)
        ctx.save_for_backward(x, kernel)
        ctx.pads = (left, right)
        return ctx.impl.channel_delay_forward(x, kernel, left, right)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, kernel = ctx.saved_tensors
        want_x, want_kernel = ctx.needs_input_grad[:2]
        if not (want_x or want_kernel):
            return None, None, None, None
        grad_x, grad_kernel = ctx.impl.channel_delay_backward(
            x, kernel, grad.contiguous(), *ctx.pads, want_x, want_kernel)
        return (grad_x if want_x else None), (grad_kernel if want_kernel else None), None, None


def channel_delay(x: Tensor, kernel: Tensor, left: int, right: int) -> Tensor:
    """Delay each channel of ``x`` by its own (fractional) kernel.

    Shapes: x (B, T, C), kernel (C, K) → (B, T + left + right - K + 1, C), contiguous; same
    dtype and device for both. ``left, right >= 0``.

    Example (a delay of 2 steps: tap ``K-1-2`` with ``left = K-1``)::

        >>> x = torch.zeros(1, 5, 1); x[0, 0, 0] = 1.0
        >>> channel_delay(x, torch.tensor([[0.0, 1.0, 0.0, 0.0]]), 3, 0)[0, :, 0]
        tensor([0., 0., 1., 0., 0.])
    """
    if x.dim() != 3 or kernel.dim() != 2 or kernel.shape[0] != x.shape[2]:
        raise ValueError(f"channel_delay expects x (B, T, C) and kernel (C, K), got "
                         f"{tuple(x.shape)} and {tuple(kernel.shape)}")
    if left < 0 or right < 0 or x.shape[1] + left + right < kernel.shape[1]:
        raise ValueError(f"padding ({left}, {right}) must be >= 0 and leave at least one output "
                         f"step for T = {x.shape[1]}, K = {kernel.shape[1]}")
    if kernel.dtype != x.dtype or kernel.device != x.device:
        raise ValueError(f"x and kernel must share dtype and device, got {x.dtype}/{x.device} "
                         f"and {kernel.dtype}/{kernel.device}")
    return _ChannelDelay.apply(x, kernel, int(left), int(right))


__all__ = ["channel_delay"]

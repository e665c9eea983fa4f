"""Spike functions with a choice of surrogate derivative: ``atan`` | ``triangle`` | ``slayer``.

``spike(x)`` is the Heaviside ``Θ(x)`` (1 where ``x >= 0``) forward; its backward uses the
surrogate of :mod:`spikedelay.ops.surrogate` (one definition for kernels and modules). The
``atan`` surrogate with ``p1 = α`` is :func:`spikedelay.neurons.spike_fn`'s (same numbers).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikedelay.ops.surrogate import SURROGATES, surrogate_grad


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, kind: str, p1: float, p2: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.args = (kind, p1, p2)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, *ctx.args), None, None, None


def spike(x: Tensor, kind: str = "atan", p1: float = 5.0, p2: float = 0.0) -> Tensor:
    """``Θ(x)`` with the surrogate ``kind``: atan (``p1 = α``), triangle (``p1 = γ``),
    slayer (``p1 = α``, ``p2 = c``)."""
    if kind not in SURROGATES:
        raise ValueError(f"unknown surrogate {kind!r}: use one of {', '.join(SURROGATES)}")
    return _Spike.apply(x, kind, float(p1), float(p2))


__all__ = ["SURROGATES", "spike", "surrogate_grad"]

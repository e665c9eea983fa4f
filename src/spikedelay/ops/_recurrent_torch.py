"""torch backend of the ``recurrent`` op: one step of torch ops per time step, autograd for the
backward. The reference the numba kernels are tested against; runs on any device and dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikedelay.ops.surrogate import surrogate_grad


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kind, p1, p2):
        ctx.save_for_backward(x)
        ctx.args = (kind, p1, p2)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * surrogate_grad(x, *ctx.args), None, None, None


def recurrent_sequence(
    x: Tensor, w_rec: Tensor | None, m: Tensor | None, drop: Tensor | None,
    alpha: Tensor, beta: Tensor, a: Tensor, b: Tensor, *, neuron: str = "lif",
    reset: str = "hard", tau: float = 2.0, q: float = 1.0, threshold: float = 1.0,
    surrogate: str = "atan", p1: float = 5.0, p2: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """The same maths as :func:`spikedelay.ops.recurrent.recurrent_sequence`, one torch step per
    time step (autograd)."""
    batch, steps, n = x.shape
    u = x.new_zeros(batch, n)
    w = x.new_zeros(batch, n)
    hp = x.new_zeros(batch, n)
    sp = x.new_zeros(batch, n)
    spikes: list[Tensor] = []
    membranes: list[Tensor] = []
    for t in range(steps):
        cur = x[:, t]
        if w_rec is not None:
            lags = m.shape[1]
            y = x.new_zeros(batch, n)
            for k in range(1, min(lags - 1, t) + 1):
                y = y + m[:, k] * spikes[t - k]
            r = y @ w_rec.t()
            cur = cur + (r if drop is None else drop * r)
        if neuron == "lif":
            h = u - u / tau + cur
        elif neuron == "adlif":
            w = beta * w + a * hp + b * sp
            h = alpha * u + (1 - alpha) * (cur - w)
        else:
            h = alpha * u + (1 - alpha) * (cur - w)
        s = _Spike.apply(h - threshold, surrogate, p1, p2)
        u = h - threshold * s if reset == "subtract" else h * (1 - s.detach())
        if neuron == "se-adlif":
            w = beta * w + (1 - beta) * q * (a * u + b * s)
        hp, sp = h, s
        spikes.append(s)
        membranes.append(h)
    if not spikes:
        return torch.zeros_like(x), torch.zeros_like(x)
    return torch.stack(spikes, 1), torch.stack(membranes, 1)



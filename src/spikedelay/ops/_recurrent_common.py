"""What the fused backends of the ``recurrent`` op share: how their arguments are encoded, and
the gradients that are sums over time.

``W`` and the lag kernel ``m`` get one tensor op each from the tensors the forward stored and
the adjoints the backward kernel returned, in torch (so on the tensors' device, any backend).
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikedelay.ops.surrogate import SURROGATE_CODES

NEURONS = ("lif", "adlif", "se-adlif")  # the kernels' neuron codes are indices into this


def kernel_arguments(
    x: Tensor, w_rec: Tensor | None, m: Tensor | None, drop: Tensor | None, *, neuron: str,
    reset: str, tau: float, q: float, threshold: float, surrogate: str, p1: float, p2: float,
) -> tuple[Tensor, Tensor, Tensor, tuple]:
    """``(w_rec, m, drop, consts)`` as both fused kernels take them: (1, 1) placeholders for
    ``W`` and ``m`` without recurrence, a dropout mask of ones (in ``x``'s dtype) when none is
    given, and the constants tuple with the neuron, reset and surrogate as codes."""
    batch, _, n = x.shape
    has_rec = w_rec is not None
    if not has_rec:
        w_rec = m = x.new_zeros(1, 1)
    if drop is None:
        drop = x.new_ones(batch, n) if has_rec else x.new_ones(1, 1)
    consts = (NEURONS.index(neuron), reset == "subtract", has_rec, float(tau), float(q),
              float(threshold), SURROGATE_CODES[surrogate], float(p1), float(p2))
    return w_rec, m, drop.to(x.dtype), consts


def lag_grad(gy: Tensor, s: Tensor, lags: int) -> Tensor:
    """``g_m[o, k] = Σ_{b,t} gy[b, t, o] · s[b, t-k, o]`` for ``k = 1 … L-1`` (column 0 is 0)."""
    cols = [torch.zeros_like(gy[0, 0])]
    steps = gy.shape[1]
    for k in range(1, lags):
        if k >= steps:
            cols.append(torch.zeros_like(gy[0, 0]))
        else:
            cols.append((gy[:, k:] * s[:, : steps - k]).sum((0, 1)))
    return torch.stack(cols, dim=1)


def weight_grad(gi: Tensor, drop: Tensor, y: Tensor) -> Tensor:
    """``g_W[i, o] = Σ_{b,t} drop[b, i] · gI[b, t, i] · y[b, t, o]`` (W is (post, pre))."""
    return torch.einsum("bti,bto->io", gi * drop.unsqueeze(1), y)

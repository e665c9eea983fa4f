"""What the fused backends of the ``recurrent`` op share: the gradients that are sums over time.

``W`` and the lag kernel ``m`` get one tensor op each from the tensors the forward stored and
the adjoints the backward kernel returned, in torch (so on the tensors' device, any backend).
"""

from __future__ import annotations

import torch
from torch import Tensor


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

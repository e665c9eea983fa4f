"""The Gaussian kernel builder of :mod:`spikedelay.ops.gaussian` in torch ops: the reference.

Any device and dtype. Materialises the bumps ``g`` (out, in, kc, K) once per call; the closed-form
backward of :mod:`spikedelay.ops.gaussian` with whole-tensor sums over the taps.
"""

import torch
from torch import Tensor

FLOOR_MARGIN = 2.0**64  # binades between the tap floor and the subnormal range


def tap_floor(dtype: torch.dtype) -> float:
    """Bump taps below this are 0: the smallest normal number of ``dtype`` times 2⁶⁴
    (2.2e-19 in float32, 4.1e-289 in float64), so that a tap times a weight or a ratio of the
    numba recurrence (≥ 2⁻⁶⁴ in the recipes) stays a normal number."""
    return torch.finfo(dtype).tiny * FLOOR_MARGIN


def _bumps(position: Tensor, sigma: float, taps: int, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """``g`` (out, in, kc, K), ``G = Σ_k g + eps`` (out, in, kc, 1) and ``k - c`` (same as g).

    Taps below :func:`tap_floor` are 0 (no subnormals, as in the numba and Triton kernels).
    """
    k = torch.arange(taps, device=position.device, dtype=position.dtype)
    d = k - (position + taps // 2).unsqueeze(-1)
    z = d / sigma
    g = torch.exp(-0.5 * z * z)
    g = g.masked_fill_(g < tap_floor(g.dtype), 0.0)
    return g, g.sum(-1, keepdim=True) + eps, d


def _flush(t: Tensor) -> Tensor:
    """``t`` with its subnormal values set to 0 (in place)."""
    return t.masked_fill_(t.abs() < torch.finfo(t.dtype).tiny, 0.0)


@torch.no_grad()
def gaussian_forward(weight: Tensor, position: Tensor, sigma: float, taps: int,
                     eps: float) -> Tensor:
    g, total, _ = _bumps(position, sigma, taps, eps)
    return _flush(torch.einsum("oick,oic->kio", g / total, weight).contiguous())


@torch.no_grad()
def gaussian_backward(weight: Tensor, position: Tensor, sigma: float, grad_tm: Tensor,
                      eps: float) -> tuple[Tensor, Tensor]:
    g, total, d = _bumps(position, sigma, grad_tm.shape[0], eps)
    delta = grad_tm.permute(2, 1, 0).unsqueeze(2)  # (out, in, 1, K)
    a = (delta * g).sum(-1)
    b = (delta * g * d).sum(-1)
    m = (g * d).sum(-1)
    total = total.squeeze(-1)
    grad_p = weight / (sigma * sigma) * (b / total - a * m / (total * total))
    return a / total, grad_p

"""Masked BatchNorm (→ LIF) of :mod:`spikedelay.ops.batchnorm` in torch ops: the reference.

Any device and dtype; the closed-form backward of the module docstring written with whole-tensor
reductions (sums over the batch and time axes), the LIF part from :mod:`._lif_torch`.
"""

import torch
from torch import Tensor

from spikedelay.ops import _lif_torch


def stats(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and biased variance over the valid steps, and their count (a tensor: no sync)."""
    m = mask.to(x.dtype).unsqueeze(-1)
    n = m.sum()
    mean = (x * m).sum((0, 1)) / n
    var = ((x - mean) ** 2 * m).sum((0, 1)) / n
    return mean, var, n


def input_grad(grad: Tensor, x: Tensor, mask: Tensor, weight: Tensor, mean: Tensor,
               rstd: Tensor, n: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
    """``(∂L/∂x, ∂L/∂γ, ∂L/∂β)`` from the gradient ``grad`` of the normalised output."""
    xh = (x - mean) * rstd
    sum_g = grad.sum((0, 1))
    sum_gx = (grad * xh).sum((0, 1))
    valid = mask.to(x.dtype).unsqueeze(-1)
    grad_x = (weight * rstd) * (grad - valid * (sum_g + xh * sum_gx) / n)
    return grad_x, sum_gx.to(weight.dtype), sum_g.to(weight.dtype)


@torch.no_grad()
def masked_bn_forward(x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor,
                      eps: float) -> tuple[Tensor, Tensor, Tensor]:
    mean, var, _ = stats(x, mask)
    y = (x - mean) * (torch.rsqrt(var + eps) * weight) + bias
    return y, mean, var


@torch.no_grad()
def masked_bn_backward(grad: Tensor, x: Tensor, mask: Tensor, weight: Tensor, mean: Tensor,
                       var: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    n = mask.to(x.dtype).sum()
    return input_grad(grad, x, mask, weight, mean, torch.rsqrt(var + eps), n)


@torch.no_grad()
def bn_lif_forward(x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor, eps: float, tau: float,
                   threshold: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    mean, var, n = stats(x, mask)
    rstd = torch.rsqrt(var + eps)
    _, spikes = _lif_torch.lif_forward((x - mean) * (weight * rstd) + bias, tau, threshold)
    return spikes, mean, var, rstd, n


@torch.no_grad()
def bn_lif_backward(grad_s: Tensor, x: Tensor, mask: Tensor, weight: Tensor, bias: Tensor,
                    mean: Tensor, rstd: Tensor, tau: float, threshold: float, alpha: float,
                    n: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
    h, _ = _lif_torch.lif_forward((x - mean) * (weight * rstd) + bias, tau, threshold)
    grad_z = _lif_torch.lif_backward(grad_s, h, tau, threshold, alpha)
    return input_grad(grad_z, x, mask, weight, mean, rstd, n)

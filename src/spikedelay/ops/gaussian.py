"""Fused Gaussian delay-kernel builder (dcls ``version="gauss"``) with a closed-form backward.

Same maths as :func:`spikedelay.delays.gaussian_kernel`: per synapse copy a normalised Gaussian
over the ``K`` taps centred on ``c = p + K//2``, scaled by the weight::

    g_k = exp(-½ ((k - c)/σ)²),   G = Σ_k g_k + 1e-7,   kernel[k] = Σ_copies w · g_k / G

Autograd through the plain version keeps ~6 tensors of (out, in, kc, K) and runs ~25 passes over
them per step. Here the forward writes the kernel once (a block of taps per input feature, so
the tap-major writes are contiguous), the taps of a bump come from a recurrence (4 exps per
synapse instead of K, see ``bump``), and the backward recomputes ``g`` per synapse and
accumulates (``δ_k`` the incoming gradient)::

    ∂L/∂w = A / G,   ∂L/∂p = w/σ² · (Σ_k δ_k g_k (k - c) / G - A · Σ_k g_k (k - c) / G²),
    A = Σ_k δ_k g_k

The kernel is stored tap-major, (K, in, out), and returned as the (out, in, K) view the callers
expect, so that the DFT convolution reads it as a (K, in·out) matrix without a copy.
CPU only (numba); σ is a constant here (the plain version also differentiates σ).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

NORM_EPS = 1e-7  # dcls' epsilon in the normalisation (also spikedelay.delays.NORM_EPS)

_KERNELS: dict[str, object] = {}


def _kernels() -> dict[str, object]:
    if _KERNELS:
        return _KERNELS
    import numba

    @numba.njit(cache=True)
    def bump(centre, sigma, g):  # pragma: no cover - compiled
        # g[k] = exp(-½((k - centre)/σ)²) for every tap; returns Σ g + eps.
        # Why a recurrence: without SVML an exp costs ~10 ns and dominated this kernel. Between
        # neighbouring taps g[k±1] = g[k] · r with r = exp(∓((k - c) ± ½)/σ²), and r itself
        # changes by q = exp(-1/σ²) per tap, so a synapse needs 4 exps instead of K. Walking
        # outward from the tap nearest the centre keeps every ratio ≤ 1 (tails underflow to 0
        # as the direct formula does). Float32 rounding: 1e-7 (σ ≤ 1) to 4e-6 (σ = 100) relative.
        taps = g.shape[0]
        dt = g.dtype.type
        inv_var = dt(1.0) / (sigma * sigma)
        k0 = min(taps - 1, max(0, int(round(centre))))
        d = dt(k0) - centre
        q = math.exp(-inv_var)
        g[k0] = math.exp(dt(-0.5) * d * d * inv_var)
        total = g[k0]
        value = g[k0]
        ratio = math.exp(-(d + dt(0.5)) * inv_var)
        for k in range(k0 + 1, taps):
            value *= ratio
            ratio *= q
            g[k] = value
            total += value
        value = g[k0]
        ratio = math.exp((d - dt(0.5)) * inv_var)
        for k in range(k0 - 1, -1, -1):
            value *= ratio
            ratio *= q
            g[k] = value
            total += value
        return total + dt(NORM_EPS)

    @numba.njit(parallel=True, cache=True)
    def forward(weight, position, sigma, taps, out):  # pragma: no cover - compiled
        n_out, n_in, copies = weight.shape
        dt = weight.dtype.type
        half = taps // 2
        for i in numba.prange(n_in):
            g = np.empty(taps, dtype=weight.dtype)
            block = np.zeros((taps, n_out), dtype=weight.dtype)  # out[:, i, :], written once
            for o in range(n_out):
                for c in range(copies):
                    total = bump(position[o, i, c] + dt(half), sigma, g)
                    w = weight[o, i, c]
                    for k in range(taps):
                        block[k, o] += w * (g[k] / total)
            for k in range(taps):
                for o in range(n_out):
                    out[k, i, o] = block[k, o]

    @numba.njit(parallel=True, cache=True)
    def backward(weight, position, sigma, grad, grad_w, grad_p):  # pragma: no cover - compiled
        n_out, n_in, copies = weight.shape
        taps = grad.shape[0]
        dt = weight.dtype.type
        half = taps // 2
        inv_var = dt(1.0) / (sigma * sigma)
        for i in numba.prange(n_in):
            g = np.empty(taps, dtype=weight.dtype)
            block = np.empty((n_out, taps), dtype=weight.dtype)  # grad[:, i, :], read once
            for k in range(taps):
                for o in range(n_out):
                    block[o, k] = grad[k, i, o]
            for o in range(n_out):
                for c in range(copies):
                    centre = position[o, i, c] + dt(half)
                    total = bump(centre, sigma, g)
                    a = dt(0.0)
                    b = dt(0.0)
                    m = dt(0.0)
                    for k in range(taps):
                        d = dt(k) - centre
                        gd = block[o, k] * g[k]
                        a += gd
                        b += gd * d
                        m += g[k] * d
                    grad_w[o, i, c] = a / total
                    slope = b / total - a * m / (total * total)
                    grad_p[o, i, c] = weight[o, i, c] * inv_var * slope

    _KERNELS.update(forward=forward, backward=backward)
    return _KERNELS


def _np(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


class _GaussianKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: Tensor, position: Tensor, sigma_eff: float, taps: int) -> Tensor:
        weight = weight.contiguous()
        position = position.contiguous()
        out = weight.new_empty(taps, weight.shape[1], weight.shape[0])
        s = np.dtype(str(weight.dtype).removeprefix("torch.")).type(sigma_eff)
        _kernels()["forward"](_np(weight), _np(position), s, taps, _np(out))
        ctx.save_for_backward(weight, position)
        ctx.sigma = s
        return out.permute(2, 1, 0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, position = ctx.saved_tensors
        grad_tm = grad.permute(2, 1, 0).contiguous()  # free when grad is stored tap-major
        grad_w = torch.empty_like(weight)
        grad_p = torch.empty_like(position)
        _kernels()["backward"](
            _np(weight), _np(position), ctx.sigma, _np(grad_tm), _np(grad_w), _np(grad_p)
        )
        return grad_w, grad_p, None, None


def fused_gaussian_kernel(
    weight: Tensor, position: Tensor, sigma_eff: float, max_delay: int
) -> Tensor:
    """Dense kernel (out, in, K) — a view of (K, in, out) memory — from weights and positions.

    Shapes: weight (out, in, kc), position (out, in, kc) → (out, in, K). ``sigma_eff`` is the
    effective width ``|σ| + 0.27``. Differentiable in ``weight`` and ``position``; CPU tensors
    of float32/float64 only.
    """
    if weight.device.type != "cpu" or weight.dtype not in (torch.float32, torch.float64):
        raise ValueError("fused_gaussian_kernel runs on CPU float32/float64 tensors")
    if weight.shape != position.shape or weight.dim() != 3:
        raise ValueError(
            f"weight and position must both be (out, in, kc), got {tuple(weight.shape)} and "
            f"{tuple(position.shape)}"
        )
    return _GaussianKernel.apply(weight, position.to(weight.dtype), float(sigma_eff), max_delay)


__all__ = ["fused_gaussian_kernel"]

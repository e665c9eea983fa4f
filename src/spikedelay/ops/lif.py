"""Fused multi-step LIF and leaky-integrator (LI) sequences with an analytic backward.

Same maths as :func:`spikedelay.neurons.lif_sequence` / :func:`~spikedelay.neurons.li_sequence`
(SpikingJelly ``LIFNode(decay_input=False, v_reset=0, detach_reset=True)``, ArcTan surrogate)::

    H[t] = V[t-1] - V[t-1]/τ + X[t],   S[t] = Θ(H[t] - ϑ),   V[t] = H[t]·(1 - S[t])

Autograd through a Python loop keeps ~5 tensors per step and walks T·5 graph nodes backwards;
SpikingJelly's loop also indexes ``x_seq[t]``, whose backward writes a zero tensor of the whole
sequence per step (O(T²) memory traffic). Here the forward stores only ``H`` (B, T, C) and the
backward is the closed-form recursion (``β = 1 - 1/τ``)::

    gH[t] = gS[t]·σ'(H[t] - ϑ) + β·(1 - S[t])·gH[t+1],     gX[t] = gH[t]

(for the LI readout, ``gH[t] = gV[t] + β·gH[t+1]``). On CPU the loops run in numba, parallel over
the batch and vectorised over channels; elsewhere (CUDA) a loop of in-place torch ops under
``no_grad``. The forward evaluates ``v - v/τ + x`` in the tensor's dtype in the same order as the
reference, so spikes match bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from spikedelay.ops._interop import as_numpy as _np
from spikedelay.ops._interop import scalar_like as _scalar

_KERNELS: dict[str, object] = {}


def _kernels() -> dict[str, object] | None:
    """The numba kernels, compiled (or loaded from numba's on-disk cache) on first use.

    Lazy so that ``import spikedelay`` does not import numba; ``None`` without numba.
    """
    if _KERNELS:
        return _KERNELS
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; the torch path still works
        return None

    @numba.njit(parallel=True, cache=True)
    def lif_forward(x, tau, threshold, h_out, s_out):  # pragma: no cover - compiled
        batch, steps, channels = x.shape
        one = x.dtype.type(1.0)
        zero = x.dtype.type(0.0)
        for b in numba.prange(batch):
            v = np.zeros(channels, dtype=x.dtype)
            for t in range(steps):
                for c in range(channels):
                    h = v[c] - v[c] / tau + x[b, t, c]
                    h_out[b, t, c] = h
                    if h - threshold >= zero:
                        s_out[b, t, c] = one
                        v[c] = zero
                    else:
                        s_out[b, t, c] = zero
                        v[c] = h

    @numba.njit(parallel=True, cache=True)
    def lif_backward(grad_s, h, tau, threshold, alpha, grad_x):  # pragma: no cover
        batch, steps, channels = h.shape
        zero = h.dtype.type(0.0)
        half_alpha = h.dtype.type(alpha / 2.0)
        slope = h.dtype.type(math.pi / 2.0 * alpha)
        one = h.dtype.type(1.0)
        for b in numba.prange(batch):
            g_next = np.zeros(channels, dtype=h.dtype)  # gH[t+1]
            for t in range(steps - 1, -1, -1):
                for c in range(channels):
                    u = h[b, t, c] - threshold
                    z = slope * u
                    g = grad_s[b, t, c] * (half_alpha / (one + z * z))
                    if u < zero:  # no spike: V[t] = H[t], so the future flows back
                        g += g_next[c] - g_next[c] / tau
                    grad_x[b, t, c] = g
                    g_next[c] = g

    @numba.njit(parallel=True, cache=True)
    def li_forward(x, tau, v_out):  # pragma: no cover - compiled
        batch, steps, channels = x.shape
        for b in numba.prange(batch):
            v = np.zeros(channels, dtype=x.dtype)
            for t in range(steps):
                for c in range(channels):
                    v[c] = v[c] - v[c] / tau + x[b, t, c]
                    v_out[b, t, c] = v[c]

    @numba.njit(parallel=True, cache=True)
    def li_backward(grad_v, tau, grad_x):  # pragma: no cover - compiled
        batch, steps, channels = grad_v.shape
        for b in numba.prange(batch):
            g_next = np.zeros(channels, dtype=grad_v.dtype)
            for t in range(steps - 1, -1, -1):
                for c in range(channels):
                    g = grad_v[b, t, c] + (g_next[c] - g_next[c] / tau)
                    grad_x[b, t, c] = g
                    g_next[c] = g

    _KERNELS.update(lif_forward=lif_forward, lif_backward=lif_backward, li_forward=li_forward,
                    li_backward=li_backward)
    return _KERNELS


def _numba_kernels(x: Tensor) -> dict[str, object] | None:
    """The numba kernels if they apply to ``x`` (CPU, float32/64, non-empty), else ``None``."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.numel() == 0:
        return None
    return _kernels()


# -- torch fallback (CUDA, other dtypes) ---------------------------------------------------------
def _lif_forward_torch(x: Tensor, tau: float, threshold: float) -> tuple[Tensor, Tensor]:
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


def _lif_backward_torch(
    grad_s: Tensor, h: Tensor, tau: float, threshold: float, alpha: float
) -> Tensor:
    grad_x = torch.empty_like(h)
    g_next = torch.zeros_like(h[:, 0])
    for t in range(h.shape[1] - 1, -1, -1):
        u = h[:, t] - threshold
        g = grad_s[:, t] * ((alpha / 2) / (1 + (math.pi / 2 * alpha * u) ** 2))
        g = g + (g_next - g_next / tau) * (u < 0).to(h.dtype)
        grad_x[:, t] = g
        g_next = g
    return grad_x


def _li_forward_torch(x: Tensor, tau: float) -> Tensor:
    v_all = torch.empty_like(x)
    v = torch.zeros_like(x[:, 0])
    for t in range(x.shape[1]):
        v = v - v / tau + x[:, t]
        v_all[:, t] = v
    return v_all


def _li_backward_torch(grad_v: Tensor, tau: float) -> Tensor:
    grad_x = torch.empty_like(grad_v)
    g_next = torch.zeros_like(grad_v[:, 0])
    for t in range(grad_v.shape[1] - 1, -1, -1):
        g_next = grad_v[:, t] + (g_next - g_next / tau)
        grad_x[:, t] = g_next
    return grad_x


# -- autograd functions --------------------------------------------------------------------------
class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, tau: float, threshold: float, alpha: float) -> Tensor:
        x = x.contiguous()
        nb = _numba_kernels(x)
        if nb is not None:
            h = torch.empty_like(x)
            s = torch.empty_like(x)
            nb["lif_forward"](_np(x), _scalar(tau, x), _scalar(threshold, x), _np(h), _np(s))
        else:
            with torch.no_grad():
                h, s = _lif_forward_torch(x, tau, threshold)
        ctx.save_for_backward(h)
        ctx.constants = (tau, threshold, alpha)
        return s

    @staticmethod
    def backward(ctx, grad_s: Tensor):
        (h,) = ctx.saved_tensors
        tau, threshold, alpha = ctx.constants
        grad_s = grad_s.contiguous()
        nb = _numba_kernels(h)
        if nb is not None:
            grad_x = torch.empty_like(h)
            nb["lif_backward"](
                _np(grad_s), _np(h), _scalar(tau, h), _scalar(threshold, h), float(alpha),
                _np(grad_x),
            )
        else:
            grad_x = _lif_backward_torch(grad_s, h, tau, threshold, alpha)
        return grad_x, None, None, None


class _FusedLI(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, tau: float) -> Tensor:
        x = x.contiguous()
        ctx.tau = tau
        nb = _numba_kernels(x)
        if nb is not None:
            v = torch.empty_like(x)
            nb["li_forward"](_np(x), _scalar(tau, x), _np(v))
            return v
        with torch.no_grad():
            return _li_forward_torch(x, tau)

    @staticmethod
    def backward(ctx, grad_v: Tensor):
        grad_v = grad_v.contiguous()
        nb = _numba_kernels(grad_v)
        if nb is not None:
            grad_x = torch.empty_like(grad_v)
            nb["li_backward"](_np(grad_v), _scalar(ctx.tau, grad_v), _np(grad_x))
        else:
            grad_x = _li_backward_torch(grad_v, ctx.tau)
        return grad_x, None


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

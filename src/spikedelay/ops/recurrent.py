"""Time-stepped spiking layer: LIF / adLIF / SE-adLIF neurons with (delayed) recurrence, fused.

A recurrence forbids one convolution over the whole sequence: step ``t`` needs the spikes of
the steps before it. This module runs the whole time loop of one hidden layer in one kernel
with a closed-form backward (BPTT): numba on CPU, parallel over the batch
(``_recurrent_numba``), Triton on CUDA, one program per sample doing the recurrent mat-vec in
the kernel (``_recurrent_triton``); a plain torch loop with autograd (``_recurrent_torch``) is
the reference for any device. :mod:`spikedelay.ops.dispatch` picks one (op ``"recurrent"``).

Per step ``t``, for every sample and neuron (``x`` is the feed-forward input current)::

    y[t, o] = Σ_{k=1}^{L-1} m[o, k] · s[t-k, o]      presynaptic trace through the lag kernel
    I[t]    = x[t] + drop ⊙ (W y[t])                  W (post, pre), drop per sequence
    neuron  (u = membrane after reset, w = adaptation, h = membrane before the spike):
      lif:       h = u - u/τ + I                                        (SpikingJelly)
      adlif:     w = β w + a h[t-1] + b s[t-1];  h = α u + (1-α)(I - w) (Bittar & Garner)
      se-adlif:  h = α u + (1-α)(I - w);  ...;  w = β w + (1-β) q (a u + b s)  (new u, s:
                 symplectic Euler, Baronig et al.)
    s[t] = Θ(h - ϑ)
    u    = h (1 - s)   (hard; s detached)   or   h - ϑ s   (subtract; differentiated)

``m`` (N, L) holds the recurrent lags (column 0, lag 0, is never delivered): plain recurrence is
``m[:, 1] = 1``; DelRec's learned delays give a triangle around lag ``1 + d_o``
(:mod:`spikedelay.recurrent` builds it). A ring buffer is not needed offline: the spikes already
written are the history. The spike output's gradient uses the surrogate of
:mod:`spikedelay.ops.surrogate`; the membrane ``h`` is also returned (differentiable), for
readouts and for exact finite-difference tests.

Gradients that are sums over time (``W``, ``m``) are one matmul each in torch from stored
tensors; the kernel returns the per-step adjoints and per-neuron sums for ``α, β, a, b``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from spikedelay.ops import dispatch
from spikedelay.ops._recurrent_common import NEURONS
from spikedelay.ops.surrogate import SURROGATE_CODES

RESETS = ("hard", "subtract")


def recurrent_sequence(
    x: Tensor, w_rec: Tensor | None, m: Tensor | None, drop: Tensor | None,
    alpha: Tensor | None = None, beta: Tensor | None = None, a: Tensor | None = None,
    b: Tensor | None = None, *, neuron: str = "lif", reset: str = "hard", tau: float = 2.0,
    q: float = 1.0, threshold: float = 1.0, surrogate: str = "atan", p1: float = 5.0,
    p2: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Spikes and membranes (before reset) of one layer over a sequence, from rest.

    Shapes: x (B, T, N) input current; ``w_rec`` (N, N) recurrent weights (post, pre) or
    ``None`` (no recurrence); ``m`` (N, L) lag kernel (``None`` with ``w_rec`` = plain one-step
    recurrence); ``drop`` (B, N) recurrent-dropout mask (already scaled) or ``None``;
    ``alpha, beta, a, b`` (N,) adaptive parameters (ignored by ``lif``, which uses ``tau``)
    → (spikes (B, T, N), membranes (B, T, N)). The backend follows the tensor (numba on CPU,
    Triton on CUDA, torch elsewhere) or ``SPIKEDELAY_KERNELS``.
    """
    if x.dim() != 3:
        raise ValueError(f"recurrent_sequence expects x (B, T, N), got shape {tuple(x.shape)}")
    if neuron not in NEURONS:
        raise ValueError(f"unknown neuron {neuron!r}: use one of {', '.join(NEURONS)}")
    if reset not in RESETS:
        raise ValueError(f"unknown reset {reset!r}: use one of {', '.join(RESETS)}")
    if surrogate not in SURROGATE_CODES:
        raise ValueError(f"unknown surrogate {surrogate!r}")
    batch, _, n = x.shape
    if w_rec is not None and m is None:
        m = x.new_zeros(n, 2)
        m[:, 1] = 1.0
    zeros = x.new_zeros(n)
    alpha, beta, a, b = (zeros if p is None else p for p in (alpha, beta, a, b))
    impl = dispatch.select("recurrent", x)
    return impl.recurrent_sequence(
        x, w_rec, m, drop, alpha, beta, a, b, neuron=neuron, reset=reset, tau=tau, q=q,
        threshold=threshold, surrogate=surrogate, p1=p1, p2=p2,
    )


def warmup() -> None:
    """Compile (or load from numba's cache) the CPU kernels now instead of in the first step."""
    x = torch.zeros(1, 2, 2, requires_grad=True)
    s, h = recurrent_sequence(x, torch.zeros(2, 2), None, None)
    (s.sum() + h.sum()).backward()


__all__ = ["NEURONS", "RESETS", "recurrent_sequence", "warmup"]

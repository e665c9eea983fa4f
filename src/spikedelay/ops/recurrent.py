"""Time-stepped spiking layer: LIF / adLIF / SE-adLIF neurons with (delayed) recurrence, fused.

A recurrence forbids one convolution over the whole sequence: step ``t`` needs the spikes of
the steps before it. This module runs the whole time loop of one hidden layer in one kernel
(numba on CPU, parallel over the batch) with a closed-form backward (BPTT), and keeps a plain
torch loop with autograd (:func:`recurrent_sequence_torch`) as the reference for any device.

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

import numpy as np
import torch
from torch import Tensor

from spikedelay.ops._interop import as_numpy as _np
from spikedelay.ops.surrogate import SURROGATE_CODES, make_numba_surrogate, surrogate_grad

NEURONS = ("lif", "adlif", "se-adlif")
RESETS = ("hard", "subtract")
_KERNELS: dict[str, object] = {}


def _kernels() -> dict[str, object] | None:
    """The numba forward/backward pair, compiled (or loaded from cache) on first use."""
    if _KERNELS:
        return _KERNELS
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; the torch path still works
        return None
    sg = make_numba_surrogate()

    @numba.njit(parallel=True, cache=True)
    def forward(x, wt, m, drop, alpha, beta, a, b, kind, subtract, has_rec, tau, q, thr,
                h_out, s_out, w_out, i_out, y_out):  # pragma: no cover - compiled
        batch, steps, n = x.shape
        lags = m.shape[1]
        zero = x.dtype.type(0.0)
        one = x.dtype.type(1.0)
        for bi in numba.prange(batch):
            u = np.zeros(n, dtype=x.dtype)
            w = np.zeros(n, dtype=x.dtype)
            hp = np.zeros(n, dtype=x.dtype)
            sp = np.zeros(n, dtype=x.dtype)
            r = np.zeros(n, dtype=x.dtype)
            for t in range(steps):
                if has_rec:
                    r[:] = zero
                    kmax = min(lags - 1, t)
                    for o in range(n):
                        acc = zero
                        for k in range(1, kmax + 1):
                            acc += m[o, k] * s_out[bi, t - k, o]
                        y_out[bi, t, o] = acc
                        if acc != zero:  # spikes are sparse: skip silent presynaptic rows
                            for i in range(n):
                                r[i] += wt[o, i] * acc
                for c in range(n):
                    cur = x[bi, t, c]
                    if has_rec:
                        cur += drop[bi, c] * r[c]
                    i_out[bi, t, c] = cur
                    if kind == 0:
                        h = u[c] - u[c] / tau + cur
                    elif kind == 1:
                        w[c] = beta[c] * w[c] + a[c] * hp[c] + b[c] * sp[c]
                        h = alpha[c] * u[c] + (one - alpha[c]) * (cur - w[c])
                    else:
                        h = alpha[c] * u[c] + (one - alpha[c]) * (cur - w[c])
                    s = one if h - thr >= zero else zero
                    if subtract:
                        u[c] = h - thr * s
                    else:
                        u[c] = h * (one - s)
                    if kind == 2:
                        w[c] = beta[c] * w[c] + (one - beta[c]) * q * (a[c] * u[c] + b[c] * s)
                    h_out[bi, t, c] = h
                    s_out[bi, t, c] = s
                    w_out[bi, t, c] = w[c]
                    hp[c] = h
                    sp[c] = s

    @numba.njit(parallel=True, cache=True, fastmath=True)
    def backward(gs_ext, gh_ext, h_all, s_all, w_all, i_all, wt, m, drop, alpha, beta, a, b,
                 kind, subtract, has_rec, tau, q, thr, sg_code, p1, p2,
                 gi_out, gy_out, galpha, gbeta, ga, gb):  # pragma: no cover - compiled
        batch, steps, n = h_all.shape
        lags = m.shape[1]
        zero = h_all.dtype.type(0.0)
        one = h_all.dtype.type(1.0)
        for bi in numba.prange(batch):
            gu = np.zeros(n, dtype=h_all.dtype)  # dL/du[t] from step t+1
            gw = np.zeros(n, dtype=h_all.dtype)  # dL/dw[t] from step t+1
            gh_c = np.zeros(n, dtype=h_all.dtype)  # adlif: dL/dh[t] through w[t+1]
            gs_c = np.zeros(n, dtype=h_all.dtype)  # adlif: dL/ds[t] through w[t+1]
            for t in range(steps - 1, -1, -1):
                for c in range(n):
                    gs = gs_ext[bi, t, c] + gs_c[c]
                    if has_rec:
                        kmax = min(lags - 1, steps - 1 - t)
                        for k in range(1, kmax + 1):
                            gs += m[c, k] * gy_out[bi, t + k, c]
                    h = h_all[bi, t, c]
                    s = s_all[bi, t, c]
                    u_t = h - thr * s if subtract else h * (one - s)
                    if t > 0:
                        hp = h_all[bi, t - 1, c]
                        sp = s_all[bi, t - 1, c]
                        u_p = hp - thr * sp if subtract else hp * (one - sp)
                        w_p = w_all[bi, t - 1, c]
                    else:
                        hp = zero
                        sp = zero
                        u_p = zero
                        w_p = zero
                    gu_tot = gu[c]
                    gw_prev = zero
                    if kind == 2:  # w[t] = β w[t-1] + (1-β) q (a u[t] + b s[t])
                        gwt = gw[c]
                        k_w = (one - beta[c]) * q
                        gu_tot += gwt * k_w * a[c]
                        gs += gwt * k_w * b[c]
                        gbeta[bi, c] += gwt * (w_p - q * (a[c] * u_t + b[c] * s))
                        ga[bi, c] += gwt * k_w * u_t
                        gb[bi, c] += gwt * k_w * s
                        gw_prev = gwt * beta[c]
                    if subtract:
                        gh = gu_tot
                        gs -= thr * gu_tot
                    else:
                        gh = gu_tot * (one - s)
                    gh += gh_ext[bi, t, c] + gh_c[c] + gs * sg(h - thr, sg_code, p1, p2)
                    cur = i_all[bi, t, c]
                    if kind == 0:
                        gi = gh
                        gu[c] = gh - gh / tau
                    elif kind == 1:  # h = α u[t-1] + (1-α)(I - w[t]); w[t] from t-1
                        gi = gh * (one - alpha[c])
                        gu[c] = gh * alpha[c]
                        w_t = w_all[bi, t, c]
                        galpha[bi, c] += gh * (u_p - cur + w_t)
                        gwt = gw[c] - gi
                        gbeta[bi, c] += gwt * w_p
                        ga[bi, c] += gwt * hp
                        gb[bi, c] += gwt * sp
                        gw[c] = beta[c] * gwt
                        gh_c[c] = a[c] * gwt
                        gs_c[c] = b[c] * gwt
                    else:  # h = α u[t-1] + (1-α)(I - w[t-1])
                        gi = gh * (one - alpha[c])
                        gu[c] = gh * alpha[c]
                        galpha[bi, c] += gh * (u_p - cur + w_p)
                        gw[c] = gw_prev - gi
                    gi_out[bi, t, c] = gi
                if has_rec:  # gy[t, o] = Σ_i W[i, o] drop[i] gI[t, i]
                    for o in range(n):
                        acc = zero
                        for i in range(n):
                            acc += wt[o, i] * (drop[bi, i] * gi_out[bi, t, i])
                        gy_out[bi, t, o] = acc

    _KERNELS.update(forward=forward, backward=backward)
    return _KERNELS


def _use_numba(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.numel() > 0


def _lag_grad(gy: Tensor, s: Tensor, lags: int) -> Tensor:
    """``g_m[o, k] = Σ_{b,t} gy[b, t, o] · s[b, t-k, o]`` for ``k = 1 … L-1`` (column 0 is 0)."""
    cols = [torch.zeros_like(gy[0, 0])]
    steps = gy.shape[1]
    for k in range(1, lags):
        if k >= steps:
            cols.append(torch.zeros_like(gy[0, 0]))
        else:
            cols.append((gy[:, k:] * s[:, : steps - k]).sum((0, 1)))
    return torch.stack(cols, dim=1)


class _FusedRecurrent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_rec, m, drop, alpha, beta, a, b, consts):
        kind, subtract, has_rec, tau, q, thr, sg_code, p1, p2 = consts
        x = x.contiguous()
        batch, steps, n = x.shape
        dt = x.dtype
        wt = w_rec.detach().t().contiguous()
        m_ = m.detach().contiguous()
        drop_ = drop.detach().contiguous()
        h, s, w, cur, y = (torch.empty_like(x) for _ in range(5))
        if not has_rec:
            y = torch.zeros(1, 1, 1, dtype=dt)
        nb = _kernels()
        nb["forward"](
            _np(x), _np(wt), _np(m_), _np(drop_), _np(alpha.detach().contiguous()),
            _np(beta.detach().contiguous()), _np(a.detach().contiguous()),
            _np(b.detach().contiguous()), kind, subtract, has_rec, dt_scalar(tau, dt),
            dt_scalar(q, dt), dt_scalar(thr, dt), _np(h), _np(s), _np(w), _np(cur), _np(y),
        )
        ctx.save_for_backward(h, s, w, cur, y, wt, m_, drop_, alpha, beta, a, b)
        ctx.consts = consts
        return s, h

    @staticmethod
    def backward(ctx, gs, gh):
        h, s, w, cur, y, wt, m, drop, alpha, beta, a, b = ctx.saved_tensors
        kind, subtract, has_rec, tau, q, thr, sg_code, p1, p2 = ctx.consts
        dt = h.dtype
        gs = torch.zeros_like(h) if gs is None else gs.contiguous()
        gh = torch.zeros_like(h) if gh is None else gh.contiguous()
        batch, steps, n = h.shape
        gi = torch.empty_like(h)
        gy = torch.zeros_like(h) if has_rec else torch.zeros(1, 1, 1, dtype=dt)
        gpar = [torch.zeros(batch, n, dtype=dt) for _ in range(4)]
        _kernels()["backward"](
            _np(gs), _np(gh), _np(h), _np(s), _np(w), _np(cur), _np(wt), _np(m), _np(drop),
            _np(alpha.detach().contiguous()), _np(beta.detach().contiguous()),
            _np(a.detach().contiguous()), _np(b.detach().contiguous()), kind, subtract,
            has_rec, dt_scalar(tau, dt), dt_scalar(q, dt), dt_scalar(thr, dt), sg_code,
            float(p1), float(p2), _np(gi), _np(gy), *(_np(g) for g in gpar),
        )
        g_w = g_m = None
        if has_rec:
            gz = gi * drop.unsqueeze(1)
            g_w = torch.einsum("bti,bto->io", gz, y) if ctx.needs_input_grad[1] else None
            g_m = _lag_grad(gy, s, m.shape[1]) if ctx.needs_input_grad[2] else None
        ga_, gb_, gc_, gd_ = (g.sum(0) for g in gpar)
        return gi, g_w, g_m, None, ga_, gb_, gc_, gd_, None


def dt_scalar(value: float, dtype: torch.dtype) -> np.generic:
    """A numpy scalar of ``dtype`` so numba computes in the tensor's precision."""
    return np.dtype(str(dtype).removeprefix("torch.")).type(value)


# -- torch reference (any device) -----------------------------------------------------------
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


def recurrent_sequence_torch(
    x: Tensor, w_rec: Tensor | None, m: Tensor | None, drop: Tensor | None,
    alpha: Tensor, beta: Tensor, a: Tensor, b: Tensor, *, neuron: str = "lif",
    reset: str = "hard", tau: float = 2.0, q: float = 1.0, threshold: float = 1.0,
    surrogate: str = "atan", p1: float = 5.0, p2: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """The same maths as :func:`recurrent_sequence`, one torch step per time step (autograd)."""
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


def recurrent_sequence(
    x: Tensor, w_rec: Tensor | None, m: Tensor | None, drop: Tensor | None,
    alpha: Tensor | None = None, beta: Tensor | None = None, a: Tensor | None = None,
    b: Tensor | None = None, *, neuron: str = "lif", reset: str = "hard", tau: float = 2.0,
    q: float = 1.0, threshold: float = 1.0, surrogate: str = "atan", p1: float = 5.0,
    p2: float = 0.0, backend: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Spikes and membranes (before reset) of one layer over a sequence, from rest.

    Shapes: x (B, T, N) input current; ``w_rec`` (N, N) recurrent weights (post, pre) or
    ``None`` (no recurrence); ``m`` (N, L) lag kernel (``None`` with ``w_rec`` = plain one-step
    recurrence); ``drop`` (B, N) recurrent-dropout mask (already scaled) or ``None``;
    ``alpha, beta, a, b`` (N,) adaptive parameters (ignored by ``lif``, which uses ``tau``)
    → (spikes (B, T, N), membranes (B, T, N)). ``backend``: ``auto`` (numba on CPU float32/64,
    torch elsewhere), ``numba`` or ``torch``.
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
    use_numba = backend == "numba" or (backend == "auto" and _use_numba(x))
    if not use_numba or _kernels() is None:
        return recurrent_sequence_torch(
            x, w_rec, m, drop, alpha, beta, a, b, neuron=neuron, reset=reset, tau=tau, q=q,
            threshold=threshold, surrogate=surrogate, p1=p1, p2=p2,
        )
    has_rec = w_rec is not None
    if not has_rec:
        w_rec = x.new_zeros(1, 1)
        m = x.new_zeros(1, 1)
    if drop is None:
        drop = x.new_ones(batch if has_rec else 1, n if has_rec else 1)
    consts = (NEURONS.index(neuron), reset == "subtract", has_rec, float(tau), float(q),
              float(threshold), SURROGATE_CODES[surrogate], float(p1), float(p2))
    return _FusedRecurrent.apply(x, w_rec, m, drop.to(x.dtype), alpha, beta, a, b, consts)


def warmup() -> None:
    """Compile (or load from numba's cache) the CPU kernels now instead of in the first step."""
    x = torch.zeros(1, 2, 2, requires_grad=True)
    s, h = recurrent_sequence(x, torch.zeros(2, 2), None, None)
    (s.sum() + h.sum()).backward()


__all__ = ["NEURONS", "RESETS", "recurrent_sequence", "recurrent_sequence_torch", "warmup"]

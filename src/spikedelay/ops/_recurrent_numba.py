"""numba backend of the ``recurrent`` op (see :mod:`spikedelay.ops.recurrent`): the fused
forward over the whole time loop and its closed-form backward, wrapped in one autograd function.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from spikedelay.ops._interop import as_numpy as _np
from spikedelay.ops._recurrent_common import kernel_arguments, lag_grad, weight_grad
from spikedelay.ops.surrogate import make_numba_surrogate

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
            g_w = weight_grad(gi, drop, y) if ctx.needs_input_grad[1] else None
            g_m = lag_grad(gy, s, m.shape[1]) if ctx.needs_input_grad[2] else None
        ga_, gb_, gc_, gd_ = (g.sum(0) for g in gpar)
        return gi, g_w, g_m, None, ga_, gb_, gc_, gd_, None


def dt_scalar(value: float, dtype: torch.dtype) -> np.generic:
    """A numpy scalar of ``dtype`` so numba computes in the tensor's precision."""
    return np.dtype(str(dtype).removeprefix("torch.")).type(value)


def recurrent_sequence(
    x: Tensor, w_rec: Tensor | None, m: Tensor | None, drop: Tensor | None,
    alpha: Tensor, beta: Tensor, a: Tensor, b: Tensor, *, neuron: str, reset: str, tau: float,
    q: float, threshold: float, surrogate: str, p1: float, p2: float,
) -> tuple[Tensor, Tensor]:
    """Spikes and membranes (B, T, N); arguments as :func:`spikedelay.ops.recurrent.
    recurrent_sequence` (``m`` given whenever ``w_rec`` is)."""
    if x.shape[0] == 0 or x.shape[1] == 0:
        return torch.zeros_like(x), torch.zeros_like(x)
    w_rec, m, drop, consts = kernel_arguments(
        x, w_rec, m, drop, neuron=neuron, reset=reset, tau=tau, q=q, threshold=threshold,
        surrogate=surrogate, p1=p1, p2=p2)
    return _FusedRecurrent.apply(x, w_rec, m, drop, alpha, beta, a, b, consts)

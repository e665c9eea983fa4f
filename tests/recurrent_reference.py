"""Independent slow references for the time-stepped layers (tests only).

Written from the papers' equations (REFERENCE §9, models-facts §1.3, §3), in a different form
from ``spikedelay.ops.recurrent``: DelRec's ring buffer of *delivered currents* (not a trace of
past spikes), spikes by forward gradient injection (not an autograd.Function), and each neuron
written out as its paper states it.
"""

import math

import torch


def surrogate(x, kind, p1, p2):
    if kind == "atan":
        return p1 / 2 / (1 + (math.pi / 2 * p1 * x) ** 2)
    if kind == "triangle":
        return torch.clamp(p1 - x.abs(), min=0) / p1**2
    return p2 * p1 / 2 * torch.exp(-p1 * x.abs())


def spike(x, kind, p1, p2):
    """Θ(x) forward, the surrogate backward (forward gradient injection, as SE-adLIF's code)."""
    return (x >= 0).to(x.dtype) + (x - x.detach()) * surrogate(x.detach(), kind, p1, p2)


def layer_loop(x, w_rec, m, drop, alpha, beta, a, b, *, neuron, reset, tau=2.0, q=1.0,
               thr=1.0, kind="atan", p1=5.0, p2=0.0):
    """Spikes and pre-reset membranes (B, T, N) of one layer, DelRec's circular buffer loop."""
    bsz, steps, n = x.shape
    lags = 0 if w_rec is None else m.shape[1]
    buf = x.new_zeros(bsz, n, max(lags, 1))
    ptr = 0
    u = x.new_zeros(bsz, n)  # after reset
    u_pre = x.new_zeros(bsz, n)  # before reset (sparch's ut)
    w = x.new_zeros(bsz, n)
    s = x.new_zeros(bsz, n)
    spikes, membranes = [], []
    for t in range(steps):
        cur = x[:, t]
        if w_rec is not None:
            rec_now = buf[:, :, ptr]
            cur = cur + (rec_now if drop is None else drop * rec_now)
        if neuron == "lif":  # SpikingJelly LIFNode(decay_input=False)
            h = u - u / tau + cur
        elif neuron == "adlif":  # sparch adLIF: w from the previous (pre-reset) u and s
            w = beta * w + a * u_pre + b * s
            h = alpha * u + (1 - alpha) * (cur - w)
        else:  # SE-adLIF: u with the old w
            h = alpha * u + (1 - alpha) * (cur - w)
        s = spike(h - thr, kind, p1, p2)
        u_pre = h
        u = h - thr * s if reset == "subtract" else h * (1 - s.detach())
        if neuron == "se-adlif":  # symplectic Euler: the new u and s
            w = beta * w + (1 - beta) * q * (a * u + b * s)
        spikes.append(s)
        membranes.append(h)
        if w_rec is not None:
            delivered = torch.einsum("io,bo,ok->bik", w_rec, s, m)
            buf = buf.clone()
            buf[:, :, ptr] = 0
            ptr = (ptr + 1) % lags
            for k in range(1, lags):
                j = (ptr + k - 1) % lags
                buf[:, :, j] = buf[:, :, j] + delivered[:, :, k]
    return torch.stack(spikes, 1), torch.stack(membranes, 1)


def integer_delay_lif_loop(x, w_rec, delays, tau, thr=1.0):
    """Scalar-indexed LIF with integer recurrent delays: neuron o's spike at t reaches every
    neuron at t + 1 + delays[o]. Floats only, no tensors inside the loop."""
    bsz, steps, n = x.shape
    out = torch.zeros_like(x)
    for bi in range(bsz):
        v = [0.0] * n
        for t in range(steps):
            for i in range(n):
                cur = float(x[bi, t, i])
                for o in range(n):
                    src = t - 1 - int(delays[o])
                    if src >= 0 and out[bi, src, o] > 0:
                        cur += float(w_rec[i, o])
                h = v[i] - v[i] / tau + cur
                fired = h >= thr
                out[bi, t, i] = 1.0 if fired else 0.0
                v[i] = 0.0 if fired else h
    return out


def assert_matches_layer_loop(x, w_rec, m, drop, coeffs, leaves, *, neuron, reset, tau, q,
                              surrogate, p1, p2, seed):
    """``spikedelay.ops.recurrent.recurrent_sequence`` (whatever backend is selected) against
    :func:`layer_loop`: spikes exact, membranes to 1e-12, and the gradients of a random linear
    function of both w.r.t. ``leaves`` to 1e-9."""
    from spikedelay.ops.recurrent import recurrent_sequence

    kw = dict(neuron=neuron, reset=reset, tau=tau, q=q)
    s, h = recurrent_sequence(x, w_rec, m, drop, *coeffs, **kw, surrogate=surrogate, p1=p1,
                              p2=p2)
    s_ref, h_ref = layer_loop(x, w_rec, m, drop, *coeffs, **kw, kind=surrogate, p1=p1, p2=p2)
    assert 0.05 < float(s_ref.detach().mean()) < 0.95  # spikes happen and are not saturated
    torch.testing.assert_close(s, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(h, h_ref, rtol=1e-12, atol=1e-12)
    g = torch.Generator().manual_seed(seed)
    cs, ch = (torch.randn(s.shape, generator=g, dtype=s.dtype) for _ in range(2))
    got = torch.autograd.grad((s * cs).sum() + (h * ch).sum(), leaves)
    want = torch.autograd.grad((s_ref * cs).sum() + (h_ref * ch).sum(), leaves)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)

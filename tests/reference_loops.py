"""Independent scalar references shared by several test files (slow, obviously correct)."""

import torch


def lif_spikes_loop(x, tau, thr):
    """LIF spikes by REFERENCE §1 with scalar Python state: ``H = V - V/τ + X``, spike when
    ``H ≥ thr``, hard reset to 0. Shapes: x (B, T, C) → spikes (B, T, C) in x's dtype."""
    out = torch.zeros_like(x)
    b_, t_, c_ = x.shape
    for b in range(b_):
        for c in range(c_):
            v = 0.0
            for t in range(t_):
                h = v - v / tau + float(x[b, t, c])
                s = 1.0 if h >= thr else 0.0
                out[b, t, c] = s
                v = 0.0 if s else h
    return out

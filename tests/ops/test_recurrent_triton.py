"""The Triton kernels of the ``recurrent`` op (Triton's interpreter on CPU) at the launch
geometries the small cases of ``tests/test_recurrent.py`` never reach.

Those cases (every neuron × recurrence × reset × surrogate against DelRec's buffer loop, with
``SPIKEDELAY_KERNELS=triton``) fit one mat-vec tile and one neuron block. Here: a layer wider
than a tile (the mat-vec walks several tiles, the last one padded), a layer without recurrence
wider than one block of neurons (several programs per sample), float32 against the numba
kernels, gradients asked for only in part, and the dispatch point choosing the kernels.
"""

from __future__ import annotations

import pytest
import torch
from recurrent_reference import assert_matches_layer_loop, layer_loop

from spikedelay.ops import _recurrent_triton, dispatch
from spikedelay.ops.recurrent import recurrent_sequence

F64 = torch.float64


def _problem(n, rec, neuron, *, steps=9, bsz=2, lags=5, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    mean = 0.6 if neuron == "lif" else 1.8
    x = (torch.randn(bsz, steps, n, generator=g, dtype=F64) * 1.5 + mean).to(dtype)
    w = m = drop = None
    if rec != "none":
        w = (torch.randn(n, n, generator=g, dtype=F64) * 1.6 / n**0.5).to(dtype)
        drop = ((torch.rand(bsz, n, generator=g, dtype=F64) > 0.25).to(F64) / 0.75).to(dtype)
        m = torch.rand(n, lags, generator=g, dtype=F64).to(dtype)
        m[:, 0] = 0
    ranges = ([(0.82, 0.96), (0.967, 0.992), (-1, 1), (0, 2)] if neuron == "adlif"
              else [(0.82, 0.96), (0.98, 0.997), (0, 1), (0, 2)])
    coeffs = [(lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)).to(dtype)
              for lo, hi in ranges]
    adaptive = coeffs if neuron != "lif" else []  # LIF ignores them (it uses τ)
    leaves = [t.requires_grad_() for t in (x, w, m, *adaptive) if t is not None]
    return x, w, m, drop, coeffs, leaves


def _check_against_loop(n, rec, neuron, reset, surrogate, p1, p2, monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    x, w, m, drop, coeffs, leaves = _problem(n, rec, neuron)
    assert_matches_layer_loop(x, w, m, drop, coeffs, leaves, neuron=neuron, reset=reset,
                              tau=1.7, q=3.0, surrogate=surrogate, p1=p1, p2=p2, seed=3)


@pytest.mark.parametrize("neuron,reset,surrogate,p1,p2", [
    ("lif", "hard", "atan", 5.0, 0.0),
    ("se-adlif", "subtract", "slayer", 5.0, 0.4),
])
def test_a_layer_wider_than_one_matvec_tile(neuron, reset, surrogate, p1, p2, monkeypatch):
    n = 70  # padded to 128 neurons: tiles of 32 presynaptic rows, the third one part empty
    grid, launch = _recurrent_triton._geometry(2, n, True)
    assert grid == (2, 1) and launch["BLOCK"] == 128 and launch["TILE"] == 32
    _check_against_loop(n, "delayed", neuron, reset, surrogate, p1, p2, monkeypatch)


def test_without_recurrence_a_layer_spans_several_programs(monkeypatch):
    n = 70  # two blocks of 64 neurons per sample
    grid, _ = _recurrent_triton._geometry(2, n, False)
    assert grid == (2, 2)
    _check_against_loop(n, "none", "adlif", "hard", "triangle", 1.0, 0.0, monkeypatch)


def test_float32_equals_the_numba_kernels(monkeypatch):
    out = {}
    for backend in ("numba", "triton"):
        monkeypatch.setenv(dispatch.ENV_VAR, backend)
        x, w, m, drop, coeffs, leaves = _problem(24, "delayed", "se-adlif", steps=16, seed=4,
                                                 dtype=torch.float32)
        s, h = recurrent_sequence(x, w, m, drop, *coeffs, neuron="se-adlif", q=3.0,
                                  surrogate="slayer", p1=5.0, p2=0.4)
        out[backend] = (s, h, torch.autograd.grad(h.sum() + s.sum(), leaves))
    (s_n, h_n, g_n), (s_t, h_t, g_t) = out["numba"], out["triton"]
    assert 0.05 < float(s_n.detach().mean()) < 0.95
    # the mat-vec sums in another order (float32 rounding): no membrane of this draw sits
    # close enough to the threshold for that to flip a spike
    torch.testing.assert_close(s_t, s_n, rtol=0, atol=0)
    torch.testing.assert_close(h_t, h_n, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_t, g_n, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_only_the_input_gradient_and_empty_sequences(monkeypatch):
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    x, w, m, drop, coeffs, _ = _problem(6, "plain", "lif")
    w, m = w.detach(), m.detach()  # frozen recurrence: W and m get no gradient
    s, h = recurrent_sequence(x, w, m, drop, neuron="lif", tau=1.7)
    s_ref, h_ref = layer_loop(x, w, m, drop, *coeffs, neuron="lif", reset="hard", tau=1.7)
    (gx,) = torch.autograd.grad(s.sum() + h.sum(), [x])
    (gx_ref,) = torch.autograd.grad(s_ref.sum() + h_ref.sum(), [x])
    torch.testing.assert_close(gx, gx_ref, rtol=1e-9, atol=1e-10)
    for shape in ((0, 4, 6), (2, 0, 6)):
        s0, h0 = recurrent_sequence(torch.zeros(shape, dtype=F64), w, m, None)
        assert s0.shape == h0.shape == shape


def test_dispatch_runs_the_triton_kernels_when_forced(monkeypatch):
    x = torch.zeros(2, 3, 4)
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    assert dispatch.backend_name("recurrent", x) == "triton"  # not the torch fallback
    assert dispatch.select("recurrent", x) is _recurrent_triton
    monkeypatch.delenv(dispatch.ENV_VAR)
    assert dispatch.backend_name("recurrent", x) == "numba"  # auto never interprets on CPU

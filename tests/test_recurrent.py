"""Time-stepped layers (recurrence, adaptive neurons) against independent references."""

import math

import pytest
import torch
from recurrent_reference import assert_matches_layer_loop, integer_delay_lif_loop, layer_loop

from spikedelay.recurrent import (
    RecurrentConnections,
    integer_lag_kernel,
    recurrent_sigma_at,
    triangle_lag_kernel,
)
from spikedelay.stepped import SteppedNeurons

F64 = torch.float64


def _inputs(neuron, rec, seed=0, bsz=2, steps=14, n=5, lags=6):
    g = torch.Generator().manual_seed(seed)
    mean = 0.6 if neuron == "lif" else 1.8  # adaptive neurons charge by (1-α)·I per step
    x = (torch.randn(bsz, steps, n, generator=g, dtype=F64) * 1.5 + mean).requires_grad_()
    w = m = drop = None
    if rec != "none":
        w = (torch.randn(n, n, generator=g, dtype=F64) * 0.8).requires_grad_()
        drop = (torch.rand(bsz, n, generator=g, dtype=F64) > 0.25).to(F64) / 0.75
        if rec == "delayed":
            m = torch.rand(n, lags, generator=g, dtype=F64)
            m[:, 0] = 0
        else:
            m = torch.zeros(n, 2, dtype=F64)
            m[:, 1] = 1
        m.requires_grad_()
    if neuron == "adlif":
        ranges = [(0.82, 0.96), (0.967, 0.992), (-1, 1), (0, 2)]
    else:
        ranges = [(0.82, 0.96), (0.98, 0.997), (0, 1), (0, 2)]
    coeffs = [(lo + (hi - lo) * torch.rand(n, generator=g, dtype=F64)).requires_grad_()
              for lo, hi in ranges]
    return x, w, m, drop, coeffs


NEURON_Q = {"lif": 1.0, "adlif": 1.0, "se-adlif": 3.0}
SURR = {"atan": (5.0, 0.0), "triangle": (1.0, 0.0), "slayer": (5.0, 0.4)}


@pytest.mark.parametrize("backend", ["numba", "torch", "triton"])  # Triton interpreted
@pytest.mark.parametrize("rec", ["none", "plain", "delayed"])
@pytest.mark.parametrize("neuron", ["lif", "adlif", "se-adlif"])
@pytest.mark.parametrize("reset,surr", [("hard", "atan"), ("subtract", "triangle"),
                                        ("hard", "slayer")])
def test_forward_and_gradients_equal_the_delrec_buffer_loop(backend, rec, neuron, reset, surr,
                                                           monkeypatch):
    monkeypatch.setenv("SPIKEDELAY_KERNELS", backend)
    x, w, m, drop, coeffs = _inputs(neuron, rec)
    p1, p2 = SURR[surr]
    leaves = [t for t in (x, w, m, *coeffs) if t is not None]
    if neuron == "lif":
        leaves = [t for t in (x, w, m) if t is not None]
    assert_matches_layer_loop(x, w, m, drop, coeffs, leaves, neuron=neuron, reset=reset,
                              tau=1.7, q=NEURON_Q[neuron], surrogate=surr, p1=p1, p2=p2, seed=7)


@pytest.mark.parametrize("neuron", ["lif", "adlif", "se-adlif"])
@pytest.mark.parametrize("reset", ["hard", "subtract"])
def test_gradients_equal_finite_differences_where_spikes_are_locally_constant(neuron, reset):
    """A narrow triangle surrogate is exactly zero away from threshold; with every membrane
    farther than its half-width from threshold the surrogate gradient is the true gradient of
    the (piecewise smooth) map, so central differences must match, through the delays too."""
    n, steps = 4, 12
    mean = 0.8 if neuron == "lif" else 2.2
    for seed in range(20):  # the first draw whose membranes all keep clear of the threshold
        torch.manual_seed(seed)
        layer = SteppedNeurons(n, neuron=neuron, recurrent="delayed", reset=reset, tau=1.7,
                               surrogate="triangle", p1=1e-3, delay_init=(0.3, 3.7)).double()
        layer.recurrent.set_sigma(0.6)
        with torch.no_grad():
            layer.recurrent.weight.mul_(0.8)
        x = torch.randn(2, steps, n, dtype=F64) * 1.2 + mean
        s, h = layer.run(x, integer=False)
        if float((h.detach() - 1.0).abs().min()) > 1e-3 and 0.05 < float(s.detach().mean()) < 0.95:
            break
    else:
        pytest.fail("no draw keeps every membrane away from the threshold")
    c = torch.randn(2, steps, n, dtype=F64)
    params = list(layer.parameters())

    def loss():
        s, h = layer.run(x, integer=False)
        return (h * c).sum() + s.sum()

    grads = torch.autograd.grad(loss(), params)
    eps = 1e-6
    for p, g in zip(params, grads, strict=True):
        for idx in range(p.numel()):
            with torch.no_grad():
                p.view(-1)[idx] += eps
                up = float(loss())
                p.view(-1)[idx] -= 2 * eps
                down = float(loss())
                p.view(-1)[idx] += eps
            fd = (up - down) / (2 * eps)
            assert abs(fd - float(g.view(-1)[idx])) < 1e-5 * (1 + abs(fd)), (p.shape, idx)


def test_integer_recurrent_delays_equal_a_naive_loop():
    torch.manual_seed(1)
    n = 6
    layer = SteppedNeurons(n, neuron="lif", recurrent="delayed", tau=1.5,
                           delay_init=(0.0, 6.0)).double().eval()
    with torch.no_grad():
        layer.recurrent.delay[0] = 2.5  # half to even: 2
        layer.recurrent.delay[1] = 3.5  # 4
    x = torch.rand(3, 25, n, dtype=F64) * 1.4
    s = layer(x)
    d = layer.recurrent.integer_delays()
    assert d[0] == 2 and d[1] == 4
    ref = integer_delay_lif_loop(x, layer.recurrent.weight.detach(), d, 1.5)
    assert 0.05 < float(ref.mean()) < 0.95
    torch.testing.assert_close(s, ref, rtol=0, atol=0)
    assert float(layer.recurrent.delay.detach()[0]) == 2.5  # evaluation rounds a copy


def test_triangle_lag_kernel_is_delrec_interpolation():
    d = torch.tensor([0.0, 2.3, 7.0], dtype=F64)
    width = torch.tensor([1.0, 1.5, 3.0], dtype=F64)
    m = triangle_lag_kernel(d, width)
    assert m.shape == (3, math.ceil(1 + 7 + 3) + 1)
    for o in range(3):
        for k in range(m.shape[1]):
            want = 0.0 if k == 0 else max(0.0, width[o] - abs(k - 1 - d[o])) / width[o] ** 2
            assert float(m[o, k]) == pytest.approx(float(want), abs=1e-15)
    # at integer delays a half-width of 1 is one tap: the integer kernel
    tri = triangle_lag_kernel(torch.tensor([0.0, 3.0], dtype=F64), torch.ones(2, dtype=F64))
    one = integer_lag_kernel(torch.tensor([0.0, 3.0], dtype=F64))
    torch.testing.assert_close(tri[:, : one.shape[1]], one)
    assert not tri[:, one.shape[1]:].any()


def test_plain_recurrence_is_one_step_lag():
    torch.manual_seed(2)
    layer = SteppedNeurons(4, neuron="lif", recurrent="plain", tau=2.0).double()
    x = torch.rand(2, 10, 4, dtype=F64) * 1.5
    ref = integer_delay_lif_loop(x, layer.recurrent.weight.detach(),
                                 torch.zeros(4, dtype=torch.int64), 2.0)
    torch.testing.assert_close(layer(x), ref, rtol=0, atol=0)


def test_learned_width_and_clamp():
    rc = RecurrentConnections(3, "delayed", learn_width=True, delay_init=(0.0, 1.0))
    rc.set_sigma(2.0)
    torch.testing.assert_close(rc.width(), torch.full((3,), 3.0))  # 1 + 2σ·sigmoid(0)
    with torch.no_grad():
        rc.delay.fill_(-0.4)
    rc.clamp_delays_()
    assert float(rc.delay.detach().min()) == 0.0
    assert [p.shape for p in rc.delay_parameters()] == [(3,), (3,)]


def test_recurrent_dropout_mask_is_per_sequence():
    layer = SteppedNeurons(8, neuron="lif", recurrent="plain", recurrent_dropout=0.5).train()
    mask = layer._drop_mask(torch.zeros(4, 7, 8))
    assert mask.shape == (4, 8) and set(mask.unique().tolist()) <= {0.0, 2.0}
    assert layer.eval()._drop_mask(torch.zeros(4, 7, 8)) is None


def test_sigma_schedule_matches_delrec():
    # σ_e = 10 · (0.95^(100/E))^e: SHD (E = 150) ends at ≈ 0.061, SSC (E = 100) at ≈ 0.062.
    assert recurrent_sigma_at(0, epochs=150) == 10.0
    assert recurrent_sigma_at(149, epochs=150) == pytest.approx(10 * 0.95 ** (100 / 150 * 149))
    assert recurrent_sigma_at(149, epochs=150) == pytest.approx(0.061, abs=1e-3)
    assert recurrent_sigma_at(99, epochs=100) == pytest.approx(0.062, abs=1e-3)


def test_float32_numba_matches_torch_reference():
    torch.manual_seed(5)
    layer = SteppedNeurons(16, neuron="se-adlif", recurrent="delayed", surrogate="slayer",
                           p1=5.0, p2=0.4, delay_init=(0.0, 4.0))
    x = torch.randn(3, 30, 16) * 2 + 0.5
    s, h = layer.run(x)
    coeffs = layer.adaptation.coefficients()
    s_ref, h_ref = layer_loop(x, layer.recurrent.weight, layer.recurrent.lag_kernel(), None,
                              *coeffs, neuron="se-adlif", reset="hard", q=120.0,
                              kind="slayer", p1=5.0, p2=0.4)
    assert float((s != s_ref).float().mean()) < 0.01

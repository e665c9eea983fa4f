"""DelayedLinear against independent references: dcls' Dcls1d ("gauss") and a naive delay loop.

Only the dcls comparisons need ``dcls``; without it they skip with the reason (a failure in CI)
and the rest of the file still runs.

Runtime: ~1-2 s on 2 cores.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikedelay.delays import (
    DelayedLinear,
    gaussian_kernel,
    integer_kernel,
    position_range,
    positions_to_delays,
)

DT = torch.float64  # compare in double so 1e-5 tests the math, not float32 rounding


@pytest.fixture(name="dcls")
def _dcls_modules():
    """``DCLS.construct.modules`` (pip install dcls==0.1.1, in the test extras)."""
    return pytest.importorskip("DCLS.construct.modules", reason="needs dcls==0.1.1 (test extras)")


def _dcls_reference(dcls, layer: DelayedLinear, sigma: float):
    """A Dcls1d holding the same weights/positions/σ, as the paper's code builds it."""
    ref = dcls.Dcls1d(
        layer.in_features, layer.out_features, kernel_count=layer.kernel_count,
        dilated_kernel_size=layer.max_delay, bias=False, version="gauss",
    ).to(DT)
    with torch.no_grad():
        ref.weight.copy_(layer.weight)
        ref.P.copy_(layer.position.unsqueeze(0))
        ref.SIG.fill_(sigma)
    ref.SIG.requires_grad_(False)
    return ref


@pytest.mark.parametrize("kernel_count", [1, 2])
@pytest.mark.parametrize("sigma", [12.0, 3.0, 0.9, 0.23, 0.0])
@pytest.mark.parametrize("max_delay", [25, 7])
def test_training_forward_and_grads_match_dcls(dcls, kernel_count, sigma, max_delay):
    torch.manual_seed(int(sigma * 100) + kernel_count + max_delay)
    layer = DelayedLinear(5, 4, max_delay, kernel_count=kernel_count, dtype=DT).train()
    with torch.no_grad():  # not only the init range: hit the clamp bounds exactly too
        lo, hi = position_range(max_delay)
        layer.position[0, 0, 0] = lo
        layer.position[1, 0, 0] = hi
    layer.set_sigma(sigma)
    ref = _dcls_reference(dcls, layer, sigma)
    x = torch.randn(3, 30, 5, dtype=DT, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)

    y = layer(x)
    left, right = max_delay - 1, (max_delay - 1) // 2
    y_ref = ref(F.pad(x_ref.transpose(1, 2), (left, right))).transpose(1, 2)
    assert y.shape == (3, 30 + (max_delay - 1) // 2, 4) == y_ref.shape
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)

    g = torch.randn_like(y)
    (y * g).sum().backward()
    (y_ref * g).sum().backward()
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.position.grad, ref.P.grad[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    assert layer.position.grad.abs().sum() > 0  # the test would catch a detached position


def test_float32_matches_dcls(dcls):
    torch.manual_seed(0)
    layer = DelayedLinear(6, 3, 25, kernel_count=2).train()
    layer.set_sigma(2.5)
    ref = dcls.Dcls1d(6, 3, kernel_count=2, dilated_kernel_size=25, bias=False, version="gauss")
    with torch.no_grad():
        ref.weight.copy_(layer.weight)
        ref.P.copy_(layer.position.unsqueeze(0))
        ref.SIG.fill_(2.5)
    x = torch.randn(2, 40, 6)
    y_ref = ref(F.pad(x.transpose(1, 2), (24, 12))).transpose(1, 2)
    torch.testing.assert_close(layer(x), y_ref, atol=1e-5, rtol=1e-4)


def _naive_delay(x, weight, delays, T_out):
    """y[t, j] = Σ_i Σ_c w[j,i,c] · x[t - d[j,i,c], i], zero outside 0 … T-1."""
    B, T, n_in = x.shape
    n_out, _, kc = weight.shape
    y = torch.zeros(B, T_out, n_out, dtype=x.dtype)
    for b in range(B):
        for t in range(T_out):
            for j in range(n_out):
                acc = 0.0
                for i in range(n_in):
                    for c in range(kc):
                        src = t - int(delays[j, i, c])
                        if 0 <= src < T:
                            acc += float(weight[j, i, c]) * float(x[b, src, i])
                y[b, t, j] = acc
    return y


@pytest.mark.parametrize("padding", ["reference", "causal"])
@pytest.mark.parametrize("delays", ["learned", "fixed"])
@pytest.mark.parametrize("kernel_count", [1, 2])
def test_eval_integer_delays_match_naive_loop(padding, delays, kernel_count):
    torch.manual_seed(1)
    K, T = 7, 9
    layer = DelayedLinear(3, 2, K, kernel_count=kernel_count, delays=delays, padding=padding,
                          dtype=DT).eval()
    x = torch.randn(2, T, 3, dtype=DT)
    y = layer(x)
    T_out = T + ((K - 1) // 2 if padding == "reference" else 0)
    assert y.shape == (2, T_out, 2) and layer.output_length(T) == T_out
    # delays from the stated convention d = K//2 - round(p), not from integer_delays()
    d = (K // 2 - torch.round(layer.position.detach())).long()
    torch.testing.assert_close(y, _naive_delay(x, layer.weight.detach(), d, T_out))


def test_none_is_linear_per_step_then_zero_tail():
    torch.manual_seed(2)
    layer = DelayedLinear(3, 2, 25, kernel_count=2, delays="none", dtype=DT)
    assert layer.position is None and layer.weight.shape == (2, 3, 1)
    assert layer.kernel_count == 1
    x = torch.randn(2, 9, 3, dtype=DT)
    for mode in (layer.train(), layer.eval()):
        y = mode(x)
        assert y.shape == (2, 9 + 12, 2)
        torch.testing.assert_close(y[:, :9], torch.einsum("bti,ji->btj", x, layer.weight[..., 0]))
        assert torch.all(y[:, 9:] == 0)
        torch.testing.assert_close(y, _naive_delay(x, layer.weight.detach(), torch.zeros(2, 3, 1),
                                                   21))
    causal = DelayedLinear(3, 2, 25, delays="none", padding="causal")
    assert causal(torch.randn(1, 9, 3)).shape == (1, 9, 2)
    assert sum(p.numel() for p in layer.parameters()) == 6


def test_integer_delays_convention_odd_K():
    K = 25
    layer = DelayedLinear(1, 5, K)
    with torch.no_grad():
        layer.position.copy_(torch.tensor([12.0, -12.0, 0.4, 0.6, -30.0]).view(5, 1, 1))
    assert layer.integer_delays().flatten().tolist() == [0, 24, 12, 11, 24]
    assert layer.integer_delays().dtype == torch.int64
    assert position_range(K) == (-12, 12)


def test_integer_delays_even_K_stay_in_range():
    K = 6  # positions -3 … 2 ↔ delays 5 … 0
    p = torch.tensor([-3.0, 2.0, 3.0, -10.0, 10.0])
    assert positions_to_delays(p, K).tolist() == [5, 0, 0, 5, 0]


def test_single_delay_shifts_a_pulse():
    """An isolated synapse with delay d moves an input pulse at step 3 to step 3 + d."""
    K = 9
    for d in range(K):
        layer = DelayedLinear(1, 1, K).eval()
        with torch.no_grad():
            layer.weight.fill_(1.0)
            layer.position.fill_(K // 2 - d)
        x = torch.zeros(1, 10, 1)
        x[0, 3, 0] = 1.0
        y = layer(x)[0, :, 0]
        expect = torch.zeros(10 + (K - 1) // 2)
        if 3 + d < expect.numel():
            expect[3 + d] = 1.0
        torch.testing.assert_close(y, expect)


def test_gaussian_kernel_tends_to_integer_kernel():
    """At integer positions and σ → 0.23 (σ_eff 0.5) most mass sits on the integer tap."""
    w = torch.randn(4, 3, 2, dtype=DT)
    delays = torch.randint(0, 11, (4, 3, 2))
    pos = (11 // 2 - delays).to(DT)
    g = gaussian_kernel(w, pos, 0.0, 11)  # σ_eff = 0.27: neighbours get exp(-6.9)
    torch.testing.assert_close(g, integer_kernel(w, delays, 11), atol=3e-3 * w.abs().max().item(),
                               rtol=0)


def test_fixed_mode_stays_frozen():
    torch.manual_seed(3)
    layer = DelayedLinear(4, 3, 11, delays="fixed")
    assert "position" in dict(layer.named_buffers())
    assert "position" not in dict(layer.named_parameters())
    before = layer.integer_delays().clone()
    assert before.min() >= 0 and before.max() <= 10
    for _ in range(3):  # plain gradient steps on every parameter the layer exposes
        layer.zero_grad()
        layer.train()(torch.randn(2, 12, 4)).pow(2).sum().backward()
        with torch.no_grad():
            for p in layer.parameters():
                p -= 0.5 * p.grad
        layer.clamp_positions_()
    assert torch.equal(layer.integer_delays(), before)
    # training mode also uses integer taps (not a Gaussian): output equals eval output
    x = torch.randn(2, 12, 4)
    torch.testing.assert_close(layer.train()(x), layer.eval()(x))
    assert "position" in layer.state_dict()


def test_fixed_delays_cover_the_range():
    torch.manual_seed(4)
    d = DelayedLinear(50, 50, 5, delays="fixed").integer_delays()
    counts = torch.bincount(d.flatten(), minlength=5)
    assert counts.numel() == 5 and counts.min() > 400  # 2500 draws, 500 expected each


def test_init_distributions():
    torch.manual_seed(5)
    layer = DelayedLinear(140, 256, 25, kernel_count=2)
    bound = (6.0 / (140 * 2)) ** 0.5  # Kaiming uniform, ReLU gain, fan_in = in · kc
    w = layer.weight.detach()
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    assert abs(w.std().item() - bound / 3**0.5) < 0.02 * bound
    p = layer.position.detach()
    assert p.min() >= -12 and p.max() <= 12 and p.min() < -11.9 and p.max() > 11.9
    assert abs(p.mean().item()) < 0.2
    assert float(layer.sigma) == 12.0


def test_sigma_buffer_and_clamp():
    layer = DelayedLinear(2, 2, 25)
    layer.set_sigma(0.23)
    assert float(layer.state_dict()["sigma"]) == pytest.approx(0.23)
    assert "sigma" not in dict(layer.named_parameters())
    with torch.no_grad():
        layer.position.fill_(40.0)
    layer.clamp_positions_()
    assert torch.all(layer.position == 12.0)
    assert "max_delay=25" in repr(layer) and "delays=learned" in repr(layer)


def test_kernel_count_taps_add_up():
    w = torch.tensor([[[1.0, 2.0]]])
    k = integer_kernel(w, torch.tensor([[[3, 3]]]), 5)
    assert k.flatten().tolist() == [0.0, 3.0, 0.0, 0.0, 0.0]

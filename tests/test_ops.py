"""Fast kernels (spikedelay.ops) against independent references: naive loops, conv1d, dcls-built
kernels, finite differences. Forward and gradients, several shapes and paddings. The fused
kernels run under every backend that runs on CPU (``kernel_backend``: numba, torch and Triton in
its interpreter). ~1 min, plus about a minute of numba compilation the first time (cached in
__pycache__ afterwards).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from reference_loops import lif_spikes_loop

from spikedelay.delays import delay_conv, gaussian_kernel
from spikedelay.ops import _lif_torch as lif_ops
from spikedelay.ops.delay_conv import fft_delay_conv, fft_size
from spikedelay.ops.lif import fused_li_sequence, fused_lif_sequence

DT = torch.float64


# -- delay convolution ----------------------------------------------------------------------------
def _naive_delay_conv(x, kernel, left, right):
    """Sum over taps of shifted inputs: y[b, t', j] = Σ_k Σ_i kernel[j, i, k] · xpad[b, t'+k, i]."""
    xpad = torch.cat([x.new_zeros(x.shape[0], left, x.shape[2]), x,
                      x.new_zeros(x.shape[0], right, x.shape[2])], dim=1)
    taps = kernel.shape[-1]
    t_out = xpad.shape[1] - taps + 1
    y = x.new_zeros(x.shape[0], max(t_out, 0), kernel.shape[0])
    for k in range(taps):
        y = y + xpad[:, k : k + t_out] @ kernel[:, :, k].T
    return y


def _python_loop_conv(x, kernel, left, right):
    """The definition with scalar loops (tiny sizes only)."""
    b_, t_, i_ = x.shape
    j_, _, k_ = kernel.shape
    t_out = t_ + left + right - k_ + 1
    y = torch.zeros(b_, t_out, j_, dtype=x.dtype)
    for b in range(b_):
        for t in range(t_out):
            for j in range(j_):
                acc = 0.0
                for k in range(k_):
                    src = t + k - left
                    if 0 <= src < t_:
                        for i in range(i_):
                            acc += float(kernel[j, i, k]) * float(x[b, src, i])
                y[b, t, j] = acc
    return y


CASES = [
    # (B, T, in, out, K, left, right)
    (2, 30, 5, 4, 25, 24, 12),  # the reference padding
    (3, 17, 4, 6, 7, 6, 0),  # causal
    (1, 9, 3, 2, 25, 24, 12),  # sequence shorter than the kernel
    (2, 12, 3, 3, 6, 2, 4),  # even K, little left padding
    (2, 10, 2, 3, 5, 8, 7),  # more padding than the kernel reaches on both sides
    (2, 1, 3, 2, 4, 3, 1),  # one step
    (2, 8, 3, 2, 1, 0, 0),  # one tap: a linear layer
]


def _inputs(kind, shape, g):
    """Dense values (matmul transform), binary spikes or sparse counts (sparse transform)."""
    if kind == "dense":
        return torch.rand(*shape, generator=g, dtype=DT)
    x = (torch.rand(*shape, generator=g) < 0.08).to(DT)
    if kind == "counts":
        x = x * torch.randint(1, 4, shape, generator=g).to(DT)
    return x


INPUT_KINDS = ["dense", "spikes", "counts"]


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_input_kind_selects_the_transform(kind):
    from spikedelay.ops import dispatch

    def _sparse_events(t):
        return dispatch.select("delay_conv", t).sparse_events(t)

    x = _inputs(kind, (4, 50, 20), torch.Generator().manual_seed(0))
    events = _sparse_events(x)
    assert (events is not None) == (kind != "dense")
    assert _sparse_events(x.to(torch.bfloat16)) is None
    if events is not None:  # the event list is the input's non-zeros in (b, t, i) order
        ptr, index, value = events
        nz = x.nonzero()
        assert ptr.tolist() == [0, *torch.cumsum(torch.bincount(nz[:, 0], minlength=4), 0)]
        torch.testing.assert_close(index.long(), nz[:, 1] * 20 + nz[:, 2])
        torch.testing.assert_close(value, x[x != 0])


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("case", CASES)
def test_fft_conv_forward_matches_naive_and_conv1d(case, kind):
    b, t, i, o, k, left, right = case
    g = torch.Generator().manual_seed(sum(case))
    x = _inputs(kind, (b, t, i), g)
    kernel = torch.randn(o, i, k, generator=g, dtype=DT)
    y = fft_delay_conv(x, kernel, left, right)
    ref = _naive_delay_conv(x, kernel, left, right)
    assert y.shape == ref.shape == (b, t + left + right - k + 1, o)
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)
    direct = F.conv1d(F.pad(x.transpose(1, 2), (left, right)), kernel).transpose(1, 2)
    torch.testing.assert_close(y, direct, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("density", [0.4, 0.1])  # the dense and the sparse transform
def test_fft_conv_matches_scalar_loop(density):
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(2, 11, 3, generator=g) < density).to(DT)
    kernel = torch.randn(2, 3, 5, generator=g, dtype=DT)
    torch.testing.assert_close(fft_delay_conv(x, kernel, 4, 2), _python_loop_conv(x, kernel, 4, 2))


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("case", CASES[:5])
def test_fft_conv_gradients_match_naive(case, kind):
    b, t, i, o, k, left, right = case
    g = torch.Generator().manual_seed(100 + sum(case))
    x1 = _inputs(kind, (b, t, i), g).requires_grad_()
    k1 = torch.randn(o, i, k, generator=g, dtype=DT).requires_grad_()
    x2, k2 = x1.detach().clone().requires_grad_(), k1.detach().clone().requires_grad_()
    w = torch.randn(b, t + left + right - k + 1, o, generator=g, dtype=DT)
    (fft_delay_conv(x1, k1, left, right) * w).sum().backward()
    (_naive_delay_conv(x2, k2, left, right) * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(k1.grad, k2.grad, rtol=1e-10, atol=1e-10)


def test_fft_conv_gradcheck_finite_differences():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 9, 3, generator=g, dtype=DT, requires_grad=True)
    kernel = torch.randn(2, 3, 6, generator=g, dtype=DT, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w: fft_delay_conv(a, w, 5, 2), (x, kernel))


@pytest.mark.parametrize("sigma", [12.0, 1.5, 0.23])
def test_gaussian_delay_layer_float32_fft_vs_direct(sigma):
    """The training path in float32 at the SHD sizes' scale: FFT route vs conv1d within 1e-5."""
    g = torch.Generator().manual_seed(int(sigma * 10))
    k = 25
    w1 = (torch.rand(32, 24, 1, generator=g) - 0.5).requires_grad_()
    p1 = ((torch.rand(32, 24, 1, generator=g) - 0.5) * (k - 1)).requires_grad_()
    w2, p2 = w1.detach().clone().requires_grad_(), p1.detach().clone().requires_grad_()
    x = (torch.rand(4, 60, 24, generator=g) < 0.1).float()
    gy = torch.randn(4, 60 + 12, 32, generator=g)
    y1 = delay_conv(x, gaussian_kernel(w1, p1, sigma, k), 24, 12, method="fft")
    y2 = delay_conv(x, gaussian_kernel(w2, p2, sigma, k), 24, 12, method="direct")
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    (y1 * gy).sum().backward()
    (y2 * gy).sum().backward()
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-4)


def test_delay_conv_auto_uses_direct_for_short_kernels(monkeypatch):
    import spikedelay.ops.delay_conv as ops_conv

    calls = []
    monkeypatch.setattr(ops_conv, "fft_delay_conv", lambda *a: calls.append(a) or a[0])
    x, kernel3, kernel25 = torch.rand(1, 4, 2), torch.rand(3, 2, 3), torch.rand(3, 2, 25)
    delay_conv(x, kernel3, 2, 1)
    assert not calls
    delay_conv(x, kernel25, 24, 12)
    assert len(calls) == 1


def test_fft_size_has_no_wraparound():
    for t, k, left, right in [(100, 25, 24, 12), (5, 25, 24, 12), (30, 7, 6, 0), (9, 6, 2, 4)]:
        n = fft_size(t, k, left, right)
        s = k - 1 - left
        assert n >= t + k - 1 - s and n >= s + t + left + right - k + 1


def test_fft_conv_rejects_mismatched_kernel():
    with pytest.raises(ValueError, match="input features"):
        fft_delay_conv(torch.rand(1, 5, 3), torch.rand(2, 4, 3), 2, 1)


# -- fused LIF / LI -------------------------------------------------------------------------------
class _ATan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, alpha):
        ctx.save_for_backward(u)
        ctx.alpha = alpha
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        a = ctx.alpha
        return g * (a / 2) / (1 + (math.pi / 2 * a * u) ** 2), None


def _lif_autograd(x, tau, thr, alpha):
    """SpikingJelly's step written out, autograd through every step (detached hard reset)."""
    v = torch.zeros_like(x[:, 0])
    out = []
    for x_t in x.unbind(1):
        h = v - v / tau + x_t
        s = _ATan.apply(h - thr, alpha)
        v = h * (1 - s.detach())
        out.append(s)
    return torch.stack(out, 1)


@pytest.mark.usefixtures("kernel_backend")  # numba, torch, Triton (interpreted)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau,thr,alpha", [(1.005, 1.0, 5.0), (2.0, 1.0, 5.0), (1.5, 0.5, 2.0)])
def test_fused_lif_forward_and_backward(dtype, tau, thr, alpha):
    g = torch.Generator().manual_seed(int(tau * 100))
    x = (torch.rand(3, 40, 7, generator=g, dtype=torch.float64) * 1.2 * thr).to(dtype)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    s1 = fused_lif_sequence(x1, tau, thr, alpha)
    s2 = _lif_autograd(x2, tau, thr, alpha)
    assert 0 < s1.sum() < s1.numel()
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    torch.testing.assert_close(s1, lif_spikes_loop(x.double(), tau, thr).to(dtype), rtol=0, atol=0)
    w = torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype)
    (s1 * w).sum().backward()
    (s2 * w).sum().backward()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(x1.grad, x2.grad, rtol=tol, atol=tol)


def test_fused_lif_torch_fallback_equals_numba():
    g = torch.Generator().manual_seed(5)
    x = torch.rand(4, 30, 6, generator=g, dtype=DT) * 1.3
    h_t, s_t = lif_ops.lif_forward(x, 1.5, 1.0)
    s_n = fused_lif_sequence(x, 1.5, 1.0)
    torch.testing.assert_close(s_t, s_n, rtol=0, atol=0)
    gs = torch.randn(x.shape, generator=g, dtype=DT)
    xr = x.clone().requires_grad_()
    fused_lif_sequence(xr, 1.5, 1.0, 5.0).backward(gs)
    torch.testing.assert_close(lif_ops.lif_backward(gs, h_t, 1.5, 1.0, 5.0), xr.grad)
    v_t = lif_ops.li_forward(x, 1.5)
    torch.testing.assert_close(v_t, fused_li_sequence(x, 1.5), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(lif_ops.li_backward(gs, 1.5),
                               torch.autograd.grad(fused_li_sequence(xr, 1.5), xr, gs)[0])


@pytest.mark.usefixtures("kernel_backend")  # numba, torch, Triton (interpreted)
def test_fused_li_matches_loop_and_gradcheck():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 15, 3, generator=g, dtype=DT, requires_grad=True)
    v = fused_li_sequence(x, 1.5)
    ref, prev = torch.zeros_like(x), torch.zeros(2, 3, dtype=DT)
    for t in range(15):
        prev = prev - prev / 1.5 + x[:, t].detach()
        ref[:, t] = prev
    torch.testing.assert_close(v.detach(), ref)
    assert torch.autograd.gradcheck(lambda a: fused_li_sequence(a, 1.5), (x,))


@pytest.mark.usefixtures("kernel_backend")  # numba, torch, Triton (interpreted)
def test_fused_handles_empty_and_noncontiguous():
    assert fused_lif_sequence(torch.zeros(0, 5, 3), 2.0).shape == (0, 5, 3)
    x = torch.rand(6, 3, 10, dtype=DT).transpose(1, 2)  # (6, 10, 3), not contiguous
    torch.testing.assert_close(fused_lif_sequence(x, 1.5), lif_spikes_loop(x, 1.5, 1.0))
    with pytest.raises(ValueError, match=r"\(B, T, C\)"):
        fused_lif_sequence(torch.zeros(3, 4), 2.0)


# -- fused Gaussian kernel ------------------------------------------------------------------------
@pytest.mark.usefixtures("kernel_backend")  # numba, torch, Triton (interpreted)
@pytest.mark.parametrize("sigma", [0.0, 0.23, 1.0, 12.0, 100.0])
def test_fused_gaussian_kernel_float32_close_to_float64_formula(sigma):
    """The taps come from a recurrence (4 exps per synapse, not K): float32 rounding must stay
    far below the 1e-4 numerics budget (measured 1e-7..4e-6), at the edges of the range too."""
    from spikedelay.delays import gaussian_kernel
    from spikedelay.ops.gaussian import fused_gaussian_kernel

    g = torch.Generator().manual_seed(5)
    w = torch.randn(7, 9, 1, generator=g, dtype=DT)
    p = torch.rand(7, 9, 1, generator=g, dtype=DT) * 24 - 12
    p[0, :3, 0] = torch.tensor([-12.0, 12.0, 0.5], dtype=DT)  # edges and a half-way centre
    ref = gaussian_kernel(w, p, sigma, 25, fused=False)
    got = fused_gaussian_kernel(w.float(), p.float(), sigma + 0.27, 25).double()
    assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()


@pytest.mark.usefixtures("kernel_backend")  # numba, torch, Triton (interpreted)
@pytest.mark.parametrize("kernel_count", [1, 2])
@pytest.mark.parametrize("sigma", [12.0, 1.0, 0.23])
def test_fused_gaussian_kernel_matches_dcls(kernel_count, sigma):
    from DCLS.construct.modules import Dcls1d

    from spikedelay.ops.gaussian import fused_gaussian_kernel

    k = 25
    torch.manual_seed(int(sigma * 100) + kernel_count)
    conv = Dcls1d(6, 5, kernel_count=kernel_count, dilated_kernel_size=k, bias=False,
                  version="gauss").double()
    with torch.no_grad():
        conv.P.uniform_(-(k // 2), k // 2)
        conv.SIG.fill_(sigma)
    conv.SIG.requires_grad_(False)
    ref = conv.DCK(conv.weight, conv.P, conv.SIG)  # (out, in, K)
    w = conv.weight.detach().clone().requires_grad_()
    p = conv.P.detach()[0].clone().requires_grad_()
    out = fused_gaussian_kernel(w, p, sigma + 0.27, k)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn(ref.shape, dtype=DT)
    ref_w, ref_p = torch.autograd.grad(ref, (conv.weight, conv.P), g)
    got_w, got_p = torch.autograd.grad(out, (w, p), g)
    torch.testing.assert_close(got_w, ref_w, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_p, ref_p[0], rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("kernel_backend")  # numba, torch, Triton (interpreted)
def test_fused_gaussian_kernel_gradcheck():
    from spikedelay.ops.gaussian import fused_gaussian_kernel

    g = torch.Generator().manual_seed(11)
    w = torch.randn(3, 2, 2, generator=g, dtype=DT, requires_grad=True)
    p = ((torch.rand(3, 2, 2, generator=g, dtype=DT) - 0.5) * 6).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: fused_gaussian_kernel(a, b, 1.3, 7), (w, p))


# -- fused masked BatchNorm, and BatchNorm -> LIF ------------------------------------------------
def _bn_reference(x, mask, weight, bias, eps):
    """Masked BatchNorm written out with autograd (statistics over valid steps only)."""
    m = mask.to(x.dtype).unsqueeze(-1)
    n = m.sum()
    mean = (x * m).sum((0, 1)) / n
    var = (((x - mean) ** 2) * m).sum((0, 1)) / n
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


@pytest.mark.usefixtures("kernel_backend")  # numba, torch, Triton (interpreted)
@pytest.mark.parametrize("lengths", [[9, 9, 9, 9], [9, 5, 7, 1]])
def test_fused_masked_batch_norm_matches_reference(lengths):
    from spikedelay.ops.batchnorm import fused_masked_batch_norm

    g = torch.Generator().manual_seed(len(set(lengths)))
    x = (torch.randn(4, 9, 6, generator=g, dtype=DT) * 2 + 1).requires_grad_()
    w = (torch.rand(6, generator=g, dtype=DT) + 0.5).requires_grad_()
    b = torch.randn(6, generator=g, dtype=DT, requires_grad=True)
    mask = torch.arange(9)[None, :] < torch.tensor(lengths)[:, None]
    y, mean, var = fused_masked_batch_norm(x, mask, w, b, 1e-5)
    ref = _bn_reference(x, mask, w, b, 1e-5)
    torch.testing.assert_close(y, ref)
    if all(n == 9 for n in lengths):  # no padding: torch's own BatchNorm
        bn = torch.nn.functional.batch_norm(x.reshape(-1, 6), None, None, w, b, training=True)
        torch.testing.assert_close(y, bn.view_as(y))
    gy = torch.randn(y.shape, generator=g, dtype=DT)
    got = torch.autograd.grad(y, (x, w, b), gy)
    want = torch.autograd.grad(ref, (x, w, b), gy)
    for a, c in zip(got, want, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)


@pytest.mark.usefixtures("kernel_backend")  # numba, torch, Triton (interpreted)
@pytest.mark.parametrize("tau", [1.005, 2.0])
def test_fused_batch_norm_lif_equals_composition(tau):
    from spikedelay.ops.batchnorm import fused_batch_norm_lif

    g = torch.Generator().manual_seed(int(tau * 10))
    x = (torch.randn(3, 20, 5, generator=g, dtype=DT)).requires_grad_()
    w = (torch.rand(5, generator=g, dtype=DT) + 0.5).requires_grad_()
    b = (torch.rand(5, generator=g, dtype=DT) * 0.5).requires_grad_()
    mask = torch.arange(20)[None, :] < torch.tensor([20, 13, 6])[:, None]
    s, _, _ = fused_batch_norm_lif(x, mask, w, b, 1e-5, tau, 1.0, 5.0)
    ref = _lif_autograd(_bn_reference(x, mask, w, b, 1e-5), tau, 1.0, 5.0)
    assert 0 < s.sum() < s.numel()
    torch.testing.assert_close(s, ref, rtol=0, atol=0)
    gs = torch.randn(s.shape, generator=g, dtype=DT)
    got = torch.autograd.grad(s, (x, w, b), gs)
    want = torch.autograd.grad(ref, (x, w, b), gs)
    for a, c in zip(got, want, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)

"""The per-channel delay op (axonal/dendritic delays): every backend against a scalar loop.

The reference is the definition, ``y[b, t', c] = Σ_k kernel[c, k] · xpad[b, t' + k, c]``,
written as Python loops over scalars (no convolution, no padding op); gradients are checked by
finite differences (``gradcheck``) in float64 and against autograd through that loop.
"""

from __future__ import annotations

import pytest
import torch

from spikedelay.ops import dispatch
from spikedelay.ops.channel_delay import channel_delay


def delay_loop(x: torch.Tensor, kernel: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Scalar loops over the definition; differentiable (autograd through indexing)."""
    n_b, n_t, n_c = x.shape
    taps = kernel.shape[1]
    n_out = n_t + left + right - taps + 1
    rows = []
    for b in range(n_b):
        steps = []
        for t in range(n_out):
            chans = []
            for c in range(n_c):
                acc = x.new_zeros(())
                for k in range(taps):
                    s = t + k - left  # xpad[t + k] = x[t + k - left], zero outside x
                    if 0 <= s < n_t:
                        acc = acc + kernel[c, k] * x[b, s, c]
                chans.append(acc)
            steps.append(torch.stack(chans))
        rows.append(torch.stack(steps))
    return torch.stack(rows)


PADS = [(4, 2), (4, 0), (0, 0), (1, 3), (6, 6)]  # reference, causal, none, odd, wider than K-1


@pytest.mark.parametrize(("left", "right"), PADS)
def test_forward_and_gradients_equal_the_loop(kernel_backend, left, right):
    g = torch.Generator().manual_seed(left * 10 + right)
    x = torch.randn(2, 6, 3, dtype=torch.float64, generator=g)
    kernel = torch.rand(3, 5, dtype=torch.float64, generator=g)
    kernel[1, 2] = 0.0
    kernel[:, 0] = 0.0  # a tap that is zero in every channel: the numba kernel skips it
    xa, ka = x.clone().requires_grad_(), kernel.clone().requires_grad_()
    xb, kb = x.clone().requires_grad_(), kernel.clone().requires_grad_()
    y = channel_delay(xa, ka, left, right)
    want = delay_loop(xb, kb, left, right)
    assert y.shape == want.shape == (2, 6 + left + right - 4, 3)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    grad = torch.randn(y.shape, dtype=torch.float64, generator=g)
    y.backward(grad)
    want.backward(grad)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ka.grad, kb.grad, rtol=1e-12, atol=1e-12)


def test_gradcheck(kernel_backend):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    kernel = torch.randn(3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    # Triton's interpreter takes ~0.1 s a launch: a random projection of the Jacobian there
    assert torch.autograd.gradcheck(lambda a, w: channel_delay(a, w, 2, 1), (x, kernel),
                                    fast_mode=kernel_backend == "triton")


@pytest.mark.parametrize("which", ["x", "kernel"])
def test_only_the_gradients_asked_for(kernel_backend, which):
    # axonal first layer: the input spikes need no gradient, the kernel does
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 7, 3, dtype=torch.float64, generator=g)
    kernel = torch.rand(3, 4, dtype=torch.float64, generator=g)
    (x if which == "x" else kernel).requires_grad_()
    channel_delay(x, kernel, 3, 1).sum().backward()
    wanted, other = (x, kernel) if which == "x" else (kernel, x)
    assert other.grad is None
    ref = wanted.detach().clone().requires_grad_()
    args = (ref, kernel) if which == "x" else (x, ref)
    delay_loop(*args, 3, 1).sum().backward()
    torch.testing.assert_close(wanted.grad, ref.grad, rtol=1e-12, atol=1e-12)


def test_float32_spikes_match_float64(kernel_backend):
    # the SSC shape in miniature: spike input, a normalised bump per channel
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(4, 20, 70, generator=g) < 0.1).float()
    kernel = torch.softmax(torch.randn(70, 9, generator=g), 1)
    y = channel_delay(x, kernel, 8, 4)
    want = channel_delay(x.double(), kernel.double(), 8, 4)
    torch.testing.assert_close(y.double(), want, rtol=1e-6, atol=1e-6)


def test_cpu_auto_picks_numba(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    assert dispatch.backend_name("channel_delay", torch.zeros(1, 2, 3)) == "numba"
    assert dispatch.backend_name("channel_delay", torch.zeros(1, dtype=torch.bfloat16)) == "torch"


@pytest.mark.parametrize(("x_shape", "k_shape", "pads", "match"), [
    ((2, 5), (3, 4), (3, 1), "expects x"),
    ((2, 5, 3), (4, 4), (3, 1), "expects x"),
    ((2, 5, 3), (3, 4), (-1, 1), "must be >= 0"),
    ((2, 1, 3), (3, 4), (0, 0), "at least one output step"),
])
def test_bad_shapes_are_one_clear_error(x_shape, k_shape, pads, match):
    with pytest.raises(ValueError, match=match):
        channel_delay(torch.zeros(x_shape), torch.zeros(k_shape), *pads)


def test_dtype_mismatch_is_one_clear_error():
    with pytest.raises(ValueError, match="share dtype"):
        channel_delay(torch.zeros(2, 5, 3), torch.zeros(3, 4, dtype=torch.float64), 3, 1)

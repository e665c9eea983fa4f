"""The two layouts of the DFT delay convolution are both exact (float64, against conv1d).

The device layout (what CUDA runs: one wide GEMM per transform, the DFT length padded to a
multiple of 8) is forced on CPU tensors with ``SPIKEDELAY_KERNELS=torch``; the CPU layout
(chunks, sparse transform, per-sample inverse) with ``numba``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikedelay.ops import delay_conv as dc

CASES = [  # (B, T, in, out, K, left, right)
    (2, 30, 5, 4, 25, 24, 12),
    (3, 17, 4, 6, 7, 6, 0),
    (1, 9, 3, 2, 25, 24, 12),
    (2, 12, 3, 3, 6, 2, 4),
    (2, 10, 2, 3, 5, 8, 7),
]


def _conv1d(x, kernel, left, right):
    return F.conv1d(F.pad(x.transpose(1, 2), (left, right)), kernel).transpose(1, 2)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_layout_equals_conv1d_forward_and_backward(monkeypatch, backend, sparse, case):
    monkeypatch.setenv("SPIKEDELAY_KERNELS", backend)
    b, t, i, o, k, left, right = case
    g = torch.Generator().manual_seed(sum(case))
    x = torch.rand(b, t, i, generator=g, dtype=torch.float64)
    if sparse:
        x = (x < 0.1).double()
    kernel = torch.randn(o, i, k, generator=g, dtype=torch.float64)
    x1, k1 = x.clone().requires_grad_(), kernel.clone().requires_grad_()
    x2, k2 = x.clone().requires_grad_(), kernel.clone().requires_grad_()
    y = dc.fft_delay_conv(x1, k1, left, right)
    ref = _conv1d(x2, k2, left, right)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    assert y.is_contiguous()
    gy = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(y, (x1, k1), gy)
    want = torch.autograd.grad(ref, (x2, k2), gy)
    for a, c in zip(got, want, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-11, atol=1e-11)


def test_device_layout_pads_to_a_multiple_of_8_and_runs_in_one_chunk(monkeypatch):
    seen = []
    build = dc._dft_matrices

    def record(n, *rest):
        seen.append(n)
        return build(n, *rest)

    monkeypatch.setattr(dc, "_dft_matrices", record)
    x = torch.rand(2, 29, 3, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(4, 3, 25, dtype=torch.float64)
    minimum = dc.fft_size(29, 25, 24, 12)
    monkeypatch.setenv("SPIKEDELAY_KERNELS", "torch")
    dc.fft_delay_conv(x, kernel, 24, 12).sum().backward()
    monkeypatch.setenv("SPIKEDELAY_KERNELS", "numba")
    dc.fft_delay_conv(x, kernel, 24, 12)
    assert minimum % 8 != 0 and seen == [-(-minimum // 8) * 8] * 2 + [minimum]


def test_float32_device_layout_is_float32_exact(monkeypatch):
    """The wide GEMM keeps float32's error (≈1e-6 of the peak), far from TF32's ≈5e-4."""
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(4, 100, 32, generator=g) < 0.1).float()
    kernel = torch.randn(16, 32, 25, generator=g)
    ref = _conv1d(x.double(), kernel.double(), 24, 12)
    monkeypatch.setenv("SPIKEDELAY_KERNELS", "torch")
    y = dc.fft_delay_conv(x, kernel, 24, 12)
    assert (y.double() - ref).abs().max() <= 5e-6 * ref.abs().max()


@pytest.mark.parametrize("keep", [True, False])
def test_kept_kernel_spectrum_gives_the_same_gradients(monkeypatch, keep):
    """The backward's input gradient from the forward's kernel spectrum (small batches) or a
    recomputed one (large batches), over several spectrum chunks: both equal conv1d's."""
    monkeypatch.setenv("SPIKEDELAY_KERNELS", "numba")
    monkeypatch.setattr(dc, "KEEP_SPECTRUM_MAX_BATCH_PER_TAP", 10**6 if keep else 0)
    b, t, i, o, k, left, right = 2, 30, 256, 256, 25, 24, 12
    assert dc.keep_kernel_spectrum(b, k) == keep
    rows = 3 * (dc.fft_size(t, k, left, right) // 2 + 1)
    assert dc._row_chunk(rows, b, i, o) < rows  # more than one chunk
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(b, t, i, generator=g, dtype=torch.float64) < 0.1).double()
    kernel = torch.randn(o, i, k, generator=g, dtype=torch.float64)
    w = torch.randn(b, t + left + right - k + 1, o, generator=g, dtype=torch.float64)
    x1, k1 = x.clone().requires_grad_(), kernel.clone().requires_grad_()
    x2, k2 = x.clone().requires_grad_(), kernel.clone().requires_grad_()
    (dc.fft_delay_conv(x1, k1, left, right) * w).sum().backward()
    (_conv1d(x2, k2, left, right) * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0, atol=1e-11)
    torch.testing.assert_close(k1.grad, k2.grad, rtol=0, atol=1e-11)


def test_keep_kernel_spectrum_rule():
    assert dc.keep_kernel_spectrum(64, 25) and not dc.keep_kernel_spectrum(256, 25)

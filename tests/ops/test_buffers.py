"""Reused CPU memory: pooled outputs and per-thread scratch buffers."""

from __future__ import annotations

import gc

import torch

from spikedelay.ops import buffers

BIG = (64, 64, 128)  # 2 MB of float32: pooled


def test_a_freed_output_is_reused_for_the_same_size_only():
    buffers.release_pool()
    a = buffers.pooled_empty(BIG, torch.empty(0))
    ptr = a.data_ptr()
    b = buffers.pooled_empty(BIG, torch.empty(0))
    assert b.data_ptr() != ptr  # both alive: never the same memory
    del a
    gc.collect()
    c = buffers.pooled_empty(BIG, torch.empty(0))
    assert c.data_ptr() == ptr  # the freed block came back
    other = buffers.pooled_empty((64, 64, 129), torch.empty(0))
    assert other.data_ptr() not in (ptr, b.data_ptr())
    assert c.shape == BIG and c.dtype == torch.float32 and c.is_contiguous()
    assert c._base is None  # a base tensor: autograd lets a custom Function's output be scaled
    buffers.release_pool()


def test_a_slightly_smaller_request_takes_an_idle_larger_block():
    """Successive layers' outputs (a few steps longer each) share blocks: up to POOL_SPARE."""
    buffers.release_pool()
    big = buffers.pooled_empty((64, 70, 128), torch.empty(0))
    ptr = big.data_ptr()
    del big
    gc.collect()
    near = buffers.pooled_empty((64, 64, 128), torch.empty(0))  # 70/64 ≤ 1.25: reuses it
    assert near.data_ptr() == ptr and near.shape == (64, 64, 128)
    del near
    gc.collect()
    far = buffers.pooled_empty((64, 40, 128), torch.empty(0))  # 70/40 > 1.25: its own block
    assert far.data_ptr() != ptr
    buffers.release_pool()


def test_small_or_non_cpu_requests_are_plain_tensors():
    small = buffers.pooled_empty((4, 4), torch.empty(0, dtype=torch.float64))
    assert small.dtype == torch.float64 and small.shape == (4, 4)
    half = buffers.pooled_empty(BIG, torch.empty(0, dtype=torch.bfloat16))  # no numpy dtype
    assert half.dtype == torch.bfloat16 and half.shape == BIG


def test_idle_blocks_beyond_the_limit_go_back_to_the_system(monkeypatch):
    buffers.release_pool()
    monkeypatch.setattr(buffers, "POOL_IDLE_LIMIT", 3 << 20)  # room for one 2 MB block
    a, b = (buffers.pooled_empty(BIG, torch.empty(0)) for _ in range(2))
    ptrs = {a.data_ptr(), b.data_ptr()}
    del a, b
    gc.collect()
    assert buffers._idle_bytes == 2 << 20
    kept = buffers.pooled_empty(BIG, torch.empty(0))
    assert kept.data_ptr() in ptrs
    assert buffers._idle_bytes == 0
    buffers.release_pool()


def test_pooled_outputs_carry_exact_values_through_autograd():
    """The pooled tensors of the numba kernels hold the same numbers as fresh ones."""
    from spikedelay.neurons import LIFParameters, lif_sequence
    from spikedelay.ops.lif import fused_lif_sequence

    x = torch.randn(16, 40, 300, dtype=torch.float64, requires_grad=True)
    for _ in range(3):  # later rounds reuse the blocks of the first
        s = fused_lif_sequence(x, 1.5, 1.0, 5.0)
        (grad,) = torch.autograd.grad((s * torch.arange(300.0, dtype=x.dtype)).sum(), x)
        ref = lif_sequence(x, LIFParameters(1.5, 1.0, 5.0), fused=False)
        (ref_grad,) = torch.autograd.grad((ref * torch.arange(300.0, dtype=x.dtype)).sum(), x)
        assert torch.equal(s, ref)
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-12)


def test_scratch_is_one_buffer_per_name_that_grows():
    like = torch.empty(0)
    a = buffers.scratch("test-a", (10, 10), like)
    b = buffers.scratch("test-a", (5, 4), like)
    assert b.data_ptr() == a.data_ptr() and b.shape == (5, 4)
    c = buffers.scratch("test-b", (5, 4), like)
    assert c.data_ptr() != a.data_ptr()
    d = buffers.scratch("test-a", (20, 20), like)  # larger: a new buffer
    assert d.shape == (20, 20) and d.numel() == 400


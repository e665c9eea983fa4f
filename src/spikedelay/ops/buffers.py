"""Memory the CPU kernels reuse from step to step instead of asking ``malloc`` again.

Why: a training step at the SHD recipe allocated ≈ 1.2 GB in blocks of 3–31 MB (chunk
temporaries and (B, T, C) activations) and freed them again. glibc serves blocks of that size
from its heap once the first one is freed (its mmap threshold rises to 32 MB), where blocks of
mixed sizes split and fragment it: the process peak grew to twice the live memory. Served by
``mmap`` instead (a fixed threshold) they do not fragment, but every step then faults in ≈ 1 GB
of fresh pages (twice the step time). Two remedies here keep both the pages and the sizes:

* :func:`scratch`: per-thread buffers for temporaries that never leave a kernel call (the delay
  convolution's spectrum chunks), one per role, grown when a larger one is asked for;
* :func:`pooled_empty`: outputs (activations, gradients) whose lifetime autograd decides. Each
  comes from a free list of blocks of its size class (:func:`size_class`: at most 1/8 larger,
  or an idle block up to :data:`POOL_SPARE` larger: successive layers' outputs, a few steps
  longer each, then share blocks) and goes back to it when the tensor is freed; a step asks for
  about the sizes of the one before, so after the first few steps nothing is allocated. Idle
  blocks beyond :data:`POOL_IDLE_LIMIT` bytes go back to the system.

On other devices both are plain ``torch.empty`` (CUDA has its own caching allocator).
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np
import torch
from torch import Tensor

from spikedelay.ops.dispatch import host_reads_are_free

POOL_MIN_BYTES = 1 << 20  # smaller blocks: malloc's bins serve them without fragmenting
POOL_IDLE_LIMIT = 256 << 20  # idle bytes kept at most; beyond, freed blocks are released
POOL_SPARE = 1.25  # a request may take an idle block up to this much larger

_NUMPY_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
_local = threading.local()
_lock = threading.Lock()
_free: dict[tuple[np.dtype, int], list[np.ndarray]] = {}
_idle_bytes = 0


def scratch(name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised tensor of ``shape`` (``like``'s dtype and device) in this thread's
    buffer ``name``. Valid until the next ``scratch(name, …)`` call of the thread: only for
    temporaries that no returned or saved tensor aliases."""
    if not host_reads_are_free(like):
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    bufs = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    count = math.prod(shape)
    key = (name, like.dtype)
    buf = bufs.get(key)
    if buf is None or buf.numel() < count:
        bufs.pop(key, None)  # the old buffer is freed before the new one is allocated
        buf = bufs[key] = torch.empty(count, dtype=like.dtype)
    return buf[:count].view(shape)


def _class_step(count: int) -> int:
    """The spacing of size classes around ``count``: ``2^e`` for a 4-bit mantissa ``m``."""
    return 1 << max(count.bit_length() - 4, 0)


def size_class(count: int) -> int:
    """``count`` rounded up to ``m · 2^e`` with a 4-bit ``m`` (at most 1/8 more): batches of
    different lengths then share blocks instead of each size holding its own."""
    step = _class_step(count)
    return -(-count // step) * step


def _take_free(np_dtype: np.dtype, size: int) -> np.ndarray | None:
    """The smallest idle block of class ``size`` up to :data:`POOL_SPARE` times larger (so that
    layers whose outputs differ a little in length share blocks), or ``None``."""
    global _idle_bytes
    candidate = size
    with _lock:
        while candidate <= size * POOL_SPARE:
            blocks = _free.get((np_dtype, candidate))
            if blocks:
                block = blocks.pop()
                _idle_bytes -= block.nbytes
                return block
            candidate += _class_step(candidate)
    return None


def _give_back(key: tuple[np.dtype, int], block: np.ndarray) -> None:
    global _idle_bytes
    with _lock:
        if _idle_bytes + block.nbytes <= POOL_IDLE_LIMIT:
            _free.setdefault(key, []).append(block)
            _idle_bytes += block.nbytes


def pooled_empty(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised tensor of ``shape`` (``like``'s dtype and device), for an output that
    autograd may keep: its memory returns to the free list of its size class when freed."""
    dtype = like.dtype
    count = math.prod(shape)
    if not host_reads_are_free(like) or count * like.element_size() < POOL_MIN_BYTES:
        return torch.empty(shape, dtype=dtype, device=like.device)
    np_dtype = _NUMPY_DTYPES.get(dtype)
    if np_dtype is None:
        return torch.empty(shape, dtype=dtype)
    size = size_class(count)
    block = _take_free(np_dtype, size)
    if block is None:
        block = np.empty(size, dtype=np_dtype)
    handle = block[:count].reshape(shape)  # a new array: the tensor holds it, and frees it
    weakref.finalize(handle, _give_back, (np_dtype, block.size), block)
    return torch.from_numpy(handle)  # a base tensor, not a view (autograd may modify it)


def release_pool() -> None:
    """Give every idle pooled block back to the system (e.g. after training, before a long
    evaluation in the same process)."""
    global _idle_bytes
    with _lock:
        _free.clear()
        _idle_bytes = 0


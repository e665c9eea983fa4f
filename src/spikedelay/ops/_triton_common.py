"""What every Triton backend module shares: the launch geometry and the constants' tensor.

Scalars reach the kernels as a small tensor in the data's dtype (not as Python floats, which
Triton would pass as float32), so float64 runs compute in float64 and float32 runs round the
constants exactly as the numba kernels do.
"""

import torch
from torch import Tensor

CHANNEL_BLOCK = 64  # channels per program of the time-loop kernels (one sample each)
TIME_LOOP_WARPS = 2  # 64 threads: one per channel of a block (the time loop is sequential)


def constants(like: Tensor, *values: float) -> Tensor:
    """``values`` as a 1-D tensor in ``like``'s dtype, on its device."""
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def channel_block(channels: int) -> int:
    """A power of two ≥ 1 covering ``channels`` up to :data:`CHANNEL_BLOCK`."""
    return max(1, min(CHANNEL_BLOCK, 1 << max(0, channels - 1).bit_length()))

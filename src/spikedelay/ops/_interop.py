"""Handing torch tensors to the numba kernels: shared by every ``ops`` module."""

from __future__ import annotations

import numpy as np
from torch import Tensor


def as_numpy(t: Tensor) -> np.ndarray:
    """The tensor's memory as a numpy array (no copy; CPU tensors)."""
    return t.detach().numpy()


def scalar_like(value: float, like: Tensor) -> np.generic:
    """A numpy scalar in ``like``'s dtype, so numba computes in that precision (as torch does)."""
    return np.dtype(str(like.dtype).removeprefix("torch.")).type(value)

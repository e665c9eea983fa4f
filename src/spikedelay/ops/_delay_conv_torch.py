"""The device layout of :mod:`spikedelay.ops.delay_conv`: one wide GEMM per transform.

For GPUs (and the reference on any device): the whole spectrum in one chunk, the input
transform one ``(3F, T) @ (T, B·in)`` matmul, the inverse one ``(T', 3F) @ (3F, B·out)`` matmul,
DFT lengths padded to a multiple of 8 (aligned GEMM shapes; any length ≥ the minimum is exact).
No sparse transform (``sparse_events`` is always ``None``).
"""

from torch import Tensor

WIDE_LAYOUT = True


def sparse_events(x: Tensor) -> None:
    return None


def sparse_spectrum(events, d_rows, batch, n_in, out=None):  # pragma: no cover - never called
    raise AssertionError("the wide layout has no sparse transform")


def integer_tap_conv(events, weight, delays, shift, batch, n_in, t_out):  # pragma: no cover
    raise AssertionError("the wide layout has no event-driven integer path")

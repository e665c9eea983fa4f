"""``benchmarks/step_floor.py`` counts the DFT convolution's matmuls as the method prescribes.

The floor it reports is the time of the recorded matmuls replayed alone; its multiply-add count
must equal the operation count of the exact DFT convolution written out from the layer's shapes
(``ops/delay_conv.py``), and every matmul must be attributed to a part of the method.
"""

import pytest
import torch
from benchmark_scripts import load_benchmark

from spikedelay.ops.delay_conv import fft_delay_conv, fft_size, keep_kernel_spectrum


def _step_floor():
    return load_benchmark("step_floor")


def _expected_macs(batch, length, n_in, n_out, taps, left, right) -> dict[str, int]:
    """Multiply-adds of one forward + backward (dense input), from the shapes alone."""
    rows = 3 * (fft_size(length, taps, left, right) // 2 + 1)  # Re, Im, Re + Im per frequency
    t_out = length + left + right - taps + 1
    product = rows * batch * n_in * n_out
    spectrum = rows * taps * n_in * n_out
    return {
        "frequency product": product,
        "frequency product (kernel gradient)": product,
        "frequency product (input gradient)": product,
        "DFT of a dense input": 2 * rows * length * batch * n_in,  # forward, again in backward
        "kernel spectrum": spectrum * (1 if keep_kernel_spectrum(batch, taps) else 2),
        "kernel gradient DFT": spectrum,
        "inverse DFT": batch * t_out * rows * n_out,
        "adjoint of the inverse DFT": batch * rows * t_out * n_out,
        "inverse DFT of the input gradient": batch * length * rows * n_in,
    }


@pytest.mark.parametrize("batch", [3, 120])  # the kernel spectrum kept (B ≤ 4K) and recomputed
def test_recorded_multiply_adds_equal_the_dft_operation_count(batch):
    sf = _step_floor()
    length, n_in, n_out, taps, left, right = 17, 5, 6, 7, 6, 3
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, length, n_in, generator=gen).requires_grad_()  # dense: matmul DFT
    kernel = torch.randn(n_out, n_in, taps, generator=gen).requires_grad_()
    rec = sf.recorder()
    with rec:
        fft_delay_conv(x, kernel, left, right).square().sum().backward()
    got: dict[str, int] = {}
    for (op, args_spec, _, part, _group), count in rec.calls.items():
        got[part] = got.get(part, 0) + sf.multiply_adds(op, args_spec) * count
    assert got == _expected_macs(batch, length, n_in, n_out, taps, left, right)
    floor = sf.replay(rec.calls, threads=1, replays=1)
    assert floor["macs"] == sum(got.values()) and floor["floor_s"] > 0

"""What ``train.allow_tf32`` costs in accuracy: the DFT delay convolution under emulated TF32.

TF32 keeps float32's exponent and 10 of its 23 mantissa bits in the inputs of a matmul (the
products are accumulated in float32). Emulated here on CPU by rounding every float32 operand of
``mm``/``bmm``/``addmm``/``baddbmm``/``matmul`` to 10 mantissa bits (round to nearest even), as
cuBLAS does on Ampere and later; the direct convolution (conv1d, cuDNN) gets the same rounding
of its input and kernel. Errors are relative to the output's peak, against float64.

    python benchmarks/tf32_error.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def to_tf32(t: torch.Tensor) -> torch.Tensor:
    """Round float32 values to TF32's 10 mantissa bits (nearest, ties to even)."""
    bits = t.contiguous().view(torch.int32)
    lsb = (bits >> 13) & 1
    rounded = ((bits + 0x0FFF + lsb) >> 13) << 13
    return rounded.view(torch.float32).view_as(t)


class EmulatedTF32(TorchFunctionMode):
    MATMULS = {torch.mm, torch.bmm, torch.matmul, torch.addmm, torch.baddbmm, torch.Tensor.mm,
               torch.Tensor.bmm, torch.Tensor.matmul, torch.Tensor.__matmul__,
               torch.Tensor.addmm_, torch.Tensor.baddbmm_, torch.Tensor.addmm,
               torch.Tensor.baddbmm}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.MATMULS:
            # the accumulator (first argument of the add* forms) is not rounded
            start = 1 if func.__name__.startswith(("addmm", "baddbmm")) else 0
            args = tuple(to_tf32(a) if i >= start and isinstance(a, torch.Tensor)
                         and a.dtype == torch.float32 else a for i, a in enumerate(args))
        return func(*args, **kwargs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    os.environ["SPIKEDELAY_KERNELS"] = "torch"  # the device (CUDA) layout of the DFT
    from spikedelay.ops.delay_conv import fft_delay_conv

    g = torch.Generator().manual_seed(0)
    rows = []
    for n_in, n_out, density in ((128, 128, 1.0), (256, 256, 0.1), (140, 256, 0.2)):
        x = torch.rand(16, 100, n_in, generator=g)
        if density < 1.0:
            x = (x < density).float()
        kernel = torch.randn(n_out, n_in, 25, generator=g) / (n_in ** 0.5)
        ref = F.conv1d(F.pad(x.double().transpose(1, 2), (24, 12)),
                       kernel.double()).transpose(1, 2)
        peak = float(ref.abs().max())
        fp32 = fft_delay_conv(x, kernel, 24, 12)
        with EmulatedTF32():
            tf32 = fft_delay_conv(x, kernel, 24, 12)
        direct_tf32 = F.conv1d(F.pad(to_tf32(x).transpose(1, 2), (24, 12)),
                               to_tf32(kernel)).transpose(1, 2)
        rows.append({"in": n_in, "out": n_out, "density": density,
                     "dft_float32": float((fp32.double() - ref).abs().max()) / peak,
                     "dft_tf32": float((tf32.double() - ref).abs().max()) / peak,
                     "direct_tf32": float((direct_tf32.double() - ref).abs().max()) / peak})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"{r['in']:>4} -> {r['out']:<4} density {r['density']:<4}: DFT float32 "
                  f"{r['dft_float32']:.1e}, DFT TF32 {r['dft_tf32']:.1e} "
                  f"({r['dft_tf32'] / r['dft_float32']:.0f}x), direct conv TF32 "
                  f"{r['direct_tf32']:.1e} of the peak")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

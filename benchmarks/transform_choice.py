"""Matmul DFT or ``torch.fft`` for the delay convolution's transforms, per layer shape.

The DFT convolution (``ops/delay_conv.py``) does its transforms as matmuls: ``O(N·T)`` per
series against an FFT's ``O(N log N)``. An rfft needs a smooth length (N = T + K - 1 = 124 at
the SHD recipe's first layer; 125 = 5³ or 128 = 2⁷ are as exact) and its complex output must be
split into the Gauss product's three real blocks (Re, Im, Re + Im) and, for the inverse, the
three products combined into a complex spectrum: extra passes over memory. This script times
each transform both ways in the layouts the CPU path uses, per layer of the SHD and quick
recipes, single-threaded CPU time (min of ``--reps``; steady on a busy machine), and prints
which is faster. ``torch.fft`` would be used where it is faster; at these shapes it never was
(BENCHMARKS.md).

    python benchmarks/transform_choice.py [--json] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def smooth_length(n: int) -> int:
    """The smallest 5-smooth length ≥ n (2^a 3^b 5^c)."""
    m = n
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def cpu_ms(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return best * 1e3


def layer_rows(batch: int, length: int, n_in: int, n_out: int, taps: int, reps: int) -> list[dict]:
    import torch

    from spikedelay.ops.delay_conv import fft_size

    left, right = taps - 1, (taps - 1) // 2
    t_out = length + left + right - taps + 1
    n_min = fft_size(length, taps, left, right)
    g = torch.Generator().manual_seed(0)
    x_tm = torch.rand(length, batch * n_in, generator=g)
    k_tm = torch.randn(taps, n_in * n_out, generator=g)
    rows = []
    for n_fft in sorted({smooth_length(n_min), max(128, n_min)}):
        for name, (a, b) in _timings(x_tm, k_tm, batch, n_out, length, taps, t_out, n_min,
                                     n_fft, reps).items():
            rows.append({"layer": f"{n_in}->{n_out}", "batch": batch, "T": length,
                         "N_matmul": n_min, "N_fft": n_fft, "transform": name,
                         "matmul_ms": round(a, 2), "fft_ms": round(b, 2),
                         "faster": "fft" if b < a else "matmul"})
    return rows


def _timings(x_tm, k_tm, batch, n_out, length, taps, t_out, n_min, n_fft, reps):
    """``{transform: (matmul ms, fft ms)}`` for one DFT length of each kind."""
    import torch

    from spikedelay.ops.delay_conv import _dft_matrices, _per_sample

    d_x, d_k, inv = _dft_matrices(n_min, length, taps, 0, t_out, torch.device("cpu"),
                                  torch.float32)
    g = torch.Generator().manual_seed(1)
    prod = torch.randn(d_x.shape[0], batch, n_out, generator=g)
    f_fft = n_fft // 2 + 1
    prod_fft = torch.randn(3 * f_fft, batch, n_out, generator=g)

    def gauss_blocks(spec):
        return torch.cat([spec.real, spec.imag, spec.real + spec.imag], 0)

    def irfft_inverse():
        p0, p1, p2 = prod_fft[:f_fft], prod_fft[f_fft:2 * f_fft], prod_fft[2 * f_fft:]
        y = torch.fft.irfft(torch.complex(p0 - p1, p2 - p0 - p1), n=n_fft, dim=0)[:t_out]
        return y.permute(1, 0, 2).contiguous()

    cases = {
        "input (dense x)": (lambda: d_x @ x_tm,
                            lambda: gauss_blocks(torch.fft.rfft(x_tm, n=n_fft, dim=0))),
        "kernel spectrum": (lambda: d_k @ k_tm,
                            lambda: gauss_blocks(torch.fft.rfft(k_tm.flip(0), n=n_fft, dim=0))),
        "inverse": (lambda: _per_sample(inv, prod), irfft_inverse),
    }
    return {name: (cpu_ms(mm, reps), cpu_ms(fft, reps)) for name, (mm, fft) in cases.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    shapes = []  # (batch, T, in, out): SHD recipe (batch 256) and quick recipe (batch 64)
    for batch in (256, 64):
        shapes += [(batch, 100, 140, 256), (batch, 112, 256, 256), (batch, 124, 256, 20)]
    rows = [r for b, t, i, o in shapes for r in layer_rows(b, t, i, o, 25, args.reps)]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"B {r['batch']:>3} {r['layer']:>8} T {r['T']} {r['transform']:<16} "
                  f"matmul N={r['N_matmul']} {r['matmul_ms']:7.2f} ms | rfft N={r['N_fft']} "
                  f"{r['fft_ms']:7.2f} ms -> {r['faster']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Exact delay convolution through a real DFT: the same numbers as ``conv1d``, fewer operations.

The delay layer is a cross-correlation of ``x`` (B, T, in) with a dense kernel (out, in, K)
after zero padding ``left`` / ``right`` steps (see :func:`spikedelay.delays.delay_conv`).
Direct convolution costs ``K`` multiply-adds per synapse and output step (25–31 in the paper's
recipes). With the flipped kernel ``h[m] = kernel[K-1-m]`` (``m`` = delay) the output is a
slice of the linear convolution ``h * x``; a discrete Fourier transform of length
``N = T + K - 1`` (no wrap-around) turns it into one complex matrix product per frequency,
``Y[f] = X[f] @ H[f]`` with ``X[f]`` (B, in) and ``H[f]`` (in, out): ``3·(N/2+1) ≈ 1.5 N`` real
multiply-adds per synapse and sample instead of ``K·T'``, whatever ``K`` or σ are.

Everything is expressed as real matrix products, so autograd gives the exact backward with
BLAS-speed matmuls only (no complex kernels, no FFT plans; cuBLAS on GPU):

* forward DFT: ``X = D @ x`` with ``D`` (2F, T) holding ``cos`` / ``-sin`` rows (``F = N//2+1``);
* per frequency a complex matmul ``X[f] @ H[f]`` as three real batched matmuls (Gauss's trick:
  ``Re X Re H``, ``Im X Im H`` and ``(Re X + Im X)(Re H + Im H)``);
* inverse DFT restricted to the output steps: ``y = E @ Y`` with ``E`` (T', 2F).

A DFT by matmul costs ``O(T·N)`` per series instead of an FFT's ``O(N log N)``, but it is one
large BLAS call, its length needs no nice factors, and it stays small next to the frequency
products (``2N·T`` against ``1.5·N·out`` per sample and input feature).

Numerics: exact up to float rounding (≈1e-6 relative to the largest output for float32 at these
lengths). Tests compare against ``conv1d`` and a naive loop, forward and gradients.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


@lru_cache(maxsize=64)
def _dft_matrices(
    n: int, length: int, taps: int, shift: int, t_out: int, device: torch.device,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(D (2F, T), Dk (2F, K), E (T', 2F))`` for an FFT length ``n`` (computed in float64).

    Row ``2f`` of ``D`` is ``cos(2π f t / n)``, row ``2f + 1`` is ``-sin(2π f t / n)``, so
    ``D @ x`` gives ``Re, Im`` of the DFT interleaved per frequency. ``E`` maps the ``F = n//2+1``
    spectra back to time steps ``shift … shift + T' - 1`` of the circular convolution (the
    ``irfft`` formula: weight 1 for the DC and Nyquist terms, 2 for the others, over ``n``).
    Constant small matrices: cached per shape (a few hundred kB each).
    """
    n_freq = n // 2 + 1
    f = torch.arange(n_freq, dtype=torch.float64)

    def forward_rows(count: int) -> Tensor:
        t = torch.arange(count, dtype=torch.float64)
        angle = 2 * math.pi * torch.outer(f, t) / n  # (F, count)
        return torch.stack([torch.cos(angle), -torch.sin(angle)], dim=1).reshape(2 * n_freq, count)

    t = torch.arange(shift, shift + t_out, dtype=torch.float64)
    angle = 2 * math.pi * torch.outer(t, f) / n  # (T', F)
    weight = torch.full((n_freq,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    inverse = torch.stack([torch.cos(angle) * weight, -torch.sin(angle) * weight], dim=2)
    inverse = inverse.reshape(t_out, 2 * n_freq) / n
    return tuple(
        m.to(device=device, dtype=dtype).contiguous()
        for m in (forward_rows(length), forward_rows(taps), inverse)
    )


def fft_size(length: int, max_delay: int, left: int, right: int) -> int:
    """DFT length with no wrap-around for ``length`` input steps and ``left ≤ K-1`` padding.

    With ``s = K-1-left``, output step ``t'`` is linear-convolution index ``t' + s``; the circular
    convolution of length ``N`` is exact there when ``N ≥ T + K - 1 - s`` and covers every output
    when ``N ≥ s + T'``.
    """
    s = max_delay - 1 - left
    t_out = length + left + right - max_delay + 1
    return max(length + max_delay - 1 - s, s + t_out, 1)


def fft_delay_conv(x: Tensor, kernel: Tensor, left: int, right: int) -> Tensor:
    """``delay_conv`` computed in the frequency domain; same contract, differentiable.

    ``y[b, t', j] = Σ_i Σ_k kernel[j, i, k] · xpad[b, t' + k, i]`` with ``xpad`` = ``x`` padded by
    ``left`` zeros before and ``right`` after.

    Shapes: x (B, T, in), kernel (out, in, K) → (B, T + left + right - K + 1, out), contiguous.
    """
    batch, length, n_in = x.shape
    n_out, k_in, taps = kernel.shape
    if k_in != n_in:
        raise ValueError(f"kernel has {k_in} input features, x has {n_in}")
    if left > taps - 1:  # more left padding than the kernel reaches: pad explicitly
        x = F.pad(x, (0, 0, left - (taps - 1), 0))
        length += left - (taps - 1)
        left = taps - 1
    t_out = length + left + right - taps + 1
    if t_out <= 0 or length == 0:
        return x.new_zeros(batch, max(t_out, 0), n_out)
    shift = taps - 1 - left
    n = fft_size(length, taps, left, right)
    n_freq = n // 2 + 1
    d_x, d_k, inv = _dft_matrices(n, length, taps, shift, t_out, x.device, x.dtype)
    # Forward DFT of every (sample, feature) series: one batched matmul over time.
    xf = torch.matmul(d_x, x).view(batch, n_freq, 2, n_in).permute(2, 1, 0, 3).contiguous()
    x_re, x_im = xf.unbind(0)  # (F, B, in) each
    h_tm = kernel.flip(-1).permute(2, 1, 0).reshape(taps, n_in * n_out)  # (K, in·out), by delay
    h_re, h_im = (d_k @ h_tm).view(n_freq, 2, n_in, n_out).unbind(1)  # (F, in, out) each
    # Complex matmul per frequency with three real ones (Gauss): 25 % fewer multiply-adds than
    # four, forward and backward; the extra additions are O(B·in + in·out) per frequency.
    p_re = torch.bmm(x_re, h_re)
    p_im = torch.bmm(x_im, h_im)
    p_mix = torch.bmm(x_re + x_im, h_re + h_im)
    yf = torch.stack([p_re - p_im, p_mix - p_re - p_im], dim=2)  # (F, B, 2, out)
    yf = yf.permute(1, 0, 2, 3).reshape(batch, 2 * n_freq, n_out)
    return torch.matmul(inv, yf)  # inverse DFT at the output steps: (B, T', out)

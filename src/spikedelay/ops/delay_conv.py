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

* forward DFTs ``D @ x`` and ``Dk @ kernel``, each one matmul over time that yields the three
  operands of Gauss's complex product per frequency: ``Re``, ``Im``, ``Re + Im``
  (``F = N//2 + 1`` frequencies, ``3F`` rows);
* one batched matmul over the ``3F`` rows: ``Re X Re H``, ``Im X Im H``,
  ``(Re X + Im X)(Re H + Im H)`` — a complex matmul for the price of three real ones;
* one matmul ``E @ P`` that combines the three products and inverts the DFT at the output steps.

A DFT by matmul costs ``O(T·N)`` per series instead of an FFT's ``O(N log N)``, but it is one
large BLAS call, its length needs no nice factors, and it stays small next to the frequency
products (``2N·T`` against ``1.5·N·out`` per sample and input feature). ``torch.fft`` at
5-smooth lengths (125, 144, 150) or 128 measured slower for the input transform and the kernel
spectrum and even for the inverse, in these layouts (``benchmarks/transform_choice.py``): the
complex-to-real layout passes cost more than the operations saved.

Evaluation with integer delays (one tap per synapse, no gradient) goes through
:func:`integer_delay_conv`: event-driven where that measured faster (sparse inputs, small
batches), else the DFT of the integer kernel.

Two layouts, same numbers, chosen by :mod:`spikedelay.ops.dispatch` (op ``"delay_conv"``):

* CPU (numba backend, ``_delay_conv_numba``): a mostly-zero input (spike trains) is transformed
  from a list of its events, one DFT column added per event, instead of ``D @ x``; the spectrum
  is processed in cache-sized chunks of rows; the inverse (``E @ P``, and its adjoints in the
  backward) runs as one small matmul per sample, which writes the (B, T', out) layout directly.
* device (torch backend, ``_delay_conv_torch``; what CUDA runs): the whole spectrum at once,
  each transform one wide GEMM, DFT lengths padded to a multiple of :data:`GEMM_ALIGN`.

Numerics: exact up to float rounding (≈1e-6 relative to the largest output for float32 at these
lengths). Tests compare against ``conv1d`` and a naive loop, forward and gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from spikedelay.ops import dispatch
from spikedelay.ops.buffers import pooled_empty, scratch

GEMM_ALIGN = 8  # the wide layout pads DFT lengths to a multiple of this (aligned GEMM shapes)

@lru_cache(maxsize=64)
def _dft_matrices(
    n: int, length: int, taps: int, shift: int, t_out: int, device: torch.device,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(Dx (3F, T), Dk (3F, K), E (T', 3F))`` for a DFT of length ``n`` (built in float64).

    Each forward matrix has three blocks of ``F = n//2 + 1`` rows, the three operands of Gauss's
    complex product: ``Re``, ``Im`` and ``Re + Im`` of the DFT (``cos``, ``-sin``, their sum).
    ``Dk`` also flips the kernel (``h[m] = kernel[K-1-m]``). ``E`` maps the three real products
    ``P0 = Re X Re H``, ``P1 = Im X Im H``, ``P2 = (Re X + Im X)(Re H + Im H)`` straight to time
    steps ``shift … shift + T' - 1`` of the circular convolution: ``Re Y = P0 - P1`` and
    ``Im Y = P2 - P0 - P1`` folded into the ``irfft`` formula (weight 1 for the DC and Nyquist
    terms, 2 for the others, over ``n``). Small constants, built in float64 on ``device`` (no
    host-to-device copy) and cached per shape and device.
    """
    n_freq = n // 2 + 1
    f64 = {"dtype": torch.float64, "device": device}
    f = torch.arange(n_freq, **f64)

    def forward_rows(steps: Tensor) -> Tensor:
        angle = 2 * math.pi * torch.outer(f, steps) / n  # (F, count)
        re, im = torch.cos(angle), -torch.sin(angle)
        return torch.cat([re, im, re + im], dim=0)

    t = torch.arange(shift, shift + t_out, **f64)
    angle = 2 * math.pi * torch.outer(t, f) / n  # (T', F)
    weight = torch.full((n_freq,), 2.0, **f64)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    e_re, e_im = torch.cos(angle) * weight / n, -torch.sin(angle) * weight / n
    inverse = torch.cat([e_re - e_im, -e_re - e_im, e_im], dim=1)
    d_x = forward_rows(torch.arange(length, **f64))
    d_k = forward_rows(torch.arange(taps - 1, -1, -1, **f64))  # flipped kernel
    return tuple(m.to(dtype=dtype).contiguous() for m in (d_x, d_k, inverse))


def fft_size(length: int, max_delay: int, left: int, right: int) -> int:
    """DFT length with no wrap-around for ``length`` input steps and ``left ≤ K-1`` padding.

    With ``s = K-1-left``, output step ``t'`` is linear-convolution index ``t' + s``; the circular
    convolution of length ``N`` is exact there when ``N ≥ T + K - 1 - s`` and covers every output
    when ``N ≥ s + T'``.
    """
    s = max_delay - 1 - left
    t_out = length + left + right - max_delay + 1
    return max(length + max_delay - 1 - s, s + t_out, 1)


KEEP_SPECTRUM_MAX_BATCH_PER_TAP = 4


def keep_kernel_spectrum(batch: int, taps: int) -> bool:
    """Whether the forward keeps the kernel spectrum for the input gradient of the backward.

    Recomputing it costs ``3F·K·in·out`` multiply-adds, a frequency product ``3F·B·in·out``:
    a ``K/B`` share. Keeping it costs ``3F/K`` times the kernel's memory (≈ 50 MB for a
    256 × 256 layer at K = 25) from the forward to the backward. Kept where it saves at least a
    quarter of a product (``B ≤ 4K``: the quick recipe's batch 64, not the SHD recipe's 256).
    """
    return batch <= KEEP_SPECTRUM_MAX_BATCH_PER_TAP * taps


MIN_CHUNK_ROWS = 32  # each chunk re-reads x and the kernel: fewer rows would be memory-bound


def _row_chunk(rows: int, batch: int, n_in: int, n_out: int) -> int:
    """Spectrum rows per chunk so that each temporary (rows, B, in|out) or (rows, in, out) stays
    near 8 MB (one chunk for small problems), but at least ``MIN_CHUNK_ROWS``. 8 MB rather
    than 16: within 5 % as fast, and the three scratch buffers hold half as much."""
    budget = (1 << 21) // max(batch * n_in, batch * n_out, n_in * n_out)
    return max(1, min(rows, max(MIN_CHUNK_ROWS, budget)))


def _input_spectrum(
    impl, x: Tensor, events: tuple[Tensor, ...] | None, d_rows: Tensor, batch: int, n_in: int
) -> Tensor:
    """Rows ``d_rows`` (r, T) of the DFT of every input series, as (r, B, in), in this
    thread's scratch buffer (a temporary of one chunk).

    From the event list of a sparse input (the backend's ``sparse_spectrum``), or with one
    matmul from ``x``, the time-major (T, B·in) copy of a dense input (``events=None``).
    """
    out = scratch("xf", (d_rows.shape[0], batch, n_in), x if events is None else d_rows)
    if events is None:
        torch.mm(d_rows, x, out=out.view(d_rows.shape[0], batch * n_in))
        return out
    return impl.sparse_spectrum(events, d_rows, batch, n_in, out=out)


def _kernel_spectrum(d_rows: Tensor, k_tm: Tensor, n_in: int, keep: bool) -> Tensor:
    """Rows ``d_rows`` (r, K) of the DFT of every synapse's kernel, as (r, in, out): in this
    thread's scratch buffer, or a pooled tensor of its own if the forward keeps it for the
    backward."""
    shape = (d_rows.shape[0], n_in, k_tm.shape[1] // n_in)
    out = pooled_empty(shape, k_tm) if keep else scratch("hf", shape, k_tm)
    torch.mm(d_rows, k_tm, out=out.view(shape[0], -1))
    return out


def _inverse(inv: Tensor, prod: Tensor, out: Tensor | None, wide: bool) -> Tensor:
    """Combination + inverse DFT of the products ``prod`` (r, B, out), accumulated into ``out``.

    Wide layout: one ``(T', r) @ (r, B·out)`` matmul into a time-major (T', B·out) buffer.
    CPU layout: one small matmul per sample, which writes y in its (B, T', out) layout (no
    transposing copy; ~2.5x faster on CPU than the wide matmul).
    """
    if not wide:
        return _per_sample(inv, prod, out)
    flat = prod.reshape(prod.shape[0], -1)
    return inv @ flat if out is None else out.addmm_(inv, flat)


class _DftConv(torch.autograd.Function):
    """The DFT convolution with a hand-written backward that keeps only ``x`` and the kernel.

    Autograd through the matmuls would keep the spectra ``X`` (3F/T ≈ 2× the size of ``x``) and
    ``H`` (3F/K ≈ 8× the kernel) of every layer until the backward. Here the spectrum rows are
    processed in chunks, each chunk's spectra are recomputed in the backward (≈20 % more
    multiply-adds), and the results accumulate in place, so the temporaries stay at a few tens
    of MB whatever the batch size.
    """

    @staticmethod
    def forward(ctx, x, kernel, left, right):
        batch, length, n_in = x.shape
        n_out, _, taps = kernel.shape
        t_out = length + left + right - taps + 1
        shift = taps - 1 - left
        impl = dispatch.select("delay_conv", x)
        wide = impl.WIDE_LAYOUT
        n = fft_size(length, taps, left, right)
        if wide:
            n = -(-n // GEMM_ALIGN) * GEMM_ALIGN
        d_x, d_k, inv = _dft_matrices(n, length, taps, shift, t_out, x.device, x.dtype)
        rows = d_x.shape[0]
        events = impl.sparse_events(x)  # spike trains: a list of events; else time-major x
        x_in = x.new_empty(0) if events else x.transpose(0, 1).reshape(length, batch * n_in)
        k_tm = kernel.permute(2, 1, 0).reshape(taps, n_in * n_out)  # free if stored tap-major
        y = None
        step = rows if wide else _row_chunk(rows, batch, n_in, n_out)
        kept = [] if ctx.needs_input_grad[0] and keep_kernel_spectrum(batch, taps) else None
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            xf = _input_spectrum(impl, x_in, events, d_x[r0:r1], batch, n_in)
            hf = _kernel_spectrum(d_k[r0:r1], k_tm, n_in, keep=kept is not None)
            prod = torch.bmm(xf, hf, out=scratch("prod", (r1 - r0, batch, n_out), hf))
            y = _inverse(inv[:, r0:r1], prod, y, wide)
            if kept is not None:
                kept.append(hf)
        if wide:
            y = y.view(t_out, batch, n_out).transpose(0, 1).contiguous()
        ctx.save_for_backward(x_in, kernel, *(events or ()))
        ctx.impl = impl
        ctx.kernel_spectrum = kept
        ctx.geometry = (n, shift, t_out, step, batch, length, n_in)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x_in, kernel, *events = ctx.saved_tensors
        n, shift, t_out, step, batch, length, n_in = ctx.geometry
        n_out, _, taps = kernel.shape
        need_x, need_k = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        d_x, d_k, inv = _dft_matrices(n, length, taps, shift, t_out, kernel.device, kernel.dtype)
        rows = d_x.shape[0]
        k_tm = kernel.permute(2, 1, 0).reshape(taps, n_in * n_out)
        impl = ctx.impl
        wide = impl.WIDE_LAYOUT
        grad_y = grad_y.contiguous()
        if wide:
            grad_y_tm = grad_y.transpose(0, 1).reshape(t_out, batch * n_out)
        grad_x = None
        grad_k_tm = pooled_empty((taps, n_in * n_out), kernel).zero_() if need_k else None
        kept, ctx.kernel_spectrum = ctx.kernel_spectrum, None  # free each chunk once used
        for chunk, r0 in enumerate(range(0, rows, step)):
            r1 = min(rows, r0 + step)
            if wide:  # the adjoint of the inverse DFT: one matmul, (r, B·out)
                grad_prod = (inv[:, r0:r1].T @ grad_y_tm).view(r1 - r0, batch, n_out)
            else:  # per sample: (B, r, out), read as (r, B, out)
                into = scratch("prod", (batch, r1 - r0, n_out), grad_y)
                grad_prod = _per_sample(inv[:, r0:r1].T, grad_y.transpose(0, 1), into,
                                        accumulate=False).transpose(0, 1)
            if need_k:
                xf = _input_spectrum(impl, x_in, events or None, d_x[r0:r1], batch, n_in)
                # (r, in, out): the kernel spectrum's scratch buffer, free until just below
                grad_hf = torch.bmm(xf.transpose(1, 2), grad_prod,
                                    out=scratch("hf", (r1 - r0, n_in, n_out), xf))
                grad_k_tm.addmm_(d_k[r0:r1].T, grad_hf.view(r1 - r0, n_in * n_out))
            if need_x:
                if kept is not None:
                    hf, kept[chunk] = kept[chunk], None
                else:
                    hf = _kernel_spectrum(d_k[r0:r1], k_tm, n_in, keep=False)
                grad_xf = torch.bmm(grad_prod, hf.transpose(1, 2),  # (r, B, in): xf is used up
                                    out=scratch("xf", (r1 - r0, batch, n_in), hf))
                grad_x = _inverse(d_x[r0:r1].T, grad_xf, grad_x, wide)
        if wide and grad_x is not None:
            grad_x = grad_x.view(length, batch, n_in).transpose(0, 1).contiguous()
        grad_k = None
        if need_k:
            grad_k = grad_k_tm.view(taps, n_in, n_out).permute(2, 1, 0)  # stored tap-major
        return grad_x, grad_k, None, None


def _per_sample(mat: Tensor, stack: Tensor, out: Tensor | None = None,
                accumulate: bool = True) -> Tensor:
    """``out[b] (+)= mat @ stack[:, b, :]`` for every sample ``b``: (m, r) × (r, B, c) → (B, m, c).

    Why per sample: one wide ``(m, r) @ (r, B·c)`` matmul streams an output of B·c columns
    through memory and then needs a transposing copy to (B, m, c); B small matmuls with a
    broadcast ``mat`` keep each output block in cache and write the (B, m, c) layout directly.
    ``stack`` may be a strided view (no copy). ``out=None`` allocates a pooled output (no zero
    fill); ``accumulate=False`` overwrites ``out``.
    """
    batch = stack.shape[1]
    lhs = mat.unsqueeze(0).expand(batch, -1, -1)
    rhs = stack.transpose(0, 1)
    if out is None:
        out, accumulate = pooled_empty((batch, mat.shape[0], stack.shape[2]), stack), False
    if not accumulate:
        return torch.bmm(lhs, rhs, out=out)
    return out.baddbmm_(lhs, rhs)


EVENT_MAX_DENSITY = 0.1  # the event route needs sparse inputs (measured: 15 % is slower)


def use_integer_events(batch: int, taps: int, density: float, copies: int) -> bool:
    """Whether the event-driven integer path beats the DFT (measured, BENCHMARKS.md).

    Per sample the events cost ``density · T · in · out · kc`` scattered adds (≈ 1.2 ns each),
    the DFT ``≈ 1.5 N · in · out`` multiply-adds at matmul speed plus its kernel spectrum
    (``3F · K · in · out`` per batch). The events win only where that batch-independent part
    weighs (``B ≤ 4K``, as for :func:`keep_kernel_spectrum`) and the input is sparse.
    """
    return batch <= KEEP_SPECTRUM_MAX_BATCH_PER_TAP * taps and density * copies <= EVENT_MAX_DENSITY


def integer_delay_conv(
    x: Tensor, weight: Tensor, delays: Tensor, max_delay: int, left: int, right: int,
    dense_kernel: Callable[[], Tensor],
) -> Tensor:
    """``delay_conv`` with one tap per synapse copy, for evaluation (no gradient).

    ``y[b, t', o] = Σ_{i,c} weight[o,i,c] · x[b, t' + K-1-left - delays[o,i,c], i]``: the
    same numbers as :func:`fft_delay_conv` with the integer kernel ``dense_kernel()`` (to float
    rounding: the sums run in another order). Where :func:`use_integer_events` says so, each
    input event goes through its synapses' single taps (the numba backend's
    ``integer_tap_conv``, as ``deploy/stream.py`` does step by step); otherwise the DFT.

    Shapes: x (B, T, in), weight and delays (out, in, kc) → (B, T', out).
    """
    batch, length, n_in = x.shape
    t_out = length + left + right - max_delay + 1
    impl = dispatch.select("delay_conv", x)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if impl.WIDE_LAYOUT or needs_grad or t_out <= 0 or batch == 0:
        return fft_delay_conv(x, dense_kernel(), left, right)
    events = impl.sparse_events(x)
    density = 1.0 if events is None else events[2].numel() / max(x.numel(), 1)
    if events is None or not use_integer_events(batch, max_delay, density, weight.shape[2]):
        return fft_delay_conv(x, dense_kernel(), left, right)
    return impl.integer_tap_conv(events, weight, delays, max_delay - 1 - left, batch, n_in, t_out)


def fft_delay_conv(x: Tensor, kernel: Tensor, left: int, right: int) -> Tensor:
    """``delay_conv`` computed in the frequency domain; same contract, differentiable.

    ``y[b, t', j] = Σ_i Σ_k kernel[j, i, k] · xpad[b, t' + k, i]`` with ``xpad`` = ``x`` padded by
    ``left`` zeros before and ``right`` after.

    Shapes: x (B, T, in), kernel (out, in, K) → (B, T + left + right - K + 1, out), contiguous.
    Memory kept for the backward: ``x`` and the kernel only.
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
    if t_out <= 0 or length == 0 or batch == 0:
        # Nothing to compute; "+ 0 · Σ kernel" keeps the output attached to the kernel's graph.
        return x.new_zeros(batch, max(t_out, 0), n_out) + 0 * kernel.sum()
    return _DftConv.apply(x, kernel.to(x.dtype), left, right)

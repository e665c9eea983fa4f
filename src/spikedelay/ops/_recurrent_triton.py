"""The time-stepped layer of :mod:`spikedelay.ops.recurrent` in Triton (CUDA; CPU interpreted).

The same maths, forward and closed-form backward (BPTT), as ``_recurrent_numba``: LIF, adLIF
and SE-adLIF neurons, hard or subtractive reset, the three surrogates, no / plain / delayed
recurrence, recurrent dropout; ``W`` and ``m`` get their time-summed gradients in torch
(``_recurrent_common``).

Layout, and why. The recurrent current ``W y[t]`` couples every neuron of a sample at every
step, and step ``t`` needs the spikes of all neurons at the steps before it, so the time loop
cannot be split over programs that each own a block of neurons (they would have to meet at a
grid-wide barrier every step, which Triton does not offer). Two designs are correct: a launch
sequence per time step (trace kernel, cuBLAS matmul, neuron kernel: ≈ 3 launches a step, some
hundreds a sequence each way: the launch cost this engine exists to remove), or **one program
per sample that owns all its neurons and runs the whole time loop**, doing the small mat-vec in
the kernel. We take the second: one launch per sequence. The program keeps the neuron states
(membrane, adaptation, previous step) of all ``N`` neurons (padded to a power of two) in
registers; each step it

1. builds the presynaptic trace ``y[t, o] = Σ_k m[o, k] s[t-k, o]`` from the spikes it already
   wrote (the output tensor is the history: no ring buffer; ``m`` is read transposed, (L, N),
   so each lag is one coalesced row),
2. writes ``y[t]`` and waits at a barrier (``tl.debug_barrier``: a CTA barrier, which also makes
   the writes of every thread of the program visible to the others),
3. adds ``Σ_o W[i, o] y[t, o]`` over tiles of ``TILE × N`` weights, reading ``y`` back in tile
   order (``W`` streams from L2 each step; at 256 neurons a tile is 16 × 256),
4. updates every neuron and writes ``h, s, w, I``; a second barrier before step ``t+1`` reads
   them in another thread layout.

The backward runs the same way in reverse: the per-neuron adjoint recursion, then
``gy[t, o] = Σ_i W[i, o] drop[i] gI[t, i]`` as a tiled mat-vec, with the same two barriers.
The per-neuron gradients of ``α, β, a, b`` are per-sample partial sums added by torch in a
fixed order (deterministic, no atomics). Parallelism is the batch (256 programs in the SHD
recipe: about two per SM of a current GPU); without recurrence nothing couples the neurons and
the grid is (sample, block of 64 neurons), as for :mod:`._lif_triton`.

Under TRITON_INTERPRET=1 each program runs alone and in order, so the barriers are no-ops and
the tests check the arithmetic; the barriers are what keeps the compiled kernel correct.
Results equal the numba kernels to rounding: the mat-vec sums in another order, so in float32
a membrane within a rounding of the threshold may spike in one and not the other (divisions
are IEEE-rounded, ``div_exact``, as there).
"""

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from spikedelay.ops._lif_triton import div_exact
from spikedelay.ops._recurrent_common import kernel_arguments, lag_grad, weight_grad
from spikedelay.ops._triton_common import TIME_LOOP_WARPS, channel_block, constants

TILE_ELEMENTS = 4096  # weights per mat-vec tile (TILE rows × all N neurons)


@triton.jit
def _surrogate(x, p1, p2, slope, SG: tl.constexpr):
    """The surrogate of :mod:`spikedelay.ops.surrogate` coded ``SG`` (atan, triangle, slayer);
    ``slope`` = π/2 · p1 (a constant in the data's dtype, not a float32 literal)."""
    if SG == 0:
        z = slope * x
        g = div_exact(p1 / 2.0, 1.0 + z * z)
    elif SG == 1:
        g = div_exact(tl.maximum(p1 - tl.abs(x), 0.0), p1 * p1)
    else:
        g = div_exact(p2 * p1, 2.0 * tl.exp(p1 * tl.abs(x)))
    return g


@triton.jit
def _neuron_coeffs(alpha_ptr, beta_ptr, a_ptr, b_ptr, c, keep):
    """The per-neuron coefficients (α, β, a, b) of the neurons ``c``, as both passes read them."""
    alpha = tl.load(alpha_ptr + c, mask=keep, other=0.0)
    beta = tl.load(beta_ptr + c, mask=keep, other=0.0)
    a = tl.load(a_ptr + c, mask=keep, other=0.0)
    b = tl.load(b_ptr + c, mask=keep, other=0.0)
    return alpha, beta, a, b


@triton.jit
def _after_reset(h, s, thr, SUB: tl.constexpr):
    """The membrane after a step's spike: subtract θ (soft) or go to 0 (hard)."""
    if SUB:
        u = h - thr * s
    else:
        u = h * (1.0 - s)
    return u


@triton.jit
def _forward_kernel(x_ptr, wt_ptr, mt_ptr, drop_ptr, alpha_ptr, beta_ptr, a_ptr, b_ptr, p_ptr,
                    h_ptr, s_ptr, w_ptr, i_ptr, y_ptr, steps, n, lags, KIND: tl.constexpr,
                    SUB: tl.constexpr, HAS_REC: tl.constexpr, BLOCK: tl.constexpr,
                    TILE: tl.constexpr):
    bi = tl.program_id(0)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    keep = c < n
    tau = tl.load(p_ptr)
    q = tl.load(p_ptr + 1)
    thr = tl.load(p_ptr + 2)
    zero = tl.zeros((BLOCK,), dtype=x_ptr.dtype.element_ty)
    alpha, beta, a, b = _neuron_coeffs(alpha_ptr, beta_ptr, a_ptr, b_ptr, c, keep)
    drop = zero
    if HAS_REC:
        drop = tl.load(drop_ptr + bi * n + c, mask=keep, other=0.0)
    u = zero
    w = zero
    hp = zero
    sp = zero
    base = bi * steps * n
    for t in range(0, steps):
        row = base + t * n
        cur = tl.load(x_ptr + row + c, mask=keep, other=0.0)
        if HAS_REC:
            y = zero
            for k in range(1, tl.minimum(lags - 1, t) + 1):
                y += tl.load(mt_ptr + k * n + c, mask=keep, other=0.0) * tl.load(
                    s_ptr + row - k * n + c, mask=keep, other=0.0)
            tl.store(y_ptr + row + c, y, mask=keep)
            tl.debug_barrier()  # y[t] of every neuron written before any thread reads a tile
            r = zero
            for o0 in range(0, n, TILE):
                o = o0 + tl.arange(0, TILE)
                yo = tl.load(y_ptr + row + o, mask=o < n, other=0.0)
                wt = tl.load(wt_ptr + o[:, None] * n + c[None, :],
                             mask=(o < n)[:, None] & keep[None, :], other=0.0)
                r += tl.sum(wt * yo[:, None], axis=0)
            cur = cur + drop * r
        if KIND == 0:
            h = u - div_exact(u, tau) + cur
        elif KIND == 1:
            w = beta * w + a * hp + b * sp
            h = alpha * u + (1.0 - alpha) * (cur - w)
        else:
            h = alpha * u + (1.0 - alpha) * (cur - w)
        s = tl.where(h - thr >= 0, 1.0, 0.0).to(h.dtype)
        u = _after_reset(h, s, thr, SUB)
        if KIND == 2:
            w = beta * w + (1.0 - beta) * q * (a * u + b * s)
        tl.store(h_ptr + row + c, h, mask=keep)
        tl.store(s_ptr + row + c, s, mask=keep)
        if KIND != 0:
            tl.store(w_ptr + row + c, w, mask=keep)
            tl.store(i_ptr + row + c, cur, mask=keep)
        hp = h
        sp = s
        if HAS_REC:
            tl.debug_barrier()  # s[t] written before step t+1's trace reads it


@triton.jit
def _backward_kernel(gs_ptr, gh_ptr, h_ptr, s_ptr, w_ptr, i_ptr, wr_ptr, mt_ptr, drop_ptr,
                     alpha_ptr, beta_ptr, a_ptr, b_ptr, p_ptr, gi_ptr, gy_ptr, part_ptr, batch,
                     steps, n, lags, KIND: tl.constexpr, SUB: tl.constexpr,
                     HAS_REC: tl.constexpr, SG: tl.constexpr, BLOCK: tl.constexpr,
                     TILE: tl.constexpr):
    bi = tl.program_id(0)
    c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    keep = c < n
    tau = tl.load(p_ptr)
    q = tl.load(p_ptr + 1)
    thr = tl.load(p_ptr + 2)
    p1 = tl.load(p_ptr + 3)
    p2 = tl.load(p_ptr + 4)
    slope = tl.load(p_ptr + 5)
    zero = tl.zeros((BLOCK,), dtype=h_ptr.dtype.element_ty)
    alpha, beta, a, b = _neuron_coeffs(alpha_ptr, beta_ptr, a_ptr, b_ptr, c, keep)
    gu = zero  # dL/du[t] from step t+1
    gw = zero  # dL/dw[t] from step t+1
    gh_c = zero  # adlif: dL/dh[t] through w[t+1]
    gs_c = zero  # adlif: dL/ds[t] through w[t+1]
    g_alpha = zero
    g_beta = zero
    g_a = zero
    g_b = zero
    base = bi * steps * n
    for j in range(0, steps):
        t = steps - 1 - j
        row = base + t * n
        gs = tl.load(gs_ptr + row + c, mask=keep, other=0.0) + gs_c
        if HAS_REC:
            for k in range(1, tl.minimum(lags - 1, steps - 1 - t) + 1):
                gs += tl.load(mt_ptr + k * n + c, mask=keep, other=0.0) * tl.load(
                    gy_ptr + row + k * n + c, mask=keep, other=0.0)
        h = tl.load(h_ptr + row + c, mask=keep, other=0.0)
        s = tl.load(s_ptr + row + c, mask=keep, other=0.0)
        prev = keep & (c * 0 + t > 0)  # step -1 is rest: all zero
        hp = tl.load(h_ptr + row - n + c, mask=prev, other=0.0)
        sp = tl.load(s_ptr + row - n + c, mask=prev, other=0.0)
        u_t = _after_reset(h, s, thr, SUB)
        u_p = _after_reset(hp, sp, thr, SUB)
        if KIND != 0:
            cur = tl.load(i_ptr + row + c, mask=keep, other=0.0)
            w_p = tl.load(w_ptr + row - n + c, mask=prev, other=0.0)
        gu_tot = gu
        gw_prev = zero
        if KIND == 2:  # w[t] = β w[t-1] + (1-β) q (a u[t] + b s[t])
            k_w = (1.0 - beta) * q
            gu_tot += gw * k_w * a
            gs += gw * k_w * b
            g_beta += gw * (w_p - q * (a * u_t + b * s))
            g_a += gw * k_w * u_t
            g_b += gw * k_w * s
            gw_prev = gw * beta
        if SUB:
            gh = gu_tot
            gs -= thr * gu_tot
        else:
            gh = gu_tot * (1.0 - s)
        gh += tl.load(gh_ptr + row + c, mask=keep, other=0.0) + gh_c + gs * _surrogate(
            h - thr, p1, p2, slope, SG)
        if KIND == 0:
            gi = gh
            gu = gh - div_exact(gh, tau)
        elif KIND == 1:  # h = α u[t-1] + (1-α)(I - w[t]); w[t] from step t-1
            w_t = tl.load(w_ptr + row + c, mask=keep, other=0.0)
            gi = gh * (1.0 - alpha)
            gu = gh * alpha
            g_alpha += gh * (u_p - cur + w_t)
            gwt = gw - gi
            g_beta += gwt * w_p
            g_a += gwt * hp
            g_b += gwt * sp
            gw = beta * gwt
            gh_c = a * gwt
            gs_c = b * gwt
        else:  # h = α u[t-1] + (1-α)(I - w[t-1])
            gi = gh * (1.0 - alpha)
            gu = gh * alpha
            g_alpha += gh * (u_p - cur + w_p)
            gw = gw_prev - gi
        tl.store(gi_ptr + row + c, gi, mask=keep)
        if HAS_REC:  # gy[t, o] = Σ_i W[i, o] drop[i] gI[t, i]
            tl.debug_barrier()  # gI[t] of every neuron written before the tiles read it
            acc = zero
            for i0 in range(0, n, TILE):
                i = i0 + tl.arange(0, TILE)
                z = tl.load(drop_ptr + bi * n + i, mask=i < n, other=0.0) * tl.load(
                    gi_ptr + row + i, mask=i < n, other=0.0)
                wr = tl.load(wr_ptr + i[:, None] * n + c[None, :],
                             mask=(i < n)[:, None] & keep[None, :], other=0.0)
                acc += tl.sum(wr * z[:, None], axis=0)
            tl.store(gy_ptr + row + c, acc, mask=keep)
            tl.debug_barrier()  # gy[t] written before step t-1 reads it
    out = bi * n + c
    plane = batch * n
    tl.store(part_ptr + out, g_alpha, mask=keep)
    tl.store(part_ptr + plane + out, g_beta, mask=keep)
    tl.store(part_ptr + 2 * plane + out, g_a, mask=keep)
    tl.store(part_ptr + 3 * plane + out, g_b, mask=keep)


def _geometry(batch: int, n: int, has_rec: bool) -> tuple[tuple[int, int], dict[str, int]]:
    """Grid and launch constants: a program per sample owning all neurons with recurrence, a
    program per sample and block of 64 neurons without."""
    if not has_rec:
        block = channel_block(n)
        return (batch, triton.cdiv(n, block)), dict(BLOCK=block, TILE=1,
                                                     num_warps=TIME_LOOP_WARPS)
    block = 1 << max(0, n - 1).bit_length()
    tile = max(1, min(block, TILE_ELEMENTS // block))
    warps = 2 if block <= 64 else 4 if block <= 256 else 8 if block <= 1024 else 16
    return (batch, 1), dict(BLOCK=block, TILE=tile, num_warps=warps)


class _TritonRecurrent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_rec, m, drop, alpha, beta, a, b, consts):
        kind, subtract, has_rec, tau, q, thr, sg_code, p1, p2 = consts
        x = x.contiguous()
        batch, steps, n = x.shape
        dummy = x.new_empty(1)
        wt = w_rec.detach().t().contiguous() if has_rec else dummy
        mt = m.detach().t().contiguous() if has_rec else dummy  # (L, N): coalesced per lag
        drop_ = drop.detach().contiguous() if has_rec else dummy
        h, s = torch.empty_like(x), torch.empty_like(x)
        w, cur = (torch.empty_like(x), torch.empty_like(x)) if kind else (dummy, dummy)
        y = torch.empty_like(x) if has_rec else dummy
        coeffs = [p.detach().contiguous() for p in (alpha, beta, a, b)]
        grid, launch = _geometry(batch, n, has_rec)
        _forward_kernel[grid](
            x, wt, mt, drop_, *coeffs, constants(x, tau, q, thr), h, s, w, cur, y, steps, n,
            mt.shape[0] if has_rec else 1, KIND=kind, SUB=subtract, HAS_REC=has_rec, **launch)
        ctx.save_for_backward(h, s, w, cur, y, w_rec.detach() if has_rec else dummy, mt, drop_,
                              *coeffs)
        ctx.consts = consts
        return s, h

    @staticmethod
    def backward(ctx, gs, gh):
        h, s, w, cur, y, w_rec, mt, drop, alpha, beta, a, b = ctx.saved_tensors
        kind, subtract, has_rec, tau, q, thr, sg_code, p1, p2 = ctx.consts
        batch, steps, n = h.shape
        gs = torch.zeros_like(h) if gs is None else gs.contiguous()
        gh = torch.zeros_like(h) if gh is None else gh.contiguous()
        gi = torch.empty_like(h)
        gy = torch.empty_like(h) if has_rec else h.new_empty(1)
        part = h.new_empty(4, batch, n)
        wr = w_rec.contiguous()
        grid, launch = _geometry(batch, n, has_rec)
        p = constants(h, tau, q, thr, p1, p2, math.pi / 2.0 * p1)
        _backward_kernel[grid](
            gs, gh, h, s, w, cur, wr, mt, drop, alpha, beta, a, b, p, gi, gy, part, batch, steps,
            n, mt.shape[0] if has_rec else 1, KIND=kind, SUB=subtract, HAS_REC=has_rec,
            SG=sg_code, **launch)
        g_w = g_m = None
        if has_rec:
            g_w = weight_grad(gi, drop, y) if ctx.needs_input_grad[1] else None
            g_m = lag_grad(gy, s, mt.shape[0]) if ctx.needs_input_grad[2] else None
        g_alpha, g_beta, g_a, g_b = part.sum(1).unbind(0)
        return gi, g_w, g_m, None, g_alpha, g_beta, g_a, g_b, None


def recurrent_sequence(
    x: Tensor, w_rec: Tensor | None, m: Tensor | None, drop: Tensor | None,
    alpha: Tensor, beta: Tensor, a: Tensor, b: Tensor, *, neuron: str, reset: str, tau: float,
    q: float, threshold: float, surrogate: str, p1: float, p2: float,
) -> tuple[Tensor, Tensor]:
    """Spikes and membranes (B, T, N); arguments as :func:`spikedelay.ops.recurrent.
    recurrent_sequence` (``m`` given whenever ``w_rec`` is)."""
    batch, steps, n = x.shape
    if batch == 0 or steps == 0 or n == 0:
        return torch.zeros_like(x), torch.zeros_like(x)
    w_rec, m, drop, consts = kernel_arguments(
        x, w_rec, m, drop, neuron=neuron, reset=reset, tau=tau, q=q, threshold=threshold,
        surrogate=surrogate, p1=p1, p2=p2)
    return _TritonRecurrent.apply(x, w_rec, m, drop, alpha, beta, a, b, consts)

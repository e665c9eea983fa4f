"""The CPU layout of :mod:`spikedelay.ops.delay_conv` (numba): sparse input transform, chunks.

Why: the spectrum of a spike train is a sum of DFT columns, one per spike. Hidden layers see
~10 % non-zero entries, so adding one column per spike does ~1/10 of the dense matmul's work,
and it reads ``x`` in its own (B, T, in) layout instead of a time-major copy. The non-zeros are
listed once per forward pass (:func:`sparse_events`) and reused by every spectrum chunk and by
the backward pass. The spectrum is processed in cache-sized chunks of rows and inverted with
one small matmul per sample (``WIDE_LAYOUT = False``). Evaluation with integer delays can skip
the DFT: :func:`integer_tap_conv` sends each event through one tap per synapse.
"""

import numba
import numpy as np
import torch
from torch import Tensor

WIDE_LAYOUT = False
SPARSE_MAX_DENSITY = 0.2  # from here on the dense matmul transform of x is as fast (measured)


@numba.njit(parallel=True, cache=True)
def _events(x, counts, limit):  # pragma: no cover - compiled
    # counts[b + 1] = non-zeros of sample b; then (ptr, flat index t·in + i, value) per event,
    # unless there are more than ``limit`` (then the last item is False and nothing is listed)
    batch, steps, n_in = x.shape
    for b in numba.prange(batch):
        n = 0
        for t in range(steps):
            for i in range(n_in):
                if x[b, t, i] != 0:
                    n += 1
        counts[b + 1] = n
    ptr = np.cumsum(counts)
    if ptr[-1] > limit:
        return ptr, np.empty(0, dtype=np.int32), np.empty(0, dtype=x.dtype), False
    index = np.empty(ptr[-1], dtype=np.int32)
    value = np.empty(ptr[-1], dtype=x.dtype)
    for b in numba.prange(batch):
        n = ptr[b]
        for t in range(steps):
            for i in range(n_in):
                v = x[b, t, i]
                if v != 0:
                    index[n] = t * n_in + i
                    value[n] = v
                    n += 1
    return ptr, index, value, True


@numba.njit(parallel=True, cache=True)
def _transform(ptr, index, value, n_in, d_t, out):  # pragma: no cover - compiled
    # out[r, b, i] = Σ_t d_t[t, r] · x[b, t, i], from the event list of x
    batch = ptr.shape[0] - 1
    rows = d_t.shape[1]
    for b in numba.prange(batch):
        local = np.zeros((n_in, rows), dtype=out.dtype)
        for e in range(ptr[b], ptr[b + 1]):
            t = index[e] // n_in
            i = index[e] - t * n_in
            v = value[e]
            for r in range(rows):  # contiguous: one vector multiply-add per event
                local[i, r] += v * d_t[t, r]
        for r in range(rows):
            for i in range(n_in):
                out[r, b, i] = local[i, r]


def sparse_events(x: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """The non-zeros of a mostly-zero input as ``(ptr, index, value)``, else ``None``.

    ``None`` (use the dense matmul transform) for dense inputs (more than
    ``SPARSE_MAX_DENSITY`` non-zeros) and empty ones.
    """
    if x.numel() == 0:
        return None
    counts = np.zeros(x.shape[0] + 1, dtype=np.int64)
    limit = int(SPARSE_MAX_DENSITY * x.numel())  # counted in the same parallel pass
    ptr, index, value, sparse = _events(x.detach().contiguous().numpy(), counts, limit)
    if not sparse:
        return None
    return torch.from_numpy(ptr), torch.from_numpy(index), torch.from_numpy(value)


def sparse_spectrum(events: tuple[Tensor, ...], d_rows: Tensor, batch: int, n_in: int,
                    out: Tensor | None = None) -> Tensor:
    """Rows ``d_rows`` (r, T) of the DFT of every input series, as (r, B, in), from the events
    (into ``out`` if given)."""
    if out is None:
        out = d_rows.new_empty(d_rows.shape[0], batch, n_in)
    ptr, index, value = (e.numpy() for e in events)
    _transform(ptr, index, value, n_in, d_rows.T.contiguous().numpy(), out.numpy())
    return out


@numba.njit(parallel=True, cache=True)
def _integer_taps(ptr, index, value, n_in, syn_lag, syn_w, t_out, out):  # pragma: no cover
    # out[b, o, t'] = Σ over events (t, i, v) of x[b] and synapse copies (o, c) of input i of
    # v · w[i, o, c] at t' = t + lag[i, o, c]. The events of a sample are first grouped by input
    # feature, so that each synapse adds its ~T·density events into one row out[b, o] (in L1).
    batch = ptr.shape[0] - 1
    n_out, copies = syn_w.shape[1], syn_w.shape[2]
    for b in numba.prange(batch):
        first = np.zeros(n_in + 1, dtype=np.int64)
        for e in range(ptr[b], ptr[b + 1]):
            first[index[e] % n_in + 1] += 1
        first = np.cumsum(first)
        fill = first[:-1].copy()
        times = np.empty(ptr[b + 1] - ptr[b], dtype=np.int64)
        vals = np.empty(ptr[b + 1] - ptr[b], dtype=out.dtype)
        for e in range(ptr[b], ptr[b + 1]):  # events in time order: each group stays sorted
            t = index[e] // n_in
            i = index[e] - t * n_in
            times[fill[i]] = t
            vals[fill[i]] = value[e]
            fill[i] += 1
        y = out[b]
        for i in range(n_in):
            if first[i] == first[i + 1]:
                continue
            for o in range(n_out):
                row = y[o]
                for c in range(copies):
                    lag = syn_lag[i, o, c]
                    w = syn_w[i, o, c]
                    for e in range(first[i], first[i + 1]):
                        tt = times[e] + lag
                        if 0 <= tt < t_out:
                            row[tt] += vals[e] * w


def value_dtype(events) -> torch.dtype:
    return events[2].dtype


def integer_tap_conv(events, weight: Tensor, delays: Tensor, shift: int, batch: int, n_in: int,
                     t_out: int) -> Tensor:
    """``y[b, t', o] = Σ_{i,c} w[o,i,c] · x[b, t' + shift - d[o,i,c], i]`` from ``x``'s events.

    One multiply-add per (event, synapse copy): for spike trains with one tap per synapse this
    is ~ density × (in · out · kc) per step, against the DFT's ≈ 1.5 N/T' · (in · out).
    ``weight``, ``delays``: (out, in, kc); forward only (evaluation).
    """
    n_out = weight.shape[0]
    # per input feature, its synapses' lag (t' - t) and weight: (in, out, kc), contiguous
    syn_w = weight.detach().to(value_dtype(events)).permute(1, 0, 2).contiguous()
    syn_lag = (delays - shift).permute(1, 0, 2).to(torch.int64).contiguous()
    out = syn_w.new_zeros(batch, n_out, t_out)
    ptr, index, value = (e.numpy() for e in events)
    _integer_taps(ptr, index, value, n_in,
                  syn_lag.numpy(), syn_w.numpy(), t_out, out.numpy())
    return out.transpose(1, 2)

"""Streaming inference: one frame at a time, many independent streams, integer delays.

Each delay layer keeps a **ring buffer of future input currents** with ``K = max_delay`` slots
(delays 0 … K-1, i.e. max delay + 1 slots) per stream. When a presynaptic event arrives at step
``t`` (an input frame entry ``a ≠ 0``, or a hidden spike), every synapse ``(j, d, w)`` of that
input adds ``a · w`` to slot ``(t + d) mod K`` of neuron ``j``: an event-driven scatter whose
cost is events × fan-out, not the dense ``K ×`` multiply-adds of the offline convolution. Slot
``t mod K`` then holds the neuron's complete input current for step ``t``; it is read, cleared
and fed to the neuron update. (The buffer is stored mirrored, ``2K`` slots: a write goes to slot
``(t mod K) + d`` without a modulo or branch in the inner loop, and step ``t`` reads slots
``t mod K`` and ``t mod K + K``. Both can only hold currents for step ``t``: pending currents
are for steps ``t … t+K-1``, distinct modulo ``K``.) The neuron update is
:func:`spikedelay.neurons.lif_step` / ``li_step``, restated in the compiled loop line by line,
in the same operation order, in float64::

    H = V - V/τ + (I + b);  S = [H ≥ ϑ];  V = H · (1 - S)      hidden (LIF, hard reset)
    V = V - V/τ + I                                           readout (LI), the output

**Flush.** The offline model pads each layer with ``P = (K-1)//2`` zero steps on the right
(reference padding), so its output is ``L·P`` steps longer than its input (``L`` delay layers).
After a stream's input ends call :meth:`Stream.finish` (or pass ``live=False`` ticks): it runs
those ``L·P`` extra steps with zero input and silences hidden layer ``l`` after ``l·P`` of them,
exactly as the offline length masking does. Only then does the stream equal the offline model
(same readout potentials at every step, same prediction). With causal padding ``P = 0``.

Prediction: the running ``m = Σ_t softmax(V_out[t])`` over valid steps, argmax (as training).

State is a :class:`StreamState` of numpy arrays. For speed the compiled loop updates it **in
place** (copying ~50 kB per stream per frame would cost more than the computation); the pure
function :func:`stream_step` returns it for chaining. ``state.copy()`` takes a snapshot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numba
import numpy as np

if TYPE_CHECKING:  # types only: net.py imports this module (DeployedNet.stream, .predict)
    from spikedelay.deploy.net import DeployedNet


class StreamProgram(NamedTuple):
    """A :class:`DeployedNet` flattened into arrays for the compiled loop (CSR by input)."""

    ints: np.ndarray  # (L, 8): n_in, n_out, ptr_base, v_base, ring_base, spiking, limit, -
    ptr: np.ndarray  # concatenated CSR row pointers (per layer n_in + 1, global positions)
    off: np.ndarray  # (nnz,) uint32: d · n_out + j (slot offset into the layer's ring)
    w: np.ndarray  # (nnz,) float64
    fl: np.ndarray  # (L, 2): tau, threshold
    bias: np.ndarray  # concatenated per-layer biases (sum n_out,)
    ring_len: int  # K
    ring_size: int  # sum over layers of 2K · n_out (mirrored ring, see _kernel)
    v_size: int  # sum n_out
    n_classes: int
    in_features: int


class StreamState(NamedTuple):
    """Per-stream state, all numpy, batch of streams first.

    ``ring`` (B, Σ K·out) future input currents; ``v`` (B, Σ out) membrane potentials;
    ``flush`` (B,) 0 while input arrives, then the index of the flush step (1, 2, …);
    ``head`` (1,) the common ring position (streams advance in lockstep); ``scores`` (B,
    classes) running Σ softmax of the valid readout steps; ``events`` (B, L) presynaptic
    events and ``synops`` (B, L) synaptic operations (events × fan-out) per layer so far;
    ``steps`` (B,) valid readout steps so far.
    """

    ring: np.ndarray
    v: np.ndarray
    flush: np.ndarray
    head: np.ndarray
    scores: np.ndarray
    events: np.ndarray
    synops: np.ndarray
    steps: np.ndarray

    def copy(self) -> StreamState:
        return StreamState(*(a.copy() for a in self))


def compile_program(net: DeployedNet) -> StreamProgram:
    """Flatten ``net`` into CSR synapse lists (zero weights dropped; copies merged)."""
    k = net.max_delay
    n_layers = len(net.layers)
    ints = np.zeros((n_layers, 8), dtype=np.int64)
    fl = np.zeros((n_layers, 2), dtype=np.float64)
    ptrs, offs, ws, biases = [], [], [], []
    nnz = ring = vb = pb = 0
    for idx, layer in enumerate(net.layers):
        stack = layer.delay_stack(k)  # (K, out, in)
        n_out, n_in = layer.out_features, layer.in_features
        # entries sorted by input, then by offset d·out + j (sequential within a delay)
        d, j, i = np.nonzero(stack)
        off = d * n_out + j
        order = np.lexsort((off, i))
        i, off, w = i[order], off[order], stack[d[order], j[order], i[order]]
        ptr = np.zeros(n_in + 1, dtype=np.int64)
        np.cumsum(np.bincount(i, minlength=n_in), out=ptr[1:])
        ptrs.append(ptr + nnz)
        offs.append(off.astype(np.uint32))  # < 2·K·out; half the bandwidth of int64
        ws.append(w.astype(np.float64))
        biases.append(layer.bias.astype(np.float64))
        spiking = 1 if layer.neuron == "lif" else 0
        # hidden layer idx (0-based) is valid for (idx+1)·P flush steps; the readout for L·P
        limit = (idx + 1) * net.tail if spiking else n_layers * net.tail
        ints[idx] = (n_in, n_out, pb, vb, ring, spiking, limit, 0)
        fl[idx] = (layer.tau, layer.threshold)
        nnz += len(w)
        ring += 2 * k * n_out
        vb += n_out
        pb += n_in + 1
    for idx in range(n_layers - 1):
        if ints[idx, 1] != ints[idx + 1, 0]:
            raise ValueError(f"layer {idx} has {ints[idx, 1]} outputs but layer {idx + 1} "
                             f"takes {ints[idx + 1, 0]} inputs")
    if net.layers[-1].neuron != "li" or any(la.neuron != "lif" for la in net.layers[:-1]):
        raise ValueError("streaming needs LIF hidden layers and an LI readout")
    return StreamProgram(
        ints=ints, ptr=np.concatenate(ptrs), off=np.concatenate(offs), w=np.concatenate(ws),
        fl=fl, bias=np.concatenate(biases), ring_len=k, ring_size=ring, v_size=vb,
        n_classes=net.n_classes, in_features=net.in_features,
    )


def initial_state(prog: StreamProgram, n_streams: int) -> StreamState:
    """Zero state for ``n_streams`` independent streams."""
    n_layers = prog.ints.shape[0]
    return StreamState(
        ring=np.zeros((n_streams, prog.ring_size)),
        v=np.zeros((n_streams, prog.v_size)),
        flush=np.zeros(n_streams, dtype=np.int64),
        head=np.zeros(1, dtype=np.int64),
        scores=np.zeros((n_streams, prog.n_classes)),
        events=np.zeros((n_streams, n_layers)),
        synops=np.zeros((n_streams, n_layers)),
        steps=np.zeros(n_streams, dtype=np.int64),
    )


def reset_streams(state: StreamState, streams) -> None:
    """Zero the state of the given streams (indices or bool mask), e.g. to start a new one."""
    for name in ("ring", "v", "flush", "scores", "events", "synops", "steps"):
        getattr(state, name)[streams] = 0


_JIT = {"cache": True, "boundscheck": False}


@numba.njit(**_JIT)
def _advance_stream(b, h0, frames, live, ints, ptr, off, w, fl, bias, ring_len,
                    ring, v, flush, scores, events, synops, steps, v_out,
                    valid):  # pragma: no cover - compiled
    """Advance stream ``b`` (ring position ``h0`` at the first step) by ``T`` steps. It only
    touches row ``b`` of every state array, so streams can run on different threads."""
    n_t = frames.shape[1]
    n_layers = ints.shape[0]
    n_cls = v_out.shape[2]
    h = h0
    rg = ring[b]  # this stream's rings; unsigned indices below skip numba's wraparound
    vrow = v[b]
    valid_e = np.empty(n_cls)  # softmax numerators
    spk = np.empty(v.shape[1], dtype=np.bool_)  # spikes of the current layer
    for t in range(n_t):
        if live[b, t]:
            fstep = 0
        else:
            flush[b] += 1
            fstep = flush[b]
        # -- layer 0: scatter the non-zero entries of the input frame
        if fstep == 0:
            base0 = np.uint64(ints[0, 4] + h * ints[0, 1])
            p0 = ints[0, 2]
            for i in range(ints[0, 0]):
                a = frames[b, t, i]
                if a != 0.0:
                    lo = ptr[p0 + i]
                    hi = ptr[p0 + i + 1]
                    events[b, 0] += 1.0
                    synops[b, 0] += hi - lo
                    for s in range(lo, hi):
                        rg[base0 + off[s]] += a * w[s]
        for layer in range(n_layers):
            n_out = ints[layer, 1]
            vb = ints[layer, 3]
            rb = ints[layer, 4] + h * n_out
            rb_hi = rb + ring_len * n_out  # the mirror slot h + K
            tau = fl[layer, 0]
            if ints[layer, 5] == 1:  # LIF, spikes scattered into the next layer's ring
                thr = fl[layer, 1]
                emit = fstep <= ints[layer, 6]
                nxt = layer + 1
                base2 = np.uint64(ints[nxt, 4] + h * ints[nxt, 1])
                p2 = ints[nxt, 2]
                # pass 1 has no scatter, so the compiler can vectorise it
                for j in range(n_out):
                    x = (rg[rb + j] + rg[rb_hi + j]) + bias[vb + j]
                    rg[rb + j] = 0.0
                    rg[rb_hi + j] = 0.0
                    vv = vrow[vb + j]
                    hh = vv - vv / tau + x
                    fired = hh >= thr
                    spk[j] = fired
                    vrow[vb + j] = 0.0 if fired else hh
                if emit:  # pass 2: scatter the spikes into the next layer's ring
                    for j in range(n_out):
                        if spk[j]:
                            lo = ptr[p2 + j]
                            hi = ptr[p2 + j + 1]
                            events[b, nxt] += 1.0
                            synops[b, nxt] += hi - lo
                            for s in range(lo, hi):
                                rg[base2 + off[s]] += w[s]
            else:  # LI readout: its potential is the output
                ok = fstep <= ints[layer, 6]
                vmax = -np.inf
                for j in range(n_out):
                    x = (rg[rb + j] + rg[rb_hi + j]) + bias[vb + j]
                    rg[rb + j] = 0.0
                    rg[rb_hi + j] = 0.0
                    vv = v[b, vb + j]
                    hh = vv - vv / tau + x
                    v[b, vb + j] = hh
                    if j < n_cls:
                        v_out[b, t, j] = hh
                    if hh > vmax:
                        vmax = hh
                valid[b, t] = ok
                if ok:
                    steps[b] += 1
                    tot = 0.0
                    for j in range(n_cls):
                        e = np.exp(v_out[b, t, j] - vmax)
                        valid_e[j] = e
                        tot += e
                    for j in range(n_cls):
                        scores[b, j] += valid_e[j] / tot
        h = h + 1 if h + 1 < ring_len else 0


@numba.njit(**_JIT)
def _advance_serial(frames, live, ints, ptr, off, w, fl, bias, ring_len,
                ring, v, flush, head, scores, events, synops, steps, v_out, valid):
    h0 = head[0]
    for b in range(frames.shape[0]):  # streams outer: one stream's rings stay in cache
        _advance_stream(b, h0, frames, live, ints, ptr, off, w, fl, bias, ring_len, ring, v,
                        flush, scores, events, synops, steps, v_out, valid)
    head[0] = (h0 + frames.shape[1]) % ring_len


@numba.njit(parallel=True, **_JIT)
def _advance_parallel(frames, live, ints, ptr, off, w, fl, bias, ring_len,
                ring, v, flush, head, scores, events, synops, steps, v_out, valid):
    h0 = head[0]
    for b in numba.prange(frames.shape[0]):
        _advance_stream(b, h0, frames, live, ints, ptr, off, w, fl, bias, ring_len, ring, v,
                        flush, scores, events, synops, steps, v_out, valid)
    head[0] = (h0 + frames.shape[1]) % ring_len


def _kernel(parallel: bool = False):
    """The compiled loop over streams, serial or split over numba's threads (compiled, or
    loaded from numba's on-disk cache, on first call)."""
    return _advance_parallel if parallel else _advance_serial


def stream_step(prog: StreamProgram, frames: np.ndarray, state: StreamState,
                live: np.ndarray | None = None, *, threads: bool = False,
                ) -> tuple[np.ndarray, np.ndarray, StreamState]:
    """Advance every stream by ``T`` steps.

    Shapes: frames (B, T, in) (any real dtype; converted to float64), live (B, T) bool or None
    (all live) → v_out (B, T, classes) float64, valid (B, T) bool, state (updated in place).

    ``live[b, t] = False`` makes step ``t`` a flush step of stream ``b`` (its frame is
    ignored); once a stream has flushed it must not get live steps again until
    :func:`reset_streams`. ``valid`` is False where a flushed stream is past its last output.
    ``threads=True`` splits the streams over numba's threads (``numba.set_num_threads``).
    """
    frames = np.ascontiguousarray(frames, dtype=np.float64)
    if frames.ndim != 3 or frames.shape[2] != prog.in_features:
        raise ValueError(f"frames must have shape (B, T, {prog.in_features}), "
                         f"got {frames.shape}")
    n_b, n_t, _ = frames.shape
    if state.v.shape[0] != n_b:
        raise ValueError(f"state holds {state.v.shape[0]} streams but frames have {n_b}")
    if live is None:
        if np.any(state.flush):
            raise ValueError("a stream was finished: reset_streams() it before new input")
        live = np.ones((n_b, n_t), dtype=np.bool_)
    else:
        live = np.ascontiguousarray(live, dtype=np.bool_)
        if live.shape != (n_b, n_t):
            raise ValueError(f"live must have shape {(n_b, n_t)}, got {live.shape}")
        started = (state.flush > 0)[:, None] | (np.cumsum(~live, axis=1) > 0)
        if np.any(live & started):
            raise ValueError("a stream got input after it was finished: reset_streams() first")
    v_out = np.zeros((n_b, n_t, prog.n_classes))
    valid = np.zeros((n_b, n_t), dtype=np.bool_)
    parallel = threads and n_b > 1
    _kernel(bool(parallel))(frames, live, prog.ints, prog.ptr, prog.off, prog.w, prog.fl,
                            prog.bias, prog.ring_len, *state, v_out, valid)
    return v_out, valid, state


class Stream:
    """A batch of independent streams over a :class:`DeployedNet` (holds the state for you).

    Example::

        s = Stream(net, n_streams=1)
        for frame in frames:             # (in,) one 10 ms frame
            s.push(frame)                # readout potentials of this step
        s.finish()                       # the L·P tail steps; now s.prediction is final
        s.prediction, s.scores

    Shapes: ``push(frames)`` takes (in,) or (T, in) for one stream, (B, T, in) for ``B``, and
    returns v_out (T, classes) / (B, T, classes). ``finish()`` returns the tail's v_out.
    """

    def __init__(self, net: DeployedNet | StreamProgram, n_streams: int = 1) -> None:
        self.prog = net if isinstance(net, StreamProgram) else compile_program(net)
        self.net = None if isinstance(net, StreamProgram) else net
        self.n_streams = int(n_streams)
        self.state = initial_state(self.prog, self.n_streams)
        self._flush_steps = int(self.prog.ints[-1, 6])
        p = self.prog
        self._n_in = p.in_features
        self._prog_args = (p.ints, p.ptr, p.off, p.w, p.fl, p.bias, p.ring_len)
        self._x1 = np.zeros((self.n_streams, 1, p.in_features))
        self._live1 = np.ones((self.n_streams, 1), dtype=np.bool_)
        self._valid1 = np.zeros((self.n_streams, 1), dtype=np.bool_)
        self._v1 = np.zeros((self.n_streams, 1, p.n_classes))
        # the state arrays are updated (and reset) in place, so one argument tuple serves
        self._args1 = (self._x1, self._live1, *self._prog_args, *self.state, self._v1,
                       self._valid1)
        self._step1 = _kernel(False)
        self._finished = False

    def _shape(self, frames: np.ndarray) -> tuple[np.ndarray, int]:
        frames = np.asarray(frames)
        if frames.ndim == 1:
            return frames[None, None], 1
        if frames.ndim == 2:
            if self.n_streams != 1:
                raise ValueError(f"(T, in) frames need n_streams = 1, have {self.n_streams}")
            return frames[None], 2
        return frames, 3

    def push(self, frames: np.ndarray) -> np.ndarray:
        """Feed frames to every stream; returns their readout potentials (see class doc)."""
        frames = np.asarray(frames)
        one = frames.ndim == 1 and self.n_streams == 1
        if one and frames.shape[0] == self._n_in or frames.shape == self._x1.shape:
            # one step: skip the generic checks and allocations (they cost more than the step)
            if self._finished:
                raise ValueError("a stream was finished: reset() it before new input")
            self._x1[...] = frames.reshape(self._x1.shape)
            self._step1(*self._args1)
            return self._v1[0, 0].copy() if one else self._v1.copy()
        x, ndim = self._shape(frames)
        v, _, _ = stream_step(self.prog, x, self.state)
        return v[0, 0] if ndim == 1 else v[0] if ndim == 2 else v

    def finish(self) -> np.ndarray:
        """Run the ``L·P`` flush steps of every stream; returns their v_out (B, L·P, classes)."""
        n = self._flush_steps
        self._finished = True
        x = np.zeros((self.n_streams, n, self.prog.in_features))
        v, _, _ = stream_step(self.prog, x, self.state,
                              live=np.zeros((self.n_streams, n), dtype=np.bool_))
        return v[0] if self.n_streams == 1 else v

    def reset(self, streams=None) -> None:
        """Start over (all streams, or the given ones)."""
        reset_streams(self.state, slice(None) if streams is None else streams)
        self._finished = bool(self.state.flush.any())

    @property
    def flush_steps(self) -> int:
        return self._flush_steps

    @property
    def scores(self) -> np.ndarray:
        """Running Σ softmax over valid readout steps, (B, classes) (or (classes,) for one)."""
        s = self.state.scores
        return s[0].copy() if self.n_streams == 1 else s.copy()

    @property
    def prediction(self) -> np.ndarray | int:
        """argmax of :attr:`scores`: the running prediction (int for a single stream)."""
        p = self.state.scores.argmax(-1)
        return int(p[0]) if self.n_streams == 1 else p


def run_utterances(net: DeployedNet | StreamProgram, frames: np.ndarray, lengths: np.ndarray,
                   *, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray, StreamState]:
    """Stream a padded batch of utterances, each flushed right after its own end.

    Shapes: frames (B, T, in), lengths (B,) → v_out (B, T + L·P, classes) (each utterance's valid
    readout steps first, NaN after), scores (B, classes), final state. ``chunk`` steps per
    compiled call (None: all at once); the result does not depend on it.
    """
    prog = net if isinstance(net, StreamProgram) else compile_program(net)
    frames = np.asarray(frames)
    lengths = np.asarray(lengths, dtype=np.int64)
    n_b, n_t, n_in = frames.shape
    total = n_t + int(prog.ints[-1, 6])
    x = np.zeros((n_b, total, n_in))
    x[:, :n_t] = frames
    live = np.arange(total)[None, :] < lengths[:, None]
    state = initial_state(prog, n_b)
    outs, valids = [], []
    step = chunk or total
    for start in range(0, total, step):
        v, ok, state = stream_step(prog, x[:, start:start + step], state,
                                   live[:, start:start + step])
        outs.append(v)
        valids.append(ok)
    v_out, valid = np.concatenate(outs, 1), np.concatenate(valids, 1)
    # valid steps are a prefix of each row: compact them to the front
    packed = np.full_like(v_out, np.nan)
    for b in range(n_b):
        n = int(valid[b].sum())
        packed[b, :n] = v_out[b, valid[b]]
    return packed, state.scores.copy(), state

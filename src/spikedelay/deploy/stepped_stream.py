"""Streaming for recurrent and adaptive networks: one frame at a time, integer delays, float64.

The event-driven engine of :mod:`spikedelay.deploy.stream` holds feed-forward LIF layers. A
network with recurrence (plain or DelRec-delayed), adaptive neurons (adLIF, SE-adLIF), another
reset, biases or no BatchNorm is reduced here to a :class:`SteppedNet` (BatchNorm and biases
folded into the feed-forward weights, delays rounded) and run by :class:`SteppedStream`, which
keeps per stream and layer:

* a ring of the last ``K`` input frames (feed-forward delays ``0 … K-1``);
* a ring of the last spikes of the layer itself: neuron ``o``'s spike at ``t`` reaches every
  neuron at ``t + 1 + d_o`` (``d_o`` its rounded recurrent delay; plain recurrence ``d = 0``);
* the neuron state ``u`` (after reset), ``w`` (adaptation), and the previous ``h`` and spike.

The neuron update restates :mod:`spikedelay.ops.recurrent`'s forward in numpy, in the same
order. Fed the frames of an utterance and then :meth:`SteppedStream.finish`'s flush, the readout
potentials equal the offline model's (``DelaySNN.eval()`` in float64) at every valid step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SteppedLayer:
    """One layer: feed-forward ``stack`` (K, out, in) per delay (BN and bias folded into it and
    ``bias``), the neuron and, for hidden layers, its recurrence.

    ``neuron``: ``lif | adlif | se-adlif | li`` (the readout); ``coeffs`` (4, out) α, β, a, b;
    ``w_rec`` (out, out) post × pre or None; ``rec_lags`` (out,) int64 lags ``1 + d_o``.
    """

    stack: np.ndarray
    bias: np.ndarray
    neuron: str
    tau: float
    threshold: float = 1.0
    subtract: bool = False
    q: float = 1.0
    coeffs: np.ndarray | None = None
    w_rec: np.ndarray | None = None
    rec_lags: np.ndarray | None = None

    @property
    def out_features(self) -> int:
        return int(self.stack.shape[1])


@dataclass(frozen=True)
class SteppedNet:
    """Hidden layers then the readout; ``tail`` extra steps per layer (reference padding)."""

    layers: list[SteppedLayer]
    max_delay: int
    tail: int
    framing: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)

    @property
    def flush_steps(self) -> int:
        return len(self.layers) * self.tail

    @property
    def in_features(self) -> int:
        return int(self.layers[0].stack.shape[2])

    @property
    def n_classes(self) -> int:
        return self.layers[-1].out_features

    @property
    def bin_ms(self) -> float:
        return float(self.framing.get("bin_ms", 10.0))

    def synapse_count(self) -> int:
        """Non-zero (synapse, delay) pairs, feed-forward and recurrent: what the engine stores."""
        return int(sum(np.count_nonzero(la.stack) + (0 if la.w_rec is None else
                                                     np.count_nonzero(la.w_rec))
                       for la in self.layers))

    def stream(self, n_streams: int = 1) -> SteppedStream:
        return SteppedStream(self, n_streams)

    def predict(self, frames: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Class per utterance (argmax of Σ softmax over valid readout steps), streamed."""
        frames = np.asarray(frames, dtype=np.float64)
        if lengths is None:
            lengths = np.full(frames.shape[0], frames.shape[1])
        return np.array([self.run(frames[b, : int(n)]).sum_softmax.argmax()
                         for b, n in enumerate(lengths)], dtype=np.int64)

    def run(self, frames: np.ndarray) -> StreamResult:
        """One utterance (T, in), streamed frame by frame and flushed."""
        st = self.stream(1)
        outs = [st.step(frames[t][None]) for t in range(frames.shape[0])]
        outs += st.finish()
        v = np.concatenate(outs, 0) if outs else np.zeros((0, self.layers[-1].out_features))
        z = v - v.max(-1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        return StreamResult(v, p.sum(0))


@dataclass(frozen=True)
class StreamResult:
    v_out: np.ndarray  # (T', classes) readout potentials
    sum_softmax: np.ndarray  # (classes,)


def _np(t) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def needs_stepped_engine(model) -> bool:
    """Whether a DelaySNN has parts the event-driven LIF engine cannot hold."""
    return any(getattr(b, "neurons", None) is not None or getattr(b, "bias", None) is not None
               or getattr(b, "norm", True) is None for b in model.hidden) or (
        getattr(model, "readout_bias", None) is not None
        or not hasattr(model.li, "p"))


def stepped_parts(model) -> str:
    """What in ``model`` needs this engine, in config terms (for error messages)."""
    c = model.cfg
    parts = []
    if set(c.recurrence()) != {"none"}:
        parts.append(f"recurrence (model.recurrent = {c.recurrent})")
    if c.neuron != "lif":
        parts.append(f"{c.neuron} neurons (model.neuron)")
    if c.reset != "hard":
        parts.append(f"model.reset = {c.reset}")
    if c.bias:
        parts.append("biases (model.bias)")
    if c.norm == "none":
        parts.append("no BatchNorm (model.norm = none)")
    if c.readout_tau_trainable:
        parts.append("a trained readout τ")
    return ", ".join(parts) or "time-stepped layers"


def from_model(model, *, framing: dict[str, Any] | None = None,
               class_names: list[str] | None = None) -> SteppedNet:
    """Reduce a :class:`~spikedelay.model.DelaySNN` to its eval-mode integer-delay network."""
    import torch

    k = int(model.cfg.max_delay)
    layers: list[SteppedLayer] = []

    def stack_of(delay) -> np.ndarray:
        if getattr(delay, "kind", "synaptic") != "synaptic" or delay.weight.dim() != 3:
            raise ValueError("axonal or dendritic feed-forward delays in a recurrent or adaptive "
                             "network have no streaming form yet (synaptic delays do)")
        w = _np(delay.weight)
        d = delay.integer_delays().cpu().numpy().astype(np.int64)
        out = np.zeros((k, w.shape[0], w.shape[1]))
        jj, ii = np.meshgrid(np.arange(w.shape[0]), np.arange(w.shape[1]), indexing="ij")
        for c in range(w.shape[2]):
            np.add.at(out, (d[:, :, c], jj, ii), w[:, :, c])
        return out

    with torch.no_grad():
        for block in model.hidden:
            n = block.delay.out_features
            scale, shift = np.ones(n), np.zeros(n)
            if block.bias is not None:
                shift = _np(block.bias)
            bn = block.norm
            if bn is not None:
                s = 1.0 / np.sqrt(_np(bn.running_var) + bn.eps)
                if bn.affine:
                    s = s * _np(bn.weight)
                shift = (shift - _np(bn.running_mean)) * s
                if bn.affine:
                    shift = shift + _np(bn.bias)
                scale = s
            stack = stack_of(block.delay) * scale[None, :, None]
            neurons = block.neurons
            if neurons is None:
                p = block.lif.p
                layers.append(SteppedLayer(stack, shift, "lif", p.tau, p.threshold))
                continue
            coeffs = None
            if neurons.adaptation is not None:
                coeffs = np.stack([_np(c) for c in neurons.adaptation.coefficients()])
            w_rec = lags = None
            if neurons.recurrent is not None:
                w_rec = _np(neurons.recurrent.weight)
                lags = 1 + neurons.recurrent.integer_delays().cpu().numpy().astype(np.int64)
            layers.append(SteppedLayer(
                stack, shift, neurons.neuron, neurons.tau, neurons.threshold,
                neurons.reset == "subtract",
                neurons.adaptation.q if neurons.adaptation is not None else 1.0,
                coeffs, w_rec, lags))
        bias = (np.zeros(model.readout.out_features) if model.readout_bias is None
                else _np(model.readout_bias))
        tau = model.li.p.tau if hasattr(model.li, "p") else None
        if tau is None:
            raise ValueError("a trained per-class readout τ has no streaming form yet")
        layers.append(SteppedLayer(stack_of(model.readout), bias, "li", float(tau)))
    return SteppedNet(layers, k, int(model.readout.right_pad), dict(framing or {}),
                      list(class_names or []))


class SteppedStream:
    """``n_streams`` independent streams; :meth:`step` one frame (B, in) → readout (B, C).

    As :class:`spikedelay.deploy.stream.Stream`: :meth:`push` (one stream: a frame (in,)),
    :meth:`finish`, :meth:`reset`, :attr:`scores` (running Σ softmax of the readout steps) and
    :attr:`prediction`. Costs so far, per stream and layer: ``events`` (presynaptic events into
    the layer's feed-forward synapses: non-zero input entries or spikes of the layer below),
    ``synops`` (events × fan-out), and for recurrent layers ``rec_events`` (the layer's own
    valid spikes) and ``rec_synops`` (× recurrent fan-out); ``spikes`` valid spikes per layer.
    """

    def __init__(self, net: SteppedNet, n_streams: int = 1) -> None:
        self.net = net
        self.b = n_streams
        self._fan_ff = [np.count_nonzero(la.stack, axis=(0, 1)).astype(np.float64)
                        for la in net.layers]
        self._fan_rec = [None if la.w_rec is None else
                         np.count_nonzero(la.w_rec, axis=0).astype(np.float64)
                         for la in net.layers]
        self.reset()

    def reset(self) -> None:
        """Start every stream over (state, scores and cost counters)."""
        net, n_streams = self.net, self.b
        n_layers = len(net.layers)
        self.scores = np.zeros((n_streams, net.n_classes))
        for name in ("events", "synops", "rec_events", "rec_synops", "spikes"):
            setattr(self, name, np.zeros((n_streams, n_layers)))
        self.t = 0
        self.flushed = 0
        k = net.max_delay
        self.inputs = []  # per layer: ring (K, B, in)
        self.state = []
        prev = net.layers[0].stack.shape[2]
        for layer in net.layers:
            n = layer.out_features
            self.inputs.append(np.zeros((k, n_streams, prev)))
            lags = 2 if layer.rec_lags is None else int(layer.rec_lags.max()) + 1
            self.state.append({"u": np.zeros((n_streams, n)), "w": np.zeros((n_streams, n)),
                               "h": np.zeros((n_streams, n)), "s": np.zeros((n_streams, n)),
                               "hist": np.zeros((lags, n_streams, n))})
            prev = n

    def _layer_step(self, i: int, x: np.ndarray, live: bool) -> np.ndarray:
        layer, st, ring = self.net.layers[i], self.state[i], self.inputs[i]
        k = self.net.max_delay
        ring[self.t % k] = x
        active = (x != 0).astype(np.float64)
        self.events[:, i] += active.sum(1)
        self.synops[:, i] += active @ self._fan_ff[i]
        cur = np.zeros((self.b, layer.out_features))
        for d in range(k):  # delay d reads the frame of step t - d
            if self.t - d >= 0:
                cur += ring[(self.t - d) % k] @ layer.stack[d].T
        if live:
            cur += layer.bias
        else:
            cur[:] = 0.0  # past its valid length: zero input, as offline masking
        if layer.neuron == "li":
            st["u"] = st["u"] - st["u"] / layer.tau + cur
            return st["u"]
        hist = st["hist"]
        if layer.w_rec is not None:
            lags = layer.rec_lags
            y = hist[(self.t - lags) % hist.shape[0], :, np.arange(lags.shape[0])].T  # (B, N)
            y = y * (self.t - lags >= 0)
            cur = cur + y @ layer.w_rec.T
        u, w = st["u"], st["w"]
        if layer.neuron == "lif":
            h = u - u / layer.tau + cur
        else:
            alpha, beta, a, b = layer.coeffs
            if layer.neuron == "adlif":
                w = beta * w + a * st["h"] + b * st["s"]
            h = alpha * u + (1 - alpha) * (cur - w)
        s = (h - layer.threshold >= 0).astype(np.float64)
        u = h - layer.threshold * s if layer.subtract else h * (1 - s)
        if layer.neuron == "se-adlif":
            alpha, beta, a, b = layer.coeffs
            w = beta * w + (1 - beta) * layer.q * (a * u + b * s)
        st.update(u=u, w=w, h=h, s=s)
        hist[self.t % hist.shape[0]] = s
        if not live:
            return np.zeros_like(s)
        self.spikes[:, i] += s.sum(1)
        if layer.w_rec is not None:
            self.rec_events[:, i] += s.sum(1)
            self.rec_synops[:, i] += s @ self._fan_rec[i]
        return s

    def step(self, frame: np.ndarray, *, live: tuple[bool, ...] | None = None) -> np.ndarray:
        """Feed one frame per stream (B, in); returns the readout potentials (B, C)."""
        x = np.asarray(frame, dtype=np.float64)
        if x.shape != (self.b, self.inputs[0].shape[2]):
            raise ValueError(f"expected a frame of shape {(self.b, self.inputs[0].shape[2])}, "
                             f"got {x.shape}")
        live = live or (True,) * len(self.net.layers)
        for i in range(len(self.net.layers)):
            x = self._layer_step(i, x, live[i])
        self.t += 1
        z = np.exp(x - x.max(-1, keepdims=True))
        self.scores += z / z.sum(-1, keepdims=True)
        return x.copy()

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Feed one frame: (in,) for a single stream, (B, in) for ``B``; returns v_out."""
        x = np.asarray(frame, dtype=np.float64)
        one = x.ndim == 1
        v = self.step(x[None] if one else x)
        return v[0] if one else v

    @property
    def prediction(self) -> np.ndarray | int:
        """argmax of :attr:`scores` (an int for a single stream)."""
        p = self.scores.argmax(-1)
        return int(p[0]) if self.b == 1 else p

    def finish(self) -> list[np.ndarray]:
        """The flush: ``len(layers) · tail`` zero-input steps, layer ``l`` live for ``l·tail``
        of them (the readout for all), as the offline model's right padding."""
        outs = []
        n_layers, tail = len(self.net.layers), self.net.tail
        for j in range(n_layers * tail):
            live = tuple(j < (i + 1) * tail for i in range(n_layers))
            outs.append(self.step(np.zeros((self.b, self.inputs[0].shape[2])), live=live))
        return outs


__all__ = ["SteppedLayer", "SteppedNet", "SteppedStream", "from_model", "needs_stepped_engine"]

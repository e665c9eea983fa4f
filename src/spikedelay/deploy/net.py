"""The deployed network: a trained DelaySNN reduced to integer delays and folded BatchNorm.

:class:`DeployedNet` is the one intermediate form that streaming, both export formats and the
report share, so they cannot disagree. Per layer (hidden layers, then the readout)::

    I[t, j]  = Σ_i Σ_c  W[j, i, c] · x[t - D[j, i, c], i]  +  b[j]
    hidden:  H = V - V/τ + I,  S = Θ(H - ϑ),  V = H·(1 - S)        (LIF, hard reset to 0)
    readout: V = V - V/τ + I                                      (LI, the output)

``W`` is the delay layer's weight times the BatchNorm scale ``γ / sqrt(running_var + ε)`` and
``b`` the BatchNorm shift ``β - running_mean · scale`` (zero for the readout), both computed in
float64 so that every consumer sees the same numbers bit for bit. ``D`` are the rounded delays
(``DelayedLinear.integer_delays``). Dropout is the identity at inference. Axonal and dendritic
layers (``kind``) hold the same per-synapse form, their delays equal along a row (axonal: one
per input ``i``) or a column (dendritic: one per output ``j``), so streaming needs nothing new;
the exports write them in their native per-channel form.

Tail (reference padding): offline, each delay layer pads ``(K-1)//2`` zero steps on the right,
so hidden layer ``l`` (1-based) is valid for ``T + l·P`` steps and the readout for
``T + L·P`` (``L`` delay layers, ``P = tail``); a streaming consumer must run ``L·P`` extra steps
after the input ends, silencing layer ``l`` after ``l·P`` of them (see ``deploy/stream.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from spikedelay.errors import CheckpointError

NeuronKind = Literal["lif", "li"]
DelayKind = Literal["synaptic", "axonal", "dendritic"]


@dataclass(frozen=True)
class DeployedLayer:
    """One delay layer and its neurons.

    Shapes: weight (out, in, kc) float64 (BN folded), delays (out, in, kc) int64 in
    ``0 … max_delay-1``, bias (out,) float64.
    """

    weight: np.ndarray
    delays: np.ndarray
    bias: np.ndarray
    neuron: NeuronKind
    tau: float  # membrane time constant in steps
    threshold: float  # LIF only (ignored for "li")
    kind: DelayKind = "synaptic"  # axonal / dendritic: ``delays`` equal along inputs / outputs
    active: np.ndarray | None = None  # delays not switched off (native shape); None: all on

    def __post_init__(self) -> None:
        if self.kind not in ("synaptic", "axonal", "dendritic"):
            raise ValueError(f"unknown delay kind {self.kind!r}")
        if self.kind != "synaptic":
            d = self.delays[:, :, 0]
            if self.weight.shape[2] != 1 or not np.array_equal(d, self.synapse_view(
                    self.channel_delays, self.kind, *d.shape)):
                raise ValueError(f"{self.kind} layer: delays must be one per channel")

    @staticmethod
    def synapse_view(channel_delays: np.ndarray, kind: DelayKind, n_out: int,
                     n_in: int) -> np.ndarray:
        """Per-channel delays as the (out, in) delays of every synapse they reach."""
        d = np.asarray(channel_delays, dtype=np.int64)
        return np.broadcast_to(d[None, :] if kind == "axonal" else d[:, None], (n_out, n_in))

    @property
    def channel_delays(self) -> np.ndarray:
        """One delay per input (axonal, (in,)) or output channel (dendritic, (out,)), int64."""
        if self.kind == "axonal":
            return self.delays[0, :, 0].copy()
        if self.kind == "dendritic":
            return self.delays[:, 0, 0].copy()
        raise ValueError("a synaptic layer has one delay per synapse, not per channel")

    def native_delays(self) -> np.ndarray:
        """The delays in the layer's own form: per synapse (out, in, kc) or per channel."""
        return self.delays if self.kind == "synaptic" else self.channel_delays

    def active_delays(self) -> np.ndarray:
        """Delays in use, in :meth:`native_delays`' shape (masked-out ones have delay 0)."""
        d = self.native_delays()
        return d[self.active] if self.active is not None else d.reshape(-1)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def delay_stack(self, max_delay: int) -> np.ndarray:
        """Dense (K, out, in) float64: weight of each synapse at each delay, copies summed.

        Copies (kernel_count > 1) that share a delay add up, as in ``integer_kernel``. The sum
        runs over copies in index order, so every caller gets identical float64 values.
        """
        n_out, n_in, kc = self.weight.shape
        stack = np.zeros((max_delay, n_out, n_in), dtype=np.float64)
        jj, ii = np.meshgrid(np.arange(n_out), np.arange(n_in), indexing="ij")
        for c in range(kc):
            np.add.at(stack, (self.delays[:, :, c], jj, ii), self.weight[:, :, c])
        return stack


@dataclass(frozen=True)
class DeployedNet:
    """A whole network ready for inference (see module docstring).

    ``max_delay`` is K (delays 0 … K-1, ring buffers of K slots); ``tail`` is P, the extra steps
    each layer adds at the end ((K-1)//2 with reference padding, 0 with causal padding).
    ``framing`` describes how spike events become input frames (bin_ms, n_channels,
    channel_group, dataset, ...); ``class_names`` index the output.
    """

    layers: list[DeployedLayer]
    max_delay: int
    tail: int
    framing: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def n_classes(self) -> int:
        return self.layers[-1].out_features

    @property
    def flush_steps(self) -> int:
        """Extra steps to run after the input ends: ``len(layers) · tail``."""
        return len(self.layers) * self.tail

    @property
    def bin_ms(self) -> float:
        return float(self.framing.get("bin_ms", 10.0))

    def stream(self, n_streams: int = 1):
        """A :class:`~spikedelay.deploy.stream.Stream` of ``n_streams`` independent streams."""
        from spikedelay.deploy.stream import Stream

        return Stream(self, n_streams)

    def predict(self, frames: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Class index per utterance, streamed and flushed. Shapes: frames (B, T, in),
        lengths (B,) valid frames (None: all T) → (B,) int64."""
        from spikedelay.deploy.stream import run_utterances

        frames = np.asarray(frames)
        if lengths is None:
            lengths = np.full(frames.shape[0], frames.shape[1])
        return run_utterances(self, frames, lengths)[1].argmax(-1)

    def synapse_count(self) -> int:
        """Non-zero (synapse, delay) pairs after merging copies: what the engine stores."""
        return int(sum(np.count_nonzero(la.delay_stack(self.max_delay)) for la in self.layers))


def from_model(model, *, framing: dict[str, Any] | None = None,
               class_names: list[str] | None = None) -> DeployedNet:
    """Reduce a :class:`~spikedelay.model.DelaySNN` (any mode) to its eval-mode network.

    Recurrent or adaptive networks (and biases, no BatchNorm) are one clear error: this engine
    holds feed-forward LIF layers; :mod:`spikedelay.deploy.stepped_stream` streams them.
    """
    import torch

    from spikedelay.deploy.stepped_stream import needs_stepped_engine, stepped_parts

    if needs_stepped_engine(model):
        raise CheckpointError(
            f"this network has {stepped_parts(model)}, which the event-driven LIF engine "
            "cannot hold: spikedelay.deploy.stepped_stream.from_model(model) streams it (the "
            "`stream`, `export` and `report` commands pick that engine themselves)")
    cfg = model.cfg
    layers: list[DeployedLayer] = []
    with torch.no_grad():
        for block in model.hidden:
            bn = block.norm
            scale = np.ones(block.delay.out_features)
            shift = np.zeros(block.delay.out_features)
            if bn.track_running_stats and bn.running_var is not None:
                rv = bn.running_var.double().cpu().numpy()
                rm = bn.running_mean.double().cpu().numpy()
                scale = 1.0 / np.sqrt(rv + bn.eps)
                shift = -rm * scale
            if bn.affine:
                gamma = bn.weight.double().cpu().numpy()
                beta = bn.bias.double().cpu().numpy()
                shift = shift * gamma + beta
                scale = scale * gamma
            layers.append(_layer(block.delay, scale, shift, "lif", block.lif.p.tau,
                                 block.lif.p.threshold))
        n_cls = model.readout.out_features
        layers.append(_layer(model.readout, np.ones(n_cls), np.zeros(n_cls), "li",
                             model.li.p.tau, 0.0))
    tail = model.readout.right_pad
    return DeployedNet(layers=layers, max_delay=int(cfg.max_delay), tail=int(tail),
                       framing=dict(framing or {}), class_names=list(class_names or []))


def _layer(delay, scale: np.ndarray, shift: np.ndarray, neuron: NeuronKind, tau: float,
           threshold: float) -> DeployedLayer:
    kind = getattr(delay, "kind", "synaptic")
    w = delay.weight.detach().double().cpu().numpy()
    if kind == "synaptic":
        d = delay.integer_delays().cpu().numpy().astype(np.int64)
    else:  # (out, in) weight of the linear map; the channel delays reach every synapse
        w = w[:, :, None]
        d = delay.synapse_delays().cpu().numpy().astype(np.int64)
    mask = getattr(delay, "delay_mask", None)
    active = None if mask is None else mask.hard().cpu().numpy().astype(bool)
    return DeployedLayer(
        weight=np.ascontiguousarray(w * scale[:, None, None]),
        delays=np.ascontiguousarray(d),
        bias=np.ascontiguousarray(shift.astype(np.float64)),
        neuron=neuron, tau=float(tau), threshold=float(threshold), kind=kind, active=active,
    )


def load_run_model(run_dir: str | Path, checkpoint: str = "best.safetensors"):
    """``(model, state)``: the DelaySNN of a run folder (eval mode) and its checkpoint dict.

    ``run_dir`` may also be a checkpoint file itself. The data folder is not needed (a run
    whose data moved must still load).
    """
    from spikedelay.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint

    path = Path(run_dir)
    if path.is_dir():
        path = path / checkpoint
    state = load_checkpoint(path)
    cfg = checkpoint_config(state, path, check_data=False)
    return model_from_checkpoint(state, path, cfg), state


def from_run(run_dir: str | Path, checkpoint: str = "best.safetensors") -> DeployedNet:
    """The :class:`DeployedNet` of a run folder's checkpoint (framing and class names included)."""
    model, state = load_run_model(run_dir, checkpoint)
    return from_model(model, framing=state.get("framing") or {},
                      class_names=[str(c) for c in state.get("class_names") or []])


def load_deployable(run_dir: str | Path, checkpoint: str = "best.safetensors"):
    """The deployable network of a run folder (or checkpoint file): a
    :class:`~spikedelay.deploy.net.DeployedNet` for feed-forward LIF networks, a
    :class:`~spikedelay.deploy.stepped_stream.SteppedNet` for recurrent or adaptive ones."""
    model, state = load_run_model(run_dir, checkpoint)
    return deployable_of(model, state, str(run_dir))


def deployable_of(model, state: dict, where: str = "model"):
    """As :func:`load_deployable`, for a loaded model and its checkpoint dict."""
    from spikedelay.deploy import stepped_stream

    meta = {"framing": state.get("framing") or {},
            "class_names": [str(c) for c in state.get("class_names") or []]}
    if stepped_stream.needs_stepped_engine(model):
        try:
            return stepped_stream.from_model(model, **meta)
        except ValueError as err:  # a part with no streaming form yet
            raise CheckpointError(f"{where}: {err}") from None
    return from_model(model, **meta)

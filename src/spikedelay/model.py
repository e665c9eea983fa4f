"""DelaySNN: the DCLS-delays network (Hammouamri et al., ICLR 2024; REFERENCE §1).

    x ─▶ [DelayedLinear ─▶ MaskedBatchNorm1d ─▶ LIF ─▶ SequenceDropout] × len(hidden)
      ─▶ DelayedLinear ─▶ LI  ─▶ membrane potential at every step (B, T', n_classes)

Lengths: with ``lengths`` given, every step past a sequence's valid length is zeroed before each
delay layer and excluded from the BatchNorm statistics, so padding a batch with extra steps
never changes the valid outputs (the reference code masks nothing; ``lengths=None`` reproduces
it). Each delay layer maps valid lengths with its ``output_length`` (``+ (K-1)//2`` with
reference padding), and ``forward`` returns the valid lengths of its output for the masked loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from spikedelay.adaptive import TrainableLI
from spikedelay.channel_delays import ChannelDelayedLinear, delay_layer, state_delay_kind
from spikedelay.config import ModelConfig
from spikedelay.delays import DelayedLinear
from spikedelay.neurons import (
    LI,
    LIF,
    MaskedBatchNorm1d,
    SequenceDropout,
    lengths_to_mask,
    norm_then_fire,
    scale_in_place,
)
from spikedelay.ops.dispatch import host_reads_are_free
from spikedelay.stepped import SteppedNeurons


class Recording(NamedTuple):
    """What :meth:`DelaySNN.forward_recording` returns.

    ``v_out`` (B, T', n_classes); ``lengths`` (B,) valid output steps; ``spikes`` one tensor
    (B, T_l, hidden[l]) per hidden layer (after dropout and length masking, i.e. what the next
    layer receives); ``spike_lengths`` (B,) valid steps of each of them.
    """

    v_out: Tensor
    lengths: Tensor
    spikes: list[Tensor]
    spike_lengths: list[Tensor]


DelayLayer = DelayedLinear | ChannelDelayedLinear


def make_delay_layer(in_features: int, out_features: int, cfg: ModelConfig,
                     delays: str | None = None) -> DelayLayer:
    """The delay layer of ``cfg.delay_kind`` (synaptic, axonal or dendritic) for one block;
    ``delays`` overrides ``cfg.delays`` (``model.layer_delays``)."""
    mode = delays or cfg.delays
    return delay_layer(in_features, out_features, cfg.max_delay, kind=cfg.delay_kind,
                       kernel_count=cfg.kernel_count, delays=mode, padding=cfg.padding,
                       interpolation=cfg.interpolation,
                       sparsity=cfg.delay_sparsity if mode != "none" else 0.0,
                       mask=cfg.delay_mask)


def _bias(out_features: int, fan_in: int) -> nn.Parameter:
    """A bias drawn like ``nn.Linear``'s, ``U(±1/sqrt(fan_in))``."""
    bound = fan_in ** -0.5
    return nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))


def _surrogate_constants(cfg: ModelConfig) -> tuple[float, float]:
    if cfg.surrogate == "triangle":
        return cfg.surrogate_width, 0.0
    return cfg.surrogate_alpha, cfg.surrogate_scale


def needs_stepping(cfg: ModelConfig, recurrent: str) -> bool:
    """Whether a hidden layer runs the time-stepped engine (anything but today's plain LIF)."""
    return (recurrent != "none" or cfg.neuron != "lif" or cfg.reset != "hard"
            or cfg.surrogate != "atan")


def _all_valid(mask: Tensor) -> bool:
    """Whether no step is padding, so there is nothing to zero; asked only where reading the
    mask costs no GPU sync (elsewhere the multiply runs anyway)."""
    return host_reads_are_free(mask) and bool(mask.all())


class HiddenLayer(nn.Module):
    """One hidden block: delay (+ bias) → masked BatchNorm → neurons → dropout (→ zero padded
    steps). The neurons are today's fused LIF, or :class:`~spikedelay.stepped.SteppedNeurons`
    for recurrence, adaptive neurons, another reset or surrogate.

    Shapes: x (B, T, in), lengths (B,) or None → spikes (B, T', out), lengths (B,) or None.
    """

    def __init__(self, in_features: int, out_features: int, cfg: ModelConfig,
                 delays: str | None = None, recurrent: str = "none") -> None:
        super().__init__()
        self.delay = make_delay_layer(in_features, out_features, cfg, delays)
        if cfg.bias:
            self.bias = _bias(out_features, in_features)
        else:
            self.register_parameter("bias", None)
        self.norm = MaskedBatchNorm1d(out_features) if cfg.norm == "batchnorm" else None
        if needs_stepping(cfg, recurrent):
            p1, p2 = _surrogate_constants(cfg)
            r = cfg.recurrent_delay_range
            init = (("half-normal", cfg.recurrent_delay_std)
                    if cfg.recurrent_delay_init == "half-normal" else (r[0], r[1]))
            self.neurons = SteppedNeurons(
                out_features, neuron=cfg.neuron, recurrent=recurrent, reset=cfg.reset,
                tau=cfg.tau, threshold=cfg.threshold, surrogate=cfg.surrogate, p1=p1, p2=p2,
                recurrent_dropout=cfg.recurrent_dropout,
                learn_width=cfg.recurrent_width == "learned", delay_init=init,
            )
            self.lif = None
        else:
            self.neurons = None
            self.lif = LIF(tau=cfg.tau, threshold=cfg.threshold, alpha=cfg.surrogate_alpha)
        self.dropout = SequenceDropout(cfg.dropout)

    def _fire(self, y: Tensor, mask: Tensor | None) -> Tensor:
        if self.bias is not None:
            y = y + self.bias
        if self.neurons is None and self.norm is not None:
            return norm_then_fire(self.norm, self.lif, y, mask)
        if self.norm is not None:
            y = self.norm(y, mask=mask)
        if self.neurons is None:
            return self.lif(y)
        if mask is not None:  # causal engine: zero padded steps so they deliver nothing
            y = y * mask.unsqueeze(-1).to(y.dtype)
        return self.neurons(y)

    def forward(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        y = self.delay(x)
        # The fused LIF kernels keep their input, not their spikes: dropout may scale those in
        # place (one (B, T', C) tensor fewer per layer and step).
        inplace = self.neurons is None
        if lengths is None:
            return self.dropout(self._fire(y, None), inplace=inplace), None
        lengths = self.delay.output_length(lengths)
        mask = lengths_to_mask(lengths, y.shape[1])
        s = self.dropout(self._fire(y, mask), inplace=inplace)
        if _all_valid(mask):
            return s, lengths
        valid = mask.unsqueeze(-1).to(s.dtype)
        return (scale_in_place(s, valid) if inplace else s * valid), lengths


class DelaySNN(nn.Module):
    """Feed-forward SNN with learnable synaptic delays, built from one :class:`ModelConfig`.

    Shapes: ``forward(x (B, T, in), lengths (B,) | None) → (v_out (B, T', n_classes),
    out_lengths (B,))`` with ``T' = output_length(T)`` (``T + (len(hidden)+1)·((K-1)//2)`` with
    reference padding). ``lengths=None`` means every sequence uses all ``T`` steps.

    Example::

        >>> from spikedelay.config import ModelConfig
        >>> net = DelaySNN(ModelConfig(in_features=6, hidden=[8], n_classes=3, max_delay=5))
        >>> v, n = net(torch.zeros(2, 10, 6), torch.tensor([10, 7]))
        >>> tuple(v.shape), n.tolist()
        ((2, 14, 3), [14, 11])
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        sizes = [cfg.in_features, *cfg.hidden]
        modes = cfg.delay_modes()
        self.hidden = nn.ModuleList(
            HiddenLayer(a, b, cfg, delays=d, recurrent=r)
            for a, b, d, r in zip(sizes[:-1], sizes[1:], modes[:-1], cfg.recurrence(),
                                  strict=True)
        )
        self.readout = make_delay_layer(sizes[-1], cfg.n_classes, cfg, modes[-1])
        if cfg.bias:
            self.readout_bias = _bias(cfg.n_classes, sizes[-1])
        else:
            self.register_parameter("readout_bias", None)
        self.li = (TrainableLI(cfg.n_classes, cfg.readout_tau) if cfg.readout_tau_trainable
                   else LI(tau=cfg.readout_tau))

    # -- forward --------------------------------------------------------------------------------
    def output_length(self, length: int | Tensor) -> int | Tensor:
        """Output steps (or valid lengths) for ``length`` input steps."""
        for layer in self.delay_layers():
            length = layer.output_length(length)
        return length

    def _run(self, x: Tensor, lengths: Tensor | None) -> Recording:
        if x.dim() != 3 or x.shape[2] != self.cfg.in_features:
            raise ValueError(
                f"DelaySNN expects x of shape (B, T, {self.cfg.in_features}), got {tuple(x.shape)}"
            )
        if lengths is not None:
            if lengths.shape != (x.shape[0],):
                raise ValueError(
                    f"lengths must have shape ({x.shape[0]},), got {tuple(lengths.shape)}"
                )
            lengths = lengths.to(x.device)
            mask = lengths_to_mask(lengths, x.shape[1])
            if not _all_valid(mask):
                x = x * mask.unsqueeze(-1).to(x.dtype)
        spikes, spike_lengths = [], []
        for layer in self.hidden:
            x, lengths = layer(x, lengths)
            spikes.append(x)
            spike_lengths.append(lengths)
        y = self.readout(x)
        if self.readout_bias is not None:
            y = y + self.readout_bias
            if lengths is not None:  # the bias must not charge the readout on padded steps
                valid = lengths_to_mask(self.readout.output_length(lengths), y.shape[1])
                y = y * valid.unsqueeze(-1).to(y.dtype)
        v_out = self.li(y)
        if lengths is None:
            out_lengths = torch.full((x.shape[0],), v_out.shape[1], device=x.device)
            spike_lengths = [torch.full((x.shape[0],), s.shape[1], device=x.device) for s in spikes]
        else:
            out_lengths = self.readout.output_length(lengths)
        return Recording(v_out, out_lengths, spikes, spike_lengths)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Shapes: x (B, T, in), lengths (B,) → v_out (B, T', n_classes), out_lengths (B,)."""
        rec = self._run(x, lengths)
        return rec.v_out, rec.lengths

    def forward_recording(self, x: Tensor, lengths: Tensor | None = None) -> Recording:
        """As :meth:`forward`, plus each hidden layer's spikes (see :class:`Recording`)."""
        return self._run(x, lengths)

    # -- delays ---------------------------------------------------------------------------------
    def delay_layers(self) -> list[DelayLayer]:
        """Every delay layer, input to output (hidden layers, then the readout)."""
        return [layer.delay for layer in self.hidden] + [self.readout]

    def set_sigma(self, sigma: float) -> None:
        """Set σ of every delay layer (the σ schedule calls this once per epoch)."""
        for layer in self.delay_layers():
            layer.set_sigma(sigma)

    def clamp_positions_(self) -> None:
        """Post-step constraints (call after each optimiser step): learned positions into
        range, recurrent delays >= 0, adaptive neuron parameters and a trained readout τ into
        their ranges."""
        for layer in self.delay_layers():
            layer.clamp_positions_()
        for layer in self.hidden:
            if layer.neurons is not None:
                layer.neurons.clamp_()
        if isinstance(self.li, TrainableLI):
            self.li.clamp_()

    def set_recurrent_sigma(self, sigma: float) -> None:
        """Set σ of the recurrent-delay triangles (DelRec's schedule, once per epoch)."""
        for layer in self.hidden:
            if layer.neurons is not None:
                layer.neurons.set_sigma(sigma)

    def set_sparsity(self, sparsity: float) -> None:
        """Set the current delay sparsity ``S_t`` of learned masks (the ramp, once per epoch)."""
        for layer in self.delay_layers():
            layer.set_sparsity(sparsity)

    def _recurrent_delay_count(self) -> int:
        return sum(layer.neurons.recurrent.delay.numel() for layer in self.hidden
                   if layer.neurons is not None and layer.neurons.recurrent is not None
                   and layer.neurons.recurrent.delay is not None)

    def num_delays(self) -> int:
        """Delay parameters of every layer, masked or not (0 without delays): feed-forward
        positions and recurrent (DelRec) delays."""
        return sum(0 if layer.position is None else layer.position.numel()
                   for layer in self.delay_layers()) + self._recurrent_delay_count()

    def num_active_delays(self) -> int:
        """Delays in use: ``num_delays()`` minus those switched off by sparsity masks."""
        return (sum(layer.active_delays() for layer in self.delay_layers())
                + self._recurrent_delay_count())

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As :meth:`nn.Module.load_state_dict`, but a state of another delay kind is one clear
        ``ValueError`` instead of a list of missing keys."""
        saved = state_delay_kind(state_dict)
        if saved != self.cfg.delay_kind:
            raise ValueError(f"the saved weights hold {saved} delays but this model has "
                             f"model.delay_kind = {self.cfg.delay_kind}")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- parameters -----------------------------------------------------------------------------
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by optimiser group.

        ``"weights"``: delay-layer weights (Adam with weight decay); ``"positions"``: learned
        delay positions (separate Adam, no weight decay; empty unless ``delays="learned"``);
        ``"norm"``: BatchNorm scale and shift and the biases (no weight decay);
        ``"mask_scores"``: scores of learned delay masks (with the weights' optimiser, no weight
        decay); ``"adaptive"``: adaptive-neuron parameters and a trained readout τ (no weight
        decay, clamped after each step); ``"recurrent_delays"``: DelRec's recurrent delays and
        widths (their own Adam group); these three only when the model has any. Recurrent
        weights are ``"weights"``. Together: every trainable parameter, each once.
        """
        layers = self.delay_layers()
        stepped = [layer.neurons for layer in self.hidden if layer.neurons is not None]
        recurrent = [n.recurrent for n in stepped if n.recurrent is not None]
        adaptive = [p for n in stepped if n.adaptation is not None
                    for p in n.adaptation.parameters()]
        if isinstance(self.li, TrainableLI):
            adaptive.append(self.li.tau)
        biases = [layer.bias for layer in self.hidden if layer.bias is not None]
        if self.readout_bias is not None:
            biases.append(self.readout_bias)
        groups = {
            "weights": [layer.weight for layer in layers] + [r.weight for r in recurrent],
            "positions": [
                layer.position for layer in layers if isinstance(layer.position, nn.Parameter)
            ],
            "norm": [p for layer in self.hidden if layer.norm is not None
                     for p in layer.norm.parameters()] + biases,
        }
        scores = [layer.delay_mask.scores for layer in layers
                  if layer.delay_mask is not None and layer.delay_mask.scores is not None]
        rec_delays = [p for r in recurrent for p in r.delay_parameters()]
        for name, params in (("mask_scores", scores), ("adaptive", adaptive),
                             ("recurrent_delays", rec_delays)):
            if params:  # only when there are any, so plain recipes keep their three groups
                groups[name] = params
        return groups

    def num_parameters(self) -> int:
        """Number of trainable scalars (214,016 for the SHD recipe)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def extra_repr(self) -> str:
        c = self.cfg
        return (f"delays={c.delays}, delay_kind={c.delay_kind}, max_delay={c.max_delay}, "
                f"padding={c.padding}")


def parameter_counts(cfg: ModelConfig) -> dict[str, int]:
    """``{"parameters", "delays", "active_delays"}`` of the network ``cfg`` describes.

    ``parameters``: trainable scalars (as :meth:`DelaySNN.num_parameters`); ``delays``: delay
    positions among them; ``active_delays``: those not switched off by a sparsity mask. Builds
    the model under a fixed seed, so the global RNG state is saved and restored.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = DelaySNN(cfg)
    return {"parameters": net.num_parameters(), "delays": net.num_delays(),
            "active_delays": net.num_active_delays()}

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
)
from spikedelay.ops.dispatch import host_reads_are_free


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


def make_delay_layer(in_features: int, out_features: int, cfg: ModelConfig) -> DelayLayer:
    """The delay layer of ``cfg.delay_kind`` (synaptic, axonal or dendritic) for one block."""
    return delay_layer(in_features, out_features, cfg.max_delay, kind=cfg.delay_kind,
                       kernel_count=cfg.kernel_count, delays=cfg.delays, padding=cfg.padding,
                       interpolation=cfg.interpolation, sparsity=cfg.delay_sparsity,
                       mask=cfg.delay_mask)


class HiddenLayer(nn.Module):
    """One hidden block: delay → masked BatchNorm → LIF → dropout (→ zero padded steps).

    Shapes: x (B, T, in), lengths (B,) or None → spikes (B, T', out), lengths (B,) or None.
    """

    def __init__(self, in_features: int, out_features: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.delay = make_delay_layer(in_features, out_features, cfg)
        self.norm = MaskedBatchNorm1d(out_features)
        self.lif = LIF(tau=cfg.tau, threshold=cfg.threshold, alpha=cfg.surrogate_alpha)
        self.dropout = SequenceDropout(cfg.dropout)

    def forward(self, x: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None]:
        y = self.delay(x)
        if lengths is None:
            return self.dropout(norm_then_fire(self.norm, self.lif, y)), None
        lengths = self.delay.output_length(lengths)
        mask = lengths_to_mask(lengths, y.shape[1])
        s = self.dropout(norm_then_fire(self.norm, self.lif, y, mask))
        if host_reads_are_free(mask) and bool(mask.all()):  # nothing to zero (no GPU sync)
            return s, lengths
        return s * mask.unsqueeze(-1).to(s.dtype), lengths


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
        self.hidden = nn.ModuleList(
            HiddenLayer(a, b, cfg) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.readout = make_delay_layer(sizes[-1], cfg.n_classes, cfg)
        self.li = LI(tau=cfg.readout_tau)

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
            x = x * lengths_to_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
        spikes, spike_lengths = [], []
        for layer in self.hidden:
            x, lengths = layer(x, lengths)
            spikes.append(x)
            spike_lengths.append(lengths)
        v_out = self.li(self.readout(x))
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
        """Clamp every learned position into range (call after each optimiser step)."""
        for layer in self.delay_layers():
            layer.clamp_positions_()

    def set_sparsity(self, sparsity: float) -> None:
        """Set the current delay sparsity ``S_t`` of learned masks (the ramp, once per epoch)."""
        for layer in self.delay_layers():
            layer.set_sparsity(sparsity)

    def num_delays(self) -> int:
        """Delay parameters (positions) of every layer, masked or not (0 without delays)."""
        return sum(0 if layer.position is None else layer.position.numel()
                   for layer in self.delay_layers())

    def num_active_delays(self) -> int:
        """Delays in use: ``num_delays()`` minus those switched off by sparsity masks."""
        return sum(layer.active_delays() for layer in self.delay_layers())

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
        ``"norm"``: BatchNorm scale and shift (no weight decay); ``"mask_scores"``: scores of
        learned delay masks (with the weights' optimiser, no weight decay; only when there are
        any). Together: every
        trainable parameter, each once.
        """
        layers = self.delay_layers()
        groups = {
            "weights": [layer.weight for layer in layers],
            "positions": [
                layer.position for layer in layers if isinstance(layer.position, nn.Parameter)
            ],
            "norm": [p for layer in self.hidden for p in layer.norm.parameters()],
        }
        scores = [layer.delay_mask.scores for layer in layers
                  if layer.delay_mask is not None and layer.delay_mask.scores is not None]
        if scores:
            groups["mask_scores"] = scores
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

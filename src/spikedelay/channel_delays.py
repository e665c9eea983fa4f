"""Axonal and dendritic delays: one learned delay per channel instead of one per synapse.

Bouhadjar & Neftci (arXiv 2602.09746, code AxDenSynDelaySNN; REFERENCE §9):

* **axonal**: one delay per *presynaptic* channel, applied before the weights:
  ``y[t, j] = Σ_i W[j, i] · x[t - d_i, i]``  (:class:`ChannelDelay` → ``Linear``);
* **dendritic**: one delay per *postsynaptic* neuron, applied after them:
  ``y[t, j] = Σ_i W[j, i] · x[t - d_j, i]``  (``Linear`` → :class:`ChannelDelay`).

:class:`ChannelDelay` is a per-channel fractional shift: a depthwise kernel of shape ``(C, K)``
(a depthwise convolution, ``groups=C``: ``C·K`` multiply-adds per step, never a dense
``(out, in, K)`` kernel; the op :func:`spikedelay.ops.channel_delay.channel_delay`), built
exactly as one synapse's kernel of :class:`~spikedelay.delays.DelayedLinear` (Gaussian or
triangle bump in training, σ schedule, clamped positions), and at evaluation an integer shift
per channel (a gather, no multiply at all). Padding is the synaptic layers' rule (reference:
left ``K-1``, right ``(K-1)//2``), so every kind has the same output length.
The reference builds the same depthwise kernel with ``Dcls1d(groups=C)`` and frozen unit weights.

:class:`ChannelDelayedLinear` is the layer with the interface of ``DelayedLinear``
(``output_length``, ``set_sigma``, ``clamp_positions_``, ``integer_delays``, ``kernel``,
``weight``, ``position``) for ``kind="axonal" | "dendritic"``; :func:`delay_layer` builds any
kind. Sparse delays (:mod:`spikedelay.delay_masks`) mask whole channels: a masked channel has
delay 0.
"""

from __future__ import annotations

import typing
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikedelay.config import DelayKind
from spikedelay.delay_masks import DelayMask, MaskKind
from spikedelay.delays import (
    DelayedLinear,
    DelayMode,
    Interpolation,
    Padding,
    init_positions_,
    interpolated_kernel,
    padding_amounts,
    position_range,
    positions_to_delays,
    register_positions,
)
from spikedelay.ops.channel_delay import channel_delay

DELAY_KINDS: tuple[DelayKind, ...] = typing.get_args(DelayKind)


class ChannelDelay(nn.Module):
    """Delay each of ``channels`` channels by its own (learned, fixed or no) delay.

    ``y[t', c] = xpad[t' + K-1-d_c, c]`` at evaluation (integer ``d_c`` in ``0 … K-1``); in
    training with learned delays the shift is fractional: a normalised Gaussian (or triangle) of
    width set by ``σ`` around the real-valued position, as for one synapse of ``DelayedLinear``.

    Parameters/buffers: ``position`` (C,) Parameter (learned, uniform over the clamp range),
    buffer (fixed: random integer delays) or ``None`` (none: only the padding); ``sigma`` scalar
    buffer, initially ``K//2``; ``delay_mask`` a :class:`DelayMask` when ``sparsity > 0``.

    Shapes: x (B, T, C) → (B, T', C), ``T' = output_length(T)``.

    Example::

        >>> shift = ChannelDelay(3, max_delay=5).eval()
        >>> shift(torch.zeros(2, 10, 3)).shape
        torch.Size([2, 12, 3])
    """

    def __init__(self, channels: int, max_delay: int, *, delays: DelayMode = "learned",
                 padding: Padding = "reference", interpolation: Interpolation = "gaussian",
                 sparsity: float = 0.0, mask: MaskKind = "random",
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if delays not in ("learned", "fixed", "none"):
            raise ValueError(f"delays must be 'learned', 'fixed' or 'none', got {delays!r}")
        if interpolation not in ("gaussian", "triangle"):
            raise ValueError(
                f"interpolation must be 'gaussian' or 'triangle', got {interpolation!r}")
        if channels < 1 or max_delay < 1:
            raise ValueError("channels and max_delay must be >= 1")
        if sparsity and delays == "none":
            raise ValueError("delay sparsity needs delays (delays='learned' or 'fixed')")
        factory = {"device": device, "dtype": dtype}
        self.channels, self.max_delay = channels, max_delay
        self.delays, self.padding, self.interpolation = delays, padding, interpolation
        self.left_pad, self.right_pad = padding_amounts(max_delay, padding)
        register_positions(self, delays, (channels,), max_delay, factory)
        self.reset_parameters()
        self.delay_mask = (DelayMask((channels,), sparsity, mask, device=device)
                           if sparsity else None)

    def reset_parameters(self) -> None:
        """Positions uniform over the clamp range (learned) or random integer delays (fixed)."""
        init_positions_(self.position, self.delays, self.max_delay)

    def output_length(self, length: int | Tensor) -> int | Tensor:
        return length + self.left_pad + self.right_pad - self.max_delay + 1

    def set_sigma(self, sigma: float) -> None:
        self.sigma.fill_(float(sigma))

    def set_sparsity(self, sparsity: float) -> None:
        if self.delay_mask is not None:
            self.delay_mask.set_sparsity(sparsity)

    @torch.no_grad()
    def clamp_positions_(self) -> None:
        if self.delays == "learned":
            self.position.clamp_(*position_range(self.max_delay))

    def integer_delays(self) -> Tensor:
        """Integer delay per channel, (C,) int64 in ``0 … K-1`` (0 where masked or ``"none"``)."""
        if self.position is None:
            return torch.zeros(self.channels, dtype=torch.int64, device=self.sigma.device)
        d = positions_to_delays(self.position, self.max_delay)
        return d if self.delay_mask is None else d * self.delay_mask.hard()

    def active_delays(self) -> int:
        if self.position is None:
            return 0
        return self.channels if self.delay_mask is None else self.delay_mask.active_count()

    def kernel(self, integer: bool | None = None) -> Tensor:
        """The depthwise kernel (C, K) (tap ``K-1-d`` for delay ``d``): Gaussian/triangle for
        learned delays in training (``integer=None``), one-hot integer taps otherwise."""
        if integer is None:
            integer = not (self.training and self.delays == "learned")
        k = self.max_delay
        if integer:
            taps = k - 1 - self.integer_delays()
            return F.one_hot(taps, k).to(self.sigma.dtype)
        ones = torch.ones(self.channels, 1, 1, dtype=self.position.dtype,
                          device=self.position.device)
        bump = interpolated_kernel(ones, self.position.view(-1, 1, 1), self.sigma, k,
                                   self.interpolation)[:, 0]  # (C, K)
        if self.delay_mask is None:
            return bump
        m = self.delay_mask(bump.dtype).unsqueeze(-1)  # masked channels: delay 0 = tap K-1
        still = torch.zeros_like(bump)
        still[:, k - 1] = 1.0
        return m * bump + (1 - m) * still

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: x (B, T, C) → (B, T', C)."""
        if x.dim() != 3 or x.shape[2] != self.channels:
            raise ValueError(f"ChannelDelay expects x of shape (B, T, {self.channels}), "
                             f"got {tuple(x.shape)}")
        n_out = self.output_length(x.shape[1])
        if self.delays == "none":  # no shift: only the padding rule's zero steps at the end
            return F.pad(x, (0, 0, 0, n_out - x.shape[1]))
        if self.training and self.delays == "learned":
            return channel_delay(x, self.kernel(integer=False).to(x.dtype), self.left_pad,
                                 self.right_pad)
        # integer shift: a gather along time, no multiply-adds
        xpad = F.pad(x, (0, 0, self.left_pad, self.right_pad))
        start = (self.max_delay - 1 - self.integer_delays()).to(x.device)
        idx = torch.arange(n_out, device=x.device).unsqueeze(1) + start  # (T', C)
        return xpad.gather(1, idx.unsqueeze(0).expand(x.shape[0], -1, -1))

    def extra_repr(self) -> str:
        return (f"{self.channels}, max_delay={self.max_delay}, delays={self.delays}, "
                f"padding={self.padding}, interpolation={self.interpolation}, "
                f"sigma={float(self.sigma):.4g}")


class ChannelDelayedLinear(nn.Module):
    """A linear layer with axonal (per input) or dendritic (per output) delays.

    ``kind="axonal"``: ``ChannelDelay(in) → Linear(in, out)``; ``kind="dendritic"``:
    ``Linear(in, out) → ChannelDelay(out)``. No bias; the weight ``(out, in)`` is
    Kaiming-uniform with ReLU gain (bound ``sqrt(6 / in)``), as the synaptic layer's with one
    copy. Other arguments as :class:`~spikedelay.delays.DelayedLinear`; ``kernel_count`` is
    not a parameter (one delay per channel).

    Shapes: x (B, T, in) → (B, T', out).

    Example::

        >>> layer = ChannelDelayedLinear(4, 3, max_delay=5, kind="axonal")
        >>> layer(torch.zeros(2, 10, 4)).shape
        torch.Size([2, 12, 3])
        >>> layer.integer_delays().shape        # one per input channel
        torch.Size([4])
    """

    kernel_count = 1

    def __init__(self, in_features: int, out_features: int, max_delay: int, *,
                 kind: Literal["axonal", "dendritic"], delays: DelayMode = "learned",
                 padding: Padding = "reference", interpolation: Interpolation = "gaussian",
                 sparsity: float = 0.0, mask: MaskKind = "random",
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if kind not in ("axonal", "dendritic"):
            raise ValueError(f"kind must be 'axonal' or 'dendritic', got {kind!r}")
        if in_features < 1 or out_features < 1:
            raise ValueError("in_features and out_features must be >= 1")
        self.kind = kind
        self.in_features, self.out_features = in_features, out_features
        self.max_delay, self.delays, self.padding = max_delay, delays, padding
        self.linear = nn.Linear(in_features, out_features, bias=False, device=device, dtype=dtype)
        nn.init.kaiming_uniform_(self.linear.weight, nonlinearity="relu")
        channels = in_features if kind == "axonal" else out_features
        self.shift = ChannelDelay(channels, max_delay, delays=delays, padding=padding,
                                  interpolation=interpolation, sparsity=sparsity, mask=mask,
                                  device=device, dtype=dtype)
        self.left_pad, self.right_pad = self.shift.left_pad, self.shift.right_pad
        # saved with the weights, so a checkpoint says which kind it holds
        self.register_buffer("kind_code", torch.tensor(DELAY_KINDS.index(kind), device=device))

    @property
    def weight(self) -> nn.Parameter:
        return self.linear.weight

    @property
    def position(self) -> Tensor | None:
        return self.shift.position

    @property
    def sigma(self) -> Tensor:
        return self.shift.sigma

    @property
    def delay_mask(self) -> DelayMask | None:
        return self.shift.delay_mask

    def output_length(self, length: int | Tensor) -> int | Tensor:
        return self.shift.output_length(length)

    def set_sigma(self, sigma: float) -> None:
        self.shift.set_sigma(sigma)

    def set_sparsity(self, sparsity: float) -> None:
        self.shift.set_sparsity(sparsity)

    def clamp_positions_(self) -> None:
        self.shift.clamp_positions_()

    def integer_delays(self) -> Tensor:
        """Integer delay per channel: (in,) for axonal, (out,) for dendritic, int64."""
        return self.shift.integer_delays()

    def synapse_delays(self) -> Tensor:
        """The same delays per synapse, (out, in, 1) int64 (what a synaptic layer would hold)."""
        d = self.integer_delays()
        view = d.view(1, -1) if self.kind == "axonal" else d.view(-1, 1)
        return view.expand(self.out_features, self.in_features).unsqueeze(-1)

    def active_delays(self) -> int:
        return self.shift.active_delays()

    def kernel(self, integer: bool | None = None) -> Tensor:
        """The equivalent dense kernel (out, in, K), for inspection and tests only: the forward
        pass never builds it (it applies the (C, K) depthwise kernel and the weight)."""
        ck = self.shift.kernel(integer)
        if self.kind == "axonal":
            return self.weight.unsqueeze(-1) * ck.unsqueeze(0)
        return self.weight.unsqueeze(-1) * ck.unsqueeze(1)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: x (B, T, in) → (B, T', out)."""
        if x.dim() != 3 or x.shape[2] != self.in_features:
            raise ValueError(f"expected x of shape (B, T, {self.in_features}), "
                             f"got {tuple(x.shape)}")
        if self.kind == "axonal":
            return self.linear(self.shift(x))
        return self.shift(self.linear(x))

    def extra_repr(self) -> str:
        return f"kind={self.kind}"


def delay_layer(in_features: int, out_features: int, max_delay: int, *,
                kind: DelayKind = "synaptic", kernel_count: int = 1,
                delays: DelayMode = "learned", padding: Padding = "reference",
                interpolation: Interpolation = "gaussian", sparsity: float = 0.0,
                mask: MaskKind = "random") -> DelayedLinear | ChannelDelayedLinear:
    """A delay layer of any kind (synaptic: :class:`DelayedLinear`; else
    :class:`ChannelDelayedLinear`). ``kernel_count > 1`` needs the synaptic kind."""
    common = {"delays": delays, "padding": padding, "interpolation": interpolation,
              "sparsity": sparsity, "mask": mask}
    if kind == "synaptic":
        return DelayedLinear(in_features, out_features, max_delay, kernel_count=kernel_count,
                             **common)
    if kind not in DELAY_KINDS:
        raise ValueError(f"delay kind must be one of {', '.join(DELAY_KINDS)}, got {kind!r}")
    if kernel_count != 1:
        raise ValueError(f"kernel_count = {kernel_count} needs synaptic delays: an {kind} "
                         "delay is one per channel")
    return ChannelDelayedLinear(in_features, out_features, max_delay, kind=kind, **common)


def layer_kind(layer: nn.Module) -> DelayKind:
    """The delay kind of a delay layer (``"synaptic"`` for :class:`DelayedLinear`)."""
    return getattr(layer, "kind", "synaptic")


def state_delay_kind(state: dict[str, Tensor], prefix: str = "readout.") -> DelayKind:
    """The delay kind a model ``state_dict`` was saved with, told by its readout layer."""
    code = state.get(f"{prefix}kind_code")
    return "synaptic" if code is None else DELAY_KINDS[int(code)]

"""Recurrent connections of a hidden layer: plain (one step) or with learned delays (DelRec).

DelRec (Queant, Rançon, Cottereau, Masquelier, arXiv 2509.24852; REFERENCE §9) learns one real
delay ``d_o >= 0`` per **presynaptic** neuron ``o`` on the recurrent connections. A spike of
``o`` reaches every neuron at lag ``1 + d_o`` through a triangle of half-width ``s``::

    m[o, k] = max(0, s_o - |k - (1 + d_o)|) / s_o²,   k = 1 … L-1   (lag 0 is never delivered)

with ``s = 1 + σ`` (σ annealed per epoch by :func:`recurrent_sigma_at`) or, with a learnable
width, ``s_o = 1 + 2σ·sigmoid(p_o)``. ``L = ceil(1 + max d + max s) + 1`` follows the delays, so
there is no maximum delay; delays are only clamped ``>= 0``.

Evaluation uses integer delays: the lags ``1 + round(d_o)`` of a rounded **copy** (one tap per
neuron, as ``σ = 0``), so evaluating never changes the parameters. DelRec itself rounds the
delays *in place* at every validation and keeps ``σ`` in its evaluation kernel; we do neither
(:meth:`RecurrentConnections.round_delays_` is that in-place rounding, for whoever wants it).

The time loop that uses the lag kernel is :func:`spikedelay.ops.recurrent.recurrent_sequence`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

RecurrentMode = Literal["none", "plain", "delayed"]
RECURRENT_MODES = ("none", "plain", "delayed")


def recurrent_sigma_at(epoch: int, *, epochs: int, sigma0: float = 10.0,
                       decay: float = 0.95) -> float:
    """DelRec's σ during ``epoch`` (0-based): ``σ0 · (decay^(100/E))^epoch``."""
    return sigma0 * (decay ** (100.0 / epochs)) ** epoch


def triangle_lag_kernel(delays: Tensor, width: Tensor) -> Tensor:
    """Lag kernel ``m`` (N, L) of triangles of half-width ``width`` (N,) centred on ``1 + d``.

    Differentiable in ``delays`` and ``width``; column 0 (lag 0) is zero.
    """
    lags = math.ceil(1.0 + float(delays.detach().max()) + float(width.detach().max())) + 1
    k = torch.arange(lags, device=delays.device, dtype=delays.dtype)
    w = width.unsqueeze(1)
    m = torch.relu(w - (k - (1.0 + delays.unsqueeze(1))).abs()) / (w * w)
    return torch.cat([torch.zeros_like(m[:, :1]), m[:, 1:]], dim=1)


def integer_lag_kernel(delays: Tensor) -> Tensor:
    """One tap per neuron at lag ``1 + round(d)`` (``torch.round``: half to even). (N, L)."""
    lag = 1 + torch.round(delays.detach()).clamp_min(0).to(torch.int64)
    m = torch.zeros(delays.shape[0], int(lag.max()) + 1, dtype=delays.dtype,
                    device=delays.device)
    m[torch.arange(delays.shape[0], device=delays.device), lag] = 1.0
    return m


class RecurrentConnections(nn.Module):
    """Recurrent weights ``W`` (N, N) (post, pre; orthogonal init) and, for ``mode="delayed"``,
    one learned delay per presynaptic neuron (init ``U(delay_init)`` steps, or half-normal
    ``|N(0, std²)|`` with ``delay_init=("half-normal", std)``) and optionally a learned width.

    :meth:`lag_kernel` gives the ``m`` of :func:`spikedelay.ops.recurrent.recurrent_sequence`
    (``None`` for plain recurrence: one step).
    """

    def __init__(self, n: int, mode: RecurrentMode = "plain", *, learn_width: bool = False,
                 delay_init: tuple[float, float] | tuple[str, float] = (10.0, 30.0),
                 gain: float = 1.0) -> None:
        super().__init__()
        if mode not in ("plain", "delayed"):
            raise ValueError(f"recurrent mode must be plain or delayed, got {mode!r}")
        self.mode = mode
        self.n = n
        self.weight = nn.Parameter(torch.empty(n, n))
        self.learn_width = bool(learn_width and mode == "delayed")
        self.delay_init = delay_init
        self.gain = gain
        if mode == "delayed":
            self.delay = nn.Parameter(torch.empty(n))
            self.spread = nn.Parameter(torch.zeros(n)) if self.learn_width else None
        else:
            self.register_parameter("delay", None)
            self.spread = None
        self.register_buffer("sigma", torch.tensor(10.0))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.orthogonal_(self.weight, gain=self.gain)
        if self.delay is not None:
            with torch.no_grad():
                lo, hi = self.delay_init
                if lo == "half-normal":
                    self.delay.normal_(0.0, float(hi)).abs_()
                else:
                    self.delay.uniform_(float(lo), float(hi))
            if self.spread is not None:
                nn.init.zeros_(self.spread)

    def set_sigma(self, sigma: float) -> None:
        self.sigma.fill_(float(sigma))

    def clamp_delays_(self) -> None:
        """Keep delays >= 0 (call after each optimiser step)."""
        if self.delay is not None:
            with torch.no_grad():
                self.delay.clamp_(min=0.0)

    def round_delays_(self) -> None:
        """DelRec's in-place rounding (its validation does this; training continues from it)."""
        if self.delay is not None:
            with torch.no_grad():
                self.delay.round_().clamp_(min=0.0)

    def width(self) -> Tensor:
        """Half-width ``s`` (N,) of each neuron's triangle: ``1 + σ`` or ``1 + 2σ·sigmoid(p)``."""
        sigma = self.sigma.to(self.delay.dtype)
        if self.spread is not None:
            return 1.0 + 2.0 * sigma * torch.sigmoid(self.spread)
        return (1.0 + sigma).expand(self.n)

    def integer_delays(self) -> Tensor:
        """Integer delays (int64, N) used at evaluation: ``round(d)`` of a copy, >= 0."""
        if self.delay is None:
            return torch.zeros(self.n, dtype=torch.int64, device=self.weight.device)
        return torch.round(self.delay.detach()).clamp_min(0).to(torch.int64)

    def lag_kernel(self, integer: bool | None = None) -> Tensor | None:
        """``m`` (N, L) for the current mode; ``integer`` defaults to ``not self.training``."""
        if self.delay is None:
            return None
        if integer is None:
            integer = not self.training
        if integer:
            return integer_lag_kernel(self.delay)
        return triangle_lag_kernel(self.delay, self.width())

    def delay_parameters(self) -> list[nn.Parameter]:
        """Delays (and widths): DelRec trains them with their own optimiser."""
        return [p for p in (self.delay, self.spread) if p is not None]

    def extra_repr(self) -> str:
        return f"n={self.n}, mode={self.mode}, learn_width={self.learn_width}"


__all__ = [
    "RECURRENT_MODES",
    "RecurrentConnections",
    "integer_lag_kernel",
    "recurrent_sigma_at",
    "triangle_lag_kernel",
]

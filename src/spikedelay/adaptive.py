"""Adaptive LIF neurons with per-neuron trainable parameters: adLIF and SE-adLIF (REFERENCE §9).

Both add an adaptation variable ``w`` to the membrane ``u`` (one step = one frame)::

    adLIF (Bittar & Garner 2022):   w[t] = β w[t-1] + a u[t-1] + b s[t-1]
                                    u[t] = α u[t-1] + (1-α)(I[t] - w[t])
    SE-adLIF (Baronig et al. 2025): u[t] = α u[t-1] + (1-α)(I[t] - w[t-1]),  s[t] = Θ(u[t] - 1)
                                    u[t] ← reset;  w[t] = β w[t-1] + (1-β) q (a u[t] + b s[t])

(``u[t-1]`` of adLIF's ``w`` line is the membrane before its reset, as in sparch.) The
modules here only own and constrain the parameters; the time loop is
:func:`spikedelay.ops.recurrent.recurrent_sequence`.

* adLIF: α, β, a, b trained directly, init uniform over and clamped to
  ``α ∈ [e^-1/5, e^-1/25]``, ``β ∈ [e^-1/30, e^-1/120]``, ``a ∈ [-1, 1]``, ``b ∈ [0, 2]``.
  (sparch clamps in every forward; we clamp after every optimiser step, as for delays.)
* SE-adLIF: time constants through ``τ = τ_min + κ(τ_max - τ_min)``, ``κ ∈ [0, 1]`` per neuron
  (init ``U(0, 1)``), ``α = exp(-1/τ_u)``, ``β = exp(-1/τ_w)``, ``τ_u ∈ [5, 25]``,
  ``τ_w ∈ [60, 300]`` steps, ``a ∈ [0, 1]``, ``b ∈ [0, 2]`` (init uniform), ``q = 120``.

Call :meth:`clamp_` after every optimiser step (``DelaySNN.clamp_positions_`` does).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikedelay.ops.recurrent import recurrent_sequence

ADLIF_RANGES = {
    "alpha": (math.exp(-1 / 5), math.exp(-1 / 25)),
    "beta": (math.exp(-1 / 30), math.exp(-1 / 120)),
    "a": (-1.0, 1.0),
    "b": (0.0, 2.0),
}
SE_ADLIF_TAU_U = (5.0, 25.0)
SE_ADLIF_TAU_W = (60.0, 300.0)
SE_ADLIF_RANGES = {"kappa_u": (0.0, 1.0), "kappa_w": (0.0, 1.0), "a": (0.0, 1.0),
                   "b": (0.0, 2.0)}
SE_ADLIF_Q = 120.0


class _ClampedParameters(nn.Module):
    """Per-neuron parameters drawn uniformly over, and clamped to, fixed ranges."""

    ranges: dict[str, tuple[float, float]]

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        for name in self.ranges:
            setattr(self, name, nn.Parameter(torch.empty(n)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for name, (lo, hi) in self.ranges.items():
                getattr(self, name).uniform_(lo, hi)

    def clamp_(self) -> None:
        with torch.no_grad():
            for name, (lo, hi) in self.ranges.items():
                getattr(self, name).clamp_(lo, hi)

    def extra_repr(self) -> str:
        return f"n={self.n}"


class AdLIFParameters(_ClampedParameters):
    """adLIF's α, β, a, b (N,) each (Bittar & Garner 2022)."""

    ranges = ADLIF_RANGES
    neuron = "adlif"
    q = 1.0

    def coefficients(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.alpha, self.beta, self.a, self.b


class SEAdLIFParameters(_ClampedParameters):
    """SE-adLIF's κ_u, κ_w, a, b (N,) each (Baronig et al. 2025); ``q = 120``."""

    ranges = SE_ADLIF_RANGES
    neuron = "se-adlif"
    q = SE_ADLIF_Q

    def coefficients(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        (u_lo, u_hi), (w_lo, w_hi) = SE_ADLIF_TAU_U, SE_ADLIF_TAU_W
        tau_u = u_lo + self.kappa_u * (u_hi - u_lo)
        tau_w = w_lo + self.kappa_w * (w_hi - w_lo)
        return torch.exp(-1.0 / tau_u), torch.exp(-1.0 / tau_w), self.a, self.b


class TrainableLI(nn.Module):
    """Leaky-integrator readout ``V[t] = V[t-1] - V[t-1]/τ + X[t]`` (as
    :class:`spikedelay.neurons.LI`) with one trained ``τ`` per output, clamped to ``>= 1``.

    Runs on the fused engine as an SE-adLIF neuron that never fires, without adaptation
    (``a = b = 0``), with ``α = 1 - 1/τ`` and the input scaled by ``τ``:
    ``α V + (1-α)·τX = V - V/τ + X``. Shapes: x (B, T, C) → v (B, T, C).
    """

    def __init__(self, n: int, tau: float) -> None:
        super().__init__()
        if not tau >= 1.0:
            raise ValueError(f"tau must be >= 1 (steps), got {tau}")
        self.tau = nn.Parameter(torch.full((n,), float(tau)))

    def forward(self, x: Tensor) -> Tensor:
        zeros = torch.zeros_like(self.tau)
        alpha = 1.0 - 1.0 / self.tau
        _, v = recurrent_sequence(x * self.tau, None, None, None, alpha, zeros, zeros, zeros,
                                  neuron="se-adlif", threshold=math.inf)
        return v

    def clamp_(self) -> None:
        with torch.no_grad():
            self.tau.clamp_(min=1.0)


ADAPTIVE_NEURONS: dict[str, type[_ClampedParameters]] = {
    "adlif": AdLIFParameters,
    "se-adlif": SEAdLIFParameters,
}

__all__ = [
    "ADAPTIVE_NEURONS",
    "ADLIF_RANGES",
    "AdLIFParameters",
    "SEAdLIFParameters",
    "SE_ADLIF_Q",
    "SE_ADLIF_RANGES",
    "SE_ADLIF_TAU_U",
    "SE_ADLIF_TAU_W",
    "TrainableLI",
]

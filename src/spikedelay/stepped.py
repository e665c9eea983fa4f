"""The spiking part of a hidden layer when it must run step by step: recurrence and/or adaptive
neurons (a plain feed-forward LIF layer keeps the faster fused path of :mod:`spikedelay.neurons`).

Shapes: ``forward(current (B, T, N)) → spikes (B, T, N)``. The current is the layer's
feed-forward input (delay layer, bias, normalisation); recurrence is added inside the time loop
of :func:`spikedelay.ops.recurrent.recurrent_sequence`. Recurrent dropout (DelRec) multiplies
the delivered recurrent current by one Bernoulli mask per sequence and neuron.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikedelay.adaptive import ADAPTIVE_NEURONS
from spikedelay.ops.recurrent import NEURONS, RESETS, recurrent_sequence
from spikedelay.ops.surrogate import SURROGATES
from spikedelay.recurrent import RecurrentConnections, RecurrentMode


class SteppedNeurons(nn.Module):
    """A population of ``lif | adlif | se-adlif`` neurons with optional (delayed) recurrence.

    ``surrogate`` names the spike's surrogate derivative (:mod:`spikedelay.ops.surrogate`) with
    its constants ``(p1, p2)``; ``tau`` is LIF's time constant (adaptive neurons learn theirs).
    """

    def __init__(
        self, n: int, *, neuron: str = "lif", recurrent: RecurrentMode = "none",
        reset: str = "hard", tau: float = 2.0, threshold: float = 1.0,
        surrogate: str = "atan", p1: float = 5.0, p2: float = 0.0,
        recurrent_dropout: float = 0.0, learn_width: bool = False,
        delay_init: tuple = (10.0, 30.0),
    ) -> None:
        super().__init__()
        if neuron not in NEURONS:
            raise ValueError(f"unknown neuron {neuron!r}: use one of {', '.join(NEURONS)}")
        if reset not in RESETS:
            raise ValueError(f"unknown reset {reset!r}: use one of {', '.join(RESETS)}")
        if surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {surrogate!r}: use one of "
                             f"{', '.join(SURROGATES)}")
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ValueError(f"recurrent dropout must be in [0, 1), got {recurrent_dropout}")
        self.n, self.neuron, self.reset, self.recurrent_mode = n, neuron, reset, recurrent
        self.tau, self.threshold = float(tau), float(threshold)
        self.surrogate, self.p1, self.p2 = surrogate, float(p1), float(p2)
        self.recurrent_dropout = float(recurrent_dropout)
        self.adaptation = ADAPTIVE_NEURONS[neuron](n) if neuron in ADAPTIVE_NEURONS else None
        self.recurrent = (
            RecurrentConnections(n, recurrent, learn_width=learn_width, delay_init=delay_init)
            if recurrent != "none" else None
        )

    def _drop_mask(self, x: Tensor) -> Tensor | None:
        if self.recurrent is None or not self.training or self.recurrent_dropout == 0.0:
            return None
        keep = torch.empty(x.shape[0], self.n, dtype=x.dtype, device=x.device)
        return keep.bernoulli_(1.0 - self.recurrent_dropout).div_(1.0 - self.recurrent_dropout)

    def run(self, x: Tensor, *, integer: bool | None = None) -> tuple[Tensor, Tensor]:
        """Spikes and membranes before reset, both (B, T, N)."""
        coeffs = self.adaptation.coefficients() if self.adaptation is not None else (None,) * 4
        q = self.adaptation.q if self.adaptation is not None else 1.0
        w_rec = m = None
        if self.recurrent is not None:
            w_rec = self.recurrent.weight
            m = self.recurrent.lag_kernel(integer)
        return recurrent_sequence(
            x, w_rec, m, self._drop_mask(x), *coeffs, neuron=self.neuron, reset=self.reset,
            tau=self.tau, q=q, threshold=self.threshold, surrogate=self.surrogate,
            p1=self.p1, p2=self.p2,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x)[0]

    def clamp_(self) -> None:
        """Post-step constraints: adaptive parameters into range, delays >= 0."""
        if self.adaptation is not None:
            self.adaptation.clamp_()
        if self.recurrent is not None:
            self.recurrent.clamp_delays_()

    def set_sigma(self, sigma: float) -> None:
        if self.recurrent is not None:
            self.recurrent.set_sigma(sigma)

    def extra_repr(self) -> str:
        return (f"n={self.n}, neuron={self.neuron}, reset={self.reset}, "
                f"surrogate={self.surrogate}, recurrent_dropout={self.recurrent_dropout}")


__all__ = ["SteppedNeurons"]

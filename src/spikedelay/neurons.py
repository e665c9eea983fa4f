"""Spiking and leaky neurons (SpikingJelly conventions), masked BatchNorm and sequence dropout.

LIF neuron (multi-step, hard reset, SpikingJelly ``LIFNode(decay_input=False, v_reset=0,
detach_reset=True)``)::

    H[t] = V[t-1] - V[t-1] / τ + X[t]         charge (no input decay)
    S[t] = Θ(H[t] - ϑ)                        spike (Θ(0) = 1)
    V[t] = H[t] · (1 - S[t])                  hard reset to 0, S detached in this product

with ``V[-1] = 0``; ``τ`` in steps, ``ϑ`` the threshold. Θ's gradient is replaced by the ArcTan
surrogate ``σ'(x) = (α/2) / (1 + (π/2 · α · x)^2)``, the derivative of
``σ(x) = arctan(π/2 · α · x) / π + 1/2`` (Fang et al., ICCV 2021; SpikingJelly
``surrogate.ATan``). The readout (LI) uses the same charge equation and never spikes; its
membrane potential is the output.

Pure step functions (:func:`lif_step`, :func:`li_step`) take and return typed state; the
sequence functions (:func:`lif_sequence`, :func:`li_sequence`) are the single entry points the
modules use, so a fused kernel can replace them without touching the modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn


# -- surrogate spike function ---------------------------------------------------------------------
class _ArcTanSpike(torch.autograd.Function):
    """Heaviside forward (x >= 0 → 1), ArcTan surrogate backward."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad_out * arctan_surrogate_grad(x, ctx.alpha), None


def arctan_surrogate_grad(x: Tensor, alpha: float) -> Tensor:
    """``σ'(x) = (α/2) / (1 + (π/2 · α · x)^2)``, elementwise."""
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


def spike_fn(x: Tensor, alpha: float = 5.0) -> Tensor:
    """Heaviside ``Θ(x)`` (1 where ``x >= 0``) with the ArcTan surrogate gradient."""
    return _ArcTanSpike.apply(x, alpha)


# -- LIF ------------------------------------------------------------------------------------------
class LIFParameters(NamedTuple):
    """LIF constants: ``tau`` (membrane time constant in steps, >= 1), ``threshold``,
    ``alpha`` (ArcTan surrogate sharpness)."""

    tau: float = 2.0
    threshold: float = 1.0
    alpha: float = 5.0


class LIFState(NamedTuple):
    """Membrane potential after reset, ``v`` (B, C)."""

    v: Tensor


def lif_initial_state(x: Tensor) -> LIFState:
    """Zero state shaped like one step of ``x`` (B, C)."""
    return LIFState(v=torch.zeros_like(x))


def lif_step(x: Tensor, state: LIFState, p: LIFParameters) -> tuple[Tensor, LIFState]:
    """One LIF step. Shapes: x (B, C), state.v (B, C) → spikes (B, C), new state."""
    h = state.v - state.v / p.tau + x
    s = spike_fn(h - p.threshold, p.alpha)
    v = h * (1.0 - s.detach())  # hard reset to 0; the reset is not differentiated (detach_reset)
    return s, LIFState(v=v)


def lif_sequence(x: Tensor, p: LIFParameters, *, fused: bool = True) -> Tensor:
    """Run a LIF population from ``V = 0``. Shapes: x (B, T, C) → spikes (B, T, C).

    ``fused=True`` runs :func:`spikedelay.ops.lif.fused_lif_sequence` (same numbers, one stored
    tensor and a closed-form backward); ``fused=False`` the step-by-step loop below (autograd
    through :func:`lif_step`), kept as the plain statement of the maths.
    """
    if x.shape[1] == 0:
        return torch.zeros_like(x)
    if fused:
        from spikedelay.ops.lif import fused_lif_sequence

        return fused_lif_sequence(x, p.tau, p.threshold, p.alpha)
    state = lif_initial_state(x[:, 0])
    out = []
    # A Python loop over time: the reference semantics, not fast. unbind (not x[:, t]) keeps the
    # backward linear in T: each x[:, t] would allocate and fill a full-size zero gradient.
    for x_t in x.unbind(1):
        s, state = lif_step(x_t, state, p)
        out.append(s)
    return torch.stack(out, dim=1)


class LIF(nn.Module):
    """Leaky integrate-and-fire neurons with hard reset and ArcTan surrogate (see module doc).

    Shapes: x (B, T, C) → spikes (B, T, C) in {0, 1}. State is not kept between calls.

    Example::

        >>> LIF(tau=2.0)(torch.full((1, 3, 1), 0.8)).flatten().tolist()
        [0.0, 1.0, 0.0]
    """

    def __init__(self, tau: float = 2.0, threshold: float = 1.0, alpha: float = 5.0) -> None:
        super().__init__()
        if tau < 1.0:
            raise ValueError(f"tau must be >= 1 (steps), got {tau}")
        self.p = LIFParameters(float(tau), float(threshold), float(alpha))

    def forward(self, x: Tensor) -> Tensor:
        return lif_sequence(x, self.p)

    def extra_repr(self) -> str:
        return f"tau={self.p.tau}, threshold={self.p.threshold}, alpha={self.p.alpha}"


# -- LI readout -----------------------------------------------------------------------------------
class LIParameters(NamedTuple):
    """Leaky integrator constant: ``tau`` in steps (>= 1)."""

    tau: float = 2.0


class LIState(NamedTuple):
    """Membrane potential ``v`` (B, C)."""

    v: Tensor


def li_step(x: Tensor, state: LIState, p: LIParameters) -> tuple[Tensor, LIState]:
    """One leaky-integrator step ``V[t] = V[t-1] - V[t-1]/τ + X[t]``. Shapes: (B, C) → (B, C)."""
    v = state.v - state.v / p.tau + x
    return v, LIState(v=v)


def li_sequence(x: Tensor, p: LIParameters, *, fused: bool = True) -> Tensor:
    """Membrane potential over a sequence from ``V = 0``. Shapes: x (B, T, C) → v (B, T, C).

    ``fused`` as in :func:`lif_sequence` (:func:`spikedelay.ops.lif.fused_li_sequence`).
    """
    if x.shape[1] == 0:
        return torch.zeros_like(x)
    if fused:
        from spikedelay.ops.lif import fused_li_sequence

        return fused_li_sequence(x, p.tau)
    state = LIState(v=torch.zeros_like(x[:, 0]))
    out = []
    for x_t in x.unbind(1):
        v, state = li_step(x_t, state, p)
        out.append(v)
    return torch.stack(out, dim=1)


class LI(nn.Module):
    """Non-spiking leaky integrator readout: its membrane potential at every step is the output.

    Same charge as :class:`LIF` (SpikingJelly's LIF node with an unreachable threshold).
    Shapes: x (B, T, C) → v (B, T, C).
    """

    def __init__(self, tau: float = 2.0) -> None:
        super().__init__()
        if tau < 1.0:
            raise ValueError(f"tau must be >= 1 (steps), got {tau}")
        self.p = LIParameters(float(tau))

    def forward(self, x: Tensor) -> Tensor:
        return li_sequence(x, self.p)

    def extra_repr(self) -> str:
        return f"tau={self.p.tau}"


# -- masking helpers ------------------------------------------------------------------------------
def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Bool mask (B, T) that is True on the first ``lengths[b]`` steps of each sequence."""
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over batch × time that ignores padded steps, for (B, T, C) sequences.

    Statistics (and the running estimates) use only the valid steps given by ``mask`` (B, T)
    bool or ``lengths`` (B,). Every step, padded ones included, is normalised with those
    statistics (padded outputs are meaningless; callers mask them). Without a mask this is
    exactly ``nn.BatchNorm1d`` on ``x.transpose(1, 2)``; parameter and buffer names are the same,
    so state dicts are interchangeable. Works for batch size 1 (as long as a channel has more
    than one valid value in training).

    Shapes: x (B, T, C), mask (B, T) or lengths (B,) → (B, T, C).

    Data-parallel training: set ``stats_all_reduce`` to a differentiable sum over processes
    (``spikedelay.train.distributed`` does) and the batch statistics become those of the global
    batch (masked count, sum, then squared deviations; like ``nn.SyncBatchNorm``); ``None``
    (the default) keeps everything local.
    """

    stats_all_reduce: Callable[[Tensor], Tensor] | None = None

    def forward(  # type: ignore[override]
        self, x: Tensor, mask: Tensor | None = None, lengths: Tensor | None = None
    ) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"MaskedBatchNorm1d expects (B, T, C), got shape {tuple(x.shape)}")
        if mask is None and lengths is not None:
            mask = lengths_to_mask(lengths, x.shape[1])
        use_batch_stats = self.training or not self.track_running_stats
        if mask is None and use_batch_stats and self.stats_all_reduce is not None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if mask is None or not use_batch_stats:
            return super().forward(x.transpose(1, 2)).transpose(1, 2)
        return self._masked_train_forward(x, mask)

    def _fused_kernels_apply(self, x: Tensor) -> bool:
        """The kernels of ``spikedelay.ops.batchnorm`` (any device: the dispatch picks their
        backend) cover local statistics with an affine map; global (data-parallel) statistics
        take the formulation below."""
        return self.stats_all_reduce is None and self.affine

    def _masked_train_forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self._fused_kernels_apply(x):
            # The same maths in a few passes over x (spikedelay.ops.batchnorm), not ~30.
            from spikedelay.ops.batchnorm import fused_masked_batch_norm

            y, mean, var = fused_masked_batch_norm(x, mask, self.weight, self.bias, self.eps)
            self._update_running_stats(mean, var, mask.sum().to(x.dtype))
            return y
        m = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        n = m.sum()
        total = (x * m).sum((0, 1))
        reduce = self.stats_all_reduce
        if reduce is not None:  # one collective for count and sum, a second for the deviations
            n_total = reduce(torch.cat([n.reshape(1), total]))
            n, total = n_total[0], n_total[1:]
        mean = total / n
        sq = ((x - mean) ** 2 * m).sum((0, 1))
        if reduce is not None:
            sq = reduce(sq)
        var = sq / n  # biased, as BatchNorm normalises with
        self._update_running_stats(mean, var, n)
        y = (x - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y

    def _update_running_stats(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        if self.training and self.track_running_stats:
            # n as a tensor avoids a host sync; the unbiased correction needs n > 1.
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    momentum = 1.0 / float(self.num_batches_tracked)
                else:
                    momentum = self.momentum
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(unbiased, momentum)


def norm_then_fire(
    norm: MaskedBatchNorm1d, lif: LIF, x: Tensor, mask: Tensor | None = None
) -> Tensor:
    """``lif(norm(x, mask=mask))``: BatchNorm then LIF spikes. Shapes: x (B, T, C) → (B, T, C).

    With local batch statistics this runs :func:`spikedelay.ops.batchnorm.fused_batch_norm_lif`
    (same numbers; only ``x`` is kept for the backward instead of ``x`` and the LIF charge).
    """
    use_batch_stats = norm.training or not norm.track_running_stats
    if use_batch_stats and x.dim() == 3 and x.shape[1] > 0 and norm._fused_kernels_apply(x):
        from spikedelay.ops.batchnorm import fused_batch_norm_lif

        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        p = lif.p
        s, mean, var = fused_batch_norm_lif(
            x, mask, norm.weight, norm.bias, norm.eps, p.tau, p.threshold, p.alpha
        )
        norm._update_running_stats(mean, var, mask.sum().to(x.dtype))
        return s
    return lif(norm(x, mask=mask))


def scale_in_place(x: Tensor, factor: Tensor) -> Tensor:
    """``x *= factor`` (broadcast), differentiable in ``x`` only; the backward writes
    ``grad · factor`` into a pooled buffer (:func:`spikedelay.ops.buffers.pooled_empty`)
    instead of a fresh tensor. For an ``x`` no one else reads and autograd has not saved."""
    return _ScaleInPlace.apply(x, factor)


class _ScaleInPlace(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor) -> Tensor:
        ctx.mark_dirty(x)
        ctx.save_for_backward(keep)
        return x.mul_(keep)

    @staticmethod
    def backward(ctx, grad: Tensor):
        from spikedelay.ops.buffers import pooled_empty

        (keep,) = ctx.saved_tensors
        return torch.mul(grad, keep, out=pooled_empty(tuple(grad.shape), grad)), None


class SequenceDropout(nn.Module):
    """Dropout with one Bernoulli mask per sequence and channel, shared over all time steps.

    As SpikingJelly's multi-step ``layer.Dropout``: a dropped neuron stays silent for the whole
    sequence. Kept values are scaled by ``1 / (1 - p)``; identity in eval mode.
    Shapes: x (B, T, C) → (B, T, C).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: Tensor, inplace: bool = False) -> Tensor:
        """``inplace=True`` scales ``x`` itself (no new (B, T, C) tensor): only for an ``x``
        that no one else reads and autograd has not saved (a fused LIF's spikes)."""
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(x.shape[0], 1, x.shape[2], device=x.device, dtype=x.dtype)
        # the scale goes into the small mask: one pass over x each way instead of two
        keep.bernoulli_(1.0 - self.p).div_(1.0 - self.p)
        return scale_in_place(x, keep) if inplace else x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


__all__ = [
    "LI",
    "LIF",
    "LIFParameters",
    "LIFState",
    "LIParameters",
    "LIState",
    "MaskedBatchNorm1d",
    "SequenceDropout",
    "arctan_surrogate_grad",
    "lengths_to_mask",
    "norm_then_fire",
    "li_sequence",
    "li_step",
    "lif_initial_state",
    "lif_sequence",
    "lif_step",
    "spike_fn",
]

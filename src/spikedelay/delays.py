"""Delay layers: per-synapse weights and (learnable) delays applied as a 1-D convolution over time.

The method is DCLS-delays (Hammouamri et al., "Learning Delays in Spiking Neural Networks using
Dilated Convolutions with Learnable Spacings", ICLR 2024). Each synapse ``(j, i)`` (and each of
``kernel_count`` copies) has a weight ``w`` and a position ``p``. The delay kernel of ``K`` taps is

* training (learned delays): a Gaussian bump per synapse, exactly as ``DCLS.construct.modules.
  Dcls1d(version="gauss")`` builds it::

      c     = p + K//2                         (tap the bump is centred on)
      g(k)  = exp(-1/2 ((k - c) / σ_eff)^2),   σ_eff = |σ| + 0.27,   k = 0 … K-1
      kernel[j, i, k] = Σ_copies  w · g(k) / (Σ_k g(k) + 1e-7)

  or, with ``interpolation="triangle"``, a triangle ``max(0, |σ| + 1 - |k - c|)`` normalised the
  same way (dcls ``version="max"``; ``"v1"`` at ``σ = 0``, linear interpolation):
  :func:`triangle_kernel`;

* evaluation, and always for fixed delays: one tap per synapse at the rounded position
  (integer delays), ``kernel[j, i, K-1-d] += w``.

Sparse delays (``sparsity > 0``, :mod:`spikedelay.delay_masks`) put the masked synapse copies at
delay 0. One delay per input or output channel instead of per synapse (axonal, dendritic):
:mod:`spikedelay.channel_delays`.

``conv1d`` is a cross-correlation, so tap ``k`` reads the input ``K-1-k`` steps in the past:
the delay of a synapse is ``d = K-1 - c``, which is ``K//2 - p`` for odd ``K`` (the DCLS
convention). Positions are clamped to ``[-(K//2), K-1-K//2]`` so that ``d`` lies in ``0 … K-1``;
for odd ``K`` that is dcls' ``[-K//2, K//2]``. (For even ``K`` dcls allows ``p = K//2``, whose
bump centre falls one tap past the kernel; we stop one step earlier.)

Padding (per layer, on the time axis):

* ``"reference"``: zeros, left ``K-1`` and right ``(K-1)//2`` (the paper's code), so
  ``T' = T + (K-1)//2``: every layer lengthens the sequence.
* ``"causal"``: left ``K-1`` only, ``T' = T``.

Kernel building is pure functions (:func:`gaussian_kernel`, :func:`integer_kernel`,
:func:`delay_conv`); :class:`DelayedLinear` only owns parameters and picks the kernel.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spikedelay.config import (  # one definition each, validated by the config
    DelayMode,
    Interpolation,
    Padding,
)
from spikedelay.delay_masks import DelayMask, MaskKind
from spikedelay.ops.gaussian import NORM_EPS  # dcls' epsilon in the normalisation

ConvMethod = Literal["auto", "direct", "fft"]

SIGMA_OFFSET = 0.27  # dcls "gauss": σ_eff = |σ| + 0.27, so σ = 0.23 gives σ_eff = 0.5
FFT_MIN_TAPS = 8  # from here the DFT route (≈2 multiply-adds per synapse·step) beats conv1d (K)


def position_range(max_delay: int) -> tuple[int, int]:
    """Allowed positions ``(lo, hi)`` for ``K = max_delay`` taps: ``(-(K//2), K-1-K//2)``."""
    half = max_delay // 2
    return -half, max_delay - 1 - half


def positions_to_delays(position: Tensor, max_delay: int) -> Tensor:
    """Round and clamp positions, return integer delays in steps (int64, ``0 … K-1``).

    ``d = K-1 - (round(p) + K//2)`` (= ``K//2 - round(p)`` for odd ``K``). Rounding is
    ``torch.round`` (half to even), as the reference's ``P.round_()``.
    """
    lo, hi = position_range(max_delay)
    p = torch.round(position.detach()).clamp(lo, hi)
    return (max_delay - 1 - max_delay // 2 - p).to(torch.int64)


def delays_to_positions(delays: Tensor, max_delay: int, dtype: torch.dtype | None = None) -> Tensor:
    """Inverse of :func:`positions_to_delays` for integer delays ``0 … K-1``."""
    return (max_delay - 1 - max_delay // 2 - delays).to(dtype or torch.get_default_dtype())


def gaussian_kernel(
    weight: Tensor, position: Tensor, sigma: Tensor | float, max_delay: int, *, fused: bool = True
) -> Tensor:
    """Dense delay kernel from Gaussian-interpolated positions (dcls ``version="gauss"``).

    Shapes: weight (out, in, kc), position (out, in, kc), sigma scalar → kernel (out, in, K).
    Differentiable in ``weight`` and ``position`` (and ``sigma``). Positions are *not* clamped
    here (dcls neither): call :meth:`DelayedLinear.clamp_positions_` after each optimiser step.

    ``fused=True`` uses :func:`spikedelay.ops.gaussian.fused_gaussian_kernel` (any device; its
    backend is chosen by :mod:`spikedelay.ops.dispatch`) unless σ requires a gradient: same
    numbers, one pass each way, the kernel returned as a view of tap-major memory. Otherwise the
    autograd version below.
    """
    if fused and not (isinstance(sigma, Tensor) and sigma.requires_grad):
        from spikedelay.ops.gaussian import fused_gaussian_kernel

        return fused_gaussian_kernel(weight, position, abs(float(sigma)) + SIGMA_OFFSET, max_delay)
    taps = torch.arange(max_delay, device=position.device, dtype=position.dtype)
    sigma_eff = torch.as_tensor(sigma, dtype=position.dtype, device=position.device).abs()
    sigma_eff = sigma_eff + SIGMA_OFFSET
    centre = position + max_delay // 2  # (out, in, kc)
    z = (taps - centre.unsqueeze(-1)) / sigma_eff  # (out, in, kc, K)
    g = torch.exp(-0.5 * z * z)
    g = g / (g.sum(-1, keepdim=True) + NORM_EPS)
    return torch.einsum("oikt,oik->oit", g, weight)


def triangle_kernel(
    weight: Tensor, position: Tensor, sigma: Tensor | float, max_delay: int
) -> Tensor:
    """Dense delay kernel from triangle-interpolated positions (dcls ``version="max"``).

    ``g(k) = max(0, h - |k - c|)`` with half-width ``h = |σ| + 1`` and ``c = p + K//2``,
    normalised to sum 1 (+1e-7) over the taps, times the weight. ``σ = 0`` is dcls' ``"v1"``:
    linear interpolation between the two nearest taps. Shapes as :func:`gaussian_kernel`.
    """
    taps = torch.arange(max_delay, device=position.device, dtype=position.dtype)
    half = torch.as_tensor(sigma, dtype=position.dtype, device=position.device).abs() + 1.0
    centre = position + max_delay // 2
    g = torch.relu(half - (taps - centre.unsqueeze(-1)).abs())  # (out, in, kc, K)
    g = g / (g.sum(-1, keepdim=True) + NORM_EPS)
    return torch.einsum("oikt,oik->oit", g, weight)


def interpolated_kernel(weight: Tensor, position: Tensor, sigma: Tensor | float, max_delay: int,
                        interpolation: Interpolation) -> Tensor:
    """The training kernel of ``interpolation`` (``"gaussian"`` or ``"triangle"``)."""
    if interpolation == "triangle":
        return triangle_kernel(weight, position, sigma, max_delay)
    return gaussian_kernel(weight, position, sigma, max_delay)


def integer_kernel(weight: Tensor, delays: Tensor, max_delay: int) -> Tensor:
    """Dense delay kernel with one tap per synapse copy at an integer delay.

    Shapes: weight (out, in, kc), delays (out, in, kc) int64 in ``0 … K-1`` → kernel (out, in, K).
    Copies that share a delay add up. Differentiable in ``weight`` only.
    """
    n_out, n_in, _ = weight.shape
    # flat index_add: ~2x faster than scatter_add on dim 2 and ~8x than one_hot on CPU
    synapse = torch.arange(n_out * n_in, device=weight.device).view(n_out, n_in, 1)
    flat = (synapse * max_delay + (max_delay - 1 - delays)).flatten()
    kernel = weight.new_zeros(n_out * n_in * max_delay).index_add(0, flat, weight.flatten())
    return kernel.view(n_out, n_in, max_delay)


def padding_amounts(max_delay: int, padding: Padding) -> tuple[int, int]:
    """Zero steps added ``(left, right)`` of the time axis for a kernel of ``K`` taps."""
    if padding == "reference":
        return max_delay - 1, (max_delay - 1) // 2
    if padding == "causal":
        return max_delay - 1, 0
    raise ValueError(f"padding must be 'reference' or 'causal', got {padding!r}")


def delay_conv(
    x: Tensor, kernel: Tensor, left: int, right: int, *, method: ConvMethod = "auto"
) -> Tensor:
    """Apply a delay kernel over time: ``y[t', j] = Σ_i Σ_k kernel[j, i, k] · xpad[t' + k, i]``.

    ``xpad`` is ``x`` with ``left`` zero steps before and ``right`` after. With
    ``left = K-1`` this is ``y[t', j] = Σ_i Σ_d kernel[j, i, K-1-d] · x[t' - d, i]``.

    ``method``: ``"direct"`` is ``conv1d`` (K multiply-adds per synapse and step);
    ``"fft"`` is :func:`spikedelay.ops.delay_conv.fft_delay_conv`, the same numbers (to float
    rounding) through a DFT, ~1.5·N/T' ≈ 2 multiply-adds per synapse and step whatever K;
    ``"auto"`` picks ``"fft"`` from ``K >= FFT_MIN_TAPS`` taps.

    Shapes: x (B, T, in), kernel (out, in, K) → (B, T + left + right - K + 1, out).
    """
    if method == "fft" or (method == "auto" and kernel.shape[-1] >= FFT_MIN_TAPS):
        from spikedelay.ops.delay_conv import fft_delay_conv

        return fft_delay_conv(x, kernel, left, right)
    xt = F.pad(x.transpose(1, 2), (left, right))  # (B, in, T + left + right)
    return F.conv1d(xt, kernel).transpose(1, 2)


def register_positions(module: nn.Module, delays: str, shape: tuple[int, ...], max_delay: int,
                       factory: dict) -> None:
    """Give ``module`` its ``position`` (a parameter if learned, a buffer if fixed, None
    otherwise) and its ``sigma`` buffer (K // 2 at the start): one layout for every delay kind."""
    if delays == "learned":
        module.position = nn.Parameter(torch.empty(shape, **factory))
    elif delays == "fixed":
        module.register_buffer("position", torch.empty(shape, **factory))
    else:
        module.position = None
    module.register_buffer("sigma", torch.tensor(float(max_delay // 2), **factory))


@torch.no_grad()
def init_positions_(position: Tensor | None, delays: str, max_delay: int) -> None:
    """Learned positions uniform over the clamp range; fixed ones random integer delays."""
    if delays == "learned":
        position.uniform_(*position_range(max_delay))
    elif delays == "fixed":
        d = torch.randint(0, max_delay, position.shape, device=position.device)
        position.copy_(delays_to_positions(d, max_delay, position.dtype))


class DelayedLinear(nn.Module):
    """Fully connected layer whose synapses each carry a delay (DCLS-delays).

    ``y[t, j] = Σ_i Σ_c w[j, i, c] · x[t - d[j, i, c], i]`` with integer delays ``d`` in
    ``0 … K-1`` (evaluation), or the same with each delay spread by a normalised Gaussian of
    width ``|σ| + 0.27`` around a real-valued position (training, learned delays).

    Args:
        in_features, out_features: sizes of the input and output features.
        max_delay: ``K``, the kernel length in steps (delays ``0 … K-1``).
        kernel_count: weight/delay copies per synapse (the paper uses 1, or 2 for its 2.5 M
            models). Ignored by ``delays="none"``, where copies would be redundant.
        delays: ``"learned"`` (positions are Parameters, Gaussian in training, rounded in eval),
            ``"fixed"`` (integer delays drawn uniformly once at init and stored as a buffer;
            always one tap), ``"none"`` (no delays: a plain linear map of each step; the same
            padding rule still applies, so the output has the same length as the other modes,
            its extra right steps see zero input. Use ``padding="causal"`` for the paper's exact
            no-delay baseline, a linear layer per time step with ``T' = T``).
        padding: ``"reference"`` (left ``K-1``, right ``(K-1)//2``: ``T' = T + (K-1)//2``) or
            ``"causal"`` (left ``K-1``: ``T' = T``).
        interpolation: training kernel of learned delays, ``"gaussian"`` (dcls ``"gauss"``) or
            ``"triangle"`` (dcls ``"max"``, half-width ``|σ| + 1``); evaluation is integer
            either way.
        sparsity, mask: a fraction ``sparsity`` of the delay parameters (synapse copies) has
            delay 0, chosen by a :class:`~spikedelay.delay_masks.DelayMask` (``"random"`` or
            ``"learned"``); ``sparsity=0`` (default) builds no mask.

    Parameters/buffers: ``weight`` (out, in, kc) Parameter, Kaiming-uniform with ReLU gain
    (fan_in = in · kc, bound ``sqrt(6 / fan_in)``); ``position`` (out, in, kc) Parameter for
    learned (uniform over the clamp range), buffer for fixed, absent for none; ``sigma`` scalar
    buffer (not trained, saved), initially ``K//2``. No bias.

    Shapes: x (B, T, in) → (B, T', out), ``T' = output_length(T)``.

    Example::

        >>> layer = DelayedLinear(4, 3, max_delay=5)
        >>> layer(torch.zeros(2, 10, 4)).shape
        torch.Size([2, 12, 3])
        >>> layer.integer_delays().shape
        torch.Size([3, 4, 1])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int,
        *,
        kernel_count: int = 1,
        delays: DelayMode = "learned",
        padding: Padding = "reference",
        interpolation: Interpolation = "gaussian",
        sparsity: float = 0.0,
        mask: MaskKind = "random",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if delays not in ("learned", "fixed", "none"):
            raise ValueError(f"delays must be 'learned', 'fixed' or 'none', got {delays!r}")
        if interpolation not in ("gaussian", "triangle"):
            raise ValueError(
                f"interpolation must be 'gaussian' or 'triangle', got {interpolation!r}")
        if sparsity and delays == "none":
            raise ValueError("delay sparsity needs delays (delays='learned' or 'fixed')")
        if max_delay < 1 or kernel_count < 1 or in_features < 1 or out_features < 1:
            raise ValueError("in_features, out_features, max_delay and kernel_count must be >= 1")
        self.left_pad, self.right_pad = padding_amounts(max_delay, padding)
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.max_delay = max_delay
        self.kernel_count = 1 if delays == "none" else kernel_count
        self.delays = delays
        self.padding = padding
        self.interpolation = interpolation
        shape = (out_features, in_features, self.kernel_count)
        self.weight = nn.Parameter(torch.empty(shape, **factory))
        register_positions(self, delays, shape, max_delay, factory)
        self.reset_parameters()
        # drawn after the weights and positions, so a run without sparsity draws what it did
        self.delay_mask = DelayMask(shape, sparsity, mask, device=device) if sparsity else None

    def reset_parameters(self) -> None:
        """Kaiming-uniform (ReLU gain) weights; positions uniform (learned) or random integers."""
        # torch's fan_in of a (out, in, kc) tensor is in * kc, as for a conv1d weight.
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")
        init_positions_(self.position, self.delays, self.max_delay)

    # -- lengths ---------------------------------------------------------------------------------
    def output_length(self, length: int | Tensor) -> int | Tensor:
        """Output steps for ``length`` input steps (int or a tensor of lengths)."""
        return length + self.left_pad + self.right_pad - self.max_delay + 1

    # -- sigma / positions -----------------------------------------------------------------------
    def set_sigma(self, sigma: float) -> None:
        """Set the Gaussian width σ (σ_eff = |σ| + 0.27). Has no effect on fixed/none layers."""
        self.sigma.fill_(float(sigma))

    @torch.no_grad()
    def clamp_positions_(self) -> None:
        """Clamp learned positions to the allowed range in place (call after each step)."""
        if self.delays == "learned":
            lo, hi = position_range(self.max_delay)
            self.position.clamp_(lo, hi)

    def integer_delays(self) -> Tensor:
        """Integer delays in steps, (out, in, kc) int64 in ``0 … K-1`` (all 0 for ``"none"``)."""
        if self.position is None:
            return torch.zeros(self.weight.shape, dtype=torch.int64, device=self.weight.device)
        d = positions_to_delays(self.position, self.max_delay)
        return d if self.delay_mask is None else d * self.delay_mask.hard()

    def set_sparsity(self, sparsity: float) -> None:
        """Set the current delay sparsity ``S_t`` (learned masks; see :mod:`delay_masks`)."""
        if self.delay_mask is not None:
            self.delay_mask.set_sparsity(sparsity)

    def active_delays(self) -> int:
        """Delay parameters in use (all synapse copies unless masked; 0 for ``"none"``)."""
        if self.position is None:
            return 0
        return self.position.numel() if self.delay_mask is None else self.delay_mask.active_count()

    def kernel(self, integer: bool | None = None) -> Tensor:
        """The dense kernel (out, in, K) that :meth:`forward` uses.

        ``integer=None`` follows the mode: Gaussian for learned delays in training, integer taps
        otherwise. ``delays="none"`` has its single tap at delay 0.
        """
        if integer is None:
            integer = not (self.training and self.delays == "learned")
        if not integer and self.delays == "learned":
            if self.delay_mask is None:
                return interpolated_kernel(self.weight, self.position, self.sigma,
                                           self.max_delay, self.interpolation)
            # masked copies sit at delay 0 (tap K-1); straight-through for learned masks
            m = self.delay_mask(self.weight.dtype)
            moving = interpolated_kernel(self.weight * m, self.position, self.sigma,
                                         self.max_delay, self.interpolation)
            still = torch.zeros_like(self.weight, dtype=torch.int64)
            return moving + integer_kernel(self.weight * (1 - m), still, self.max_delay)
        return integer_kernel(self.weight, self.integer_delays(), self.max_delay)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: x (B, T, in) → (B, T', out)."""
        if self.delays == "none":
            # A linear map per step; the padding rule only adds zero steps at the end.
            y = F.linear(x, self.weight[..., 0])
            return F.pad(y, (0, 0, 0, self.output_length(x.shape[1]) - x.shape[1]))
        integer = not (self.training and self.delays == "learned")
        if integer and not torch.is_grad_enabled() and self.max_delay >= FFT_MIN_TAPS:
            # evaluation: one tap per synapse, event-driven where that is faster (no gradient)
            from spikedelay.ops.delay_conv import integer_delay_conv

            return integer_delay_conv(x, self.weight, self.integer_delays(), self.max_delay,
                                      self.left_pad, self.right_pad,
                                      lambda: self.kernel(integer=True))
        return delay_conv(x, self.kernel(), self.left_pad, self.right_pad)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, max_delay={self.max_delay}, "
            f"kernel_count={self.kernel_count}, delays={self.delays}, padding={self.padding}, "
            f"interpolation={self.interpolation}, sigma={float(self.sigma):.4g}"
        )

"""Delay sparsity: which delay parameters are switched off (Bouhadjar & Neftci 2026; REFERENCE §9).

A fraction ``S`` (``0 ≤ S < 1``) of a layer's delay parameters (channels for axonal/dendritic
delays, synapse copies for synaptic ones) has **no delay**: a masked-out delay is a shift of
**zero** steps. (The reference code instead passes such channels through its left-padded input,
which shifts them by ``K-1`` steps, the maximum delay; we do not copy that.)

Exactly ``n_off(n, S) = ⌊S·n⌋`` of the ``n`` delays are off (:func:`masked_count`; ``S·n`` is
rounded to 9 decimals first, so that ``0.29·100`` counts as 29 and not 28.999…).

* ``"random"``: drawn once at construction from torch's global generator (so from the run's
  seed): a uniformly random set of ``n_off`` delays is switched off, fixed for all training.
* ``"learned"``: one trainable score per delay; the ``n - n_off(n, S_t)`` delays with the largest
  scores are on. Training uses a straight-through estimator, ``m = hard + (σ(s) - sg(σ(s)))``
  (value: the hard 0/1 mask; gradient: that of the sigmoid of the scores). ``S_t`` is ramped by
  the training loop, ``S·(1-(1-t/t_f)³)`` over the first quarter of the epochs
  (:func:`spikedelay.train.schedule.sparsity_at`); a model built outside training uses ``S``.

The current hard mask is kept in the ``mask`` buffer (so it travels with checkpoints) and
``n_off`` holds the current count off, ``⌊S_t·n⌋``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from spikedelay.config import DelayMaskKind as MaskKind  # one definition, validated by the config


def masked_count(n: int, sparsity: float) -> int:
    """Delays switched off out of ``n`` at sparsity ``S``: ``⌊S·n⌋`` (S·n rounded to 9 decimals)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"delay sparsity must be in [0, 1), got {sparsity!r}")
    return int(math.floor(round(sparsity * n, 9)))


class DelayMask(nn.Module):
    """On/off mask over a tensor of delay parameters of shape ``shape`` (see module docstring).

    ``forward()`` returns the mask as a float tensor of ``shape`` (1 = delay on, 0 = off): the
    hard mask, with the straight-through gradient for learned masks in training.

    Example::

        >>> m = DelayMask((10,), 0.8, "random")
        >>> int(m.hard().sum())
        2
    """

    def __init__(self, shape: tuple[int, ...], sparsity: float, kind: MaskKind = "random", *,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if kind not in ("random", "learned"):
            raise ValueError(f"delay mask must be 'random' or 'learned', got {kind!r}")
        self.shape = tuple(shape)
        self.kind = kind
        self.final_sparsity = float(sparsity)
        n = math.prod(self.shape)
        n_off = masked_count(n, sparsity)
        # the current count off (an integer, so .float()/.double() of the model leave it exact)
        self.register_buffer("n_off", torch.tensor(n_off, dtype=torch.int64, device=device))
        mask = torch.ones(n, dtype=torch.bool, device=device)
        if kind == "random":
            mask[torch.randperm(n, device=device)[:n_off]] = False
            self.scores = None
        else:
            self.scores = nn.Parameter(torch.randn(self.shape, device=device))
        self.register_buffer("mask", mask.view(self.shape))
        if kind == "learned":
            self._refresh()

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def off_count(self) -> int:
        """Delays off at the current sparsity ``S_t``: ``⌊S_t·n⌋``."""
        return int(self.n_off)

    def set_sparsity(self, sparsity: float) -> None:
        """Set ``S_t`` (learned masks; a random mask keeps its fixed count)."""
        if self.kind == "learned":
            self.n_off.fill_(masked_count(self.numel, sparsity))
            self._refresh()

    @torch.no_grad()
    def _refresh(self) -> None:
        keep = self.numel - self.off_count()
        flat = torch.zeros(self.numel, dtype=torch.bool, device=self.mask.device)
        flat[torch.topk(self.scores.detach().flatten(), keep).indices] = True
        self.mask.copy_(flat.view(self.shape))

    def hard(self) -> Tensor:
        """The 0/1 mask now (bool, ``shape``); for learned masks the top-k of the scores."""
        if self.kind == "learned":
            self._refresh()
        return self.mask

    def active_count(self) -> int:
        return int(self.hard().sum())

    def forward(self, dtype: torch.dtype | None = None) -> Tensor:
        hard = self.hard()
        if self.kind == "learned" and self.training:
            p = torch.sigmoid(self.scores.to(dtype or self.scores.dtype))
            return hard.to(p.dtype) + (p - p.detach())
        return hard.to(dtype or torch.get_default_dtype())

    def extra_repr(self) -> str:
        return f"shape={self.shape}, kind={self.kind}, off={self.off_count()}/{self.numel}"

"""Loss and prediction of the DCLS-delays readout (REFERENCE §1).

The readout is a leaky integrator whose membrane potential ``v`` is read at every step. The paper
sums the per-step class probabilities, ``m = Σ_t softmax(v[t])``, and applies cross-entropy to ``m``
(a log-softmax of a sum of probabilities). We sum over *valid* steps only, so that zero padding
added to make a batch rectangular cannot vote; ``masked=False`` reproduces the reference, which
sums over every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spikedelay.neurons import lengths_to_mask


def summed_softmax(v_out: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Time-summed class probabilities ``m`` (B, classes) from ``v_out`` (B, T, classes)."""
    probs = torch.softmax(v_out, dim=-1)
    if lengths is not None:
        probs = probs * lengths_to_mask(lengths, v_out.shape[1]).unsqueeze(-1).to(probs.dtype)
    return probs.sum(dim=1)


def summed_softmax_loss(
    v_out: torch.Tensor,
    labels: torch.Tensor,
    lengths: torch.Tensor | None = None,
    *,
    masked: bool = True,
    reduction: str = "mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the time-summed softmax; returns ``(loss, m)``.

    Shapes: v_out (B, T, C), labels (B,), lengths (B,) valid readout steps → loss (), m (B, C).
    The prediction is ``m.argmax(-1)``. ``reduction="sum"`` for data-parallel shares, which the
    training loop divides by the global batch size itself.
    """
    m = summed_softmax(v_out, lengths if masked else None)
    return F.cross_entropy(m, labels, reduction=reduction), m

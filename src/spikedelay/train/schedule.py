"""Schedules as pure functions of the epoch (REFERENCE §1), so resume and tests are trivial.

σ starts at ``K//2`` and is multiplied once per epoch by ``α = (floor/σ₀)^(1/E_σ)`` until epoch
``E_σ = max(1, int(epochs * fraction))``, then stays at ``floor`` (0.23, so σ_eff = 0.5).
"""

from __future__ import annotations

import math


def sigma_epochs(epochs: int, fraction: float) -> int:
    """Number of epochs over which σ anneals (the paper: epochs // 4)."""
    return max(1, int(epochs * fraction))


def sigma_at(epoch: int, *, max_delay: int, epochs: int, fraction: float = 0.25,
             floor: float = 0.23) -> float:
    """σ used *during* ``epoch`` (0-based): ``σ₀ · α^epoch``, clipped below at ``floor``."""
    sigma0 = float(max_delay // 2)
    if sigma0 <= floor:
        return floor
    n = sigma_epochs(epochs, fraction)
    alpha = (floor / sigma0) ** (1.0 / n)
    return max(floor, sigma0 * alpha ** min(epoch, n))


def position_lr_at(epoch: int, *, base_lr: float, epochs: int) -> float:
    """Cosine annealing to 0 over all epochs (PyTorch's CosineAnnealingLR, eta_min 0)."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / epochs))


def sparsity_at(epoch: int, *, sparsity: float, epochs: int, fraction: float = 0.25) -> float:
    """Delay sparsity ``S_t`` of learned masks during ``epoch`` (0-based; REFERENCE §9).

    ``S·(1 - (1 - t/t_f)³)`` with ``t = epoch + 1`` (the ramp's value at the *end* of the epoch)
    up to ``t_f = max(1, int(epochs · fraction))``, then ``S``: delays are switched off gradually
    over the first quarter of training, and from epoch ``t_f - 1`` on every model evaluated has
    the final sparsity (a 1-epoch run too).
    """
    t_f = max(1, int(epochs * fraction))
    t = min(epoch + 1, t_f)
    return float(sparsity) * (1.0 - (1.0 - t / t_f) ** 3)

"""Surrogate derivatives of the Heaviside spike, as plain formulas shared by the kernels.

Each surrogate replaces ``dΘ(x)/dx`` (``x = membrane - threshold``) by a bump with one or two
constants ``(p1, p2)``:

* ``atan`` (SpikingJelly ``surrogate.ATan``, Fang et al. 2021): ``(α/2) / (1 + (π/2·α·x)²)``,
  ``p1 = α``;
* ``triangle`` (DelRec's SSC recipe): ``max(0, γ - |x|) / γ²``, ``p1 = γ`` (half-width);
* ``slayer`` (SE-adLIF, Shrestha & Orchard 2018): ``c·α / (2·exp(α|x|))``, ``p1 = α``,
  ``p2 = c``.

Kept in ``ops`` (which imports nothing else of the package) so that the numba kernels, the
torch reference loops and :mod:`spikedelay.surrogates` use one definition.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SURROGATES = ("atan", "triangle", "slayer")
SURROGATE_CODES = {name: i for i, name in enumerate(SURROGATES)}


def surrogate_grad(x: Tensor, kind: str, p1: float, p2: float = 0.0) -> Tensor:
    """The surrogate derivative named ``kind`` at ``x``, elementwise."""
    if kind == "atan":
        return (p1 / 2) / (1 + (math.pi / 2 * p1 * x) ** 2)
    if kind == "triangle":
        return (p1 - x.abs()).clamp_min(0) / (p1 * p1)
    if kind == "slayer":
        return p2 * p1 / (2 * torch.exp(p1 * x.abs()))
    raise ValueError(f"unknown surrogate {kind!r}: use one of {', '.join(SURROGATES)}")


def make_numba_surrogate():
    """The same formulas as one numba function ``sg(x, code, p1, p2)`` (codes of
    :data:`SURROGATE_CODES`), for kernels to inline; built on demand so numba loads lazily."""
    import numba

    @numba.njit(inline="always")
    def sg(x, code, p1, p2):  # pragma: no cover - compiled
        if code == 0:
            z = (math.pi / 2.0) * p1 * x
            return (p1 / 2.0) / (1.0 + z * z)
        if code == 1:
            r = p1 - abs(x)
            return r / (p1 * p1) if r > 0.0 else 0.0 * x
        return p2 * p1 / (2.0 * math.exp(p1 * abs(x)))

    return sg


__all__ = ["SURROGATES", "SURROGATE_CODES", "make_numba_surrogate", "surrogate_grad"]
